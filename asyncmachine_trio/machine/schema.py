"""State definitions, typed schemas, sanitization and schema utilities (semantics §1, 12.1)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any, ClassVar, TypeAlias, overload

import attrs

from .errors import SchemaError

__all__ = [
    "ANY",
    "DISPOSING",
    "EXCEPTION",
    "HEALTHCHECK",
    "HEARTBEAT",
    "MACHINE_RESTORED",
    "READY",
    "START",
    "TAG_ARGS_REQ",
    "Schema",
    "SchemaLike",
    "State",
    "StateGroups",
    "States",
    "adjacent_states",
    "check_schema",
    "parse_schema",
    "schema_filter_by_tag",
    "schema_merge",
    "schema_prefix",
    "states_by_tag",
    "to_schema",
]

EXCEPTION = "Exception"
ANY = "Any"
START = "Start"
READY = "Ready"
DISPOSING = "Disposing"
HEARTBEAT = "Heartbeat"
HEALTHCHECK = "Healthcheck"
MACHINE_RESTORED = "MachineRestored"
TAG_ARGS_REQ = "ArgsReq"

_REL_FIELDS = ("require", "add", "remove", "after")


def _rel(value: Iterable[str] | None, field: str = "relation") -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise SchemaError(
            f"{field} must be a sequence of state names, got the str {value!r}"
            f" (did you mean ({value!r},)?)"
        )
    if isinstance(value, Set | Mapping) or not isinstance(value, Iterable):
        # a set has no order, and the order of a relation matters
        raise SchemaError(
            f"{field} must be a sequence (list or tuple) of state names,"
            f" got {type(value).__name__}: {value!r}"
        )
    out = tuple(value)
    for name in out:
        if not isinstance(name, str):
            raise SchemaError(f"{field} lists a non-str state name: {name!r}")
    return out


def _tags(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise SchemaError(f"tags must be a sequence of str, got the str {value!r}")
    return tuple(value)


def _require(v: Iterable[str] | None) -> tuple[str, ...] | None:
    return _rel(v, "require")


def _add(v: Iterable[str] | None) -> tuple[str, ...] | None:
    return _rel(v, "add")


def _remove(v: Iterable[str] | None) -> tuple[str, ...] | None:
    return _rel(v, "remove")


def _after(v: Iterable[str] | None) -> tuple[str, ...] | None:
    return _rel(v, "after")


def _union(a: tuple[str, ...] | None, b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*(a or ()), *b)))


# cache_hash: compiled schemas are cached by their items, so a machine's
# construction hashes every State (issue 6: build50 spent a third of its time here)
@attrs.frozen(slots=True, cache_hash=True)
class State:
    """One state's definition: properties and relations (semantics §1.1).

    A relation is ``None`` when not given (``inspect()`` omits it) or a tuple of
    state names in the given order.
    """

    auto: bool = False
    multi: bool = False
    require: tuple[str, ...] | None = attrs.field(default=None, converter=_require)
    add: tuple[str, ...] | None = attrs.field(default=None, converter=_add)
    remove: tuple[str, ...] | None = attrs.field(default=None, converter=_remove)
    after: tuple[str, ...] | None = attrs.field(default=None, converter=_after)
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tags)

    # In a States class body an attribute reads back as its name (str); mypy sees
    # that through this descriptor. At runtime States replaces the attributes.
    @overload
    def __get__(self, obj: None, owner: type[States]) -> str: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> State: ...
    def __get__(self, obj: object, owner: type | None = None) -> str | State:
        return self

    def extend(self, overlay: State) -> State:
        """Union of each relation list; Auto / Multi only ever turned on (semantics §1.8)."""
        changes: dict[str, Any] = {
            "auto": self.auto or overlay.auto,
            "multi": self.multi or overlay.multi,
        }
        for field in _REL_FIELDS:
            extra = getattr(overlay, field)
            if extra is not None:
                changes[field] = _union(getattr(self, field), extra)
        return attrs.evolve(self, **changes)

    def set(self, overlay: State, *, auto: bool, multi: bool) -> State:
        """Relations present in ``overlay`` replace ours; Auto / Multi set (1.8)."""
        changes: dict[str, Any] = {"auto": auto, "multi": multi}
        for field in _REL_FIELDS:
            value = getattr(overlay, field)
            if value is not None:
                changes[field] = value
        return attrs.evolve(self, **changes)

    def set_rels(self, overlay: State) -> State:
        """Like :meth:`set`, keeping this state's Auto and Multi."""
        return self.set(overlay, auto=self.auto, multi=self.multi)

    def has_tag(self, tag: str) -> bool:
        """True if ``tag`` is one of the tags."""
        return tag in self.tags


Schema: TypeAlias = Mapping[str, State]


class States:
    """A typed schema: State attributes of a class body, read back as names.

    ``class FileStates(am.States): Downloading = am.State(remove=("Downloaded",))``
    gives ``FileStates.Downloading == "Downloading"`` and ``FileStates.schema()``.
    Subclasses merge their parents' states (parents first, semantics §12.1).
    """

    _schema: ClassVar[dict[str, State]] = {}
    _own: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        merged: dict[str, State] = {}
        # bases in declaration order, each with its own parents first (semantics §12.1)
        for base in cls.__bases__:
            if issubclass(base, States) and base is not States:
                merged.update(base._schema)
        own: list[str] = []
        for name, value in list(vars(cls).items()):
            if isinstance(value, State):
                if name.startswith("_"):
                    raise SchemaError(f"state names cannot start with '_': {name}")
                own.append(name)
                merged[name] = value
                setattr(cls, name, name)
        cls._own = tuple(own)
        cls._schema = merged

    @classmethod
    def schema(cls) -> dict[str, State]:
        """The merged schema, in definition order (parents first)."""
        return dict(cls._schema)

    @classmethod
    def names(cls) -> list[str]:
        """The state names, in definition order (parents first)."""
        return list(cls._schema)

    @classmethod
    def state_groups(cls) -> tuple[dict[str, list[int]], list[str]]:
        """Groups of indexes into :meth:`names`: ``self``, then each parent class.

        semantics §12.1: the class's own states form the group ``self``; every
        ancestor (depth-first, nearest first) contributes a group named after
        the class with its own states.
        """
        names = cls.names()
        index = {n: i for i, n in enumerate(names)}
        groups: dict[str, list[int]] = {}
        order: list[str] = []
        seen: set[type] = set()

        def walk(klass: type[States], label: str) -> None:
            if klass in seen or klass is States:
                return
            seen.add(klass)
            groups[label] = [index[n] for n in klass._own]
            order.append(label)
            for base in klass.__bases__:
                if isinstance(base, type) and issubclass(base, States):
                    walk(base, base.__name__)

        walk(cls, "self")
        return groups, order


class StateGroups:
    """Typed state groups: list attributes of a class body (semantics §12.1).

    ``class Groups(am.StateGroups): Playing = [S.Play, S.Pause]``; subclasses
    inherit their parents' lists. ``groups()`` returns them in definition order.
    """

    _groups: ClassVar[dict[str, tuple[str, ...]]] = {}
    _own_groups: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        merged: dict[str, tuple[str, ...]] = {}
        for base in cls.__bases__:
            if issubclass(base, StateGroups) and base is not StateGroups:
                merged.update(base._groups)
        own: list[str] = []
        for name, value in vars(cls).items():
            if name.startswith("_") or not isinstance(value, list | tuple):
                continue
            own.append(name)
            merged[name] = tuple(value)
        cls._own_groups = tuple(own)
        cls._groups = merged

    @classmethod
    def groups(cls, *, inherited: bool = True) -> dict[str, list[str]]:
        """Group name -> state names (own groups only with ``inherited=False``)."""
        keys = cls._groups if inherited else cls._own_groups
        return {k: list(cls._groups[k]) for k in keys}


SchemaLike: TypeAlias = "Mapping[str, State | Mapping[str, Any]] | type[States]"


def to_schema(schema: Any) -> dict[str, State]:
    """Normalise a dict schema, a dict of dicts or a States class to ``dict[str, State]``.

    Raises :class:`SchemaError` for anything that is not a schema.
    """
    if isinstance(schema, type) and issubclass(schema, States):
        return schema.schema()
    if not isinstance(schema, Mapping):
        raise SchemaError(
            "a schema must be a mapping of state names to am.State or an"
            f" am.States subclass, got {type(schema).__name__}"
        )
    out: dict[str, State] = {}
    for name, value in schema.items():
        if not isinstance(name, str) or not name:
            raise SchemaError(f"state names must be non-empty str, got {name!r}")
        if name == ANY:
            raise SchemaError("'Any' is reserved for global handlers, not a state")
        if isinstance(value, State):
            out[name] = value
            _check_flags(name, value)
        elif isinstance(value, Mapping):
            unknown = set(value) - {"auto", "multi", *_REL_FIELDS, "tags"}
            if unknown:
                raise SchemaError(
                    f"state {name}: unknown fields {sorted(unknown)}; expected"
                    " auto multi require add remove after tags"
                )
            try:
                out[name] = State(**value)
            except TypeError as err:
                raise SchemaError(f"state {name}: {err}") from err
            except SchemaError as err:
                raise SchemaError(f"state {name}: {err}") from err
            _check_flags(name, out[name])
        else:
            raise SchemaError(
                f"state {name}: expected am.State or a mapping, got {type(value).__name__}"
            )
    return out


def _check_flags(name: str, state: State) -> None:
    for flag in ("auto", "multi"):
        value = getattr(state, flag)
        if not isinstance(value, bool):
            raise SchemaError(f"state {name}: {flag} must be a bool, got {value!r}")


def check_schema(schema: Any) -> SchemaError | None:
    """The strict checks: every relation names a state of ``schema``.

    Returns one :class:`SchemaError` listing each unknown target with its
    state, its relation and the closest known name, or None. ``Exception`` is
    always known (it is implicit). The reference drops such targets silently
    (its ``Require`` of an unknown name makes the state impossible to
    activate); ``am.Machine(..., strict_schema=False)`` keeps that.
    """
    src = to_schema(schema)
    known = [*src, *(() if EXCEPTION in src else (EXCEPTION,))]
    known_set = set(known)
    lines: list[str] = []
    for name, state in src.items():
        for field in ("require", "add", "remove", "after"):
            for target in getattr(state, field) or ():
                if target in known_set:
                    continue
                import difflib  # cold: an error message (import cost)

                close = difflib.get_close_matches(target, known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                lines.append(f"state {name}: {field} names unknown state {target}{hint}")
    if not lines:
        return None
    return SchemaError("schema error: " + "\nschema error: ".join(lines))


def _without(lst: list[str], name: str) -> list[str]:
    """Drop the first occurrence (Go slicesWithout)."""
    try:
        i = lst.index(name)
    except ValueError:
        return lst
    return lst[:i] + lst[i + 1 :]


def parse_schema(schema: Any) -> tuple[dict[str, State], SchemaError | None]:
    """Sanitize a schema as semantics §1.4 says; errors are returned, never raised.

    ``known`` is the keys as given, so references to an undeclared ``Exception``
    in Add / Remove are dropped (semantics §14 #14, copied on purpose). Only a schema
    that is not a schema at all (wrong types) raises :class:`SchemaError`.
    """
    src = to_schema(schema)
    known = set(src)
    parsed: dict[str, State] = {}
    errors: list[str] = []
    for name, state in src.items():
        remove = list(state.remove) if state.remove is not None else None
        add = list(state.add) if state.add is not None else None
        after = list(state.after) if state.after is not None else None
        if remove is not None:
            remove = _without(remove, name)
        if add is not None:
            for x in list(add):
                if remove is not None and x in remove:
                    remove = _without(remove, x)
                elif x not in known:
                    add = _without(add, x)
        if after is not None:
            after = _without(after, name)
        for req in state.require or ():
            if remove is not None and req in remove:
                errors.append(f"require-remove conflict for {name} to {req}")
        if remove is not None:
            remove = [x for x in remove if x in known]
        if after is not None:
            after = [x for x in after if x in known]
        parsed[name] = attrs.evolve(
            state,
            remove=None if remove is None else tuple(remove),
            add=None if add is None else tuple(add),
            after=None if after is None else tuple(after),
        )
    err = None
    if errors:
        err = SchemaError("\n".join(f"schema error: {e}" for e in errors))
    return parsed, err


def schema_merge(*schemas: Any) -> dict[str, State]:
    """Later schemas replace whole state definitions of earlier ones (semantics §1.8)."""
    out: dict[str, State] = {}
    for s in schemas:
        out.update(to_schema(s))
    return out


def _prefix_list(lst: tuple[str, ...] | None, prefix: str, keep: bool) -> tuple[str, ...] | None:
    if lst is None or keep:
        return lst
    return tuple(prefix + x for x in lst)


def schema_prefix(
    schema: Any,
    prefix: str,
    *,
    remove_dups: bool = False,
    allowlist: Sequence[str] | None = None,
    skiplist: Sequence[str] | None = None,
) -> dict[str, State]:
    """Prefix state names and their relation entries (semantics §1.8).

    With ``remove_dups``, states whose name already starts with ``prefix`` are
    left as they are; ``allowlist`` / ``skiplist`` limit which states are kept.
    """
    out: dict[str, State] = {}
    for name, state in to_schema(schema).items():
        if allowlist and name not in allowlist:
            continue
        if skiplist and name in skiplist:
            continue
        keep = remove_dups and name.startswith(prefix)
        new = attrs.evolve(
            state,
            add=_prefix_list(state.add, prefix, keep),
            remove=_prefix_list(state.remove, prefix, keep),
            require=_prefix_list(state.require, prefix, keep),
            after=_prefix_list(state.after, prefix, keep),
        )
        out[name if keep else prefix + name] = new
    return out


def schema_filter_by_tag(schema: Any, tag: str) -> dict[str, State]:
    """The states carrying exactly ``tag``."""
    return {n: s for n, s in to_schema(schema).items() if tag in s.tags}


def states_by_tag(schema: Any, tag: str) -> list[str]:
    """Names of states tagged ``tag`` or ``tag:<anything>``, in schema order."""
    pre = tag + ":"
    return [
        n
        for n, s in to_schema(schema).items()
        if any(t == tag or t.startswith(pre) for t in s.tags)
    ]


def adjacent_states(schema: Any, state: str) -> list[str]:
    """Add ++ After ++ Require ++ Remove of ``state`` ([] if unknown)."""
    s = to_schema(schema).get(state)
    if s is None:
        return []
    return [*(s.add or ()), *(s.after or ()), *(s.require or ()), *(s.remove or ())]
