"""Telemetry overhead per transition (issue 14).

The toggle case (``A`` and ``B`` remove each other, handlers ``a_state`` /
``b_state`` bound, ``handler_timeout=None``): ``add1`` alternates between them,
every call one accepted transition. Cases, each on its own machine, in one
process (the debugger receiver runs in a separate process, as in real use):

* ``nothing``     - no exporter attached;
* ``dbg up``      - the debugger exporter, receiver up: the loop, and the loop
                    plus the time until the exporter's buffer was sent
                    (``dbg up +flush``: includes the worker thread's share);
* ``dbg down``    - the debugger exporter, nothing listening (drop-and-count);
* ``otel``        - ``telemetry.otel`` with the OpenTelemetry SDK, transition
                    spans on, a span processor exporting to nowhere (no-op
                    exporter, simple processor: the SDK's full span cost);
* ``otel states`` - the same without transition spans (state spans only);
* ``prometheus``  - ``telemetry.prometheus`` collector bound to a registry.

Targets: nothing = today's figure; dbg up <= +5 us; dbg down <= +2 us;
otel (transition spans) <= +15 us. Medians of ``--repeats`` runs.

Run: python -m benchmarks.telemetry_overhead [-n 20000] [--repeats 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import asyncmachine_trio as am

SCHEMA = {"A": am.State(remove=("B",)), "B": am.State(remove=("A",))}
TARGETS = {"dbg up": 5.0, "dbg down": 2.0, "otel": 15.0}

_RECEIVER = """
import sys, trio
from asyncmachine_trio.telemetry.receiver import Collector, Receiver
async def main():
    async with trio.open_nursery() as n:
        port = await n.start(Receiver(Collector(max_txs=1000)).serve, "127.0.0.1", 0)
        print(port, flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
        n.cancel_scope.cancel()
trio.run(main)
"""


class Handlers:
    def __init__(self) -> None:
        self.n = 0

    def a_state(self, e: am.Event) -> None:
        self.n += 1

    def b_state(self, e: am.Event) -> None:
        self.n += 1


def machine(name: str) -> am.Machine:
    return am.Machine(SCHEMA, id=f"bench-{name}", handlers=Handlers(), handler_timeout=None)


def toggle(mach: am.Machine, n: int) -> float:
    add1 = mach.add1
    t0 = time.perf_counter()
    for i in range(n):
        add1("A" if i % 2 else "B")
    return time.perf_counter() - t0


def setup_cases(port: int) -> dict[str, Callable[[int], float]]:
    from asyncmachine_trio.telemetry import dbg

    cases: dict[str, Callable[[int], float]] = {}
    plain = machine("nothing")
    cases["nothing"] = lambda n: toggle(plain, n)

    up = machine("dbg-up")
    ex_up = dbg.attach(up, f"127.0.0.1:{port}", config=dbg.ExporterConfig(buffer=1_000_000))
    if not ex_up.wait_connected(10):
        raise RuntimeError("the receiver did not answer")
    cases["dbg up"] = lambda n: toggle(up, n)

    def up_flush(n: int) -> float:
        t = toggle(up, n)
        t0 = time.perf_counter()
        if not ex_up.flush(60):
            raise RuntimeError("flush timed out")
        return t + time.perf_counter() - t0

    cases["dbg up +flush"] = up_flush

    down = machine("dbg-down")
    # port 1 on loopback: connection refused at once; never give up
    ex_down = dbg.attach(down, "127.0.0.1:1", config=dbg.ExporterConfig(max_failures=10**9))
    deadline = time.monotonic() + 5
    while ex_down.state != dbg.DOWN and time.monotonic() < deadline:
        time.sleep(0.01)
    cases["dbg down"] = lambda n: toggle(down, n)

    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

        from asyncmachine_trio.telemetry import otel

        class NoopExporter(SpanExporter):
            def export(self, spans: Any) -> Any:
                from opentelemetry.sdk.trace.export import SpanExportResult

                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(NoopExporter()))
        m_otel = machine("otel")
        otel.attach(m_otel, provider.get_tracer("bench"), transitions=True)
        cases["otel"] = lambda n: toggle(m_otel, n)
        m_otel2 = machine("otel-states")
        otel.attach(m_otel2, provider.get_tracer("bench"), transitions=False)
        cases["otel states"] = lambda n: toggle(m_otel2, n)
    except ImportError as err:
        print(f"otel skipped: {err}", file=sys.stderr)

    try:
        from prometheus_client import CollectorRegistry

        from asyncmachine_trio.telemetry import prometheus

        reg = CollectorRegistry()
        m_prom = machine("prometheus")
        coll = prometheus.MachineCollector()
        coll.track(m_prom)
        reg.register(coll)
        cases["prometheus"] = lambda n: toggle(m_prom, n)
    except ImportError as err:
        print(f"prometheus skipped: {err}", file=sys.stderr)
    return cases


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20_000, help="transitions per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default="", help="write the results here")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AM_")}
    recv = subprocess.Popen(
        [sys.executable, "-c", _RECEIVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert recv.stdout is not None
        port = int(recv.stdout.readline())
        cases = setup_cases(port)
        for run in cases.values():  # warm-up
            run(min(a.n, 2000))
        times: dict[str, list[float]] = {k: [] for k in cases}
        import gc

        for _ in range(a.repeats):
            for name, run in cases.items():
                gc.collect()
                gc.disable()
                try:
                    times[name].append(run(a.n) / a.n * 1e6)
                finally:
                    gc.enable()
    finally:
        if recv.stdin is not None:
            recv.stdin.close()
        recv.wait(10)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["nothing"]
    rows = []
    for name, us in med.items():
        spread = (max(times[name]) - min(times[name])) / us if us else 0.0
        delta = us - base
        target = TARGETS.get(name)
        verdict = "" if target is None else ("met" if delta <= target else "MISSED")
        rows.append(
            {
                "case": name,
                "us": us,
                "delta": delta,
                "spread": spread,
                "target": target,
                "verdict": verdict,
                "repeats": times[name],
            }
        )
    if not a.quiet:
        print(f"toggle, {a.n} transitions x {a.repeats} repeats, median us per transition")
        print(f"{'case':<16} {'per tx':>9} {'overhead':>9} {'spread':>7}  target")
        for r in rows:
            tgt = f"<= +{r['target']:g} us {r['verdict']}" if r["target"] is not None else ""
            print(
                f"{r['case']:<16} {r['us']:>8.2f}  {r['delta']:>+8.2f} {r['spread']:>6.0%}  {tgt}"
            )
    doc = {"n": a.n, "repeats": a.repeats, "rows": rows}
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(doc, fh, indent=1)
    return doc


if __name__ == "__main__":
    main()
