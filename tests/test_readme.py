"""The README's code blocks run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(code, str(README), "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out  # every example prints what it shows


def test_quick_start_has_two_one_line_commands() -> None:
    section = README.read_text().split("## Quick start", 1)[1]
    first = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert first is not None
    lines = [ln for ln in first.group(1).splitlines() if ln.strip()]
    assert len(lines) == 2


def test_quickstart_example_runs() -> None:
    import runpy

    ns = runpy.run_path(str(README.parent / "examples" / "quickstart.py"))
    log = ns["main"]()
    assert log[0] == "downloading file.txt"
    assert "processing (added automatically)" in log
