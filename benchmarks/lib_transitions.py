"""transitions (pytransitions): ``Machine`` and ``AsyncMachine``.

The toggle is one ``toggle`` trigger (a -> b, b -> a) with ``auto_transitions=False``; each
state has one on-enter callback that only counts its calls. ``toggle-nocb`` is the reference
script's case without callbacks (the issue's 9.0 us figure).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .harness import Case, TimedRun

NAME = "transitions"
DISTS = ("transitions",)

TOGGLE_T = [["toggle", "a", "b"], ["toggle", "b", "a"]]
STATES50 = [f"s{i}" for i in range(50)]
CHAIN50 = [["next", STATES50[i], STATES50[(i + 1) % 50]] for i in range(50)]


class BenchError(AssertionError):
    pass


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(what)


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def cb(self) -> None:
        self.calls += 1

    async def acb(self) -> None:
        self.calls += 1


def toggle_states(cb: Callable[[], Any] | None, size: int = 2) -> list[Any]:
    states: list[Any] = [
        {"name": "a", "on_enter": [cb] if cb else []},
        {"name": "b", "on_enter": [cb] if cb else []},
    ]
    states += [f"f{i}" for i in range(size - 2)]
    return states


def toggle_run(size: int = 2, callbacks: bool = True) -> TimedRun:
    from transitions import Machine

    def run(n: int) -> float:
        c = Counter()
        m: Any = Machine(
            states=toggle_states(c.cb if callbacks else None, size),
            transitions=TOGGLE_T,
            initial="a",
            auto_transitions=False,
        )
        toggle = m.toggle
        t0 = time.perf_counter()
        for _ in range(n):
            toggle()
        elapsed = time.perf_counter() - t0
        expect(m.state == "a" and c.calls == (n if callbacks else 0), "n transitions ran")
        return elapsed

    return run


def build50() -> object:
    from transitions import Machine

    return Machine(states=STATES50, transitions=CHAIN50, initial="s0", auto_transitions=False)


def build50_run(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        build50()
    return time.perf_counter() - t0


def async_toggle_main(n: int) -> Callable[[], Coroutine[Any, Any, float]]:
    """``await m.toggle()`` n times; AsyncMachine awaits the async callbacks in the trigger."""

    async def main() -> float:
        from transitions.extensions.asyncio import AsyncMachine

        c = Counter()
        m: Any = AsyncMachine(
            states=toggle_states(c.acb), transitions=TOGGLE_T, initial="a", auto_transitions=False
        )
        t0 = time.perf_counter()
        for _ in range(n):
            await m.toggle()
        elapsed = time.perf_counter() - t0
        expect(m.state == "a" and c.calls == n, "n callbacks completed")
        return elapsed

    return main


def async_asyncio_run(n: int) -> float:
    return asyncio.run(async_toggle_main(n)())


def async_trio_run(n: int) -> float:
    import trio

    return trio.run(async_toggle_main(n))


def cases() -> list[Case]:
    out = [
        Case("toggle", "toggle", "Machine, on_enter callbacks", "transition", toggle_run()),
        Case(
            "toggle-nocb",
            "toggle",
            "Machine, no callbacks",
            "transition",
            toggle_run(callbacks=False),
        ),
        Case(
            "build50",
            "build50",
            "Machine(50 states, auto_transitions=False)",
            "instance",
            build50_run,
            note="every instance compiles its own states and transitions",
        ),
        Case(
            "async-asyncio",
            "async toggle",
            "AsyncMachine, async on_enter [asyncio]",
            "step",
            async_asyncio_run,
        ),
        Case(
            "async-trio",
            "async toggle",
            "AsyncMachine, async on_enter [trio]",
            "step",
            async_trio_run,
            note="attempted: AsyncMachine is asyncio-only",
        ),
    ]
    for size in (10, 100, 1000):
        out.append(
            Case(
                f"scale-{size}",
                "scale",
                f"toggle in {size} states",
                "transition",
                toggle_run(size),
            )
        )
    out.append(Case("memory", "memory", "Machine(50 states), no model", "byte", make=build50))
    return out
