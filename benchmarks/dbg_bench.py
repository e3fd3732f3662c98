"""am-dbg: the collector's ingest rate and the UI's time to render a step.

    python -m benchmarks.dbg_bench            # targets: >= 50,000 tx/s, <= 50 ms per step

Ingest: 10 clients connect over loopback TCP at once (protocol v2, real
``Receiver`` + ``Store``, trio), each streams one machine's 20,000 transitions
in ``txs`` frames of 100 (pre-encoded, so the clients cost little); the rate is
transitions stored per second of wall time, decoding included, and per second
of the process's CPU time (fairer on a loaded machine). Also the two halves
alone, per CPU second: decoding ``txs`` frames into checked wire records
(``decode_frame(..., wire_txs=True)``) and storing them
(``Store.add_wire_txs``, what the receiver calls).

Render: 50 machines x 2,000 transitions (100,000) in the Textual app
(``App.run_test``, 160x45); a step is ``Debugger.fwd()`` plus a redraw of every
pane (``DbgApp.render_all``), median of 200 steps; and the full round trip of
a key press through Pilot (Textual's compositor included), median of 40.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import trio

from asyncmachine_trio.telemetry import protocol as p
from asyncmachine_trio.telemetry.receiver import Connection, Receiver
from asyncmachine_trio.tools.dbg.store import Store
from tests.dbg_util import schema, txs

CLIENTS = 10
PER_CLIENT = 20_000
BATCH = 100


def frames(mid: str) -> list[bytes]:
    recs = txs(mid, PER_CLIENT)
    out = [p.PREAMBLE + p.encode_frame(p.Hello(agent="bench")), p.encode_frame(schema(mid))]
    out += [p.encode_txs(recs[i : i + BATCH]) for i in range(0, PER_CLIENT, BATCH)]
    return out


async def ingest() -> tuple[float, float]:
    store = Store()
    data = [frames(f"m{i}") for i in range(CLIENTS)]
    total = CLIENTS * PER_CLIENT
    done = trio.Event()

    async def client(port: int, fs: list[bytes]) -> None:
        s = await trio.open_tcp_stream("127.0.0.1", port)
        async with s:
            await s.send_all(fs[0])
            await s.receive_some(1024)  # welcome
            for f in fs[1:]:
                await s.send_all(f)
            await done.wait()

    async with trio.open_nursery() as n:
        port = await n.start(Receiver(store).serve, "127.0.0.1", 0)
        t0 = time.perf_counter()
        c0 = time.process_time()
        async with trio.open_nursery() as clients:
            for fs in data:
                clients.start_soon(client, port, fs)
            await store.wait(lambda st: st.tx_count >= total, timeout=120)
            done.set()
        dt = time.perf_counter() - t0
        cpu = time.process_time() - c0
        n.cancel_scope.cancel()
    assert store.tx_count == total
    return total / dt, total / cpu


def halves() -> tuple[float, float]:
    """Decode and store rates (transitions per CPU second), each alone."""
    store = Store()
    conn = Connection(1, "bench")
    bodies: list[bytes] = []
    for i in range(CLIENTS):
        store.on_schema(conn, schema(f"m{i}"))
        bodies += [f[4:] for f in frames(f"m{i}")[2:]]
    total = CLIENTS * PER_CLIENT
    c0 = time.process_time()
    for b in bodies:  # as the receiver does: one decoded frame alive at a time
        p.decode_frame(b, wire_txs=True)
    dt_decode = time.process_time() - c0
    decoded = [p.decode_frame(b, wire_txs=True) for b in bodies]
    c1 = time.process_time()
    for f in decoded:
        assert isinstance(f, p.WireTxs)
        store.add_wire_txs(f.txs)
    c2 = time.process_time()
    assert store.tx_count == total
    return total / dt_decode, total / (c2 - c1)


async def render() -> tuple[float, float, int]:
    from asyncmachine_trio.tools.dbg.app import DbgApp
    from asyncmachine_trio.tools.dbg.logic import Debugger

    store = Store()
    conn = Connection(1, "bench")
    for m in range(50):
        store.on_schema(conn, schema(f"m{m}", f"m{m - m % 5}" if m % 5 else ""))
        store.add_txs(txs(f"m{m}", 2000, t0=1_700_000_000_000_000_000 + m * 7))
    dbg = Debugger(store, tail=False)
    app = DbgApp(store, debugger=dbg)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        dbg.goto("mach://m7/%231000")
        steps = []
        for _ in range(200):
            t0 = time.perf_counter()
            dbg.fwd()
            app.render_all()
            steps.append(time.perf_counter() - t0)
        presses = []
        for k in range(40):
            t0 = time.perf_counter()
            await pilot.press("right" if k % 2 else "left")
            presses.append(time.perf_counter() - t0)
    return statistics.median(steps) * 1000, statistics.median(presses) * 1000, store.tx_count


def main() -> None:
    rate, cpu_rate = trio.run(ingest)
    print(f"ingest, {CLIENTS} clients over TCP: {rate:10,.0f} tx/s wall (target >= 50,000)")
    print(f"  per CPU second of the process:  {cpu_rate:10,.0f} tx/s (shared machines: fairer)")
    dec, sto = halves()
    print(f"decode only (per CPU second):   {dec:10,.0f} tx/s")
    print(f"store only (per CPU second):    {sto:10,.0f} tx/s")
    step_ms, press_ms, n = asyncio.run(render())
    print(f"render a step at {n:,} txs:   {step_ms:8.1f} ms (target <= 50 ms)")
    print(f"key press round trip (Pilot):  {press_ms:8.1f} ms (Textual compositor included)")


if __name__ == "__main__":
    main()
