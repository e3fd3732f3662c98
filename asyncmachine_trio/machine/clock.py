"""Ticks and machine time: `Time` (ticks by state index) and `TimeIndex` (semantics §2).

A tick is a non-negative int counting a state's activations and deactivations;
odd means active (semantics §2.1). Index arguments follow the reference: -1 stands for
an unknown state. Indexes the reference would crash on (out of range, other
negatives) read as tick 0 here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from ._mypyc import mypyc_attr

__all__ = [
    "Time",
    "TimeIndex",
    "is_active_tick",
    "next_active",
    "next_active_in",
    "next_inactive",
    "next_inactive_in",
]


def _states_to_index(names: Sequence[str], states: Sequence[str]) -> list[int]:
    """Position of each state in `names` (first match), -1 when unknown."""
    positions: dict[str, int] = {}
    for i, name in enumerate(names):
        positions.setdefault(name, i)
    return [positions.get(state, -1) for state in states]


def _index_to_states(names: Sequence[str], idxs: Iterable[int]) -> list[str]:
    """The name at each index, ``unknown<N>`` when out of range (semantics §12.3)."""
    return [names[i] if 0 <= i < len(names) else f"unknown{i}" for i in idxs]


def is_active_tick(tick: int) -> bool:
    """True if `tick` marks an active state, i.e. it is odd (semantics §2.1)."""
    return tick % 2 == 1


def next_active(tick: int) -> int:
    """The next tick at which the state becomes active (semantics §2.2)."""
    return tick + 2 if is_active_tick(tick) else tick + 1


def next_inactive(tick: int) -> int:
    """The next tick at which the state becomes inactive (semantics §2.2)."""
    return tick + 1 if is_active_tick(tick) else tick + 2


def next_active_in(tick: int) -> int:
    """How many ticks until the state is next activated: 2 if active, else 1."""
    return 2 if is_active_tick(tick) else 1


def next_inactive_in(tick: int) -> int:
    """How many ticks until the state is next deactivated: 1 if active, else 2."""
    return 1 if is_active_tick(tick) else 2


@mypyc_attr(native_class=False)  # a list subclass: mypyc keeps it a Python class
class Time(list[int]):
    """Machine time: a list of state ticks in a given state order (semantics §2.2)."""

    __slots__ = ()

    @classmethod
    def from_active(cls, length: int, active_idxs: Iterable[int]) -> Time:
        """A zeroed Time of `length`, tick 1 at `active_idxs` (out of range skipped)."""
        ret = cls([0] * length)
        for i in active_idxs:
            if 0 <= i < length:
                ret[i] = 1
        return ret

    def __str__(self) -> str:
        """Ticks joined by single spaces, e.g. ``"1 0 3"``."""
        return " ".join(str(tick) for tick in self)

    def __repr__(self) -> str:
        """``Time([1, 0, 3])``."""
        return f"Time({list.__repr__(self)})"

    # reading ticks

    def tick(self, idx: int) -> int:
        """The tick at `idx`, or 0 when `idx` is out of range (or negative)."""
        if 0 <= idx < len(self):
            return self[idx]
        return 0

    def is1(self, idx: int) -> bool:
        """True if the state at `idx` is active; False for -1 / out of range."""
        return is_active_tick(self.tick(idx))

    def is_(self, idxs: Sequence[int]) -> bool:
        """True if all `idxs` are active; False for an empty list or any -1 (2.2)."""
        if not idxs:
            return False
        return all(idx != -1 and is_active_tick(self.tick(idx)) for idx in idxs)

    def not_(self, idxs: Sequence[int]) -> bool:
        """True if none of `idxs` is active; True when empty, -1 ignored (2.2)."""
        return not any(idx != -1 and is_active_tick(self.tick(idx)) for idx in idxs)

    def not1(self, idx: int) -> bool:
        """True if the state at `idx` is inactive; False for -1 / out of range (2.2)."""
        if not 0 <= idx < len(self):
            return False
        return not is_active_tick(self[idx])

    def any(self, *idx_lists: Sequence[int]) -> bool:
        """True if any of the index lists is entirely active (see `is_`)."""
        return any(self.is_(idxs) for idxs in idx_lists)

    def any1(self, *idxs: int) -> bool:
        """True if any of `idxs` is active (see `is1`)."""
        return any(self.is1(idx) for idx in idxs)

    def active_states(self, idxs: Sequence[int] | None = None) -> list[int]:
        """Indexes with odd ticks, in index order; limited to `idxs` when given."""
        wanted = None if idxs is None else set(idxs)
        return [
            i
            for i, tick in enumerate(self)
            if is_active_tick(tick) and (wanted is None or i in wanted)
        ]

    def non_zero_states(self) -> list[int]:
        """Indexes whose tick is not 0, in index order."""
        return [i for i, tick in enumerate(self) if tick != 0]

    def sum(self, idxs: Sequence[int] | None = None) -> int:
        """The sum of all ticks, or of the ticks at `idxs` (out of range skipped)."""
        if idxs is None:
            return sum(self)
        return sum(self.tick(idx) for idx in idxs)

    def filter(self, idxs: Sequence[int]) -> Time:
        """The ticks at `idxs`, in that order; 0 for an out-of-range index."""
        return Time(self.tick(idx) for idx in idxs)

    # arithmetic

    def increment(self, idx: int) -> Time:
        """A copy with 1 added to the tick at `idx` (out of range: plain copy)."""
        ret = Time(self)
        if 0 <= idx < len(ret):
            ret[idx] += 1
        return ret

    def add(self, t2: Sequence[int]) -> Time:
        """Element-wise sum; a copy of self when the lengths differ (semantics §2.2)."""
        if len(self) != len(t2):
            return Time(self)
        return Time(a + b for a, b in zip(self, t2, strict=True))

    def diff_since(self, before: Sequence[int]) -> Time:
        """Element-wise ``self - before``; all zeros when the lengths differ (2.2)."""
        if len(self) != len(before):
            return Time([0] * len(self))
        return Time(a - b for a, b in zip(self, before, strict=True))

    # comparisons

    def equal(self, strict: bool, t2: Sequence[int]) -> bool:
        """Same ticks; with `strict` also the same length, else the shared prefix."""
        if strict and len(self) != len(t2):
            return False
        return all(a == b for a, b in zip(self, t2, strict=False))

    def after(self, or_equal: bool, t2: Sequence[int]) -> bool:
        """True if EVERY shared position is > t2 (>= with `or_equal`) (semantics §2.2)."""
        if or_equal:
            return all(a >= b for a, b in zip(self, t2, strict=False))
        return all(a > b for a, b in zip(self, t2, strict=False))

    def before(self, or_equal: bool, t2: Sequence[int]) -> bool:
        """True if EVERY shared position is < t2 (<= with `or_equal`) (semantics §2.2)."""
        if or_equal:
            return all(a <= b for a, b in zip(self, t2, strict=False))
        return all(a < b for a, b in zip(self, t2, strict=False))

    def to_index(self, names: Sequence[str]) -> TimeIndex:
        """This time bound to the state names `names` (shares nothing with self)."""
        return TimeIndex(self, names)


class TimeIndex:
    """A `Time` bound to its list of state names; helpers take names (semantics §2.2)."""

    __slots__ = ("index", "time")

    time: Time
    index: list[str]

    def __init__(self, time: Iterable[int], index: Iterable[str]) -> None:
        """Bind (copies of) `time` to the state names `index`."""
        self.time = Time(time)
        self.index = list(index)

    @classmethod
    def from_active(cls, index: Sequence[str], active_idxs: Iterable[int]) -> TimeIndex:
        """Ticks 1 at `active_idxs`, 0 elsewhere, over `index` (Go NewTimeIndex)."""
        return cls(Time.from_active(len(index), active_idxs), index)

    def __str__(self) -> str:
        """The active state names joined by single spaces."""
        return " ".join(self.active_states())

    def __repr__(self) -> str:
        """``TimeIndex(time=..., index=...)``."""
        return f"TimeIndex(time={list(self.time)!r}, index={self.index!r})"

    def __eq__(self, other: object) -> bool:
        """Equal when both the ticks and the state names are equal."""
        if not isinstance(other, TimeIndex):
            return NotImplemented
        # list(): mypyc compiles == between two Time (a list subclass) wrongly
        return list(self.time) == list(other.time) and self.index == other.index

    __hash__: ClassVar[None] = None  # type: ignore[assignment]

    def _idxs(self, states: Sequence[str]) -> list[int]:
        return _states_to_index(self.index, states)

    def state_name(self, idx: int) -> str:
        """The name at `idx`, or "" when out of range."""
        if 0 <= idx < len(self.index):
            return self.index[idx]
        return ""

    def tick(self, state: str) -> int:
        """The tick of `state`; 0 when unknown."""
        return self.time.tick(self._idxs([state])[0])

    def is_(self, states: Sequence[str]) -> bool:
        """True if all `states` are active; False when empty or any is unknown."""
        return self.time.is_(self._idxs(states))

    def is1(self, state: str) -> bool:
        """True if `state` is active; False when unknown."""
        return self.time.is_(self._idxs([state]))

    def not_(self, states: Sequence[str]) -> bool:
        """True if none of `states` is active; unknown names are ignored (2.2)."""
        return self.time.not_(self._idxs(states))

    def not1(self, state: str) -> bool:
        """True if `state` is not active; unlike `Time.not1`, unknown gives True."""
        return self.time.not_(self._idxs([state]))

    def any(self, *groups: str | Sequence[str]) -> bool:
        """True if any group is entirely active; a bare name is a group of one."""
        return self.time.any(*(self._idxs([g] if isinstance(g, str) else g) for g in groups))

    def any1(self, *states: str) -> bool:
        """True if any of `states` is active."""
        return self.time.any1(*self._idxs(states))

    def active_states(self, states: Sequence[str] | None = None) -> list[str]:
        """Active names in index order (``unknown<N>`` past the index), filtered."""
        names = _index_to_states(self.index, self.time.active_states())
        if states is None:
            return names
        wanted = set(states)
        return [name for name in names if name in wanted]

    def non_zero_states(self) -> list[str]:
        """Names whose tick is not 0, in index order."""
        return _index_to_states(self.index, self.time.non_zero_states())

    def sum(self, states: Sequence[str] | None = None) -> int:
        """The sum of all ticks, or of the ticks of `states` (unknown skipped)."""
        if states is None:
            return self.time.sum()
        return self.time.sum(self._idxs(states))

    def filter(self, states: Sequence[str]) -> TimeIndex:
        """The ticks of `states` (0 when unknown), indexed by `states` itself."""
        return TimeIndex(self.time.filter(self._idxs(states)), states)
