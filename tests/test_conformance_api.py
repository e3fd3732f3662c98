"""The ``kind: api`` conformance vectors, one hand-written test each.

These vectors hold API-level facts of the reference (free-form ``input`` and
``expect``); each test below restates one through the Python API and reads its
data from the vector where the data is machine-readable. Test names are
``test_`` + the vector id with dots as underscores;
``test_every_api_vector_has_a_test`` keeps the two in sync.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
from conformance import load_vectors, to_schema, to_state

import asyncmachine_trio as am

API = {v["id"]: v for v in load_vectors("api")}
NORELS = {"A": am.State(), "B": am.State(), "C": am.State(), "D": am.State()}


def check_all(expect: dict[str, Any], checks: dict[str, Callable[[], Any]]) -> None:
    """Every expect key has a check and every check returns the expected value."""
    assert set(checks) == set(expect)
    for key, check in checks.items():
        got = check()
        assert got == expect[key] and type(got) is type(expect[key]), (key, got)


def test_every_api_vector_has_a_test() -> None:
    missing = [vid for vid in API if f"test_{vid.replace('.', '_')}" not in globals()]
    assert not missing


def test_api_parse_schema() -> None:
    vector = API["api.parse_schema"]
    parsed, err = am.parse_schema(to_schema(vector["input"]["schema"]))
    assert err is vector["expect"]["error"] is None
    assert parsed == to_schema(vector["expect"]["parsed"])
    # After [self] sanitizes to an empty but present list (semantics §1.1)
    assert parsed["A"].after == ()
    assert parsed["B"].after is None


def test_api_is_active_tick() -> None:
    vector = API["api.is_active_tick"]
    got = [am.is_active_tick(tick) for tick in vector["input"]["ticks"]]
    assert got == vector["expect"]["active"]


def test_api_time_methods() -> None:
    vector = API["api.time_methods"]
    t = am.Time(vector["input"]["time"])
    check_all(
        vector["expect"],
        {
            "Is1(1)": lambda: t.is1(1),
            "Is1(-1)": lambda: t.is1(-1),
            "Is([1])": lambda: t.is_([1]),
            "Is([-1])": lambda: t.is_([-1]),
            "Any1(1)": lambda: t.any1(1),
            "Any1(2)": lambda: t.any1(2),
            "Add(self).DiffSince(self)": lambda: list(t.add(t).diff_since(t)),
        },
    )
    assert list(t) == vector["input"]["time"]  # add() returned a new Time


def test_api_log_args_mapper() -> None:
    vector = API["api.log_args_mapper"]
    for case, want in zip(vector["input"], vector["expect"], strict=True):
        mapper = am.log_args_mapper(max_len=case["max"], names=case["names"])
        assert mapper(case["args"]) == want


def test_api_enum_strings() -> None:
    expect = API["api.enum_strings"]["expect"]
    results = expect["Result"]
    assert str(am.Result.EXECUTED) == results["0"]
    assert str(am.Result.CANCELED) == results["1"]
    assert str(am.Result.QUEUED) == results[">=2"]
    for value, text in expect["MutationType"].items():
        assert str(am.MutationType(value)) == text
    # Go's zero StepType(0) is the port's StepType.UNKNOWN
    for name, text in expect["StepType"].items():
        step = getattr(am.StepType, "UNKNOWN" if name == "0" else name.upper())
        assert str(step) == text, name
    for value, text in expect["Relation"].items():
        relation = am.Relation(value)
        assert relation.value == text
        assert str(relation) == text
    for level, text in expect["LogLevel"].items():
        assert str(am.LogLevel(int(level))) == text


def test_api_states_file() -> None:
    vector = API["api.states_file"]
    # input: super {Foo, Baz} with group FooBaz; child {Bar} embeds super, FooBar

    class SuperStates(am.States):
        Foo = am.State()
        Baz = am.State()

    class ChildStates(SuperStates):
        Bar = am.State()

    class SuperGroups(am.StateGroups):
        FooBaz = [SuperStates.Foo, SuperStates.Baz]

    class ChildGroups(SuperGroups):
        FooBar = [ChildStates.Foo, ChildStates.Bar]

    inp = vector["input"]
    assert list(SuperStates.schema()) == inp["super"]["fields"]
    assert list(ChildStates.schema()) == inp["super"]["fields"] + inp["child"]["fields"]
    check_all(
        vector["expect"],
        {
            "child.Foo": lambda: ChildStates.Foo,
            "child.Bar": lambda: ChildStates.Bar,
            "groups.FooBar": lambda: list(ChildGroups.FooBar),
            "groups.FooBaz": lambda: list(ChildGroups.FooBaz),
            "merged_schema_has": lambda: [
                name
                for name in vector["expect"]["merged_schema_has"]
                if isinstance(ChildStates.schema().get(name), am.State)
            ],
        },
    )


def test_api_groups() -> None:
    vector = API["api.groups"]

    # the class names are the group names (Go: the embedded struct types); Go's
    # StatesBase only contributes Exception, which is implicit here
    class TestGroups0Def(am.States):
        State00 = am.State()
        State01 = am.State()

    class TestGroups1Def(TestGroups0Def):
        State10 = am.State()
        State11 = am.State()

    class TestGroups2Def(TestGroups1Def):
        State20 = am.State()
        State21 = am.State()

    class BaseGroups(am.StateGroups):
        # inherited groups are not included by set_groups in this version
        BaseGroup0 = [TestGroups2Def.State10, TestGroups2Def.State11]
        BaseGroup1 = [TestGroups2Def.State21, TestGroups2Def.State10]

    class Groups(BaseGroups):
        Group0 = [TestGroups2Def.State20, TestGroups2Def.State21]
        GroupTestNameBar = [TestGroups2Def.State11, TestGroups2Def.State20]

    inp = vector["input"]
    assert {"Group0": Groups.Group0, "GroupTestNameBar": Groups.GroupTestNameBar} == inp["groups"]
    # the reference's names order (Exception first) via names= / verify_states
    mach = am.Machine(TestGroups2Def, id="groups", names=inp["state_names"])
    assert list(mach.state_names) == inp["state_names"]
    mach.set_groups(Groups, TestGroups2Def)
    groups, order = mach.groups()
    assert {k: list(v) for k, v in groups.items()} == vector["expect"]["groups"]
    assert list(order) == vector["expect"]["order"]


def test_api_state_utils() -> None:
    vector = API["api.state_utils"]
    inp = vector["input"]
    state = to_state("S", inp["state"])
    extended = state.extend(to_state("extend_with", inp["extend_with"]))
    set_with = inp["set_with"]
    replaced = state.set(
        to_state("overlay", set_with["overlay"]),
        auto=set_with["auto"],
        multi=set_with["multi"],
    )
    check_all(
        vector["expect"],
        {
            "extended.remove": lambda: list(extended.remove),
            "extended.auto": lambda: extended.auto,
            "set.remove": lambda: list(replaced.remove),
            "set.auto": lambda: replaced.auto,
            "StatesEqual([A],[B])": lambda: am.states_equal(["A"], ["B"]),
            "StatesEqual([A],[A B])": lambda: am.states_equal(["A"], ["A", "B"]),
            "StatesEqual([A],[A])": lambda: am.states_equal(["A"], ["A"]),
        },
    )
    assert extended.multi and replaced.multi
    assert list(extended.add) == list(replaced.add) == ["B"]


def test_api_sadd() -> None:
    vector = API["api.sadd"]
    assert am.states_add(*vector["input"]) == vector["expect"]["SAdd"]
    assert am.states_add() == vector["expect"]["SAdd()"]


def test_api_env_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    vector = API["api.env_log_level"]
    monkeypatch.delenv("AM_DEBUG", raising=False)
    monkeypatch.setenv("AM_LOG", vector["input"]["AM_LOG"])
    mach = am.Machine({"A": am.State()})
    assert mach.log_level == am.LogLevel(vector["expect"]["level"]) == am.LogLevel.EXTERNAL
    # an explicit kwarg wins over the env
    assert am.Machine({"A": am.State()}, log_level=am.LogLevel.OPS).log_level == am.LogLevel.OPS


def test_api_new_common() -> None:
    vector = API["api.new_common"]
    inp = vector["input"]
    schema = to_schema(inp["schema"])
    calls: list[str] = []

    class Handlers:
        def a_state(self, e: am.Event) -> None:
            calls.append(e.name)

    # names_ok: no error, the handlers are bound once
    mach = am.Machine(schema, id="foo", names=inp["names_ok"], handlers=Handlers())
    mach.add1("A")
    assert calls == ["AState"]
    assert list(mach.state_names) == inp["names_ok"]

    # names_bad: "B" is not in the schema -> verify_states raises
    with pytest.raises(am.SchemaError):
        am.Machine(schema, id="foo", names=inp["names_bad"], handlers=Handlers())

    # a parent machine sets parent_id
    child = am.Machine(schema, id="foo2", names=inp["names_ok"], parent=mach)
    assert child.parent_id == "foo"


def test_api_opts() -> None:
    vector = API["api.opts"]
    opts, expect = vector["input"]["opts"], vector["expect"]
    parent = am.Machine(NORELS, id="m")
    mach = am.Machine(
        {},
        parent=parent,
        dont_log_id=opts["DontLogId"],
        log_stack_trace=not opts["DontLogStackTrace"],
        log_level=am.LogLevel(opts["LogLevel"]),
        queue_limit=opts["QueueLimit"],
        tags=opts["Tags"],
    )
    assert mach.parent_id == parent.id == "m"  # "id of m"
    assert mach.log_stack_trace is expect["LogStackTrace"]
    assert list(mach.tags) == expect["Tags"]
    assert mach.queue_limit == expect["QueueLimit"]
    assert mach.log_level == am.LogLevel(expect["LogLevel"])
    mach.set_tags(["c"])
    assert list(mach.tags) == expect["after SetTags([c])"]
    # tags are deduplicated
    assert list(am.Machine({}, tags=["a", "b", "a"]).tags) == ["a", "b"]


def test_api_dispose_handlers() -> None:
    vector = API["api.dispose_handlers"]
    expect = vector["expect"]

    def new_machine(ran: list[str]) -> am.Machine:
        mach = am.Machine(NORELS, id="v")
        mach.add(vector["input"]["initial"])
        mach.on_dispose(ran.append)  # "set flag"
        return mach

    # graceful: on_dispose callbacks ran by the time when_disposed() resolves
    async def graceful() -> list[str]:
        ran: list[str] = []
        mach = new_machine(ran)
        disposed = mach.when_disposed()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(mach.dispose_async)
            await disposed
            seen = list(ran)
        assert mach.is_disposed
        return seen

    assert (trio.run(graceful) == ["v"]) is expect["flag_after_WhenDisposed"]

    # forced: done when dispose() returns
    ran: list[str] = []
    mach = new_machine(ran)
    mach.dispose()
    assert (ran == ["v"]) is expect["flag_after_DisposeForce_returns"]
    assert mach.is_disposed
    assert mach.when_disposed().is_set()


def test_api_tracer_bind_detach() -> None:
    expect = API["api.tracer_bind_detach"]["expect"]

    class NoopTracer(am.Tracer):
        pass

    mach = am.Machine(NORELS, id="v")
    tracer_id = mach.tracer_bind(NoopTracer())  # "pointer tracer": bind_err null
    assert expect["bind_err"] is None
    assert len(mach.tracers) == 1
    mach.tracer_detach(tracer_id)  # by id: detach_err null
    assert expect["detach_err"] is None
    # Go's "non-pointer value" has no Python form; the closest is binding
    # something that is not a tracer instance
    assert expect["bind_value_err"] == "error"
    with pytest.raises(am.AsyncMachineError):
        mach.tracer_bind(NoopTracer)  # the class, not an instance
    with pytest.raises(am.AsyncMachineError):
        mach.tracer_bind(42)
    assert len(mach.tracers) == expect["tracers_len"]


def test_api_handlers_detach() -> None:
    expect = API["api.handlers_detach"]["expect"]
    calls: list[str] = []

    class Handlers(am.ExceptionHandler):
        def a_state(self, e: am.Event) -> None:
            calls.append(e.name)

        def exception_state(self, e: am.Event) -> None:
            calls.append(e.name)
            super().exception_state(e)

    mach = am.Machine(NORELS, id="v")
    binding_id = mach.bind_handlers(Handlers())
    mach.detach_handlers(binding_id)
    # handlers_len 0: nothing of the binding is called any more
    mach.add1("A")
    mach.add_err(RuntimeError("e"))
    assert len(calls) == expect["handlers_len"]
    assert mach.is1("A") and mach.is_err()


def test_api_nil_ctx_random_id() -> None:
    vector = API["api.nil_ctx_random_id"]
    # Go's nil context has no Python counterpart: a machine without id / parent
    mach = am.Machine(to_schema(vector["input"]["schema"]))
    assert len(mach.id) > vector["expect"]["id_len_gt"]
    assert am.Machine(to_schema(vector["input"]["schema"])).id != mach.id
    assert mach.add1("A") == am.Result.EXECUTED


def test_api_getters() -> None:
    vector = API["api.getters"]
    lines: list[str] = []
    mach = am.Machine(NORELS, id="v", logger=lambda level, line: lines.append(line))
    mach.add1("A")
    mach.log_level = am.LogLevel(vector["input"]["set_level"])
    assert mach.log_level == am.LogLevel(vector["expect"]["level"]) == am.LogLevel.EVERYTHING
    assert len(mach.queue()) == mach.queue_len() == vector["expect"]["queue_len"]


def test_api_tracers_parent() -> None:
    expect = API["api.tracers_parent"]["expect"]
    calls: list[str] = []

    class NoopTracer(am.Tracer):
        pass

    class Handlers:
        def a_state(self, e: am.Event) -> None:
            calls.append(e.name)

    parent = am.Machine(NORELS, id="parent")
    mach = am.Machine({"A": am.State()}, id="v", tracers=[NoopTracer()], parent=parent)
    mach.bind_handlers(Handlers())
    assert len(mach.tracers) == expect["tracers_len"]
    assert mach.tracers[0].inheritable() is expect["inheritable"]
    mach.add1("A")
    assert calls == ["AState"]
    assert len(mach.tracers) == expect["tracers_len"]
    # not inherited by default: neither from the parent nor by a submachine
    assert len(parent.tracers) == 0
    assert len(am.Machine({"A": am.State()}, parent=mach).tracers) == 0
