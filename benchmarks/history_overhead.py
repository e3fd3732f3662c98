"""Tracking overhead of ``asyncmachine_trio.history`` per mutation.

The toggle case: states A and B remove each other; ``add1`` alternates between
them, so every mutation is an accepted transition changing two ticks and every
one is recorded (all states tracked). In one process, for each repeat:

* ``none``      - no history bound;
* ``memory``    - ``MemoryHistory`` (the deque holds every record);
* ``sqlite``    - ``SqliteHistory`` with the default write policy (batches of
                  100 written by the writer thread while the loop runs); the
                  loop alone, and end to end until ``sync()`` returned;
* ``sql write`` - ``SqliteHistory`` with writes deferred (one batch), then the
                  ``sync()`` time divided by the records: the cost of one SQL
                  record (one ``times`` row and three ``ticks`` rows; with one
                  tracked state, as the reference measured, one ``ticks`` row).

Medians of the repeats are printed next to the reference's figures
(pkg/history/README.md: 50,000 toggles, in-process 147 ms = ~3 us per tracked
mutation; GORM + SQLite ~17 us per record). Go and Python costs differ in kind:
compare the overhead column with the Go totals only as orders of magnitude.

Run: python benchmarks/history_overhead.py [-n 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import asyncmachine_trio as am
from asyncmachine_trio import history as amhist

SCHEMA = {"A": am.State(remove=("B",)), "B": am.State(remove=("A",))}
REFERENCE = {
    "memory": "~3 us per tracked mutation (Go, in-process)",
    "sql write": "~17 us per SQL record (Go, GORM + SQLite)",
}


def toggle(mach: am.Machine, n: int) -> float:
    """``n`` alternating add1 calls; seconds."""
    add1 = mach.add1
    t0 = time.perf_counter()
    for i in range(n):
        add1("A" if i % 2 else "B")
    return time.perf_counter() - t0


def run_none(n: int, _db: Path) -> dict[str, float]:
    return {"none": toggle(am.Machine(SCHEMA), n)}


def run_memory(n: int, _db: Path) -> dict[str, float]:
    mach = am.Machine(SCHEMA)
    hist = amhist.MemoryHistory(mach, amhist.Config(max_records=n))
    loop = toggle(mach, n)
    assert len(hist.find_latest(limit=n)) == n
    hist.close()
    return {"memory": loop}


def run_sqlite(n: int, db: Path) -> dict[str, float]:
    mach = am.Machine(SCHEMA)
    hist = amhist.SqliteHistory(db, mach, amhist.SqliteConfig(max_records=n))
    t0 = time.perf_counter()
    loop = toggle(mach, n)
    hist.sync()
    total = time.perf_counter() - t0
    assert hist.machine_record().next_id == n + 1
    hist.close()
    return {"sqlite (loop)": loop, "sqlite (+sync)": total}


def run_sql_write(n: int, db: Path) -> dict[str, float]:
    mach = am.Machine(SCHEMA)
    cfg = amhist.SqliteConfig(max_records=n, batch_size=n + 1, flush_interval=1e6)
    hist = amhist.SqliteHistory(db, mach, cfg)
    loop = toggle(mach, n)
    t0 = time.perf_counter()
    hist.sync()
    write = time.perf_counter() - t0
    assert len(hist.find_latest(limit=2)) == 2
    hist.close()
    return {"sqlite (queue only)": loop, "sql write": write}


def run_sql_write_one(n: int, db: Path) -> dict[str, float]:
    """As run_sql_write, one tracked state (the reference's benchmark tracks Start only)."""
    mach = am.Machine(SCHEMA)
    cfg = amhist.SqliteConfig(
        tracked_states=["A"], max_records=n, batch_size=n + 1, flush_interval=1e6
    )
    hist = amhist.SqliteHistory(db, mach, cfg)
    toggle(mach, n)
    t0 = time.perf_counter()
    hist.sync()
    write = time.perf_counter() - t0
    hist.close()
    return {"sql write (1 state)": write}


RUNS: list[Callable[[int, Path], dict[str, float]]] = [
    run_none,
    run_memory,
    run_sqlite,
    run_sql_write,
    run_sql_write_one,
]


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Print the table; returns the medians in microseconds per mutation / record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="mutations per run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    n: int = args.n
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for i, run in enumerate(RUNS):  # interleaved: drift hits every mode alike
                for key, secs in run(n, Path(tmp) / f"r{rep}-{i}.sqlite").items():
                    samples.setdefault(key, []).append(secs / n * 1e6)
    med = {k: statistics.median(v) for k, v in samples.items()}
    base = med["none"]
    print(
        f"toggle benchmark: {n} mutations x {args.repeats} repeats (median),"
        f" Python {platform.python_version()}, asyncmachine-trio {am.__version__}"
    )
    print(f"{'mode':<22}{'us/mutation':>12}{'overhead':>11}   reference")
    for key in ("none", "memory", "sqlite (loop)", "sqlite (+sync)", "sqlite (queue only)"):
        over = "" if key == "none" else f"{med[key] - base:+.2f}"
        print(f"{key:<22}{med[key]:>12.2f}{over:>11}   {REFERENCE.get(key, '')}")
    for key in ("sql write", "sql write (1 state)"):
        print(f"{key:<22}{med[key]:>12.2f}{'per record':>11}   {REFERENCE['sql write']}")
    return med


if __name__ == "__main__":
    main()
