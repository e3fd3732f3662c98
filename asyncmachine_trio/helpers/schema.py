"""Schema utilities: the schema hash, implements checks, relation counts, copying."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .. import Machine, State, States, StateUnknownError, hash_str
from .api import MachineApi


def schema_canonical(schema: Mapping[str, State] | type[States] | None) -> str:
    """The text :func:`schema_hash` digests (help.go ``SchemaHash``), bit for bit.

    For each state name in ascending order (Go ``sort.Strings``: bytewise on
    UTF-8, which is the same as Python's code-point order): ``name + ":"``,
    then ``"a,"`` if Auto, ``"m,"`` if Multi, then the relation lists After,
    Remove, Add, Require in that order, each sorted, each name followed by
    ``","`` and each list closed by ``";"``. Duplicates in a list are kept;
    ``None`` and ``()`` are the same; tags are not part of it.
    """
    if schema is None:
        return ""
    if isinstance(schema, type):
        schema = schema.schema()
    out: list[str] = []
    for name in sorted(schema):
        state = schema[name]
        out.append(name + ":")
        if state.auto:
            out.append("a,")
        if state.multi:
            out.append("m,")
        for rel in (state.after, state.remove, state.add, state.require):
            out.extend(r + "," for r in sorted(rel or ()))
            out.append(";")
    return "".join(out)


def schema_hash(schema: Mapping[str, State] | type[States] | None) -> str:
    """Order-independent short schema hash used by the aRPC handshake (help.go ``SchemaHash``).

    The first 6 hex chars of the MD5 of the UTF-8 bytes of
    :func:`schema_canonical`; ``""`` for None. To match a Go peer, hash the
    machine's schema (``mach.schema``: sanitized, with ``Exception``).
    """
    if schema is None:
        return ""
    return hash_str(schema_canonical(schema), 6)


def is_multi(mach: MachineApi, state: str) -> bool:
    """``state`` is a Multi state (False if unknown)."""
    s = mach.schema.get(state)
    return s is not None and s.multi


def implements(checked: Iterable[str], needed: Iterable[str]) -> None:
    """Raise :class:`am.StateUnknownError` for the first needed state not in ``checked``."""
    have = set(checked)
    for s in needed:
        if s not in have:
            raise StateUnknownError(f"missing state: {s}")


def schema_implements(schema: Mapping[str, State] | type[States], states: Iterable[str]) -> None:
    """:func:`implements` against a schema's state names."""
    names = schema.names() if isinstance(schema, type) else list(schema)
    implements(names, states)


def count_relations(state: State) -> int:
    """The number of states referenced by all relations of ``state``."""
    return sum(len(r or ()) for r in (state.remove, state.add, state.require, state.after))


def copy_schema(source: Mapping[str, State], target: Machine, states: Sequence[str]) -> None:
    """Copy the definitions of ``states`` into ``target``'s schema (``set_schema``)."""
    if not states:
        return
    schema = target.schema
    for name in states:
        if name not in source:
            raise StateUnknownError(f"missing states: state {name} in source schema")
        schema[name] = source[name]
    names = list(dict.fromkeys([*target.state_names, *states]))
    target.set_schema(schema, names)
