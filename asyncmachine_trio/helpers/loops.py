"""Conditions, machine groups and the state loop guard (help.go Cond, MachGroup, StateLoop)."""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Iterable, Mapping

import attrs

from .. import Ctx, Machine, Relation
from .api import MachineApi
from .errors import StateLoopError

# ----- conditions and groups (help.go Cond, MachGroup)


def _names(v: Iterable[str]) -> tuple[str, ...]:
    if isinstance(v, str):
        raise TypeError(f"expected a list of state names, got the str {v!r}")
    return tuple(v)


def _groups(v: Iterable[Iterable[str]]) -> tuple[tuple[str, ...], ...]:
    return tuple(_names(g) for g in v)


def _clock(v: Mapping[str, int] | None) -> dict[str, int]:
    return dict(v or {})


@attrs.frozen
class Cond:
    """A declarative condition over a machine; ``check`` is True when all parts hold (``Cond``).

    ``is_``: all active; ``any``: some group fully active; ``any1``: some state
    active; ``not_``: none active; ``clock``: every tick at least the given one.
    """

    is_: tuple[str, ...] = attrs.field(default=(), converter=_names)
    any: tuple[tuple[str, ...], ...] = attrs.field(default=(), converter=_groups)
    any1: tuple[str, ...] = attrs.field(default=(), converter=_names)
    not_: tuple[str, ...] = attrs.field(default=(), converter=_names)
    clock: dict[str, int] = attrs.field(factory=dict, converter=_clock, hash=False)

    def check(self, mach: MachineApi | None) -> bool:
        """True if ``mach`` meets every part (False for None)."""
        if mach is None:
            return False
        if not mach.is_(self.is_):
            return False
        if mach.any1(*self.not_):
            return False
        if self.any1 and not mach.any1(*self.any1):
            return False
        if self.any and not mach.any(*self.any):
            return False
        return mach.was_clock(self.clock)

    def is_empty(self) -> bool:
        """True when no part is set (the reference forgets ``any``)."""
        return not (self.is_ or self.any or self.any1 or self.not_ or self.clock)

    def __str__(self) -> str:
        groups = " ".join("[" + " ".join(g) + "]" for g in self.any)
        clock = " ".join(f"{k}:{v}" for k, v in self.clock.items())
        return (
            f"is: [{' '.join(self.is_)}], any: [{groups}], any1: [{' '.join(self.any1)}],"
            f" not: [{' '.join(self.not_)}], clock: [{clock}]"
        )


class MachGroup(list[MachineApi]):
    """A list of machines (help.go ``MachGroup``)."""

    def is1(self, state: str) -> bool:
        """``state`` is active in every machine (False for an empty group)."""
        return bool(self) and all(m.is1(state) for m in self)


# ----- state loop guard (help.go StateLoop)


class StateLoop:
    """A guard for a repeating state (e.g. ``Heartbeat``) against running away (``StateLoop``).

    Counts the ticks of the loop state, its ``require`` states and the states
    that ``add`` it (the reference's code takes any inbound relation, against
    its own comment); ``ok()`` fails when more than ``threshold`` of those
    ticks happen within one ``reset_interval``. The reference compares the
    *total* ticks with the threshold, so any long-running machine fails; here
    only the ticks of the current window count. Not thread-safe.
    """

    def __init__(
        self,
        mach: Machine,
        loop_state: str,
        check: Callable[[], bool] | None = None,
        *,
        threshold: int = 500,
        reset_interval: float = 1.0,
        clock: Callable[[], float] = _time.monotonic,
    ) -> None:
        self.mach = mach
        self.loop_state = loop_state
        self.threshold = threshold
        self.reset_interval = reset_interval
        self.clock = clock
        self._check = check
        self._ended = not mach.has1(loop_state)
        ctx_states = [loop_state]
        if not self._ended:
            ctx_states.extend(mach.schema[loop_state].require or ())
            ctx_states.extend(
                s
                for s in mach.inbound_relations_of(loop_state)
                if Relation.ADD in mach.relations_between(s, loop_state)
            )
        # an unknown loop state: ended from the start, nothing to count
        self.ctx_states: list[str] = list(dict.fromkeys(ctx_states)) if not self._ended else []
        self._window_start = self.clock()
        self._window_ticks = self.sum()
        if not self._ended:
            mach.log(str(self))

    def __str__(self) -> str:
        status = "ended" if self._ended else "ok"
        return f"StateLoop: {status} for {self.mach.id}/{self.loop_state}"

    def sum(self) -> int:
        """The sum of the ticks of the counted states."""
        return self.mach.time(self.ctx_states).sum()

    def ended(self) -> bool:
        """True once stopped (reads no context: usable in negotiation handlers)."""
        return self._ended

    def break_(self) -> None:
        """Stop the loop (Go ``Break``)."""
        self._ended = True
        self.mach.log(str(self))

    def _fail(self, what: str) -> bool:
        self._ended = True
        self.mach.add_err(StateLoopError(f"loop: {what} for {self.mach.id}/{self.loop_state}"))
        return False

    def ok(self, ctx: Ctx | None = None) -> bool:
        """True if the loop may continue; a failure adds a :class:`StateLoopError`."""
        if self._ended:
            return False
        if ctx is not None and ctx.cancelled:
            return self._fail("arg ctx expired")
        if self.mach.not1(self.loop_state):
            return self._fail("state ctx expired")
        if self._check is not None and not self._check():
            self._ended = True
            return False
        now = self.clock()
        total = self.sum()
        if now - self._window_start > self.reset_interval:
            self._window_start = now
            self._window_ticks = total
            return True
        if total - self._window_ticks > self.threshold:
            return self._fail("threshold exceeded")
        return True
