"""Valid programs that once came out differently from the reference (issue 11).

Each test gives the result the semantics give; see also
``test_relations.test_add_chain_order_without_remove_relations``.
"""

from __future__ import annotations

import pytest

import asyncmachine_trio as am

R = am.Result


def test_auto_runs_after_the_exception_of_a_failed_auto_transition() -> None:
    calls: list[str] = []

    class Handlers:
        def a_state(self, e: am.Event) -> None:
            calls.append("AState")
            raise RuntimeError("a")

        def c_state(self, e: am.Event) -> None:
            calls.append("CState")

    schema = {
        "A": am.State(auto=True, require=["B"]),
        "B": am.State(remove=["C"], after=["A"]),
        "C": am.State(auto=True),
        "D": am.State(auto=True, add=["B"]),
    }
    mach = am.Machine(schema)
    mach.bind_handlers(Handlers())
    # C; auto (A D) implies B, which removes C, and AState raises: reverted to
    # (D); the Exception mutation changed the clock, so the auto states are
    # tried again: A lacks B now, C comes back
    assert mach.add1("C") is R.EXECUTED
    assert mach.clock() == {"A": 2, "B": 2, "C": 3, "D": 1, "Exception": 1}
    assert mach.string() == "(C:3 D:1 Exception:1)"
    assert calls == ["CState", "AState", "CState"]
    assert str(mach.err) == "a"


def test_auto_retried_when_an_enter_handler_fails_once() -> None:
    calls: list[str] = []

    class Handlers:
        def a_enter(self, e: am.Event) -> None:
            calls.append("AEnter")
            if calls.count("AEnter") == 1:
                raise RuntimeError("first")

        def g_state(self, e: am.Event) -> None:
            calls.append("GState")

    schema = {"A": am.State(auto=True), "B": am.State(), "G": am.State(auto=True)}
    mach = am.Machine(schema)
    mach.bind_handlers(Handlers())
    assert mach.add1("B") is R.EXECUTED
    # the raise cancels the whole auto transition (G is not applied without
    # its handlers); the Exception mutation retries both, and both activate
    assert mach.string() == "(A:1 B:1 G:1 Exception:1)"
    assert calls == ["AEnter", "AEnter", "GState"]


@pytest.mark.parametrize("raising", ["a_enter", "a_a", "b_a"])
def test_a_raising_handler_never_drops_one_auto_state(raising: str) -> None:
    # only a handler returning False drops a single Auto state (partial
    # acceptance); one that raised cancels the whole auto transition, so G,
    # called with A, is not applied either
    calls: list[str] = []

    def boom(e: am.Event) -> None:
        if e.mutation.is_auto:
            calls.append(e.name)
            raise RuntimeError(e.name)

    schema = {
        "A": am.State(auto=True),
        "B": am.State(),
        "G": am.State(auto=True, require=["B"] if raising == "a_a" else None),
    }
    mach = am.Machine(schema)
    mach.auto_retry_limit = 1  # no retry: look at the failed attempt alone
    if raising == "a_a":
        # A active and in the targets of the auto mutation (G): its self
        # handler AA runs
        assert mach.add1("A") is R.EXECUTED
        assert mach.active_states() == ["A"]
    mach.bind_handlers({raising: boom, "g_state": lambda e: calls.append(e.name)})
    assert mach.add1("B") is R.EXECUTED
    assert calls == [{"a_enter": "AEnter", "a_a": "AA", "b_a": "BA"}[raising]]
    assert not mach.is1("G")
    assert mach.is_(["B", "Exception"])
    assert isinstance(mach.internal_errors[-1], am.AutoLivelockError)


def test_a_rejecting_handler_drops_one_auto_state() -> None:
    # the contrast: False from AEnter drops A alone, G is applied
    calls: list[str] = []
    schema = {"A": am.State(auto=True), "B": am.State(), "G": am.State(auto=True)}
    mach = am.Machine(schema)
    mach.bind_handlers({"a_enter": lambda e: False, "g_state": lambda e: calls.append(e.name)})
    assert mach.add1("B") is R.EXECUTED
    assert mach.string() == "(B:1 G:1)"
    assert calls == ["GState"]


def test_raising_exception_state_stops_later_bindings() -> None:
    calls: list[str] = []

    class First:
        def exception_state(self, e: am.Event) -> None:
            calls.append("1:ExceptionState")
            raise RuntimeError("handler of the error")

    class Second:
        def exception_state(self, e: am.Event) -> None:
            calls.append("2:ExceptionState")

        def any_state(self, e: am.Event) -> None:
            calls.append("2:AnyState")

    lines: list[str] = []
    mach = am.Machine(
        {"A": am.State()},
        log_level=am.LogLevel.DECISIONS,
        logger=lambda _lvl, line: lines.append(line),
        dont_log_id=True,
    )
    mach.bind_handlers(First())
    mach.bind_handlers(Second())
    # the mutation called Exception: no second error, the transition is
    # canceled, later bindings and later handlers are not called, the final
    # phase reverts once
    assert mach.add_err(ValueError("x")) is R.CANCELED
    assert calls == ["1:ExceptionState"]
    assert mach.string_all() == "() [A:0 Exception:2]"
    assert str(mach.err) == "x"
    assert "[handler:invalid] ExceptionState" in lines
    assert "[recover] handling panic..." not in lines
    # still working
    calls.clear()
    assert mach.add1("A") is R.EXECUTED
    assert calls == ["2:AnyState"]


def test_raising_negotiation_handler_stops_later_bindings() -> None:
    calls: list[str] = []

    class First:
        def exception_enter(self, e: am.Event) -> None:
            calls.append("1:ExceptionEnter")
            raise RuntimeError("enter")

    class Second:
        def exception_enter(self, e: am.Event) -> None:
            calls.append("2:ExceptionEnter")

        def any_enter(self, e: am.Event) -> None:
            calls.append("2:AnyEnter")

    mach = am.Machine({"A": am.State()})
    mach.bind_handlers(First())
    mach.bind_handlers(Second())
    assert mach.add_err(ValueError("x")) is R.CANCELED
    assert calls == ["1:ExceptionEnter"]
    assert mach.string_all() == "() [A:0 Exception:0]"
