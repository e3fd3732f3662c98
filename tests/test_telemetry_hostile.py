"""The debugger protocol's receiving side under attack: every bound of ``Receiver``
(hello size, handshake time, connections in the handshake, trickled frames,
machines), descriptor exhaustion against a headless am-dbg (telemetry port and
diagrams web server), and the bounded queues and error lists of am-dbg's store,
its forwarder and am-relay's forwarder. Loopback only; every wait has a timeout."""

from __future__ import annotations

import resource
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from asyncmachine_trio.telemetry import ClientLimitError, ProtocolError
from asyncmachine_trio.telemetry import protocol as p
from asyncmachine_trio.telemetry.model import SchemaRecord
from asyncmachine_trio.telemetry.receiver import MAX_HELLO, Collector, Receiver
from asyncmachine_trio.tools.dbg.session import import_session
from asyncmachine_trio.tools.dbg.store import KEEP_ERRORS, Store
from tests.dbg_util import schema, txs
from tests.proc_util import communicate

ROOT = Path(__file__).resolve().parent.parent
DBG = [sys.executable, "-m", "asyncmachine_trio.tools.dbg", "--headless"]

pytestmark = pytest.mark.anyio


# ----- helpers


async def open_receiver(
    tg: anyio.abc.TaskGroup, handler: Any = None, **kw: Any
) -> tuple[Receiver, int]:
    r = Receiver(handler if handler is not None else Collector(), **kw)
    port = await tg.start(r.serve, "127.0.0.1", 0)
    return r, port


async def first_frame(stream: anyio.abc.ByteStream) -> Any:
    """The first frame the receiver sends (``None``: it closed without one); 5 s at most."""
    dec = p.Decoder()
    with anyio.fail_after(5):
        while True:
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None
            frames = dec.feed(data)
            if frames:
                return frames[0]


async def hello(port: int, agent: str = "test") -> anyio.abc.SocketStream:
    """A client through the handshake."""
    s = await anyio.connect_tcp("127.0.0.1", port)
    await s.send(p.PREAMBLE + p.encode_frame(p.Hello(agent=agent)))
    assert isinstance(await first_frame(s), p.Welcome)
    return s


async def until(cond: Any) -> None:
    """Poll ``cond()`` (a counter of the receiver, no event to wait on); 5 s at most."""
    with anyio.fail_after(5):
        while not cond():  # noqa: ASYNC110 - polls the receiver's counters
            await anyio.sleep(0.01)


async def good_client_works(port: int, mid: str, c: Collector) -> None:
    """A well-behaved client gets in and its transitions arrive."""
    s = await hello(port, mid)
    async with s:
        await s.send(p.encode_frame(schema(mid)) + p.encode_txs(txs(mid, 3)))
        await c.wait(lambda c: mid in c.machines and len(c.machines[mid].txs) == 3, timeout=5)


# ----- before the handshake


async def test_an_oversized_hello_is_refused_before_it_arrives() -> None:
    """A first frame announcing more than ``max_hello`` bytes is an error at once (the
    receiver does not buffer up to ``max_frame`` for a client that said nothing yet)."""
    c = Collector()
    async with anyio.create_task_group() as tg:
        r, port = await open_receiver(tg, c)
        assert r.max_hello == MAX_HELLO == 64 * 1024
        s = await anyio.connect_tcp("127.0.0.1", port)
        async with s:
            await s.send(p.PREAMBLE + struct.pack(">I", MAX_HELLO + 1) + b"\x92" * 1000)
            err = await first_frame(s)
        assert isinstance(err, p.ErrorFrame) and "exceeds the limit 65536" in err.message
        # a hello at the limit is still fine, and the big frames after it too
        s = await hello(port)
        async with s:
            big = SchemaRecord("big", state_names=[f"S{i:06d}" for i in range(20_000)])
            await s.send(p.encode_frame(big))
            await c.wait(lambda c: "big" in c.machines, timeout=5)
        await good_client_works(port, "m1", c)
        tg.cancel_scope.cancel()


async def test_a_silent_client_gets_a_typed_error_after_the_handshake_timeout() -> None:
    c = Collector()
    async with anyio.create_task_group() as tg:
        _r, port = await open_receiver(tg, c, handshake_timeout=0.3)
        s = await anyio.connect_tcp("127.0.0.1", port)
        async with s:
            await s.send(p.PREAMBLE[:3])
            err = await first_frame(s)
        assert isinstance(err, p.ErrorFrame) and "no hello within" in err.message
        await good_client_works(port, "m1", c)
        tg.cancel_scope.cancel()


async def test_connections_in_the_handshake_are_capped() -> None:
    """Past ``max_pending`` silent connections, the oldest one is closed with a typed
    error to make room: silent connections never lock a well-behaved client out."""
    c = Collector()
    async with anyio.create_task_group() as tg:
        r, port = await open_receiver(tg, c, max_pending=3, handshake_timeout=30)
        silent = []
        for _ in range(3):
            silent.append(await anyio.connect_tcp("127.0.0.1", port))
            n = len(silent)
            await until(lambda: r.pending == n)  # noqa: B023 - awaited at once
        await good_client_works(port, "m1", c)
        err = await first_frame(silent[0])
        assert isinstance(err, p.ErrorFrame) and "in the handshake" in err.message
        assert r.evicted == 1 and r.refused == 1 and r.pending == 2
        # a flood of 50 more: the good client still gets in, the pending count stays capped
        flood = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(50)]
        await until(lambda: r.evicted >= 48)
        assert r.pending <= 3
        await good_client_works(port, "m2", c)
        for s in silent + flood:
            await s.aclose()
        await until(lambda: r.pending == 0)
        tg.cancel_scope.cancel()


# ----- after the handshake


async def test_a_trickled_frame_is_cut_off_and_others_are_served() -> None:
    """A client that starts a frame and sends the rest a byte at a time gets a typed
    error after ``frame_timeout``; an idle client between frames is not affected."""
    c = Collector()
    async with anyio.create_task_group() as tg:
        _r, port = await open_receiver(tg, c, frame_timeout=0.5)
        idle = await hello(port, "idle")
        slow = await hello(port, "slow")
        async with idle, slow:
            await slow.send(struct.pack(">I", 1000) + b"\x92")
            start = anyio.current_time()
            got: Any = None
            with anyio.fail_after(5):
                dec = p.Decoder()
                while got is None:
                    with anyio.move_on_after(0.1):
                        data = await slow.receive()
                        frames = dec.feed(data)
                        got = frames[0] if frames else None
                    if got is None:
                        await slow.send(b"\xa0")  # one more byte: still not a frame
            assert isinstance(got, p.ErrorFrame)
            assert "did not arrive completely within 0.5 s" in got.message
            assert anyio.current_time() - start < 3
            await good_client_works(port, "m1", c)
            # the idle client (nothing started) is still connected and served
            await idle.send(p.encode_frame(schema("m-idle")))
            await c.wait(lambda c: "m-idle" in c.machines, timeout=5)
        tg.cancel_scope.cancel()
    assert any(isinstance(e, ProtocolError) for e in c.errors)


async def test_machines_are_capped_over_live_connections() -> None:
    c = Collector()
    async with anyio.create_task_group() as tg:
        r, port = await open_receiver(tg, c, max_machines=5)
        s = await hello(port)
        async with s:
            # the same machine again does not count twice
            frames = [p.encode_frame(schema(f"m{i}")) for i in (0, 1, 2, 0, 3, 4, 5)]
            await s.send(b"".join(frames))
            err = await first_frame(s)
        assert isinstance(err, p.ErrorFrame) and "too many machines" in err.message
        assert "'m5'" in err.message
        await c.wait(lambda c: c.disconnects == 1, timeout=5)
        assert sorted(c.machines) == ["m0", "m1", "m2", "m3", "m4"]
        assert isinstance(c.errors[-1], ClientLimitError)
        assert r.machines == 0 and r.refused == 1
        # the slots of a closed connection are free again
        await good_client_works(port, "m6", c)
        # a disposed machine (gone) no longer counts: a long-lived process may create
        # and dispose any number of machines over one connection
        s = await hello(port)
        async with s:
            for i in range(12):
                mid = f"short-lived-{i}"
                await s.send(p.encode_frame(schema(mid)) + p.encode_frame(p.Gone(mid)))
            await c.wait(lambda c: "short-lived-11" in c.machines, timeout=5)
            assert c.machines["short-lived-11"].gone and r.machines == 0
            assert not c.machines["short-lived-11"].connected
        tg.cancel_scope.cancel()


async def test_collector_and_store_keep_a_bounded_number_of_errors() -> None:
    c = Collector()
    store = Store()
    async with anyio.create_task_group() as tg:
        _r, port = await open_receiver(tg, c)
        _r2, port2 = await open_receiver(tg, store)
        for _ in range(KEEP_ERRORS + 20):
            for pt in (port, port2):
                s = await hello(pt)
                async with s:
                    await s.send(p.encode_frame(p.ErrorFrame("bye")))
                    assert isinstance(await first_frame(s), p.ErrorFrame)
        n = KEEP_ERRORS + 20
        await until(lambda: c.disconnects == n and store.clients == 0 and store.connects == n)
        tg.cancel_scope.cancel()
    assert len(c.errors) == 100 and len(store.errors) == KEEP_ERRORS == 100
    assert all(e.__traceback__ is None for e in store.errors)


# ----- am-dbg's store: schemas count against the memory cap


def test_machines_announced_and_abandoned_stay_under_the_memory_cap() -> None:
    from asyncmachine_trio.telemetry.receiver import Connection

    store = Store(max_mem=2_000_000)
    for round_ in range(50):
        conn = Connection(round_ + 1, "peer")
        store.on_connect(conn)
        for i in range(100):
            sch = schema(f"r{round_}-m{i}")
            conn.machines[sch.machine_id] = sch
            store.on_schema(conn, sch)
        store.on_disconnect(conn, None)
        assert store.mem <= 2_000_000
    assert len(store.machines) < 300, len(store.machines)
    assert len(store.gc_removed) == KEEP_ERRORS
    # the newest machines are the ones kept
    assert "r49-m99" in store.machines and "r0-m0" not in store.machines


# ----- descriptor exhaustion (a headless am-dbg with RLIMIT_NOFILE 64)


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def _start_limited(out: Path) -> tuple[subprocess.Popen[str], int, str]:
    proc = subprocess.Popen(
        [*DBG, "-l", "127.0.0.1:0", "-d", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_fds,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    port, url = 0, ""
    lines: list[str] = []
    while time.monotonic() < deadline and not (port and url):
        line = proc.stdout.readline()
        lines.append(line)
        if "listening on" in line:
            port = int(line.rsplit(":", 1)[1])
        if "diagrams on" in line:
            url = line.split("diagrams on", 1)[1].strip()
        if not line and proc.poll() is not None:
            break
    if not (port and url):
        proc.kill()
        raise AssertionError(f"no banner: {lines!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, port, url


def _flood(port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        try:
            out.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            break
    return out


def _retry(fn: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _send_traffic(port: int, mid: str, n: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(p.PREAMBLE + p.encode_frame(p.Hello(agent="test")))
        dec = p.Decoder()
        frames: list[Any] = []
        while not frames:
            data = s.recv(4096)
            if not data:
                raise ConnectionError("closed before the welcome")
            frames = dec.feed(data)
        assert isinstance(frames[0], p.Welcome)
        s.sendall(p.encode_frame(schema(mid)) + p.encode_txs(txs(mid, n)))
        s.shutdown(socket.SHUT_WR)
        s.recv(10)  # the receiver closes when it read everything


def _http_get(url: str) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_descriptor_exhaustion_neither_kills_am_dbg_nor_loses_data(tmp_path: Path) -> None:
    """100 connections each to the telemetry and the web port of an am-dbg limited to 64
    descriptors: accept() fails with EMFILE; once they leave, both servers serve again
    and the recording written on SIGINT has every transition."""
    proc, port, url = _start_limited(tmp_path / "rec")
    try:
        held = _flood(port, 100) + _flood(int(url.rsplit(":", 1)[1]), 100)
        time.sleep(0.5)  # the server is out of descriptors now
        for s in held:
            s.close()
        _retry(lambda: _send_traffic(port, "survivor", 40))
        page = _retry(lambda: _http_get(url))
        assert page.startswith(b"HTTP/1.1 200"), page[:100]
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = communicate(proc, timeout=30)
    assert proc.returncode == 0, err[-2000:]
    store = import_session(tmp_path / "rec" / "am-dbg-dump.amdbg.gz")
    assert len(store.get("survivor").txs) == 40


# ----- forwarding: queues bounded in bytes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_am_dbg_forward_queues_are_bounded_in_bytes() -> None:
    """Big ``txs`` frames for a target that is down: the links together queue at most
    ``max_bytes``; the rest is dropped and counted (the frame count bound alone let
    1,000 frames of up to 16 MiB each pile up per link)."""
    from asyncmachine_trio.tools.dbg.forward import MAX_BYTES, Forwarder, Tee

    assert MAX_BYTES == 64 * 1024 * 1024
    a = Store()
    fwd = Forwarder([f"127.0.0.1:{_free_port()}"], max_bytes=1_000_000, backoff=0.05)
    async with anyio.create_task_group() as tg:
        await tg.start(fwd.run)
        _r, port = await open_receiver(tg, Tee(a, fwd))
        s = await hello(port)
        async with s:
            await s.send(p.encode_frame(schema("m")))
            recs = txs("m", 200)
            for rec in recs:  # ~60 KB per frame: 20 of them fit under 1 MB
                rec.log_entries = ["x" * 60_000]
            for i in range(0, 200, 10):
                await s.send(p.encode_txs(recs[i : i + 10]))
            await a.wait(lambda st: "m" in st.machines and len(st.get("m")) == 200, timeout=10)
            assert fwd.queued_bytes <= 1_000_000
            assert fwd.dropped >= 180
        tg.cancel_scope.cancel()
    assert fwd.queued_bytes == 0  # the cancelled links gave theirs back


async def test_am_relay_forwarder_survives_more_schemas_than_its_queue() -> None:
    """On (re)connect the relay's forwarder sends every known schema first; more of them
    than ``max_queue`` used to end its task (and am-relay) with ``WouldBlock``."""
    from asyncmachine_trio.tools.relay import Forwarder as RelayForwarder

    schemas = [schema(f"m{i}") for i in range(50)]
    c = Collector()
    async with anyio.create_task_group() as tg:
        _r, port = await open_receiver(tg, c)
        fwd = RelayForwarder(f"127.0.0.1:{port}", lambda: schemas, max_queue=5, max_bytes=10_000)
        tg.start_soon(fwd.run)
        await c.wait(lambda c: len(c.machines) == 50, timeout=10)
        big = p.encode_txs(txs("m0", 40))
        for _ in range(20):
            fwd.send(big)  # over max_bytes: dropped and counted, never queued
        assert fwd.queued_bytes <= 10_000 and fwd.dropped > 0
        await c.wait(lambda c: len(c.machines["m0"].txs) >= 40, timeout=10)
        tg.cancel_scope.cancel()
    assert fwd.connects == 1


# ----- am-dbg's diagrams web server: files are streamed


@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_web_files_are_streamed_not_loaded(tmp_path: Path, anyio_backend: Any) -> None:
    """Stalled downloads of a large file in ``--dir`` hold one chunk each, not the file
    (it was read whole, then copied into the answer, per request)."""
    import os
    import tracemalloc

    from tests.test_dbg_diagrams_web import raw, serving, until

    out = tmp_path / "out"
    out.mkdir()
    (out / "big.bin").touch()
    os.truncate(out / "big.bin", 64 * 1024 * 1024)  # sparse: no disk
    data = os.urandom(3 * 1024 * 1024 + 17)
    (out / "small.bin").write_bytes(data)
    async with serving(tmp_path) as (s, _):
        ans = await raw(s.port, b"GET /files/small.bin HTTP/1.1\r\n\r\n")
        head, _, body = ans.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and f"Content-Length: {len(data)}".encode() in head
        assert body == data
        head_only = await raw(s.port, b"HEAD /files/big.bin HTTP/1.1\r\n\r\n")
        assert b"Content-Length: 67108864\r\n" in head_only and head_only.endswith(b"\r\n\r\n")
        tracemalloc.start()
        try:
            stalled = []
            for _ in range(4):
                c = await anyio.connect_tcp("127.0.0.1", s.port)
                await c.send(b"GET /files/big.bin HTTP/1.1\r\n\r\n")
                stalled.append(c)
            await until(lambda: s.answered.get(200, 0) >= 6)
            await anyio.sleep(0.5)  # the senders fill the socket buffers and stall
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 16 * 1024 * 1024, peak
        ans = await raw(s.port, b"GET / HTTP/1.1\r\n\r\n")  # others are still served
        assert ans.startswith(b"HTTP/1.1 200 ")
        for c in stalled:
            await c.aclose()
