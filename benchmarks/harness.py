"""Measuring: calibrated timed runs, the median of repeats and their spread, tracemalloc bytes.

A timed case is a function ``run(n) -> seconds``: it does its own setup (build the machine,
start the event loop), times exactly ``n`` units of work with ``time.perf_counter`` and
returns the elapsed seconds, so loop start-up and setup never count. The harness picks ``n``
so that one repeat lasts about ``min_time`` seconds, runs it once more as a warm-up, then
``repeats`` times with the garbage collector disabled (as the reference peer script does,
for every library alike) and keeps the median and the spread ``(max - min) / median``.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import signal
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from types import FrameType
from typing import Any

TimedRun = Callable[[int], float]


@dataclass(frozen=True)
class Case:
    """One measurement of one library."""

    id: str  # unique within its library; targets and ratios refer to it
    case: str  # the case: toggle, build50, async toggle, relations, ...
    label: str  # what exactly is measured (the table's "variant" column)
    unit: str  # one op: transition, step, instance, mutation, task, byte
    run: TimedRun | None = None  # timed cases
    per_n: int = 1  # ops per unit of n (forks: 100 tasks per activation)
    make: Callable[[], object] | None = None  # memory cases: builds one instance
    count: int = 10_000  # memory cases: instances kept alive at once
    fixed_count: bool = False  # memory cases: never lower count to fit the time budget
    note: str = ""


@dataclass
class Row:
    """The figures of one case (what the JSON file holds)."""

    lib: str
    id: str
    case: str
    label: str
    unit: str
    note: str = ""
    n: int = 0
    repeats: int = 0
    times_s: list[float] = field(default_factory=list)
    median_s: float | None = None
    us_per_op: float | None = None
    ops_per_s: float | None = None
    spread_pct: float | None = None
    bytes_per_instance: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Settings:
    min_time: float = 0.1  # seconds per repeat
    repeats: int = 5
    case_timeout: int = 60  # seconds per case (SIGALRM); a hang is recorded as a failure
    memory_budget: float = 5.0  # seconds; a slower memory case traces fewer instances


class CaseTimeoutError(Exception):
    pass


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise CaseTimeoutError after ``seconds`` (main thread, POSIX); else no limit."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise CaseTimeoutError(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def settle(seconds: float = 0.3) -> None:
    """Busy-loop briefly so CPU frequency scaling has settled before the first timing."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _timed(run: TimedRun, n: int) -> float:
    gc.collect()
    gc.disable()
    try:
        return run(n)
    finally:
        gc.enable()


def _round_n(n: float) -> int:
    """Two significant digits, even (toggles flip in pairs), at least 2."""
    n = max(2.0, n)
    digits = int(10 ** max(0, int(math.log10(n)) - 1))
    out = math.ceil(n / digits) * digits
    return out + out % 2


def calibrate(run: TimedRun, min_time: float) -> int:
    """The n for which ``run(n)`` lasts about ``min_time`` (doubles as warm-up)."""
    n = 2
    while True:
        t = _timed(run, n)
        if t >= min_time / 4 or n >= 1 << 22:
            break
        n *= 2 if t > min_time / 40 else 8
    return _round_n(n * min_time / max(t, 1e-9))


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def bytes_per_instance(make: Callable[[], object], count: int) -> float:
    """tracemalloc bytes still allocated per instance with ``count`` instances alive.

    One instance is built first, untraced, so state shared between instances (a compiled
    schema, a class, caches) is not charged to them: the figure is the marginal cost.
    """
    make()
    keep: list[object] = [None] * count
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            keep[i] = make()
        gc.collect()  # garbage made while building is not the instance's
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    del keep
    return used / count


def memory_count(make: Callable[[], object], count: int, budget: float) -> int:
    """``count``, or fewer instances (at least 200) if tracing them would exceed ``budget``.

    Bytes per instance do not depend on the count; time under tracemalloc does (about 4x
    the untraced build time).
    """
    make()
    t0 = time.perf_counter()
    for _ in range(10):
        make()
    traced = (time.perf_counter() - t0) / 10 * 4
    if count * traced <= budget:
        return count
    return max(200, int(budget / traced) // 100 * 100)


def measure(lib: str, case: Case, settings: Settings) -> Row:
    row = Row(lib, case.id, case.case, case.label, case.unit, case.note)
    try:
        with time_limit(settings.case_timeout):
            if case.make is not None:
                count = case.count
                if not case.fixed_count:
                    count = memory_count(case.make, count, settings.memory_budget)
                row.n, row.repeats = count, 1
                row.bytes_per_instance = bytes_per_instance(case.make, count)
                return row
            assert case.run is not None
            n = calibrate(case.run, settings.min_time)
            _timed(case.run, n)  # warm-up at full size
            times = [_timed(case.run, n) for _ in range(settings.repeats)]
    except Exception as exc:  # recorded, not hidden: a peer on trio, a timeout
        row.error = _error_text(exc)
        return row
    med = statistics.median(times)
    ops = n * case.per_n
    row.n, row.repeats, row.times_s, row.median_s = ops, len(times), times, med
    row.us_per_op = med / ops * 1e6
    row.ops_per_s = ops / med if med > 0 else math.inf
    row.spread_pct = (max(times) - min(times)) / med * 100 if med > 0 else 0.0
    return row


# ----- the machine and the versions


def machine_info() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "arch": platform.machine(),
        "executable": sys.executable,
    }


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"
