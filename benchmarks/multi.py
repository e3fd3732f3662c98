"""The benchmark on every CPython 3.10-3.13 found, pure and compiled: one table.

    python -m benchmarks.multi                 # what `nox -s bench` runs
    python -m benchmarks.multi --quick         # a smoke run (0.03 s repeats)
    python -m benchmarks.multi --python 3.12,3.13 --builds compiled
    python -m benchmarks.multi --show benchmarks/results/<date>-multi.json
    python -m benchmarks.multi --instructions  # instruction counts (callgrind): load-proof

For each interpreter and build it keeps a virtualenv in ``.nox/bench-multi/``,
installs the wheel ``pip install .`` builds (``ASYNCMACHINE_TRIO_PURE=1`` for the pure
one, ``ASYNCMACHINE_TRIO_COMPILE=1`` for the compiled one, which then must compile)
and transitions, and runs ``python -m benchmarks.run --only asyncmachine-trio,transitions``
there, from a copy of ``benchmarks/`` outside the checkout (so the installed package is
the one imported, not the sources). Wheels are cached by a hash of the sources. Every
ratio compares rows measured in the same run, so on the same interpreter.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
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

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
WORK = ROOT / ".nox" / "bench-multi"
MINORS = (10, 11, 12, 13)
BUILDS = ("pure", "compiled")
LIBS = (report.AM, report.TR)
PEERS = ("transitions>=0.9",)

# the rows of the table, in order: (lib, case id)
ROWS = [
    (report.AM, "toggle"),
    (report.AM, "toggle-defaults"),
    (report.TR, "toggle"),
    (report.TR, "toggle-nocb"),
    (report.AM, "relations"),
    (report.AM, "scale-10"),
    (report.AM, "scale-1000"),
    (report.AM, "scale-1000-active"),
    (report.TR, "scale-1000"),
    (report.AM, "waiters-0"),
    (report.AM, "waiters-1000"),
    (report.AM, "async-trio"),
    (report.AM, "async-asyncio"),
    (report.TR, "async-asyncio"),
    (report.AM, "forks-trio"),
    (report.AM, "build50"),
    (report.TR, "build50"),
    (report.AM, "memory"),
    (report.TR, "memory"),
]


def find_interpreters(wanted: list[str]) -> dict[str, str]:
    """{"3.X": path} for each CPython 3.10-3.13 on PATH or under pyenv (newest patch)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found: dict[str, str] = {}
    for minor in MINORS:
        ver = f"3.{minor}"
        if wanted and ver not in wanted:
            continue
        candidates = sorted(
            glob.glob(str(pyenv / f"{ver}.*" / "bin" / "python")),
            key=lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parts[-3])],
            reverse=True,
        )
        on_path = shutil.which(f"python{ver}")
        if on_path:
            candidates.append(on_path)
        for exe in candidates:
            try:
                out = subprocess.run(
                    [
                        exe,
                        "-c",
                        "import platform,sys;print(platform.python_implementation(),"
                        " '%d.%d' % sys.version_info[:2])",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=True,
                ).stdout.split()
            except (OSError, subprocess.SubprocessError):
                continue
            if out == ["CPython", ver]:
                found[ver] = exe
                break
    return found


def source_hash() -> str:
    """A hash of what goes into a wheel (the package, pyproject.toml, hatch_build.py)."""
    h = hashlib.sha256()
    files = sorted((ROOT / "asyncmachine_trio").rglob("*.py"))
    files += [ROOT / "pyproject.toml", ROOT / "hatch_build.py"]
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _run(cmd: list[str], **kw: Any) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, **kw)


def venv_for(ver: str, exe: str, build: str) -> Path:
    """A virtualenv with this build of the package (and the peers) installed."""
    env_dir = WORK / f"{ver}-{build}"
    py = env_dir / "bin" / "python"
    if not py.exists():
        _run([exe, "-m", "venv", str(env_dir)])
        _run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    wheels = WORK / "wheels" / source_hash() / f"{ver}-{build}"
    if not list(wheels.glob("*.whl")):
        shutil.rmtree(wheels, ignore_errors=True)
        var = "ASYNCMACHINE_TRIO_PURE" if build == "pure" else "ASYNCMACHINE_TRIO_COMPILE"
        env = dict(os.environ, **{var: "1"})
        _run(
            [str(py), "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
            env=env,
        )
    (wheel,) = wheels.glob("*.whl")
    # the rpc extra: benchmarks.run imports the aRPC section's module
    _run([str(py), "-m", "pip", "install", "-q", f"{wheel}[rpc]", *PEERS])
    _run([str(py), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(wheel)])
    return py


def measure(py: Path, build: str, a: argparse.Namespace) -> dict[str, Any]:
    """Run benchmarks.run in the venv, from a copy of benchmarks/ outside the checkout."""
    with tempfile.TemporaryDirectory(prefix="am-bench-multi-") as tmp:
        shutil.copytree(
            ROOT / "benchmarks",
            Path(tmp) / "benchmarks",
            ignore=shutil.ignore_patterns("results", "__pycache__"),
        )
        loaded = subprocess.run(
            [str(py), "-c", "import asyncmachine_trio as am; print(am.compiled, am.__file__)"],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.split()
        from_sources = Path(loaded[1]).is_relative_to(ROOT / "asyncmachine_trio")
        if (loaded[0] == "True") != (build == "compiled") or from_sources:
            raise RuntimeError(f"{py}: expected the {build} build, loaded {loaded}")
        out = Path(tmp) / "out.json"
        if a.instructions:
            cmd = [str(py), "-m", "benchmarks.instructions", "--json", str(out)]
            if a.quick:
                cmd += ["--scale", "0.2"]
        else:
            cmd = [str(py), "-m", "benchmarks.run", "--only", ",".join(LIBS), "--json", str(out)]
            if a.quick:
                cmd.append("--quick")
        _run(cmd, cwd=tmp)
        doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def _cell(row: dict[str, Any] | None) -> tuple[str, str]:
    value = report.figure(row)
    if row is None:
        return "", ""
    if value is None:
        return "FAILED", ""
    fig = f"{value / 1024:.1f}K" if row["unit"] == "byte" else f"{value:.2f}"
    ratio = row.get("ratio")
    return fig, (f"{ratio:.2f}x" if ratio is not None else "")


def render_instructions(doc: dict[str, Any]) -> str:
    """The ``--instructions`` table: thousands of instructions per op, x transitions."""
    runs = doc["runs"]
    cols = [(r["python"], r["build"]) for r in runs]
    by_col = {(r["python"], r["build"]): {(x["lib"], x["id"]): x for x in r["rows"]} for r in runs}
    keys = list(dict.fromkeys((x["lib"], x["id"]) for r in runs for x in r["rows"]))
    name_w = max(len(f"{lib} {case}") for lib, case in keys) + 1
    head1 = " " * name_w + "".join(f"| {py + ' ' + b:<17}" for py, b in cols)
    head2 = " " * name_w + "".join(f"| {'kIr/op':>8} {'x base':>7} " for _ in cols)
    lines = [head1, head2, "-" * len(head2)]
    for key in keys:
        cells = []
        for c in cols:
            row = by_col[c].get(key)
            if row is None:
                cells.append(("", ""))
            elif "ir_per_op" not in row:
                cells.append(("FAILED", ""))
            else:
                ratio = row.get("floor_ratio", row.get("ratio"))
                mark = "f" if "floor_ratio" in row else "x"
                cells.append(
                    (f"{row['ir_per_op'] / 1000:.1f}", f"{ratio:.2f}{mark}" if ratio else "")
                )
        lines.append(
            f"{key[0] + ' ' + key[1]:<{name_w}}" + "".join(f"| {f:>8} {r:>7} " for f, r in cells)
        )
    lines += [
        "",
        "kIr/op: thousands of instructions per operation (callgrind, benchmarks/instructions.py);",
        "x: ratio to the transitions row of the same kind, f: ratio to the floor (a bare task",
        "spawn plus an event round trip), both on the same interpreter and build.",
    ]
    return "\n".join(lines)


def render(doc: dict[str, Any]) -> str:
    """One table: a column per interpreter and build (µs per op, x transitions)."""
    if doc.get("instructions"):
        return render_instructions(doc)
    runs = doc["runs"]
    cols = [(r["python"], r["build"]) for r in runs]
    by_col = {(r["python"], r["build"]): {(x["lib"], x["id"]): x for x in r["rows"]} for r in runs}
    name_w = max(len(f"{lib} {case}") for lib, case in ROWS) + 1
    head1 = " " * name_w + "".join(f"| {py + ' ' + b:<16}" for py, b in cols)
    head2 = " " * name_w + "".join(f"| {'us/op':>8} {'x tr':>6} " for _ in cols)
    lines = [head1, head2, "-" * len(head2)]
    for lib, case in ROWS:
        cells = [_cell(by_col[c].get((lib, case))) for c in cols]
        if not any(f for f, _ in cells):
            continue
        lines.append(
            f"{lib + ' ' + case:<{name_w}}" + "".join(f"| {f:>8} {r:>6} " for f, r in cells)
        )
    # compiled / pure on each interpreter
    pys = sorted({py for py, _ in cols}, key=lambda v: [int(x) for x in v.split(".")])
    pairs = [py for py in pys if (py, "pure") in by_col and (py, "compiled") in by_col]
    if pairs:
        lines += ["", "compiled / pure (asyncmachine-trio, same interpreter):"]
        lines.append(" " * name_w + "".join(f"| {py:>8} " for py in pairs))
        for lib, case in ROWS:
            if lib != report.AM:
                continue
            vals = []
            for py in pairs:
                p = report.figure(by_col[(py, "pure")].get((lib, case)))
                c = report.figure(by_col[(py, "compiled")].get((lib, case)))
                vals.append(f"{c / p:.2f}x" if p and c else "")
            if any(vals):
                lines.append(f"{case:<{name_w}}" + "".join(f"| {v:>8} " for v in vals))
    settings = runs[0]["settings"] if runs else {}
    lines += [
        "",
        f"x tr: ratio to the transitions row of the same kind in the same run "
        f"(benchmarks/README.md); {settings.get('repeats')} repeats of "
        f"~{settings.get('min_time')} s, median; memory in KiB per instance.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="repeats of 0.03 s (smoke run)")
    ap.add_argument("--python", default="", help="comma list of 3.X (default: all found)")
    ap.add_argument("--builds", default=",".join(BUILDS), help="comma list of: pure,compiled")
    ap.add_argument("--json", default="", help="result file (default results/<date>-multi.json)")
    ap.add_argument("--no-json", action="store_true", help="print only")
    ap.add_argument("--show", default="", metavar="JSON", help="print the table of a result file")
    ap.add_argument(
        "--instructions",
        action="store_true",
        help="instruction counts under callgrind (benchmarks.instructions) instead of times",
    )
    a = ap.parse_args(argv)
    if a.show:
        print(render(json.loads(Path(a.show).read_text())))
        return 0
    builds = [b for b in a.builds.split(",") if b]
    if any(b not in BUILDS for b in builds):
        ap.error(f"--builds: choose from {', '.join(BUILDS)}")
    interpreters = find_interpreters([v for v in a.python.split(",") if v])
    if not interpreters:
        ap.error("no CPython 3.10-3.13 found (PATH: python3.X; pyenv: $PYENV_ROOT/versions)")
    print(f"interpreters: {interpreters}", file=sys.stderr, flush=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    runs = []
    for ver, exe in interpreters.items():
        for build in builds:
            py = venv_for(ver, exe, build)
            doc = measure(py, build, a)
            runs.append({"python": ver, "build": build, "interpreter": exe, **doc})
    result = {
        "date": started.isoformat(timespec="seconds"),
        "quick": a.quick,
        "instructions": a.instructions,
        "runs": runs,
    }
    print()
    print(render(result))
    if not a.no_json:
        kind = "multi-ir" if a.instructions else "multi"
        path = Path(a.json) if a.json else RESULTS / f"{started:%Y-%m-%d}-{kind}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
