"""aRPC: network machine behaviour beyond the reference scenarios."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import pytest

import asyncmachine_trio as am
from asyncmachine_trio import rpc
from tests.rpc_util import rpc_pair


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """On trio and on asyncio (real clocks: some transports are real sockets)."""
    return str(request.param)


pytestmark = pytest.mark.anyio


class Src(rpc.StateSourceStates):
    A = am.State(remove=("B",))
    B = am.State(remove=("A",))
    C = am.State(require=("A",))


def source() -> am.Machine:
    return am.Machine(Src, id="src")


async def test_reachable_from_top_level() -> None:
    assert am.rpc.NetworkMachine is rpc.NetworkMachine
    assert issubclass(rpc.NetworkMachine, am.Machine)
    assert "rpc" in dir(am)


async def test_final_handlers_run_on_received_clocks() -> None:
    src = source()
    calls: list[str] = []

    class Handlers:
        def a_state(self, e: am.Event) -> None:
            calls.append(f"+{e.state or 'A'}")

        def a_end(self, e: am.Event) -> None:
            calls.append("-A")

        def a_enter(self, e: am.Event) -> bool:
            calls.append("enter")  # negotiation never runs on a mirror
            return False

        def any_state(self, e: am.Event) -> None:
            calls.append("any")

    async with rpc_pair(src, name="h") as (_server, client):
        nm = client.netmach
        nm.bind_handlers(Handlers())
        assert await nm.call_add1("A") is am.Result.EXECUTED
        assert calls == ["+A", "any"]
        src.add1("B")
        with anyio.fail_after(2):
            await nm.when1("B")
        assert calls == ["+A", "any", "-A", "any"]


async def test_failing_final_handler_is_reported_to_the_source() -> None:
    src = source()

    class Handlers:
        def b_state(self, e: am.Event) -> None:
            raise ValueError("boom on the client")

    async with rpc_pair(src, name="err") as (_server, client):
        nm = client.netmach
        nm.bind_handlers(Handlers())
        await nm.call_add1("B")
        with anyio.fail_after(2):
            await src.when1(am.EXCEPTION)
        assert src.is1("ErrOnClient")
        exc = am.parse_args(src.transition.args if src.transition else {}, am.AException)
        assert exc is None or exc.err is not None
        assert isinstance(nm.err, ValueError)


async def test_sync_mutations_keep_their_order() -> None:
    src = source()
    seen: list[str] = []

    class Track(am.Tracer):
        def transition_end(self, transition: am.Transition) -> None:
            if transition.is_accepted and not transition.mutation.is_check:
                seen.append(f"{transition.type} {' '.join(transition.called_states)}")

    src.tracer_bind(Track())
    async with rpc_pair(src, name="order") as (_server, client):
        nm = client.netmach
        results = [nm.add1("A"), nm.add1("C"), nm.remove1("C"), nm.add1("B")]
        assert results == [am.Result.QUEUED] * 4
        with anyio.fail_after(2):
            await nm.when1("B")
            await src.when1("B")
        assert seen == ["add A", "add C", "remove C", "add B"]
        assert nm.not1("C") and nm.is1("B") and src.is1("B")


async def test_mutations_are_canceled_when_not_connected() -> None:
    nm = rpc.NetworkMachine(Src, id="ro")
    assert nm.add1("A") is am.Result.CANCELED
    with pytest.raises(rpc.RpcNotConnectedError):
        await nm.call_add1("A")
    with pytest.raises(rpc.RpcError, match="args are not synced"):
        nm.when_args("A", {})
    assert nm.can_add1("A") is am.Result.EXECUTED


async def test_add_ns_then_sync() -> None:
    src = source()
    async with rpc_pair(src, name="ns", server_kw={"push_interval": None}) as (server, client):
        nm = client.netmach
        for _ in range(20):
            assert nm.add1_ns("A") is am.Result.QUEUED
            nm.add1_ns("B")
        with anyio.fail_after(2):
            await src.when_time1("B", 39)
        assert nm.tick("B") == 0  # nothing came back yet: pushes are off
        await client.sync()
        assert nm.clock() == src.clock()
        assert server.pushes == 0


async def test_schema_change_reaches_the_client() -> None:
    src = source()
    async with rpc_pair(src, name="schema") as (_server, client):
        nm = client.netmach
        await nm.call_add1("A")
        grown = {**src.schema, "D": am.State(require=("A",))}
        src.set_schema(grown, [*src.state_names, "D"])
        src.add1("D")
        with anyio.fail_after(2):
            # D does not exist on the client yet: nothing to subscribe to
            while "D" not in nm.state_names or nm.not1("D"):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert nm.schema["D"].require == ("A",)
        assert nm.clock() == src.clock()


async def test_second_client_of_a_server_is_refused() -> None:
    src = source()
    async with rpc_pair(src, name="one") as (server, _client):
        a, b = rpc.memory_transport_pair()
        async with anyio.create_task_group() as n:
            n.start_soon(server.serve_transport, a)
            hello = rpc.wire.Frame(1, "Hello", None, rpc.wire.CliHello("rc-two"))
            await b.send(rpc.wire.encode_frame(hello))
            data = await b.receive()
            frame = rpc.wire.decode_frame(data)
            assert frame.error is not None and frame.error.kind == "busy"
            with pytest.raises(rpc.RpcConnectionError):
                await b.receive()


async def test_payload_destination_checked() -> None:
    src = source()
    got: list[Any] = []

    class Consumer:
        def server_payload_state(self, e: am.Event) -> None:
            p = am.parse_args(e.args, rpc.AServerPayload)
            assert p is not None
            got.append((p.name, p.data))

    consumer = am.Machine(rpc.ConsumerStates, id="consumer", handlers=Consumer())
    async with rpc_pair(src, name="pay", consumer=consumer) as (server, client):
        await server.send_payload("P1", {"x": [1, 2]}, destination=client.mach.id)
        assert got == [("P1", {"x": [1, 2]})]
        with pytest.raises(rpc.RpcDestinationError):
            await server.send_payload("P2", 1, destination="rc-someone-else")
        assert got == [("P1", {"x": [1, 2]})]


async def test_payload_without_consumer_is_a_delivery_error() -> None:
    src = source()
    async with rpc_pair(src, name="nocons") as (server, _client):
        with pytest.raises(rpc.RpcRemoteError, match="no consumer"):
            await server.send_payload("P", 1)
        # (ErrDelivery cannot activate on the server while HandshakeDone is on:
        # the reference's HandshakeDone removes Exception, which blocks it)
        assert server.mach.is1("Ready")


async def test_unregistered_args_value_is_a_typed_error() -> None:
    src = source()

    class Opaque:
        pass

    async with rpc_pair(src, name="enc") as (_server, client):
        with pytest.raises(rpc.RpcEncodeError, match="register"):
            await client.netmach.call_add1("A", {"x": Opaque()})
        # the connection is still fine
        assert await client.netmach.call_add1("A", {"x": 1}) is am.Result.EXECUTED


async def test_tree_of_replicas() -> None:
    """A network machine is a source too: source -> server -> netmach -> server -> netmach."""
    src = source()
    async with rpc_pair(src, name="tier1") as (_s1, c1):
        nm1 = c1.netmach
        async with rpc_pair(nm1, name="tier2") as (_s2, c2):
            nm2 = c2.netmach
            src.add1("A")
            with anyio.fail_after(2):
                await nm2.when1("A")
            assert nm2.clock() == src.clock()
            # a mutation from the leaf travels up through both tiers
            nm2.add1("B")
            with anyio.fail_after(2):
                await src.when1("B")
                await nm2.when1("B")
            assert nm2.not1("A") and nm1.is1("B")
