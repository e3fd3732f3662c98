"""aRPC under faults: malformed frames, access control, lost connections, slow peers, TLS.

Raw peers speak the wire format directly
(``rpc.wire``) to check that every bad input gets a typed error frame and
leaves the connection usable. Lost connections are made by transport wrappers
(:class:`Flaky`) that drop the connection or lose frames at a chosen point; a
retried mutation carries the same id, so the source applies it exactly once.
Retry and backoff timing runs on ``trio.testing.MockClock`` (pytest-trio's
``autojump_clock``) over in-memory transports; socket tests use small real
delays and wait on states, never on sleeps.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest
import trio
import trio.lowlevel
import trio.testing
import trustme
from rpc_util import rpc_pair

import asyncmachine_trio as am
from asyncmachine_trio import rpc
from asyncmachine_trio.rpc import wire

pytestmark = pytest.mark.trio

EXECUTED = int(am.Result.EXECUTED)
MUTATIONS = ("Add", "Remove", "Set", "AddNS")


class Src(rpc.StateSourceStates):
    A = am.State()
    B = am.State()
    M = am.State(multi=True)


class Counter:
    """Source handlers counting how often each mutation really ran."""

    def __init__(self) -> None:
        self.m = 0
        self.a = 0

    def m_state(self, e: am.Event) -> None:
        self.m += 1

    def a_state(self, e: am.Event) -> None:
        self.a += 1


def source(counter: Counter | None = None) -> am.Machine:
    mach = am.Machine(Src, id="src")
    if counter is not None:
        mach.bind_handlers(counter)
    return mach


def snapshot(m: am.Machine) -> tuple[list[int], int, int]:
    return list(m.time()), m.queue_tick(), m.machine_tick()


async def until(waiter: Awaitable[Any], seconds: float = 5.0) -> None:
    with trio.fail_after(seconds):
        await waiter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_server(
    server: rpc.Server, *, task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until the returned scope is cancelled (a server "process" that can die)."""
    async with trio.open_nursery() as n:
        await n.start(server.serve)
        task_status.started(n.cancel_scope)


# ----- a raw peer speaking the wire format


class RawPeer:
    """A hand-driven client: length-prefixed frames on a byte stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.t = rpc.StreamTransport(stream, max_frame=1 << 30)

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(struct.pack(">I", len(data)) + data)

    async def send(self, seq: int, method: str | None, body: Any = None) -> None:
        await self.send_raw(wire.encode_frame(wire.Frame(seq, method, None, body)))

    async def recv(self) -> wire.Frame:
        with trio.fail_after(5):
            return wire.decode_frame(await self.t.receive())

    async def reply_to(self, seq: int) -> wire.Frame:
        """The response to ``seq`` (pushes from the server are skipped)."""
        while True:
            f = await self.recv()
            if f.method is None and f.seq == seq:
                return f

    async def call(self, seq: int, method: str, body: Any) -> wire.Frame:
        await self.send(seq, method, body)
        return await self.reply_to(seq)

    async def handshake(self, id: str = "rc-raw", token: str = "") -> wire.SrvHello:
        f = await self.call(1, "Hello", wire.CliHello(id, token=token))
        assert f.error is None, f.error
        hello = wire.structure(f.body, wire.SrvHello)
        f = await self.call(2, "Handshake", wire.Empty())
        assert f.error is None, f.error
        return hello

    async def add(self, seq: int, hello: wire.SrvHello, state: str) -> wire.SrvMutation:
        f = await self.call(
            seq, "Add", wire.CliMutation([hello.state_names.index(state)], None, 1000 + seq)
        )
        assert f.error is None, f.error
        return wire.structure(f.body, wire.SrvMutation)


@asynccontextmanager
async def raw_server(
    server: rpc.Server, transport: str
) -> AsyncIterator[tuple[Callable[[], Awaitable[RawPeer]], trio.Event]]:
    """Serve ``server`` over ``transport``; yields a function connecting a raw peer.

    ``ended`` is set when a served connection ended (memory: per connection
    through ``serve_transport``; tcp: the server's ``ClientConnected`` drops).
    """
    ended = trio.Event()
    async with trio.open_nursery() as n:
        if transport == "tcp":
            await n.start(server.serve)
            port = int(server.addr.rsplit(":", 1)[1])

            async def connect() -> RawPeer:
                return RawPeer(await trio.open_tcp_stream("127.0.0.1", port))

        else:

            async def serve_one(t: rpc.StreamTransport) -> None:
                await server.serve_transport(t)
                ended.set()

            async def connect() -> RawPeer:
                a, b = trio.testing.memory_stream_pair()
                n.start_soon(serve_one, rpc.StreamTransport(a, server.max_frame))
                return RawPeer(b)

        try:
            yield connect, ended
        finally:
            server.close()
            n.cancel_scope.cancel()


# ----- malformed frames


def _hello_bytes() -> bytes:
    return wire.encode_frame(wire.Frame(1, "Hello", None, wire.CliHello("rc-raw")))


BAD_INPUTS: list[tuple[str, bytes, int, str]] = [
    # name, frame bytes, seq of the error frame, its kind
    ("garbage", b"\xc1\xc1 not msgpack at all", 0, "decode"),
    ("truncated-msgpack", _hello_bytes()[:-3], 0, "decode"),
    ("wrong-types", msgpack.packb(["seven", 5, None, None]), 0, "decode"),
    ("not-4-items", msgpack.packb([3, "Hello", None]), 0, "decode"),
    ("unknown-method", msgpack.packb([5, "NoSuchMethod", None, None]), 5, "unknown_method"),
    ("malformed-body", msgpack.packb([6, "Add", None, 12345]), 6, "decode"),
    ("malformed-hello", msgpack.packb([7, "Hello", None, 12345]), 7, "decode"),
    ("unknown-type-tag", msgpack.packb([8, "Add", None, msgpack.ExtType(1, b"\xc1")]), 0, "decode"),
    (
        "mutation-before-handshake",
        msgpack.packb([9, "Add", None, [[0], None, 1, ""]]),
        9,
        "handshake",
    ),
    ("sync-before-handshake", msgpack.packb([10, "Sync", None, []]), 10, "handshake"),
]
# after the handshake (before it, a frame above the small pre-handshake limit
# closes the connection: tests/test_rpc_hostile.py)
OVERSIZED = msgpack.packb([11, "Hello", None, ["x" * 70000]])


@pytest.mark.parametrize("transport", ["memory", "tcp"])
async def test_malformed_frames_get_typed_errors_and_the_connection_survives(
    transport: str,
) -> None:
    src = source()
    server = rpc.Server(src, "tcp://127.0.0.1:0", push_interval=None, max_frame=65536)
    before = snapshot(src)
    async with raw_server(server, transport) as (connect, _ended):
        peer = await connect()
        for name, data, seq, kind in BAD_INPUTS:
            await peer.send_raw(data)
            f = await peer.recv()
            assert f.method is None, name
            assert f.seq == seq, name
            assert f.error is not None and f.error.kind == kind, (name, f.error)
        # frames a server must ignore: an error / a response nobody asked for
        await peer.send_raw(msgpack.packb([0, None, ["boom", "x"], None]))
        await peer.send_raw(msgpack.packb([99, None, None, [1, 2]]))
        assert snapshot(src) == before
        # the same connection still works
        hello = await peer.handshake()
        assert hello.id == "src" and hello.state_names == list(src.state_names)
        resp = await peer.add(20, hello, "A")
        assert resp.result == EXECUTED
        assert src.is1("A")
        # and keeps answering bad input after the handshake
        await peer.send_raw(b"\xc1")
        f = await peer.recv()
        assert f.error is not None and f.error.kind == "decode"
        await peer.send_raw(OVERSIZED)
        f = await peer.recv()
        assert f.error is not None and f.error.kind == "too_large"
        bad_index = wire.CliMutation([len(hello.state_names) + 5], None, 77)
        f = await peer.call(21, "Add", bad_index)
        assert f.error is not None and f.error.kind == "invalid_params"
        f = await peer.call(22, "Add", wire.CliMutation([], None, 78))
        assert f.error is not None and f.error.kind == "invalid_params"
        resp = await peer.add(23, hello, "B")
        assert resp.result == EXECUTED and src.is1("B")
        assert server.mach.tick(am.EXCEPTION) == 0, server.mach.err
        assert src.tick(am.EXCEPTION) == 0
        await peer.stream.aclose()


@pytest.mark.parametrize("transport", ["memory", "tcp"])
async def test_truncated_stream_closes_only_that_connection(transport: str) -> None:
    src = source()
    server = rpc.Server(src, "tcp://127.0.0.1:0", push_interval=None)
    async with raw_server(server, transport) as (connect, ended):
        peer = await connect()
        hello = await peer.handshake("rc-first")
        await until(server.mach.when1("Ready"))
        # the length prefix promises 100 bytes, 10 come, then EOF
        await peer.stream.send_all(struct.pack(">I", 100) + b"0123456789")
        await peer.stream.aclose()
        if transport == "memory":
            await until(ended.wait())
        await until(server.mach.when_not1("ClientConnected"))
        assert server.client_id == ""
        # a new connection is served as if nothing happened
        peer2 = await connect()
        hello = await peer2.handshake("rc-second")
        assert server.client_id == "rc-second"
        assert (await peer2.add(3, hello, "A")).result == EXECUTED
        assert src.is1("A")
        assert src.tick(am.EXCEPTION) == 0
        await peer2.stream.aclose()


# ----- access control


async def test_wrong_token_is_refused_and_the_client_stops() -> None:
    counter = Counter()
    src = source(counter)
    async with rpc.open_server(
        src, "tcp://127.0.0.1:0", token="s3cret", push_interval=None
    ) as server:
        before = snapshot(src)
        async with trio.open_nursery() as n:
            client = rpc.Client(server.addr, Src, name="bad", token="wrong", conn_retry_delay=0.01)
            client.start(n)
            with pytest.raises(rpc.RpcAccessError):
                await client.wait_ready(5)
            m = client.mach
            assert m.tick("ErrRpc") == 1
            assert m.is1("ConnRetryFailed") and m.not1("Start")
            assert isinstance(m.err, rpc.RpcAccessError)
            # it stopped: no reconnect follows an access error
            connecting = m.tick("Connecting")
            await trio.sleep(0.1)
            assert m.tick("Connecting") == connecting == 2  # one dial: on, then off
            assert m.not1("RetryingConn")
            # and nothing travels through it
            with pytest.raises(rpc.RpcError):
                await client.netmach.call_add1("A")
            assert client.netmach.add1("A") is am.Result.CANCELED
            await client.stop(dispose=True)
        assert server.mach.tick("ErrRpc") == 1
        assert snapshot(src) == before and counter.a == 0

        # a raw peer cannot get past the refused hello either: refused, then closed
        port = int(server.addr.split(":")[-1])
        peer = RawPeer(await trio.open_tcp_stream("127.0.0.1", port))
        f = await peer.call(1, "Add", wire.CliMutation([0], None, 1))
        assert f.error is not None and f.error.kind == "handshake"
        await peer.send(0, "AddNS", wire.CliMutation([0], None, 2))  # no answer, no effect
        f = await peer.call(2, "Sync", wire.Empty())
        assert f.error is not None and f.error.kind == "handshake"
        f = await peer.call(3, "Hello", wire.CliHello("rc-raw", token="S3CRET"))
        assert f.error is not None and f.error.kind == "access"
        assert "s3cret" not in f.error.message.lower()
        with pytest.raises(rpc.RpcConnectionError):
            await peer.recv()
        assert snapshot(src) == before and counter.a == 0
        await peer.stream.aclose()
        await until(server.mach.when_not1("ClientConnected"))

        # the right token works
        async with rpc.open_client(server.addr, Src, name="good", token="s3cret") as client:
            assert await client.netmach.call_add1("A") is am.Result.EXECUTED
            assert src.is1("A") and client.netmach.is1("A") and counter.a == 1


async def test_allow_id_refuses_other_clients() -> None:
    src = source()
    async with rpc.open_server(
        src, "tcp://127.0.0.1:0", allow_id="rc-good", push_interval=None
    ) as server:
        with pytest.raises(rpc.RpcAccessError):
            async with rpc.open_client(server.addr, Src, name="other", conn_retry_delay=0.01):
                pass
        async with rpc.open_client(server.addr, Src, name="good") as client:
            assert await client.netmach.call_add1("B") is am.Result.EXECUTED
            assert src.is1("B")


async def test_allowed_mutations() -> None:
    counter = Counter()
    src = source(counter)
    async with rpc_pair(src, server_kw={"allowed_mutations": ["A"]}, name="acl") as (
        _server,
        client,
    ):
        nm = client.netmach
        assert await nm.call_add1("A") is am.Result.EXECUTED
        assert src.is1("A") and nm.is1("A") and counter.a == 1
        before = snapshot(src)
        calls = client.calls
        with pytest.raises(rpc.RpcAccessError):
            await nm.call_add1("B")
        # the whole mutation is refused when one state is not allowed
        with pytest.raises(rpc.RpcAccessError):
            await nm.call_add(["A", "B"])
        with pytest.raises(rpc.RpcAccessError):
            await nm.call_remove(["A", "B"])
        with pytest.raises(rpc.RpcAccessError):
            await nm.call_set(["A"])  # a set would remove B, M...: not allowed
        assert snapshot(src) == before and src.not1("B")
        # a typed refusal is not retried
        assert client.calls == calls + 4
        assert client.mach.tick("RetryingCall") == 0
        # fire-and-forget: refused too, reported as a delivery error
        assert nm.add1("B") is am.Result.QUEUED
        await until(client.mach.when_time1("ErrDelivery", 1))
        assert snapshot(src) == before and src.not1("B")
        # the allowed state still works both ways
        assert await nm.call_remove1("A") is am.Result.EXECUTED
        assert src.not1("A") and nm.not1("A")
        assert client.mach.is1("Ready")


# ----- connections dropped around a mutation


class Plan:
    """What the :class:`Flaky` transports of one client do to it."""

    def __init__(self) -> None:
        self.drop_on_response = 0  # kill the connection when a mutation's response arrives
        self.drop_on_request = 0  # kill it when a mutation is about to be sent
        self.lose_responses = 0  # silently lose mutation responses (connection stays)
        self.delay_responses = 0.0  # hold mutation responses this long
        self.dials = 0


class Flaky:
    """A transport wrapper that misbehaves around mutation frames, per :class:`Plan`."""

    def __init__(self, inner: rpc.Transport, plan: Plan) -> None:
        self.inner = inner
        self.plan = plan
        self.max_frame = inner.max_frame
        self._mut_seqs: set[int] = set()

    @property
    def bytes_sent(self) -> int:
        return self.inner.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self.inner.bytes_received

    async def send(self, data: bytes) -> None:
        f = wire.decode_frame(data)
        if f.method in MUTATIONS:
            if self.plan.drop_on_request:
                self.plan.drop_on_request -= 1
                await self.inner.aclose()
                raise rpc.RpcConnectionError("dropped before the request left")
            self._mut_seqs.add(f.seq)
        await self.inner.send(data)

    async def receive(self) -> bytes:
        while True:
            data = await self.inner.receive()
            f = wire.decode_frame(data)
            if f.method is not None or f.seq not in self._mut_seqs:
                return data
            if self.plan.drop_on_response:
                # the server applied the mutation; its answer never arrives
                self.plan.drop_on_response -= 1
                await self.inner.aclose()
                raise rpc.RpcConnectionError("dropped before the response arrived")
            if self.plan.lose_responses:
                self.plan.lose_responses -= 1
                continue
            if self.plan.delay_responses:
                await trio.sleep(self.plan.delay_responses)
            return data

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("transport", ["tcp", "ws"])
@pytest.mark.parametrize(
    "fault", ["response-lost-once", "response-lost-twice", "request-lost", "both"]
)
async def test_dropped_connection_mid_mutation_applies_once(transport: str, fault: str) -> None:
    counter = Counter()
    src = source(counter)
    plan = Plan()
    async with trio.open_nursery() as n:
        src.start(n)
        server = rpc.Server(src, f"{transport}://127.0.0.1:0", push_interval=0.0)
        await n.start(server.serve)

        async def dial() -> rpc.Transport:
            plan.dials += 1
            return Flaky(await rpc.connect(server.addr, nursery=n, timeout=2), plan)

        client = rpc.Client(
            server.addr,
            Src,
            name="flaky",
            dial=dial,
            conn_retry_delay=0.01,
            conn_retry_backoff=0.05,
            call_retry_delay=0.01,
            call_retry_backoff=0.05,
        )
        client.start(n)
        await client.wait_ready(5)
        nm = client.netmach
        assert plan.dials == 1
        if fault == "response-lost-once":
            plan.drop_on_response = 1
        elif fault == "response-lost-twice":
            plan.drop_on_response = 2
        elif fault == "request-lost":
            plan.drop_on_request = 1
        else:
            plan.drop_on_request = 1
            plan.drop_on_response = 1
        with trio.fail_after(10):
            res = await nm.call_add1("M")
        assert res is am.Result.EXECUTED
        # applied exactly once, never twice
        assert counter.m == 1
        assert src.tick("M") == 1
        drops = {"response-lost-twice": 2, "both": 2}.get(fault, 1)
        # (one more if a re-dial came before the server noticed the drop: "busy")
        assert plan.dials >= 1 + drops
        m = client.mach
        assert m.tick("RetryingCall") >= 1 and m.not1("RetryingCall")
        assert m.tick("RetryingConn") >= 1 and m.not1("RetryingConn")
        assert m.is1("Ready")
        # the mirror is exact after the re-sync
        assert nm.clock() == src.clock()
        assert nm.queue_tick() == src.queue_tick()
        # and the next mutation is a new one
        assert await nm.call_add1("M") is am.Result.EXECUTED
        assert counter.m == 2 and nm.tick("M") == src.tick("M")
        await client.stop(dispose=True)
        server.close()
        n.cancel_scope.cancel()


async def test_sync_mutation_survives_a_dropped_connection() -> None:
    """A queued (outbox) mutation is retried the same way: applied once."""
    counter = Counter()
    src = source(counter)
    plan = Plan()
    async with trio.open_nursery() as n:
        server = rpc.Server(src, "tcp://127.0.0.1:0", push_interval=0.0)
        await n.start(server.serve)

        async def dial() -> rpc.Transport:
            plan.dials += 1
            return Flaky(await rpc.connect(server.addr, timeout=2), plan)

        client = rpc.Client(
            server.addr, Src, dial=dial, conn_retry_delay=0.01, call_retry_delay=0.01
        )
        client.start(n)
        await client.wait_ready(5)
        plan.drop_on_response = 1
        assert client.netmach.add1("M") is am.Result.QUEUED
        assert client.netmach.add1("A") is am.Result.QUEUED
        await until(client.netmach.when1("A"))
        assert (counter.m, counter.a) == (1, 1)
        assert plan.dials >= 2
        await client.stop(dispose=True)
        server.close()
        n.cancel_scope.cancel()


# ----- server restart


async def test_server_restart_on_the_same_port() -> None:
    src = source()
    async with trio.open_nursery() as n:
        s1 = rpc.Server(src, "ws://127.0.0.1:0", push_interval=0.0)
        scope1 = await n.start(run_server, s1)
        port = int(s1.addr.rsplit(":", 1)[1])
        client = rpc.Client(
            s1.addr,
            Src,
            name="restart",
            conn_retry_delay=0.02,
            conn_retry_backoff=0.1,
            call_retry_delay=0.02,
        )
        client.start(n)
        await client.wait_ready(5)
        nm = client.netmach
        assert await nm.call_add1("A") is am.Result.EXECUTED
        retrying = client.mach.tick("RetryingConn")

        # the server dies
        scope1.cancel()
        s1.close()
        await until(client.mach.when_not1("Ready"))
        # the source lives on
        src.add1("B")
        src.add1("M")
        src.remove1("A")
        assert nm.is1("A") and nm.not1("B")  # stale until re-synced
        await until(client.mach.when_time1("RetryingConn", retrying + 1))

        # a new server on the same port, same source
        s2 = rpc.Server(src, f"ws://127.0.0.1:{port}", push_interval=0.0)
        await n.start(run_server, s2)
        assert s2.addr == f"ws://127.0.0.1:{port}"
        await client.wait_ready(5)
        assert client.mach.not1("RetryingConn")
        assert nm.clock() == src.clock()
        assert (nm.queue_tick(), nm.machine_tick()) == (src.queue_tick(), src.machine_tick())
        assert nm.not1("A") and nm.is1("B")
        # both directions work again
        assert await nm.call_add1("A") is am.Result.EXECUTED
        src.remove1("B")
        await until(nm.when_not1("B"))
        assert nm.clock() == src.clock()
        await client.stop(dispose=True)
        s2.close()
        n.cancel_scope.cancel()


# ----- a client that stops reading


async def test_slow_client_never_blocks_the_source(autojump_clock: trio.abc.Clock) -> None:
    src = source()
    server = rpc.Server(src, push_interval=0.0, send_timeout=0.5)
    done = trio.Event()
    async with trio.open_nursery() as n:
        # lockstep: a send waits until the peer reads it (no buffers to hide in)
        a, b = trio.testing.lockstep_stream_pair()

        async def serve() -> None:
            await server.serve_transport(rpc.StreamTransport(a))
            done.set()

        n.start_soon(serve)
        peer = RawPeer(b)
        await peer.handshake("rc-slow")
        # the peer never reads again
        t0 = trio.current_time()
        for i in range(10_000):
            src.toggle1("A")
            if i % 100 == 0:
                await trio.lowlevel.checkpoint()  # let the pusher run (and block)
        # the source did not wait for the client: no virtual time passed
        assert trio.current_time() == t0
        assert src.tick("A") == 10_000
        with trio.fail_after(10):
            await done.wait()
        assert trio.current_time() - t0 >= 0.5  # dropped after send_timeout
        assert server.mach.tick("ErrNetwork") >= 1
        assert server.mach.not1("ClientConnected")
        assert server.pushes >= 1

        # the server takes a new client
        c, d = rpc.memory_transport_pair()
        n.start_soon(server.serve_transport, c)

        async def dial() -> rpc.Transport:
            return d

        async with trio.open_nursery() as cn:
            client = rpc.Client("memory", Src, name="next", dial=dial, reconnect=False)
            client.start(cn)
            await client.wait_ready(5)
            nm = client.netmach
            assert nm.clock() == src.clock()
            assert await nm.call_add1("B") is am.Result.EXECUTED
            src.toggle1("A")
            await until(nm.when_time1("A", src.tick("A")))
            assert nm.clock() == src.clock()
            await client.stop(dispose=True)
        server.close()
        n.cancel_scope.cancel()


# ----- call retries and timeouts (virtual time)


@asynccontextmanager
async def flaky_memory_pair(
    src: am.Machine, plan: Plan, **client_kw: Any
) -> AsyncIterator[tuple[rpc.Server, rpc.Client]]:
    """Server + client over memory; the client's transport is :class:`Flaky`."""
    server = rpc.Server(src, push_interval=None)
    async with trio.open_nursery() as n:
        a, b = rpc.memory_transport_pair()
        n.start_soon(server.serve_transport, a)

        async def dial() -> rpc.Transport:
            plan.dials += 1
            if plan.dials > 1:
                raise rpc.RpcConnectionError("in-memory: no second connection")
            return Flaky(b, plan)

        client = rpc.Client("memory", Src, name="calls", dial=dial, **client_kw)
        client.start(n)
        await client.wait_ready(5)
        try:
            yield server, client
        finally:
            await client.stop(dispose=True)
            server.close()
            n.cancel_scope.cancel()


@pytest.mark.parametrize("mode", ["lost", "late"])
async def test_call_timeout_retries_then_succeeds(
    autojump_clock: trio.abc.Clock, mode: str
) -> None:
    counter = Counter()
    src = source(counter)
    plan = Plan()
    async with flaky_memory_pair(src, plan, call_timeout=1.0, call_retry_delay=0.25) as (
        _server,
        client,
    ):
        nm = client.netmach
        if mode == "lost":
            plan.lose_responses = 1
        else:
            plan.delay_responses = 1.5  # past call_timeout, once
        calls = client.calls
        t0 = trio.current_time()

        async def recover() -> None:
            await client.mach.when1("RetryingCall")
            plan.delay_responses = 0.0

        async with trio.open_nursery() as n:
            n.start_soon(recover)
            res = await nm.call_add1("M")
        assert res is am.Result.EXECUTED
        # the call was really cut at call_timeout, then retried after the delay
        assert trio.current_time() - t0 >= 1.25
        # 2 attempts, then a full Sync: the lost response's clock diff is gone
        assert client.calls == calls + 3
        m = client.mach
        assert m.tick("MetricSync") == 1
        assert m.tick("RetryingCall") == 2 and m.not1("RetryingCall")
        assert m.tick("ErrNetworkTimeout") >= 1
        assert m.not1("CallRetryFailed") and m.is1("Ready")
        # the retry carried the same mutation id: applied once
        assert counter.m == 1 and src.tick("M") == 1
        assert nm.clock() == src.clock()


async def test_call_retries_exhausted(autojump_clock: trio.abc.Clock) -> None:
    counter = Counter()
    src = source(counter)
    plan = Plan()
    async with flaky_memory_pair(
        src, plan, call_timeout=1.0, call_retries=3, call_retry_delay=0.5, call_retry_backoff=1.0
    ) as (_server, client):
        nm = client.netmach
        plan.lose_responses = 1000
        calls = client.calls
        t0 = trio.current_time()
        with pytest.raises(rpc.RpcCallError):
            await nm.call_add(["M"])
        # 4 attempts of 1s, delays 0.5 + 1 + 1 between them
        assert trio.current_time() - t0 == pytest.approx(4 * 1.0 + 0.5 + 1.0 + 1.0)
        assert client.calls == calls + 4
        m = client.mach
        assert m.tick("CallRetryFailed") >= 1
        assert m.is1("ErrNetwork") and m.is1(am.EXCEPTION)
        assert m.not1("RetryingCall")
        assert isinstance(m.err, rpc.RpcTimeoutError)
        # every attempt reached the source; it ran once
        assert counter.m == 1
        # responses flow again: the clock re-syncs, the client still works
        plan.lose_responses = 0
        await until(m.when_time1("MetricSync", 1))
        assert nm.clock() == src.clock()
        assert await nm.call_add1("M") is am.Result.EXECUTED
        assert counter.m == 2
        assert nm.clock() == src.clock()


# ----- connection retries


async def test_client_started_before_the_server() -> None:
    src = source()
    port = free_port()
    async with trio.open_nursery() as n:
        client = rpc.Client(
            f"ws://127.0.0.1:{port}",
            Src,
            name="early",
            conn_retry_delay=0.02,
            conn_retry_backoff=0.1,
        )
        client.start(n)
        # the 3rd Connecting (like the reference's TestRetryConn)
        await until(client.mach.when_time1("Connecting", 5))
        assert client.mach.is1("RetryingConn") and client.mach.not1("Ready")
        server = rpc.Server(src, f"ws://127.0.0.1:{port}", push_interval=0.0)
        await n.start(server.serve)
        await client.wait_ready(5)
        assert client.mach.not1("RetryingConn") and client.mach.not1("RetryingCall")
        assert await client.netmach.call_add1("A") is am.Result.EXECUTED
        assert src.is1("A")
        await client.stop(dispose=True)
        server.close()
        n.cancel_scope.cancel()


async def test_conn_retries_exhausted(autojump_clock: trio.abc.Clock) -> None:
    dials = 0

    async def dial() -> rpc.Transport:
        nonlocal dials
        dials += 1
        raise rpc.RpcConnectionError("nobody listens")

    async with trio.open_nursery() as n:
        client = rpc.Client("memory", Src, dial=dial, conn_retries=3)
        client.start(n)
        t0 = trio.current_time()
        with pytest.raises(rpc.RpcConnectionError):
            await client.wait_ready(60)
        # default backoff: 1s, doubling
        assert trio.current_time() - t0 == pytest.approx(1 + 2 + 4)
        assert dials == 4
        m = client.mach
        assert m.is1("ConnRetryFailed") and m.not1("Start") and m.not1("RetryingConn")
        assert m.tick("ErrNetwork") >= 1
        assert client.netmach.add1("A") is am.Result.CANCELED
        n.cancel_scope.cancel()


async def test_failed_handshakes_count_as_failed_attempts(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A peer that accepts and hangs up at once: the client gives up after conn_retries."""
    dials = 0

    async def dial() -> rpc.Transport:
        nonlocal dials
        dials += 1
        a, b = rpc.memory_transport_pair()
        await a.aclose()
        return b

    async with trio.open_nursery() as n:
        client = rpc.Client("memory", Src, dial=dial, conn_retries=2, conn_retry_delay=0.5)
        client.start(n)
        with pytest.raises(rpc.RpcConnectionError):
            await client.wait_ready(60)
        assert dials == 3
        assert client.mach.is1("ConnRetryFailed") and client.mach.tick("ErrRpc") >= 3
        n.cancel_scope.cancel()


async def test_reconnect_budget_counts_from_the_drop(autojump_clock: trio.abc.Clock) -> None:
    """A connection that lived longer than conn_retry_timeout is still re-dialled."""
    src = source()
    server = rpc.Server(src, push_interval=None)
    server_side: list[rpc.StreamTransport] = []
    dials = 0
    async with trio.open_nursery() as n:

        async def dial() -> rpc.Transport:
            nonlocal dials
            dials += 1
            if dials == 2:
                raise rpc.RpcConnectionError("not back yet")
            a, b = rpc.memory_transport_pair()
            server_side.append(a)
            n.start_soon(server.serve_transport, a)
            return b

        client = rpc.Client("memory", Src, dial=dial, conn_retry_timeout=5.0, conn_retry_delay=0.5)
        client.start(n)
        await client.wait_ready(5)
        await trio.sleep(60)  # a long, healthy session
        assert client.mach.is1("Ready")
        await server_side[0].aclose()  # then the connection drops
        await until(client.mach.when_not1("Ready"))
        await client.wait_ready(10)
        assert dials == 3
        assert client.mach.not1("ConnRetryFailed")
        assert await client.netmach.call_add1("A") is am.Result.EXECUTED
        await client.stop(dispose=True)
        server.close()
        n.cancel_scope.cancel()


# ----- TLS


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting the test CA), made at test time."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


@pytest.mark.parametrize("scheme", ["wss", "tcp"])
async def test_tls(tls: tuple[ssl.SSLContext, ssl.SSLContext], scheme: str) -> None:
    server_ctx, client_ctx = tls
    src = source()
    async with rpc.open_server(
        src, f"{scheme}://127.0.0.1:0", ssl_context=server_ctx, push_interval=0.0
    ) as server:
        # a client that does not trust the certificate fails (fast, no retry loop)
        untrusting = ssl.create_default_context()  # system CAs only
        with trio.fail_after(5):
            with pytest.raises(rpc.RpcConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                async with rpc.open_client(
                    server.addr,
                    Src,
                    name="untrusting",
                    ssl_context=untrusting if scheme == "tcp" else None,
                    conn_retries=1,
                    conn_retry_delay=0.01,
                ):
                    pass
        if scheme == "tcp":
            # no TLS at all against a TLS server: the handshake fails, the client gives up
            with trio.fail_after(5):
                with pytest.raises(rpc.RpcConnectionError):
                    async with rpc.open_client(
                        server.addr, Src, name="plain", conn_retries=1, conn_retry_delay=0.01
                    ):
                        pass
        assert src.not1("A")
        # the server is fine; a client with the CA connects and mutates
        async with rpc.open_client(
            server.addr, Src, name="trusting", ssl_context=client_ctx
        ) as client:
            nm = client.netmach
            assert await nm.call_add1("A") is am.Result.EXECUTED
            assert src.is1("A")
            src.add1("B")
            await until(nm.when1("B"))
            assert nm.clock() == src.clock()
