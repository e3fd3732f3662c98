"""Relation resolution: target states, ordering and auto mutations (semantics §4, 6.1).

The schema is compiled once into per-state tables (tuples, frozensets and an
index of who removes whom), so resolving a mutation never touches attrs objects
or scans states unrelated to the mutation.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from .errors import StateUnknownError
from .logging import L_CHANGES, L_DECISIONS, L_EVERYTHING, L_OPS
from .mutation import MutationType
from .schema import State

if TYPE_CHECKING:
    from .machine import Machine
    from .transition import Plan, Transition

__all__ = ["Relation", "Resolver", "go_stable_sort"]

_EMPTY: tuple[str, ...] = ()
_NO_SET: frozenset[str] = frozenset()


class Relation(str, enum.Enum):
    """Relation kinds; ``str()`` gives the reference's name."""

    ADD = "add"
    REQUIRE = "require"
    REMOVE = "remove"
    AFTER = "after"

    def __str__(self) -> str:
        return self.value


# ----- Go's sort.SliceStable, replicated (semantics §4.5: the After comparator is not a
# strict weak order, so only the exact algorithm gives the reference's order)


def _insertion_sort(data: list[str], a: int, b: int, less: Callable[[str, str], bool]) -> None:
    for i in range(a + 1, b):
        j = i
        while j > a and less(data[j], data[j - 1]):
            data[j], data[j - 1] = data[j - 1], data[j]
            j -= 1


def _swap_range(data: list[str], a: int, b: int, n: int) -> None:
    for i in range(n):
        data[a + i], data[b + i] = data[b + i], data[a + i]


def _rotate(data: list[str], a: int, m: int, b: int) -> None:
    i = m - a
    j = b - m
    while i != j:
        if i > j:
            _swap_range(data, m - i, m, j)
            i -= j
        else:
            _swap_range(data, m - i, m + j - i, i)
            j -= i
    _swap_range(data, m - i, m, i)


def _sym_merge(data: list[str], a: int, m: int, b: int, less: Callable[[str, str], bool]) -> None:
    if m - a == 1:
        i, j = m, b
        while i < j:
            h = (i + j) >> 1
            if less(data[h], data[a]):
                i = h + 1
            else:
                j = h
        for k in range(a, i - 1):
            data[k], data[k + 1] = data[k + 1], data[k]
        return
    if b - m == 1:
        i, j = a, m
        while i < j:
            h = (i + j) >> 1
            if not less(data[m], data[h]):
                i = h + 1
            else:
                j = h
        for k in range(m, i, -1):
            data[k], data[k - 1] = data[k - 1], data[k]
        return
    mid = (a + b) >> 1
    n = mid + m
    if m > mid:
        start, r = n - b, mid
    else:
        start, r = a, m
    p = n - 1
    while start < r:
        c = (start + r) >> 1
        if not less(data[p - c], data[c]):
            start = c + 1
        else:
            r = c
    end = n - start
    if start < m < end:
        _rotate(data, start, m, end)
    if a < start < mid:
        _sym_merge(data, a, start, mid, less)
    if mid < end < b:
        _sym_merge(data, mid, end, b, less)


def go_stable_sort(data: list[str], less: Callable[[str, str], bool]) -> None:
    """Sort in place exactly as Go's ``sort.SliceStable`` does."""
    n = len(data)
    block = 20
    a, b = 0, block
    while b <= n:
        _insertion_sort(data, a, b, less)
        a = b
        b += block
    _insertion_sort(data, a, n, less)
    while block < n:
        a, b = 0, 2 * block
        while b <= n:
            _sym_merge(data, a, a + block, b, less)
            a = b
            b += 2 * block
        m = a + block
        if m < n:
            _sym_merge(data, a, m, n, less)
        block *= 2


class _Tables:
    """Everything the resolver derives from one (schema, state order)."""

    __slots__ = (
        "add",
        "after",
        "auto_states",
        "cycle",
        "has_after",
        "multi",
        "plans",
        "remove",
        "remove_set",
        "removed_by",
        "require",
        "schema",
        "targets_memo",
        "topo_key",
    )

    def __init__(self, schema: Mapping[str, State], names: Sequence[str]) -> None:
        self.schema = dict(schema)
        self.multi = frozenset(n for n, s in schema.items() if s.multi)
        self.add = {n: s.add for n, s in schema.items() if s.add}
        self.remove = {n: s.remove for n, s in schema.items() if s.remove}
        self.remove_set = {n: frozenset(r) for n, r in self.remove.items()}
        removed_by: dict[str, set[str]] = {}
        for n, r in self.remove.items():
            for x in r:
                removed_by.setdefault(x, set()).add(n)
        self.removed_by = {k: frozenset(v) for k, v in removed_by.items()}
        self.require = {n: s.require for n, s in schema.items() if s.require}
        self.after = {n: frozenset(s.after) for n, s in schema.items() if s.after}
        # states that take part in an After relation, either side
        has_after = set(self.after)
        for a in self.after.values():
            has_after |= a
        self.has_after = frozenset(has_after)
        self.auto_states = tuple(n for n in names if n in schema and schema[n].auto)
        self.targets_memo: dict[tuple[object, ...], tuple[str, ...]] = {}
        self.plans: dict[tuple[object, ...], Plan] = {}
        self.topo_key: dict[str, int] = {}
        self.cycle = self._topology(names)

    def _topology(self, names: Sequence[str]) -> str | None:
        # DFS post-order from each state with a Require, in state order (port
        # rule for Go's map order); returns the state closing a cycle, if any
        order: list[str] = []
        visited: set[str] = set()
        temp: set[str] = set()
        require = self.require

        def visit(node: str) -> str | None:
            if node in temp:
                return node
            if node in visited:
                return None
            temp.add(node)
            for req in require.get(node, _EMPTY):
                cyc = visit(req)
                if cyc is not None:
                    return cyc
            temp.discard(node)
            visited.add(node)
            order.append(node)
            return None

        for name in names:
            if name in require and name not in visited:
                cyc = visit(name)
                if cyc is not None:
                    return cyc
        self.topo_key = {n: i for i, n in enumerate(order)}
        return None


_TABLES: dict[tuple[object, ...], _Tables] = {}
_TABLES_BY_ID: dict[int, tuple[object, tuple[str, ...], _Tables]] = {}


class Resolver:
    """The default relations resolver of a machine (Add, Remove, Require, After)."""

    __slots__ = (
        "_after",
        "_cache",
        "_has_after",
        "_mach",
        "add",
        "auto_states",
        "multi",
        "plans",
        "remove",
        "remove_set",
        "removed_by",
        "require",
        "schema",
        "topo_key",
    )

    multi: frozenset[str]
    add: dict[str, tuple[str, ...]]
    remove: dict[str, tuple[str, ...]]
    remove_set: dict[str, frozenset[str]]
    removed_by: dict[str, frozenset[str]]
    require: dict[str, tuple[str, ...]]
    auto_states: tuple[str, ...]

    def __init__(self, mach: Machine) -> None:
        self._mach = mach
        self.schema: dict[str, State] = {}
        self.topo_key: dict[str, int] = {}
        self._cache: dict[tuple[object, ...], tuple[str, ...]] = {}
        # whole transition plans, filled by Transition.setup (same invalidation)
        self.plans: dict[tuple[object, ...], Plan] = {}

    def new_schema(self, schema: Mapping[str, State], names: Sequence[str]) -> None:
        """Adopt the tables of a schema; recompute the Require topology (semantics §4.5).

        Tables are pure functions of (schema, state order), so machines built
        from the same schema share them, and the memos of resolved targets and
        transition plans with them (memory and build time per instance).
        """
        # compiled schemas are shared and never mutated: a schema object seen
        # before with the same names skips hashing its States (construction cost)
        names_t = tuple(names)
        seen = _TABLES_BY_ID.get(id(schema))
        if seen is not None and seen[0] is schema and seen[1] == names_t:
            tables = seen[2]
        else:
            key = (tuple(schema.items()), names_t)
            hit = _TABLES.get(key)
            if hit is None:
                hit = _Tables(schema, names)
                if len(_TABLES) >= 256:
                    _TABLES.clear()
                _TABLES[key] = hit
            tables = hit
            if isinstance(schema, dict):
                if len(_TABLES_BY_ID) >= 256:
                    _TABLES_BY_ID.clear()
                _TABLES_BY_ID[id(schema)] = (schema, names_t, tables)
        self.schema = tables.schema
        self.multi = tables.multi
        self.add = tables.add
        self.remove = tables.remove
        self.remove_set = tables.remove_set
        self.removed_by = tables.removed_by
        self.require = tables.require
        self._after = tables.after
        self._has_after = tables.has_after
        self.auto_states = tables.auto_states
        self._cache = tables.targets_memo
        self.plans = tables.plans
        if tables.cycle is not None:
            # a cycle keeps the previous topology (initially empty)
            m = self._mach
            m._log(
                L_CHANGES,
                f"[resolver] relation error: state {tables.cycle} has a Require cycle for {m.id}",
            )
        else:
            self.topo_key = tables.topo_key

    # ----- ordering

    def _after_less(self, x: str, y: str) -> bool:
        after = self._after
        return x in after.get(y, _NO_SET) and y not in after.get(x, _NO_SET)

    def sort_states(self, states: list[str]) -> None:
        """Sort in place: Require topology, then After with Go's stable sort (4.5)."""
        if len(states) < 2:
            return
        key = self.topo_key
        if key:
            states.sort(key=lambda s: key.get(s, -1))
        has_after = self._has_after
        if has_after and not has_after.isdisjoint(states):
            go_stable_sort(states, self._after_less)

    # ----- target states (semantics §4.2)

    def _parse_add(
        self,
        states: list[str],
        before: frozenset[str] | set[str],
        remove_called: frozenset[str] | None,
        tx: Transition | None = None,
    ) -> list[str]:
        add = self.add
        if not add:
            return states
        multi = self.multi
        out: list[str] | None = None
        visited: set[str] = set()
        for x in states:
            adds = add.get(x)
            if adds is None:
                continue
            if x in before and x not in multi:
                continue
            if x in visited:
                continue
            if remove_called is not None:
                adds = tuple(a for a in adds if a not in remove_called)
                if not adds:
                    continue
            if out is None:
                out = list(states)
            out.extend(adds)
            visited.add(x)
            if tx is not None:
                for a in adds:
                    tx._add_step_once("rel", x, a, Relation.ADD.value)
                for a in adds:
                    tx._add_step_once("activate", "", a)
        return states if out is None else out

    def _parse_require(
        self, states: list[str], is_auto: bool, tx: Transition | None = None
    ) -> list[str]:
        require = self.require
        if not require:
            return states
        missing_map: dict[str, list[str]] | None = None
        while True:
            present = set(states)
            kept: list[str] = []
            for x in states:
                reqs = require.get(x)
                if reqs is not None:
                    if tx is not None:
                        self._require_steps(tx, x, reqs, present)
                    missing = [r for r in reqs if r not in present]
                    if missing:
                        if missing_map is None:
                            missing_map = {}
                        missing_map[x] = missing
                        continue
                kept.append(x)
            if len(kept) == len(states):
                break
            states = kept
        if missing_map:
            m = self._mach
            level = L_DECISIONS if is_auto else L_OPS
            if m._log_level >= level:
                text = " ".join(f"{s}(-{' -'.join(miss)})" for s, miss in missing_map.items())
                label = "reject:auto" if is_auto else "reject"
                m._log(level, f"[{label}] {text}")
        return states

    @staticmethod
    def _require_steps(tx: Transition, x: str, reqs: Sequence[str], present: set[str]) -> None:
        """Steps of one state's Require check: each relation, and for a missing
        requirement the state deactivated (passively) and, when it was called,
        the cancel it causes."""
        called = tx.mutation.called
        for r in reqs:
            tx._add_step_once("rel", x, r, Relation.REQUIRE.value)
            if r not in present:
                tx._add_step_once("deactivate-passive", x, "")
                if x in called:
                    tx._add_step_once("cancel", "", r)

    def _after_steps(self, tx: Transition, states: list[str]) -> None:
        """One ``after`` step per ordered pair of ``states`` joined by After."""
        after = self._after
        for i, x in enumerate(states):
            deps = after.get(x)
            if deps:
                for y in states[:i]:
                    if y in deps:
                        tx._add_step_once("rel", x, y, Relation.AFTER.value)

    def target_states(
        self,
        mtype: MutationType,
        called: list[str],
        is_auto: bool,
        before: list[str],
        before_set: frozenset[str] | set[str],
        states_to_set: list[str],
        tx: Transition | None = None,
    ) -> list[str]:
        """The states active after the mutation, sorted (semantics §4.2, 4.5).

        The result depends only on the schema and (type, called, active list,
        auto), so it is memoised per schema; resolution also writes log lines
        (OPS and up) and steps, so those runs always resolve afresh.
        """
        m = self._mach
        steps = tx if tx is not None and tx._steps is not None else None
        if m._log_level >= L_OPS or steps is not None:
            return self._resolve(mtype, called, is_auto, before, before_set, states_to_set, steps)
        key = (mtype, is_auto, *called, None, *before)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= 4096:
                self._cache.clear()
            hit = tuple(self._resolve(mtype, called, is_auto, before, before_set, states_to_set))
            self._cache[key] = hit
        return list(hit)

    def _resolve(
        self,
        mtype: MutationType,
        called: list[str],
        is_auto: bool,
        before: list[str],
        before_set: frozenset[str] | set[str],
        states_to_set: list[str],
        tx: Transition | None = None,
    ) -> list[str]:
        """Resolve afresh; ``tx`` (one that records steps) gets the relation steps."""
        remove_called = frozenset(called) if mtype is MutationType.REMOVE else None
        s1 = list(dict.fromkeys(states_to_set))
        s4 = self._parse_require(
            list(dict.fromkeys(self._parse_add(s1, before_set, remove_called, tx))),
            is_auto,
            tx,
        )
        removed_by = self.removed_by
        if removed_by:
            # walk from the end: called beats active (semantics §4.2)
            in_s4 = set(s4)
            blocked: set[str] = set()
            kept: list[str] = []
            m = self._mach
            for x in reversed(s4):
                by = removed_by.get(x)
                if by is None or by.isdisjoint(in_s4):
                    kept.append(x)
                    continue
                blockers = [b for b in s4 if b in by and b not in blocked]
                if not blockers:
                    kept.append(x)
                    continue
                blocked.add(x)
                level = L_OPS if x in before_set else L_DECISIONS
                if m._log_level >= level:
                    m._log(level, f"[rel:remove] {x} by {' '.join(blockers)}")
                if tx is not None:
                    for b in blockers:
                        tx._add_step_once("rel", b, x, Relation.REMOVE.value)
                    kind = "deactivate" if x in before_set else "deactivate-passive"
                    tx._add_step_once(kind, "", x)
            to_remove: set[str] = set()
            remove = self.remove
            for k in kept:
                r = remove.get(k)
                if r:
                    to_remove.update(r)
            r2 = list(
                dict.fromkeys(
                    x
                    for x in self._parse_add(kept, before_set, remove_called, tx)
                    if x not in to_remove
                )
            )
            r2.reverse()
            targets = self._parse_require(r2, is_auto, tx)
        else:
            # nothing can be blocked, but the second parse_add still runs over
            # the reversed list and its result is reversed back: the states it
            # implies come first (A{add G}, B{add A}: add1(B) -> G B A)
            kept = s4[::-1]
            r2 = self._parse_add(kept, before_set, remove_called, tx)
            if r2 is kept:
                targets = s4  # nothing implied: the round trip is the identity
            else:
                targets = list(dict.fromkeys(r2))
                targets.reverse()
                targets = self._parse_require(targets, is_auto, tx)
        self.sort_states(targets)
        if tx is not None and self._has_after:
            self._after_steps(tx, targets)
        return targets

    def new_auto_mutation_states(
        self, active: set[str] | frozenset[str], active_list: Sequence[str]
    ) -> list[str]:
        """Auto states that are inactive and not removed by an active state (6.1)."""
        out: list[str] = []
        if not self.auto_states:
            return out
        remove_set = self.remove_set
        m = self._mach
        for s in self.auto_states:
            if s in active:
                continue
            blocker = None
            for a in active_list:
                rs = remove_set.get(a)
                if rs is not None and s in rs:
                    blocker = a
                    break
            if blocker is not None:
                if m._log_level >= L_EVERYTHING:
                    m._log(L_EVERYTHING, f"[auto:rel:remove] {s} by {blocker}")
                continue
            out.append(s)
        return out

    # ----- queries (semantics §4.6)

    def _known(self, state: str) -> State:
        try:
            return self.schema[state]
        except KeyError:
            raise StateUnknownError(
                f"state unknown: {state} not defined in schema for {self._mach.id}"
            ) from None

    def relations_of(self, state: str) -> list[Relation]:
        """Relation kinds present on ``state``, in the order add require remove after."""
        s = self._known(state)
        return [
            r
            for r, v in (
                (Relation.ADD, s.add),
                (Relation.REQUIRE, s.require),
                (Relation.REMOVE, s.remove),
                (Relation.AFTER, s.after),
            )
            if v is not None
        ]

    def relations_between(self, from_: str, to: str) -> list[Relation]:
        """Relation kinds of ``from_`` that list ``to``."""
        s = self._known(from_)
        self._known(to)
        return [
            r
            for r, v in (
                (Relation.ADD, s.add),
                (Relation.REQUIRE, s.require),
                (Relation.REMOVE, s.remove),
                (Relation.AFTER, s.after),
            )
            if v is not None and to in v
        ]

    def inbound_relations_of(self, to: str) -> list[str]:
        """States with a relation to ``to``, once per relation kind, in state order."""
        self._known(to)
        out: list[str] = []
        for name in self._mach.state_names:
            if name == to:
                continue
            s = self.schema[name]
            for v in (s.add, s.require, s.remove, s.after):
                if v is not None and to in v:
                    out.append(name)
        return out
