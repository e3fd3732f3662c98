"""OpenTelemetry traces (and logs) of machines; needs ``opentelemetry-api`` only.

    from opentelemetry import trace
    from asyncmachine_trio.telemetry import otel
    otel.attach(mach, trace.get_tracer("my-app"))

Span layout, per machine (names as the reference, without its grouping spans):

* ``mach:<id>`` - one span per machine, open until the machine is disposed
  (children of the parent machine's span for submachines);
* ``<State>`` - one span per *activation* of a state, open until the state
  is deactivated (a Multi state's re-activations are events on it);
* ``tx:<type> <States>`` - one span per transition (``transitions=True``),
  with the attributes ``am.machine.id``, ``am.tx.id``, ``am.mutation.type``,
  ``am.states.called`` / ``added`` / ``removed``, ``am.tx.accepted``,
  ``am.time.sum``, ``am.tx.auto`` (auto transitions only), ``am.source.machine``
  / ``am.source.tx`` (piped / remote mutations) and ``am.args.<name>`` (with
  ``args=True``);
  every handler that ran is an event on it; an activated ``Exception`` sets
  the ``error`` status (on the transition and on the Exception state span).

Every span gets an explicit parent kept per machine / state: the "current
span" of a task is never read or changed. A mutation sent to another process
over aRPC from a traced transition (``netmach.add1("X", event=e)``) carries the
W3C ``traceparent`` of that transition's span in its args
(:data:`ARG_TRACEPARENT`); the receiving machine's transition span becomes its
child, so one trace spans both processes.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..machine import tracing as _tracing
from ..machine.attached import PerMachine
from ..machine.logging import log_args_mapper
from ..machine.schema import EXCEPTION, HEALTHCHECK, HEARTBEAT
from ..machine.tracing import Tracer

if TYPE_CHECKING:
    from ..machine.machine import Machine
    from ..machine.transition import Event, Transition

__all__ = [
    "ARG_TRACEPARENT",
    "OtelTracer",
    "attach",
    "attach_env",
    "bind_logger",
    "detach",
    "traceparent",
    "tracer_of",
]

_log = logging.getLogger("asyncmachine_trio.telemetry")

#: the mutation arg carrying a W3C traceparent across processes (aRPC)
ARG_TRACEPARENT = "am_traceparent"

_propagator = TraceContextTextMapPropagator()
_default_mapper = log_args_mapper()
_by_machine: PerMachine[OtelTracer] = PerMachine()
# machine id -> its tracer, to find a parent's (a tracer lives as long as its machine)
_by_id: weakref.WeakValueDictionary[str, OtelTracer] = weakref.WeakValueDictionary()
_SKIP = frozenset((HEALTHCHECK, HEARTBEAT))


def _ctx(span: Span) -> Context:
    return set_span_in_context(span, Context())


class OtelTracer(Tracer):
    """The ``am.Tracer`` :func:`attach` binds (one per machine)."""

    def __init__(
        self,
        tracer: trace.Tracer,
        *,
        transitions: bool = True,
        states: bool = True,
        args: bool = False,
        noauto: bool = False,
        parent: Span | None = None,
        children: bool = True,
    ) -> None:
        self.tracer = tracer
        self.children = children
        self.states = states
        self.transitions = transitions
        self.args = args
        self.noauto = noauto
        self.parent = parent
        self.machine_span: Span | None = None
        #: open spans of active states
        self.state_spans: dict[str, Span] = {}
        self.tx_span: Span | None = None
        self._mach: Machine | None = None
        self._ctx: Context = Context()

    def tracer_id(self) -> str:
        return f"otel-{id(self):x}"

    def start(self, mach: Machine) -> None:
        """Open the machine span and the spans of the states active now."""
        self._mach = mach
        ctx = _ctx(self.parent) if self.parent is not None else Context()
        span = self.tracer.start_span(
            f"mach:{mach.id}",
            context=ctx,
            attributes={
                "am.machine.id": mach.id,
                "am.machine.parent_id": mach.parent_id,
                "am.machine.tags": mach.tags,
            },
        )
        self.machine_span = span
        self._ctx = _ctx(span)
        if self.states:
            for s in mach.active_states():
                self._open_state(s, mach.id, "")

    # ----- states

    def _open_state(self, state: str, mid: str, tx_id: str) -> None:
        self.state_spans[state] = self.tracer.start_span(
            state, context=self._ctx, attributes={"am.machine.id": mid, "am.tx.id": tx_id}
        )

    def _close_state(self, state: str) -> None:
        span = self.state_spans.pop(state, None)
        if span is not None:
            span.end()

    # ----- hooks

    def transition_start(self, transition: Transition) -> None:
        if not self.transitions:
            return
        mut = transition.mutation
        if mut.is_check or (self.noauto and mut.is_auto):
            return
        called = mut.called
        if len(called) == 1 and called[0] in _SKIP:
            return
        ctx = self._ctx
        links: list[Link] = []
        remote = mut.args.get(ARG_TRACEPARENT) if mut.args else None
        if isinstance(remote, str) and self.machine_span is not None:
            rctx = _propagator.extract({"traceparent": remote})
            if trace.get_current_span(rctx).get_span_context().is_valid:
                ctx = rctx
                links.append(Link(self.machine_span.get_span_context()))
        m = transition.machine
        attrs: dict[str, Any] = {
            "am.machine.id": m.id,
            "am.tx.id": transition.id,
            "am.mutation.type": str(mut.type),
            "am.states.called": called,
        }
        if mut.is_auto:
            attrs["am.tx.auto"] = True
        if mut.source is not None:
            attrs["am.source.machine"] = mut.source.mach_id
            attrs["am.source.tx"] = mut.source.tx_id
        if self.args and mut.args:
            mapper = m._args_mapper or _default_mapper
            for k, v in mapper(mut.args).items():
                attrs[f"am.args.{k}"] = v
        prefix = "!" if EXCEPTION in called else ""
        self.tx_span = self.tracer.start_span(
            f"{prefix}tx:{mut.type} {' '.join(called)}", context=ctx, links=links, attributes=attrs
        )

    def handler_end(self, transition: Transition, binding_id: str, name: str) -> None:
        span = self.tx_span
        if span is not None:
            span.add_event(name)  # the event's name is the handler's

    def transition_end(self, transition: Transition) -> None:
        span, self.tx_span = self.tx_span, None
        mut = transition.mutation
        if mut.is_check:
            return
        m = transition.machine
        before = transition._before
        after = transition._after if transition._after is not None else before
        added: list[str] = []
        removed: list[str] = []
        multi: list[str] = []
        if after is not before:
            names = m._names
            for i, (b, a) in enumerate(zip(before, after, strict=False)):
                if a == b:
                    continue
                if a % 2:
                    if b % 2:
                        multi.append(names[i])
                    added.append(names[i])
                elif b % 2:
                    removed.append(names[i])
        skip_states = (self.noauto and mut.is_auto) or not self.states
        if not skip_states:
            tx_id = transition.id
            for s in removed:
                self._close_state(s)
            for s in added:
                if s in multi and s in self.state_spans:
                    self.state_spans[s].add_event(f"{mut.type} {s}", {"am.tx.id": tx_id})
                else:
                    self._close_state(s)
                    self._open_state(s, m.id, tx_id)
        err_span = self.state_spans.get(EXCEPTION) if EXCEPTION in added else None
        if err_span is not None:
            err = m.err
            desc = f"{type(err).__name__}: {err}" if err is not None else "Exception"
            err_span.set_status(Status(StatusCode.ERROR, desc))
            if err is not None:
                err_span.record_exception(err)
        if span is None:
            return
        span.set_attributes(
            {
                "am.tx.accepted": transition.is_accepted,
                "am.states.added": added,
                "am.states.removed": removed,
                "am.time.sum": sum(after),
            }
        )
        if EXCEPTION in added:
            err = m.err
            span.set_status(Status(StatusCode.ERROR, f"{type(err).__name__}: {err}"))
        span.end()

    def machine_dispose(self, machine_id: str) -> None:
        self.close()

    def close(self) -> None:
        """End every open span of this machine (states, then the machine)."""
        if self.tx_span is not None:
            self.tx_span.end()
            self.tx_span = None
        for s in list(self.state_spans)[::-1]:
            self._close_state(s)
        if self.machine_span is not None:
            self.machine_span.end()
            self.machine_span = None
        if self._mach is not None:
            _by_machine.pop(self._mach, None)

    def context(self) -> Context:
        """The context of the innermost open span: the transition's, else the machine's."""
        span = self.tx_span or self.machine_span
        return _ctx(span) if span is not None else Context()


# ----- attaching


def tracer_of(mach: Machine) -> OtelTracer | None:
    """The :class:`OtelTracer` bound to ``mach``, if any."""
    return _by_machine.get(mach)


def attach(
    mach: Machine,
    tracer: trace.Tracer | None = None,
    *,
    transitions: bool = True,
    states: bool = True,
    args: bool = False,
    noauto: bool = False,
    parent: Span | None = None,
    children: bool = True,
) -> OtelTracer:
    """Trace ``mach`` with ``tracer`` (default: ``trace.get_tracer`` of the global provider).

    ``transitions``: a span per transition; ``states``: a span per state
    activation (and the error status on Exception's); ``args``: logged args as
    attributes; ``noauto``: skip auto transitions; ``parent``: the span the
    machine span is a child of (submachines: their parent machine's span).
    With ``children``, machines created later with ``parent=mach`` are traced
    too. Idempotent: returns the tracer already bound.
    """
    have = _by_machine.get(mach)
    if have is not None:
        return have
    if tracer is None:
        tracer = trace.get_tracer("asyncmachine_trio")
    if parent is None and mach._parent_id:
        parent_ot = _by_id.get(mach._parent_id)
        if parent_ot is not None and parent_ot.machine_span is not None:
            parent = parent_ot.machine_span
    ot = OtelTracer(
        tracer,
        transitions=transitions,
        states=states,
        args=args,
        noauto=noauto,
        parent=parent,
        children=children,
    )
    ot.start(mach)
    _by_machine[mach] = ot
    _by_id[mach.id] = ot
    mach.tracer_bind(ot)
    _install_hooks(children)
    return ot


def detach(mach: Machine) -> None:
    """Stop tracing ``mach`` and end its open spans (no error when not traced)."""
    ot = _by_machine.pop(mach, None)
    if ot is not None:
        ot.close()
        if ot in mach._tracers:
            mach.tracer_detach(ot.tracer_id())


def _child_hook(mach: Machine, parent: Machine | None) -> None:
    if parent is None:
        return
    pt = _by_machine.get(parent)
    if pt is None or not pt.children:
        return
    from .env import is_rpc_plumbing

    if not is_rpc_plumbing(mach):
        attach(
            mach,
            pt.tracer,
            transitions=pt.transitions,
            states=pt.states,
            args=pt.args,
            noauto=pt.noauto,
            parent=pt.machine_span,
        )


def traceparent(event: Event) -> str:
    """The W3C traceparent for work done on behalf of ``event`` ("" when not traced).

    The span of ``event``'s transition while it runs; afterwards (async
    handlers) the span of the handler's state while active; else the machine's.
    """
    ot = _by_machine.get(event.machine)
    if ot is None:
        return ""
    span: Span | None = None
    tx = event.machine._tx
    if ot.tx_span is not None and tx is not None and tx is event._tx:
        span = ot.tx_span
    elif event.state in ot.state_spans:
        span = ot.state_spans[event.state]
    else:
        span = ot.machine_span
    if span is None:
        return ""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=_ctx(span))
    return carrier.get("traceparent", "")


def _rpc_args(event: Event, args: dict[str, Any]) -> dict[str, Any]:
    """The rpc client's hook: add the caller's traceparent to a mutation's args."""
    if ARG_TRACEPARENT in args or event.machine not in _by_machine:
        return args
    tp = traceparent(event)
    return {**args, ARG_TRACEPARENT: tp} if tp else args


_hooks_lock = threading.Lock()


def _install_hooks(children: bool) -> None:
    with _hooks_lock:
        if children:
            _tracing.add_machine_hook(_child_hook)
        _tracing.rpc_args_hook = _rpc_args


# ----- environment


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "False")


_provider_lock = threading.Lock()
_env_tracer: trace.Tracer | None = None


def _tracer_from_env() -> trace.Tracer:
    """The global provider's tracer; when none was configured and the SDK and the
    OTLP proto-http exporter are installed, one exporting to the standard
    ``OTEL_EXPORTER_OTLP_*`` endpoint with ``service.name = AM_SERVICE``."""
    global _env_tracer
    with _provider_lock:
        if _env_tracer is not None:
            return _env_tracer
        provider = trace.get_tracer_provider()
        if type(provider).__name__ == "ProxyTracerProvider":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
                from opentelemetry.sdk.resources import Resource
                from opentelemetry.sdk.trace import TracerProvider
                from opentelemetry.sdk.trace.export import BatchSpanProcessor

                service = os.environ.get("AM_SERVICE") or "asyncmachine"
                sdk = TracerProvider(resource=Resource.create({"service.name": service}))
                sdk.add_span_processor(
                    BatchSpanProcessor(
                        OTLPSpanExporter(), max_export_batch_size=50, schedule_delay_millis=100
                    )
                )
                trace.set_tracer_provider(sdk)
                _log.info("telemetry: OpenTelemetry traces of %s go to OTLP/HTTP", service)
            except ImportError:
                _log.warning(
                    "telemetry: AM_OTEL_TRACE is set but no tracer provider is configured and"
                    " opentelemetry-sdk / opentelemetry-exporter-otlp-proto-http are missing"
                )
        _env_tracer = trace.get_tracer("asyncmachine_trio")
        return _env_tracer


def attach_env(mach: Machine) -> OtelTracer | None:
    """What ``AM_OTEL_TRACE`` (+ ``_TXS``, ``_ARGS``, ``_NOAUTO``) and ``AM_OTEL_LOG`` ask for."""
    ot = None
    if _env_flag("AM_OTEL_TRACE"):
        ot = attach(
            mach,
            _tracer_from_env(),
            transitions=_env_flag("AM_OTEL_TRACE_TXS"),
            args=_env_flag("AM_OTEL_TRACE_ARGS"),
            noauto=_env_flag("AM_OTEL_TRACE_NOAUTO"),
        )
    if _env_flag("AM_OTEL_LOG"):
        from ._otel_logs import bind_env_logger

        bind_env_logger(mach)
    return ot


def bind_logger(mach: Machine, logger_provider: Any = None, service: str = "") -> None:
    """Send ``mach``'s log lines to OpenTelemetry logs (see ``docs/telemetry.md``)."""
    from ._otel_logs import bind_logger as _bind

    _bind(mach, logger_provider, service)
