"""The ``when*`` subscription methods of a Machine (semantics §8).

Each registers synchronously in the machine's :class:`Subscriptions` index and
returns an :class:`Waiter`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import (
    ArgumentError,
    AsyncMachineError,
)
from .names import StateNames
from .waiting import Ctx, Waiter

if TYPE_CHECKING:
    from .machine import Machine

_INTERNAL_ERRORS_MAX = 10


def disposed_waiter_or(m: Machine, kind: str) -> Waiter | None:
    if m._disposing:
        w = Waiter(kind)
        w._set = True
        w._disposed = m._id
        return w
    return None


def when(m: Machine, states: StateNames, ctx: Ctx | None = None) -> Waiter:
    """Resolves when all ``states`` are active (semantics §8)."""
    w = m._disposed_waiter_or("when")
    if w is not None:
        return w
    called = m._parse(states)
    active = m._active_set
    if not called or all(s in active for s in called) or (ctx is not None and ctx.cancelled):
        w = Waiter("when")
        w._set = True
        return w
    return m._subs.add_when(called, m.is1, False, ctx)


def when_not(m: Machine, states: StateNames, ctx: Ctx | None = None) -> Waiter:
    """Resolves when all ``states`` are inactive."""
    w = m._disposed_waiter_or("whenNot")
    if w is not None:
        return w
    called = m._parse(states)
    active = m._active_set
    if not any(s in active for s in called) or (ctx is not None and ctx.cancelled):
        w = Waiter("whenNot")
        w._set = True
        return w
    return m._subs.add_when(called, m.is1, True, ctx)


def when_time(
    m: Machine, states: StateNames, ticks: Sequence[int], ctx: Ctx | None = None
) -> Waiter:
    """Resolves when each ``states[i]`` reached tick ``ticks[i]``."""
    w = m._disposed_waiter_or("whenTime")
    if w is not None:
        return w
    if isinstance(states, str):
        raise ArgumentError(
            f"when_time takes a list of states, got the str {states!r}; use when_time1"
        )
    # port: unknown names raise here too (a tick that never moves would hang)
    m._known(states, "when_time")
    if not states or len(states) != len(ticks):
        m.add_err(
            AsyncMachineError(
                f"whenTime: states and times must have the same length ({' '.join(states)}) > 0"
            )
        )
        w = Waiter("whenTime")
        w._set = True
        return w
    return m._subs.add_when_time(list(states), list(ticks), m.tick, ctx)


def when_args(m: Machine, state: str, args: Mapping[str, Any], ctx: Ctx | None = None) -> Waiter:
    """Resolves when a ``<state>State`` event carries matching args."""
    w = m._disposed_waiter_or("whenArgs")
    if w is not None:
        return w
    m._parse1(state)
    return m._subs.add_when_args(state, args, ctx)


def when_query(m: Machine, fn: Callable[[dict[str, int]], bool], ctx: Ctx | None = None) -> Waiter:
    """Resolves when ``fn(clock)`` is true after an accepted transition."""
    w = m._disposed_waiter_or("whenQuery")
    if w is not None:
        return w
    return m._subs.add_when_query(fn, ctx)


def when_queue(m: Machine, tick: int) -> Waiter:
    """Resolves once the queue tick reached ``tick``."""
    w = m._disposed_waiter_or("whenQueue")
    if w is not None:
        return w
    if m._queue_tick >= tick:
        w = Waiter("whenQueue")
        w._set = True
        return w
    return m._subs.add_when_queue(tick)


def when_queue_ends(m: Machine) -> Waiter:
    """Resolves when the current drain finishes (at once when idle)."""
    w = m._disposed_waiter_or("whenQueueEnds")
    if w is not None:
        return w
    if not m._draining:
        w = Waiter("whenQueueEnds")
        w._set = True
        return w
    return m._subs.add_when_queue_ends()
