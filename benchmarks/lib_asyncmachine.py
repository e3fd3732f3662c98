"""asyncmachine-trio: every case of issue 6.

Machines are built with ``handler_timeout=None`` (the peers time no handlers, and on a loaded
machine a 0.1 s timeout could cancel a transition mid-benchmark); the ``toggle-defaults`` row
shows the default settings. Handlers only count their calls, and every run checks afterwards
that the clocks moved (and the handlers ran) exactly as often as it claims.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

import asyncmachine_trio as am

from .harness import Case, TimedRun

NAME = "asyncmachine-trio"
DISTS = ("asyncmachine-trio", "trio", "anyio")

FORKS = 100  # tasks forked per activation (case 7)
WAITERS = 1000  # pending when1 waiters (case 6)


class BenchError(AssertionError):
    """A run did not do what it claims to measure."""


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(what)


TOGGLE: dict[str, am.State] = {
    "A": am.State(remove=("B",)),
    "B": am.State(remove=("A",)),
}


class ToggleHandlers:
    """Case 1: a no-op ``a_state`` and ``b_state`` (they count their calls)."""

    def __init__(self) -> None:
        self.calls = 0

    def a_state(self, e: am.Event) -> None:
        self.calls += 1

    def b_state(self, e: am.Event) -> None:
        self.calls += 1


def toggle_run(schema: dict[str, am.State], **kwargs: Any) -> TimedRun:
    """Alternate ``add1("A")`` / ``add1("B")``: n transitions.

    ``kwargs`` go to :class:`am.Machine`; ``active`` (popped) lists states activated first
    and ``waiters`` a number of unrelated ``when1`` waiters registered before timing.
    """
    active: list[str] = kwargs.pop("active", [])
    n_waiters: int = kwargs.pop("waiters", 0)
    kwargs.setdefault("handler_timeout", None)

    def run(n: int) -> float:
        h = ToggleHandlers()
        mach = am.Machine(schema, **kwargs)
        mach.bind_handlers(h)
        if active:
            mach.add(active)
        others = [s for s in schema if s.startswith("C")]
        # a distinct Ctx per waiter: waiters on the same state with the same ctx are shared
        waiters = [mach.when1(others[i % len(others)], ctx=am.Ctx()) for i in range(n_waiters)]
        expect(len({id(w) for w in waiters}) == n_waiters, "waiters are distinct")
        add1 = mach.add1
        add1("B")
        tick, calls = mach.tick("A"), h.calls
        t0 = time.perf_counter()
        for _ in range(n // 2):
            add1("A")
            add1("B")
        elapsed = time.perf_counter() - t0
        expect(mach.tick("A") - tick == n and h.calls - calls == n, "n transitions ran")
        expect(not any(w.is_set() for w in waiters), "waiters stayed pending")
        expect(all(mach.is1(s) for s in active), "active states stayed active")
        return elapsed

    return run


def toggle_args_run(n: int) -> float:
    """The toggle with args: ``add1("A", {"n": 1})`` / ``add1("B", ...)`` (issue 12)."""
    h = ToggleHandlers()
    mach = am.Machine(TOGGLE, handler_timeout=None)
    mach.bind_handlers(h)
    add1 = mach.add1
    args = {"n": 1}
    add1("B", args)
    tick, calls = mach.tick("A"), h.calls
    t0 = time.perf_counter()
    for _ in range(n // 2):
        add1("A", args)
        add1("B", args)
    elapsed = time.perf_counter() - t0
    expect(mach.tick("A") - tick == n and h.calls - calls == n, "n transitions ran")
    return elapsed


class QueuedHandlers:
    """Final handlers adding the other state while ``left`` > 0: queued mutations."""

    def __init__(self) -> None:
        self.left = 0

    def a_state(self, e: am.Event) -> None:
        if self.left:
            self.left -= 1
            e.machine.add1("B")

    def b_state(self, e: am.Event) -> None:
        if self.left:
            self.left -= 1
            e.machine.add1("A")


def toggle_queued_run(n: int) -> float:
    """One ``add1`` whose handlers queue the next toggle n - 1 times (issue 12): every
    transition but the first is drained from the queue."""
    h = QueuedHandlers()
    mach = am.Machine(TOGGLE, handler_timeout=None)
    mach.bind_handlers(h)
    mach.add1("B")
    tick = mach.tick("A") + mach.tick("B")
    h.left = n - 1
    t0 = time.perf_counter()
    mach.add1("A")
    elapsed = time.perf_counter() - t0
    expect(mach.tick("A") + mach.tick("B") - tick == 2 * n and not h.left, "n transitions ran")
    return elapsed


# ----- case 2 and 8: build50


def chain50_schema() -> dict[str, am.State]:
    """50 states, each requiring the previous one."""
    return {f"S{i}": am.State(require=(f"S{i - 1}",) if i else ()) for i in range(50)}


def _noop(self: object, e: am.Event) -> None:
    pass


def chain50_handlers_class() -> type:
    """A handler class with a no-op ``s<i>_state`` for each of the 50 states."""
    return type("Chain50Handlers", (), {f"s{i}_state": _noop for i in range(50)})


CHAIN50 = chain50_schema()
Chain50Handlers = chain50_handlers_class()


def build50() -> am.Machine:
    return am.Machine(CHAIN50, handlers=Chain50Handlers(), handler_timeout=None)


def build50_run(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        build50()
    elapsed = time.perf_counter() - t0
    mach = build50()
    expect(len(mach.state_names) == 51 and not mach.is_err(), "50 states + Exception, no error")
    return elapsed


def build50_first_run(n: int) -> float:
    """Every instance with a schema dict and handler class of its own: the first compilation."""
    t0 = time.perf_counter()
    for _ in range(n):
        am.Machine(chain50_schema(), handlers=chain50_handlers_class()(), handler_timeout=None)
    return time.perf_counter() - t0


# ----- case 3: async toggle


class AsyncToggleHandlers:
    """``async def`` final handlers; each signals its completion on ``done``."""

    def __init__(self) -> None:
        self.calls = 0
        self.done = anyio.Event()

    async def a_state(self, e: am.Event) -> None:
        self.calls += 1
        self.done.set()

    async def b_state(self, e: am.Event) -> None:
        self.calls += 1
        self.done.set()


def async_toggle_run(backend: str) -> TimedRun:
    """Each step: a fresh ``anyio.Event``, ``add1``, then await the event the handler sets.

    So a step covers the transition, starting the handler's task in the state's scope,
    running it to its end and waking the waiting task.
    """

    def run(n: int) -> float:
        async def main() -> float:
            h = AsyncToggleHandlers()
            async with am.open_machine(TOGGLE, handlers=h, handler_timeout=None) as mach:
                mach.add1("B")
                await h.done.wait()
                calls = h.calls
                t0 = time.perf_counter()
                for _ in range(n // 2):
                    for state in ("A", "B"):
                        done = h.done = anyio.Event()
                        mach.add1(state)
                        await done.wait()
                elapsed = time.perf_counter() - t0
                expect(h.calls - calls == n and mach.is1("B"), "n handlers completed")
            return elapsed

        return anyio.run(main, backend=backend)

    return run


def floor_run(backend: str) -> TimedRun:
    """The floor of an async step, without the library and without anyio: each step
    spawns a task that sets a fresh event and awaits that event.

    trio: ``nursery.start_soon`` into a bare ``trio.open_nursery()``, a ``trio.Event``;
    asyncio: ``loop.create_task``, an ``asyncio.Event``. The async toggle's target is a
    ratio to this figure measured in the same run.
    """

    def run_trio(n: int) -> float:
        import trio

        async def task(done: trio.Event) -> None:
            done.set()

        async def main() -> float:
            async with trio.open_nursery() as nursery:
                t0 = time.perf_counter()
                for _ in range(n):
                    done = trio.Event()
                    nursery.start_soon(task, done)
                    await done.wait()
                return time.perf_counter() - t0

        return trio.run(main)

    def run_asyncio(n: int) -> float:
        import asyncio

        async def task(done: asyncio.Event) -> None:
            done.set()

        async def main() -> float:
            loop = asyncio.get_running_loop()
            tasks = set()
            t0 = time.perf_counter()
            for _ in range(n):
                done = asyncio.Event()
                t = loop.create_task(task(done))
                tasks.add(t)  # the loop keeps weak references to tasks only
                t.add_done_callback(tasks.discard)
                await done.wait()
            elapsed = time.perf_counter() - t0
            expect(not tasks or all(t.done() for t in tasks), "every task ended")
            return elapsed

        return asyncio.run(main())

    return run_trio if backend == "trio" else run_asyncio


# ----- case 4: relations


X = [f"X{i}" for i in range(1, 10)]
R = [f"R{i}" for i in range(1, 6)]


def relations_schema() -> dict[str, am.State]:
    """20 states: T adds X1..X9 (Require chains, After ordering) and removes R1..R5."""
    return {
        "T": am.State(add=tuple(X), remove=tuple(R)),
        "X1": am.State(require=("T",)),
        "X2": am.State(require=("X1",)),
        "X3": am.State(require=("X2",)),
        "X4": am.State(require=("X3",)),
        "X5": am.State(after=("X4",)),
        "X6": am.State(require=("X5",), after=("X1",)),
        "X7": am.State(after=("X6",)),
        "X8": am.State(require=("X7",)),
        "X9": am.State(after=("X8",), remove=("Y1",)),
        "R1": am.State(),
        "R2": am.State(require=("R1",)),
        "R3": am.State(require=("R1",)),
        "R4": am.State(require=("R2",)),
        "R5": am.State(require=("R3",)),
        "Y1": am.State(add=("Y2",)),
        "Y2": am.State(require=("Y1",)),
        "Y3": am.State(remove=("Y4",)),
        "Y4": am.State(after=("Y3",)),
        "Y5": am.State(require=("Y4",)),
    }


RELATIONS = relations_schema()
RELATIONS_AFTER = {"T", *X}


_relations_pool: list[am.Machine] = []


def relations_run(n: int) -> float:
    """``add1("T")`` on n machines with R1..R5 active (prepared untimed).

    The machines are pooled across runs: after timing, ``set(R1..R5)`` (untimed) restores
    each, so every timed mutation meets the same state and none is a machine's first.
    """
    while len(_relations_pool) < n:
        mach = am.Machine(RELATIONS, handler_timeout=None)
        mach.add(R)
        mach.add1("T")
        mach.set(R)
        _relations_pool.append(mach)
    machines = _relations_pool[:n]
    expect(all(set(m.active_states()) == set(R) for m in machines), "R1..R5 active before")
    t0 = time.perf_counter()
    for mach in machines:
        mach.add1("T")
    elapsed = time.perf_counter() - t0
    for mach in machines:
        expect(set(mach.active_states()) == RELATIONS_AFTER, "T + X1..X9 active, R1..R5 not")
        mach.set(R)
    return elapsed


# ----- case 5 and 6: scale and waiters


def scale_schema(size: int) -> dict[str, am.State]:
    """The toggle plus ``size - 2`` unrelated states (``Exception`` comes on top)."""
    schema = dict(TOGGLE)
    for i in range(size - 2):
        schema[f"F{i}"] = am.State()
    return schema


WAITERS_SCHEMA = {**TOGGLE, **{f"C{i}": am.State() for i in range(10)}}


# ----- case 7: forks


class ForkHandlers:
    """``w_state`` forks FORKS tasks into W's scope; they count themselves in and out."""

    def __init__(self) -> None:
        self.started = 0
        self.ended = 0
        self.all_started = anyio.Event()
        self.all_ended = anyio.Event()

    def w_state(self, e: am.Event) -> None:
        fork = e.machine.fork
        task = self.task
        for _ in range(FORKS):
            fork("W", task)

    async def task(self) -> None:
        self.started += 1
        if self.started == FORKS:
            self.all_started.set()
        try:
            await anyio.sleep_forever()
        finally:
            self.ended += 1
            if self.ended == FORKS:
                self.all_ended.set()


def forks_run(backend: str) -> TimedRun:
    """n times: add W (its handler forks 100 tasks), wait until all 100 run, remove W,
    wait until all 100 were cancelled and finished. One op = one task."""

    def run(n: int) -> float:
        async def main() -> float:
            h = ForkHandlers()
            schema = {"W": am.State()}
            async with am.open_machine(schema, handlers=h, handler_timeout=None) as mach:
                t0 = time.perf_counter()
                for _ in range(n):
                    h.started = h.ended = 0
                    h.all_started, h.all_ended = anyio.Event(), anyio.Event()
                    mach.add1("W")
                    await h.all_started.wait()
                    mach.remove1("W")
                    await h.all_ended.wait()
                elapsed = time.perf_counter() - t0
                expect(mach.tick("W") == 2 * n and h.ended == FORKS, "every task ran and ended")
            return elapsed

        return anyio.run(main, backend=backend)

    return run


def cases() -> list[Case]:
    out = [
        Case("toggle", "toggle", "Machine, sync a_state/b_state", "transition", toggle_run(TOGGLE)),
        Case(
            "toggle-defaults",
            "toggle",
            "as toggle, default handler_timeout=0.1 s",
            "transition",
            toggle_run(TOGGLE, handler_timeout=0.1),
        ),
        Case(
            "toggle-args",
            "toggle",
            "as toggle, add1 with args",
            "transition",
            toggle_args_run,
        ),
        Case(
            "toggle-queued",
            "toggle",
            "as toggle, each handler queues the next add1",
            "transition",
            toggle_queued_run,
        ),
        Case(
            "build50", "build50", "instance, shared schema, handlers bound", "instance", build50_run
        ),
        Case(
            "build50-first",
            "build50",
            "instance + fresh schema & handler class",
            "instance",
            build50_first_run,
        ),
        Case(
            "async-trio",
            "async toggle",
            "async def handlers [trio]",
            "step",
            async_toggle_run("trio"),
            note="step = add1 + the handler task runs to its end + the waiter wakes",
        ),
        Case(
            "async-asyncio",
            "async toggle",
            "async def handlers [asyncio]",
            "step",
            async_toggle_run("asyncio"),
            note="through anyio's asyncio backend",
        ),
        Case(
            "floor-trio",
            "async toggle",
            "floor: bare nursery spawn + trio.Event [trio]",
            "step",
            floor_run("trio"),
            note="no library, no anyio: the async toggle's trio target is a ratio to it",
        ),
        Case(
            "floor-asyncio",
            "async toggle",
            "floor: create_task + asyncio.Event [asyncio]",
            "step",
            floor_run("asyncio"),
            note="no library, no anyio",
        ),
        Case(
            "relations",
            "relations",
            "20 states: +10 via Add, -5",
            "mutation",
            relations_run,
        ),
    ]
    for size in (10, 100, 1000):
        out.append(
            Case(
                f"scale-{size}",
                "scale",
                f"toggle in {size} states",
                "transition",
                toggle_run(scale_schema(size)),
            )
        )
    big = scale_schema(1000)
    out.append(
        Case(
            "scale-1000-active",
            "scale",
            "toggle in 1000 states, 499 active",
            "transition",
            toggle_run(big, active=[f"F{i}" for i in range(0, 998, 2)]),
        )
    )
    for count in (0, WAITERS):
        out.append(
            Case(
                f"waiters-{count}",
                "waiters",
                f"toggle, {count} pending when1 on 10 others",
                "transition",
                toggle_run(WAITERS_SCHEMA, waiters=count),
            )
        )
    for backend in ("trio", "asyncio"):
        out.append(
            Case(
                f"forks-{backend}",
                "forks",
                f"{FORKS} tasks per activation [{backend}]",
                "task",
                forks_run(backend),
                per_n=FORKS,
            )
        )
    out.append(
        Case(
            "memory",
            "memory",
            "build50 instance, handlers bound",
            "byte",
            make=build50,
            count=10_000,
            fixed_count=True,
            note="the issue's 10,000 instances, whatever the time",
        )
    )
    return out
