"""sismic: a ``Statechart`` run by an ``Interpreter``.

The toggle queues a ``toggle`` event and runs ``execute_once()`` (one macro step); each state
has ``on_entry="cb()"``, sismic's per-state action, with ``cb`` a counting function in the
interpreter's context. Sismic has no async API, so there is no async case.
"""

from __future__ import annotations

import time
from typing import Any

from sismic.interpreter import Interpreter  # type: ignore[import-untyped]
from sismic.model import BasicState, CompoundState, Statechart, Transition  # type: ignore[import-untyped]

from .harness import Case, TimedRun

NAME = "sismic"
DISTS = ("sismic",)

STATES50 = [f"s{i}" for i in range(50)]


class BenchError(AssertionError):
    pass


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(what)


def chart(names: list[str], pairs: list[tuple[str, str, str]], on_entry: set[str]) -> Any:
    sc = Statechart("bench")
    sc.add_state(CompoundState("root", initial=names[0]), None)
    for s in names:
        sc.add_state(BasicState(s, on_entry="cb()" if s in on_entry else None), "root")
    for event, src, dst in pairs:
        sc.add_transition(Transition(src, dst, event=event))
    return sc


def toggle_chart(size: int = 2) -> Any:
    names = ["a", "b"] + [f"f{i}" for i in range(size - 2)]
    return chart(names, [("toggle", "a", "b"), ("toggle", "b", "a")], {"a", "b"})


def toggle_run(size: int = 2) -> TimedRun:
    sc = toggle_chart(size)

    def run(n: int) -> float:
        calls = [0]

        def cb() -> None:
            calls[0] += 1

        it = Interpreter(sc, initial_context={"cb": cb})
        it.execute_once()  # enters the initial configuration
        queue, execute_once = it.queue, it.execute_once
        t0 = time.perf_counter()
        for _ in range(n):
            queue("toggle")
            execute_once()
        elapsed = time.perf_counter() - t0
        expect(calls[0] == n + 1 and "a" in it.configuration, "n transitions ran")
        return elapsed

    return run


PAIRS50 = [("next", STATES50[i], STATES50[(i + 1) % 50]) for i in range(50)]
CHART50: Any = None


def build50() -> object:
    """An interpreter of the shared 50-state chart, in its initial configuration (sismic
    enters it lazily, on the first ``execute_once``)."""
    it = Interpreter(CHART50)
    it.execute_once()
    return it


def build_run(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        build50()
    return time.perf_counter() - t0


def build_first_run(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        Interpreter(chart(STATES50, PAIRS50, set())).execute_once()
    return time.perf_counter() - t0


def cases() -> list[Case]:
    global CHART50
    CHART50 = chart(STATES50, PAIRS50, set())
    out = [
        Case("toggle", "toggle", "Interpreter, on_entry action", "transition", toggle_run()),
        Case("build50", "build50", "Interpreter of a 50-state chart", "instance", build_run),
        Case(
            "build50-first",
            "build50",
            "Statechart(50) + Interpreter",
            "instance",
            build_first_run,
        ),
    ]
    for size in (10, 100, 1000):
        out.append(
            Case(
                f"scale-{size}",
                "scale",
                f"Interpreter toggle in {size} states",
                "transition",
                toggle_run(size),
            )
        )
    out.append(Case("memory", "memory", "Interpreter of a 50-state chart", "byte", make=build50))
    return out
