"""Prometheus metrics of machines: a custom collector, and the reference's push mode.

    from prometheus_client import CollectorRegistry, start_http_server
    from asyncmachine_trio.telemetry.prometheus import MachineCollector

    registry = CollectorRegistry()
    collector = MachineCollector()
    registry.register(collector)
    collector.track(mach)
    start_http_server(9100, registry=registry)

Nothing is registered in the global registry. Metrics (namespace ``am``):

| metric | type | labels |
| --- | --- | --- |
| ``am_transitions_total`` | counter | machine, result (accepted / canceled) |
| ``am_exceptions_total`` | counter | machine |
| ``am_queue_length`` | gauge | machine |
| ``am_states_active`` | gauge | machine |
| ``am_state_active`` | gauge (0 / 1) | machine, state |
| ``am_state_activations_total`` | counter (= ticks / 2, rounded up) | machine, state |
| ``am_transition_duration_seconds`` | histogram | machine |
| ``am_handler_duration_seconds`` | histogram | machine |

``machine`` is the machine id for machines the allowlist admits (and at most
``max_machines`` of them); the others share ``machine="_other"`` and have no
per-state series, so the number of series stays bounded.

``reference_names=True`` exports the reference's metrics instead: gauges named
``am_<metric>_<normalised machine id>`` averaged over the interval since the
previous scrape / push, for its Grafana dashboards.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..machine.schema import EXCEPTION
from ..machine.tracing import Tracer

if TYPE_CHECKING:
    from ..machine.machine import Machine
    from ..machine.transition import Transition

__all__ = [
    "DEFAULT_BUCKETS",
    "OTHER",
    "MachineCollector",
    "Pusher",
    "attach_env",
    "normalize_id",
    "start_push",
]

_log = logging.getLogger("asyncmachine_trio.telemetry")

#: seconds; transitions and handlers are mostly microseconds
DEFAULT_BUCKETS: tuple[float, ...] = (
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    5e-3,
    1e-2,
    0.1,
    1.0,
)
OTHER = "_other"


def normalize_id(mach_id: str) -> str:
    """A machine id as the reference puts it in metric names (``[a-z0-9_]``)."""
    return re.sub(r"[^a-z0-9_]", "_", mach_id.lower())


class _Hist:
    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, v)] += 1
        self.sum += v

    def add(self, other: _Hist) -> None:
        for i, c in enumerate(other.counts):
            self.counts[i] += c
        self.sum += other.sum

    def family_values(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        acc = 0
        for b, c in zip(self.buckets, self.counts, strict=False):
            acc += c
            out.append((repr(float(b)), acc))
        out.append(("+Inf", acc + self.counts[-1]))
        return out


class _Stats(Tracer):
    """Per machine counters, fed by tracer hooks (this machine's thread only)."""

    def __init__(self, mach: Machine, buckets: tuple[float, ...]) -> None:
        self.mach = mach
        self.accepted = 0
        self.canceled = 0
        self.exceptions = 0
        self.tx_hist = _Hist(buckets)
        self.handler_hist = _Hist(buckets)
        self._t0 = 0.0
        self._h0 = 0.0
        # the reference's per-interval accumulators
        self.r_txs = 0
        self.r_exceptions = 0
        self.r_queue = 0
        self.r_ticks = 0
        self.r_steps = 0
        self.r_handlers = 0
        self.r_added = 0
        self.r_removed = 0
        self.r_touched = 0
        self.r_active = 0
        self.r_inactive = 0
        self.r_time_us = 0.0

    def tracer_id(self) -> str:
        return f"prometheus-{id(self):x}"

    def transition_start(self, transition: Transition) -> None:
        self._t0 = time.perf_counter()
        self.r_queue += len(self.mach._queue)

    def handler_start(self, transition: Transition, binding_id: str, name: str) -> None:
        self._h0 = time.perf_counter()

    def handler_end(self, transition: Transition, binding_id: str, name: str) -> None:
        self.handler_hist.observe(time.perf_counter() - self._h0)
        self.r_handlers += 1

    def transition_end(self, transition: Transition) -> None:
        mut = transition.mutation
        if mut.is_check:
            return
        spent = time.perf_counter() - self._t0
        self.tx_hist.observe(spent)
        if not transition.is_accepted:
            self.canceled += 1
            return
        self.accepted += 1
        self.r_txs += 1
        self.r_time_us += spent * 1e6
        before = transition._before
        after = transition._after if transition._after is not None else before
        added = removed = active = 0
        ticks = 0
        for b, a in zip(before, after, strict=False):
            if b % 2:
                active += 1
            if a != b:
                ticks += a - b
                if a % 2:
                    added += 1
                elif b % 2:
                    removed += 1
        self.r_ticks += ticks
        self.r_added += added
        self.r_removed += removed
        self.r_touched += added + removed
        self.r_active += active
        self.r_inactive += len(before) - active
        self.r_steps += len(transition._steps or ())
        if added and EXCEPTION in transition.activated:
            self.exceptions += 1
            self.r_exceptions += 1


class MachineCollector(Collector):
    """A ``prometheus_client`` collector of machine metrics (see the module doc).

    ``allow``: machine ids (or a predicate) that get their own ``machine``
    label; ``None`` admits every machine up to ``max_machines``.
    """

    def __init__(
        self,
        *,
        allow: Iterable[str] | Callable[[str], bool] | None = None,
        max_machines: int = 100,
        namespace: str = "am",
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        reference_names: bool = False,
    ) -> None:
        if allow is None or callable(allow):
            self._allow: Callable[[str], bool] | None = allow
        else:
            allowed = frozenset(allow)
            self._allow = allowed.__contains__
        self.max_machines = max_machines
        self.namespace = namespace
        self.buckets: tuple[float, ...] = tuple(sorted(buckets))
        self.reference_names = reference_names
        self._stats: dict[int, _Stats] = {}
        self._labels: dict[int, str] = {}
        self._lock = threading.Lock()
        # counters of machines gone (keep counters monotonic)
        self._gone: dict[str, list[Any]] = {}

    # ----- machines

    def track(self, mach: Machine) -> None:
        """Collect metrics of ``mach`` (binds a tracer; idempotent)."""
        with self._lock:
            if id(mach) in self._stats:
                return
            st = _Stats(mach, self.buckets)
            named = sum(1 for v in self._labels.values() if v != OTHER)
            ok = (self._allow is None or self._allow(mach.id)) and named < self.max_machines
            self._stats[id(mach)] = st
            self._labels[id(mach)] = mach.id if ok else OTHER
        mach.tracer_bind(st)
        mach.on_dispose(lambda _id: self.untrack(mach))

    def untrack(self, mach: Machine) -> None:
        """Stop collecting ``mach`` (its counters stay in the totals)."""
        with self._lock:
            st = self._stats.pop(id(mach), None)
            label = self._labels.pop(id(mach), OTHER)
            if st is None:
                return
            g = self._gone.setdefault(label, [0, 0, 0, _Hist(self.buckets), _Hist(self.buckets)])
            g[0] += st.accepted
            g[1] += st.canceled
            g[2] += st.exceptions
            g[3].add(st.tx_hist)
            g[4].add(st.handler_hist)
        if st in mach._tracers:
            mach.tracer_detach(st.tracer_id())

    def machines(self) -> list[Machine]:
        """The tracked machines."""
        return [s.mach for s in list(self._stats.values())]

    # ----- collection

    def describe(self) -> list[Metric]:
        """No metrics up front: series appear as machines are tracked."""
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            pairs = [(self._labels[k], s) for k, s in self._stats.items()]
            gone = {k: list(v) for k, v in self._gone.items()}
        if self.reference_names:
            yield from self._collect_reference(pairs)
            return
        ns = self.namespace
        txs = CounterMetricFamily(
            f"{ns}_transitions", "Transitions by result", labels=["machine", "result"]
        )
        exc = CounterMetricFamily(
            f"{ns}_exceptions", "Transitions that activated Exception", labels=["machine"]
        )
        queue = GaugeMetricFamily(f"{ns}_queue_length", "Queued mutations", labels=["machine"])
        active = GaugeMetricFamily(f"{ns}_states_active", "Active states", labels=["machine"])
        st_active = GaugeMetricFamily(
            f"{ns}_state_active", "1 when the state is active", labels=["machine", "state"]
        )
        st_acts = CounterMetricFamily(
            f"{ns}_state_activations", "Activations of the state", labels=["machine", "state"]
        )
        tx_h = HistogramMetricFamily(
            f"{ns}_transition_duration_seconds", "Transition wall time", labels=["machine"]
        )
        h_h = HistogramMetricFamily(
            f"{ns}_handler_duration_seconds", "Handler wall time", labels=["machine"]
        )
        # aggregate per label (several machines may share "_other")
        agg: dict[str, list[Any]] = {}
        for label, g in gone.items():
            agg[label] = [g[0], g[1], g[2], 0, 0, _copy(g[3]), _copy(g[4])]
        for label, s in pairs:
            a = agg.setdefault(label, [0, 0, 0, 0, 0, _Hist(self.buckets), _Hist(self.buckets)])
            m = s.mach
            a[0] += s.accepted
            a[1] += s.canceled
            a[2] += s.exceptions
            a[3] += len(m._queue)
            ticks = m._ticks
            a[4] += sum(t % 2 for t in ticks)
            a[5].add(s.tx_hist)
            a[6].add(s.handler_hist)
            if label != OTHER:
                for name, t in zip(m._names, ticks, strict=False):
                    st_active.add_metric([label, name], t % 2)
                    st_acts.add_metric([label, name], (t + 1) // 2)
        for label, a in agg.items():
            txs.add_metric([label, "accepted"], a[0])
            txs.add_metric([label, "canceled"], a[1])
            exc.add_metric([label], a[2])
            queue.add_metric([label], a[3])
            active.add_metric([label], a[4])
            tx_h.add_metric([label], a[5].family_values(), a[5].sum)
            h_h.add_metric([label], a[6].family_values(), a[6].sum)
        yield from (txs, exc, queue, active, st_active, st_acts, tx_h, h_h)

    def _collect_reference(self, pairs: list[tuple[str, _Stats]]) -> Iterator[Metric]:
        """The reference's gauges: one name per machine, averages since the last collect."""
        ns = self.namespace
        for _label, s in pairs:
            mid = normalize_id(s.mach.id)
            n = s.r_txs

            def avg(v: float, n: int = n) -> float:
                return v // n if n else 0

            schema = s.mach._schema
            rels = sum(
                sum(1 for r in (st.require, st.add, st.remove, st.after) if r)
                for st in schema.values()
            )
            refs = sum(
                sum(len(r) for r in (st.require, st.add, st.remove, st.after) if r)
                for st in schema.values()
            )
            values = {
                "transitions": n,
                "exceptions": s.r_exceptions,
                "queue_size": avg(s.r_queue),
                "tx_ticks": avg(s.r_ticks),
                "steps": avg(s.r_steps),
                "handlers": avg(s.r_handlers),
                "states_added": avg(s.r_added),
                "states_removed": avg(s.r_removed),
                "states_touched": avg(s.r_touched),
                "states_active": avg(s.r_active),
                "states_inactive": avg(s.r_inactive),
                "tx_time": avg(s.r_time_us),
                "states": len(schema),
                "relations": rels,
                "ref_states": refs,
            }
            for name, v in values.items():
                yield GaugeMetricFamily(f"{ns}_{name}_{mid}", f"{name} of {s.mach.id}", value=v)
            s.r_txs = s.r_exceptions = s.r_queue = s.r_ticks = s.r_steps = 0
            s.r_handlers = s.r_added = s.r_removed = s.r_touched = 0
            s.r_active = s.r_inactive = 0
            s.r_time_us = 0.0


def _copy(h: _Hist) -> _Hist:
    c = _Hist(h.buckets)
    c.add(h)
    return c


# ----- push mode


class Pusher:
    """Pushes a registry to a Pushgateway every ``interval`` seconds from a worker thread."""

    def __init__(
        self, url: str, registry: CollectorRegistry, *, job: str, interval: float = 15.0
    ) -> None:
        self.url = url
        self.registry = registry
        self.job = job
        self.interval = interval
        self.pushes: int = 0
        self.errors: int = 0
        self.last_error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="am-prom-push", daemon=True)
        self._thread.start()

    def push(self) -> None:
        """Push once now (on the caller's thread)."""
        from prometheus_client import push_to_gateway

        push_to_gateway(self.url, job=self.job, registry=self.registry, timeout=5)
        self.pushes += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.push()
            except Exception as err:  # the app goes on; tell once
                self.errors += 1
                if self.last_error is None:
                    _log.warning("telemetry: push to %s failed: %s", self.url, err)
                self.last_error = err

    def stop(self, final_push: bool = True) -> None:
        """Stop the thread (pushing one last time by default)."""
        self._stop.set()
        self._thread.join(5)
        if final_push:
            try:
                self.push()
            except Exception as err:
                self.last_error = err


def start_push(
    url: str,
    registry: CollectorRegistry,
    *,
    job: str = "asyncmachine",
    interval: float = 15.0,
) -> Pusher:
    """Push ``registry`` to the Pushgateway at ``url`` every ``interval`` seconds."""
    return Pusher(url, registry, job=job, interval=interval)


# ----- environment (AM_PROM_PUSH_URL)

_env_lock = threading.Lock()
_env: tuple[MachineCollector, Pusher] | None = None


def attach_env(mach: Machine) -> MachineCollector:
    """``AM_PROM_PUSH_URL``: track ``mach`` in the process's push collector.

    The job is the normalised ``AM_SERVICE``; ``AM_PROM_PUSH_INTERVAL``
    (seconds, default 15) and ``AM_PROM_REFERENCE_NAMES=1`` (the reference's
    metric names) tune it.
    """
    global _env
    with _env_lock:
        if _env is None:
            env = os.environ
            coll = MachineCollector(reference_names=env.get("AM_PROM_REFERENCE_NAMES") == "1")
            reg = CollectorRegistry()
            reg.register(coll)
            job = normalize_id(env.get("AM_SERVICE") or "asyncmachine")
            interval = float(env.get("AM_PROM_PUSH_INTERVAL") or 15.0)
            pusher = start_push(env["AM_PROM_PUSH_URL"], reg, job=job, interval=interval)
            _env = (coll, pusher)
            import atexit

            atexit.register(pusher.stop)
        coll = _env[0]
    coll.track(mach)
    return coll
