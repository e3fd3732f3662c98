"""aRPC under attack: a well-behaved client's round trips while the server is attacked.

    python -m benchmarks.rpc_attack_bench            # every attack, 1,000 round trips each
    python -m benchmarks.rpc_attack_bench -n 300 --json out.json

Three processes: a ``rpc.Mux`` on ``ws://127.0.0.1`` (``--serve``), one attacker
(``--attack NAME``) and this one, whose client makes ``n`` round trips
(``await nm.call_toggle1("A")``, one remote mutation each) per attack, timing
each with ``time.perf_counter``. The first row is idle (no attacker); each
attack row reports the attacker's load (what it sent, as it counts it), the
result (the server process alive, the client's calls all answered, what the
attacker got back) and the client's p50 / p99 / max. Target (issue 13): p99
under each attack <= 10x the idle p99. On 2 shared cores the three processes
compete for CPU: that competition is part of what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

TARGET_P99_RATIO = 10.0
ROOT = Path(__file__).resolve().parent.parent


def _schema() -> Any:
    import asyncmachine_trio as am
    from asyncmachine_trio import rpc

    class Src(rpc.StateSourceStates):
        A = am.State()
        B = am.State()

    return Src


# ----- the server process


def serve() -> None:
    import trio

    import asyncmachine_trio as am
    from asyncmachine_trio import rpc

    async def main() -> None:
        src = am.Machine(_schema(), id="attacked")
        async with rpc.open_mux(src, "ws://127.0.0.1:0", push_interval=None) as mux:
            print(f"ADDR {mux.addr}", flush=True)
            await trio.sleep_forever()

    trio.run(main)


# ----- attacks (each in its own process, for ``seconds``; returns its counters)


def _frames() -> list[bytes]:
    import msgpack

    inner: Any = None
    for _ in range(300):
        inner = msgpack.ExtType(1, msgpack.packb(["am.AException", inner]))
    return [
        msgpack.packb([1, "Hello", None, inner]),
        b"\x94\x03\xa5Hello\xc0" + b"\x91" * 1000 + b"\xc0",
        b"\x94" + b"\x91" * 1000 + b"\xc0\xa5Hello\xc0\xc0",
        b"\x94\x06\xa5Hello\xc0\xdd\xff\xff\xff\xff",
        msgpack.packb([9, "Hello", None, None]) + b"\xc0",
    ]


async def _answered(t: Any, data: bytes) -> str:
    from asyncmachine_trio.rpc import wire

    await t.send(data)
    while True:
        f = wire.decode_frame(await t.receive())
        if f.method is None:
            return "ok" if f.error is None else f.error.kind


async def crash_frames(addr: str, stats: dict[str, Any]) -> None:
    """Frames that crashed earlier versions, one after another on one connection."""

    from asyncmachine_trio import rpc

    frames = _frames()
    while True:
        try:
            t = await rpc.connect(addr)
            while True:
                for data in frames:
                    kind = await _answered(t, data)
                    stats["frames"] = stats.get("frames", 0) + 1
                    stats[kind] = stats.get(kind, 0) + 1
        except rpc.RpcConnectionError:
            # never handshaken: closed at the handshake deadline; again
            stats["closed by server"] = stats.get("closed by server", 0) + 1


async def garbage(addr: str, stats: dict[str, Any]) -> None:
    """Random bytes (64 B - 4 KiB frames) as fast as they are answered."""

    from asyncmachine_trio import rpc

    rnd = random.Random(1)
    while True:
        try:
            t = await rpc.connect(addr)
            while True:
                data = rnd.randbytes(rnd.randint(64, 4096))
                kind = await _answered(t, data)
                stats["frames"] = stats.get("frames", 0) + 1
                stats[kind] = stats.get(kind, 0) + 1
        except rpc.RpcConnectionError:
            stats["closed by server"] = stats.get("closed by server", 0) + 1


async def _port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1].split("/")[0])


async def idle_conns(addr: str, stats: dict[str, Any]) -> None:
    """100 TCP connections that say nothing, re-opened whenever the server closes one."""
    import trio

    port = await _port(addr)

    async def hold() -> None:
        while True:
            try:
                s = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                stats["refused"] = stats.get("refused", 0) + 1
                await trio.sleep(0.05)
                continue
            stats["connections"] = stats.get("connections", 0) + 1
            try:
                while await s.receive_some(1024):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            stats["closed by server"] = stats.get("closed by server", 0) + 1
            await s.aclose()

    async with trio.open_nursery() as n:
        for _ in range(100):
            n.start_soon(hold)


async def _ws_upgrade(port: int) -> Any:
    import trio

    s = await trio.open_tcp_stream("127.0.0.1", port)
    await s.send_all(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = await s.receive_some(4096)
        if not chunk:
            raise OSError("closed during the upgrade")
        buf += chunk
    return s


async def partial_large(addr: str, stats: dict[str, Any]) -> None:
    """40 websockets, each starting a 16 MiB message and pushing it as fast as it can."""
    import trio

    port = await _port(addr)
    chunk = b"\x00" * 65536

    async def push() -> None:
        while True:
            try:
                s = await _ws_upgrade(port)
                await s.send_all(b"\x82\xff" + (16 << 20).to_bytes(8, "big") + b"\x00" * 4)
                stats["connections"] = stats.get("connections", 0) + 1
                while True:
                    await s.send_all(chunk)
                    stats["MiB sent"] = stats.get("MiB sent", 0) + 1 / 16
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                stats["closed by server"] = stats.get("closed by server", 0) + 1
                await trio.sleep(0.01)

    async with trio.open_nursery() as n:
        for _ in range(40):
            n.start_soon(push)


async def amplifying(addr: str, stats: dict[str, Any]) -> None:
    """Authenticated: one state 60,000 times, 5,000 args, a frame above max_request."""
    import msgpack
    import trio

    from asyncmachine_trio import rpc
    from asyncmachine_trio.rpc import wire

    async with trio.open_nursery() as n:
        t = await rpc.connect(addr, nursery=n)
        await _answered(t, wire.encode_frame(wire.Frame(1, "Hello", None, wire.CliHello("rc-x"))))
        await _answered(t, wire.encode_frame(wire.Frame(2, "Handshake", None, wire.Empty())))
        frames = [
            msgpack.packb([3, "Add", None, [[1] * 60000, None, 0, ""]]),
            msgpack.packb([4, "Add", None, [[1], {f"k{i}": i for i in range(5000)}, 0, ""]]),
            msgpack.packb([5, "Add", None, [[1], {"x": "y" * 70000}, 0, ""]]),
        ]
        while True:
            for data in frames:
                kind = await _answered(t, data)
                stats["frames"] = stats.get("frames", 0) + 1
                stats[kind] = stats.get(kind, 0) + 1


async def churn(addr: str, stats: dict[str, Any]) -> None:
    """Connect, upgrade, Hello, disconnect: as fast as possible, 8 at a time."""
    import trio

    from asyncmachine_trio import rpc
    from asyncmachine_trio.rpc import wire

    hello = wire.encode_frame(wire.Frame(1, "Hello", None, wire.CliHello("rc-churn")))

    async def one() -> None:
        while True:
            try:
                async with trio.open_nursery() as n:
                    t = await rpc.connect(addr, nursery=n)
                    await _answered(t, hello)
                    await t.aclose()
                    n.cancel_scope.cancel()
                stats["handshakes"] = stats.get("handshakes", 0) + 1
            except rpc.RpcError:
                stats["failed"] = stats.get("failed", 0) + 1
                await trio.sleep(0.01)

    async with trio.open_nursery() as n:
        for _ in range(8):
            n.start_soon(one)


ATTACKS: dict[str, tuple[Callable[[str, dict[str, Any]], Awaitable[None]], str]] = {
    "crash-frames": (crash_frames, "5 crash frames in a loop, 1 connection"),
    "garbage": (garbage, "random 64 B-4 KiB frames, 1 connection"),
    "idle-conns": (idle_conns, "100 silent TCP connections, re-opened"),
    "partial-large": (partial_large, "40 websockets pushing partial 16 MiB messages"),
    "amplifying": (amplifying, "60,000-index / 5,000-args / 70 KB mutations, handshaken"),
    "churn": (churn, "connect + upgrade + Hello + close, 8 in parallel"),
}


def attack(name: str, addr: str, seconds: float) -> None:
    import msgpack  # noqa: F401 - imported before the clock starts
    import trio

    from asyncmachine_trio import rpc  # noqa: F401

    stats: dict[str, Any] = {}
    print("READY", flush=True)

    async def main() -> None:
        with trio.move_on_after(seconds):
            try:
                await ATTACKS[name][0](addr, stats)
            except Exception as err:  # an attacker that gave up: say why
                stats["attacker error"] = f"{type(err).__name__}: {err}"[:200]

    trio.run(main)
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in stats.items()}))


# ----- the measuring side


def _spawn(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AM_")}
    cmd = [sys.executable, "-m", "benchmarks.rpc_attack_bench", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=stdout, text=True)


def measure(n: int = 1000, only: list[str] | None = None) -> dict[str, Any]:
    import trio

    from asyncmachine_trio import rpc

    server = _spawn("--serve")
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        if not line.startswith("ADDR "):
            raise RuntimeError(f"the server did not start: {line!r}")
        addr = line[5:]
        rows: list[dict[str, Any]] = []

        async def round_trips(client: Any, k: int) -> list[float]:
            nm = client.netmach
            out = []
            for _ in range(k):
                t0 = time.perf_counter()
                await nm.call_toggle1("A")
                out.append((time.perf_counter() - t0) * 1e3)
            return out

        async def main() -> None:
            async with rpc.open_client(addr, _schema(), call_timeout=10) as client:
                await round_trips(client, 100)  # warm-up
                for name in ["idle", *(only or ATTACKS)]:
                    proc = None
                    seconds = 2.0 + n * 0.004
                    if name != "idle":
                        proc = _spawn("--attack", name, "--addr", addr, "--seconds", str(seconds))
                        assert proc.stdout is not None
                        await trio.to_thread.run_sync(proc.stdout.readline)  # READY
                        await trio.sleep(0.4)  # the attack ramps up
                    lat: list[float] = []
                    errors = 0
                    start = time.perf_counter()
                    while len(lat) < n and time.perf_counter() - start < seconds - 0.6:
                        try:
                            lat += await round_trips(client, 10)
                        except rpc.RpcError:
                            errors += 1
                    load: dict[str, Any] = {}
                    if proc is not None:
                        out = await trio.to_thread.run_sync(proc.communicate)
                        load = json.loads(out[0].strip().splitlines()[-1] or "{}")
                    lat.sort()
                    rows.append(
                        {
                            "attack": name,
                            "load": ATTACKS[name][1] if name in ATTACKS else "none",
                            "attacker": load,
                            "server_alive": server.poll() is None,
                            "round_trips": len(lat),
                            "client_errors": errors,
                            "p50_ms": statistics.median(lat),
                            "p99_ms": lat[int(len(lat) * 0.99) - 1],
                            "max_ms": lat[-1],
                        }
                    )

        trio.run(main)
    finally:
        server.kill()
        server.wait()
    idle = rows[0]["p99_ms"]
    for r in rows:
        r["p99_vs_idle"] = r["p99_ms"] / idle
        r["met"] = r["server_alive"] and r["p99_vs_idle"] <= TARGET_P99_RATIO
    return {
        "scenario": "a client's call_toggle1 round trips (ws://, Mux in its own process)"
        " while one attacker process attacks the same Mux",
        "n": n,
        "target": f"p99 under attack <= {TARGET_P99_RATIO:g}x idle p99; server alive",
        "rows": rows,
    }


def render(section: dict[str, Any]) -> str:
    if section.get("error"):
        return f"aRPC under attack: FAILED: {section['error']}"
    lines = [
        f"aRPC under attack ({section['scenario']}; target: {section['target']})",
        "",
        "| attack | load | result | p50 ms | p99 ms | max ms | p99 / idle |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in section["rows"]:
        got = ", ".join(f"{k} {v}" for k, v in r["attacker"].items())
        result = (
            f"server {'up' if r['server_alive'] else 'DOWN'}, {r['round_trips']} calls"
            f" answered, {r['client_errors']} errors" + (f"; attacker: {got}" if got else "")
        )
        mark = "" if r["met"] else " (missed)"
        lines.append(
            f"| {r['attack']} | {r['load']} | {result} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}"
            f" | {r['max_ms']:.1f} | {r['p99_vs_idle']:.1f}{mark} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1000, help="round trips per attack")
    ap.add_argument("--only", default="", help="comma list of: " + ",".join(ATTACKS))
    ap.add_argument("--json", default="", help="write the section here")
    ap.add_argument("--quiet", action="store_true", help="no table on stdout")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--attack", default="", help=argparse.SUPPRESS)
    ap.add_argument("--addr", default="", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        serve()
        return 0
    if a.attack:
        attack(a.attack, a.addr, a.seconds)
        return 0
    only = [s for s in a.only.split(",") if s] or None
    unknown = [s for s in only or [] if s not in ATTACKS]
    if unknown:
        ap.error(f"unknown attacks {unknown}; choose from {', '.join(ATTACKS)}")
    try:
        section = measure(a.n, only)
    except Exception as err:
        section = {"error": f"{type(err).__name__}: {err}"}
    if a.json:
        Path(a.json).write_text(json.dumps(section, indent=1) + "\n")
    if not a.quiet:
        print(render(section))
    return 1 if section.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
