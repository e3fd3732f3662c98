"""Node: pool start-up, getting a warm worker, and a work round trip vs an aRPC mutation.

    python -m benchmarks.node_bench          # prints a table; also `benchmarks.run --only node`

Real worker processes (``examples/node/worker.py``) on loopback. Targets (issue 17): a warm
worker in <= 50 ms; a work round trip <= 3x the aRPC mutation round trip measured on the
same worker connection (``call_add1("Healthcheck")``).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

from asyncmachine_trio import node

WORKER = [sys.executable, str(Path(__file__).resolve().parent.parent / "examples/node/worker.py")]


def _ms(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "p50_ms": statistics.median(xs) * 1000,
        "p99_ms": xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1000,
    }


async def _measure(rounds: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    async with node.open_supervisor(
        "bench", WORKER, min_workers=4, warm_workers=0, max_workers=4, heartbeat=0
    ) as sup:
        pool_ready = time.perf_counter() - t0
        warm: list[float] = []
        work: list[float] = []
        mutation: list[float] = []
        async with trio.open_nursery() as n:
            for i in range(10):
                c = node.NodeClient("bench", [sup.public_addr], name=f"b{i}")
                await c.connect(n)
                t = time.perf_counter()
                await c.req_worker()
                warm.append(time.perf_counter() - t)
                if i == 0:
                    assert c.worker is not None
                    for _ in range(rounds):
                        t = time.perf_counter()
                        await c.work("one two three")
                        work.append(time.perf_counter() - t)
                        t = time.perf_counter()
                        await c.worker.call_add1("Healthcheck")
                        mutation.append(time.perf_counter() - t)
                await c.close()
                # the freed worker is back in the pool before the next client asks
                with trio.fail_after(10):
                    while len(sup.workers("idle")) < 4:  # noqa: ASYNC110
                        await trio.sleep(0.01)
            n.cancel_scope.cancel()
    out = {
        "pool_ready_4_s": pool_ready,
        "warm_worker": _ms(warm),
        "work_round_trip": _ms(work),
        "rpc_mutation_round_trip": _ms(mutation),
    }
    out["work_vs_mutation"] = (
        out["work_round_trip"]["p50_ms"] / out["rpc_mutation_round_trip"]["p50_ms"]
    )
    return out


def run(rounds: int = 200) -> dict[str, Any]:
    """Measure and print the table; returns the figures."""
    res: dict[str, Any] = trio.run(_measure, rounds)
    print("node (4 worker processes, loopback)")
    print(f"  start -> PoolReady (4 workers)  {res['pool_ready_4_s'] * 1000:9.1f} ms")
    for key, label, target in (
        ("warm_worker", "warm worker to a client", "target <= 50 ms"),
        ("work_round_trip", "work round trip", ""),
        ("rpc_mutation_round_trip", "aRPC mutation round trip", ""),
    ):
        r = res[key]
        print(f"  {label:31} p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  {target}")
    print(f"  work / mutation (p50)           {res['work_vs_mutation']:9.2f}x  target <= 3x")
    return res


if __name__ == "__main__":
    run()
