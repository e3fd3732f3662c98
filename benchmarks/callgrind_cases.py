"""The plain-path cases of issue 12, one at a time, for instruction counts and CPU time.

    python -m benchmarks.callgrind_cases CASE N          # run CASE N times (for callgrind)
    python -m benchmarks.callgrind_cases --callgrind [-n 2000]  # every case under callgrind
    python -m benchmarks.callgrind_cases --cpu           # every case, CPU time per op

Under load, wall-clock times are noise; instruction counts are not. ``--callgrind`` runs
each case under ``valgrind --tool=callgrind`` with N and 2N operations (after the same
untimed warm-up) and reports ``(Ir(2N) - Ir(N)) / N``: the instructions of one operation,
the interpreter start-up and the warm-up cancel out. ``--cpu`` reports
``time.process_time`` per operation (median of 5 repeats, gc off), in one process.

Cases (an operation is one transition unless said otherwise):

- ``toggle``: the toggle case of ``benchmarks.run`` (``A`` / ``B`` remove each other,
  sync ``a_state`` / ``b_state``), 10 states (``scale-10``), ``handler_timeout=None``;
- ``scale-1000``: the same in 1000 states; ``active-499``: 1000 states, 499 of them active;
- ``relations``: ``add1("T")`` of the relations case (+10 states, -5) then ``set(R1..R5)``
  (an operation is both transitions);
- ``args``: the toggle with args (``add1("A", {"n": 1})``);
- ``queued``: each final handler adds the other state, so every transition but the first
  is drained from the queue (an operation is one of them);
- ``default-timeout``: the toggle with the default ``handler_timeout`` (0.1 s);
- ``async-trio`` / ``async-asyncio``: the async toggle of ``benchmarks.run`` (an operation
  is a step: the transition, the handler's job, the waiting task woken), ``floor-trio`` /
  ``floor-asyncio`` its floor (a bare spawn and event per step);
- ``forks-trio`` / ``forks-asyncio``: the forks case (an operation is a round: the state's
  handler forks 100 tasks that sleep, the state is removed, all 100 end);
- ``steps-trio`` / ``steps-asyncio``: a fork that awaits ``anyio.lowlevel.checkpoint()``
  1000 times, forked again each round (so by a parked worker); an operation is one
  checkpoint. ``steps-floor-trio`` / ``steps-floor-asyncio``: the same loop in a plain
  task (``nursery.start_soon`` / ``loop.create_task``).

The async cases start an event loop per run (it cancels out of ``Ir(2N) - Ir(N)``) and
have counts of their own (``ASYNC_COUNTS``: warm-up, operations under callgrind, under
``--cpu``).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncmachine_trio as am

from .lib_asyncmachine import (
    RELATIONS,
    QueuedHandlers,
    R,
    ToggleHandlers,
    async_toggle_run,
    expect,
    floor_run,
    forks_run,
    scale_schema,
)

WARMUP = 300

Op = Callable[[int], None]


def _toggle(schema: dict[str, am.State], active: list[str] | None = None, **kw: Any) -> Op:
    kw.setdefault("handler_timeout", None)
    h = ToggleHandlers()
    mach = am.Machine(schema, **kw)
    mach.bind_handlers(h)
    if active:
        mach.add(active)
    add1 = mach.add1

    def run(n: int) -> None:
        tick = mach.tick("A")
        for _ in range(n // 2):
            add1("A")
            add1("B")
        expect(mach.tick("A") - tick == n // 2 * 2, "n transitions")

    return run


def _args() -> Op:
    h = ToggleHandlers()
    mach = am.Machine(scale_schema(10), handler_timeout=None)
    mach.bind_handlers(h)
    add1 = mach.add1
    args = {"n": 1}

    def run(n: int) -> None:
        tick = mach.tick("A")
        for _ in range(n // 2):
            add1("A", args)
            add1("B", args)
        expect(mach.tick("A") - tick == n // 2 * 2, "n transitions")

    return run


def _queued() -> Op:
    h = QueuedHandlers()
    mach = am.Machine(scale_schema(10), handler_timeout=None)
    mach.bind_handlers(h)
    mach.add1("B")

    def run(n: int) -> None:
        tick = mach.tick("A") + mach.tick("B")
        h.left = n - 1
        mach.add1("A" if mach.is1("B") else "B")
        expect(mach.tick("A") + mach.tick("B") - tick == 2 * n and not h.left, "n transitions")

    return run


def _relations() -> Op:
    mach = am.Machine(RELATIONS, handler_timeout=None)
    mach.add(R)
    add1, set_ = mach.add1, mach.set

    def run(n: int) -> None:
        tick = mach.tick("T")
        for _ in range(n):
            add1("T")
            set_(R)
        expect(mach.tick("T") - tick == 2 * n, "n operations")

    return run


STEPS = 1000  # checkpoints per task of the steps cases


def _steps(backend: str, plain: bool) -> Op:
    """n checkpoints in tasks of STEPS each: forked in a state's handler, or plain tasks."""
    import anyio.lowlevel

    async def task(done: anyio.Event) -> None:
        for _ in range(STEPS):
            await anyio.lowlevel.checkpoint()
        done.set()

    class Handlers:
        def __init__(self) -> None:
            self.done = anyio.Event()

        def w_state(self, e: am.Event) -> None:
            e.machine.fork("W", task, self.done)

    async def forked(rounds: int) -> None:
        h = Handlers()
        async with am.open_machine({"W": am.State()}, handlers=h, handler_timeout=None) as mach:
            for _ in range(rounds):
                h.done = anyio.Event()
                mach.add1("W")
                await h.done.wait()
                mach.remove1("W")
            expect(mach.tick("W") == 2 * rounds, "every round ran")

    async def plain_trio(rounds: int) -> None:
        import trio

        async with trio.open_nursery() as nursery:
            for _ in range(rounds):
                done = anyio.Event()
                nursery.start_soon(task, done)
                await done.wait()

    async def plain_asyncio(rounds: int) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        for _ in range(rounds):
            done = anyio.Event()
            await loop.create_task(task(done))
            expect(done.is_set(), "the task ran")

    main = forked if not plain else plain_trio if backend == "trio" else plain_asyncio

    def run(n: int) -> None:
        anyio.run(main, max(1, n // STEPS), backend=backend)

    return run


def _timed(run: Callable[[int], float]) -> Op:
    def op(n: int) -> None:
        run(n)

    return op


# warm-up, operations under callgrind, operations per --cpu repeat (the plain cases
# take WARMUP, -n and max(-n, 20000))
ASYNC_COUNTS: dict[str, tuple[int, int, int]] = {
    "async-trio": (300, 2000, 20000),
    "async-asyncio": (300, 2000, 20000),
    "floor-trio": (300, 2000, 20000),
    "floor-asyncio": (300, 2000, 20000),
    "forks-trio": (20, 50, 200),
    "forks-asyncio": (20, 50, 200),
    "steps-trio": (2000, 20000, 200000),
    "steps-asyncio": (2000, 20000, 200000),
    "steps-floor-trio": (2000, 20000, 200000),
    "steps-floor-asyncio": (2000, 20000, 200000),
}

CASES: dict[str, Callable[[], Op]] = {
    "toggle": lambda: _toggle(scale_schema(10)),
    "scale-1000": lambda: _toggle(scale_schema(1000)),
    "active-499": lambda: _toggle(scale_schema(1000), [f"F{i}" for i in range(0, 998, 2)]),
    "relations": _relations,
    "args": _args,
    "queued": _queued,
    "default-timeout": lambda: _toggle(scale_schema(10), handler_timeout=0.1),
    "async-trio": lambda: _timed(async_toggle_run("trio")),
    "async-asyncio": lambda: _timed(async_toggle_run("asyncio")),
    "floor-trio": lambda: _timed(floor_run("trio")),
    "floor-asyncio": lambda: _timed(floor_run("asyncio")),
    "forks-trio": lambda: _timed(forks_run("trio")),
    "forks-asyncio": lambda: _timed(forks_run("asyncio")),
    "steps-trio": lambda: _steps("trio", plain=False),
    "steps-asyncio": lambda: _steps("asyncio", plain=False),
    "steps-floor-trio": lambda: _steps("trio", plain=True),
    "steps-floor-asyncio": lambda: _steps("asyncio", plain=True),
}


def run_case(name: str, n: int) -> None:
    """Build the case, warm it up, run ``n`` operations."""
    op = CASES[name]()
    op(ASYNC_COUNTS[name][0] if name in ASYNC_COUNTS else WARMUP)
    gc.disable()
    op(n)


def callgrind(names: list[str], ops: int) -> dict[str, float]:
    """Instructions per operation of each case: ``(Ir(2n) - Ir(n)) / n``."""
    out: dict[str, float] = {}
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env = {k: v for k, v in env.items() if not k.startswith("AM_")}
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            irs = []
            n = ASYNC_COUNTS[name][1] if name in ASYNC_COUNTS else ops
            for count in (n, 2 * n):
                cg = Path(tmp) / f"cg.{name}.{count}"
                subprocess.run(
                    [
                        "valgrind",
                        "--tool=callgrind",
                        f"--callgrind-out-file={cg}",
                        sys.executable,
                        "-m",
                        "benchmarks.callgrind_cases",
                        name,
                        str(count),
                    ],
                    check=True,
                    env=env,
                    cwd=root,
                    capture_output=True,
                )
                m = re.search(r"^summary:\s+(\d+)", cg.read_text(), re.M)
                expect(m is not None, f"callgrind summary of {name}")
                assert m is not None
                irs.append(int(m.group(1)))
            out[name] = (irs[1] - irs[0]) / n
            print(f"{name:16} {out[name]:10,.0f} instructions / op", flush=True)
    return out


def cpu(names: list[str], ops: int, repeats: int = 5) -> dict[str, float]:
    """CPU µs per operation of each case (median of ``repeats``)."""
    out: dict[str, float] = {}
    for name in names:
        op = CASES[name]()
        warmup, _, n = ASYNC_COUNTS.get(name, (WARMUP, 0, ops))
        op(warmup)
        times = []
        for _ in range(repeats):
            gc.disable()
            t0 = time.process_time()
            op(n)
            times.append(time.process_time() - t0)
            gc.enable()
        out[name] = statistics.median(times) / n * 1e6
        print(f"{name:16} {out[name]:8.2f} µs CPU / op", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", nargs="?", choices=sorted(CASES))
    ap.add_argument("n", nargs="?", type=int, default=0)
    ap.add_argument(
        "-n", dest="ops", type=int, default=2000, help="operations per run (not the async cases)"
    )
    ap.add_argument("--callgrind", action="store_true", help="every case under callgrind")
    ap.add_argument("--cpu", action="store_true", help="every case, CPU time per op")
    ap.add_argument("--only", default="", help="comma-separated cases (with --callgrind/--cpu)")
    a = ap.parse_args(argv)
    names = [s for s in a.only.split(",") if s] or list(CASES)
    if a.callgrind:
        callgrind(names, a.ops)
    elif a.cpu:
        cpu(names, max(a.ops, 20000))
    elif a.case:
        default = ASYNC_COUNTS[a.case][1] if a.case in ASYNC_COUNTS else a.ops
        run_case(a.case, a.n or default)
    else:
        ap.error("give a case and N, or --callgrind / --cpu")


if __name__ == "__main__":
    main()
