"""The reference's aRPC scenarios (``pkg/rpc/rpc_test.go``, ``netmach_test.go``) ported.

Each test builds a source machine ("Rels": A{Auto, R:C},
B{Multi, A:C}, C{After:D}, D{A:C,B}; "NoRels": A..D without relations; both
with ``ErrOnClient``), connects a client through ``rpc_pair`` (in-memory
unless the scenario needs sockets) and asserts on the network machine, the
call counters and the traffic. Waits are on ``when*`` under ``fail_after``,
never on sleeps.

Byte counts are both directions as counted by the client's transport (frame
bytes + the 4-byte length prefix on memory / tcp; websocket message bytes on
ws). They differ from the reference's gob numbers (msgpack tuples are smaller)
and are asserted in ranges of +-10% around the values measured here, so a
regression in traffic fails. Measured (memory transport):

- TestWaiting 183 (reference 1,300-1,400)
- TestAddMany 23,683 (reference 20,000-21,000)
- TestAddManyNoSync 10,219, 0.43 of TestAddMany (reference 10,000-11,000)
- TestManyStates 9,685 (reference 10,000-10,500)
- TestHighInstantClocks 53,459; 53,430 with small ticks (reference 48,000-50,000)

Machine ids travel in the handshake, so the tests use fixed ids and names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import attrs
import pytest
from rpc_util import rpc_pair

import asyncmachine_trio as am
from asyncmachine_trio import rpc
from asyncmachine_trio.states import pipes
from asyncmachine_trio.testing import inject_state


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """On trio and on asyncio (real clocks: some transports are real sockets)."""
    return str(request.param)


# ----- fixtures


class _RelsABCD(am.States):
    A = am.State(auto=True, require=("C",))
    B = am.State(multi=True, add=("C",))
    C = am.State(after=("D",))
    D = am.State(add=("C", "B"))


class Rels(_RelsABCD, rpc.StateSourceStates):
    """The "Rels" source: A{Auto, R:C}, B{M, A:C}, C{After:D}, D{A:C,B}, ErrOnClient."""


class _NoRelsABCD(am.States):
    A = am.State()
    B = am.State()
    C = am.State()
    D = am.State()


class NoRels(_NoRelsABCD, rpc.StateSourceStates):
    """The "NoRels" source: A, B, C, D without relations, ErrOnClient."""


ABCD = ("A", "B", "C", "D")


def expect_bytes(measured: int, baseline: int) -> None:
    """``measured`` within +-10% of the ``baseline`` recorded for this scenario."""
    lo, hi = int(baseline * 0.9), int(baseline * 1.1)
    assert lo <= measured <= hi, f"{measured} bytes, expected {lo}..{hi} (~{baseline})"


def traffic(client: rpc.Client) -> int:
    """Bytes both ways (the reference's traffic meter sits on the client's connection)."""
    return client.bytes_sent + client.bytes_received


def assert_no_err_ever(*machs: am.Machine) -> None:
    """The reference's ``disposeTest(checkErrs)``: no error was *ever* raised."""
    for m in machs:
        assert m.tick(am.EXCEPTION) == 0, f"{m.id} had errors: {m.err!r}"


@asynccontextmanager
async def session(
    source: am.Machine, schema: Any = None, *, syncs: bool = False, **kw: Any
) -> AsyncIterator[tuple[rpc.Server, rpc.Client, rpc.NetworkMachine]]:
    """``rpc_pair`` on a started source; on a clean exit, asserts nothing ever failed
    and (unless the test calls ``sync`` itself) that no drift forced a full sync."""
    async with anyio.create_task_group() as nursery:
        source.start(nursery)  # type: ignore[arg-type]
        kw.setdefault("name", "c")
        async with rpc_pair(source, schema, **kw) as (server, client):
            assert server.mach.is1("Ready")
            assert client.mach.is1("Ready")
            yield server, client, client.netmach
            assert_no_err_ever(server.mach, client.mach, source)
            if not syncs:
                # no checksum drift forced a full sync behind the test's back
                assert server.mach.tick("MetricSync") == 0
                assert client.mach.tick("MetricSync") == 0
        nursery.cancel_scope.cancel()


async def until(waiter: Any, limit: float = 2.0) -> None:
    with anyio.fail_after(limit):
        await waiter


def active(m: am.Machine) -> set[str]:
    return set(m.active_states())


# ----- rpc_test.go


@pytest.mark.anyio
async def test_basic() -> None:
    """TestBasic: Foo, Bar{R:Foo}; the client adds Foo (the synchronous, queued form)."""

    class Basic(rpc.StateSourceStates):
        Foo = am.State()
        Bar = am.State(require=("Foo",))

    src = am.Machine(Basic, id="ns-basic")
    async with session(src) as (server, client, nm):
        assert nm.add1("Foo") is am.Result.QUEUED
        await until(nm.when1("Foo"))
        assert server.mach.is1("Ready") and client.mach.is1("Ready")
        assert src.is1("Foo")
        assert nm.is1("Foo")
        assert not nm.is1("Bar")


@pytest.mark.anyio
async def test_type_safe() -> None:
    """TestTypeSafe: typed state names (Rels.A, Rels.C) on the Rels source."""
    src = am.Machine(Rels, id="ns-typesafe")
    async with session(src) as (server, client, nm):
        states = [Rels.A, Rels.C]
        assert await nm.call_add(states) is am.Result.EXECUTED
        assert src.is_(states)
        assert nm.is_(states)
        assert server.mach.is1(rpc.ServerStates.Ready)
        assert client.mach.is1(rpc.ClientStates.Ready)


@pytest.mark.anyio
async def test_waiting() -> None:
    """TestWaiting: when1(A) resolves after add(A, C); the clock rides on the response."""
    src = am.Machine(Rels, id="ns-waiting")
    async with session(src, name="waiting") as (server, client, nm):
        when_a = nm.when1("A")
        assert not when_a.is_set()
        assert await nm.call_add(["A", "C"]) is am.Result.EXECUTED
        await until(when_a)
        assert server.calls == 0, "server piggybacked the clock on the response"
        assert client.calls == 3, "client called Hello, Handshake, Add"
        assert server.pushes == 0
        expect_bytes(traffic(client), 183)


@attrs.frozen
class Metrics:
    """A scenario's counters, read before the client says bye."""

    bytes: int
    client_calls: int
    server_calls: int
    pushes: int

    @classmethod
    def of(cls, server: rpc.Server, client: rpc.Client) -> Metrics:
        return cls(traffic(client), client.calls, server.calls, server.pushes)


async def add_many(server_kw: dict[str, Any] | None = None, *, ns: bool = False) -> Metrics:
    """500x add(A, C) + add1(D) (``ns``: fire-and-forget, then one ``sync``)."""
    src = am.Machine(Rels, id="ns-addmany")
    kw = {"push_interval": 0.25, **(server_kw or {})}
    async with session(src, name="addmany", server_kw=kw, syncs=ns) as (server, client, nm):
        when_d = nm.when1("D")
        if ns:
            for _ in range(500):
                assert nm.add_ns(["A", "C"]) is am.Result.QUEUED
            nm.add1_ns("D")
            assert not when_d.is_set()
            await client.sync()
            # the sync was sent after every queued AddNS: D is already here
            assert when_d.is_set()
        else:
            for _ in range(500):
                assert await nm.call_add(["A", "C"]) is am.Result.EXECUTED
            await nm.call_add1("D")
            await until(when_d)
        assert active(nm) == active(src) == set(ABCD)
        assert nm.time() == src.time()
        return Metrics.of(server, client)


@pytest.mark.anyio
async def test_add_many() -> None:
    """TestAddMany: 502 round trips, zero server calls."""
    m = await add_many()
    assert m.server_calls == 0
    assert m.pushes == 0
    assert m.client_calls == 2 + 501
    expect_bytes(m.bytes, 23_683)


@pytest.mark.anyio
async def test_add_many_no_sync() -> None:
    """TestAddManyNoSync: AddNS x501 + Sync moves about half the bytes of TestAddMany."""
    m = await add_many(ns=True)
    assert m.client_calls == 2 + 501 + 1  # handshake, notifications, Sync
    expect_bytes(m.bytes, 10_219)
    baseline = await add_many()
    assert 0.35 <= m.bytes / baseline.bytes <= 0.65, (m, baseline)


@pytest.mark.anyio
async def test_add_many_instant_clock() -> None:
    """TestAddManyInstantClock: push_interval=0 adds no redundant pushes."""
    m = await add_many({"push_interval": 0.0})
    assert m.server_calls == 0
    assert m.pushes == 0
    baseline = await add_many()
    assert abs(m.bytes - baseline.bytes) <= baseline.bytes * 0.02, (m, baseline)


@pytest.mark.anyio
async def test_many_states() -> None:
    """TestManyStates: 100 extra states; 182 mutations; exactly 184 client calls."""
    schema = {**Rels.schema(), **{f"State{i}": am.State() for i in range(100)}}
    src = am.Machine(schema, id="ns-manystates")
    # the reference's order: StateSourceStates, Exception, A..D, then the extra ones
    names = ["ErrOnClient", am.EXCEPTION, *ABCD, *(f"State{i}" for i in range(100))]
    async with session(src, name="manystates") as (_server, client, nm):
        assert len(nm.state_names) == len(src.state_names) == 106
        when_d = nm.when1("D")
        await nm.call_add1("C")
        for i in range(5, 100 - 5):
            await nm.call_remove1(names[i - 3])
            await nm.call_add1(names[i])
        await nm.call_add1("D")
        await until(when_d)
        assert client.calls == 184, "handshake (2) and mutations (182)"
        assert nm.time() == src.time()
        expect_bytes(traffic(client), 9_685)


async def add_remove_many(high: bool) -> Metrics:
    src = am.Machine(Rels, id="ns-highclocks")
    if high:
        clock = src.clock()
        clock["A"] = 1_000_000
        clock["C"] = 1_000_000
        inject_state(src, [], clock)
        assert src.tick("A") == 1_000_000
    async with session(src, name="highclocks") as (server, client, nm):
        assert nm.tick("A") == src.tick("A")
        when_d = nm.when1("D")
        for _ in range(500):
            await nm.call_add(["A", "C"])
            await nm.call_remove(["A", "C"])
        await nm.call_add1("D")
        await until(when_d)
        assert nm.time() == src.time()
        if high:
            assert nm.tick("A") >= 1_001_000
        return Metrics.of(server, client)


@pytest.mark.anyio
async def test_high_instant_clocks() -> None:
    """TestHighInstantClocks: only deltas travel, so huge ticks cost (almost) nothing."""
    m = await add_remove_many(high=True)
    assert m.client_calls == 2 + 1001
    assert m.server_calls == 0
    expect_bytes(m.bytes, 53_459)
    small = await add_remove_many(high=False)
    assert abs(m.bytes - small.bytes) <= small.bytes * 0.1, (m, small)


@attrs.define
class APayloadReq(am.TypedArgs):
    """What the consumer asks the source for (the reference passes ``rpc.A{Name}``)."""

    args_prefix = "test_rpc"
    args_state = "C"

    name: str = ""


rpc.register_type(APayloadReq, "tests.APayloadReq")


@pytest.mark.anyio
async def test_payload() -> None:
    """TestPayload: the source's C handler sends a payload; the consumer receives it."""
    got: list[rpc.AServerPayload] = []

    class Consumer:
        def server_payload_state(self, e: am.Event) -> None:
            e.machine.remove1(rpc.ConsumerStates.ServerPayload)
            args = am.parse_args(e.args, rpc.AServerPayload)
            assert args is not None
            got.append(args)

    consumer = am.Machine(rpc.ConsumerStates, id="TestPayloadConsumer", handlers=Consumer())
    servers: list[rpc.Server] = []

    class Source:
        async def c_state(self, e: am.Event) -> None:
            req = am.parse_args(e.args, APayloadReq)
            assert req is not None
            await servers[0].send_payload(req.name, "Hello", event=e)
            e.machine.remove1("C")

    src = am.Machine(NoRels, id="ns-payload", handlers=Source())
    async with session(src, consumer=consumer) as (server, _client, nm):
        servers.append(server)
        delivered = consumer.when1(rpc.ConsumerStates.ServerPayload)
        nm.add1("C", am.pass_args(APayloadReq(name="TestPayload")))
        await until(delivered)
        assert len(got) == 1
        assert got[0].name == "TestPayload"
        assert got[0].data == "Hello"
        assert got[0].payload is not None
        assert got[0].payload.source == src.id
        assert consumer.tick(rpc.ConsumerStates.ServerPayload) == 2  # handled and removed
        assert server.calls == 1  # ClientSendPayload
        await until(nm.when_not1("C"))
    assert_no_err_ever(consumer)


@pytest.mark.anyio
async def test_mux() -> None:
    """TestMux: 3 clients of one source through a Mux (ws); client 0 adds C (auto A)."""
    src = am.Machine(Rels, id="ns-mux")
    async with anyio.create_task_group() as nursery:
        src.start(nursery)  # type: ignore[arg-type]
        async with rpc.open_mux(src, "ws://127.0.0.1:0", name="mux") as mux:
            assert mux.addr.startswith("ws://127.0.0.1:")
            async with (
                rpc.open_client(mux.addr, src.schema, name="mux-0", ready_timeout=2) as c0,
                rpc.open_client(mux.addr, src.schema, name="mux-1", ready_timeout=2) as c1,
                rpc.open_client(mux.addr, src.schema, name="mux-2", ready_timeout=2) as c2,
            ):
                clients = [c0, c1, c2]
                assert len(mux.servers) == 3
                assert mux.mach.is1("HasClients")
                assert all(c.mach.is1("Ready") for c in clients)
                assert await c0.netmach.call_add1("C") is am.Result.EXECUTED
                with anyio.fail_after(2):
                    for c in clients:
                        await c.netmach.when1("A")
                for c in clients:
                    assert active(c.netmach) == {"A", "C"}
                assert_no_err_ever(src, mux.mach, *(c.mach for c in clients))
                assert_no_err_ever(*(s.mach for s in mux.servers))
        nursery.cancel_scope.cancel()


@pytest.mark.anyio
async def test_partial() -> None:
    """TestPartial: allowed {A, B, C}, skipped {C}: the netmach shows exactly {A, B}."""
    src = am.Machine(NoRels, id="ns-partial")
    # non-zero clocks before connecting
    src.add1("C")
    src.remove1("C")
    kw = {"allowed_states": ["A", "B", "C"], "skipped_states": ["C"]}
    async with session(src, syncs=True, **kw) as (_server, client, nm):
        assert client.tracked == [nm.index1("A"), nm.index1("B")]
        assert nm.tick("C") == 0  # untracked ticks are not sent
        src.add1("A")
        src.add(["B", "C"])
        src.add1("D")
        await until(nm.when(["A", "B"]))
        await client.sync()
        assert src.is_(["A", "B", "C", "D"])
        assert active(nm) == {"A", "B"}
        assert (nm.tick("C"), nm.tick("D")) == (0, 0)


@pytest.mark.anyio
async def test_partial_inferred() -> None:
    """TestPartialInferred: allowed {A} with the schema; C is inferred (A requires C)."""
    src = am.Machine(Rels, id="ns-inferred")
    async with session(src, allowed_states=["A"]) as (_server, _client, nm):
        src.add1("C")  # auto A
        await until(nm.when(["A", "C"]))
        assert active(nm) == {"A", "C"}
        assert nm.tick("A") == 1
        assert nm.tick("C") == 0, "C is shown active by inference, its tick is not synced"


@pytest.mark.anyio
async def test_partial_no_schema() -> None:
    """TestPartialNoSchema: allowed {C}, no schema: only C, and only C's name."""
    src = am.Machine(Rels, id="ns-partial-noschema")
    async with session(src, {}, allowed_states=["C"], sync_schema=False) as (_s, _c, nm):
        assert list(nm.state_names) == ["C"]
        src.add1("C")  # auto A, not tracked and not inferred
        await until(nm.when1("C"))
        assert src.is_(["A", "C"])
        assert nm.active_states() == ["C"]
        assert nm.tick("C") == src.tick("C")
        # a mutation from the client lands on the right state of the source
        assert await nm.call_remove1("C") is am.Result.EXECUTED
        assert src.not1("C")
        assert nm.active_states() == []


@pytest.mark.anyio
async def test_no_schema() -> None:
    """TestNoSchema: all states tracked, no schema; source adds C: the netmach shows A, C."""
    src = am.Machine(Rels, id="ns-noschema")
    async with session(src, {}, sync_schema=False) as (_server, _client, nm):
        assert set(nm.state_names) == set(src.state_names)
        src.add1("C")
        await until(nm.when(["A", "C"]))
        assert active(nm) == {"A", "C"}
        assert nm.time(["A", "C"]) == src.time(["A", "C"])


@pytest.mark.anyio
async def test_mutations_sync() -> None:
    """TestMutationsSync: one diff per source mutation: the netmach sees 3 transitions."""
    seen: list[set[str]] = []

    class TxCount(am.Tracer):
        def transition_end(self, transition: am.Transition) -> None:
            seen.append(set(transition.target_states))

    src = am.Machine(Rels, id="ns-mutsync")
    async with session(src, sync_mutations=True) as (server, _client, nm):
        nm.tracer_bind(TxCount())
        src.add1("B")  # adds C, then auto A
        src.add1("D")
        await until(nm.when1("D"))
        assert len(seen) == 3, seen
        assert seen == [{"B", "C"}, {"A", "B", "C"}, {"A", "B", "C", "D"}]
        assert server.calls == server.pushes >= 1
        assert nm.time() == src.time()


async def until_mirrored(nm: am.Machine, src: am.Machine) -> None:
    """Wait until the netmach's active set is the source's."""
    want = set(src.active_states())
    rest = [s for s in src.state_names if s not in want]
    with anyio.fail_after(2):
        await nm.when(sorted(want))
        await nm.when_not(rest)


@pytest.mark.anyio
async def test_shallow_sync() -> None:
    """TestShallowSync (skipped in the reference): only activity travels.

    The netmach's active set always equals the source's and every tick has the
    source's parity, but a re-entered Multi state does not tick remotely.
    """
    src = am.Machine(Rels, id="ns-shallow")

    def check(nm: am.Machine) -> None:
        assert active(nm) == active(src)
        for s in src.state_names:
            assert nm.tick(s) % 2 == src.tick(s) % 2, s

    async with session(src, shallow_clocks=True) as (_server, _client, nm):
        await nm.call_add1("C")  # auto A
        check(nm)
        assert active(nm) == {"A", "C"}
        await nm.call_add1("B")
        check(nm)
        await nm.call_add1("B")  # Multi: re-entered, parity unchanged
        check(nm)
        assert src.tick("B") == 3
        assert nm.tick("B") == 1, "shallow clocks do not carry the real counts"
        await nm.call_remove(["B", "C"])  # A requires C
        check(nm)
        assert active(nm) == set()
        # source-side mutations arrive as pushes
        src.add1("D")
        await until_mirrored(nm, src)
        check(nm)
        assert active(nm) == set(ABCD)
        src.set(["D"])
        await until_mirrored(nm, src)
        check(nm)
        src.remove1("D")
        await until_mirrored(nm, src)
        check(nm)
        assert active(nm) == set()
        assert src.tick("A") > 2 and nm.tick("A") % 2 == 0


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["ws", "tcp"])
async def test_traffic_over_sockets(transport: str) -> None:
    """The same scenarios count the same bytes over sockets as in memory.

    tcp frames carry the same 4-byte length prefix as the in-memory transport;
    a websocket message is its own frame, so ws counts 4 bytes less per frame
    (websocket framing itself is not counted).
    """

    async def run(tr: str) -> tuple[int, int, int]:
        src = am.Machine(Rels, id="ns-sockets")
        async with session(src, name="sockets", transport=tr) as (server, client, nm):
            await nm.call_add(["A", "C"])
            waiting = traffic(client)
            for _ in range(50):
                await nm.call_add(["A", "C"])
            await nm.call_add1("D")
            assert active(nm) == set(ABCD)
            assert server.calls == 0
            assert server.bytes_sent == client.bytes_received
            assert server.bytes_received == client.bytes_sent
            return waiting, traffic(client), client.calls

    mem_waiting, mem_total, mem_calls = await run("memory")
    waiting, total, calls = await run(transport)
    assert calls == mem_calls == 2 + 52
    prefix = 4 if transport == "ws" else 0
    # every call is one request and one response frame
    assert waiting == mem_waiting - prefix * 2 * 3
    assert total == mem_total - prefix * 2 * calls
    expect_bytes(mem_total, 2_430)


# ----- netmach_test.go


@pytest.mark.anyio
async def test_pipes() -> None:
    """TestPipes: bind_any(netmach, local): the source's A, B reach a local machine."""
    src = am.Machine(NoRels, id="ns-pipes")
    src.add1("A")
    async with anyio.create_task_group() as nursery:
        local = am.Machine(NoRels, id="t-pipes-local")
        local.start(nursery)  # type: ignore[arg-type]
        async with session(src) as (_server, _client, nm):
            assert nm.active_states() == ["A"]
            local.set(nm.active_states())
            assert pipes.bind_any(nm, local) == f"BindAny-{local.id}"
            src.add(["A", "B"])
            await until(local.when(["A", "B"]), 1.0)
            assert active(local) == {"A", "B"}
            assert_no_err_ever(local)
        nursery.cancel_scope.cancel()


@pytest.mark.anyio
async def test_nested_mutation() -> None:
    """TestNestedMutation: A's handler on the source queues 3x add B, 2x remove B."""

    class Nested:
        def a_state(self, e: am.Event) -> None:
            m = e.machine
            m.add1("B")
            m.add1("B")
            m.add1("B")
            m.remove1("B")
            m.remove1("B")

    src = am.Machine(NoRels, id="ns-nested", handlers=Nested())
    async with session(src) as (_server, _client, nm):
        assert await nm.call_add1("A") is am.Result.EXECUTED
        # the response carries the clock after the whole queue ran
        assert nm.active_states() == ["A"]
        assert src.active_states() == ["A"]
        assert nm.tick("B") == src.tick("B") == 2
