"""aRPC against hostile peers: frames made to crash the decoder, fuzzed frames.

Every attack runs against a real server (or mux) on 127.0.0.1 over real
sockets; after it, the server must still be up and serve a well-behaved client.
The decoder itself is checked over arbitrary bytes and over near-valid frames
(hypothesis); ``nox -s fuzz`` runs a longer session (``tests/fuzz_wire.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest
import trio
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
