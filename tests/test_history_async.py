"""History from async code, on trio (MockClock) and asyncio; the history example."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trio.testing
from history_util import BASIC, FakeClock

import asyncmachine_trio as am
from asyncmachine_trio import history as amhist

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "history.py"


# autojump after 1 ms of real idleness, not 0: with 0 trio's loop spins while a
# worker thread runs (sync_async, close_async), starving it of the GIL
@pytest.fixture(
    params=[
        pytest.param(
            ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0.001)}), id="trio"
        ),
        pytest.param(("asyncio", {}), id="asyncio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


def load_example() -> ModuleType:
    name = "examples_history"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def test_async_api(tmp_path: Path) -> None:
    async with am.open_machine(BASIC, id="async") as mach:
        clock = FakeClock()
        cfg = amhist.SqliteConfig(tracked_states=["Start", "Ready"], flush_interval=60, now=clock)
        async with amhist.SqliteHistory(tmp_path / "h.sqlite", mach, cfg) as sql:
            async with amhist.MemoryHistory(mach, cfg) as mem:
                for _ in range(10):
                    mach.toggle1("Start")
                    clock.advance()
                    await anyio.lowlevel.checkpoint()
                mach.add(["Start", "Ready"])
                await sql.sync_async()
                for h in (sql, mem):
                    got = await h.find_latest_async(amhist.Query(active=["Ready"]), 1)
                    assert [r.time.id for r in got] == [11]
                    with pytest.raises(amhist.UnknownStateError):
                        await h.find_latest_async(amhist.Query(active=["Nope"]))
                assert await sql.find_latest_async() == await mem.find_latest_async()
        assert sql.is_closed and mem.is_closed
    await sql.close_async()  # idempotent


async def test_tracking_async_handlers(tmp_path: Path) -> None:
    class Handlers:
        async def start_state(self, e: am.Event) -> None:
            await anyio.sleep(0.005)  # real on asyncio, virtual on trio
            e.machine.add1("Ready")

    async with am.open_machine(BASIC, id="handlers", handlers=Handlers()) as mach:
        hist = amhist.SqliteHistory(tmp_path / "h.sqlite", mach)
        mach.add1("Start")
        await mach.when1("Ready")
        await hist.sync_async()
        got = await hist.find_latest_async(amhist.Query(activated=["Ready"]))
        assert [r.time.id for r in got] == [2]
    # disposing the machine closed the history
    assert hist.is_closed


async def test_example() -> None:
    lines: list[str] = await load_example().main()
    assert lines[0] == "run 1: (Start:1 Ordered:1 Paid:1 Shipping:1) -- stopping"
    assert lines[1] == "stored: Start Ordered Paid Shipping (next record #5)"
    assert "(machine tick 1)" in lines[2]
    assert lines[3] == "run 2: (Start:1 Ordered:1 Paid:1 Shipped:1 MachineRestored:1)"
    assert "#5 t1 [add] MachineRestored -> Ordered Paid Shipping MachineRestored" in lines
    assert "Paid activated: True" in lines
    assert "Shipping activated by: [4]" in lines
    assert lines[-1] == "records since the restart: [6, 5]"


def test_example_as_script(tmp_path: Path) -> None:
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=True
    )
    assert "records since the restart: [6, 5]" in proc.stdout
