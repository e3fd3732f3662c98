"""``python -m asyncmachine_trio``: version, extras, tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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

    from asyncmachine_trio.tools import TOOLS, _launch

    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    scripts = dict(
        re.findall(r'^([\w-]+) = "asyncmachine_trio.tools._launch:(\w+)"$', section, re.M)
    )
    assert scripts == {name: name.replace("-", "_") for name in TOOLS}
    assert set(_launch.EXTRA_OF) == set(TOOLS)
    for name, func in scripts.items():
        assert callable(getattr(_launch, func))
        assert callable(importlib.import_module(TOOLS[name][0]).main)
    assert all(f'"{name}"' in (ROOT / "noxfile.py").read_text() for name in scripts)


@pytest.mark.parametrize(("tool", "blocked", "extra"), [
    ("am-gen", "typer", "cli"),     # imported first by the tool's module
    ("arpc", "click", "cli"),
    ("am-dbg", "rich", "dbg"),      # imported by tools/_cli.py, re-raised with a message
])  # fmt: skip
def test_console_script_without_its_extra_names_the_extra(
    tool: str, blocked: str, extra: str
) -> None:
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "from asyncmachine_trio.tools._launch import run\n"
        f"sys.argv = [{tool!r}, '--version']; run({tool!r})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{tool} needs the {extra} extra (the module {blocked!r} is missing)" in proc.stderr
    assert f"pip install -e '.[{extra}]'" in proc.stderr


def test_console_script_runs_its_tool() -> None:
    code = (
        "import sys\n"
        "from asyncmachine_trio.tools._launch import am_gen\n"
        "sys.argv = ['am-gen', '--version']; am_gen()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.stdout.strip() == f"am-gen {am.__version__}", proc.stderr
