"""The plain fast path behaves as the general path (issue 12).

Two machines of the same random schema, with the same random handler behaviours, get the
same random mutations: one takes the fast path (idle mutations, ``run_plain`` with the
plan's successor links, the clock updated in place, O(1) result checks), the other a
no-op tracer, which keeps every transition on the general path (``setup`` + ``run``) and
pins every tick list (copy-on-write). Everything observable must be equal: results,
ticks, active lists, queue ticks, what every handler saw of its transition
(``time_before`` / ``time_after``, targets), ``on_change`` calls and the transitions
handlers kept, read after the run.

Memory: each example builds two small machines and keeps nothing (120 examples per bound);
the plan store bounds are also exercised tiny (``bounds="tiny"``).
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

import asyncmachine_trio as am
from asyncmachine_trio.machine import resolver as resolver_mod
from asyncmachine_trio.machine import transition as transition_mod

NAMES = ["A", "B", "C", "D", "E"]
# handler behaviours per state
BEHAVIOURS = ["none", "reject", "raise", "queue", "queue-args", "peek", "keep", "self", "pair"]


class _Quiet(am.Tracer):
    """Does nothing; its presence keeps the machine on the general path."""


@st.composite
def schemas(draw: st.DrawFn) -> dict[str, am.State]:
    n = draw(st.integers(2, len(NAMES)))
    names = NAMES[:n]
    out: dict[str, am.State] = {}
    for name in names:
        others = [x for x in names if x != name]

        def rel(p: float, others: list[str] = others) -> tuple[str, ...]:
            if not others or draw(st.floats(0, 1)) > p:
                return ()
            return tuple(draw(st.lists(st.sampled_from(others), min_size=1, max_size=2)))

        out[name] = am.State(
            add=rel(0.25),
            remove=rel(0.3),
            require=rel(0.15),
            after=rel(0.2),
            multi=draw(st.booleans()) and draw(st.booleans()),
            auto=draw(st.floats(0, 1)) < 0.1,
        )
    # unrelated states, so the active list can be longer than what a mutation touches
    for i in range(draw(st.sampled_from([0, 0, 12]))):
        out[f"P{i}"] = am.State()
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    schema = draw(schemas())
    names = [s for s in schema if not s.startswith("P")]
    pads = [s for s in schema if s.startswith("P")]
    behaviour = {s: draw(st.sampled_from(BEHAVIOURS)) for s in names}
    targets = {s: draw(st.sampled_from(names)) for s in names}
    called = st.lists(st.sampled_from(names + pads[:3]), min_size=1, max_size=3)
    op = st.tuples(
        st.sampled_from(
            ["add", "add1", "remove", "remove1", "set", "toggle", "toggle1", "can_add", "args"]
        ),
        called,
    )
    return {
        "schema": schema,
        "behaviour": behaviour,
        "targets": targets,
        "ops": draw(st.lists(op, min_size=1, max_size=14)),
        "on_change": draw(st.booleans()),
        "timeout": draw(st.sampled_from([None, 60.0])),
        "start": draw(st.lists(st.sampled_from(pads), max_size=8, unique=True)) if pads else [],
    }


def _tx_view(tx: am.Transition) -> tuple[Any, ...]:
    return (
        list(tx.time_before),
        list(tx.time_after),
        list(tx.target_states),
        tx.states_before,
        list(tx.enters),
        list(tx.exits),
        tx.is_accepted,
        tx.is_completed,
        str(tx.mutation),
    )


def _run(sc: dict[str, Any], general: bool) -> dict[str, Any]:
    seen: list[Any] = []
    kept: list[am.Transition] = []
    budget = [12]
    mach = am.Machine(
        sc["schema"],
        strict_schema=False,
        handler_timeout=sc["timeout"],
        tracers=[_Quiet()] if general else [],
    )
    handlers: dict[str, Any] = {}
    for state, kind in sc["behaviour"].items():
        low = state.lower()
        other = sc["targets"][state]

        def enter(e: am.Event, state: str = state, kind: str = kind) -> bool:
            if kind == "raise":
                raise ValueError(state)
            return kind != "reject"

        def final(e: am.Event, state: str = state, kind: str = kind, other: str = other) -> None:
            if kind in ("queue", "queue-args") and budget[0] > 0:
                budget[0] -= 1
                args = {"from": state} if kind == "queue-args" else None
                if other in e.machine.active_states():
                    e.machine.remove1(other, args)
                else:
                    e.machine.add1(other, args)
            elif kind in ("peek", "keep"):
                tx = e.transition
                assert tx is not None
                seen.append((state, _tx_view(tx), e.args))
                if kind == "keep":
                    kept.append(tx)

        if kind in ("reject", "raise"):
            handlers[f"{low}_enter"] = enter
        elif kind == "self":
            handlers[f"{low}_{low}"] = lambda e, s=state: seen.append(("self", s))
        elif kind == "pair":
            handlers[f"{low}_{other.lower()}"] = lambda e, s=state: seen.append(("pair", s))
        else:
            handlers[f"{low}_state"] = final
            handlers[f"{low}_end"] = lambda e, s=state: seen.append(("end", s))
    mach.bind_handlers(handlers)
    if sc["on_change"]:
        mach.on_change(lambda m, before, after: seen.append(("change", list(before), list(after))))
    if sc["start"]:
        mach.add(sc["start"])
    out: list[Any] = []
    for kind, called in sc["ops"]:
        budget[0] = 12
        if kind == "add1":
            res = mach.add1(called[0])
        elif kind == "remove1":
            res = mach.remove1(called[0])
        elif kind == "toggle1":
            res = mach.toggle1(called[0])
        elif kind == "args":
            res = mach.add(called, {"n": len(out)})
        else:
            res = getattr(mach, kind)(called)
        out.append((res, list(mach.time()), mach.active_states(), mach.queue_tick()))
        assert mach._tick_sum == sum(mach._ticks)
    views = [_tx_view(tx) for tx in kept]
    return {"out": out, "seen": seen, "kept": views, "err": repr(mach.err)}


@pytest.mark.parametrize("bounds", ["default", "tiny"])
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sc=scenarios())
def test_fast_path_equals_general_path(
    sc: dict[str, Any], bounds: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if bounds == "tiny":
        # every bound of the plan store hit: successor links dropped, plans cleared
        monkeypatch.setattr(transition_mod, "SUCC_MAX", 1)
        monkeypatch.setattr(resolver_mod, "SUCC_TOTAL_MAX", 3)
        monkeypatch.setattr(resolver_mod, "PLANS_MAX", 4)
    fast = _run(sc, general=False)
    slow = _run(sc, general=True)
    assert fast == slow


def test_the_fast_path_takes_successor_links_and_updates_the_clock_in_place() -> None:
    """What the differential test relies on: the fast machine really takes the fast path
    (the plan's successor links, the shared active list, in-place ticks), the
    general one does not."""
    schema = {"A": am.State(remove=("B",)), "B": am.State(remove=("A",))}
    schema.update({f"P{i}": am.State() for i in range(20)})
    fast = am.Machine(schema)
    slow = am.Machine(schema, tracers=[_Quiet()])
    for m in (fast, slow):
        m.add([f"P{i}" for i in range(0, 20, 2)])
        for _ in range(2):
            m.add1("A")
            m.add1("B")
    ticks = fast._ticks
    fast.add1("A")
    assert fast._ticks is ticks  # in place
    plan = fast._plan
    assert plan is not None and fast._active is plan.target_list
    assert plan.succ_add is not None and "B" in plan.succ_add
    ticks = slow._ticks
    slow.add1("A")
    assert slow._ticks is not ticks  # copy-on-write: every transition escaped
    assert fast.clock() == slow.clock()


def test_a_kept_transition_keeps_its_clock() -> None:
    """A transition read through ``Machine.transition`` keeps its time views after
    later transitions updated the machine's ticks."""
    kept: list[am.Transition] = []

    class H:
        def a_state(self, e: am.Event) -> None:
            tx = e.machine.transition
            assert tx is not None
            kept.append(tx)

    m = am.Machine({"A": am.State(remove=("B",)), "B": am.State(remove=("A",))}, handlers=H())
    m.add1("A")
    before, after = list(kept[0].time_before), list(kept[0].time_after)
    for _ in range(5):
        m.add1("B")
        m.add1("A")
    assert list(kept[0].time_before) == before == [0, 0, 0]
    assert list(kept[0].time_after) == after == [1, 0, 0]
    assert [list(tx.time_after) for tx in kept[1:]] == [[1 + 2 * i, 2 * i, 0] for i in range(1, 6)]


def test_final_handler_events_equal_constructed_events() -> None:
    """The pure fast path makes final handlers' events without ``Event(...)``: same fields."""
    from asyncmachine_trio.machine.transition import Event

    seen: list[am.Event] = []

    class H:
        def a_state(self, e: am.Event) -> None:
            seen.append(e)

        def a_end(self, e: am.Event) -> None:
            seen.append(e)

    mach = am.Machine({"A": am.State()}, handlers=H())
    mach.add1("A", {"x": 1})
    mach.remove1("A")
    assert [e.name for e in seen] == ["AState", "AEnd"]
    # the pure class lists its fields in __slots__; the compiled one keeps none
    fields = getattr(Event, "__slots__", ("_tx", "args", "ctx", "machine", "name", "state"))
    for e in seen:
        made = Event(e.name, mach, e._tx, e.args, e.state)
        assert {s: getattr(made, s) for s in fields} == {s: getattr(e, s) for s in fields}
    assert seen[0].state == "A" and seen[0].args == {"x": 1}
