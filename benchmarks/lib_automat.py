"""automat: ``MethodicalMachine`` and ``TypeMachineBuilder``.

The toggle is one ``toggle`` input (a -> b, b -> a). Automat has no on-enter hooks: the
equivalent of one callback per state is the output (``MethodicalMachine``) or the behaviour
function (``TypeMachineBuilder``) of the transition entering it, which only counts its calls.
Automat has no async API, so there is no async case.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from .harness import Case, TimedRun

NAME = "automat"
DISTS = ("automat",)

STATES50 = [f"s{i}" for i in range(50)]


class BenchError(AssertionError):
    pass


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(what)


class IToggle(Protocol):
    def toggle(self) -> None: ...


class INext(Protocol):
    def next(self) -> None: ...


class Core:
    def __init__(self) -> None:
        self.calls = 0


def methodical_run(n: int) -> float:
    from automat import MethodicalMachine

    class Toggle:
        _m = MethodicalMachine()  # type: ignore[no-untyped-call]

        def __init__(self) -> None:
            self.calls = 0

        @_m.state(initial=True)  # type: ignore[untyped-decorator]
        def a(self) -> None:
            "a"

        @_m.state()  # type: ignore[untyped-decorator]
        def b(self) -> None:
            "b"

        @_m.input()  # type: ignore[untyped-decorator]
        def toggle(self) -> None:
            "toggle"

        @_m.output()  # type: ignore[untyped-decorator]
        def entered(self) -> None:
            self.calls += 1

        a.upon(toggle, enter=b, outputs=[entered])
        b.upon(toggle, enter=a, outputs=[entered])

    t = Toggle()
    toggle = t.toggle
    t0 = time.perf_counter()
    for _ in range(n):
        toggle()
    elapsed = time.perf_counter() - t0
    expect(t.calls == n, "n transitions ran")
    return elapsed


def toggle_factory(size: int = 2) -> Any:
    from automat import TypeMachineBuilder

    builder = TypeMachineBuilder(IToggle, Core)
    a, b = builder.state("a"), builder.state("b")
    for i in range(size - 2):
        builder.state(f"f{i}")

    @a.upon(IToggle.toggle).to(b)
    def a_to_b(toggle: IToggle, core: Core) -> None:
        core.calls += 1

    @b.upon(IToggle.toggle).to(a)
    def b_to_a(toggle: IToggle, core: Core) -> None:
        core.calls += 1

    return builder.build()


def typed_run(size: int = 2) -> TimedRun:
    factory = toggle_factory(size)

    def run(n: int) -> float:
        core = Core()
        m = factory(core)
        toggle = m.toggle
        t0 = time.perf_counter()
        for _ in range(n):
            toggle()
        elapsed = time.perf_counter() - t0
        expect(core.calls == n, "n transitions ran")
        return elapsed

    return run


def chain50_factory() -> Any:
    from automat import TypeMachineBuilder

    builder = TypeMachineBuilder(INext, Core)
    states = [builder.state(s) for s in STATES50]
    for i in range(50):
        states[i].upon(INext.next).to(states[(i + 1) % 50]).returns(None)
    return builder.build()


def build_first_run(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        chain50_factory()(Core())
    return time.perf_counter() - t0


CHAIN50: Any = None


def build50() -> object:
    return CHAIN50(Core())


def build_run(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        build50()
    return time.perf_counter() - t0


def cases() -> list[Case]:
    global CHAIN50
    CHAIN50 = chain50_factory()
    out = [
        Case("toggle", "toggle", "MethodicalMachine, an output", "transition", methodical_run),
        Case(
            "toggle-typed",
            "toggle",
            "TypeMachineBuilder, a behaviour fn",
            "transition",
            typed_run(),
        ),
        Case("build50", "build50", "TypeMachineBuilder(50) instance", "instance", build_run),
        Case(
            "build50-first",
            "build50",
            "TypeMachineBuilder(50) build + instance",
            "instance",
            build_first_run,
        ),
    ]
    for size in (10, 100, 1000):
        out.append(
            Case(
                f"scale-{size}",
                "scale",
                f"TypeMachineBuilder toggle in {size} states",
                "transition",
                typed_run(size),
            )
        )
    out.append(Case("memory", "memory", "TypeMachineBuilder(50) instance", "byte", make=build50))
    return out
