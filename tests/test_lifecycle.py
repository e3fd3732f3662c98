"""semantics §5, 6, 7 and 9: transition lifecycle, auto states, Multi states, errors."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from conformance import HISTORY_HANDLERS

import asyncmachine_trio as am
from asyncmachine_trio.testing import inject_state

R = am.Result
NORELS = {"A": am.State(), "B": am.State(), "C": am.State(), "D": am.State()}
# the Go test suite's History recorder (BAny is bound there but never called)
HISTORY = sorted(HISTORY_HANDLERS)


from recorder import Rec  # noqa: E402


class TxTracer(am.Tracer):
    def __init__(self) -> None:
        self.txs: list[tuple[str, list[str], bool]] = []
        self.internal: list[Exception] = []

    def transition_end(self, transition: am.Transition) -> None:
        m = transition.mutation
        kind = str(m.type) + (":auto" if m.is_auto else "") + (":check" if m.is_check else "")
        self.txs.append((kind, list(m.called), transition.is_accepted))

    def internal_error(self, machine: am.Machine, err: Exception) -> None:
        self.internal.append(err)


def mk(
    schema: dict[str, Any] | None = None,
    *active: str,
    level: am.LogLevel = am.LogLevel.NOTHING,
    **kw: Any,
) -> tuple[am.Machine, list[str]]:
    lines: list[str] = []
    mach = am.Machine(
        schema if schema is not None else NORELS,
        id="lc",
        logger=lambda lvl, line: lines.append(line),
        dont_log_id=True,
        **kw,
    )
    if active:
        assert mach.set(list(active)) is R.EXECUTED
    mach.log_level = level
    return mach, lines


# ----- 5.2 phase order (History recorder)


def test_order_set_replaces_all() -> None:
    mach, _ = mk(None, "A", "B")
    rec = Rec(NORELS, only=HISTORY)
    mach.bind_handlers(rec)
    assert mach.set(["C"]) is R.EXECUTED
    assert rec.calls == [
        "AExit",
        "BExit",
        "CEnter",
        "AC",
        "BC",
        "AnyEnter",
        "AEnd",
        "BEnd",
        "CState",
        "AnyState",
    ]


def test_order_set_two_new() -> None:
    mach, _ = mk(None, "A", "B")
    rec = Rec(NORELS, only=HISTORY)
    mach.bind_handlers(rec)
    assert mach.set(["D", "C"]) is R.EXECUTED
    assert rec.calls == (
        [
            "AExit",
            "BExit",
            "DEnter",
            "CEnter",
            "AD",
            "AC",
            "BD",
            "BC",
            "AnyEnter",
            "AEnd",
            "BEnd",
            "DState",
            "CState",
            "AnyState",
        ]
    )


def test_order_self_handlers_test_self_handlers_order() -> None:
    mach, _ = mk(None, "A")
    rec = Rec(NORELS, only=HISTORY)
    mach.bind_handlers(rec)
    assert mach.set(["A", "B"]) is R.EXECUTED
    assert rec.calls == ["BEnter", "AA", "AB", "AnyEnter", "BState", "AnyState"]


def test_order_set_subset() -> None:
    mach, _ = mk(None, "A", "B")
    rec = Rec(NORELS, only=HISTORY)
    mach.bind_handlers(rec)
    mach.set(["A"])
    assert rec.calls == ["BExit", "AA", "AnyEnter", "BEnd", "AnyState"]
    # with BA bound it is called too
    mach2, _ = mk(None, "A", "B")
    rec2 = Rec(NORELS)
    mach2.bind_handlers(rec2)
    mach2.set(["A"])
    assert rec2.calls == ["BExit", "AA", "BA", "AnyEnter", "BEnd", "AnyState"]


def test_order_exits_after_sorted_state_state_uses_stored_order() -> None:
    schema = {**NORELS, "A": am.State(after=["B"]), "C": am.State(after=["D"])}
    mach, _ = mk(schema)
    inject_state(mach, ["A", "B"])
    rec = Rec(schema, only=HISTORY)
    mach.bind_handlers(rec)
    assert mach.set(["C", "D"]) is R.EXECUTED
    assert rec.calls == (
        [
            "BExit",
            "AExit",
            "DEnter",
            "CEnter",
            "AD",
            "AC",
            "BD",
            "BC",
            "AnyEnter",
            "BEnd",
            "AEnd",
            "DState",
            "CState",
            "AnyState",
        ]
    )


def test_order_remove_calls_state_state_not_self() -> None:
    mach, _ = mk(None, "A", "B", "C")
    rec = Rec(NORELS)
    mach.bind_handlers(rec)
    assert mach.remove1("B") is R.EXECUTED
    assert rec.calls == ["BExit", "AC", "BA", "BC", "CA", "AnyEnter", "BEnd", "AnyState"]


def test_order_multi_re_entry() -> None:
    schema = {"M": am.State(multi=True)}
    mach, _ = mk(schema, "M")
    rec = Rec(schema)
    mach.bind_handlers(rec)
    assert mach.add1("M") is R.EXECUTED
    assert rec.calls == ["MEnter", "MM", "AnyEnter", "MState", "AnyState"]
    assert mach.tick("M") == 3


def test_order_enters_follow_target_order_with_multi() -> None:
    # a re-entered Multi state keeps its place in target order
    schema = {"M": am.State(multi=True), "N": am.State()}
    mach, _ = mk(schema, "M")
    rec = Rec(schema, only=["MEnter", "NEnter", "MState", "NState"])
    mach.bind_handlers(rec)
    mach.add(["M", "N"])
    assert mach.active_states() == ["M", "N"]
    assert rec.calls == ["MEnter", "NEnter", "MState", "NState"]


def test_self_handlers_for_all_no_change_states() -> None:
    mach, _ = mk(None, "A")
    rec = Rec(NORELS, only=HISTORY)
    mach.bind_handlers(rec)
    mach.add(["B"])
    mach.add(["A"])
    assert rec.calls.count("AA") == 2
    assert rec.calls.count("BB") == 1


def test_no_negotiation_without_bindings() -> None:
    tracer = TxTracer()
    mach, lines = mk(None, level=am.LogLevel.OPS, tracers=[tracer])
    assert mach.add1("A") is R.EXECUTED
    assert not any(line.startswith("[handler") for line in lines)


def test_handler_names_are_snake_case() -> None:
    schema = {"DownloadingFile": am.State(), "RPCReady": am.State()}
    mach, _ = mk(schema)
    calls: list[str] = []

    class H:
        def downloading_file_enter(self, e: am.Event) -> None:
            calls.append(e.name)

        def rpc_ready_state(self, e: am.Event) -> None:
            calls.append(e.name)

        def downloading_file_rpc_ready(self, e: am.Event) -> None:
            calls.append(e.name)

    mach.bind_handlers(H())
    mach.add1("DownloadingFile")
    mach.add1("RPCReady")
    assert calls == ["DownloadingFileEnter", "DownloadingFileRPCReady", "RPCReadyState"]


# ----- 5.3 state-state handlers


def test_handler_state_state() -> None:
    mach, _ = mk(None, "A")
    rec = Rec(NORELS, only=["AB", "BA"])
    mach.bind_handlers(rec)
    mach.add1("B")
    assert rec.calls == ["AB"]


def test_handler_state_state_both_ways_when_nothing_changes() -> None:
    mach, _ = mk(None)
    mach.add(["B", "A"])
    assert mach.active_states() == ["B", "A"]
    rec = Rec(NORELS, only=["AB", "BA", "AA", "BB"])
    mach.bind_handlers(rec)
    mach.add1("A")
    # self handlers over the targets [A B], then pairs over StatesBefore [B A]
    assert rec.calls == ["AA", "BB", "BA", "AB"]


def test_handler_negotiation_state_state_cancels() -> None:
    mach, lines = mk(None, "A", level=am.LogLevel.OPS)
    rec = Rec(NORELS, reject=["AB"])
    mach.bind_handlers(rec)
    assert mach.add1("B") is R.CANCELED
    assert mach.active_states() == ["A"]
    assert "[cancel] (B A) by AB" in lines
    assert "AnyEnter" not in rec.calls


def test_state_state_iterates_snapshot_after_drop() -> None:
    # in an auto transition CB drops B, but later pairs with B (DB) are still
    # called; DB rejecting again changes nothing
    schema = {
        "A": am.State(auto=True),
        "B": am.State(auto=True),
        "C": am.State(),
        "D": am.State(),
    }
    mach, _ = mk(schema)
    rec = Rec(schema, only=["CA", "CB", "DA", "DB", "AnyEnter"], reject=["CB", "DB"])
    mach.bind_handlers(rec)
    assert mach.add(["C", "D"]) is R.EXECUTED
    assert rec.calls == ["AnyEnter", "CA", "CB", "DA", "DB", "AnyEnter"]
    assert mach.active_states() == ["A", "C", "D"]
    assert mach.tick("B") == 0


# ----- 5.4 which handlers cancel


@pytest.mark.parametrize("name", ["AExit", "BEnter", "AA", "AB", "AnyEnter"])
def test_negotiation_handlers_cancel(name: str) -> None:
    mach, _ = mk(None, "A")
    rec = Rec(NORELS, reject=[name])
    mach.bind_handlers(rec)
    res = mach.set(["B"]) if name == "AExit" else mach.add1("B")
    assert res is R.CANCELED
    assert mach.active_states() == ["A"]
    assert mach.clock() == {"A": 1, "B": 0, "C": 0, "D": 0, "Exception": 0}
    assert "AnyState" not in rec.calls
    assert not any(c.endswith("State") or c.endswith("End") for c in rec.calls)


@pytest.mark.parametrize("name", ["AEnd", "BState", "AnyState"])
def test_final_handlers_cannot_cancel(name: str) -> None:
    mach, _ = mk(None, "A")
    mach.bind_handlers(Rec(NORELS, reject=[name]))
    assert mach.set(["B"]) is R.EXECUTED
    assert mach.active_states() == ["B"]


def test_cancel_self_log_label() -> None:
    mach, lines = mk(None, "A", level=am.LogLevel.OPS)
    mach.bind_handlers(Rec(NORELS, reject=["AA"]))
    assert mach.add1("B") is R.CANCELED
    assert "[cancel:self] (B A) by AA" in lines


def test_self_handlers_cancellable_second_binding() -> None:
    mach, _ = mk(None, "A")
    history = Rec(NORELS, only=HISTORY)
    mach.bind_handlers(history)
    counter: list[int] = []

    class Rejecting:
        def a_a(self, e: am.Event) -> bool:
            counter.append(1)
            return False

    mach.bind_handlers(Rejecting())
    assert mach.set(["A", "B"], {"AACounter": 0}) is R.CANCELED
    assert counter == [1]
    assert history.calls.count("AA") == 1
    assert history.calls == ["BEnter", "AA"]


def test_first_rejecting_binding_stops_the_chain() -> None:
    mach, _ = mk(None)
    first = Rec(NORELS, only=["AEnter"], reject=["AEnter"])
    second = Rec(NORELS, only=["AEnter"])
    mach.bind_handlers(first)
    mach.bind_handlers(second)
    assert mach.add1("A") is R.CANCELED
    assert first.calls == ["AEnter"]
    assert second.calls == []


def test_bind_order_is_call_order() -> None:
    mach, _ = mk(None)
    order: list[str] = []

    def make(tag: str) -> object:
        class H:
            def a_enter(self, e: am.Event) -> None:
                order.append(tag + ":enter")

            def a_state(self, e: am.Event) -> None:
                order.append(tag + ":state")

        return H()

    mach.bind_handlers(make("1"))
    mach.bind_handlers(make("2"))
    mach.add1("A")
    assert order == ["1:enter", "2:enter", "1:state", "2:state"]


def test_return_values() -> None:
    # None accepts; a truthy non-bool accepts; only False rejects
    mach, _ = mk(None)
    mach.bind_handlers(Rec(NORELS, actions={"AEnter": lambda e: True, "BEnter": lambda e: 1}))
    assert mach.add1("A") is R.EXECUTED
    assert mach.add1("B") is R.EXECUTED
    assert mach.add1("C") is R.EXECUTED


# ----- 5.5 results


def test_result_check_executed_and_canceled() -> None:
    mach, _ = mk(None)
    mach.bind_handlers(Rec(NORELS, reject=["BEnter"]))
    assert mach.can_add1("A") is R.EXECUTED
    assert mach.can_add1("B") is R.CANCELED


def test_result_add_executed_only_if_targets_active() -> None:
    # a final-phase failure reverts: the result is canceled
    mach, _ = mk(None)
    mach.bind_handlers(Rec(NORELS, raise_=["BState"]))
    assert mach.add(["A", "B"]) is R.CANCELED


def test_result_remove_of_inactive_is_executed() -> None:
    mach, _ = mk(None, "A")
    assert mach.remove1("B") is R.EXECUTED
    assert mach.remove(["A", "B"]) is R.EXECUTED


# ----- 5.6 panics


def test_partial_negotiation_panic() -> None:
    mach, lines = mk(None, "A", level=am.LogLevel.OPS)
    rec = Rec(NORELS, raise_=["BEnter"])
    mach.bind_handlers(rec)
    assert mach.add(["B"]) is R.CANCELED
    assert mach.active_states() == ["Exception", "A"]
    assert set(mach.active_states()) == {"A", "Exception"}
    assert "[cancel] (B A) by recover" in lines
    assert "[recover] handling panic..." in lines
    assert isinstance(mach.err, ValueError)
    assert str(mach.err) == "BEnter panic"
    # no later handler of the failing transition ran, not even AnyEnter
    failing = rec.calls[: rec.calls.index("BEnter") + 1]
    assert failing == ["BEnter"]
    assert mach.clock() == {"A": 1, "B": 0, "C": 0, "D": 0, "Exception": 1}


def test_panic_exception_args() -> None:
    mach, _ = mk(None, "A")
    seen: list[am.AException | None] = []
    rec = Rec(NORELS, raise_=["BEnter"])
    rec2 = Rec(
        ["Exception"],
        only=["ExceptionState"],
        actions={"ExceptionState": lambda e: seen.append(am.parse_args(e.args, am.AException))},
    )
    mach.bind_handlers(rec)
    mach.bind_handlers(rec2)
    mach.add1("B", {"user": 1})
    assert len(seen) == 1
    exc = seen[0]
    assert exc is not None
    assert exc.err is mach.err
    assert exc.panic is not None
    assert exc.panic.called_states == ["B"]
    assert exc.panic.states_before == ["A"]
    assert isinstance(exc.panic.transition, am.Transition)
    assert "BEnter panic" in exc.err_trace
    assert am.args_key("Exception") == "_am__Exception"


def test_partial_final_panic() -> None:
    mach, lines = mk(None, level=am.LogLevel.OPS)

    class H(am.ExceptionHandler):
        def b_state(self, e: am.Event) -> None:
            raise ValueError("BState panic")

    mach.bind_handlers(H())
    assert mach.add(["A", "B", "C"]) is R.CANCELED
    assert set(mach.active_states()) == {"A", "Exception"}
    assert mach.clock() == {"A": 1, "B": 2, "C": 2, "D": 0, "Exception": 1}
    assert "[cancel] (A B C) by recover" in lines
    assert "[recover] partial final states as (A)" in lines
    err_lines = [line for line in lines if line.startswith("[error:add]")]
    assert len(err_lines) == 1
    assert err_lines[0].startswith("[error:add] A B C (BState panic)\n")
    assert "b_state" in err_lines[0]  # the trace names the handler


def test_final_panic_revert_runs_twice_for_multi() -> None:
    schema = {"M": am.State(multi=True), "N": am.State(multi=True), "X": am.State()}
    mach, _ = mk(schema, "M")
    assert mach.tick("M") == 1
    mach.bind_handlers(Rec(schema, raise_=["XState"]))
    assert mach.add(["M", "X"]) is R.CANCELED
    assert mach.clock() == {"M": 7, "N": 0, "X": 2, "Exception": 1}
    assert mach.active_states() == ["Exception", "M"]
    # a called Multi state newly activated before the failing one: 1 -> 5
    mach2, _ = mk(schema)
    mach2.bind_handlers(Rec(schema, raise_=["XState"]))
    assert mach2.add(["N", "X"]) is R.CANCELED
    assert mach2.clock() == {"M": 0, "N": 5, "X": 2, "Exception": 1}


def test_final_panic_in_end_handler_removes_nothing() -> None:
    mach, lines = mk(None, "A", level=am.LogLevel.OPS)
    rec = Rec(NORELS, raise_=["AEnd"])
    mach.bind_handlers(rec)
    assert mach.set(["B"]) is R.CANCELED
    # the End handler failed: the new states stay, remaining finals skipped
    assert "[recover] partial final states as (B)" in lines
    assert mach.clock() == {"A": 2, "B": 1, "C": 0, "D": 0, "Exception": 1}
    # no BState / AnyState for the failing transition; then Add(Exception) runs
    assert rec.calls == ["AExit", "BEnter", "AB", "AnyEnter", "AEnd", "BB", "AnyEnter", "AnyState"]


def test_final_panic_states_before_failing_keep_status() -> None:
    mach, _ = mk(None, "D")
    rec = Rec(NORELS, raise_=["BState"])
    mach.bind_handlers(rec)
    assert mach.set(["A", "B", "C"]) is R.CANCELED
    # D's End and A's State passed; B and C reverted
    assert mach.clock() == {"A": 1, "B": 2, "C": 2, "D": 2, "Exception": 1}
    assert "CState" not in rec.calls


def test_any_state_panic() -> None:
    tracer = TxTracer()
    schema = {**NORELS, "E": am.State(auto=True)}
    mach, lines = mk(schema, level=am.LogLevel.OPS, tracers=[tracer])
    raised: list[int] = []

    def once(e: am.Event) -> None:
        if not raised:
            raised.append(1)
            raise ValueError("AnyState panic")

    mach.bind_handlers(Rec(schema, actions={"AnyState": once}))
    assert mach.add1("A") is R.CANCELED
    assert "[recover] partial final states as (A)" in lines
    # the failing transition triggered no auto mutation; the Exception one did
    assert tracer.txs == [
        ("add", ["A"], False),
        ("add", ["Exception"], True),
        ("add:auto", ["E"], True),
    ]
    assert mach.clock() == {"A": 1, "B": 0, "C": 0, "D": 0, "E": 1, "Exception": 1}


def test_panic_in_mutation_calling_exception_adds_nothing() -> None:
    mach, _ = mk(None)
    rec = Rec(
        ["Exception"],
        only=["ExceptionEnter", "ExceptionState", "AnyState"],
        raise_=["ExceptionState"],
    )
    mach.bind_handlers(rec)
    first = ValueError("first")
    assert mach.add_err(first) is R.CANCELED
    assert mach.err is first
    assert rec.calls == ["ExceptionEnter", "ExceptionState"]
    # reverted once (the recovery was skipped): tick 1 -> 2
    assert mach.clock()["Exception"] == 2
    assert not mach.is_err()
    # still usable
    assert mach.add1("A") is R.EXECUTED


def test_panic_in_auto_transition_is_not_partial() -> None:
    schema = {"A": am.State(auto=True), "B": am.State(auto=True), "C": am.State()}
    mach, _ = mk(schema)
    rec = Rec(schema, raise_=["BEnter"])
    mach.bind_handlers(rec)
    assert mach.add1("C") is R.EXECUTED
    assert "AnyEnter" in rec.calls
    auto_calls = rec.calls[rec.calls.index("AnyState") + 1 :]
    # AEnter, then BEnter raises: no AnyEnter for the auto transition
    assert auto_calls[:2] == ["AEnter", "BEnter"]
    assert "AState" not in rec.calls
    assert mach.active_states() == ["Exception", "C"]


def test_auto_state_raising_livelock_guard(caplog: pytest.LogCaptureFixture) -> None:
    # the reference retries forever; the port stops the same failing auto
    # attempt from the same active states after auto_retry_limit failures
    schema = {"A": am.State(auto=True), "B": am.State(), "C": am.State()}
    tracer = TxTracer()
    mach, lines = mk(schema, tracers=[tracer], level=am.LogLevel.CHANGES)
    mach.auto_retry_limit = 3
    rec = Rec(schema, raise_=["AEnter"])
    mach.bind_handlers(rec)
    with caplog.at_level(logging.WARNING, logger="asyncmachine_trio"):
        assert mach.add1("B") is R.EXECUTED
    assert mach.active_states() == ["Exception", "B"]
    # the first attempt (from B), then 3 from (Exception B): the Exception
    # mutation of each failure tries the auto states again until the bound
    assert rec.calls.count("AEnter") == 4
    assert tracer.txs == [
        ("add", ["B"], True),
        ("add:auto", ["A"], False),
        ("add", ["Exception"], True),
        ("add:auto", ["A"], False),
        ("add", ["Exception"], True),
        ("add:auto", ["A"], False),
        ("add", ["Exception"], True),
        ("add:auto", ["A"], False),
        ("add", ["Exception"], True),
    ]
    assert mach.tick("Exception") == 7
    # reported: internal_errors, the tracers, the machine log, the logger
    errs = [e for e in mach.internal_errors if isinstance(e, am.AutoLivelockError)]
    assert len(errs) == 1
    assert tracer.internal == errs
    assert "A failed 3 times in a row" in str(errs[0])
    assert "AEnter panic" in str(errs[0])
    assert "[auto:livelock] A not retried after 3 failures" in lines
    assert any("auto livelock: A" in r.getMessage() for r in caplog.records)
    # progress (C activates): the next attempts count from zero again (three
    # from (Exception B C), Exception being active already)
    assert mach.add1("C") is R.EXECUTED
    assert rec.calls.count("AEnter") == 7
    assert mach.is_(["B", "C", "Exception"])
    # still usable
    assert mach.remove1("Exception") is R.EXECUTED


def test_auto_state_final_raising_livelock_guard() -> None:
    schema = {"A": am.State(auto=True), "B": am.State()}
    mach, _ = mk(schema)
    mach.auto_retry_limit = 2
    rec = Rec(schema, raise_=["AState"])
    mach.bind_handlers(rec)
    assert mach.add1("B") is R.EXECUTED
    assert rec.calls.count("AState") == 3
    # each failure: A applied (+1), reverted (+1); Exception re-entered 3 times
    assert mach.clock() == {"A": 6, "B": 1, "Exception": 5}
    assert isinstance(mach.internal_errors[-1], am.AutoLivelockError)


def test_auto_retried_after_a_failed_auto_transition() -> None:
    # the Exception mutation of a failed auto transition triggers the auto
    # states again, as in the reference: a handler failing once is retried
    n = 0

    def flaky(e: am.Event) -> None:
        nonlocal n
        n += 1
        if n == 1:
            raise ValueError("first")

    schema = {"A": am.State(auto=True), "B": am.State(), "G": am.State(auto=True)}
    mach, _ = mk(schema)
    rec = Rec(schema, actions={"AEnter": flaky})
    mach.bind_handlers(rec)
    assert mach.add1("B") is R.EXECUTED
    assert mach.is_(["A", "G", "B", "Exception"])
    assert rec.calls.count("GState") == 1
    assert mach.internal_errors == []


def test_base_exception_propagates_and_machine_stays_usable() -> None:
    mach, _ = mk(None)

    def interrupt(e: am.Event) -> None:
        mach.add1("C")  # queued, then dropped with the queue
        raise KeyboardInterrupt

    mach.bind_handlers(Rec(NORELS, actions={"AEnter": interrupt}))
    with pytest.raises(KeyboardInterrupt):
        mach.add1("A")
    assert mach.transition is None
    assert mach.queue_len() == 0
    assert mach.active_states() == []
    assert mach.err is None
    assert not mach.is_err()
    assert mach.add1("B") is R.EXECUTED
    assert mach.active_states() == ["B"]


def test_base_exception_in_final_handler_no_revert() -> None:
    mach, _ = mk(None)

    def interrupt(e: am.Event) -> None:
        raise KeyboardInterrupt

    mach.bind_handlers(Rec(NORELS, actions={"AState": interrupt}))
    with pytest.raises(KeyboardInterrupt):
        mach.add1("A")
    # dropped where it stopped: A was applied, nothing reverted
    assert mach.active_states() == ["A"]
    assert mach.tick("A") == 1
    assert not mach.is_err()
    assert mach.add1("B") is R.EXECUTED


def test_panic_to_exception_false_propagates() -> None:
    mach, _ = mk(None, panic_to_exception=False)
    mach.bind_handlers(Rec(NORELS, raise_=["AEnter"]))
    with pytest.raises(ValueError, match="AEnter panic"):
        mach.add1("A")
    assert mach.err is None
    assert not mach.is_err()
    assert mach.transition is None
    assert mach.add1("B") is R.EXECUTED


# ----- 5.6 handler timeouts


def sleepy(seconds: float = 0.03) -> Callable[[am.Event], None]:
    def handler(e: am.Event) -> None:
        time.sleep(seconds)

    return handler


def test_handler_timeout_final() -> None:
    tracer = TxTracer()
    mach, lines = mk(None, level=am.LogLevel.DECISIONS, handler_timeout=0.01, tracers=[tracer])
    mach.bind_handlers(Rec(NORELS, actions={"AState": sleepy()}), id="slow")
    assert mach.add1("A") is R.CANCELED
    assert mach.active_states() == []
    assert mach.tick("A") == 2
    assert mach.err is None
    assert not mach.is_err()
    errs = mach.internal_errors
    assert len(errs) == 1
    assert isinstance(errs[0], am.HandlerTimeoutError)
    assert str(errs[0]).startswith("handler timeout: AState from slow: ")
    assert tracer.internal == errs
    assert "[cancel] (A) by timeout" in lines
    assert "[handler:timeout]: AState from slow" in lines


def test_handler_timeout_negotiation() -> None:
    mach, _ = mk(None, "B", handler_timeout=0.01)
    rec = Rec(NORELS, actions={"AEnter": sleepy()})
    mach.bind_handlers(rec)
    assert mach.add1("A") is R.CANCELED
    assert mach.active_states() == ["B"]
    assert mach.tick("A") == 0
    assert "AnyEnter" not in rec.calls
    assert len(mach.internal_errors) == 1
    assert mach.err is None


def test_handler_timeout_skips_remaining_bindings() -> None:
    mach, _ = mk(None, handler_timeout=0.01)
    first = Rec(NORELS, only=["AEnter"], actions={"AEnter": sleepy()})
    second = Rec(NORELS, only=["AEnter"])
    mach.bind_handlers(first)
    mach.bind_handlers(second)
    assert mach.add1("A") is R.CANCELED
    assert second.calls == []


def test_handler_timeout_any_state_reverts_nothing() -> None:
    mach, _ = mk(None, handler_timeout=0.01)
    mach.bind_handlers(Rec(NORELS, actions={"AnyState": sleepy()}))
    assert mach.add1("A") is R.CANCELED
    assert mach.active_states() == ["A"]
    assert mach.tick("A") == 1
    assert not mach.is_err()


def test_handler_timeout_none_disables() -> None:
    mach, _ = mk(None, handler_timeout=None)
    mach.bind_handlers(Rec(NORELS, actions={"AState": sleepy(0.02)}))
    assert mach.add1("A") is R.EXECUTED
    assert mach.internal_errors == []


def test_handler_timeout_default_and_validation() -> None:
    mach, _ = mk(None)
    assert mach.handler_timeout == 0.1
    with pytest.raises(am.ArgumentError):
        am.Machine(NORELS, handler_timeout=-1)


# ----- 5.7 Event, 5.8 Transition


def test_event_fields_and_is_valid() -> None:
    mach, _ = mk(None, "A")
    seen: dict[str, Any] = {}

    def d_enter(e: am.Event) -> None:
        tx = e.transition
        assert tx is not None
        seen.update(
            name=e.name,
            machine=e.machine,
            machine_id=e.machine_id,
            args=e.args,
            id=e.id,
            transition_id=e.transition_id,
            tx_id=tx.id,
            mutation=e.mutation,
            valid=e.is_valid(),
            active=mach.active_states(),
            target=list(tx.target_states),
            called=list(tx.called_states),
            before=list(tx.states_before),
            type=tx.type,
            is_auto=tx.is_auto,
            accepted=tx.is_accepted,
            completed=tx.is_completed,
            clock_before=tx.clock_before,
            clock_after=tx.clock_after,
            tx_args=tx.args,
        )
        seen["event"] = e

    mach.bind_handlers(Rec(NORELS, actions={"DEnter": d_enter}))
    args = {"k": "v"}
    assert mach.set(["D"], args) is R.EXECUTED
    assert seen["name"] == "DEnter"
    assert seen["machine"] is mach
    assert seen["machine_id"] == "lc"
    assert seen["args"] is args
    assert seen["tx_args"] is args
    assert seen["id"] == seen["transition_id"] == seen["tx_id"]
    assert re.fullmatch(r"[0-9a-f]{16}", seen["id"])
    assert seen["mutation"].called == ["D"]
    assert seen["valid"] is True
    assert seen["active"] == ["A"]
    assert seen["target"] == ["D"]
    assert seen["called"] == ["D"]
    assert seen["before"] == ["A"]
    assert seen["type"] is am.MutationType.SET
    assert seen["is_auto"] is False
    assert seen["accepted"] is True
    assert seen["completed"] is False
    assert seen["clock_before"] == {"A": 1, "B": 0, "C": 0, "D": 0, "Exception": 0}
    # predicted during negotiation (4.4)
    assert seen["clock_after"] == {"A": 2, "B": 0, "C": 0, "D": 1, "Exception": 0}
    # after the transition
    assert seen["event"].is_valid() is False
    assert seen["event"].transition is None


def test_transition_after_completion() -> None:
    last = am.LastTxTracer()
    mach, _ = mk(None, "A", tracers=[last])
    mach.add1("B")
    tx = last.last
    assert tx is not None
    assert tx.is_completed is True
    assert tx.is_accepted is True
    assert list(tx.time_before) == [1, 0, 0, 0, 0]
    assert list(tx.time_after) == [1, 1, 0, 0, 0]
    assert tx.clock_after == {"A": 1, "B": 1, "C": 0, "D": 0, "Exception": 0}
    mach.bind_handlers(Rec(NORELS, reject=["CEnter"]))
    mach.add1("C")
    tx = last.last
    assert tx is not None
    assert tx.is_accepted is False
    assert tx.is_completed is True
    assert list(tx.time_after) == list(tx.time_before)


def test_final_handlers_see_new_states() -> None:
    mach, _ = mk(None, "A")
    seen: list[Any] = []
    mach.bind_handlers(
        Rec(
            NORELS,
            actions={
                "DState": lambda e: seen.append((mach.active_states(), mach.is1("A"))),
                "AEnd": lambda e: seen.append(mach.tick("A")),
            },
        )
    )
    mach.set(["D"])
    assert seen == [2, (["D"], False)]


def test_transition_string_with_steps() -> None:
    mach, _ = mk(None, "A", log_steps=True)
    mach.verify_states(["A", "B", "C", "D", "Exception"])
    seen: list[tuple[str, str]] = []

    class H:
        def a_exit(self, e: am.Event) -> None:
            pass

        def d_enter(self, e: am.Event) -> None:
            tx = e.transition
            assert tx is not None
            seen.append((e.id, str(tx)))

    mach.bind_handlers(H())
    mach.set(["D"])
    (tx_id, text), *_ = seen
    assert text == (
        f"tx#{tx_id}\n[set] D\n- called **D**\n- activate **D**\n- deactivate **A**\n"
        "- handler **A**Exit"
    )


def test_transition_string_without_steps() -> None:
    last = am.LastTxTracer()
    mach, _ = mk(None, tracers=[last])
    mach.add(["B", "A"])
    tx = last.last
    assert tx is not None
    assert str(tx) == f"tx#{tx.id}\n[add] A B"
    assert tx.steps == []


def test_transition_string_with_source() -> None:
    last = am.LastTxTracer()
    mach, _ = mk(None, tracers=[last])
    src: list[str] = []

    def a_state(e: am.Event) -> None:
        src.append(e.id)
        mach.add1("B", event=e)

    mach.bind_handlers(Rec(NORELS, actions={"AState": a_state}))
    mach.add1("A")
    tx = last.last
    assert tx is not None
    assert str(tx) == f"tx#{tx.id}\n[add] B\nsource: [{src[0]}](lc/{src[0]}/t0)"


# ----- 5.1 binding


def test_binding_ids() -> None:
    mach, lines = mk(None, level=am.LogLevel.OPS)
    bid = mach.bind_handlers(object(), id="my handlers!/1")
    assert bid == "myhandlers1"
    anon = mach.bind_handlers(object())
    assert re.fullmatch(r"anon-[0-9a-f]{4}", anon)
    assert mach.handlers == ["myhandlers1", anon]
    assert lines == ["[handlers] bind 0:myhandlers1", f"[handlers] bind 1:{anon}"]


def test_detach_handlers() -> None:
    mach, lines = mk(None, level=am.LogLevel.OPS)
    rec = Rec(NORELS)
    bid = mach.bind_handlers(rec)
    mach.detach_handlers(bid)
    assert mach.handlers == []
    assert f"[handlers] detach {bid}" in lines
    mach.add1("A")
    assert rec.calls == []
    with pytest.raises(am.AsyncMachineError):
        mach.detach_handlers(bid)


def test_ambiguous_handler_name_is_schema_error() -> None:
    schema = {"Foo": {}, "BarBaz": {}, "FooBar": {}, "Baz": {}}
    mach, _ = mk(schema)

    class H:
        def foo_bar_baz(self, e: am.Event) -> None:  # FooBarBaz = Foo+BarBaz or FooBar+Baz
            pass

    with pytest.raises(am.SchemaError):
        mach.bind_handlers(H())
    assert mach.handlers == []


def test_async_negotiation_handler_is_schema_error() -> None:
    mach, _ = mk(None)

    class H:
        async def a_enter(self, e: am.Event) -> None:
            pass

    class H2:
        async def a_b(self, e: am.Event) -> None:
            pass

    with pytest.raises(am.SchemaError):
        mach.bind_handlers(H())
    with pytest.raises(am.SchemaError):
        mach.bind_handlers(H2())


def test_async_final_handler_binds() -> None:
    mach, _ = mk(None)

    class H:
        async def a_state(self, e: am.Event) -> None:
            pass

    mach.bind_handlers(H())
    assert len(mach.handlers) == 1


def test_non_handler_attributes_ignored() -> None:
    mach, _ = mk(None)

    class H:
        not_a_state_enter = 1
        some_value = "x"

        def helper_method(self) -> None:
            pass

        def a_state(self, e: am.Event) -> None:
            pass

    mach.bind_handlers(H())
    assert mach.add1("A") is R.EXECUTED


def test_first_bind_re_adds_existing_error() -> None:
    mach, _ = mk(None)
    err = ValueError("early")
    mach.add_err(err)
    assert mach.tick("Exception") == 1
    seen: list[Any] = []
    mach.bind_handlers(
        Rec(
            ["Exception"],
            actions={"ExceptionState": lambda e: seen.append(am.parse_args(e.args, am.AException))},
        )
    )
    assert mach.tick("Exception") == 3
    assert len(seen) == 1 and seen[0] is not None and seen[0].err is err


# ----- 6 auto states


def test_auto_states_basic_log() -> None:
    schema = {**NORELS, "B": am.State(auto=True, require=["A"])}
    mach, lines = mk(schema, level=am.LogLevel.OPS)
    assert mach.add(["A"]) is R.EXECUTED
    assert mach.active_states() == ["A", "B"]
    assert "[auto] B" in lines


def test_auto_not_triggered_by_noop_transition() -> None:
    tracer = TxTracer()
    schema = {"A": am.State(), "E": am.State(auto=True, require=["X"]), "X": am.State()}
    mach, _ = mk(schema, "A", tracers=[tracer])
    tracer.txs.clear()
    mach.add1("A")  # nothing changes
    assert tracer.txs == [("add", ["A"], True)]


def test_auto_not_triggered_by_health_mutation() -> None:
    tracer = TxTracer()
    schema = {
        "Heartbeat": am.State(multi=True),
        "Healthcheck": am.State(),
        "A": am.State(auto=True),
        "B": am.State(),
    }
    mach, _ = mk(schema, tracers=[tracer])
    assert mach.add1("Heartbeat") is R.EXECUTED
    assert mach.add1("Healthcheck") is R.EXECUTED
    assert mach.add1("Heartbeat") is R.EXECUTED
    assert not mach.is1("A")
    assert [t[0] for t in tracer.txs] == ["add", "add", "add"]
    assert mach.add(["Heartbeat", "B"]) is R.EXECUTED
    assert mach.is1("A")


def test_auto_mutations_do_not_chain() -> None:
    schema = {
        "A": am.State(auto=True, remove=["D"]),
        "B": am.State(auto=True),
        "C": am.State(),
        "D": am.State(remove=["B"]),
    }
    tracer = TxTracer()
    mach, _ = mk(schema, tracers=[tracer])
    mach.set(["D"])
    # auto [A] (B is removed by the active D); A removes D, which would free B,
    # but an auto transition never triggers another one
    assert tracer.txs == [("set", ["D"], True), ("add:auto", ["A"], True)]
    assert mach.active_states() == ["A"]
    mach.add1("A")  # no change: no attempt
    assert not mach.is1("B")
    assert len(tracer.txs) == 3
    mach.add1("C")
    assert tracer.txs[-1] == ("add:auto", ["B"], True)
    assert mach.is1("B")


def test_auto_skips_states_removed_by_active() -> None:
    schema = {"A": am.State(auto=True), "B": am.State(remove=["A"]), "C": {}}
    tracer = TxTracer()
    mach, lines = mk(schema, level=am.LogLevel.EVERYTHING, tracers=[tracer])
    mach.add1("B")
    assert mach.active_states() == ["B"]
    assert tracer.txs == [("add", ["B"], True)]
    assert "[auto:rel:remove] A by B" in lines


def test_auto_collected_in_state_order() -> None:
    schema = {"Z": am.State(auto=True), "A": am.State(), "M": am.State(auto=True)}
    tracer = TxTracer()
    mach, _ = mk(schema, tracers=[tracer])
    mach.add1("A")
    assert tracer.txs[1] == ("add:auto", ["Z", "M"], True)


def test_partial_auto_by_state_state() -> None:
    schema = {"A": am.State(auto=True), "B": am.State(auto=True), "C": am.State()}
    mach, _ = mk(schema)
    rec = Rec(schema, only=["CB", "BState"], reject=["CB"])
    mach.bind_handlers(rec)
    assert mach.add1("C") is R.EXECUTED
    assert mach.active_states() == ["A", "C"]
    assert rec.calls == ["CB"]


def test_partial_auto_by_enter() -> None:
    schema = {
        "A": am.State(auto=True),
        "B": am.State(auto=True, add=["D"]),
        "C": am.State(),
        "D": am.State(),
    }
    mach, _ = mk(schema)
    rec = Rec(schema, only=["BEnter", "BState", "DEnter"], reject=["BEnter"])
    mach.bind_handlers(rec)
    assert mach.add1("C") is R.EXECUTED
    assert mach.active_states() == ["A", "C"]
    assert mach.not1("D")
    assert rec.calls == ["BEnter", "DEnter"]


def test_partial_auto_by_self_handler() -> None:
    schema = {"A": am.State(auto=True), "B": am.State(auto=True), "C": am.State()}
    mach, _ = mk(schema)
    rec = Rec(schema, only=["CC", "BState", "AnyEnter"], reject=["CC"])
    mach.bind_handlers(rec)
    assert mach.add1("C") is R.EXECUTED
    assert mach.active_states() == ["C"]
    # the auto transition is canceled by the non-Auto state's self handler
    assert rec.calls == ["AnyEnter", "CC"]


def test_partial_auto_any_enter_cancels() -> None:
    schema = {"A": am.State(auto=True), "C": am.State()}
    mach, _ = mk(schema)
    calls: list[bool] = []

    def any_enter(e: am.Event) -> bool:
        calls.append(e.mutation.is_auto)
        return not e.mutation.is_auto

    mach.bind_handlers(Rec(schema, only=["AnyEnter"], actions={"AnyEnter": any_enter}))
    assert mach.add1("C") is R.EXECUTED
    assert calls == [False, True]
    assert mach.active_states() == ["C"]


def test_partial_auto_all_dropped_with_active_states_not_canceled() -> None:
    schema = {"A": am.State(auto=True), "C": am.State()}
    tracer = TxTracer()
    mach, _ = mk(schema, tracers=[tracer])
    rec = Rec(schema, only=["AEnter", "AnyEnter", "AnyState"], reject=["AEnter"])
    mach.bind_handlers(rec)
    assert mach.add1("C") is R.EXECUTED
    assert rec.calls == ["AnyEnter", "AnyState", "AEnter", "AnyEnter", "AnyState"]
    assert tracer.txs[-1] == ("add:auto", ["A"], True)
    assert mach.active_states() == ["C"]
    assert mach.clock() == {"A": 0, "C": 1, "Exception": 0}


def test_partial_auto_nothing_active_all_dropped_canceled() -> None:
    schema = {"A": am.State(auto=True), "B": am.State(remove=["B"])}
    tracer = TxTracer()
    mach, _ = mk(schema, tracers=[tracer])
    rec = Rec(schema, only=["AEnter", "AnyEnter"], reject=["AEnter"])
    mach.bind_handlers(rec)
    mach.add1("B")
    mach.remove1("B")  # changes the clock with nothing left active
    assert tracer.txs[-1] == ("add:auto", ["A"], False)
    assert rec.calls[-1] == "AEnter"  # no AnyEnter: step 5 canceled


def test_auto_drop_skips_next_self_handler_quirk() -> None:
    # semantics §5.2 / 6.2: an active Auto state's self handler rejects in the auto
    # transition: it is dropped, the next target gets no self handler
    schema = {
        "A": am.State(auto=True),
        "B": am.State(),
        "D": am.State(),
        "E": am.State(auto=True, require=["F"]),
        "F": am.State(),
    }
    mach, _ = mk(schema)
    mach.set(["A", "B", "D"])
    assert mach.active_states() == ["A", "B", "D"]

    def a_a(e: am.Event) -> bool:
        return not e.mutation.is_auto

    rec = Rec(schema, only=["AA", "BB", "DD", "FF"], actions={"AA": a_a})
    mach.bind_handlers(rec)
    assert mach.add1("F") is R.EXECUTED
    n = len(["AA", "BB", "DD"])  # self handlers of Add(F)
    assert rec.calls[:n] == ["AA", "BB", "DD"]
    # auto Add(E): targets [A B D F E]; AA rejects and drops A, BB is skipped
    assert rec.calls[n:] == ["AA", "DD", "FF"]
    assert mach.is_(["A", "B", "D", "F", "E"])


def test_auto_last_self_handler_rejecting_cancels_quirk() -> None:
    schema = {
        "A": am.State(auto=True),
        "E": am.State(auto=True, require=["F"]),
        "F": am.State(),
    }
    mach, _ = mk(schema)
    mach.set(["A"])

    def a_a(e: am.Event) -> bool:
        return not e.mutation.is_auto

    rec = Rec(schema, only=["AA", "FF", "AnyEnter", "EEnter"], actions={"AA": a_a})
    mach.bind_handlers(rec)
    assert mach.add1("F") is R.EXECUTED
    # Add(F): AA, AnyEnter; auto Add(E): targets [A F E]: AA rejects and is
    # the last dispatch (F skipped) -> the whole auto transition is canceled
    assert rec.calls == ["AA", "AnyEnter", "EEnter", "AA"]
    assert mach.not1("E")
    assert mach.is_(["A", "F"])


def test_auto_exit_rejecting_cancels_auto_transition() -> None:
    schema = {"A": am.State(auto=True), "E": am.State(auto=True, remove=["A"]), "B": {}}
    mach, _ = mk(schema)
    mach.set(["A"])  # auto E would remove A: E is not removed by A, so it is tried
    assert mach.active_states() == ["E"]
    mach2, _ = mk(schema)
    rec = Rec(schema, only=["AExit"], reject=["AExit"])
    mach2.bind_handlers(rec)
    mach2.set(["A"])
    assert rec.calls == ["AExit"]
    assert mach2.active_states() == ["A"]
    assert mach2.tick("E") == 0


# ----- 7 Multi


def test_multi_re_entry_cancels_state_ctx_and_resolves_waiters() -> None:
    schema = {"M": am.State(multi=True), "X": am.State(add=["M"])}
    mach, _ = mk(schema, "M")
    ctx = mach.new_state_ctx("M")
    w = mach.when_ticks("M", 2)
    nxt = mach.when_next_active("M")
    rec = Rec(schema, only=["MExit", "MEnd", "MEnter", "MState"])
    mach.bind_handlers(rec)
    mach.add1("X")  # implied Multi: no re-entry
    assert mach.tick("M") == 1
    assert not ctx.expired
    assert rec.calls == []
    mach.add1("M")
    assert mach.tick("M") == 3
    assert ctx.expired
    assert w.is_set() and nxt.is_set()
    assert rec.calls == ["MEnter", "MState"]


def test_multi_set_re_enters() -> None:
    schema = {"M": am.State(multi=True), "N": am.State()}
    mach, _ = mk(schema, "M", "N")
    mach.set(["M", "N"])
    assert mach.clock() == {"M": 3, "N": 1, "Exception": 0}


def test_exception_is_multi() -> None:
    mach, _ = mk(None)
    for i in range(3):
        mach.add_err(ValueError(str(i)))
        assert mach.tick("Exception") == 2 * i + 1
    assert str(mach.err) == "2"


# ----- 9 errors


def test_add_err_state() -> None:
    mach, _ = mk(None)
    err = ValueError("test")
    assert mach.add_err_state("B", err) is R.EXECUTED
    assert mach.add_err(err) is R.EXECUTED
    assert mach.is1("B")
    assert mach.is_err()
    assert mach.tick("Exception") == 3
    assert mach.err is err


def test_add_err_args_merge_and_key() -> None:
    mach, _ = mk(None)
    seen: list[dict[str, Any]] = []
    mach.bind_handlers(
        Rec(["Exception"], actions={"ExceptionState": lambda e: seen.append(dict(e.args))})
    )
    err = ValueError("x")
    mach.add_err(err, {"user": 1})
    assert set(seen[0]) == {"user", "_am__Exception"}
    exc = seen[0]["_am__Exception"]
    assert isinstance(exc, am.AException)
    assert exc.err is err
    assert exc.panic is None


def test_err_set_even_if_canceled_and_never_cleared() -> None:
    mach, _ = mk(None)
    mach.bind_handlers(Rec(["Exception"], reject=["ExceptionEnter"]))
    err = ValueError("x")
    assert mach.add_err(err) is R.CANCELED
    assert mach.err is err
    assert not mach.is_err()
    mach2, _ = mk(None)
    mach2.add_err(err)
    mach2.remove1("Exception")
    assert not mach2.is_err()
    assert mach2.err is err


def test_add_err_none_is_canceled() -> None:
    mach, _ = mk(None)
    assert mach.add_err(None) is R.CANCELED  # type: ignore[arg-type]
    assert mach.err is None
    assert not mach.is_err()


def test_on_error_and_on_change() -> None:
    mach, _ = mk(None)
    errors: list[tuple[am.Machine, Exception]] = []
    changes: list[tuple[list[int], list[int]]] = []
    mach.on_error(lambda m, e: errors.append((m, e)))
    mach.on_change(lambda m, before, after: changes.append((list(before), list(after))))
    err = ValueError("x")
    mach.add_err_state("A", err)
    assert errors == [(mach, err)]
    assert changes == [([0, 0, 0, 0, 0], [1, 0, 0, 0, 1])]
    mach.bind_handlers(Rec(NORELS, reject=["BEnter"]))
    changes.clear()
    mach.add1("B")  # canceled: still reported, time unchanged
    # (the first binding re-added the error: Exception 3)
    assert changes == [([1, 0, 0, 0, 3], [1, 0, 0, 0, 3])]


def test_panic_to_err_context_managers() -> None:
    mach, _ = mk(None)
    with mach.panic_to_err():
        raise ValueError("test")
    assert mach.is_err()
    assert str(mach.err) == "test"
    mach2, _ = mk(None)
    with mach2.panic_to_err_state("B", {"k": 1}):
        raise RuntimeError("to state")
    assert mach2.is_(["B", "Exception"])
    assert isinstance(mach2.err, RuntimeError)
    mach3, _ = mk(None)
    with mach3.panic_to_err():
        pass
    assert not mach3.is_err()


def test_panic_to_err_reraises_when_off_or_disposed() -> None:
    mach, _ = mk(None, panic_to_exception=False)
    with pytest.raises(ValueError), mach.panic_to_err():
        raise ValueError("x")
    assert not mach.is_err()
    mach2, _ = mk(None)
    mach2.dispose()
    with pytest.raises(ValueError), mach2.panic_to_err_state("B"):
        raise ValueError("x")


def test_panic_to_err_base_exception_not_caught() -> None:
    mach, _ = mk(None)
    with pytest.raises(KeyboardInterrupt), mach.panic_to_err():
        raise KeyboardInterrupt
    assert not mach.is_err()


def test_exception_handler_log_lines() -> None:
    mach, lines = mk(None, level=am.LogLevel.CHANGES, log_stack_trace=False)
    mach.bind_handlers(am.ExceptionHandler())
    mach.add_err(ValueError("boom\n"))
    assert lines == ["[state] +Exception", "[error] boom"]


def test_exception_handler_log_with_trace() -> None:
    mach, lines = mk(None, level=am.LogLevel.CHANGES)
    mach.bind_handlers(am.ExceptionHandler())
    try:
        raise ValueError("boom")
    except ValueError as err:
        mach.add_err(err)
    errs = [line for line in lines if line.startswith("[error]")]
    assert len(errs) == 1
    assert errs[0].startswith("[error] boom\n")
    assert "test_exception_handler_log_with_trace" in errs[0]


def test_exception_handler_panic_line_without_trace() -> None:
    mach, lines = mk(None, level=am.LogLevel.CHANGES, log_stack_trace=False)

    class H(am.ExceptionHandler):
        def c_enter(self, e: am.Event) -> None:
            raise ValueError("nope")

    mach.bind_handlers(H())
    mach.set(["C", "A"])
    assert "[error:set] C A (nope)" in lines


def test_exception_handler_is_quiet_below_changes() -> None:
    mach, lines = mk(None, level=am.LogLevel.EXTERNAL)
    mach.bind_handlers(am.ExceptionHandler())
    mach.add_err(ValueError("boom"))
    assert lines == []


def test_bind_handlers_mapping() -> None:
    seen: list[str] = []
    mach = am.Machine({"Foo": am.State(), "Bar": am.State()})
    mach.bind_handlers({"foo_state": lambda e: seen.append(e.name), "bar_enter": lambda e: False})
    assert mach.add1("Foo") is am.Result.EXECUTED
    assert mach.add1("Bar") is am.Result.CANCELED
    assert seen == ["FooState"]
    with pytest.raises(am.SchemaError, match="'nope' is not a handler name"):
        mach.bind_handlers({"nope": print})
    with pytest.raises(am.SchemaError, match="not callable"):
        mach.bind_handlers({"foo_state": 1})


def test_log_at_emits_raw_lines() -> None:
    lines: list[str] = []
    mach = am.Machine({"Foo": am.State()}, id="m1", logger=lambda _l, ln: lines.append(ln))
    mach.log_at(am.LogLevel.OPS, "[pipe-out:add] Foo to m2")
    assert lines == []
    mach.log_level = am.LogLevel.OPS
    mach.log_at(am.LogLevel.OPS, "[pipe-out:add] Foo\nto m2")
    assert lines == ["[m1] [pipe-out:add] Foo to m2"]
