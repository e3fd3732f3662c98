"""semantics §2.1, 2.3 and 3: ticks, queue ticks, mutations and the queue (public API only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import asyncmachine_trio as am

R = am.Result
ADD = am.MutationType.ADD
REMOVE = am.MutationType.REMOVE
SET = am.MutationType.SET

NORELS = {"A": am.State(), "B": am.State(), "C": am.State(), "D": am.State()}
RELS = {
    "A": am.State(auto=True, require=["C"]),
    "B": am.State(multi=True, add=["C"]),
    "C": am.State(after=["D"]),
    "D": am.State(add=["C", "B"]),
}


from recorder import Rec  # noqa: E402


class TxTracer(am.Tracer):
    """Records transitions: (type, called, accepted) and queued mutations."""

    def __init__(self) -> None:
        self.txs: list[tuple[str, list[str], bool]] = []
        self.queued: list[am.Mutation] = []

    def mutation_queued(self, machine: am.Machine, mutation: am.Mutation) -> None:
        self.queued.append(mutation)

    def transition_end(self, transition: am.Transition) -> None:
        m = transition.mutation
        kind = str(m.type) + (":auto" if m.is_auto else "") + (":check" if m.is_check else "")
        self.txs.append((kind, list(m.called), transition.is_accepted))


def norels(*active: str, **kw: Any) -> am.Machine:
    mach = am.Machine(NORELS, id="t", **kw)
    if active:
        mach.set(list(active))
    return mach


# ----- 2.1 tick rules: TestTime


def test_time_worked_sequence() -> None:
    mach = am.Machine({**NORELS, "B": am.State(multi=True)}, id="t")
    order = ["A", "B", "C", "D"]
    steps: list[tuple[Callable[[], R], list[str], list[int]]] = [
        (lambda: mach.add(["A", "B"]), ["A", "B"], [1, 1, 0, 0]),
        (lambda: mach.add(["A", "B"]), ["A", "B"], [1, 3, 0, 0]),
        (lambda: mach.add(["A", "B", "C"]), ["A", "B", "C"], [1, 5, 1, 0]),
        (lambda: mach.set(["D"]), ["D"], [2, 6, 2, 1]),
        (lambda: mach.add(["D", "C"]), ["D", "C"], [2, 6, 3, 1]),
        (lambda: mach.remove(["B", "C"]), ["D"], [2, 6, 4, 1]),
        (lambda: mach.add(["A", "B"]), ["A", "B", "D"], [3, 7, 4, 1]),
    ]
    for i, (fn, active, ticks) in enumerate(steps):
        assert fn() is R.EXECUTED, i
        assert mach.active_states() == active, i
        assert list(mach.time(order)) == ticks, i
    before = mach.time(order)
    assert mach.add(["C"]) is R.EXECUTED
    now = mach.time(order)
    assert mach.active_states() == ["C", "A", "B", "D"]
    assert list(now) == [3, 7, 5, 1]
    assert now.after(True, before) is True
    assert before.after(True, now) is False
    assert mach.time().sum() == 16
    assert mach.tick("Exception") == 0


def test_tick_non_multi_called_while_active_unchanged() -> None:
    mach = norels("A")
    assert mach.add1("A") is R.EXECUTED
    assert mach.tick("A") == 1


def test_tick_multi_implied_while_active_unchanged() -> None:
    mach = am.Machine({"M": am.State(multi=True), "X": am.State(add=["M"])}, id="t")
    mach.add1("M")
    mach.add1("X")  # X implies the already active M: no re-entry
    assert mach.clock() == {"M": 1, "X": 1, "Exception": 0}
    mach.add1("M")
    assert mach.tick("M") == 3


def test_canceled_transition_does_not_tick() -> None:
    mach = norels("A")
    mach.bind_handlers(Rec(NORELS, reject=["BEnter"]))
    assert mach.add1("B") is R.CANCELED
    assert mach.clock() == {"A": 1, "B": 0, "C": 0, "D": 0, "Exception": 0}


def test_time_and_clock_unknown_names_raise() -> None:
    # port (issue 11): the reference reads 0 for unknown names
    mach = norels("A")
    with pytest.raises(am.StateUnknownError):
        mach.time(["A", "X"])
    with pytest.raises(am.StateUnknownError):
        mach.clock(["X", "A"])
    with pytest.raises(am.StateUnknownError):
        mach.tick("X")


# ----- 2.3 queue tick


def test_queue_tick_starts_at_one() -> None:
    mach = norels()
    assert mach.queue_tick() == 1
    assert mach.machine_tick() == 0
    mach.set(["A"])
    assert mach.queue_tick() == 2


def test_queue_tick_counts_canceled_and_noop() -> None:
    mach = norels()
    mach.bind_handlers(Rec(NORELS, reject=["AEnter"]))
    assert mach.add1("A") is R.CANCELED
    assert mach.queue_tick() == 2
    assert mach.remove1("B") is R.EXECUTED  # no-op transition outside a transition
    assert mach.queue_tick() == 3
    assert mach.add1("B") is R.EXECUTED
    assert mach.add1("B") is R.EXECUTED  # no change, still a transition
    assert mach.queue_tick() == 5


def test_queue_tick_not_advanced_by_prepended() -> None:
    mach = am.Machine({**NORELS, "E": am.State(auto=True)}, id="t")
    assert mach.add1("A") is R.EXECUTED  # + auto mutation (prepended)
    assert mach.is1("E")
    assert mach.queue_tick() == 2
    assert mach.can_add1("B") is R.EXECUTED  # check (prepended)
    assert mach.queue_tick() == 2
    assert mach.eval("src", lambda: None) is True  # eval (prepended)
    assert mach.queue_tick() == 2


def test_queue_tick_not_advanced_by_panic_exception() -> None:
    mach = norels()

    def boom(e: am.Event) -> None:
        raise ValueError("x")

    mach.bind_handlers(Rec(NORELS, actions={"AEnter": boom}))
    assert mach.add1("A") is R.CANCELED
    assert mach.is_err()
    assert mach.queue_tick() == 2


def test_queue_tick_not_advanced_by_dedup() -> None:
    mach = norels()
    got: list[R] = []

    def act(e: am.Event) -> None:
        got.append(mach.add1("B"))
        got.append(mach.add1("B"))

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert got == [R.QUEUED, R.EXECUTED]
    assert mach.queue_tick() == 3


# ----- 3.2 Result


def test_result_values_and_strings() -> None:
    assert [int(r) for r in R] == [0, 1, 2]
    assert str(R.EXECUTED) == "executed"
    assert str(R.CANCELED) == "canceled"
    assert str(R.QUEUED) == "queued"
    assert R.QUEUED > 1
    assert isinstance(R.EXECUTED, int)


def test_mutation_type_strings() -> None:
    assert [str(t) for t in (ADD, REMOVE, SET)] == ["add", "remove", "set"]


# ----- 3.3 queuing


def test_nested_mutation_returns_queued_with_queue_tick() -> None:
    # TestQueue: (A) after one Set, queue tick 2; Set(B) whose BEnter adds C
    mach = norels("A")
    assert mach.queue_tick() == 2
    got: list[tuple[R, int, int]] = []

    def b_enter(e: am.Event) -> None:
        res = mach.add1("C")
        q = mach.queue()
        got.append((res, len(q), q[-1].queue_tick))

    rec = Rec(NORELS, actions={"BEnter": b_enter})
    mach.bind_handlers(rec)
    assert mach.set(["B"]) is R.EXECUTED
    assert got == [(R.QUEUED, 1, 4)]
    assert sorted(mach.active_states()) == ["B", "C"]
    assert mach.active_states() == ["C", "B"]
    assert mach.queue_tick() == 4
    assert mach.queue_len() == 0
    assert rec.calls.count("AnyState") == 2


def test_nested_queue_ticks_count_pending() -> None:
    mach = norels()
    ticks: list[int] = []

    def act(e: am.Event) -> None:
        mach.add1("B")
        mach.add1("C")
        mach.remove1("A")
        ticks.extend(m.queue_tick for m in mach.queue())

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert ticks == [3, 4, 5]
    assert mach.queue_tick() == 5
    assert mach.active_states() == ["C", "B"]


def test_top_level_call_returns_after_queue_drained() -> None:
    mach = norels()
    seen: list[int] = []

    def act(e: am.Event) -> None:
        mach.add1("B")

    def b_state(e: am.Event) -> None:
        seen.append(mach.queue_len())

    mach.bind_handlers(Rec(NORELS, actions={"AState": act, "BState": b_state}))
    assert mach.add1("A") is R.EXECUTED
    assert mach.is_(["A", "B"])
    assert mach.transition is None
    assert mach.queue() == []
    assert seen == [0]


def test_top_level_returns_result_of_own_mutation() -> None:
    # a handler's canceled nested mutation does not change the caller's result
    mach = norels()

    def act(e: am.Event) -> None:
        mach.add1("B")

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}, reject=["BEnter"]))
    assert mach.add1("A") is R.EXECUTED
    assert mach.active_states() == ["A"]


def test_duplicate_called_states_removed() -> None:
    tracer = TxTracer()
    mach = am.Machine(NORELS, id="t", tracers=[tracer])
    mach.add(["B", "A", "B"])
    assert tracer.queued[0].called == ["B", "A"]
    assert mach.active_states() == ["B", "A"]


def test_args_normalized_and_shared_between_handlers() -> None:
    mach = norels("A")
    rec = Rec(NORELS)
    mach.bind_handlers(rec)
    mach.add1("B")
    assert all(e.args == {} for e in rec.events)
    rec.events.clear()
    args = {"foo": 1}

    def pass_on(e: am.Event) -> None:
        e.args["from_enter"] = True

    rec.actions["CEnter"] = pass_on
    mach.add1("C", args)
    ids = {id(e.args) for e in rec.events}
    assert len(ids) == 1
    assert rec.events[-1].args == {"foo": 1, "from_enter": True}
    assert rec.calls[-1] == "AnyState"


# ----- 3.4 prepending


def test_prepend_runs_before_queued() -> None:
    tracer = TxTracer()
    mach = am.Machine({**NORELS, "E": am.State(auto=True)}, id="t", tracers=[tracer])
    got: list[R] = []

    def act(e: am.Event) -> None:
        got.append(mach.add1("B"))  # appended
        got.append(mach.can_add1("C"))  # prepended
        got.append(mach.can_add1("D"))  # prepended, runs first
        q = mach.queue()
        got.append(len(q))
        assert [m.called for m in q] == [["D"], ["C"], ["B"]]
        assert [m.is_check for m in q] == [True, True, False]
        assert [m.queue_tick for m in q] == [0, 0, 3]

    mach.bind_handlers(Rec([*NORELS, "E"], actions={"AState": act}))
    mach.add1("A")
    assert got == [R.QUEUED, R.QUEUED, R.QUEUED, 3]
    # the checks were prepended during AState; the auto mutation of Add(A) is
    # prepended after the transition, on top of them, so it runs first
    assert tracer.txs == [
        ("add", ["A"], True),
        ("add:auto", ["E"], True),
        ("add:check", ["D"], True),
        ("add:check", ["C"], True),
        ("add", ["B"], True),
    ]


# ----- 3.3 step 3: de-duplication


def test_dedup_returns_executed_test_nested_mutation() -> None:
    mach = norels("B")
    got: list[tuple[R, int]] = []

    def act(e: am.Event) -> None:
        for _ in range(3):
            got.append((mach.add1("B"), mach.queue_len()))
        for _ in range(2):
            got.append((mach.remove1("B"), mach.queue_len()))

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert got == [
        (R.QUEUED, 1),
        (R.EXECUTED, 1),
        (R.EXECUTED, 1),
        (R.QUEUED, 2),
        (R.EXECUTED, 2),
    ]
    assert mach.active_states() == ["A"]


def test_dedup_ignores_counter_mutations() -> None:
    mach = norels()
    got: list[R] = []

    def act(e: am.Event) -> None:
        got.append(mach.add1("B"))
        got.append(mach.remove1("B"))
        got.append(mach.add1("B"))  # dropped: Add B already queued

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert got == [R.QUEUED, R.QUEUED, R.EXECUTED]
    assert mach.active_states() == ["A"]
    assert mach.tick("B") == 2


def test_dedup_any_order_same_set() -> None:
    mach = norels()
    got: list[R] = []

    def act(e: am.Event) -> None:
        got.append(mach.add(["B", "C"]))
        got.append(mach.add(["C", "B"]))
        got.append(mach.add(["C"]))  # different set
        got.append(mach.set(["B", "C"]))  # different type

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert got == [R.QUEUED, R.EXECUTED, R.QUEUED, R.QUEUED]


def test_no_dedup_with_args() -> None:
    mach = norels()
    got: list[R] = []

    def act(e: am.Event) -> None:
        got.append(mach.add1("B"))
        got.append(mach.add1("B", {"x": 1}))
        got.append(mach.add1("B", {"x": 1}))
        got.append(mach.queue_len())

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert got == [R.QUEUED, R.QUEUED, R.QUEUED, 3]


def test_no_dedup_against_queued_with_args() -> None:
    mach = norels()
    got: list[R] = []

    def act(e: am.Event) -> None:
        got.append(mach.add1("B", {"x": 1}))
        got.append(mach.add1("B"))

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert got == [R.QUEUED, R.QUEUED]


def test_no_dedup_for_multi() -> None:
    mach = am.Machine({**NORELS, "M": am.State(multi=True)}, id="t")
    got: list[R] = []

    def act(e: am.Event) -> None:
        got.append(mach.add1("M"))
        got.append(mach.add1("M"))
        got.append(mach.add(["M", "B"]))
        got.append(mach.add(["M", "B"]))

    mach.bind_handlers(Rec([*NORELS, "M"], actions={"AState": act}))
    mach.add1("A")
    assert got == [R.QUEUED] * 4
    assert mach.tick("M") == 7


def test_no_dedup_against_check() -> None:
    mach = norels()
    got: list[R] = []

    def act(e: am.Event) -> None:
        got.append(mach.can_add1("B"))
        got.append(mach.add1("B"))

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert got == [R.QUEUED, R.QUEUED]
    assert mach.is1("B")


# ----- 3.3 step 2: Remove shortcut


def test_remove_shortcut_inside_transition() -> None:
    tracer = TxTracer()
    mach = am.Machine(NORELS, id="t", tracers=[tracer])
    got: list[tuple[R, int]] = []

    def act(e: am.Event) -> None:
        got.append((mach.remove1("B"), mach.queue_len()))
        got.append((mach.remove(["B", "C"]), mach.queue_len()))

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert got == [(R.EXECUTED, 0), (R.EXECUTED, 0)]
    assert [m.type for m in tracer.queued] == [ADD]
    assert mach.queue_tick() == 2


def test_remove_shortcut_not_with_nonempty_queue() -> None:
    mach = norels()
    got: list[R] = []

    def act(e: am.Event) -> None:
        got.append(mach.add1("C"))
        got.append(mach.remove1("B"))  # inactive, but the queue is not empty

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert got == [R.QUEUED, R.QUEUED]
    assert mach.queue_tick() == 4


def test_remove_shortcut_not_for_active_state() -> None:
    mach = norels("B")
    got: list[R] = []

    def act(e: am.Event) -> None:
        got.append(mach.remove(["B", "C"]))

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert got == [R.QUEUED]
    assert mach.active_states() == ["A"]


def test_remove_inactive_outside_transition_runs_full_transition() -> None:
    mach = norels("A")
    rec = Rec(NORELS)
    mach.bind_handlers(rec)
    assert mach.remove1("B") is R.EXECUTED
    assert rec.calls == ["AnyEnter", "AnyState"]
    assert mach.queue_tick() == 3
    assert mach.tick("B") == 0


# ----- 3.2 queue limit


def fill_queue(mach: am.Machine, extra: Callable[[am.Event], None]) -> None:
    """Bind a handler whose AState queues B, C, D then calls ``extra``."""

    def act(e: am.Event) -> None:
        for s in ("B", "C", "D"):
            assert mach.add1(s) is R.QUEUED
        assert mach.queue_len() == 3
        extra(e)

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))


def test_queue_limit_guards_without_exception() -> None:
    mach = norels(queue_limit=3)
    got: dict[str, R] = {}

    def extra(e: am.Event) -> None:
        got["set"] = mach.set(["B"])
        got["add"] = mach.add1("C", {"x": 1})
        got["add_ev"] = mach.add1("C", event=e)
        got["remove"] = mach.remove1("A")
        got["remove_ev"] = mach.remove1("A", event=e)
        got["toggle"] = mach.toggle1("A")
        got["remove_exc"] = mach.remove1("Exception")  # Exception not active
        got["add_exc_ev"] = mach.add1("Exception", event=e)
        got["len"] = mach.queue_len()
        got["add_exc"] = mach.add1("Exception")  # allowed: Exception not active
        got["len2"] = mach.queue_len()
        got["add_exc_b"] = mach.add(["B", "Exception"], {"y": 1})  # allowed too
        got["len3"] = mach.queue_len()

    fill_queue(mach, extra)
    mach.add1("A")
    assert got == {
        "set": R.CANCELED,
        "add": R.CANCELED,
        "add_ev": R.CANCELED,
        "remove": R.CANCELED,
        "remove_ev": R.CANCELED,
        "toggle": R.CANCELED,
        "remove_exc": R.CANCELED,
        "add_exc_ev": R.CANCELED,
        "len": 3,
        "add_exc": R.QUEUED,
        "len2": 4,
        "add_exc_b": R.QUEUED,
        "len3": 5,
    }
    assert mach.err is None
    assert mach.active_states() == ["B", "Exception", "D", "C", "A"]


def test_add_err_is_never_refused_by_a_full_queue() -> None:
    # port decision: errors bypass queue_limit (the reference cancels AddErr
    # on a full queue, losing the error); also with Exception already active
    mach = norels(queue_limit=3)
    got: dict[str, object] = {}
    errors: list[BaseException | None] = []

    def exception_state(e: am.Event) -> None:
        exc = am.parse_args(e.args, am.AException)
        errors.append(exc.err if exc is not None else None)

    mach.bind_handlers({"exception_state": exception_state})

    def extra(e: am.Event) -> None:
        got["add_err"] = mach.add_err(ValueError("first"))
        got["add_err_state"] = mach.add_err_state("B", ValueError("second"))
        got["add_err_ev"] = mach.add_err(ValueError("third"), event=e)
        got["len"] = mach.queue_len()
        got["err"] = str(mach.err)

    fill_queue(mach, extra)
    assert mach.add1("A") is R.EXECUTED
    assert got == {
        "add_err": R.QUEUED,
        "add_err_state": R.QUEUED,
        "add_err_ev": R.QUEUED,
        "len": 6,
        "err": "third",
    }
    # each reached the Exception state, in order
    assert [str(e) for e in errors] == ["first", "second", "third"]
    assert mach.is_(["A", "B", "Exception"])
    assert mach.tick("Exception") == 5


def test_queue_limit_guards_with_exception_active() -> None:
    mach = norels(queue_limit=3)
    mach.add_err(ValueError("first"))
    got: dict[str, R] = {}

    def extra(e: am.Event) -> None:
        got["add_exc"] = mach.add1("Exception")  # Exception active: canceled
        got["remove_exc_ev"] = mach.remove1("Exception", event=e)
        got["remove_exc"] = mach.remove1("Exception")  # allowed
        got["remove_exc_a"] = mach.remove(["A", "Exception"], {"z": 1})  # allowed

    fill_queue(mach, extra)
    mach.add1("A")
    assert got == {
        "add_exc": R.CANCELED,
        "remove_exc_ev": R.CANCELED,
        "remove_exc": R.QUEUED,
        "remove_exc_a": R.QUEUED,
    }
    assert str(mach.err) == "first"
    assert not mach.is_err()
    assert mach.active_states() == ["D", "C", "B"]


def test_queue_limit_counts_prepended() -> None:
    mach = norels(queue_limit=2)
    got: list[R] = []

    def act(e: am.Event) -> None:
        got.append(mach.can_add1("B"))
        got.append(mach.can_add1("C"))
        got.append(mach.add1("D"))

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert got == [R.QUEUED, R.QUEUED, R.CANCELED]
    assert mach.active_states() == ["A"]


def test_queue_limit_option_validated() -> None:
    with pytest.raises(am.ArgumentError):
        am.Machine(NORELS, queue_limit=0)
    assert norels().queue_limit == 1000


# ----- 3.6 dry runs


def test_can_add_test_can_add() -> None:
    mach = am.Machine(RELS, id="t")
    assert mach.can_add(["A"]) is R.CANCELED
    assert mach.can_add(["C"]) is R.EXECUTED
    assert mach.active_states() == []
    assert mach.clock() == {"A": 0, "B": 0, "C": 0, "D": 0, "Exception": 0}
    assert mach.queue_tick() == 1


def test_can_add_calls_negotiation_handlers_only() -> None:
    mach = norels("A")
    rec = Rec(NORELS)
    mach.bind_handlers(rec)
    assert mach.can_add(["B"]) is R.EXECUTED
    assert rec.calls == ["BEnter", "AA", "AB", "AnyEnter"]
    assert all(e.is_valid() is False for e in rec.events)  # checked after the fact
    assert mach.active_states() == ["A"]
    assert mach.tick("B") == 0


def test_can_add_events_valid_during_check() -> None:
    mach = norels()
    valid: list[bool] = []
    mach.bind_handlers(Rec(NORELS, actions={"BEnter": lambda e: valid.append(e.is_valid())}))
    mach.can_add1("B")
    assert valid == [True]


def test_can_add_rejected_by_handler() -> None:
    mach = norels()
    rec = Rec(NORELS, reject=["BEnter"])
    mach.bind_handlers(rec)
    assert mach.can_add1("B") is R.CANCELED
    assert rec.calls == ["BEnter"]


def test_can_remove() -> None:
    mach = norels("A", "B")
    rec = Rec(NORELS)
    mach.bind_handlers(rec)
    assert mach.can_remove1("A") is R.EXECUTED
    assert rec.calls == ["AExit", "AB", "AnyEnter"]
    assert mach.active_states() == ["A", "B"]
    rec.reject.add("AExit")
    assert mach.can_remove(["A"]) is R.CANCELED


def test_can_remove1_passes_args() -> None:
    # semantics §14 #19: the port passes args (Go drops them)
    mach = norels("A")
    seen: list[dict[str, Any]] = []
    mach.bind_handlers(Rec(NORELS, actions={"AExit": lambda e: seen.append(dict(e.args))}))
    mach.can_remove1("A", {"k": "v"})
    assert seen == [{"k": "v"}]


def test_can_add_no_auto_no_subscriptions() -> None:
    mach = am.Machine({**NORELS, "E": am.State(auto=True)}, id="t")
    w = mach.when1("A")
    assert mach.can_add1("A") is R.EXECUTED
    assert not w.is_set()
    assert mach.active_states() == []


def test_can_add_multi_quirk() -> None:
    # a rejected check is accepted when a called state is Multi (semantics §3.6)
    mach = am.Machine(
        {"M": am.State(multi=True, require=["X"]), "N": am.State(require=["X"]), "X": {}},
        id="t",
    )
    assert mach.add1("M") is R.CANCELED
    assert mach.can_add1("M") is R.EXECUTED
    assert mach.can_add1("N") is R.CANCELED
    assert mach.can_add(["M", "N"]) is R.EXECUTED
    assert mach.active_states() == []


def test_can_add_from_handler_is_queued() -> None:
    mach = norels()
    got: list[R] = []
    mach.bind_handlers(Rec(NORELS, actions={"AState": lambda e: got.append(mach.can_add1("B"))}))
    mach.add1("A")
    assert got == [R.QUEUED]


# ----- 3.7 eval


def test_eval_runs_when_idle() -> None:
    mach = norels(detect_eval=True)
    a: list[int] = []
    assert mach.eval("test", lambda: a.append(1)) is True
    assert a == [1]
    assert mach.queue_tick() == 1
    assert mach.time().sum() == 0


def test_eval_nested_in_eval() -> None:
    mach = norels(detect_eval=True)
    a: list[int] = []
    nested: list[bool] = []

    def outer() -> None:
        a.append(1)
        nested.append(mach.eval("inner", lambda: a.append(2)))

    assert mach.eval("outer", outer) is True
    assert nested == [False]
    assert a == [1]
    assert not mach.is_err()
    assert mach.err is None


def test_eval_in_handler_detect_eval() -> None:
    mach = norels(detect_eval=True)
    ran: list[int] = []
    got: list[bool] = []

    def act(e: am.Event) -> None:
        got.append(mach.eval("src", lambda: ran.append(1)))

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    assert mach.add1("A") is R.EXECUTED
    assert got == [False]
    assert ran == []
    assert mach.is_err()
    assert isinstance(mach.err, am.NestedEvalError)
    assert str(mach.err) == (
        "eval nested in handler or eval: eval:src called directly in handler AState(), skipping"
    )
    assert mach.active_states() == ["Exception", "A"]


def test_eval_in_handler_without_detection() -> None:
    mach = norels(detect_eval=False)
    got: list[bool] = []
    mach.bind_handlers(Rec(NORELS, actions={"AState": lambda e: got.append(mach.eval("s", int))}))
    mach.add1("A")
    assert got == [False]
    assert not mach.is_err()


def test_eval_needs_source() -> None:
    mach = norels()
    with pytest.raises(am.AsyncMachineError):
        mach.eval("", lambda: None)


def test_eval_disposed_returns_false() -> None:
    mach = norels()
    mach.dispose()
    ran: list[int] = []
    assert mach.eval("s", lambda: ran.append(1)) is False
    assert ran == []


def test_eval_can_mutate() -> None:
    mach = norels()
    assert mach.eval("s", lambda: mach.add1("A")) is True
    assert mach.active_states() == ["A"]


# ----- 3.8 queue inspection


def test_is_queued_test_queue_checkable() -> None:
    mach = norels()
    got: list[Any] = []

    def act(e: am.Event) -> None:
        mach.add1("B")
        mach.add1("C")
        mach.add1("D")
        got.append(mach.queue_len())
        got.append(mach.is_queued(ADD, ["C"]))
        got.append(mach.is_queued(REMOVE, ["C"]))
        got.append(mach.is_queued(ADD, ["C"], position=am.Position.FIRST))
        got.append(mach.is_queued(ADD, ["B"], position=am.Position.FIRST))
        got.append(mach.is_queued(ADD, ["D"], position=am.Position.LAST))
        got.append(mach.is_queued(ADD, ["C"], min_queue_tick=5))
        got.append(mach.is_queued(ADD, ["D"], min_queue_tick=5))
        got.append(mach.is_queued(ADD, ["C"], is_check=True))
        got.append(
            (
                mach.will_be1("C"),
                mach.will_be(["B"]),
                mach.will_be(["B", "C"]),
                mach.will_be_removed1("C"),
                mach.will_be_any(["D"]),
                mach.will_be1("A"),
            )
        )

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert got == [
        3,
        (True, 1, 4),
        (False, 0, 0),
        (False, 0, 0),
        (True, 0, 3),
        (True, 2, 5),
        (False, 0, 0),
        (True, 2, 5),
        (False, 0, 0),
        (True, True, False, False, True, False),
    ]


def test_is_queued_args_and_strict() -> None:
    mach = norels()
    got: list[Any] = []

    def act(e: am.Event) -> None:
        mach.add(["B", "C"], {"x": 1})
        mach.remove(["A", "B"])
        got.append(mach.is_queued(ADD, ["B"]))
        got.append(mach.is_queued(ADD, ["B"], without_args_only=True))
        got.append(mach.is_queued(ADD, ["B"], strict_equal=True))
        got.append(mach.is_queued(ADD, ["C", "B"], strict_equal=True))
        got.append(mach.is_queued(REMOVE, ["B"]))
        got.append(mach.will_be_removed(["B", "A"]))
        got.append(mach.will_be_any(["C"]))
        got.append(mach.is_queued_above(0, ADD, ["B"]))
        got.append(mach.is_queued_above(1, ADD, ["B"]))

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    assert got == [
        (True, 0, 3),
        (False, 0, 0),
        (False, 0, 0),
        (True, 0, 3),
        (True, 1, 4),
        True,
        True,
        True,
        False,
    ]


def test_is_queued_idle() -> None:
    mach = norels()
    assert mach.is_queued(ADD, ["A"]) == (False, 0, 0)
    assert mach.queue() == []
    assert mach.queue_len() == 0


def test_mutation_object_fields() -> None:
    mach = norels()
    got: list[am.Mutation] = []

    def act(e: am.Event) -> None:
        mach.add(["C", "B"], {"k": 1}, event=e)
        got.extend(mach.queue())
        got.append(e.mutation)

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    mach.add1("A")
    queued, own = got
    assert queued.type is ADD
    assert queued.called == ["C", "B"]
    assert queued.args == {"k": 1}
    assert queued.is_auto is False
    assert queued.is_check is False
    assert queued.source is not None
    assert queued.source.mach_id == "t"
    assert str(queued) == "[add] C B"
    assert own.source is None
    assert own.called == ["A"]


# ----- 3.1 toggle


def test_toggle1() -> None:
    mach = norels()
    assert mach.toggle1("A") is R.EXECUTED
    assert mach.is1("A")
    assert mach.toggle1("A") is R.EXECUTED
    assert not mach.is1("A")
    assert mach.tick("A") == 2


def test_toggle_all_or_nothing() -> None:
    mach = norels()
    mach.toggle(["A"])
    assert mach.active_states() == ["A"]
    mach.toggle(["A"])
    assert mach.active_states() == []
    mach.add1("A")
    mach.toggle(["A", "B"])  # not all active: add both
    assert mach.active_states() == ["A", "B"]
    assert mach.tick("A") == 3
    mach.toggle(["B", "A"])  # all active: remove both
    assert mach.active_states() == []


def test_toggle_passes_args() -> None:
    mach = norels()
    seen: list[dict[str, Any]] = []
    mach.bind_handlers(
        Rec(
            NORELS,
            actions={
                "AEnter": lambda e: seen.append(dict(e.args)),
                "AExit": lambda e: seen.append(dict(e.args)),
            },
        )
    )
    mach.toggle1("A", {"n": 1})
    mach.toggle(["A"], {"n": 2})
    assert seen == [{"n": 1}, {"n": 2}]


# ----- 3.1 input validation


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.add(["A", "X"]),
        lambda m: m.add1("X"),
        lambda m: m.remove(["X"]),
        lambda m: m.remove1("X"),
        lambda m: m.set(["A", "X"]),
        lambda m: m.toggle(["X"]),
        lambda m: m.toggle1("X"),
        lambda m: m.can_add(["X"]),
        lambda m: m.can_add1("X"),
        lambda m: m.can_remove(["X"]),
        lambda m: m.can_remove1("X"),
        lambda m: m.add_err_state("X", ValueError("e")),
        lambda m: m.not1("X"),
        lambda m: m.not_(["A", "X"]),
    ],
)
def test_unknown_state_raises(call: Callable[[am.Machine], Any]) -> None:
    tracer = TxTracer()
    mach = am.Machine(NORELS, id="u", tracers=[tracer])
    with pytest.raises(am.StateUnknownError) as info:
        call(mach)
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, am.AsyncMachineError)
    assert str(info.value) == "missing states: X not defined in schema for u"
    assert tracer.queued == []
    assert tracer.txs == []
    assert mach.queue_tick() == 1
    assert mach.err is None


def test_unknown_state_raises_inside_handler_before_queuing() -> None:
    mach = norels()
    errs: list[BaseException] = []

    def act(e: am.Event) -> None:
        try:
            mach.add(["B", "X"])
        except am.StateUnknownError as err:
            errs.append(err)
        errs.append(mach.queue_len())  # type: ignore[arg-type]

    mach.bind_handlers(Rec(NORELS, actions={"AState": act}))
    assert mach.add1("A") is R.EXECUTED
    assert len(errs) == 2
    assert isinstance(errs[0], am.StateUnknownError)
    assert errs[1] == 0
    assert mach.active_states() == ["A"]


def test_is_with_unknown_state_raises() -> None:
    # port (issue 11): the reference answers False; has / has1 answer for any name
    mach = norels("A")
    with pytest.raises(am.StateUnknownError):
        mach.is_(["A", "X"])
    with pytest.raises(am.StateUnknownError):
        mach.is1("X")
    assert mach.has1("X") is False
    assert mach.has(["A", "X"]) is False
    assert mach.has(["A", "Exception"]) is True


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.add("A"),
        lambda m: m.remove("A"),
        lambda m: m.set("A"),
        lambda m: m.toggle("A"),
        lambda m: m.can_add("A"),
        lambda m: m.add(None),
        lambda m: m.add(1),
        lambda m: m.add1("A", ["x"]),
        lambda m: m.add(["A"], "x=1"),
        lambda m: m.set(["A"], 1),
        lambda m: m.remove1("A", [("k", 1)]),
        lambda m: m.add_err("not an exception"),
    ],
)
def test_wrong_argument_types(call: Callable[[am.Machine], Any]) -> None:
    mach = am.Machine(NORELS, id="w")
    with pytest.raises(am.ArgumentError) as info:
        call(mach)
    assert isinstance(info.value, TypeError)
    assert mach.queue_tick() == 1
    assert mach.active_states() == []


def test_wrong_state_name_type() -> None:
    """A non-str name: ArgumentError on the pure build; the compiled build (mypyc)
    checks a ``str`` parameter on entry and raises its own TypeError (documented in
    docs/getting-started.md); either way a TypeError and nothing queued."""
    mach = am.Machine(NORELS, id="w")
    with pytest.raises(TypeError) as info:
        mach.add1(1)  # type: ignore[arg-type]
    if am.compiled:
        assert "str object expected; got int" in str(info.value)
    else:
        assert isinstance(info.value, am.ArgumentError)
    assert mach.queue_tick() == 1
    assert mach.active_states() == []


def test_args_any_mapping_accepted() -> None:
    import types

    mach = norels()
    seen: list[Any] = []
    mach.bind_handlers(Rec(NORELS, actions={"AEnter": lambda e: seen.append(e.args)}))
    mach.add1("A", types.MappingProxyType({"k": 1}))
    assert seen == [{"k": 1}]


def test_mutations_accept_tuples() -> None:
    mach = norels()
    assert mach.add(("A", "B")) is R.EXECUTED
    assert mach.remove(("A",)) is R.EXECUTED
    assert mach.active_states() == ["B"]
