"""NATS: a machine exposed on subjects of a real nats-server, on trio and asyncio."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
import sniffio

import asyncmachine_trio as am
from asyncmachine_trio import integrations as ig
from asyncmachine_trio.integrations import nats as amnats
from asyncmachine_trio.integrations.nats_server import NatsServer, start_cluster
from asyncmachine_trio.states import BasicStates

pytestmark = pytest.mark.anyio

TIMEOUT = 5


class S(BasicStates):
    A = am.State()
    B = am.State()
    C = am.State()
    Job = am.State(multi=True)


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Real clocks: the network is real."""
    return request.param


@pytest.fixture(scope="module")
def server() -> Iterator[NatsServer]:
    with NatsServer() as srv:
        yield srv


@contextlib.asynccontextmanager
async def bridge() -> AsyncIterator[None]:
    """On trio, nats-py runs in a trio-asyncio loop."""
    if sniffio.current_async_library() == "trio":
        import trio_asyncio

        async with trio_asyncio.open_loop():
            yield
    else:
        yield


@contextlib.asynccontextmanager
async def connected(url: str | list[str], **kw: Any) -> AsyncIterator[Any]:
    nc = await amnats.connect(url, **kw)
    try:
        yield nc
    finally:
        with anyio.CancelScope(shield=True):
            await amnats._aio(nc.close)


async def raw_request(nc: Any, subject: str, payload: bytes) -> dict[str, Any]:
    msg = await amnats._aio(nc.request, subject, payload, timeout=TIMEOUT)
    out: dict[str, Any] = json.loads(msg.data)
    return out


async def test_getter(server: NatsServer) -> None:
    """Reference TestGetter: an id request on the topic."""
    async with bridge(), connected(server.url) as nc, am.open_machine(S) as mach:
        async with amnats.expose(mach, nc, "getter"):
            resp = await raw_request(nc, "getter", ig.encode(ig.GetterReq(id=True)))
            assert resp["id"] == mach.id
            got = await amnats.get(nc, "getter", mach.id, id=True, time=["A"])
            assert (got.id, got.time) == (mach.id, [0])


async def test_mutation(server: NatsServer) -> None:
    """Reference TestMutation: add A B, then remove B with an arg a handler sees."""
    seen: list[str] = []

    class H:
        def b_end(self, e: am.Event) -> None:
            seen.append(e.args["arg1"])

    async with bridge(), connected(server.url) as nc, am.open_machine(S, handlers=H()) as mach:
        async with amnats.expose(mach, nc, "mutation"):
            resp = await raw_request(nc, "mutation", ig.encode(ig.MutationReq(add=["A", "B"])))
            assert resp == {"kind": "am_resp_mutation", "result": 0}
            res = await amnats.remove(nc, "mutation", mach.id, ["B"], {"arg1": "test"})
            assert res is am.Result.EXECUTED
            assert seen == ["test"]
            assert mach.active_states() == ["A"]
            with pytest.raises(ig.UnknownStateError, match="did you mean 'B'"):
                await amnats.add(nc, "mutation", mach.id, ["Bb"])


async def test_waiting_published(server: NatsServer) -> None:
    """Reference TestWaiting: a published waiting request is answered on the topic."""
    async with bridge(), connected(server.url) as nc, am.open_machine(S) as mach:
        async with amnats.expose(mach, nc, "waiting"):
            send, receive = anyio.create_memory_object_stream[bytes](10)

            async def on_msg(msg: Any) -> None:
                send.send_nowait(msg.data)

            sub = await amnats._aio(nc.subscribe, "waiting", cb=on_msg)
            await amnats._aio(nc.publish, "waiting", ig.encode(ig.WaitingReq(states=["A"])))
            await amnats._aio(nc.flush)
            assert await amnats.add(nc, "waiting", mach.id, ["A"]) is am.Result.EXECUTED
            with anyio.fail_after(TIMEOUT), send, receive:
                async for data in receive:
                    msg = ig.decode(data)
                    if isinstance(msg, ig.WaitingResp):
                        break
            assert msg == ig.WaitingResp(mach_id=mach.id, states=["A"])
            await amnats._aio(sub.unsubscribe)


async def test_wait_request_reply(server: NatsServer) -> None:
    async with bridge(), connected(server.url) as nc, am.open_machine(S) as mach:
        async with amnats.expose(mach, nc, "wait"):
            got: list[ig.WaitingResp] = []

            async def waiter() -> None:
                got.append(await amnats.wait(nc, "wait", mach.id, ["A", "B"], timeout=TIMEOUT))

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await amnats.add(nc, "wait", mach.id, ["A", "B"])
            assert got == [ig.WaitingResp(mach_id=mach.id, states=["A", "B"])]
        async with amnats.expose(mach, nc, "wait2", wait_timeout=0.05):
            with pytest.raises(ig.RequestTimeoutError):
                await amnats.wait(nc, "wait2", mach.id, ["C"], timeout=TIMEOUT)


async def test_queue_group_spreads_requests(server: NatsServer) -> None:
    n = 30
    done: dict[str, list[int]] = {}

    class Worker:
        def __init__(self, name: str) -> None:
            self.name = name
            done[name] = []

        def job_state(self, e: am.Event) -> None:
            done[self.name].append(e.args["n"])

    async with bridge(), contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(connected(server.url))
        for i in range(3):
            nc = await stack.enter_async_context(connected(server.url))
            mach = await stack.enter_async_context(
                am.open_machine(S, id=f"w{i}", handlers=Worker(f"w{i}"))
            )
            await stack.enter_async_context(amnats.expose(mach, nc, "pool", queue="workers"))
        for i in range(n):
            assert await amnats.add(client, "pool", "", ["Job"], {"n": i}) is am.Result.EXECUTED
    # each request executed exactly once, by one of the three
    assert sorted(x for jobs in done.values() for x in jobs) == list(range(n))
    assert all(done.values()), done


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"definitely not json", "malformed"),
        (b'{"kind": "am_req_explode"}', "unknown_kind"),
        (b'{"kind": "am_req_mutation", "add": "A"}', "malformed"),
        (b'{"kind": "am_req_mutation", "add": ["A"], "remove": ["B"]}', "add_and_remove"),
        (b'{"kind": "am_req_waiting", "states": ["A"], "time": [1, 2]}', "time_length_mismatch"),
        (b'{"kind": "am_req_getter", "padding": "' + b"x" * 500_000 + b'"}', "too_large"),
    ],
)
async def test_malformed_payloads(server: NatsServer, payload: bytes, code: str) -> None:
    async with bridge(), connected(server.url) as nc, am.open_machine(S) as mach:
        async with amnats.expose(mach, nc, "bad") as exposure:
            resp = await raw_request(nc, f"bad.{mach.id}", payload)
            assert resp["error"]["code"] == code
            assert exposure.refused == 1
            # still serving, the machine untouched
            assert (await amnats.get(nc, "bad", mach.id, id=True)).id == mach.id
            assert mach.active_states() == []


async def test_allow_list(server: NatsServer) -> None:
    async with bridge(), connected(server.url) as nc, am.open_machine(S) as mach:
        async with amnats.expose(mach, nc, "allow", allow=["A"]):
            assert await amnats.add(nc, "allow", mach.id, ["A"]) is am.Result.EXECUTED
            with pytest.raises(ig.StateNotAllowedError):
                await amnats.add(nc, "allow", mach.id, ["B"])


async def test_server_restart_reconnects() -> None:
    with NatsServer() as srv:
        async with bridge(), am.open_machine(S) as mach:
            opts = {"reconnect_time_wait": 0.05, "max_reconnect_attempts": -1}
            async with connected(srv.url, machines=[mach], **opts) as nc:
                async with amnats.expose(mach, nc, "restart"):
                    assert await amnats.add(nc, "restart", mach.id, ["A"]) is am.Result.EXECUTED
                    await anyio.to_thread.run_sync(srv.stop)
                    with anyio.fail_after(TIMEOUT):
                        await mach.when1(S.ErrNetwork)
                    assert isinstance(mach.err, amnats.NatsDisconnectedError)
                    await anyio.to_thread.run_sync(srv.start)
                    with anyio.fail_after(TIMEOUT):
                        await mach.when_not1(S.ErrNetwork)
                    # the subscriptions came back with the connection
                    res = await amnats.add(nc, "restart", mach.id, ["B"])
                    assert res is am.Result.EXECUTED
                    assert mach.is_(["A", "B"])


@pytest.mark.parametrize("close", ["close", "drain"])
async def test_closing_on_purpose_is_not_a_lost_connection(server: NatsServer, close: str) -> None:
    """``nc.close()`` / ``nc.drain()`` of a ``connect(machines=...)`` client reports nothing."""
    import asyncmachine_trio.testing as amt

    lost: list[str] = []

    async def user_cb() -> None:
        lost.append("disconnected")

    with amt.error_reports() as reports:
        async with bridge(), am.open_machine(S) as mach:
            nc = await amnats.connect(server.url, machines=[mach], disconnected_cb=user_cb)
            await amnats._aio(getattr(nc, close))
            assert nc.is_closed
            assert not mach.is1(S.ErrNetwork) and mach.err is None
    assert reports == []
    assert lost == ["disconnected"]  # the user's own callback still runs


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_cluster_failover_loses_no_acknowledged_mutation() -> None:
    servers = await anyio.to_thread.run_sync(start_cluster)
    try:
        urls = [s.url for s in servers]
        executed: list[int] = []
        acked: list[int] = []

        class H:
            def job_state(self, e: am.Event) -> None:
                executed.append(e.args["n"])

        opts = {"reconnect_time_wait": 0.05, "max_reconnect_attempts": -1, "dont_randomize": True}
        async with am.open_machine(S, handlers=H()) as mach:
            async with (
                connected(urls, machines=[mach], **opts) as nc,
                connected(urls[::-1], **opts) as client,
                amnats.expose(mach, nc, "failover"),
            ):
                killed = False

                async def send(n: int) -> None:
                    with anyio.fail_after(TIMEOUT):
                        while True:
                            try:
                                res = await amnats.add(
                                    client, "failover", mach.id, ["Job"], {"n": n}, timeout=0.5
                                )
                            except Exception:  # no responders / timeout while failing over
                                await anyio.sleep(0.02)
                                continue
                            assert res is am.Result.EXECUTED
                            acked.append(n)
                            return

                for n in range(20):
                    if n == 10:
                        victim = next(
                            s for s in servers if s.url.endswith(f":{nc.connected_url.port}")
                        )
                        await anyio.to_thread.run_sync(victim.kill)
                        killed = True
                    await send(n)
                assert killed
                assert nc.connected_url.port != victim.port
    finally:
        for srv in servers:
            await anyio.to_thread.run_sync(srv.stop)
    assert acked == list(range(20))
    assert set(acked) <= set(executed)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_without_the_asyncio_loop_is_a_clear_error(server: NatsServer) -> None:
    with pytest.raises(RuntimeError, match=r"trio_asyncio\.open_loop"):
        await amnats.connect(server.url)
