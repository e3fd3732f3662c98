"""The pubsub example: three peers in three processes (examples/pubsub/run.py)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "libp2p",
    reason="py-libp2p is not installed (extra [pubsub]; building it needs a C compiler and libgmp)",
)

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "examples" / "pubsub" / "run.py"
NAMES = ("alice", "bob", "carol")


def test_three_peers_in_three_processes_see_every_latest_clock() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(RUN), "--duration", "6"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    finals: dict[str, dict[str, list[int]]] = {n: {} for n in NAMES}
    for line in out.stdout.splitlines():
        m = re.search(r"\[(\w+)\] final (\w+) (\[.*\])$", line)
        if m:
            finals[m[1]][m[2]] = ast.literal_eval(m[3])
    for name in NAMES:
        # each holds a mirror of both others, at the clock they ended with
        assert set(finals[name]) == set(NAMES), finals
        for other in NAMES:
            assert finals[name][other] == finals[other][other], (name, other, finals)
        # and printed their changes as they happened
        others = [n for n in NAMES if n != name]
        for other in others:
            assert re.search(rf"\[{name}\] {other} \((Idle|Working|Done):\d+\)", out.stdout)
