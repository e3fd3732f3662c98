"""am-dbg's files in --dir (tx.md, log.md, clients.txt, graph.md, diagrams/), written
per cursor change in rounds, never per message; in the TUI's loop and headless."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from asyncmachine_trio.telemetry import protocol as p
from asyncmachine_trio.telemetry.receiver import Connection
from asyncmachine_trio.tools.dbg.logic import Debugger
from asyncmachine_trio.tools.dbg.outputs import (
    OutputOptions,
    Outputs,
    clients_text,
    d2_sequence,
    log_markdown,
    tx_markdown,
)
from asyncmachine_trio.tools.dbg.store import Store
from tests.dbg_screens import demo_store
from tests.dbg_util import schema, txs
from tests.proc_util import communicate

ROOT = Path(__file__).resolve().parent.parent
DBG = [sys.executable, "-m", "asyncmachine_trio.tools.dbg", "--headless"]


def has_d2() -> bool:
    from asyncmachine_trio.vis import D2NotFoundError, d2_binary

    try:
        d2_binary()
    except D2NotFoundError:
        return False
    return True


def cursor(store: Store, pos_from_end: int = 3, state: str = "Working") -> Debugger:
    dbg = Debugger(store, tail=False)
    dbg.refresh()
    dbg.last()
    dbg.back(pos_from_end)
    if state:
        dbg.select_state(state)
    return dbg


def test_texts_follow_the_cursor() -> None:
    store = demo_store()
    dbg = cursor(store)
    md = dbg.md
    assert md is not None and dbg.tx is not None
    text = tx_markdown(dbg)
    assert text.startswith(f"# worker: transition {dbg.pos} of {md.total}")
    assert f"- id: `{dbg.tx.id}`" in text
    assert f"`{dbg.address()}`" in text
    # the demo's transitions at every 7th position carry 5 steps
    dbg.goto_pos(57)
    text = tx_markdown(dbg)
    assert "## Steps (5)" in text and "1. Working: called" in text
    assert "2. Working -> Start: require" in text
    dbg.goto_pos(1)
    text = tx_markdown(dbg)
    assert "+Ready line 0" in text and "## Log (1)" in text
    dbg.first()
    assert "before the first transition" in tx_markdown(dbg)

    log = log_markdown(dbg.__class__(store, tail=False))  # a fresh debugger: no machine yet
    assert "No machine selected yet" in log
    dbg.goto_pos(13)
    log = log_markdown(dbg)
    assert log.splitlines()[2] == "#1 [state] +Ready"
    assert "#13 [state] +ErrNet" in log and "#14" not in log
    assert "    [state] +ErrNet line 12" in log
    # a window: only the newest transitions up to the cursor, and a note
    log = log_markdown(dbg, window=3)
    assert "(10 earlier transitions not shown)" in log and "#11 [state] +Done" in log
    dbg.mach.add1("FilterCanceled")
    assert "[cancl]" not in log_markdown(dbg)

    clients = clients_text(store)
    assert clients.startswith("3 machines, 0 clients connected")
    assert "  worker-db\n    status: disconnected\n    parent: worker" in clients
    assert "tags: t1" in clients and "transitions: 60 (60 stored)" in clients


def test_d2_sequence_quotes_names() -> None:
    from asyncmachine_trio.vis import TxSequence
    from asyncmachine_trio.vis.seq import SeqStep

    seq = TxSequence('a "b"', ("X\\Y", "Z"), (SeqStep("X\\Y", "Z", "add", "add"),), ("n",))
    text = d2_sequence(seq)
    assert 'tx: "a \\"b\\"" {' in text and '"X\\\\Y" -> "Z": "add"' in text
    if has_d2():
        from asyncmachine_trio.vis import svg

        assert svg(text).lstrip().startswith("<?xml") or "<svg" in svg(text)


def test_write_now_all_files(tmp_path: Path) -> None:
    store = demo_store()
    dbg = cursor(store)
    opts = OutputOptions(tmp_path, log=True, clients=True, graph=True, diagrams=3)
    out = Outputs(store, dbg, opts)
    written = out.write_now()
    expect = {
        "tx.md",
        "log.md",
        "clients.txt",
        "graph.md",
        *(f"diagrams/{k}.{e}" for k in ("mach", "state", "graph") for e in ("d2", "mermaid")),
        "diagrams/steps.d2",
        "diagrams/steps.mermaid",
        "diagrams/steps.mermaid.txt",
    }
    if has_d2():
        expect |= {f"diagrams/{k}.svg" for k in ("mach", "state", "graph", "steps")}
    assert written == expect, written ^ expect
    assert out.errors == []
    assert (tmp_path / "tx.md").read_text() == tx_markdown(dbg)
    graph = (tmp_path / "graph.md").read_text()
    assert "```mermaid\nflowchart LR" in graph and '"worker-net"' in graph
    assert (tmp_path / "diagrams/steps.mermaid").read_text().startswith("sequenceDiagram")
    assert "[remove]" in (tmp_path / "diagrams/steps.mermaid.txt").read_text()
    # the state diagram: Working and its neighbours, not every state
    state = (tmp_path / "diagrams/state.mermaid").read_text()
    assert "Working" in state and "Start" in state and "Healthcheck" not in state
    # nothing changed: nothing written; a cursor move rewrites only what changed
    assert out.write_now() == set()
    dbg.fwd()
    again = out.write_now()
    assert "tx.md" in again and "clients.txt" not in again
    # no selected state: the state diagram goes away
    dbg.select_state("")
    out.write_now()
    assert not (tmp_path / "diagrams/state.mermaid").exists()
    assert not (tmp_path / "diagrams/state.svg").exists()
    assert not list(tmp_path.rglob(".*.tmp"))


def test_levels_and_defaults(tmp_path: Path) -> None:
    store = demo_store()
    dbg = cursor(store)
    out = Outputs(store, dbg, OutputOptions(tmp_path))
    assert out.write_now() == {"tx.md"}  # the default: tx.md only
    out = Outputs(store, dbg, OutputOptions(tmp_path / "l1", tx=False, diagrams=1))
    assert {Path(f).stem.split(".")[0] for f in out.write_now()} == {"steps"}
    # a viewer's demand lifts the level to 2 (machine and state) for a while
    out.demand(60)
    assert out.level() == 2
    assert "diagrams/mach.mermaid" in out.write_now()
    with pytest.raises(ValueError, match="0-3"):
        OutputOptions(diagrams=4)


def test_write_errors_are_reported(tmp_path: Path) -> None:
    (tmp_path / "tx.md").mkdir()  # a directory where the file should go
    store = demo_store()
    dbg = cursor(store)
    out = Outputs(store, dbg, OutputOptions(tmp_path))
    assert out.write_now() == set()
    assert len(out.errors) == 1 and "tx.md" in str(out.errors[0])
    assert "cannot write" in dbg.message


@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_rounds_not_per_message(tmp_path: Path, anyio_backend: Any) -> None:
    """500 batches between two looks at the cursor make one write round."""
    store = Store()
    conn = Connection(1, "t")
    s = schema("m")
    conn.machines["m"] = s
    store.on_schema(conn, s)
    dbg = Debugger(store)
    out = Outputs(store, dbg, OutputOptions(tmp_path, clients=True, interval=0.05))
    async with anyio.create_task_group() as tg:
        await tg.start(out.run)
        with anyio.fail_after(10):
            await out.wait_round()
        assert out.rounds == 1
        recs = txs("m", 500)
        for i in range(500):  # no await in between: what a burst of frames looks like
            store.add_txs(recs[i : i + 1])
            dbg.refresh()
        with anyio.fail_after(10):
            await out.wait_round()
        assert out.rounds == 2
        tg.cancel_scope.cancel()
    assert "transition 500 of 500" in (tmp_path / "tx.md").read_text()
    assert "transitions: 500" in (tmp_path / "clients.txt").read_text()


def start_headless(out: Path, *extra: str) -> tuple[subprocess.Popen[str], int, list[str]]:
    proc = subprocess.Popen(
        [*DBG, "-l", "127.0.0.1:0", "-d", str(out), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    port = 0
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "listening on" in line:
            port = int(line.rsplit(":", 1)[1])
        if port and ("REPL on" in line or "diagrams on" in line or "no diagrams" in line):
            return proc, port, lines
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"no banner: {lines!r} {proc.stderr.read() if proc.stderr else ''}")


def send_traffic(port: int, mid: str, n: int) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(p.PREAMBLE + p.encode_frame(p.Hello(agent="test")))
        dec = p.Decoder()
        frames: list[Any] = []
        while not frames:
            frames = dec.feed(s.recv(4096))
        assert isinstance(frames[0], p.Welcome)
        s.sendall(p.encode_frame(schema(mid)))
        recs = txs(mid, n)
        for i in range(0, n, 50):
            s.sendall(p.encode_txs(recs[i : i + 50]))


def wait_file(path: Path, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        if path.is_file():
            seen = path.read_text()
            if text in seen:
                return seen
        time.sleep(0.1)
    raise AssertionError(f"{path}: no {text!r} within {timeout}s; has {seen!r}")


def test_headless_writes_files(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    proc, port, lines = start_headless(
        rec, "--output-log", "--output-clients", "--output-graph", "--output-diagrams", "1"
    )
    try:
        send_traffic(port, "hl", 200)
        wait_file(rec / "tx.md", "# hl: transition 200 of 200")
        # the diagrams web server: loopback, listed in the banner
        url = next(ln for ln in lines if "diagrams on" in ln).split("on ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")
        r = httpx.get(url + "/files/tx.md", timeout=10)
        assert r.status_code == 200 and "# hl: transition" in r.text
        r = httpx.get(url + "/diagram/steps", timeout=30)
        assert r.status_code == 200
        wait_file(rec / "clients.txt", "transitions: 200")
        wait_file(rec / "log.md", "#200 ")
        wait_file(rec / "graph.md", '"hl"')
        wait_file(rec / "diagrams" / "steps.mermaid", "sequenceDiagram")
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = communicate(proc, timeout=30)
    assert proc.returncode == 0, err
    assert "wrote 200 transitions" in out
    assert "disconnected" in (rec / "clients.txt").read_text()


def test_headless_no_tx(tmp_path: Path) -> None:
    """--no-output-tx --no-ui-web: nothing but the recording."""
    rec = tmp_path / "rec"
    proc = subprocess.Popen(
        [*DBG, "-l", "127.0.0.1:0", "-d", str(rec), "--no-output-tx", "--no-ui-web"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and "recording to" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "recording to" in line
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = communicate(proc, timeout=30)
    assert proc.returncode == 0, err
    assert "diagrams on" not in out
    assert sorted(f.name for f in rec.iterdir()) == ["am-dbg-dump.amdbg.gz"]


def test_help_lists_the_flags() -> None:
    from typer.testing import CliRunner

    from asyncmachine_trio.tools.dbg.cli import app

    r = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert r.exit_code == 0
    for flag in (
        "--output-tx",
        "--output-log",
        "--output-clients",
        "--output-graph",
        "--output-diagrams",
        "--ui-web",
        "--ui-web-addr",
        "--fwd-data",
        "--dbg-repl",
    ):
        assert flag in r.output, flag
    r = CliRunner().invoke(app, ["-l", "-1", "--output-diagrams", "5"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["--headless", "-l", "127.0.0.1:0", "--fwd-data", "h:xx"])
    assert r.exit_code == 2 and "not a number" in r.output


def test_lone_machine_graph(tmp_path: Path) -> None:
    """One machine: graph.md and the graph diagram still show it."""
    store = Store()
    conn = Connection(1, "t")
    s = schema("solo")
    conn.machines["solo"] = s
    store.on_schema(conn, s)
    store.add_txs(txs("solo", 5))
    dbg = cursor(store, 0, "")
    out = Outputs(store, dbg, OutputOptions(tmp_path, graph=True, diagrams=2))
    written = out.write_now()
    assert out.errors == []
    assert 'm0["solo"]' in (tmp_path / "graph.md").read_text()
    assert "Working" in (tmp_path / "diagrams/graph.mermaid").read_text()
    if has_d2():
        assert "diagrams/graph.svg" in written


def test_a_failing_round_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = demo_store()
    dbg = cursor(store)
    out = Outputs(store, dbg, OutputOptions(tmp_path))
    said: list[Exception] = []
    out.on_error = said.append

    def broken() -> dict[str, str | None]:
        raise ValueError("odd data")

    monkeypatch.setattr(out, "files", broken)
    assert out.write_now() == set()
    assert "cannot make the output files: ValueError('odd data')" in str(said[0])
    assert out.errors == said and "odd data" in dbg.message
