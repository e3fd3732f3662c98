"""`import asyncmachine_trio` stays cheap: heavy modules load on first use (issue 11).

The time itself is measured by ``benchmarks/import_time.py`` (never in tests);
here: which modules the import pulls in, and that each lazy piece still works.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

ROOT = Path(__file__).resolve().parent.parent

# structlog (and rich through it), the event loops, the optional layers, cattrs
LAZY = (
    "structlog",
    "rich",
    "trio",
    "asyncio",
    "cattrs",
    "secrets",
    "hashlib",
    "traceback",
    "logging",
    "asyncmachine_trio.helpers",
    "asyncmachine_trio.rpc",
    "asyncmachine_trio.history",
    "asyncmachine_trio.states",
    "asyncmachine_trio.testing",
)


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return list(json.loads(out.stdout.splitlines()[-1]))


def test_import_loads_no_heavy_module() -> None:
    loaded = set(_loaded_after("import asyncmachine_trio"))
    assert "asyncmachine_trio.machine.machine" in loaded
    assert [m for m in LAZY if m in loaded] == []


def test_first_mutation_loads_no_heavy_module() -> None:
    code = (
        "import asyncmachine_trio as am\n"
        "m = am.Machine({'A': am.State(), 'B': am.State(remove=('A',))})\n"
        "m.add1('A'); m.add1('B')\n"
        "assert m.active_states() == ['B']"
    )
    loaded = set(_loaded_after(code))
    assert [m for m in LAZY if m in loaded] == []


def test_lazy_layers_load_on_access() -> None:
    code = (
        "import asyncmachine_trio as am\n"
        "assert am.helpers.__name__ == 'asyncmachine_trio.helpers'\n"
        "from asyncmachine_trio import helpers\n"
        "assert helpers is am.helpers\n"
        "assert am.hash_str('x') == am.hash_str('x') and len(am.hash_str('x')) == 6"
    )
    loaded = set(_loaded_after(code))
    assert {"asyncmachine_trio.helpers", "hashlib"} <= loaded


def test_structlog_loads_at_the_first_line_logged(capsys: pytest.CaptureFixture[str]) -> None:
    import asyncmachine_trio as am

    m = am.Machine({"A": am.State()}, id="lazylog", log_level=am.LogLevel.CHANGES)
    m.add1("A")
    assert "lazylog" in capsys.readouterr().out
    code = (
        "import sys, asyncmachine_trio as am\n"
        "m = am.Machine({'A': am.State()}, log_level=am.LogLevel.CHANGES)\n"
        "assert 'structlog' not in sys.modules\n"
        "m.add1('A')"
    )
    assert "structlog" in _loaded_after(code)


def test_error_trace_formats_without_traceback_preloaded() -> None:
    code = (
        "import asyncmachine_trio as am\n"
        "m = am.Machine({'A': am.State()})\n"
        "m.add_err(ValueError('boom'))\n"
        "assert m.err is not None and m.is_err()\n"
    )
    assert "asyncmachine_trio" in _loaded_after(code)


@pytest.mark.trio
async def test_start_on_trio_without_trio_imported_by_us() -> None:
    # the package no longer imports trio; started from trio, it finds the nursery
    import asyncmachine_trio as am

    async with am.open_machine({"A": am.State()}) as m:
        ran = trio.Event()

        async def work() -> None:
            ran.set()

        m.add1("A")
        assert m.fork("A", work)
        with trio.fail_after(5):
            await ran.wait()
