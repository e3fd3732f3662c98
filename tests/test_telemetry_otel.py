"""OpenTelemetry traces with the real SDK and an in-memory span exporter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from rpc_util import rpc_pair

import asyncmachine_trio as am
from asyncmachine_trio.machine import tracing
from asyncmachine_trio.telemetry import otel
from tests.examples_util import load_example

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def spans() -> Iterator[tuple[Any, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    tracing.remove_machine_hook(otel._child_hook)
    provider.shutdown()


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_expense_workflow_tree(backend: str, spans: Any) -> None:
    tracer, exporter = spans
    expense = load_example("expense")

    def hook(mach: am.Machine, parent: am.Machine | None) -> None:
        if mach.id == "expense":
            otel.attach(mach, tracer)

    tracing.add_machine_hook(hook)
    try:
        lines = anyio.run(expense.main, backend=backend)
    finally:
        tracing.remove_machine_hook(hook)
    assert lines[-1].startswith("done:")
    finished = exporter.get_finished_spans()
    # every span ended (the machine's disposal closed the open ones)
    (mach_span,) = by_name(finished, "mach:expense")
    assert mach_span.parent is None
    assert mach_span.attributes is not None
    assert mach_span.attributes["am.machine.id"] == "expense"
    root = mach_span.context.span_id
    trace_id = mach_span.context.trace_id
    assert all(s.context.trace_id == trace_id for s in finished)
    # one span per state activation, children of the machine span
    for state in (
        "CreatingExpense",
        "ExpenseCreated",
        "WaitingForApproval",
        "ApprovalGranted",
        "PaymentInProgress",
        "PaymentCompleted",
    ):
        (s,) = by_name(finished, state)
        assert parent_of(s) == root, state
    # CreatingExpense ended when ExpenseCreated started
    (c,) = by_name(finished, "CreatingExpense")
    (e,) = by_name(finished, "ExpenseCreated")
    assert c.end_time is not None and e.start_time is not None and c.end_time <= e.start_time
    # transitions: children of the machine span, with their attributes
    txs = [s for s in finished if s.name.startswith("tx:")]
    assert all(parent_of(s) == root for s in txs)
    approvals = by_name(finished, "tx:add ApprovalGranted")
    assert [a.attributes["am.tx.accepted"] for a in approvals if a.attributes] == [False, True]
    # the auto transition calls every Auto state; the first try is canceled
    autos = by_name(finished, "tx:add WaitingForApproval PaymentInProgress")
    assert [x.attributes["am.tx.accepted"] for x in autos if x.attributes] == [False, True]
    a = autos[1].attributes
    assert a is not None
    assert a["am.tx.auto"] is True
    assert a["am.machine.id"] == "expense"
    assert a["am.mutation.type"] == "add"
    called = ["WaitingForApproval", "PaymentInProgress"]
    assert list(a["am.states.called"]) == called  # type: ignore[arg-type]
    assert list(a["am.states.added"]) == ["WaitingForApproval"]  # type: ignore[arg-type]
    assert list(a["am.states.removed"]) == []  # type: ignore[arg-type]
    assert isinstance(a["am.time.sum"], int) and a["am.time.sum"] > 0
    (done,) = by_name(finished, "tx:add PaymentCompleted")
    assert done.attributes is not None
    assert list(done.attributes["am.states.removed"]) == ["PaymentInProgress"]  # type: ignore[arg-type]
    # handlers are events of their transition's span
    (created,) = by_name(finished, "tx:add CreatingExpense")
    assert "CreatingExpenseState" in [ev.name for ev in created.events]
    rejected = approvals[0]
    assert "ApprovalGrantedEnter" in [ev.name for ev in rejected.events]


def test_error_status_and_multi(spans: Any) -> None:
    tracer, exporter = spans

    class H:
        def boom_state(self, e: am.Event) -> None:
            raise ValueError("kaboom")

    mach = am.Machine({"Boom": am.State(), "M": am.State(multi=True)}, id="err-m", handlers=H())
    otel.attach(mach, tracer, args=True)
    mach.add1("M", {"name": "first"})
    mach.add1("M")
    mach.add1("Boom")
    assert mach.is_err()
    mach.dispose()
    finished = exporter.get_finished_spans()
    (exc,) = by_name(finished, "Exception")
    assert exc.status.status_code is StatusCode.ERROR
    assert "kaboom" in (exc.status.description or "")
    err_txs = [s for s in finished if s.status.status_code is StatusCode.ERROR]
    assert any(s.name.startswith("!tx:") or s.name.startswith("tx:") for s in err_txs)
    # a Multi state: one span, the re-activation is an event on it
    (m,) = by_name(finished, "M")
    assert [ev.name for ev in m.events] == ["add M"]
    (first,) = [
        s for s in by_name(finished, "tx:add M") if s.attributes and "am.args.name" in s.attributes
    ]
    assert first.attributes is not None and first.attributes["am.args.name"] == "first"
    assert otel.tracer_of(mach) is None


def test_children_and_explicit_parents(spans: Any) -> None:
    tracer, exporter = spans
    parent = am.Machine({"A": am.State()}, id="otel-parent")
    otel.attach(parent, tracer, transitions=False)
    child = am.Machine({"B": am.State()}, id="otel-child", parent=parent)
    assert otel.tracer_of(child) is not None
    child.add1("B")
    child.dispose()
    parent.dispose()
    finished = exporter.get_finished_spans()
    (p,) = by_name(finished, "mach:otel-parent")
    (c,) = by_name(finished, "mach:otel-child")
    assert parent_of(c) == p.context.span_id
    (b,) = by_name(finished, "B")
    assert parent_of(b) == c.context.span_id
    assert not [s for s in finished if s.name.startswith("tx:")]


@pytest.mark.trio
async def test_remote_mutation_joins_the_callers_trace(spans: Any) -> None:
    tracer, exporter = spans
    src = am.Machine({"A": am.State(), "B": am.State()}, id="otel-src")
    otel.attach(src, tracer)
    async with rpc_pair(src) as (_server, client):
        nm = client.netmach

        class Caller:
            def go_state(self, e: am.Event) -> None:
                nm.add1("A", event=e)

        caller = am.Machine({"Go": am.State()}, id="otel-caller", handlers=Caller())
        otel.attach(caller, tracer)
        caller.add1("Go")
        with trio.fail_after(5):
            await src.when1("A")
        caller.dispose()
    src.dispose()
    finished = exporter.get_finished_spans()
    (go,) = by_name(finished, "tx:add Go")
    (remote,) = by_name(finished, "tx:add A")
    # the server's transition is a child of the caller's transition span
    assert remote.context.trace_id == go.context.trace_id
    assert parent_of(remote) == go.context.span_id
    (src_span,) = by_name(finished, "mach:otel-src")
    assert [link.context.span_id for link in remote.links] == [src_span.context.span_id]


def test_otel_logs() -> None:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    lines: list[str] = []
    mach = am.Machine(
        {"A": am.State()},
        id="otel-log",
        log_level=am.LogLevel.CHANGES,
        logger=lambda _lvl, line: lines.append(line),
    )
    otel.bind_logger(mach, provider, "svc")
    mach.add1("A")
    mach.log("hello %s", "world")
    records = [r.log_record for r in exporter.get_finished_logs()]
    bodies = [r.body for r in records]
    assert bodies == ["[state] +A", "[exter] hello world"]
    assert records[0].severity_number is SeverityNumber.INFO3
    assert records[1].severity_number is SeverityNumber.INFO4
    assert records[0].attributes is not None
    assert records[0].attributes["asyncmachine.id"] == "otel-log"
    assert records[0].attributes["service.name"] == "svc"
    # the previous logger still gets every line (with its id prefix)
    assert [x.split("] ", 1)[1] for x in lines] == bodies
    provider.shutdown()
