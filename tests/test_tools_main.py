"""``python -m asyncmachine_trio``: version, extras, tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncmachine_trio as am
from asyncmachine_trio.__main__ import EXTRAS, installed, report

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "asyncmachine_trio", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=True,
    )  # fmt: skip
    return proc.stdout


def test_report_lists_version_extras_and_tools() -> None:
    out = run()
    assert out.startswith(f"asyncmachine-trio {am.__version__} ")
    for extra in EXTRAS:
        assert f"  {extra} " in out
    for tool in ("am-gen", "am-vis", "arpc"):
        assert f"  {tool} " in out
    assert run("--version").strip() == am.__version__


def test_missing_extra_is_named() -> None:
    assert installed(("asyncmachine_trio",))
    assert not installed(("no_such_module_xyz",))
    assert "missing" not in report()  # the test extra brings every extra's modules
