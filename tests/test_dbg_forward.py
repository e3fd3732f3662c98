"""--fwd-data: one am-dbg forwards everything it receives to others, with bounded
buffers, drop-and-count while a target is down, and reconnects."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncmachine_trio.telemetry import protocol as p
from asyncmachine_trio.telemetry.receiver import Receiver
from asyncmachine_trio.tools.dbg.forward import Forwarder, Tee
from asyncmachine_trio.tools.dbg.session import import_session
from asyncmachine_trio.tools.dbg.store import Store
from tests.dbg_util import schema, txs
from tests.proc_util import communicate

ROOT = Path(__file__).resolve().parent.parent
DBG = [sys.executable, "-m", "asyncmachine_trio.tools.dbg", "--headless"]
both = pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])


async def client(port: int) -> Any:
    s = await anyio.connect_tcp("127.0.0.1", port)
    await s.send(p.PREAMBLE + p.encode_frame(p.Hello(agent="t")))
    dec = p.Decoder()
    frames: list[Any] = []
    with anyio.fail_after(10):
        while not frames:
            frames = dec.feed(await s.receive())
    assert isinstance(frames[0], p.Welcome)
    return s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@both
async def test_two_receivers_get_everything(anyio_backend: Any) -> None:
    """A -> (B, C): both targets hold every transition, the parent link, the drop
    report, and see the client disconnect."""
    a, b, c = Store(), Store(), Store()
    async with anyio.create_task_group() as tg:
        port_b = await tg.start(Receiver(b).serve, "127.0.0.1", 0)
        port_c = await tg.start(Receiver(c).serve, "127.0.0.1", 0)
        fwd = Forwarder([f"127.0.0.1:{port_b}", f"127.0.0.1:{port_c}"])
        await tg.start(fwd.run)
        port_a = await tg.start(Receiver(Tee(a, fwd)).serve, "127.0.0.1", 0)
        sent = {m: txs(m, 1000) for m in ("one", "two")}
        s = await client(port_a)
        await s.send(p.encode_frame(schema("one")) + p.encode_frame(schema("two", "one")))
        for i in range(0, 1000, 100):
            for recs in sent.values():
                await s.send(p.encode_txs(recs[i : i + 100]))
        await s.send(p.encode_frame(p.Dropped("one", 7)) + p.encode_frame(p.Gone("two", 5)))
        for store in (a, b, c):
            await store.wait(
                lambda st: (
                    all(m in st.machines and len(st.get(m)) == 1000 for m in sent)
                    and st.get("two").gone
                ),
                timeout=20,
            )
        await s.aclose()
        for store in (b, c):
            await store.wait(lambda st: not st.get("one").connected, timeout=20)
        tg.cancel_scope.cancel()
    for store in (b, c):
        for m, recs in sent.items():
            assert list(store.get(m).records()) == recs
        assert store.get("two").parent_id == "one"
        assert store.get("one").dropped == 7
        assert store.connects == 1
    assert fwd.dropped == 0
    assert [st.txs for st in fwd.stats] == [2000, 2000]


@both
async def test_target_down_drops_counts_and_reconnects(anyio_backend: Any) -> None:
    port_b = free_port()  # nothing listens there yet
    a, b = Store(), Store()
    fwd = Forwarder([f"127.0.0.1:{port_b}"], max_frames=3, backoff=0.05, max_backoff=0.2)
    async with anyio.create_task_group() as tg:
        await tg.start(fwd.run)
        port_a = await tg.start(Receiver(Tee(a, fwd)).serve, "127.0.0.1", 0)
        recs = txs("m", 100)
        s = await client(port_a)
        await s.send(p.encode_frame(schema("m")))
        for i in range(0, 100, 10):  # 10 batches; the queue holds the schema and 2 of them
            await s.send(p.encode_txs(recs[i : i + 10]))
        await a.wait(lambda st: "m" in st.machines and len(st.get("m")) == 100, timeout=10)
        assert fwd.dropped == 80
        with anyio.fail_after(10):
            while not fwd.stats[0].failures:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        # the target comes up: the link reconnects, sends the schema, the queued
        # batches, the drop report; then live traffic flows again
        await tg.start(Receiver(b).serve, "127.0.0.1", port_b)
        await b.wait(lambda st: "m" in st.machines and len(st.get("m")) == 20, timeout=20)
        await b.wait(lambda st: st.get("m").dropped_reported == 80, timeout=20)
        more = txs("m", 110)[100:]
        await s.send(p.encode_txs(more))
        await b.wait(lambda st: len(st.get("m")) == 30, timeout=20)
        await s.aclose()
        tg.cancel_scope.cancel()
    got = list(b.get("m").records())
    assert got[:20] == recs[:20] and got[20:] == more
    assert fwd.stats[0].connects == 1 and fwd.stats[0].failures >= 1
    assert "Error" in fwd.stats[0].last_error


def start(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [*DBG, "--no-ui-web", "-l", "127.0.0.1:0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on" in line:
            return proc, int(line.rsplit(":", 1)[1])
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(proc.stderr.read() if proc.stderr else "no banner")


def wait_file(path: Path, text: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path}: no {text!r}")


def test_headless_fwd_data(tmp_path: Path) -> None:
    """Two headless am-dbg: the first forwards (``--fwd-data``) to the second."""
    second, port2 = start("-d", str(tmp_path / "b"))
    try:
        first, port1 = start("-d", str(tmp_path / "a"), "--fwd-data", f"127.0.0.1:{port2}")
        try:
            with socket.create_connection(("127.0.0.1", port1), timeout=10) as s:
                s.sendall(p.PREAMBLE + p.encode_frame(p.Hello(agent="t")))
                s.recv(4096)
                s.sendall(p.encode_frame(schema("hl")))
                recs = txs("hl", 500)
                for i in range(0, 500, 50):
                    s.sendall(p.encode_txs(recs[i : i + 50]))
                # both show the last transition in their tx.md
                wait_file(tmp_path / "a" / "tx.md", "transition 500 of 500")
                wait_file(tmp_path / "b" / "tx.md", "transition 500 of 500")
        finally:
            first.send_signal(signal.SIGINT)
            out1, err1 = communicate(first, timeout=30)
    finally:
        second.send_signal(signal.SIGINT)
        _out2, err2 = communicate(second, timeout=30)
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    assert "forwarding to" in out1
    a = import_session(tmp_path / "a" / "am-dbg-dump.amdbg.gz")
    b = import_session(tmp_path / "b" / "am-dbg-dump.amdbg.gz")
    assert list(a.get("hl").records()) == list(b.get("hl").records()) == recs


@both
async def test_connections_before_run_are_forwarded(anyio_backend: Any) -> None:
    """A client handled before the forwarder's task group exists is not lost."""
    from asyncmachine_trio.telemetry.receiver import Connection

    b = Store()
    async with anyio.create_task_group() as tg:
        port_b = await tg.start(Receiver(b).serve, "127.0.0.1", 0)
        fwd = Forwarder([f"127.0.0.1:{port_b}"])
        conn = Connection(1, "early")
        s = schema("early")
        conn.machines["early"] = s
        recs = txs("early", 10)
        fwd.on_connect(conn)
        fwd.on_schema(conn, s)
        fwd.on_txs(conn, recs)
        await tg.start(fwd.run)
        await b.wait(lambda st: "early" in st.machines and len(st.get("early")) == 10, timeout=20)
        fwd.on_disconnect(conn, None)
        await b.wait(lambda st: not st.get("early").connected, timeout=20)
        tg.cancel_scope.cancel()
    assert list(b.get("early").records()) == recs


def test_tee_keeps_the_store_when_another_handler_fails() -> None:
    from asyncmachine_trio.telemetry.receiver import Connection, ReceiverHandler

    class Boom(ReceiverHandler):
        def on_txs(self, conn: Connection, txs: list[Any]) -> None:
            raise RuntimeError("boom")

    store = Store()
    tee = Tee(store, Boom())
    conn = Connection(1, "t")
    s = schema("m")
    conn.machines["m"] = s
    tee.on_connect(conn)
    tee.on_schema(conn, s)
    tee.on_txs(conn, txs("m", 3))
    assert len(store.get("m")) == 3 and tee.errors == 1
    # the primary's errors still reach the receiver (which drops that client)
    with pytest.raises(KeyError, match="unknown machine"):
        tee.on_txs(conn, txs("other", 1))
