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
    for tool in ("am-gen", "am-vis", "arpc", "am-relay"):
        assert f"  {tool} " in out
    assert run("--version").strip() == am.__version__


def test_missing_extra_is_named() -> None:
    assert installed(("asyncmachine_trio",))
    assert not installed(("no_such_module_xyz",))
    assert "missing" not in report()  # the test extra brings every extra's modules


def test_console_scripts_match_the_tools() -> None:
    """[project.scripts], the tools list and the nox scripts session agree."""
    import importlib
    import re

    from asyncmachine_trio.tools import TOOLS

    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    scripts = dict(re.findall(r'^([\w-]+) = "([\w.]+):main"$', section, re.M))
    assert scripts == {name: module for name, (module, _) in TOOLS.items()}
    for module in scripts.values():
        assert callable(importlib.import_module(module).main)
    assert all(f'"{name}"' in (ROOT / "noxfile.py").read_text() for name in scripts)
