"""The debugger exporter against an in-process protocol v2 receiver (loopback TCP)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trio

import asyncmachine_trio as am
from asyncmachine_trio.machine import tracing
from asyncmachine_trio.telemetry import dbg
from asyncmachine_trio.telemetry.receiver import Collector, Receiver

SCHEMA = {"A": am.State(remove=("B",)), "B": am.State(remove=("A",))}
FAST = dbg.ExporterConfig(backoff_min=0.01, backoff_max=0.05, idle_poll=0.02, flush_interval=0.002)


@pytest.fixture(autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    for ex in dbg.exporters():
        ex.close(timeout=0)
    tracing.remove_machine_hook(dbg._child_hook)


def txs_of(c: Collector, mid: str) -> list[Any]:
    log = c.machines.get(mid)
    return log.txs if log is not None else []


def toggle(mach: am.Machine, n: int) -> None:
    for i in range(n):
        mach.add1("B" if i % 2 else "A")


async def wait_until(pred: Any) -> None:
    """Poll a condition set by the exporter's thread (no event to wait on)."""
    with trio.fail_after(10):
        while not pred():  # noqa: ASYNC110
            await trio.sleep(0.005)


@pytest.mark.trio
async def test_10k_transitions_in_order() -> None:
    coll = Collector()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(Receiver(coll).serve, "127.0.0.1", 0)
        mach = am.Machine(SCHEMA, id="dbg-10k")
        # the receiver shares this loop, which the synchronous mutations below
        # block: a buffer above the run's size (the default is 10,000)
        cfg = dbg.ExporterConfig(buffer=50_000, idle_poll=0.02, flush_interval=0.002)
        ex = dbg.attach(mach, f"127.0.0.1:{port}", config=cfg)
        assert dbg.exporter_of(mach) is ex
        assert await trio.to_thread.run_sync(ex.wait_connected, 10)
        n = 10_000
        toggle(mach, n)
        await coll.wait(
            lambda c: "dbg-10k" in c.machines and len(c.machines["dbg-10k"].txs) == n, 30
        )
        log = coll.machines["dbg-10k"]
        names = log.schema.state_names
        a, b = names.index("A"), names.index("B")
        assert [t.seq for t in log.txs] == list(range(1, n + 1))
        assert log.dropped == 0 and ex.dropped == 0 and ex.sent == n
        assert log.schema.time == log.txs[0].time_before == [0] * len(names)
        prev = log.txs[0].time_before
        for i, tx in enumerate(log.txs):
            assert tx.called == [b if i % 2 else a]
            assert tx.accepted and tx.type == 0
            assert tx.time_before == prev
            prev = tx.time_after
        assert prev == list(mach.time())
        # batched: far fewer frames than records
        assert ex.batches < n / 10
        ex.close()
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_receiver_down_drops_exact_then_reconnects(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "asyncmachine_trio.telemetry")
    coll = Collector()
    mach = am.Machine(SCHEMA, id="dbg-down")
    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(Receiver(coll).serve, "127.0.0.1", 0)
            ex = dbg.attach(mach, f"127.0.0.1:{port}", config=FAST)
            toggle(mach, 100)
            await coll.wait(
                lambda c: "dbg-down" in c.machines and len(c.machines["dbg-down"].txs) == 100, 10
            )
            nursery.cancel_scope.cancel()  # the receiver goes away
        await wait_until(lambda: ex.state == dbg.DOWN)
        assert ex.dropped == 0
        t0 = time.perf_counter()
        toggle(mach, 1000)
        spent = time.perf_counter() - t0
        assert ex.dropped == 1000
        assert spent < 1.0  # nothing blocks (the bound itself is a benchmark)
        # back: the exporter reconnects, resends the schema and the drop count
        await outer.start(Receiver(coll).serve, "127.0.0.1", port)
        await coll.wait(lambda c: c.machines["dbg-down"].dropped == 1000, 10)
        log = coll.machines["dbg-down"]
        assert log.schemas == 2 and log.connected
        assert log.schema.time == list(mach.time())
        toggle(mach, 10)
        await coll.wait(lambda c: len(c.machines["dbg-down"].txs) == 110, 10)
        # sequence numbers show the gap
        assert [t.seq for t in log.txs[100:]] == list(range(1101, 1111))
        assert ex.connects == 2
        lines = [r.getMessage() for r in caplog.records]
        assert sum("connected to the debugger" in m for m in lines) == 2
        ex.close()
        outer.cancel_scope.cancel()


def test_gives_up_after_repeated_failures(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "asyncmachine_trio.telemetry")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    mach = am.Machine(SCHEMA, id="dbg-gone")
    cfg = dbg.ExporterConfig(max_failures=3, backoff_min=0.001, backoff_max=0.002)
    ex = dbg.attach(mach, f"127.0.0.1:{port}", config=cfg)
    deadline = time.monotonic() + 10
    while ex.state != dbg.DETACHED and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ex.state == dbg.DETACHED and ex.failures == 3
    assert dbg.exporters() == [] and dbg.exporter_of(mach) is None
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and "unreachable after 3 attempts" in msgs[0]
    # the hook removes itself at the next transition; the machine is untouched
    assert len(mach._end_hooks) == 1
    assert mach.add1("A") is am.Result.EXECUTED
    assert mach._end_hooks == []
    assert mach.add1("B") is am.Result.EXECUTED
    # a new attach makes a new exporter
    assert dbg.attach(mach, f"127.0.0.1:{port}", config=cfg) is not ex


def test_buffer_bound_while_connecting() -> None:
    # a listener that accepts and never answers the handshake: the exporter is
    # stuck "connecting", buffers up to the bound and counts the rest
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    try:
        mach = am.Machine(SCHEMA, id="dbg-full")
        cfg = dbg.ExporterConfig(buffer=50, connect_timeout=0.3, max_failures=1)
        ex = dbg.attach(mach, f"127.0.0.1:{port}", config=cfg)
        toggle(mach, 500)
        assert ex.state == dbg.CONNECTING
        assert ex.dropped == 450
        deadline = time.monotonic() + 10
        while ex.state != dbg.DETACHED and time.monotonic() < deadline:
            time.sleep(0.01)
        # the handshake timed out: the buffered ones count as dropped too
        assert ex.state == dbg.DETACHED and ex.dropped == 500
    finally:
        srv.close()


@pytest.mark.trio
async def test_children_traced_and_gone() -> None:
    coll = Collector()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(Receiver(coll).serve, "127.0.0.1", 0)
        parent = am.Machine(SCHEMA, id="dbg-parent")
        ex = dbg.attach(parent, f"127.0.0.1:{port}", config=FAST)
        child = am.Machine(SCHEMA, id="dbg-child", parent=parent)
        other = am.Machine(SCHEMA, id="dbg-other")
        # rpc plumbing stays hidden
        plumbing = am.Machine(SCHEMA, id="dbg-rpc", parent=parent, tags=["rpc-server"])
        assert dbg.exporter_of(child) is ex
        assert dbg.exporter_of(other) is None and dbg.exporter_of(plumbing) is None
        child.add1("A", {"name": "kid"})
        await coll.wait(lambda c: "dbg-child" in c.machines and c.machines["dbg-child"].txs, 10)
        log = coll.machines["dbg-child"]
        assert log.schema.parent_id == "dbg-parent"
        assert log.txs[0].args == {"name": "kid"}
        # schema changes are resent
        child.set_schema({**child.schema, "C": am.State()}, [*child.state_names, "C"])
        await coll.wait(lambda c: "C" in c.machines["dbg-child"].schema.state_names, 10)
        child.dispose()
        await coll.wait(lambda c: c.machines["dbg-child"].gone, 10)
        assert dbg.exporter_of(child) is None
        assert child._end_hooks == []
        ex.close()
        nursery.cancel_scope.cancel()


def test_bad_address() -> None:
    mach = am.Machine(SCHEMA)
    with pytest.raises(am.telemetry.TelemetryError, match="port 'x' is not a number"):
        dbg.attach(mach, "localhost:x")


def test_wire_form_equals_record() -> None:
    """The exporter's shortcut builds exactly the TxRecord's wire array."""
    from asyncmachine_trio.telemetry import protocol, tx_record

    ex = dbg.Exporter("127.0.0.1:1")
    mach = am.Machine(SCHEMA, id="wire-m", log_steps=True, log_level=am.LogLevel.DECISIONS)
    t = dbg._Tracked(mach)
    txs: list[am.Transition] = []
    mach._end_hooks.append(txs.append)
    mach.add1("A", {"name": "x", "id": 3})
    mach.add(["B"], {"other": 1})
    mach._log(am.LogLevel.OPS, "between")
    mach.remove1("B")

    class Other:
        def a_state(self, e: am.Event) -> None:
            mach.add1("A", event=e)

    other = am.Machine(SCHEMA, id="other-m", handlers=Other())
    other.add1("A")
    assert len(txs) >= 4
    for i, tx in enumerate(txs):
        wire = ex._tx_wire((t, tx, 123, 4, 5, i + 1))
        rec = tx_record(tx, i + 1, time=123, queue_tick=4, machine_tick=5)
        assert wire == protocol._tx_out(rec)
        (batch,) = protocol.Decoder().feed(protocol.encode_wire_txs([wire]))
        assert batch == protocol.TxBatch([rec])
    src = txs[-1].mutation.source
    assert src is not None and src.mach_id == "other-m"
    assert protocol._tx_out(tx_record(txs[-1], 1))[19:21] == ["other-m", src.tx_id]


@pytest.mark.trio
async def test_network_and_piped_machines_linked() -> None:
    """aRPC network machines and piped machines show with their own ids and links."""
    from rpc_util import rpc_pair

    from asyncmachine_trio.states import pipes

    coll = Collector()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(Receiver(coll).serve, "127.0.0.1", 0)
        addr = f"127.0.0.1:{port}"
        src = am.Machine({"A": am.State(), "B": am.State()}, id="dbg-src")
        ex = dbg.attach(src, addr, config=FAST)
        # a piped machine: its transitions name the source transition
        piped = am.Machine({"A": am.State(), "B": am.State()}, id="dbg-piped")
        dbg.attach(piped, addr)
        pipes.bind(src, piped, "A")
        async with rpc_pair(src) as (_server, client):
            nm = client.netmach
            dbg.attach(nm, addr)
            await nm.call_add(["B"])
            src.add1("A")
            with trio.fail_after(5):
                await nm.when1("A")
            await coll.wait(lambda c: len(txs_of(c, nm.id)) >= 1 and txs_of(c, "dbg-piped"), 10)
        log = coll.machines[nm.id]
        assert nm.id != "dbg-src"
        assert "rpc-netmach" in log.schema.tags
        assert "src-id:dbg-src" in log.schema.tags
        src_tx = {t.id for t in coll.machines["dbg-src"].txs}
        piped_tx = txs_of(coll, "dbg-piped")[0]
        assert piped_tx.source_machine == "dbg-src" and piped_tx.source_tx in src_tx
        ex.close()
        nursery.cancel_scope.cancel()
