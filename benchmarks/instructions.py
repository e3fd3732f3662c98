"""Instruction counts of the benchmark's cases (callgrind): figures a busy machine cannot blur.

    python -m benchmarks.instructions                      # the default cases, this interpreter
    python -m benchmarks.instructions --only asyncmachine-trio:toggle,transitions:toggle
    python -m benchmarks.instructions --json out.json      # rows for benchmarks.multi

Wall-clock figures need a quiet machine; instruction counts do not. The cases of
``benchmarks.run`` (the same code, the same ``Case.run``) run in one interpreter under
``valgrind --tool=callgrind``: per case an untimed warm-up, then N and then 2N
operations, with a marker (``os.getppid``, on which callgrind dumps its counts) after
each; the figure is ``(Ir(2N) - Ir(N)) / (N * per_n)``: the instructions of one
operation, with the case's own set-up (an event loop, a machine) cancelled out. Ratios
to the peers are taken between instruction counts measured on the same interpreter, as
the wall-clock table does.

An instruction count is not a time: compiled code does more per instruction than the
interpreter's loop, so a compiled build's ratio in instructions flatters it a little
less or more than in time. The wall-clock table (``benchmarks.run``, ``benchmarks.multi``)
stays the measure of record on a quiet machine; this one is for comparing builds,
interpreters and commits anywhere.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import report
from .harness import Case

LIBS = {
    report.AM: "benchmarks.lib_asyncmachine",
    report.TR: "benchmarks.lib_transitions",
}

# (lib, case id, N): N operations in the shorter run (2N in the longer)
DEFAULT_CASES: list[tuple[str, str, int]] = [
    (report.AM, "toggle", 2000),
    (report.AM, "toggle-defaults", 2000),
    (report.AM, "toggle-args", 2000),
    (report.AM, "toggle-queued", 2000),
    (report.TR, "toggle", 2000),
    (report.TR, "toggle-nocb", 2000),
    (report.AM, "relations", 1000),
    (report.AM, "scale-10", 2000),
    (report.AM, "scale-1000", 2000),
    (report.AM, "scale-1000-active", 2000),
    (report.TR, "scale-1000", 1000),
    (report.AM, "async-trio", 500),
    (report.AM, "floor-trio", 500),
    (report.AM, "async-asyncio", 500),
    (report.AM, "floor-asyncio", 500),
    (report.TR, "async-asyncio", 500),
    (report.AM, "forks-trio", 10),
    (report.AM, "forks-asyncio", 10),
    (report.AM, "build50", 200),
    (report.TR, "build50", 50),
]


def warmup_ops(n: int) -> int:
    """The untimed warm-up before N (and before 2N) operations: an even count, N / 4 or so."""
    return 2 * max(1, n // 8)


def find_case(lib: str, case_id: str) -> Case:
    """The case ``case_id`` of ``lib`` as ``benchmarks.run`` measures it."""
    module = importlib.import_module(LIBS[lib])
    case: Case
    for case in module.cases():
        if case.id == case_id:
            if case.run is None:
                raise SystemExit(f"{lib}:{case_id} is not a timed case")
            return case
    raise SystemExit(f"no case {case_id!r} in {lib}")


def mark() -> None:
    """A marker for callgrind: ``--dump-before=getppid`` writes the counts so far."""
    os.getppid()


def run_all(cases: list[tuple[str, str, int]]) -> None:
    """The child, under callgrind: per case, a warm-up, then N and 2N operations, each
    segment closed by a marker (so one interpreter start-up serves every case)."""
    for lib, case_id, n in cases:
        run = find_case(lib, case_id).run
        assert run is not None
        run(warmup_ops(n))
        gc.collect()
        gc.disable()
        mark()
        run(n)
        mark()
        run(2 * n)
        mark()
        gc.enable()


def _summary(path: Path) -> int:
    m = re.search(r"^summary:\s+(\d+)", path.read_text(), re.M)
    if m is None:
        raise RuntimeError(f"no callgrind summary in {path}")
    return int(m.group(1))


def measure(cases: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """A row per case: lib, id, unit, ir_per_op (or error), with ratios to the peers.

    One run of this interpreter under callgrind; the counts between markers give, per
    case, ``(Ir(2N) - Ir(N)) / (N * per_n)``: the instructions of one operation, the
    case's own set-up (an event loop, a machine) cancelled out.
    """
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    cwd = Path(__file__).resolve().parent.parent
    found = {(lib, cid): find_case(lib, cid) for lib, cid, _ in cases}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AM_")}
    env["PYTHONHASHSEED"] = "0"
    spec = ",".join(f"{lib}:{cid}:{n}" for lib, cid, n in cases)
    with tempfile.TemporaryDirectory(prefix="am-ir-") as tmp:
        out = Path(tmp) / "cg"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--dump-before=getppid",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "benchmarks.instructions",
                "--child",
                spec,
            ],
            check=True,
            env=env,
            cwd=cwd,
            capture_output=True,
        )
        # out.1 is the start-up up to the first marker; then 3 segments per case
        parts = sorted(Path(tmp).glob("cg.*"), key=lambda p: int(p.suffix[1:]))
        if len(parts) != 3 * len(cases):
            raise RuntimeError(f"{len(parts)} callgrind dumps for {len(cases)} cases")
        counts = [_summary(p) for p in parts]
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for i, (lib, case_id, n) in enumerate(cases):
        case = found[(lib, case_id)]
        ir_n, ir_2n = counts[3 * i + 1], counts[3 * i + 2]
        row: dict[str, Any] = {"lib": lib, "id": case_id, "unit": case.unit, "n": n}
        row["ir_per_op"] = (ir_2n - ir_n) / (n * case.per_n)
        print(f"{lib:18} {case_id:18} {row['ir_per_op']:12,.0f} Ir/{case.unit}", flush=True)
        rows[(lib, case_id)] = row
    for (lib, case_id), row in rows.items():
        base = rows.get(report.RATIO_BASES.get(row["unit"], ("", "")))
        if base is not None and base.get("ir_per_op"):
            row["ratio"] = row["ir_per_op"] / base["ir_per_op"]
        floor = rows.get(report.FLOORS.get((lib, case_id), ("", "")))
        if floor is not None and floor.get("ir_per_op"):
            row["floor_ratio"] = row["ir_per_op"] / floor["ir_per_op"]
    return list(rows.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", metavar="LIB:ID:N,...", help="run these cases (under callgrind)")
    ap.add_argument("--only", default="", help="comma list of LIB:ID (default: the usual cases)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every N (e.g. 0.2)")
    ap.add_argument("--json", default="", help="write the rows to this file")
    a = ap.parse_args(argv)
    if a.child:
        run_all([(lib, cid, int(n)) for lib, cid, n in (c.split(":") for c in a.child.split(","))])
        return 0
    wanted = [s for s in a.only.split(",") if s]
    cases = [c for c in DEFAULT_CASES if not wanted or f"{c[0]}:{c[1]}" in wanted]
    known = {f"{lib}:{cid}" for lib, cid, _ in DEFAULT_CASES}
    for w in wanted:
        if w not in known:
            lib, _, cid = w.partition(":")
            cases.append((lib, cid, 1000))
    cases = [(lib, cid, max(1, round(n * a.scale))) for lib, cid, n in cases]
    rows = measure(cases)
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
