"""aRPC: the reference's benchmark_grpc scenario over a loopback websocket (issue 7).

    python -m benchmarks.rpc_bench                    # 2,000 iterations, median of 3
    python -m benchmarks.rpc_bench -n 500 --repeats 5 --json out.json
    python -m benchmarks.rpc_bench --profile          # cProfile of one repeat, top functions

The scenario (``examples/benchmark_grpc`` of asyncmachine-go):
a worker machine (``Event`` Multi, ``Value1..3`` mutually exclusive, ``CallOp``
Multi) is served by an ``rpc.Server``; per iteration the client

1. waits for the next ``Event`` on its network machine (``when_time1(Event, tick + 2)``),
2. reads the worker's value locally (``nm.switch(Values)``),
3. makes ONE remote mutation, ``await nm.call_add1("CallOp", {"op": n})``.

The worker's handlers are the reference's: ``call_op_state`` removes ``CallOp``
and calls the plain worker object, which checks the op against its value
(errors counted), picks a new random value and emits the event (``add1(Event)``);
``event_state`` removes ``Event`` and adds the matching ``Value<n>``. All of it
happens inside the remote mutation, so the new value and the event ride back in
the mutation's response diff: one call per iteration, no push.

Reported per iteration, after a warm-up: µs, calls (client requests + server
requests, i.e. pushes and payloads) and bytes in both directions, as the
transports count them (frames) and on the wire (plus the websocket header of
every message, RFC 6455: 2 bytes, +2 / +8 for longer messages, +4 mask bytes
client → server; what the reference's TCP ``TrafficMeter`` counts). In the same
run, a bare trio-websocket echo (the client sends a 100-byte binary message,
the server echoes it) gives the µs of one round trip. Both sides of both
measurements run in this one trio loop, and the garbage collector is off while
timing (as in ``harness.py``).

Targets (issue 7): 1 call and <= 115 bytes per iteration (the reference's aRPC
figure: 1,149,424 bytes / 10,000 iterations), latency <= 2x the echo round trip.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# the reference's recorded aRPC figures (v0.7.0, Go, 10,000 iterations)
REFERENCE = {
    "us_per_iter": 248.913,
    "calls_per_iter": 10_003 / 10_000,
    "bytes_per_iter": 1_149_424 / 10_000,
    "errors": 0,
}
TARGET_CALLS = 1.0
TARGET_BYTES = 115.0
TARGET_ECHO_RATIO = 2.0

ECHO_SIZE = 100
VALUES = ("Value1", "Value2", "Value3")


# ----- the worker (the reference's worker.go + server_arpc.go)


class Worker:
    """The plain worker: a value, an op check, an event listener."""

    def __init__(self, seed: int = 1) -> None:
        self.value = 0
        self.errors = 0
        self.successes = 0
        self.rng = random.Random(seed)
        self.on_event: Callable[[], object] = lambda: None

    def start(self) -> None:
        self.call_op(self.rng.randint(1, 3))

    def call_op(self, op: int) -> None:
        if self.value:
            if op != self.value:
                self.errors += 1
            self.successes += 1
        self.value = self.rng.randint(1, 3)
        self.on_event()


def worker_schema() -> Any:
    import asyncmachine_trio as am
    from asyncmachine_trio import rpc

    class WorkerStates(rpc.StateSourceStates):
        Event = am.State(multi=True)
        Value1 = am.State(remove=("Value2", "Value3"))
        Value2 = am.State(remove=("Value1", "Value3"))
        Value3 = am.State(remove=("Value1", "Value2"))
        CallOp = am.State(multi=True)

    return WorkerStates


class WorkerHandlers:
    """The worker machine's handlers (the reference's ``WorkerArpcServer``)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def call_op_enter(self, e: Any) -> bool:
        return isinstance(e.args.get("op"), int)

    def call_op_state(self, e: Any) -> None:
        e.machine.remove1("CallOp")
        self.worker.call_op(e.args["op"])

    def event_state(self, e: Any) -> None:
        e.machine.remove1("Event")
        e.machine.add1(VALUES[self.worker.value - 1])


# ----- wire bytes


def ws_header(size: int, masked: bool) -> int:
    """Bytes of the websocket frame header of a ``size``-byte message (RFC 6455 5.2)."""
    n = 2 if size < 126 else 4 if size < 65536 else 10
    return n + 4 if masked else n


class WireMeter:
    """A client transport that also counts websocket headers (client frames are masked)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.max_frame = inner.max_frame
        self.wire_sent = 0
        self.wire_received = 0
        self.messages = 0

    @property
    def bytes_sent(self) -> int:
        return int(self.inner.bytes_sent)

    @bytes_sent.setter
    def bytes_sent(self, value: int) -> None:
        self.inner.bytes_sent = value

    @property
    def bytes_received(self) -> int:
        return int(self.inner.bytes_received)

    @bytes_received.setter
    def bytes_received(self, value: int) -> None:
        self.inner.bytes_received = value

    async def send(self, data: bytes) -> None:
        await self.inner.send(data)
        self.wire_sent += len(data) + ws_header(len(data), masked=True)
        self.messages += 1

    async def receive(self) -> bytes:
        data: bytes = await self.inner.receive()
        self.wire_received += len(data) + ws_header(len(data), masked=False)
        self.messages += 1
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


# ----- the two measurements


class RpcCase:
    """The aRPC worker (source + server) and the client, on one trio nursery."""

    async def setup(self, nursery: Any) -> None:
        import asyncmachine_trio as am
        from asyncmachine_trio import rpc

        schema = worker_schema()
        self.worker = worker = Worker()
        self.source = source = am.Machine(
            schema, id="worker", handlers=WorkerHandlers(worker), handler_timeout=None
        )
        worker.on_event = lambda: source.add1("Event")
        self.meters: list[WireMeter] = []
        self.server = server = rpc.Server(source, "ws://127.0.0.1:0", name="worker")
        await nursery.start(server.serve)

        async def dial() -> rpc.Transport:
            meter = WireMeter(await rpc.connect(server.addr, nursery=nursery))
            self.meters.append(meter)
            return meter

        self.client = client = rpc.Client(server.addr, schema, name="bench", dial=dial)
        client.start(nursery)
        await client.wait_ready(10)
        self.nm = client.netmach
        self.executed = am.Result.EXECUTED
        worker.start()  # the first value and event (untimed, as the reference's Start)
        self.ticks = 0
        self.runs: list[dict[str, Any]] = []

    async def loop(self, k: int) -> None:
        nm, executed = self.nm, self.executed
        for _ in range(k):
            # 1. wait for the next event, 2. read the value locally, 3. one remote call
            # (the event usually came back in the previous call's response: a
            # resolved waiter is not awaited, like Go's read of a closed channel;
            # awaiting would only add a trio checkpoint)
            waiter = nm.when_time1("Event", self.ticks + 2)
            if not waiter.is_set():
                await waiter
            self.ticks += 2
            value = nm.switch(VALUES)
            res = await nm.call_add1("CallOp", {"op": VALUES.index(value) + 1})
            if res is not executed:
                raise RuntimeError(f"CallOp {res}: {nm.err!r}")

    def counters(self) -> dict[str, int]:
        c, s, m = self.client, self.server, self.meters[-1]
        return {
            "client_calls": c.calls,
            "server_calls": s.calls,
            "pushes": s.pushes,
            "frame_bytes": c.bytes_sent + c.bytes_received,
            "wire_bytes": m.wire_sent + m.wire_received,
            "messages": m.messages,
            "errors": self.worker.errors,
        }

    async def close(self) -> None:
        if len(self.meters) != 1:
            raise RuntimeError(f"the client reconnected ({len(self.meters)} connections)")
        c, s = self.client, self.server
        if s.bytes_sent + s.bytes_received != c.bytes_sent + c.bytes_received:
            raise RuntimeError("the server and the client counted different traffic")
        await c.stop(dispose=True)
        s.close()

    def result(self, n: int) -> dict[str, Any]:
        runs, total = self.runs, len(self.runs) * n

        def per_iter(key: str) -> float:
            return float(sum(r[key] for r in runs)) / total

        return {
            "runs": runs,
            "us_per_iter": statistics.median(r["us_per_iter"] for r in runs),
            "calls_per_iter": per_iter("client_calls") + per_iter("server_calls"),
            "client_calls_per_iter": per_iter("client_calls"),
            "server_calls_per_iter": per_iter("server_calls"),
            "pushes": sum(r["pushes"] for r in runs),
            "frame_bytes_per_iter": per_iter("frame_bytes"),
            "wire_bytes_per_iter": per_iter("wire_bytes"),
            "messages_per_iter": per_iter("messages"),
            "errors": self.worker.errors,
            "completions": self.worker.successes,
        }


class EchoCase:
    """A bare trio-websocket echo: a ``size``-byte binary message there and back."""

    def __init__(self, size: int = ECHO_SIZE) -> None:
        self.size = size
        self.runs: list[dict[str, Any]] = []

    async def setup(self, nursery: Any) -> None:
        from trio_websocket import ConnectionClosed, connect_websocket, serve_websocket

        async def handler(request: Any) -> None:
            ws = await request.accept()
            try:
                while True:
                    await ws.send_message(await ws.get_message())
            except ConnectionClosed:
                pass

        listener = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        self.ws = await connect_websocket(nursery, "127.0.0.1", listener.port, "/", use_ssl=False)
        self.msg = bytes(range(256))[: self.size]

    async def loop(self, k: int) -> None:
        ws, msg, size = self.ws, self.msg, self.size
        for _ in range(k):
            await ws.send_message(msg)
            if len(await ws.get_message()) != size:
                raise RuntimeError("echo: wrong reply")

    def counters(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        await self.ws.aclose()

    def result(self, n: int) -> dict[str, Any]:
        size = self.size
        return {
            "size": size,
            "runs": self.runs,
            "us_per_rt": statistics.median(r["us_per_iter"] for r in self.runs),
            "wire_bytes_per_rt": 2 * size + ws_header(size, True) + ws_header(size, False),
        }


async def _repeat(
    cases: Sequence[RpcCase | EchoCase], n: int, chunk: int, profile: Any = None
) -> None:
    """One timed repeat: ``n`` iterations of each case, in alternating chunks of ``chunk``
    (so both see the same load), garbage collector off; appended to ``case.runs``."""
    before = [c.counters() for c in cases]
    seconds = [0.0] * len(cases)
    gc.collect()
    gc.disable()
    try:
        done = 0
        while done < n:
            k = min(chunk, n - done)
            for i, case in enumerate(cases):
                if profile is not None and i == 0:
                    profile.enable()
                t0 = time.perf_counter()
                await case.loop(k)
                seconds[i] += time.perf_counter() - t0
                if profile is not None and i == 0:
                    profile.disable()
            done += k
    finally:
        gc.enable()
    for i, case in enumerate(cases):
        after = case.counters()
        run: dict[str, Any] = {"seconds": seconds[i], "us_per_iter": seconds[i] / n * 1e6}
        run.update({k: after[k] - before[i][k] for k in after})
        case.runs.append(run)


async def _run(
    n: int, warmup: int, repeats: int, chunk: int, profile: Any = None
) -> dict[str, Any]:
    """Both cases in one trio loop, timed in alternating chunks."""
    import trio

    # a run that hangs (a lost event, a dead connection) fails instead of blocking
    limit = 60 + 0.05 * (warmup + n * repeats)
    with trio.fail_after(limit):
        return await _run_cases(n, warmup, repeats, chunk, profile)


async def _run_cases(
    n: int, warmup: int, repeats: int, chunk: int, profile: Any = None
) -> dict[str, Any]:
    import trio

    async with trio.open_nursery() as nursery:
        echo, arpc = EchoCase(), RpcCase()
        await echo.setup(nursery)
        await arpc.setup(nursery)
        await echo.loop(warmup)
        await arpc.loop(warmup)
        for i in range(repeats):
            await _repeat((arpc, echo), n, chunk, profile if i == 0 else None)
        await arpc.close()
        await echo.close()
        nursery.cancel_scope.cancel()
    ratios = [
        a["us_per_iter"] / e["us_per_iter"] for a, e in zip(arpc.runs, echo.runs, strict=True)
    ]
    return {
        "arpc": arpc.result(n),
        "echo": echo.result(n),
        "ratios": ratios,
        "ratio": statistics.median(ratios),
    }


async def _run_asyncio(n: int, warmup: int, repeats: int, chunk: int) -> dict[str, Any]:
    """The aRPC case alone on asyncio (the echo baseline is trio-websocket: trio only)."""
    import anyio

    with anyio.fail_after(60 + 0.05 * (warmup + n * repeats)):
        async with anyio.create_task_group() as tg:
            arpc = RpcCase()
            await arpc.setup(tg)
            await arpc.loop(warmup)
            for _ in range(repeats):
                await _repeat((arpc,), n, chunk)
            await arpc.close()
            tg.cancel_scope.cancel()
    return arpc.result(n)


def measure(
    n: int = 2000, warmup: int = 200, repeats: int = 5, chunk: int = 100, profile: Any = None
) -> dict[str, Any]:
    """Run both measurements in one ``trio.run``, then the aRPC case on asyncio;
    the section stored as "rpc"."""
    import anyio
    import trio

    from . import harness

    harness.settle()
    out = trio.run(_run, n, warmup, repeats, chunk, profile)
    harness.settle()
    out["arpc_asyncio"] = anyio.run(_run_asyncio, n, warmup, repeats, chunk, backend="asyncio")
    versions = {d: harness.version(d) for d in ("trio-websocket", "msgpack", "wsproto", "anyio")}
    return {
        "scenario": "benchmark_grpc (aRPC): wait Event, read the value locally, 1 remote CallOp",
        "transport": "ws://127.0.0.1 (wsproto over anyio), client and server in one trio loop",
        "iterations": n,
        "warmup": warmup,
        "repeats": repeats,
        "chunk": chunk,
        "versions": versions,
        **out,
        "reference": REFERENCE,
        "targets": evaluate(out["arpc"], out["ratio"]),
    }


def evaluate(arpc: dict[str, Any], ratio: float) -> list[dict[str, Any]]:
    checks = [
        ("calls", arpc["calls_per_iter"], TARGET_CALLS, "<= 1 call per iteration"),
        ("bytes", arpc["wire_bytes_per_iter"], TARGET_BYTES, "<= 115 bytes per iteration"),
        ("latency", ratio, TARGET_ECHO_RATIO, "<= 2x the echo round trip"),
    ]
    return [
        {"name": name, "value": value, "limit": lim, "target": text, "met": value <= lim}
        for name, value, lim, text in checks
    ]


def render(section: dict[str, Any]) -> str:
    """The printed table of a stored "rpc" section."""
    if section.get("error"):
        return f"aRPC benchmark_grpc scenario: FAILED: {section['error']}"
    a, e, ref = section["arpc"], section["echo"], section["reference"]
    t = {x["name"]: x for x in section["targets"]}

    def mark(name: str) -> str:
        x = t[name]
        return f"{'met' if x['met'] else 'MISSED'} ({x['target']}, limit {x['limit']:,.1f})"

    ratio = section["ratio"]
    rows = [
        ("", "this run", "reference (Go)", "target"),
        ("us per iteration", f"{a['us_per_iter']:,.1f}", f"{ref['us_per_iter']:,.1f}", ""),
        (
            "  x echo round trip",
            f"{ratio:.2f}x",
            "",
            mark("latency"),
        ),
        (
            "calls per iteration",
            f"{a['calls_per_iter']:.4f}",
            f"{ref['calls_per_iter']:.4f}",
            mark("calls"),
        ),
        (
            "  client / server",
            f"{a['client_calls_per_iter']:.4f} / {a['server_calls_per_iter']:.4f}",
            "",
            f"pushes: {a['pushes']}",
        ),
        (
            "bytes per iteration",
            f"{a['wire_bytes_per_iter']:,.1f}",
            f"{ref['bytes_per_iter']:,.1f}",
            mark("bytes"),
        ),
        (
            "  frames only",
            f"{a['frame_bytes_per_iter']:,.1f}",
            "",
            f"{a['messages_per_iter']:.2f} messages",
        ),
        ("errors", f"{a['errors']}", f"{ref['errors']}", f"completions: {a['completions']:,}"),
        *(
            [
                (
                    "us per iteration on asyncio",
                    f"{section['arpc_asyncio']['us_per_iter']:,.1f}",
                    "",
                    "the same scenario, client and server on one asyncio loop",
                )
            ]
            if section.get("arpc_asyncio")
            else []
        ),
        (
            f"echo round trip ({e['size']} B)",
            f"{e['us_per_rt']:,.1f} us",
            "",
            f"{e['wire_bytes_per_rt']} bytes on the wire",
        ),
    ]
    head = (
        f"aRPC, the benchmark_grpc scenario: {section['iterations']:,} iterations after "
        f"{section['warmup']:,} warm-up, median of {section['repeats']} "
        f"({section['transport']})"
    )
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    body = [f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]}".rstrip() for r in rows]
    lines = [head, body[0], "-" * max(len(x) for x in body), *body[1:]]
    met = sum(1 for x in section["targets"] if x["met"])
    missed = [x["name"] for x in section["targets"] if not x["met"]]
    summary = f"rpc targets: {met} met, {len(missed)} missed"
    lines.append(summary + (f" ({', '.join(missed)})" if missed else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--iterations", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=100, help="iterations per alternating block")
    ap.add_argument("--json", default="", help="write the section to this file")
    ap.add_argument("--profile", action="store_true", help="cProfile the first aRPC repeat")
    ap.add_argument("--quiet", action="store_true", help="no table (benchmarks.run prints it)")
    a = ap.parse_args(argv)
    prof = None
    if a.profile:
        import cProfile

        prof = cProfile.Profile()
    try:
        section = measure(a.iterations, a.warmup, a.repeats, a.chunk, prof)
    except ImportError as exc:
        section = {"error": f"{exc} (install the rpc extra: pip install -e '.[rpc]')"}
    except Exception as exc:  # recorded, not hidden (a hang ends as TooSlowError)
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        section = {"error": text}
    if a.json:
        Path(a.json).write_text(json.dumps(section, indent=1) + "\n")
    if a.quiet:
        state = f"FAILED {section['error']}" if section.get("error") else "ok"
        print(f"  {'rpc':<20} {'benchmark_grpc':<28} {state}", file=sys.stderr, flush=True)
    else:
        print(render(section))
    if prof is not None:
        import pstats

        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 1 if section.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
