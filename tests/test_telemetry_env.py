"""Zero-code opt-in: AM_* environment variables, each in a fresh interpreter."""

from __future__ import annotations

import http.server
import json
import os
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from asyncmachine_trio.telemetry.receiver import Collector, Receiver

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AM_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def txs_of(c: Collector, mid: str) -> list[Any]:
    log = c.machines.get(mid)
    return log.txs if log is not None else []


async def run_py(code: str, env: dict[str, str]) -> str:
    with trio.fail_after(60):
        proc = await trio.run_process(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=env,
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr.decode()
    return str(proc.stdout.decode())


APP = """
import asyncmachine_trio as am
mach = am.Machine({"A": am.State(remove=("B",)), "B": am.State(remove=("A",))}, id="env-app")
child = am.Machine({"C": am.State()}, id="env-child", parent=mach)
other = am.Machine({"C": am.State()}, id="env-other")
for i in range(5):
    mach.add1("B" if i % 2 else "A")
child.add1("C")
"""


@pytest.mark.trio
async def test_am_dbg_addr() -> None:
    coll = Collector()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(Receiver(coll).serve, "127.0.0.1", 0)
        await run_py(APP, clean_env(AM_DBG_ADDR=f"127.0.0.1:{port}"))
        await coll.wait(
            lambda c: (
                len((c.machines.get("env-app", None) and c.machines["env-app"].txs) or []) == 5
            ),
            10,
        )
        await coll.wait(
            lambda c: "env-child" in c.machines and c.machines["env-child"].txs != [], 10
        )
        assert "env-other" in coll.machines  # every machine of the process
        assert coll.machines["env-child"].schema.parent_id == "env-app"
        # AM_DBG_ID: only that machine and its children
        coll2 = Collector()
        port2 = await nursery.start(Receiver(coll2).serve, "127.0.0.1", 0)
        await run_py(APP, clean_env(AM_DBG_ADDR=f"127.0.0.1:{port2}", AM_DBG_ID="env-app"))
        await coll2.wait(
            lambda c: "env-child" in c.machines and c.machines["env-child"].txs != [], 10
        )
        assert set(coll2.machines) == {"env-app", "env-child"}
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_nothing_set_nothing_attached() -> None:
    code = (
        APP
        + """
import sys
from asyncmachine_trio.machine import tracing
assert tracing._machine_hooks == [], tracing._machine_hooks
for m in (mach, child, other):
    assert m._tracers == [] and m._end_hooks == [] and m._schema_hooks == []
assert not [k for k in sys.modules if k.startswith("asyncmachine_trio.telemetry")]
assert "opentelemetry" not in sys.modules and "prometheus_client" not in sys.modules
print("clean")
"""
    )
    assert (await run_py(code, clean_env())).strip() == "clean"
    # a CI runner ignores the switches
    runner = clean_env(AM_TEST_RUNNER="1", AM_DBG_ADDR="1", AM_OTEL_TRACE="1")
    assert (await run_py(code, runner)).strip() == "clean"


@pytest.mark.trio
async def test_am_otel_trace() -> None:
    code = (
        """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
"""
        + APP
        + """
mach.add1("A", {"name": "arg1"})
mach.dispose(); child.dispose(); other.dispose()
print(json.dumps([[s.name, dict(s.attributes or {})] for s in exporter.get_finished_spans()]))
"""
    )
    env = clean_env(AM_OTEL_TRACE="1", AM_OTEL_TRACE_TXS="1", AM_OTEL_TRACE_ARGS="1")
    spans = json.loads((await run_py(code, env)).strip().splitlines()[-1])
    names = [n for n, _ in spans]
    assert {"mach:env-app", "mach:env-child", "mach:env-other", "A", "B", "C"} <= set(names)
    txs = [(n, a) for n, a in spans if n.startswith("tx:")]
    assert len([n for n, _ in txs if n in ("tx:add A", "tx:add B")]) == 6
    assert any(a.get("am.args.name") == "arg1" for _, a in txs)
    # without _TXS: states only
    env = clean_env(AM_OTEL_TRACE="1")
    spans = json.loads((await run_py(code, env)).strip().splitlines()[-1])
    assert not [n for n, _ in spans if n.startswith("tx:")]
    assert "mach:env-app" in [n for n, _ in spans]


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []

    class Rec(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            n = int(self.headers.get("Content-Length", 0))
            bodies.append(self.path.encode() + b"\n" + self.rfile.read(n))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Rec)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}", bodies
    srv.shutdown()
    srv.server_close()
    t.join(5)


@pytest.mark.trio
async def test_am_prom_push_url(gateway: Any) -> None:
    url, bodies = gateway
    env = clean_env(AM_PROM_PUSH_URL=url, AM_SERVICE="My Svc", AM_PROM_PUSH_INTERVAL="0.05")
    await run_py(APP + "\nimport time\ntime.sleep(0.3)\n", env)
    assert bodies
    last = bodies[-1].decode()
    assert last.startswith("/metrics/job/my_svc\n")
    assert 'am_transitions_total{machine="env-app",result="accepted"} 5.0' in last


INNER_TEST = """
import asyncmachine_trio as am
from asyncmachine_trio.telemetry import dbg


def test_one():
    mach = am.Machine({"A": am.State()}, id="from-pytest")
    mach.add1("A")
    assert (dbg.exporter_of(mach) is not None) == EXPECT
"""


@pytest.mark.trio
async def test_pytest_plugin(tmp_path: Path) -> None:
    plugin = ["-p", "asyncmachine_trio.telemetry.pytest_plugin"]
    coll = Collector()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(Receiver(coll).serve, "127.0.0.1", 0)
        addr = f"127.0.0.1:{port}"
        for expect, extra in (
            (True, {"AM_TEST_DEBUG": "1", "AM_TEST_DBG_ADDR": addr}),
            (False, {}),
        ):
            test = tmp_path / f"test_inner_{expect}.py"
            test.write_text(INNER_TEST.replace("EXPECT", str(expect)))
            env = clean_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", **extra)
            # a config of its own: else pytest looks upwards from tmp_path for one, and
            # under nox (TMPDIR inside the checkout) finds the project's, whose options
            # name plugins this run does not load
            ini = tmp_path / "pytest.ini"
            ini.write_text("[pytest]\n")
            args = [*plugin, "-q", "-p", "no:cacheprovider", "-c", str(ini), str(test)]
            code = f"import sys, pytest; sys.exit(pytest.main({args!r}))"
            out = await run_py(code, env)
            assert "1 passed" in out
        await coll.wait(
            lambda c: "from-pytest" in c.machines and c.machines["from-pytest"].txs != [], 10
        )
        assert "test:test_one" in coll.machines["from-pytest"].schema.tags
        nursery.cancel_scope.cancel()
