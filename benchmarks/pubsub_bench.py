"""Pubsub settle time and update latency: N peers on loopback TCP, one process or N.

    python -m benchmarks.pubsub_bench                   # N = 5, 10, 20; 3 machines per peer
    python -m benchmarks.pubsub_bench --sizes 5,10 --json out.json
    python -m benchmarks.pubsub_bench --procs           # also: each peer in its own process

Settle time: from the first peer starting until every peer holds a mirror of
every other peer's machines at its latest clock (also given from the moment the
last peer joined). Update latency: one machine of the first peer changes; the
time until every other peer's mirror shows it (median and worst of several).
Peers join one after another; each dials the first peer and up to two random
earlier ones. Delays scaled with ``--multiplayer`` (default 0.2, as the tests),
gossip thinned with ``--gossip-every`` (default 5: the topic gossips about once a
second). ``cpu s`` is the process's CPU time until settled: the machine may be
shared, and wall time then says more about the neighbours than about pubsub.

With ``--procs`` every peer runs in its own process (``--peer`` mode of this
module): all import and wait, the first peer starts, then all others start at
once, each dialing the first; settle is from that moment until the last peer
reports every mirror at its latest clock (no latency samples in this mode).
Target (issue 19): 20 peers settle in <= 10 s (one process).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
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


def _exc_text(exc: BaseException) -> str:
    """The first leaf of an exception (group) as ``Type: message``."""
    while getattr(exc, "exceptions", None):
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return f"{type(exc).__name__}: {exc}"


def _delivered(topics: list[Any]) -> int:
    """Messages the topics received from other peers (decoded, or malformed and counted)."""
    return sum(
        sum(v for k, v in t.received.items() if k != "dropped") + sum(t.malformed.values())
        for t in topics
    )


def _config(multiplayer: float, gossip_every: int) -> Any:
    import os

    from asyncmachine_trio import pubsub

    return pubsub.TopicConfig(
        multiplayer=multiplayer,
        connections_to_ready=1,
        gossip_every=gossip_every,
        muxer=os.environ.get("AM_BENCH_MUXER", "yamux"),
        **_degree_env(),
    )


def _degree_env() -> dict[str, int]:
    """``AM_BENCH_DEGREE=D,low,high`` overrides the mesh degree (for comparisons)."""
    import os

    raw = os.environ.get("AM_BENCH_DEGREE", "")
    if not raw:
        return {}
    d, lo, hi = (int(x) for x in raw.split(","))
    return {"mesh_degree": d, "mesh_degree_low": lo, "mesh_degree_high": hi}


async def _one(
    n: int, per_peer: int, multiplayer: float, updates: int, gossip_every: int = 5
) -> dict[str, Any]:
    from asyncmachine_trio import pubsub

    cfg = _config(multiplayer, gossip_every)
    machs = [am.Machine(Job, id=f"p{i}-m{j}") for i in range(n) for j in range(per_peer)]
    rnd = random.Random(n)
    t0 = time.perf_counter()
    c0 = time.process_time()
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
        cpu = time.process_time() - c0
        delivered = _delivered(topics)
        synced = sum(_synced(t, machs) for t in topics)
        if synced < n:
            mirrors = sum(len(t.list_machines()) for t in topics)
            return {
                "peers": n,
                "error": f"not settled in {SETTLE_TIMEOUT:.0f} s: {synced}/{n} peers synced,"
                f" {mirrors}/{n * (n - 1) * per_peer} mirrors, cpu {cpu:.1f} s,"
                f" {delivered} messages delivered",
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
        by_type: dict[str, int] = {}
        for t in topics:
            for k, v in t.sent.items():
                by_type[k] = by_type.get(k, 0) + v
        dropped = sum(t.sent["dropped"] + t.received["dropped"] for t in topics)
    return {
        "peers": n,
        "machines": n * per_peer,
        "join_s": round(joined - t0, 3),
        "settle_s": round(settled - t0, 3),
        "settle_after_join_s": round(settled - joined, 3),
        "settle_cpu_s": round(cpu, 2),
        "delivered": delivered,
        "cpu_ms_per_delivered": round(cpu * 1000 / max(1, delivered), 2),
        "stray_retries": sum(
            sum(getattr(t._host, "stray_retries", {}).values()) for t in topics if t._host
        ),
        "update_p50_ms": round(statistics.median(lat) * 1000, 1),
        "update_max_ms": round(max(lat) * 1000, 1),
        "messages_sent": sent,
        "sent_by_type": dict(sorted(by_type.items())),
        "dropped": dropped,
        # messages (or streams) from our own peers that did not decode: should be 0
        "malformed": sum(sum(t.malformed.values()) for t in topics),
    }


def _want(n: int, per_peer: int, me: int) -> dict[str, list[int]]:
    """Every other peer's machines at their clock (each peer adds ``Idle`` once)."""
    ref = am.Machine(Job)
    ref.add1(Job.Idle)
    t = list(ref.time())
    return {f"p{k}-m{j}": t for k in range(n) if k != me for j in range(per_peer)}


async def _peer(i: int, n: int, per_peer: int, multiplayer: float, gossip_every: int) -> None:
    """One peer of ``--procs`` (a child process): talks to the parent over stdin/stdout."""
    from asyncmachine_trio import pubsub
    from asyncmachine_trio.pubsub import _host  # noqa: F401 (import libp2p before GO)

    mine = [am.Machine(Job, id=f"p{i}-m{j}") for j in range(per_peer)]
    for m in mine:
        m.add1(Job.Idle)
    want = _want(n, per_peer, i)
    stdin = trio.wrap_file(sys.stdin)
    print("READY", flush=True)
    boot = (await stdin.readline()).split()[1:]  # GO [bootstrap addr]
    c0 = time.process_time()
    cfg = _config(multiplayer, gossip_every)
    async with pubsub.open_topic("bench", expose=mine, bootstrap=boot, config=cfg) as t:
        print("ADDR", t.addrs[0], flush=True)
        with trio.move_on_after(SETTLE_TIMEOUT):
            await t.wait_until(
                lambda t: {m.remote_id: list(m.time()) for m in t.list_machines()} == want
            )
        ok = {m.remote_id: list(m.time()) for m in t.list_machines()} == want
        print("SYNCED" if ok else "UNSYNCED", time.time(), time.process_time() - c0, flush=True)
        await stdin.readline()  # STOP


def _expect(proc: subprocess.Popen[str], *keys: str) -> list[str]:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"peer process {proc.pid} ended (exit code {proc.wait()})")
        if line.split()[:1] and line.split()[0] in keys:
            return line.split()


def _procs(n: int, per_peer: int, multiplayer: float, gossip_every: int) -> dict[str, Any]:
    """N peers in N processes: settle time from the moment they all start."""
    root = Path(__file__).resolve().parent.parent
    procs = []
    try:
        for i in range(n):
            cmd = [sys.executable, "-m", "benchmarks.pubsub_bench", "--peer", str(i)]
            cmd += ["--n", str(n), "--per-peer", str(per_peer)]
            cmd += ["--multiplayer", str(multiplayer), "--gossip-every", str(gossip_every)]
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=root,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )
        for pr in procs:
            _expect(pr, "READY")

        def send(pr: subprocess.Popen[str], line: str) -> None:
            assert pr.stdin is not None
            pr.stdin.write(line + "\n")
            pr.stdin.flush()

        send(procs[0], "GO")
        addr = _expect(procs[0], "ADDR")[1]
        t0 = time.time()
        for pr in procs[1:]:
            send(pr, f"GO {addr}")
        done = [_expect(pr, "SYNCED", "UNSYNCED") for pr in procs]
        for pr in procs:
            send(pr, "STOP")
        synced = sum(d[0] == "SYNCED" for d in done)
        if synced < n:
            return {
                "peers": n,
                "error": f"not settled in {SETTLE_TIMEOUT:.0f} s: {synced}/{n} peers synced",
            }
        return {
            "peers": n,
            "machines": n * per_peer,
            "settle_s": round(max(float(d[1]) for d in done) - t0, 3),
            "settle_cpu_s": round(sum(float(d[2]) for d in done), 2),
        }
    except Exception as exc:
        return {"peers": n, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        for pr in procs:
            try:
                pr.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pr.kill()
                pr.wait()


def measure(
    sizes: tuple[int, ...] = (5, 10, 20),
    per_peer: int = 3,
    multiplayer: float = 0.2,
    updates: int = 7,
    gossip_every: int = 5,
    procs: bool = False,
) -> dict[str, Any]:
    """The section: one row per N (and per N in separate processes with ``procs``)."""
    rows = []
    for n in sizes:
        try:
            rows.append(trio.run(_one, n, per_peer, multiplayer, updates, gossip_every))
        except Exception as exc:
            rows.append({"peers": n, "error": _exc_text(exc)})
    section: dict[str, Any] = {
        "multiplayer": multiplayer,
        "gossip_every": gossip_every,
        "per_peer": per_peer,
        "rows": rows,
    }
    if procs:
        section["procs_rows"] = [_procs(n, per_peer, multiplayer, gossip_every) for n in sizes]
    r20 = [r for r in rows if r.get("peers") == 20 and "settle_s" in r]
    if r20:
        section["target_settle_20_s"] = TARGET_SETTLE_20
        section["met"] = r20[0]["settle_s"] <= TARGET_SETTLE_20
    return section


def _add_rows(
    lines: list[str], rows: list[dict[str, Any]], fmt: Callable[[dict[str, Any]], str]
) -> None:
    for r in rows:
        lines.append(f"  {r['peers']:>5} FAILED {r['error']}" if r.get("error") else fmt(r))


def render(section: dict[str, Any]) -> str:
    """The section as a text table."""
    if section.get("error"):
        return f"pubsub: FAILED {section['error']}"
    lines = [
        f"pubsub settle and update latency (one process, loopback TCP,"
        f" {section['per_peer']} machines per peer, multiplayer {section['multiplayer']},"
        f" gossip_every {section.get('gossip_every', 1)})",
        f"  {'peers':>5} {'machs':>5} {'join s':>7} {'settle s':>9} {'after join':>10}"
        f" {'cpu s':>6} {'upd p50 ms':>10} {'upd max ms':>10} {'msgs':>6} {'dropped':>7}"
        f" {'bad':>4}",
    ]
    _add_rows(
        lines,
        section["rows"],
        lambda r: (
            f"  {r['peers']:>5} {r['machines']:>5} {r['join_s']:>7.2f} {r['settle_s']:>9.2f}"
            f" {r['settle_after_join_s']:>10.2f} {r.get('settle_cpu_s', 0):>6.1f}"
            f" {r['update_p50_ms']:>10.1f}"
            f" {r['update_max_ms']:>10.1f} {r['messages_sent']:>6} {r['dropped']:>7}"
            f" {r.get('malformed', 0):>4}"
        ),
    )
    if "met" in section:
        verdict = "met" if section["met"] else "NOT met"
        lines.append(f"  20 peers settle <= {section['target_settle_20_s']} s: {verdict}")
    if section.get("procs_rows"):
        lines.append("  one process per peer (all start at once, dialing the first):")
        lines.append(f"  {'peers':>5} {'machs':>5} {'settle s':>9} {'cpu s (all)':>11}")
        _add_rows(
            lines,
            section["procs_rows"],
            lambda r: (
                f"  {r['peers']:>5} {r['machines']:>5} {r['settle_s']:>9.2f}"
                f" {r['settle_cpu_s']:>11.1f}"
            ),
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="5,10,20", help="peer counts, comma-separated")
    ap.add_argument("--per-peer", type=int, default=3, help="machines each peer exposes")
    ap.add_argument("--multiplayer", type=float, default=0.2)
    ap.add_argument("--updates", type=int, default=7, help="latency samples per size")
    ap.add_argument("--gossip-every", type=int, default=5, help="TopicConfig.gossip_every")
    ap.add_argument("--procs", action="store_true", help="also one process per peer")
    ap.add_argument("--peer", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--json", default="", help="write the section here")
    ap.add_argument("--quiet", action="store_true", help="no table")
    a = ap.parse_args(argv)
    if a.peer >= 0:
        trio.run(_peer, a.peer, a.n, a.per_peer, a.multiplayer, a.gossip_every)
        return 0
    try:
        import libp2p  # noqa: F401
    except ImportError as exc:
        section: dict[str, Any] = {"error": f"py-libp2p is not installed ({exc})"}
    else:
        sizes = tuple(int(s) for s in a.sizes.split(",") if s)
        section = measure(
            sizes, a.per_peer, a.multiplayer, a.updates, a.gossip_every, procs=a.procs
        )
    if a.json:
        Path(a.json).write_text(json.dumps(section, indent=1) + "\n")
    if not a.quiet:
        print(render(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
