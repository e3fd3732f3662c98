"""python-statemachine: the sync engine and the async engine (``StateChart`` and the
compatibility ``StateMachine`` base).

The toggle is one ``toggle`` event (a -> b | b -> a) with an ``on_enter_a`` / ``on_enter_b``
callback that only counts its calls; ``async def`` callbacks switch a machine to the async
engine. Every class gets a unique name: the library keeps state per class name.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .harness import Case, TimedRun

NAME = "python-statemachine"
DISTS = ("python-statemachine",)

_names = itertools.count()


class BenchError(AssertionError):
    pass


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(what)


def _bases() -> list[tuple[str, type]]:
    from statemachine import StateChart, StateMachine

    return [("StateChart", StateChart), ("StateMachine", StateMachine)]


def _count(self: Any) -> None:
    self.calls += 1


async def _acount(self: Any) -> None:
    self.calls += 1


def toggle_class(base: type, is_async: bool = False, size: int = 2) -> type:
    from statemachine import State

    ns: dict[str, Any] = {"calls": 0}
    if size > 2:  # the unrelated states have no transitions: allow that
        ns["validate_disconnected_states"] = ns["validate_trap_states"] = False
    a, b = State(initial=True), State()
    ns["a"], ns["b"] = a, b
    for i in range(size - 2):
        ns[f"f{i}"] = State()
    ns["toggle"] = a.to(b) | b.to(a)
    cb = _acount if is_async else _count
    ns["on_enter_a"] = ns["on_enter_b"] = cb
    return type(f"Toggle{next(_names)}", (base,), ns)


def toggle_run(base: type, size: int = 2) -> TimedRun:
    cls = toggle_class(base, size=size)

    def run(n: int) -> float:
        sm: Any = cls()
        calls = sm.calls
        toggle = sm.toggle
        t0 = time.perf_counter()
        for _ in range(n):
            toggle()
        elapsed = time.perf_counter() - t0
        expect(sm.calls - calls == n and "a" in sm.configuration_values, "n transitions ran")
        return elapsed

    return run


def chain50_ns() -> dict[str, Any]:
    from statemachine import State

    ns: dict[str, Any] = {}
    states = [State(initial=(i == 0)) for i in range(50)]
    for i, s in enumerate(states):
        ns[f"s{i}"] = s
    event = states[0].to(states[1])
    for i in range(1, 50):
        event = event | states[i].to(states[(i + 1) % 50])
    ns["next"] = event
    return ns


def chain50_class(base: type) -> type:
    return type(f"Chain{next(_names)}", (base,), chain50_ns())


def build_first_run(base: type) -> TimedRun:
    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            chain50_class(base)()
        return time.perf_counter() - t0

    return run


def build_run(base: type) -> TimedRun:
    cls = chain50_class(base)

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            cls()
        return time.perf_counter() - t0

    return run


def async_main(cls: type, n: int) -> Callable[[], Coroutine[Any, Any, float]]:
    async def main() -> float:
        sm: Any = cls()
        await sm.activate_initial_state()
        calls = sm.calls
        t0 = time.perf_counter()
        for _ in range(n):
            await sm.toggle()
        elapsed = time.perf_counter() - t0
        expect(sm.calls - calls == n, "n callbacks completed")
        return elapsed

    return main


def async_run(base: type, backend: str) -> TimedRun:
    cls = toggle_class(base, is_async=True)

    def run(n: int) -> float:
        if backend == "trio":
            import trio

            return trio.run(async_main(cls, n))
        return asyncio.run(async_main(cls, n)())

    return run


def cases() -> list[Case]:
    out: list[Case] = []
    bases = _bases()
    for label, base in bases:
        out.append(
            Case(
                f"toggle-{label}",
                "toggle",
                f"{label}, on_enter callbacks",
                "transition",
                toggle_run(base),
            )
        )
    for label, base in bases:
        out.append(
            Case(
                f"build50-{label}",
                "build50",
                f"{label}(50 states) instance",
                "instance",
                build_run(base),
            )
        )
        out.append(
            Case(
                f"build50-first-{label}",
                "build50",
                f"{label}(50 states) class + instance",
                "instance",
                build_first_run(base),
            )
        )
    for label, base in bases:
        for backend in ("asyncio", "trio"):
            note = ""
            if backend == "trio":
                note = "attempted: the async engine needs a running asyncio loop"
            out.append(
                Case(
                    f"async-{backend}-{label}",
                    "async toggle",
                    f"{label}, async on_enter [{backend}]",
                    "step",
                    async_run(base, backend),
                    note=note,
                )
            )
    chart = bases[0][1]
    for size in (10, 100, 1000):
        out.append(
            Case(
                f"scale-{size}",
                "scale",
                f"StateChart toggle in {size} states",
                "transition",
                toggle_run(chart, size),
            )
        )
    chain = chain50_class(chart)
    out.append(Case("memory", "memory", "StateChart(50 states) instance", "byte", make=chain))
    return out
