"""Test hooks for asyncmachine-trio machines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .machine.machine import Machine

__all__ = ["inject_state"]


def inject_state(
    mach: Machine,
    active: Sequence[str],
    clock: Mapping[str, int] | None = None,
    queue_tick: int | None = None,
) -> None:
    """Set the ordered active list, ticks (missing = 0) and queue tick directly.

    No handlers run and no transition is made. An active state given an even
    (or no) tick gets tick 1 so the clock stays consistent.
    """
    mach._inject(active, clock or {}, queue_tick)
