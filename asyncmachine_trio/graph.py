"""The graph of connected machines: states, parents, pipes and aRPC links.

Built from live machines (:meth:`Graph.add`), from plain descriptions of
machines (:class:`MachineNode`, e.g. read from a history database or a
debugger recording) and from log lines (:func:`parse_pipe_line`). The
diagrams of :mod:`asyncmachine_trio.vis` render it::

    g = am.graph.Graph.of(mach, *mach_children, client.netmach)
    print(am.vis.mermaid(g))

Edges kept:

* *parent*: ``MachineNode.parent_id`` (a machine and the machine that made it);
* *pipes*: :class:`Pipe`, one source state piped into a target machine's state
  (``am.states.pipes``), paired from the ``[pipe-out:...]`` / ``[pipe-in:...]``
  records both machines keep;
* *aRPC*: a network machine (tag ``rpc-netmach``) and the source machine it
  mirrors (its ``src-id:<id>`` tag).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import attrs

from .machine.errors import ArgumentError
from .machine.schema import State, States, to_schema

__all__ = [
    "Graph",
    "GraphError",
    "MachineNode",
    "Pipe",
    "PipeLine",
    "node_of",
    "parse_pipe_line",
]

PipeKind = Literal["add", "remove"]


def _names_set(names: Iterable[str]) -> frozenset[str]:
    return frozenset(names)


def _names_tuple(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(names)


def _ticks(ticks: Mapping[str, int]) -> dict[str, int]:
    return dict(ticks)


class GraphError(ArgumentError):
    """A graph was asked about a machine (or a link) it does not have."""


@attrs.frozen
class MachineNode:
    """One machine as the graph (and the diagrams) see it.

    ``active`` is the set of active states, ``ticks`` the clock (may be empty);
    ``groups`` maps a group name to state names (subgraphs in diagrams);
    ``own`` lists the states defined by the machine's own schema class, when
    known (``None``: every state is its own).
    """

    id: str
    schema: dict[str, State] = attrs.field(converter=to_schema)
    parent_id: str = ""
    tags: tuple[str, ...] = attrs.field(default=(), converter=_names_tuple)
    active: frozenset[str] = attrs.field(default=frozenset(), converter=_names_set)
    ticks: dict[str, int] = attrs.field(factory=dict, converter=_ticks)
    groups: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    own: tuple[str, ...] | None = None

    @property
    def state_names(self) -> list[str]:
        """The states, in schema order."""
        return list(self.schema)

    @property
    def source_id(self) -> str:
        """The id of the machine a network machine mirrors ("" if not one)."""
        for tag in self.tags:
            if tag.startswith("src-id:"):
                return tag[len("src-id:") :]
        return ""


@attrs.frozen
class Pipe:
    """``source``'s ``source_state`` piped into ``target``'s ``target_state``.

    ``kind`` is what the pipe does to the target: ``add`` or ``remove``.
    A half-known pipe (only one side's record seen) has an empty state name.
    """

    source: str
    source_state: str
    target: str
    target_state: str
    kind: PipeKind


@attrs.frozen
class PipeLine:
    """One parsed pipe log line: this side's state and the peer machine's id."""

    direction: Literal["in", "out"]
    kind: PipeKind
    state: str
    peer: str


_PIPE_RE = re.compile(r"^\[pipe-(in|out):(add|remove)\] (\S+) (?:to|from) (\S+)\s*$")


def parse_pipe_line(line: str) -> PipeLine | None:
    """Parse ``[pipe-out:add] Foo to <id>`` / ``[pipe-in:remove] Bar from <id>``.

    Returns ``None`` for any other line (log streams mix all kinds).
    """
    m = _PIPE_RE.match(line)
    if m is None:
        return None
    direction, kind, state, peer = m.groups()
    return PipeLine(direction, kind, state, peer)  # type: ignore[arg-type]


def _groups_of(mach: Any, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    getter = getattr(mach, "groups", None)
    if getter is None:
        return {}
    indexes, order = getter()
    out: dict[str, tuple[str, ...]] = {}
    for name in order:
        out[name] = tuple(names[i] for i in indexes.get(name, ()) if i < len(names))
    return out


def node_of(target: Any, *, id: str = "", active: Iterable[str] | None = None) -> MachineNode:
    """A :class:`MachineNode` from a machine, an ``am.States`` class or a schema.

    A machine gives its id, parent, tags, groups, clock and active states; a
    States class its class name, typed groups and own states; for a plain schema
    pass ``id``. ``active`` overrides the active states.
    """
    if isinstance(target, MachineNode):
        if active is None:
            return target
        return attrs.evolve(target, active=_names_set(active))
    if isinstance(target, type) and issubclass(target, States):
        names = target.names()
        indexes, order = target.state_groups()
        groups = {
            ("self" if g == "self" else g): tuple(names[i] for i in indexes[g]) for g in order
        }
        return MachineNode(
            id=id or target.__name__,
            schema=target.schema(),
            groups=groups,
            active=_names_set(active or ()),
            own=tuple(target._own),
        )
    if hasattr(target, "schema") and hasattr(target, "active_states"):
        names = list(target.state_names)
        return MachineNode(
            id=id or target.id,
            schema=target.schema,
            parent_id=target.parent_id,
            tags=tuple(target.tags),
            active=_names_set(active if active is not None else target.active_states()),
            ticks=dict(target.clock()),
            groups=_groups_of(target, names),
        )
    if isinstance(target, Mapping):
        return MachineNode(id=id or "machine", schema=target, active=_names_set(active or ()))
    raise GraphError(
        "expected a machine, an am.States class, a schema mapping or a MachineNode,"
        f" got {type(target).__name__}"
    )


@attrs.define
class Graph:
    """Machines (by id, in insertion order) and the pipes between them."""

    machines: dict[str, MachineNode] = attrs.field(factory=dict)
    pipes: list[Pipe] = attrs.field(factory=list)
    # pipe log lines per machine id, paired into ``pipes`` by ``_pair_pipes``
    _pipe_lines: dict[str, list[PipeLine]] = attrs.field(factory=dict, alias="_pipe_lines")

    @classmethod
    def of(cls, *targets: Any) -> Graph:
        """A graph of live machines (see :meth:`add`)."""
        g = cls()
        for t in targets:
            g.add(t)
        return g

    def __contains__(self, mach_id: object) -> bool:
        return mach_id in self.machines

    def __iter__(self) -> Iterator[MachineNode]:
        return iter(self.machines.values())

    def __len__(self) -> int:
        return len(self.machines)

    def add(self, target: Any, *, pipe_lines: Iterable[str] | None = None) -> MachineNode:
        """Add (or replace) a machine; its pipes are read from ``am.states.pipes``.

        ``pipe_lines`` gives the pipe log lines yourself (for recorded data).
        """
        node = node_of(target)
        self.machines[node.id] = node
        if pipe_lines is None and not isinstance(target, MachineNode | Mapping | type):
            from .states.pipes import pipes_of

            pipe_lines = pipes_of(target)
        if pipe_lines is not None:
            self.add_pipe_lines(node.id, pipe_lines)
        return node

    def add_pipe_lines(self, mach_id: str, lines: Iterable[str]) -> None:
        """Record pipe log lines of ``mach_id`` (others are ignored) and re-pair pipes."""
        parsed = [p for p in map(parse_pipe_line, lines) if p is not None]
        if parsed:
            self._pipe_lines.setdefault(mach_id, []).extend(parsed)
            self._pair_pipes()

    def remove_pipes_of(self, mach_id: str) -> None:
        """Forget the pipes of a machine (a ``[pipe:gc] <id>`` line)."""
        self._pipe_lines.pop(mach_id, None)
        for lines in self._pipe_lines.values():
            lines[:] = [p for p in lines if p.peer != mach_id]
        self._pair_pipes()

    def _pair_pipes(self) -> None:
        # an out line of S (state, peer T) pairs with T's next in line from S of the
        # same kind; unpaired halves keep an empty state name
        ins: dict[tuple[str, str, str], deque[str]] = {}
        for tgt, lines in self._pipe_lines.items():
            for p in lines:
                if p.direction == "in":
                    ins.setdefault((p.peer, tgt, p.kind), deque()).append(p.state)
        pipes: list[Pipe] = []
        for src, lines in self._pipe_lines.items():
            for p in lines:
                if p.direction != "out":
                    continue
                q = ins.get((src, p.peer, p.kind))
                tstate = q.popleft() if q else ""
                pipes.append(Pipe(src, p.state, p.peer, tstate, p.kind))
        for (src, tgt, kind), rest in ins.items():
            if src in self._pipe_lines:
                continue  # the source's out lines were seen; extra ins stay unpaired
            pipes.extend(Pipe(src, "", tgt, s, kind) for s in rest)  # type: ignore[arg-type]
        self.pipes = pipes

    def node(self, mach_id: str) -> MachineNode:
        """The machine ``mach_id``; :class:`GraphError` naming it when absent."""
        try:
            return self.machines[mach_id]
        except KeyError:
            raise GraphError(
                f"machine {mach_id!r} is not in the graph (has: {', '.join(self.machines)})"
            ) from None

    def children(self, mach_id: str) -> list[str]:
        """Ids of the machines whose parent is ``mach_id``."""
        return [m.id for m in self if m.parent_id == mach_id]

    def rpc_links(self) -> list[tuple[str, str]]:
        """``(network machine id, source machine id)`` for every aRPC mirror."""
        return [(m.id, m.source_id) for m in self if m.source_id]

    def connections(self, mach_id: str) -> set[str]:
        """Machines linked to ``mach_id`` by a parent, pipe or aRPC edge."""
        out: set[str] = set()
        node = self.node(mach_id)
        if node.parent_id:
            out.add(node.parent_id)
        out.update(self.children(mach_id))
        for p in self.pipes:
            if p.source == mach_id:
                out.add(p.target)
            elif p.target == mach_id:
                out.add(p.source)
        for a, b in self.rpc_links():
            if a == mach_id:
                out.add(b)
            elif b == mach_id:
                out.add(a)
        return out & set(self.machines)

    def near(self, start: Sequence[str], distance: int) -> Graph:
        """The machines at most ``distance`` links from any of ``start``."""
        seen = {s: 0 for s in start}
        for s in start:
            self.node(s)
        todo = deque(start)
        while todo:
            cur = todo.popleft()
            if seen[cur] >= distance:
                continue
            for nxt in self.connections(cur):
                if nxt not in seen:
                    seen[nxt] = seen[cur] + 1
                    todo.append(nxt)
        return self.subgraph(seen)

    def subgraph(self, ids: Iterable[str]) -> Graph:
        """Only the machines ``ids`` (graph order kept) and the pipes among them."""
        keep = set(ids)
        g = Graph({k: v for k, v in self.machines.items() if k in keep})
        g.pipes = [p for p in self.pipes if p.source in keep and p.target in keep]
        return g

    def inspect(self) -> str:
        """A Markdown report: per machine its parent, active states, links and pipes."""
        lines: list[str] = []
        for m in self:
            lines.append(f"## {m.id}")
            lines.append("")
            if m.parent_id:
                lines.append(f"- parent: {m.parent_id}")
            if m.tags:
                lines.append(f"- tags: {', '.join(m.tags)}")
            lines.append(f"- states: {len(m.schema)}, time: {sum(m.ticks.values())}")
            lines.append(f"- active: {', '.join(s for s in m.schema if s in m.active) or '-'}")
            for a, b in self.rpc_links():
                if m.id in (a, b):
                    lines.append(f"- rpc: {b if a == m.id else a}")
            for p in self.pipes:
                if p.source == m.id:
                    lines.append(
                        f"- pipe [{p.kind}] {p.source_state or '?'} -> "
                        f"{p.target}:{p.target_state or '?'}"
                    )
            lines.append("")
        return "\n".join(lines)
