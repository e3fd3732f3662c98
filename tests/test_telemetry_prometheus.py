"""Prometheus: a real registry scraped over loopback HTTP, and the push mode."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

import asyncmachine_trio as am
from asyncmachine_trio.telemetry import prometheus as amprom

SCHEMA = {
    "A": am.State(remove=("B",)),
    "B": am.State(remove=("A",)),
    "C": am.State(require=("A",)),
    "Boom": am.State(),
}


class H:
    def boom_state(self, e: am.Event) -> None:
        raise RuntimeError("boom")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def scrape() -> Iterator[tuple[CollectorRegistry, Any]]:
    reg = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    port = server.server_port

    def get() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        r.raise_for_status()
        return samples(r.text)

    yield reg, get
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_scraped_values_match_the_machine(scrape: Any) -> None:
    reg, get = scrape
    coll = amprom.MachineCollector(allow=["prom-m"])
    reg.register(coll)
    mach = am.Machine(SCHEMA, id="prom-m", handlers=H())
    other = am.Machine(SCHEMA, id="prom-other")
    coll.track(mach)
    coll.track(other)
    mach.add1("A")  # accepted
    mach.add1("C")  # accepted
    mach.add1("B")  # accepted: -A -C
    mach.add1("C")  # canceled: requires A
    mach.add1("Boom")  # its handler raises: canceled, then Exception (accepted)
    other.add1("A")
    m = get()
    lab = (("machine", "prom-m"),)
    assert m[("am_transitions_total", (*lab, ("result", "accepted")))] == 4
    assert m[("am_transitions_total", (*lab, ("result", "canceled")))] == 2
    assert m[("am_exceptions_total", lab)] == 1
    assert m[("am_states_active", lab)] == len(mach.active_states())
    assert m[("am_queue_length", lab)] == 0
    for state in mach.state_names:
        tick = mach.tick(state)
        key = (("machine", "prom-m"), ("state", state))
        assert m[("am_state_active", key)] == tick % 2
        assert m[("am_state_activations_total", key)] == (tick + 1) // 2
    assert m[("am_state_activations_total", (("machine", "prom-m"), ("state", "A")))] == 1
    assert m[("am_state_activations_total", (("machine", "prom-m"), ("state", "C")))] == 1
    # histograms: one observation per non-check transition
    assert m[("am_transition_duration_seconds_count", lab)] == 6
    assert m[("am_handler_duration_seconds_count", lab)] >= 1
    # not allowlisted: aggregated under _other, no per-state series
    other_lab = (("machine", "_other"),)
    assert m[("am_transitions_total", (*other_lab, ("result", "accepted")))] == 1
    assert not [k for k in m if ("machine", "prom-other") in k[1]]
    assert not [k for k in m if k[0] == "am_state_active" and ("machine", "_other") in k[1]]
    # disposal keeps the counters
    mach.dispose()
    m2 = get()
    assert m2[("am_transitions_total", (*lab, ("result", "accepted")))] == 4
    assert ("am_states_active", lab) in m2 and m2[("am_states_active", lab)] == 0


def test_max_machines_bounds_labels(scrape: Any) -> None:
    reg, get = scrape
    coll = amprom.MachineCollector(max_machines=2)
    reg.register(coll)
    machs = [am.Machine(SCHEMA, id=f"mm-{i}") for i in range(5)]
    for m in machs:
        coll.track(m)
        m.add1("A")
    labels = {dict(k[1]).get("machine") for k in get() if k[0] == "am_transitions_total"}
    assert labels == {"mm-0", "mm-1", "_other"}


def test_reference_names(scrape: Any) -> None:
    reg, get = scrape
    coll = amprom.MachineCollector(reference_names=True)
    reg.register(coll)
    mach = am.Machine(SCHEMA, id="Ref-Machine.1")
    coll.track(mach)
    mach.add1("A")
    mach.add1("B")
    m = get()
    assert m[("am_transitions_ref_machine_1", ())] == 2
    assert m[("am_states_added_ref_machine_1", ())] == 1
    assert m[("am_states_ref_machine_1", ())] == len(mach.state_names)
    # accumulators reset after each collection (the reference's per-push averages)
    assert get()[("am_transitions_ref_machine_1", ())] == 0


class _Recorder(http.server.BaseHTTPRequestHandler):
    bodies: list[tuple[str, str, bytes]] = []

    def do_PUT(self) -> None:
        n = int(self.headers.get("Content-Length", 0))
        self.bodies.append(("PUT", self.path, self.rfile.read(n)))
        self.send_response(200)
        self.end_headers()

    do_POST = do_PUT

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    bodies: list[tuple[str, str, bytes]] = []
    handler = type("Rec", (_Recorder,), {"bodies": bodies})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}", bodies
    srv.shutdown()
    srv.server_close()
    t.join(5)


def test_push_mode(gateway: Any) -> None:
    url, bodies = gateway
    reg = CollectorRegistry()
    coll = amprom.MachineCollector()
    reg.register(coll)
    mach = am.Machine(SCHEMA, id="push-m")
    coll.track(mach)
    mach.add1("A")
    pusher = amprom.start_push(url, reg, job="my_svc", interval=0.05)
    deadline = time.monotonic() + 10
    while not bodies and time.monotonic() < deadline:
        time.sleep(0.01)
    pusher.stop()
    assert bodies and pusher.errors == 0
    method, path, body = bodies[0]
    assert method == "PUT" and path == "/metrics/job/my_svc"
    m = samples(body.decode())
    assert m[("am_transitions_total", (("machine", "push-m"), ("result", "accepted")))] == 1


def test_push_failure_does_not_break(caplog: pytest.LogCaptureFixture) -> None:
    reg = CollectorRegistry()
    pusher = amprom.start_push("http://127.0.0.1:1", reg, interval=0.01)
    deadline = time.monotonic() + 10
    while pusher.errors < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    pusher.stop(final_push=False)
    assert pusher.errors >= 2
    assert len([r for r in caplog.records if "push to" in r.getMessage()]) == 1
