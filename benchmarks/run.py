"""Run every case for asyncmachine-trio and the peers; print one table, write JSON.

    python -m benchmarks.run                  # everything (what `nox -s bench` runs)
    python -m benchmarks.run --only asyncmachine-trio,transitions
    python -m benchmarks.run --quick          # shorter repeats, for a smoke run
    python -m benchmarks.run --show benchmarks/results/<date>.json   # a stored run's table
    python -m benchmarks.run --only rpc       # only the aRPC section (benchmarks/rpc_bench.py)
    python -m benchmarks.run --only rpc-attack   # aRPC under attack (rpc_attack_bench.py)
    python -m benchmarks.run --only nats      # only the NATS section (benchmarks/nats_bench.py)
    python -m benchmarks.run --only import    # only the import times (benchmarks/import_time.py)
    python -m benchmarks.run --only node      # only the node pool (benchmarks/node_bench.py)
    python -m benchmarks.run --only pubsub    # only pubsub (benchmarks/pubsub_bench.py)

Each library runs in a fresh interpreter (``--child``) so libraries share no heap, caches or
class registries; the parent merges their rows, adds the ratios and targets, prints the
table and writes ``benchmarks/results/<date>.json``. The aRPC benchmark (issue 7) runs in a
fresh interpreter too; its own table follows, and the JSON keeps it under ``"rpc"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import harness, import_time, node_bench, report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

LIBS = {
    "asyncmachine-trio": "benchmarks.lib_asyncmachine",
    "transitions": "benchmarks.lib_transitions",
    "python-statemachine": "benchmarks.lib_statemachine",
    "automat": "benchmarks.lib_automat",
    "sismic": "benchmarks.lib_sismic",
}

VERSIONED = ("asyncmachine-trio", "trio", "anyio", *list(LIBS)[1:])

RPC = "rpc"  # the aRPC section (rpc_bench.py), selectable with --only like a library
IMPORT = "import"  # import times, with transitions (import_time.py); also with --only
NODE = "node"  # node pools with real worker processes (node_bench.py); also with --only
TELEMETRY = "telemetry"  # telemetry overhead (telemetry_overhead.py); also with --only
NATS = "nats"  # the NATS section (nats_bench.py), likewise
RPC_ATTACK = "rpc-attack"  # aRPC under attack (rpc_attack_bench.py), likewise
PUBSUB = "pubsub"  # pubsub settle time and update latency (pubsub_bench.py), likewise
SECTIONS = (RPC, IMPORT, NODE, TELEMETRY, NATS, RPC_ATTACK, PUBSUB)


def _settings(a: argparse.Namespace) -> harness.Settings:
    return harness.Settings(
        min_time=a.min_time,
        repeats=a.repeats,
        case_timeout=a.case_timeout,
        memory_budget=a.memory_budget,
    )


def run_child(lib: str, settings: harness.Settings, out: str) -> None:
    """In the fresh interpreter: measure every case of ``lib``, write the rows to ``out``."""
    rows: list[dict[str, Any]] = []
    try:
        module = importlib.import_module(LIBS[lib])
        cases: list[harness.Case] = module.cases()
    except ImportError as exc:
        rows.append(dataclasses.asdict(harness.Row(lib, "import", "-", "-", "-", error=str(exc))))
        cases = []
    harness.settle()
    for case in cases:
        row = harness.measure(lib, case, settings)
        rows.append(dataclasses.asdict(row))
        state = f"FAILED {row.error}" if row.error else "ok"
        print(f"  {lib:<20} {case.id:<28} {state}", file=sys.stderr, flush=True)
        with open(out, "w") as fh:  # after every case: a crash keeps what was measured
            json.dump(rows, fh)


def spawn(lib: str, a: argparse.Namespace) -> list[dict[str, Any]]:
    fd, out = tempfile.mkstemp(suffix=".json", prefix="am-bench-")
    os.close(fd)
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--child",
        lib,
        "--child-out",
        out,
        "--min-time",
        str(a.min_time),
        "--repeats",
        str(a.repeats),
        "--case-timeout",
        str(a.case_timeout),
        "--memory-budget",
        str(a.memory_budget),
    ]
    # the library's environment switches change its defaults (timeouts, logging): drop them
    env = {k: v for k, v in os.environ.items() if not k.startswith("AM_")}
    rows: list[dict[str, Any]] = []
    error = ""
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=900, check=False)
        if proc.returncode:
            error = f"benchmark process exited with {proc.returncode}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        error = f"{type(exc).__name__}: {exc}"
    try:
        with open(out) as fh:
            text = fh.read()
        rows = json.loads(text) if text else []
    except (OSError, ValueError) as exc:
        error = error or f"{type(exc).__name__}: {exc}"
    finally:
        os.unlink(out)
    if error:
        rows.append(dataclasses.asdict(harness.Row(lib, "process", "-", "-", "-", error=error)))
    return rows


def spawn_section(cmd: list[str]) -> dict[str, Any]:
    """Run a section's benchmark (``cmd`` + ``--json FILE``) in a fresh interpreter.

    Returns the section it wrote, or ``{"error": ...}`` when it failed to write one.
    """
    fd, out = tempfile.mkstemp(suffix=".json", prefix="am-bench-section-")
    os.close(fd)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AM_")}
    error = ""
    try:
        proc = subprocess.run([*cmd, "--json", out], cwd=ROOT, env=env, timeout=900, check=False)
        if proc.returncode:
            error = f"benchmark process exited with {proc.returncode}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        error = f"{type(exc).__name__}: {exc}"
    try:
        text = Path(out).read_text()
        section: dict[str, Any] = json.loads(text) if text else {}
    except (OSError, ValueError) as exc:
        section = {}
        error = error or f"{type(exc).__name__}: {exc}"
    finally:
        os.unlink(out)
    if error and not section.get("error"):
        section = {**section, "error": error} if section else {"error": error}
    return section


def spawn_pubsub(a: argparse.Namespace) -> dict[str, Any]:
    """``benchmarks.pubsub_bench`` in a fresh interpreter; its section (or the error)."""
    fd, out = tempfile.mkstemp(suffix=".json", prefix="am-bench-pubsub-")
    os.close(fd)
    cmd = [sys.executable, "-m", "benchmarks.pubsub_bench", "--quiet", "--json", out]
    cmd += ["--sizes", "5,10" if a.quick else "5,10,20"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AM_")}
    error = ""
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, timeout=900, check=False, stderr=subprocess.DEVNULL
        )
        if proc.returncode:
            error = f"benchmark process exited with {proc.returncode}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        error = f"{type(exc).__name__}: {exc}"
    try:
        text = Path(out).read_text()
        section: dict[str, Any] = json.loads(text) if text else {}
    except (OSError, ValueError) as exc:
        section = {}
        error = error or f"{type(exc).__name__}: {exc}"
    finally:
        os.unlink(out)
    if not section.get("error") and error:
        section = {"error": error}
    return section


def spawn_rpc(a: argparse.Namespace, module: str = "benchmarks.rpc_bench") -> dict[str, Any]:
    """``benchmarks.rpc_bench`` (or ``nats_bench``, ``rpc_attack_bench``); its section."""
    n, warmup = (400, 100) if a.quick else (2000, 200)
    cmd = [sys.executable, "-m", module, "--quiet"]
    if module.endswith("rpc_attack_bench"):
        cmd += ["-n", str(300 if a.quick else 1000)]
    else:
        cmd += ["-n", str(n), "--warmup", str(warmup)]
    if module.endswith("rpc_bench"):
        cmd += ["--repeats", str(a.repeats)]
    return spawn_section(cmd)


def spawn_telemetry(a: argparse.Namespace) -> dict[str, Any]:
    """``benchmarks.telemetry_overhead`` in a fresh interpreter; its section (or the error)."""
    n = 5000 if a.quick else 20000
    cmd = [sys.executable, "-m", "benchmarks.telemetry_overhead", "--quiet"]
    return spawn_section([*cmd, "-n", str(n), "--repeats", str(a.repeats)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma list of: " + ",".join([*LIBS, *SECTIONS]))
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per case (median)")
    ap.add_argument("--min-time", type=float, default=0.1, help="seconds per repeat")
    ap.add_argument("--case-timeout", type=int, default=180, help="seconds per case")
    ap.add_argument("--memory-budget", type=float, default=5.0, help="seconds per peer memory case")
    ap.add_argument("--quick", action="store_true", help="repeats of 0.03 s (smoke run)")
    ap.add_argument("--json", default="", help="result file (default results/<date>.json)")
    ap.add_argument("--no-json", action="store_true", help="print only")
    ap.add_argument("--show", default="", metavar="JSON", help="print the table of a result file")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", default="", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.quick:
        a.min_time, a.memory_budget = 0.03, 1.0
    if a.repeats < 5 and not a.quick:
        ap.error("--repeats must be at least 5 (the issue asks for the median of >= 5)")
    if a.child:
        run_child(a.child, _settings(a), a.child_out)
        return 0
    if a.show:
        print(report.render(json.loads(Path(a.show).read_text())))
        return 0

    libs = [s for s in a.only.split(",") if s] or [*LIBS, *SECTIONS]
    unknown = [s for s in libs if s not in LIBS and s not in SECTIONS]
    if unknown:
        ap.error(f"unknown libraries {unknown}; choose from {', '.join([*LIBS, *SECTIONS])}")
    info = harness.machine_info()
    versions = {d: harness.version(d) for d in VERSIONED}
    started = datetime.datetime.now(datetime.timezone.utc)
    print(
        f"python {info['python']} ({info['implementation']}) on {info['cpu']}, "
        f"{info['cores']} cores; {a.repeats} repeats of ~{a.min_time}s per case, median",
        file=sys.stderr,
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    for lib in libs:
        if lib not in SECTIONS:
            rows.extend(spawn(lib, a))
    by_key = {(r["lib"], r["id"]): r for r in rows}
    report.add_ratios(by_key)
    report.add_floor_ratios(by_key)
    doc = {
        "date": started.isoformat(timespec="seconds"),
        "machine": info,
        "versions": versions,
        "settings": dataclasses.asdict(_settings(a)),
        "ratio_bases": {k: " ".join(v) for k, v in report.RATIO_BASES.items()},
        "targets": report.evaluate_targets(by_key),
        "rows": rows,
    }
    if RPC in libs:
        doc["rpc"] = spawn_rpc(a)
    if NATS in libs:
        doc["nats"] = spawn_rpc(a, "benchmarks.nats_bench")
    if IMPORT in libs:
        try:
            doc["import"] = import_time.run(5 if a.quick else 15)
        except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
            doc["import"] = {"error": f"{type(exc).__name__}: {exc}"}
    if NODE in libs:
        try:
            doc["node"] = node_bench.run(50 if a.quick else 200)
        except (OSError, RuntimeError) as exc:
            doc["node"] = {"error": f"{type(exc).__name__}: {exc}"}
    if RPC_ATTACK in libs:
        doc["rpc_attack"] = spawn_rpc(a, "benchmarks.rpc_attack_bench")
    if TELEMETRY in libs:
        doc["telemetry"] = spawn_telemetry(a)
    if PUBSUB in libs:
        doc["pubsub"] = spawn_pubsub(a)
    print()
    print(report.render(doc))
    if doc.get("nats") is not None:
        from .nats_bench import render as render_nats

        print()
        print(render_nats(doc["nats"]))
    if doc.get("pubsub") is not None:
        from .pubsub_bench import render as render_pubsub

        print()
        print(render_pubsub(doc["pubsub"]))
    if not a.no_json:
        path = Path(a.json) if a.json else RESULTS / f"{started:%Y-%m-%d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
