"""--dbg-repl: the debugger's own machine over aRPC, found through <dir>/am-dbg-repl.addr;
an rpc client (and the arpc tool) drives the debugger by its states."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncmachine_trio as am
from asyncmachine_trio import rpc
from asyncmachine_trio.tools.dbg.extras import Extras, ExtrasConfig
from asyncmachine_trio.tools.dbg.logic import Debugger
from asyncmachine_trio.tools.dbg.outputs import OutputOptions
from tests.dbg_screens import demo_store
from tests.proc_util import communicate

ROOT = Path(__file__).resolve().parent.parent
DBG = [sys.executable, "-m", "asyncmachine_trio.tools.dbg", "--headless"]
ARPC = [sys.executable, "-m", "asyncmachine_trio.tools.arpc"]


async def until(cond: Callable[[], bool]) -> None:
    with anyio.fail_after(15):
        while not cond():  # noqa: ASYNC110
            await anyio.sleep(0.02)


@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_rpc_client_drives_the_debugger(tmp_path: Path, anyio_backend: Any) -> None:
    store = demo_store()
    dbg = Debugger(store, tail=False)
    dbg.refresh()
    dbg.first()
    assert dbg.mach.is1("Paused") and dbg.pos == 0
    extras = Extras(ExtrasConfig(OutputOptions(tmp_path, tx=False), repl=True))
    addr_file = tmp_path / "am-dbg-repl.addr"
    async with anyio.create_task_group() as tg:
        await tg.start(extras.run, store, dbg)
        url = addr_file.read_text().strip()
        assert url == extras.repl_url and url.startswith("ws://127.0.0.1:")
        assert any("REPL on" in n for n in extras.notes)
        async with rpc.open_client(url) as client:
            nm = client.netmach
            # tail mode: the debugger jumps to the newest transition
            assert await nm.call_add1("Tail") is am.Result.EXECUTED
            assert dbg.mach.is1("Tail") and not dbg.mach.is1("Paused")
            assert dbg.pos == len(store.get("worker").txs)
            assert await nm.call_add1("FilterCanceled") is am.Result.EXECUTED
            assert dbg.filters.canceled
            # and the other way: the client's mirror follows the debugger
            dbg.mach.add1("Paused")
            with anyio.fail_after(10):
                await nm.when1("Paused")
        tg.cancel_scope.cancel()
    assert not addr_file.exists()


def test_tui_redraws_after_a_remote_mutation(tmp_path: Path) -> None:
    from asyncmachine_trio.tools.dbg.app import DbgApp

    async def main() -> None:
        store = demo_store()
        dbg = Debugger(store, tail=False)
        extras = Extras(ExtrasConfig(OutputOptions(tmp_path, tx=False), repl=True))
        app = DbgApp(store, debugger=dbg, extras=extras)
        async with app.run_test(size=(150, 40)) as pilot:
            addr_file = tmp_path / "am-dbg-repl.addr"
            with anyio.fail_after(15):
                while not addr_file.exists():
                    await pilot.pause(0.05)
            status = app.query_one("#status")
            assert "filters: none" in str(status.render())
            async with rpc.open_client(addr_file.read_text().strip()) as client:
                await client.netmach.call_add1("FilterCanceled")
                with anyio.fail_after(15):
                    while "filters: canceled" not in str(status.render()):
                        await pilot.pause(0.05)

    asyncio.run(main())
    # the worker ends with the app (or, at the latest, with the event loop)
    assert not (tmp_path / "am-dbg-repl.addr").exists()


def test_arpc_tool_reads_the_addr_file(tmp_path: Path) -> None:
    """A headless am-dbg with --dbg-repl, driven by the arpc CLI through -d DIR."""
    proc = subprocess.Popen(
        [*DBG, "--dbg-repl", "--no-ui-web", "-l", "127.0.0.1:0", "-d", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and "REPL on" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "REPL on ws://127.0.0.1:" in line
        assert (tmp_path / "am-dbg-repl.addr").read_text().strip() == line.split("on ")[1].strip()

        def arpc(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*ARPC, "-d", str(tmp_path), "--", *args],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )

        r = arpc("add", "am-dbg", "FilterHealth")
        assert r.returncode == 0, r.stderr + r.stdout
        r = arpc("mach", "am-dbg")
        assert r.returncode == 0, r.stderr + r.stdout
        assert "FilterHealth" in r.stdout and "Tail" in r.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = communicate(proc, timeout=30)
    assert proc.returncode == 0, err
    assert not (tmp_path / "am-dbg-repl.addr").exists()
