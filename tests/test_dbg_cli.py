"""am-dbg's command line: --help / --version, bad flags, headless recording of the
expense example in a real subprocess (AM_DBG_ADDR), and --import of the recording."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asyncmachine_trio.tools.dbg.cli import app
from asyncmachine_trio.tools.dbg.session import import_session
from tests.proc_util import communicate

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_help_and_version() -> None:
    r = runner.invoke(app, ["--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert r.exit_code == 0
    for flag in (
        "--listen-addr",
        "--import",
        "--select-machine",
        "--select-transition",
        "--filter-canceled",
        "--output-dir",
        "--max-mem",
        "--headless",
        "--web",
    ):
        assert flag in r.output, flag
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("am-dbg ")


def test_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.amdbg.gz"
    bad.write_bytes(b"nope")
    r = runner.invoke(app, ["-l", "-1", "--import", str(bad)])
    assert r.exit_code == 2 and "not an am-dbg session" in r.output
    r = runner.invoke(app, ["-l", "host:xx"])
    assert r.exit_code == 2 and "not a number" in r.output
    r = runner.invoke(app, ["-l", "-1", "--select-transition", "x"])
    assert r.exit_code == 2 and "needs --select-machine" in r.output


def start_headless(out: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncmachine_trio.tools.dbg",
            "--headless",
            "-l",
            "127.0.0.1:0",
            "-d",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on" in line:
            return proc, int(line.rsplit(":", 1)[1])
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"no banner: {line!r} {proc.stderr.read() if proc.stderr else ''}")


def test_headless_records_expense(tmp_path: Path) -> None:
    proc, port = start_headless(tmp_path / "rec")
    try:
        env = {**os.environ, "AM_DBG_ADDR": f"127.0.0.1:{port}"}
        env.pop("AM_TEST_RUNNER", None)
        seen_file = tmp_path / "seen.json"
        subprocess.run(
            [sys.executable, str(ROOT / "tests" / "dbg_expense_run.py"), str(seen_file)],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=60,
            capture_output=True,
        )
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = communicate(proc, timeout=30)
    assert proc.returncode == 0, err
    assert "wrote" in out and "transitions" in out and "machines" in out
    seen = json.loads(seen_file.read_text())
    store = import_session(tmp_path / "rec" / "am-dbg-dump.amdbg.gz")
    md = store.get("expense")
    assert len(seen) >= 6
    assert [r.id for r in md.records()] == [s["id"] for s in seen]
    assert [r.time_after for r in md.records()] == [s["time"] for s in seen]
    assert [r.accepted for r in md.records()] == [s["accepted"] for s in seen]
    assert [r.seq for r in md.records()] == list(range(1, len(seen) + 1))
    # the approval for another expense was canceled by the negotiation handler
    assert not all(s["accepted"] for s in seen)
    last = md.time_at(len(md))
    assert last[md.index["PaymentCompleted"]] % 2 == 1
    # --import opens the UI on the last transition
    import asyncio

    from asyncmachine_trio.tools.dbg.cli import _load, make_tui
    from asyncmachine_trio.tools.dbg.store import Store

    async def ui() -> None:
        store = Store()
        _load(str(tmp_path / "rec" / "am-dbg-dump.amdbg.gz"), store)
        tui = make_tui(store, tail=False)
        async with tui.run_test(size=(150, 40)) as pilot:
            await pilot.pause()
            assert tui.dbg.machine_id == "expense" and tui.dbg.pos == len(seen)
            assert tui.dbg.mach.is1("Paused")
            assert "+PaymentCompleted" in str(tui.query_one("#tx-bar").render())

    asyncio.run(ui())


def test_select_machine_waits_for_it() -> None:
    """Live: --select-machine / an address open when that machine connects."""
    import asyncio

    from asyncmachine_trio.telemetry.receiver import Connection
    from asyncmachine_trio.tools.dbg.cli import make_tui
    from asyncmachine_trio.tools.dbg.store import Store
    from tests.dbg_util import schema, txs

    async def ui() -> None:
        store = Store()
        tui = make_tui(store, machurl="mach://late/late-4", tail=False)
        async with tui.run_test(size=(150, 40)) as pilot:
            await pilot.pause()
            assert tui.dbg.machine_id == ""
            store.on_schema(Connection(1, "t"), schema("early"))
            store.on_schema(Connection(1, "t"), schema("late"))
            store.add_txs(txs("early", 5) + txs("late", 10))
            for _ in range(100):
                await pilot.pause(0.02)
                if tui.dbg.machine_id == "late":
                    break
            assert tui.dbg.machine_id == "late" and tui.dbg.pos == 5

    asyncio.run(ui())


def test_import_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large file goes through the rich progress bar (stderr) and imports."""
    from asyncmachine_trio.tools.dbg import cli
    from asyncmachine_trio.tools.dbg.session import export_session
    from asyncmachine_trio.tools.dbg.store import Store
    from tests.test_dbg_store import fill

    s = Store()
    fill(s, 2, 1000)
    export_session(s, tmp_path / "big.amdbg.gz")
    monkeypatch.setattr(cli, "PROGRESS_MIN", 1000)
    calls: list[int] = []
    real = cli.err_console.print
    monkeypatch.setattr(cli.err_console, "print", lambda *a, **k: (calls.append(1), real(*a, **k)))
    back = Store()
    cli._load(str(tmp_path / "big.amdbg.gz"), back)
    assert back.tx_count == 2000
