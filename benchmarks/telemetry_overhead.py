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
* ``otel``        - ``telemetry.otel`` with the OpenTelemetry SDK, one span per
                    transition only (``states=False``), a simple span processor
                    exporting to a no-op exporter (the SDK's full span cost);
* ``otel states`` - state spans only (two spans end / start per toggle);
* ``otel full``   - both;
* ``bare SDK span`` - not a toggle: one ``start_span().end()`` of the same
                    SDK setup, the floor of any span-based tracing;
* ``prometheus``  - ``telemetry.prometheus`` collector bound to a registry.

Targets: nothing = today's figure; dbg up <= +5 us; dbg down <= +2 us;
otel (transition spans) <= +15 us. Medians of ``--repeats`` runs, and the
minimum (less sensitive to other load on the machine).

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
#: judged on CPU overhead; "dbg up +flush" is the exporter's whole cost (its
#: worker thread's CPU included), "dbg up" only what the loop itself saw
TARGETS = {"dbg up +flush": 5.0, "dbg down": 2.0, "otel": 15.0}

# a debugger stand-in: answers the handshake, then reads and discards (the cost
# measured is the exporter's, not a receiver's decoding)
_RECEIVER = """
import socket, sys, threading
from asyncmachine_trio.telemetry import protocol as p
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()
print(srv.getsockname()[1], flush=True)
def serve(conn):
    dec = p.Decoder(expect_preamble=True)
    while not dec.feed(conn.recv(65536)):
        pass
    conn.sendall(p.encode_frame(p.Welcome(agent="bench sink")))
    while conn.recv(1 << 20):
        pass
def accept():
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
sys.stdin.read()
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


#: CPU seconds of the last case run: the main thread's, plus the exporter
#: thread's for the dbg cases (less sensitive to other load than wall time)
LAST_CPU = [0.0]


def thread_cpu(thread: Any) -> float:
    """CPU seconds used so far by a ``threading.Thread`` (Linux / macOS)."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def toggle(mach: am.Machine, n: int, worker: Any = None) -> float:
    add1 = mach.add1
    w0 = thread_cpu(worker) if worker is not None else 0.0
    c0 = time.thread_time()
    t0 = time.perf_counter()
    for i in range(n):
        add1("A" if i % 2 else "B")
    wall = time.perf_counter() - t0
    c1 = time.thread_time()
    w1 = thread_cpu(worker) if worker is not None else 0.0
    LAST_CPU[0] = (c1 - c0) + (w1 - w0)
    return wall


def setup_cases(port: int) -> dict[str, Callable[[int], float]]:
    from asyncmachine_trio.telemetry import dbg

    cases: dict[str, Callable[[int], float]] = {}
    plain = machine("nothing")
    cases["nothing"] = lambda n: toggle(plain, n)

    up = machine("dbg-up")
    ex_up = dbg.attach(up, f"127.0.0.1:{port}", config=dbg.ExporterConfig(buffer=1_000_000))
    if not ex_up.wait_connected(10):
        raise RuntimeError("the receiver did not answer")
    cases["dbg up"] = lambda n: toggle(up, n, ex_up._thread)

    def up_flush(n: int) -> float:
        w0 = thread_cpu(ex_up._thread)
        t = toggle(up, n)
        c0 = time.thread_time()
        t0 = time.perf_counter()
        if not ex_up.flush(60):
            raise RuntimeError("flush timed out")
        wall = t + time.perf_counter() - t0
        LAST_CPU[0] += time.thread_time() - c0 + thread_cpu(ex_up._thread) - w0
        return wall

    cases["dbg up +flush"] = up_flush

    down = machine("dbg-down")
    # port 1 on loopback: connection refused at once; never give up
    ex_down = dbg.attach(down, "127.0.0.1:1", config=dbg.ExporterConfig(max_failures=10**9))
    deadline = time.monotonic() + 5
    while ex_down.state != dbg.DOWN and time.monotonic() < deadline:
        time.sleep(0.01)
    cases["dbg down"] = lambda n: toggle(down, n, ex_down._thread)

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
        tracer = provider.get_tracer("bench")
        m_otel = machine("otel")
        otel.attach(m_otel, tracer, transitions=True, states=False)
        cases["otel"] = lambda n: toggle(m_otel, n)
        m_otel2 = machine("otel-states")
        otel.attach(m_otel2, tracer, transitions=False, states=True)
        cases["otel states"] = lambda n: toggle(m_otel2, n)
        m_otel3 = machine("otel-full")
        otel.attach(m_otel3, tracer, transitions=True, states=True)
        cases["otel full"] = lambda n: toggle(m_otel3, n)
        from opentelemetry.context import Context

        def bare_span(n: int) -> float:
            start = tracer.start_span
            c0 = time.thread_time()
            t0 = time.perf_counter()
            for _ in range(n):
                start("x", context=Context(), attributes={"a": 1}).end()
            LAST_CPU[0] = time.thread_time() - c0
            return time.perf_counter() - t0

        cases["bare SDK span"] = bare_span
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


def render(doc: dict[str, Any]) -> str:
    """The printed table of a run (also used by ``benchmarks.run``)."""
    if doc.get("error"):
        return f"telemetry overhead: FAILED {doc['error']}"
    lines = [
        f"telemetry overhead (issue 14): toggle, {doc['n']} transitions x {doc['repeats']}"
        " repeats, us per transition (medians); wall = loop time, cpu = CPU time of the"
        " loop's thread plus the exporter thread's (dbg rows); overhead = minus 'nothing';"
        " targets judged on cpu overhead",
        f"{'case':<16} {'wall':>8} {'overhead':>9} {'spread':>7} {'cpu':>8} {'overhead':>9}"
        "  target",
    ]
    for r in doc["rows"]:
        tgt = f"<= +{r['target']:g} us {r['verdict']}" if r["target"] is not None else ""
        lines.append(
            f"{r['case']:<16} {r['us']:>8.2f} {r['delta']:>+9.2f} {r['spread']:>7.0%}"
            f" {r.get('cpu', 0.0):>8.2f} {r.get('cpu_delta', 0.0):>+9.2f}  {tgt}"
        )
    return "\n".join(lines)


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
        cpus: dict[str, list[float]] = {k: [] for k in cases}
        import gc

        for _ in range(a.repeats):
            for name, run in cases.items():
                gc.collect()
                gc.disable()
                try:
                    times[name].append(run(a.n) / a.n * 1e6)
                    cpus[name].append(LAST_CPU[0] / a.n * 1e6)
                finally:
                    gc.enable()
    finally:
        if recv.stdin is not None:
            recv.stdin.close()
        recv.wait(10)
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    base = med["nothing"]
    rows = []
    for name, us in med.items():
        spread = (max(times[name]) - min(times[name])) / us if us else 0.0
        delta = us - base
        cpu_delta = cpu[name] - cpu["nothing"]
        target = TARGETS.get(name)
        verdict = "" if target is None else ("met" if cpu_delta <= target else "MISSED")
        rows.append(
            {
                "case": name,
                "us": us,
                "delta": delta,
                "spread": spread,
                "min": min(times[name]),
                "cpu": cpu[name],
                "cpu_delta": cpu_delta,
                "cpu_repeats": cpus[name],
                "target": target,
                "verdict": verdict,
                "repeats": times[name],
            }
        )
    doc = {"n": a.n, "repeats": a.repeats, "rows": rows}
    if not a.quiet:
        print(render(doc))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(doc, fh, indent=1)
    return doc


if __name__ == "__main__":
    main()
