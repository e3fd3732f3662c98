"""aRPC against hostile peers: frames made to crash the decoder, fuzzed frames.

Every attack runs against a real server (or mux) on 127.0.0.1 over real
sockets; after it, the server must still be up and serve a well-behaved client.
The decoder itself is checked over arbitrary bytes and over near-valid frames
(hypothesis); ``nox -s fuzz`` runs a longer session (``tests/fuzz_wire.py``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest
import trio
import trio.lowlevel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncmachine_trio as am
from asyncmachine_trio import rpc
from asyncmachine_trio.rpc import wire

EXECUTED = am.Result.EXECUTED


class Src(rpc.StateSourceStates):
    A = am.State()
    B = am.State()


# ----- the crash frames


def nested_ext(depth: int) -> Any:
    """Registered-value extensions nested ``depth`` deep (each holds the next)."""
    inner: Any = None
    for _ in range(depth):
        inner = msgpack.ExtType(1, msgpack.packb(["am.AException", inner]))
    return inner


def deep_list(depth: int) -> bytes:
    """msgpack of a list nested ``depth`` deep (built as bytes: no recursion here)."""
    return b"\x91" * depth + b"\xc0"


CRASH_FRAMES: list[tuple[str, bytes]] = [
    ("ext-nested-300", msgpack.packb([1, "Hello", None, nested_ext(300)])),
    ("ext-nested-100-in-args", msgpack.packb([2, "Add", None, [[0], nested_ext(100), 1, ""]])),
    ("body-nested-1000", b"\x94\x03\xa5Hello\xc0" + deep_list(1000)),
    ("seq-nested-1000", b"\x94" + deep_list(1000) + b"\xa5Hello\xc0\xc0"),
    ("error-nested-1000", b"\x94\x00\xc0" + deep_list(1000) + b"\xc0"),
    ("method-nested-1000", b"\x94\x04" + deep_list(1000) + b"\xc0\xc0"),
    (
        "args-nested-1000",
        b"\x94\x05\xa3Add\xc0\x94\x91\x00\x81\xa1x" + deep_list(1000) + b"\x01\xa0",
    ),
    ("huge-array-claim", b"\x94\x06\xa5Hello\xc0\xdd\xff\xff\xff\xff"),
    ("huge-map-claim", b"\x94\x07\xa5Hello\xc0\xdf\xff\xff\xff\xff"),
    ("huge-str-claim", b"\x94\x08\xdb\xff\xff\xff\xff"),
    ("extra-data", msgpack.packb([9, "Hello", None, None]) + b"\xc0"),
    ("stack-error", b"\x94\x0a\xa5Hello\xc0" + deep_list(5000)),
]


def test_crash_frames_decode_to_typed_errors() -> None:
    for name, data in CRASH_FRAMES:
        with pytest.raises(rpc.RpcDecodeError):
            frame = wire.decode_frame(data)
            # the envelope may pass; the body then fails to structure
            wire.structure(frame.body, wire.CliMutation if frame.method == "Add" else wire.CliHello)
            pytest.fail(name)


async def good_client_works(addr: str, src: am.Machine, state: str = "A") -> None:
    async with rpc.open_client(addr, Src, ready_timeout=5) as client:
        with trio.fail_after(5):
            assert await client.netmach.call_toggle1(state) is EXECUTED
    assert src.tick(state) >= 1


async def attack(addr: str, frames: list[tuple[str, bytes]]) -> list[wire.Frame]:
    """Send ``frames`` on one connection; the server's answers (one per frame)."""
    out = []
    async with trio.open_nursery() as n:
        t = await rpc.connect(addr, nursery=n, max_frame=1 << 20)
        try:
            for _name, data in frames:
                await t.send(data)
                with trio.fail_after(5):
                    out.append(wire.decode_frame(await t.receive()))
        finally:
            await t.aclose()
            n.cancel_scope.cancel()
    return out


@asynccontextmanager
async def listening(kind: str, scheme: str, src: am.Machine) -> AsyncIterator[str]:
    addr = f"{scheme}://127.0.0.1:0"
    opener = rpc.open_server if kind == "server" else rpc.open_mux
    async with opener(src, addr) as srv:  # type: ignore[operator]
        yield srv.addr


@pytest.mark.parametrize("kind", ["server", "mux"])
@pytest.mark.parametrize("scheme", ["ws", "tcp"])
@pytest.mark.trio
async def test_crash_frames_against_a_live_server(kind: str, scheme: str) -> None:
    src = am.Machine(Src, id="src")
    async with listening(kind, scheme, src) as addr:
        answers = await attack(addr, CRASH_FRAMES)
        for (name, _data), f in zip(CRASH_FRAMES, answers, strict=True):
            assert f.error is not None and f.error.kind == "decode", (name, f)
            assert len(f.error.message) <= 1000, name
        await good_client_works(addr, src)
        assert src.tick(am.EXCEPTION) == 0


@pytest.mark.trio
async def test_mux_serves_a_good_client_during_an_attack() -> None:
    src = am.Machine(Src, id="src")
    async with rpc.open_mux(src, "ws://127.0.0.1:0") as mux, trio.open_nursery() as n:
        t = await rpc.connect(mux.addr, nursery=n)
        for _name, data in CRASH_FRAMES:
            await t.send(data)
        await good_client_works(mux.addr, src)
        await t.aclose()
        n.cancel_scope.cancel()


@pytest.mark.trio
async def test_hostile_server_cannot_crash_a_client() -> None:
    """A server answering Hello with a crash frame: the client fails the handshake, typed."""

    async def evil(t: rpc.Transport) -> None:
        with trio.move_on_after(5), contextlib.suppress(rpc.RpcConnectionError):
            while True:
                frame = wire.decode_frame(await t.receive())
                body = nested_ext(300) if frame.seq % 2 else None
                data = msgpack.packb([frame.seq, None, None, body])
                if body is None:
                    data = b"\x94" + msgpack.packb(frame.seq) + b"\xc0\xc0" + deep_list(1000)
                await t.send(data)

    async with trio.open_nursery() as n:
        addr = await n.start(rpc.transport.serve, "tcp://127.0.0.1:0", evil)
        client = rpc.Client(addr, Src, conn_retries=1, conn_retry_delay=0.01, call_timeout=0.3)
        client.start(n)
        with pytest.raises(rpc.RpcConnectionError), trio.fail_after(10):
            await client.wait_ready()
        assert client.mach.tick("ErrRpc") >= 1
        await client.stop(dispose=True)
        n.cancel_scope.cancel()


# ----- fuzzing the decoder (CI: bounded example counts)

MESSAGES = (
    wire.CliHello,
    wire.SrvHello,
    wire.CliMutation,
    wire.SrvMutation,
    wire.Update,
    wire.UpdateMuts,
    wire.SrvSync,
    wire.SrvPayload,
    wire.Empty,
    wire.ErrorInfo,
)


def check_total(data: bytes) -> None:
    """Decoding ``data`` gives a frame (and bodies structure or not), or RpcDecodeError."""
    try:
        frame = wire.decode_frame(data)
    except rpc.RpcDecodeError:
        return
    for cls in MESSAGES:
        try:
            wire.structure(frame.body, cls)
        except rpc.RpcDecodeError:
            pass


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_decoder_is_total_on_arbitrary_bytes(data: bytes) -> None:
    check_total(data)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
methods = st.sampled_from(["Hello", "Handshake", "Add", "Set", "Sync", "ClientSetClock", None])


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    body = draw(
        st.one_of(
            values,
            st.tuples(st.lists(st.integers(-3, 70), max_size=4), values, st.integers(), values),
        )
    )
    error = draw(st.none() | st.tuples(st.text(max_size=6), values))
    seq = draw(st.integers(0, 2**32) | values)
    data = bytearray(msgpack.packb([seq, draw(methods), error, body], default=repr))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "ext"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=6))
        else:
            data[pos:pos] = msgpack.packb(nested_ext(draw(st.integers(1, 20))))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid())
def test_decoder_is_total_on_near_valid_frames(data: bytes) -> None:
    check_total(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(near_valid(), min_size=1, max_size=8))
def test_fuzzed_frames_never_end_a_server(frames: list[bytes]) -> None:
    """Fuzzed frames into a live server (in-memory): it answers, then serves a real client."""

    async def main() -> None:
        src = am.Machine(Src, id="src")
        server = rpc.Server(src, push_interval=None)
        async with trio.open_nursery() as n:
            a, b = rpc.memory_transport_pair()
            n.start_soon(server.serve_transport, a)
            with trio.fail_after(5):
                for data in frames:
                    await b.send(data)
                # a frame after the fuzz still gets its answer: the reader lives
                await b.send(wire.encode_frame(wire.Frame(999, "NoSuch")))
                while True:
                    f = wire.decode_frame(await b.receive())
                    if f.seq == 999:
                        break
            assert f.error is not None and f.error.kind == "unknown_method"
            await b.aclose()
            server.close()
            n.cancel_scope.cancel()

    trio.run(main)


# ----- holding the single-client slot

TOKEN = "s3cret"
DEADLINE = 0.5  # the servers' handshake_timeout in these tests


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1].split("/")[0])


async def hold_no_hello(addr: str, n: trio.Nursery) -> trio.abc.Stream:
    return await trio.open_tcp_stream("127.0.0.1", port_of(addr))


async def hold_upgraded_no_hello(addr: str, n: trio.Nursery) -> Any:
    return await rpc.connect(addr, nursery=n)


async def hold_wrong_token(addr: str, n: trio.Nursery) -> Any:
    t = await rpc.connect(addr, nursery=n)
    await t.send(wire.encode_frame(wire.Frame(1, "Hello", None, wire.CliHello("rc-x", token="no"))))
    return t


async def hold_garbage_trickle(addr: str, n: trio.Nursery) -> trio.abc.Stream:
    s = await trio.open_tcp_stream("127.0.0.1", port_of(addr))

    async def trickle() -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            for _ in range(200):
                await s.send_all(b"\x00")
                await trio.sleep(0.02)

    n.start_soon(trickle)
    return s


async def hold_partial_frame(addr: str, n: trio.Nursery) -> trio.abc.Stream:
    s = await trio.open_tcp_stream("127.0.0.1", port_of(addr))
    await s.send_all(b"\x00\x00\x10\x00" + b"\x94" * 100)  # 4096 promised, 100 sent
    return s


async def hold_frozen_client(addr: str, n: trio.Nursery) -> trio.abc.Stream:
    """Right token, handshake done, then it never reads nor writes (SIGSTOP-like)."""
    s = await trio.open_tcp_stream("127.0.0.1", port_of(addr))
    t = rpc.StreamTransport(s)
    for seq, method, body in (
        (1, "Hello", wire.CliHello("rc-frozen", token=TOKEN)),
        (2, "Handshake", wire.Empty()),
    ):
        await t.send(wire.encode_frame(wire.Frame(seq, method, None, body)))
        with trio.fail_after(5):
            f = wire.decode_frame(await t.receive())
        assert f.error is None, f.error
    return s


HOLDS = {
    "no-hello": (hold_no_hello, ("tcp", "ws")),
    "upgraded-no-hello": (hold_upgraded_no_hello, ("tcp", "ws")),
    "wrong-token": (hold_wrong_token, ("tcp", "ws")),
    "garbage-trickle": (hold_garbage_trickle, ("tcp", "ws")),
    "partial-frame": (hold_partial_frame, ("tcp",)),
    "frozen-client": (hold_frozen_client, ("tcp",)),
}


@pytest.mark.parametrize(
    ("hold", "scheme"), [(h, sc) for h, (_f, schemes) in HOLDS.items() for sc in schemes]
)
@pytest.mark.trio
async def test_the_slot_cannot_be_held(hold: str, scheme: str) -> None:
    src = am.Machine(Src, id="src")
    fn = HOLDS[hold][0]
    async with (
        rpc.open_server(
            src,
            f"{scheme}://127.0.0.1:0",
            token=TOKEN,
            handshake_timeout=DEADLINE,
            connect_timeout=DEADLINE,
            idle_timeout=DEADLINE,
            send_timeout=DEADLINE,
        ) as server,
        trio.open_nursery() as n,
    ):
        held = await fn(server.addr, n)
        start = trio.current_time()
        async with rpc.open_client(
            server.addr, Src, token=TOKEN, conn_retry_delay=0.05, ready_timeout=5
        ) as client:
            took = trio.current_time() - start
            assert await client.netmach.call_add1("A") is EXECUTED
        # the right client got in within the handshake deadline (+ the idle
        # check for a frozen, authenticated client)
        limit = DEADLINE + (3 * DEADLINE if hold == "frozen-client" else 0) + 0.5
        assert took < limit, took
        # and the attacker's connection was closed by the server
        with trio.fail_after(3 * DEADLINE + 1):
            if isinstance(held, trio.abc.Stream):
                while await held.receive_some(65536):
                    pass
            else:
                with pytest.raises(rpc.RpcConnectionError):
                    while True:
                        await held.receive()
        await held.aclose()
        n.cancel_scope.cancel()


# ----- pre-handshake resources (a server in its own process, measured)

HERE = os.path.dirname(os.path.abspath(__file__))


@asynccontextmanager
async def server_proc(*args: str) -> AsyncIterator[tuple[trio.Process, str]]:
    """``tests/rpc_server_proc.py`` in a subprocess: the process and its bound URL."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, os.path.join(HERE, "rpc_server_proc.py"), *args],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        buf = b""
        with trio.fail_after(20):
            while b"\n" not in buf:
                chunk = await proc.stdout.receive_some(1024)
                assert chunk, "the server process exited"
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        assert line.startswith("ADDR "), line
        yield proc, line[5:]
    finally:
        proc.kill()
        with trio.move_on_after(5):
            await proc.wait()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def ws_upgrade(addr: str) -> trio.abc.Stream:
    """A raw TCP stream that completed a websocket upgrade (frames written by hand)."""
    s = await trio.open_tcp_stream("127.0.0.1", port_of(addr))
    await s.send_all(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    buf = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in buf:
            buf += await s.receive_some(4096)
    assert b" 101 " in buf, buf
    return s


PARTIAL_CONNS = 40
PARTIAL_BOUND_KIB = 20 * 1024  # the stated bound: RSS growth under 20 MiB


@pytest.mark.parametrize("scheme", ["ws", "tcp"])
@pytest.mark.trio
async def test_partial_large_messages_leave_memory_bounded(scheme: str) -> None:
    """40 connections each start a 16 MiB message and push 1 MiB of it, never finishing."""
    async with server_proc("--kind", "mux", "--scheme", scheme) as (proc, addr):
        before = rss_kib(proc.pid)
        chunk = b"\x00" * 65536
        streams: list[trio.abc.Stream] = []
        closed = 0
        for _ in range(PARTIAL_CONNS):
            if scheme == "ws":
                s = await ws_upgrade(addr)
                # FIN + binary, masked, 64-bit length: 16 MiB
                await s.send_all(b"\x82\xff" + (16 << 20).to_bytes(8, "big") + b"\x00" * 4)
            else:
                s = await trio.open_tcp_stream("127.0.0.1", port_of(addr))
                await s.send_all((16 << 20).to_bytes(4, "big"))
            streams.append(s)
            try:
                with trio.fail_after(5):
                    for _ in range(16):
                        await s.send_all(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                closed += 1
        await trio.sleep(0.2)
        grown = rss_kib(proc.pid) - before
        for s in streams:
            await trio.aclose_forcefully(s)
        print(f"partial-{scheme}: RSS +{grown} KiB, {closed} closed")
        assert grown < PARTIAL_BOUND_KIB, f"RSS grew by {grown} KiB"
        # the server refused them (closed the connection past the limit)
        assert closed == PARTIAL_CONNS
        async with rpc.open_client(addr, Src, ready_timeout=5) as client:
            assert await client.netmach.call_add1("A") is EXECUTED


@pytest.mark.trio
async def test_descriptor_pressure_recovers_within_the_connect_timeout() -> None:
    """RLIMIT_NOFILE 64 in the server; 100 idle connections; then a real client."""
    connect_timeout = 1.0
    async with server_proc(
        "--kind", "mux", "--scheme", "ws", "--nofile", "64",
        "--connect-timeout", str(connect_timeout),
    ) as (_proc, addr):  # fmt: skip
        idle = [await trio.open_tcp_stream("127.0.0.1", port_of(addr)) for _ in range(100)]
        await trio.sleep(0.3)  # the server is out of descriptors now
        for s in idle:
            await trio.aclose_forcefully(s)
        start = trio.current_time()
        async with rpc.open_client(addr, Src, ready_timeout=10, conn_retry_delay=0.1) as client:
            took = trio.current_time() - start
            assert await client.netmach.call_add1("A") is EXECUTED
        print(f"descriptor pressure: ready after {took:.2f} s")
        assert took < connect_timeout + 1, took
