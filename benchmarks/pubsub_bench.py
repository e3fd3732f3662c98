"""Pubsub settle time and update latency: N peers in one process on loopback TCP.

    python -m benchmarks.pubsub_bench                   # N = 5, 10, 20; 3 machines per peer
    python -m benchmarks.pubsub_bench --sizes 5,10 --json out.json

Settle time: from the first peer starting until every peer holds a mirror of
every other peer's machines at its latest clock (also given from the moment the
last peer joined). Update latency: one machine of the first peer changes; the
time until every other peer's mirror shows it (median and worst of several).
Peers join one after another; each dials the first peer and up to two random
earlier ones. Delays scaled with ``--multiplayer`` (default 0.2, as the tests).
Target (issue 19): 20 peers settle in <= 10 s.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

import asyncmachine_trio as am

TARGET_SETTLE_20 = 10.0
SETTLE_TIMEOUT = 120.0


class Job(am.States):
    Idle = am.State(remove=("Working",))
    Working = am.State(remove=("Idle",))


def _synced(t: Any, machs: list[am.Machine]) -> bool:
    mine = {id(m) for m in t.exposed}
    want = {m.id: list(m.time()) for m in machs if id(m) not in mine}
    have = {m.remote_id: list(m.time()) for m in t.list_machines()}
    return have == want


async def _one(n: int, per_peer: int, multiplayer: float, updates: int) -> dict[str, Any]:
    from asyncmachine_trio import pubsub

    cfg = pubsub.TopicConfig(multiplayer=multiplayer, connections_to_ready=1)
    machs = [am.Machine(Job, id=f"p{i}-m{j}") for i in range(n) for j in range(per_peer)]
    rnd = random.Random(n)
    t0 = time.perf_counter()
    async with AsyncExitStack() as stack:
        topics: list[Any] = []
        for i in range(n):
            boot: list[str] = []
            if topics:
                extra = rnd.sample(topics[1:], min(2, len(topics) - 1))
                boot = [t.addrs[0] for t in [topics[0], *extra]]
            t = await stack.enter_async_context(
                pubsub.open_topic(
                    "bench",
                    expose=machs[i * per_peer : (i + 1) * per_peer],
                    bootstrap=boot,
                    config=cfg,
                )
            )
            topics.append(t)
        joined = time.perf_counter()
        with trio.move_on_after(SETTLE_TIMEOUT):
            for t in topics:
                await t.wait_until(lambda t: _synced(t, machs))
        settled = time.perf_counter()
        synced = sum(_synced(t, machs) for t in topics)
        if synced < n:
            mirrors = sum(len(t.list_machines()) for t in topics)
            return {
                "peers": n,
                "error": f"not settled in {SETTLE_TIMEOUT:.0f} s: {synced}/{n} peers synced,"
                f" {mirrors}/{n * (n - 1) * per_peer} mirrors",
            }
        lat: list[float] = []
        src = machs[0]
        for k in range(updates):
            await trio.sleep(rnd.uniform(0.05, 0.3))
            s = Job.Working if k % 2 == 0 else Job.Idle
            start = time.perf_counter()
            src.add1(s)
            want = list(src.time())
            with trio.fail_after(30):
                for t in topics[1:]:
                    (m,) = t.list_machines(id=src.id)
                    await t.wait_until(lambda _t, m=m, w=want: list(m.time()) == w)
            lat.append(time.perf_counter() - start)
        sent = sum(sum(v for k, v in t.sent.items() if k != "dropped") for t in topics)
        dropped = sum(t.sent["dropped"] + t.received["dropped"] for t in topics)
    return {
        "peers": n,
        "machines": n * per_peer,
        "join_s": round(joined - t0, 3),
        "settle_s": round(settled - t0, 3),
        "settle_after_join_s": round(settled - joined, 3),
        "update_p50_ms": round(statistics.median(lat) * 1000, 1),
        "update_max_ms": round(max(lat) * 1000, 1),
        "messages_sent": sent,
        "dropped": dropped,
    }


def measure(
    sizes: tuple[int, ...] = (5, 10, 20),
    per_peer: int = 3,
    multiplayer: float = 0.2,
    updates: int = 7,
) -> dict[str, Any]:
    """The section: one row per N."""
    rows = []
    for n in sizes:
        try:
            rows.append(trio.run(_one, n, per_peer, multiplayer, updates))
        except Exception as exc:
            rows.append({"peers": n, "error": f"{type(exc).__name__}: {exc}"})
    section: dict[str, Any] = {"multiplayer": multiplayer, "per_peer": per_peer, "rows": rows}
    r20 = [r for r in rows if r.get("peers") == 20 and "settle_s" in r]
    if r20:
        section["target_settle_20_s"] = TARGET_SETTLE_20
        section["met"] = r20[0]["settle_s"] <= TARGET_SETTLE_20
    return section


def render(section: dict[str, Any]) -> str:
    """The section as a text table."""
    if section.get("error"):
        return f"pubsub: FAILED {section['error']}"
    lines = [
        f"pubsub settle and update latency (one process, loopback TCP,"
        f" {section['per_peer']} machines per peer, multiplayer {section['multiplayer']})",
        f"  {'peers':>5} {'machs':>5} {'join s':>7} {'settle s':>9} {'after join':>10}"
        f" {'upd p50 ms':>10} {'upd max ms':>10} {'msgs':>6} {'dropped':>7}",
    ]
    for r in section["rows"]:
        if r.get("error"):
            lines.append(f"  {r['peers']:>5} FAILED {r['error']}")
            continue
        lines.append(
            f"  {r['peers']:>5} {r['machines']:>5} {r['join_s']:>7.2f} {r['settle_s']:>9.2f}"
            f" {r['settle_after_join_s']:>10.2f} {r['update_p50_ms']:>10.1f}"
            f" {r['update_max_ms']:>10.1f} {r['messages_sent']:>6} {r['dropped']:>7}"
        )
    if "met" in section:
        verdict = "met" if section["met"] else "NOT met"
        lines.append(f"  20 peers settle <= {section['target_settle_20_s']} s: {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="5,10,20", help="peer counts, comma-separated")
    ap.add_argument("--per-peer", type=int, default=3, help="machines each peer exposes")
    ap.add_argument("--multiplayer", type=float, default=0.2)
    ap.add_argument("--updates", type=int, default=7, help="latency samples per size")
    ap.add_argument("--json", default="", help="write the section here")
    ap.add_argument("--quiet", action="store_true", help="no table")
    a = ap.parse_args(argv)
    try:
        import libp2p  # noqa: F401
    except ImportError as exc:
        section: dict[str, Any] = {"error": f"py-libp2p is not installed ({exc})"}
    else:
        sizes = tuple(int(s) for s in a.sizes.split(",") if s)
        section = measure(sizes, a.per_peer, a.multiplayer, a.updates)
    if a.json:
        Path(a.json).write_text(json.dumps(section, indent=1) + "\n")
    if not a.quiet:
        print(render(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
