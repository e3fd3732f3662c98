"""semantics §10-11: log lines, levels, tracers, string formats, disposal."""

from __future__ import annotations

from typing import Any

import pytest

import asyncmachine_trio as am

R = am.Result
L = am.LogLevel
NORELS = {"A": am.State(), "B": am.State(), "C": am.State(), "D": am.State()}
RELS = {
    "A": am.State(auto=True, require=["C"]),
    "B": am.State(multi=True, add=["C"]),
    "C": am.State(after=["D"]),
    "D": am.State(add=["C", "B"]),
}


def logged(
    schema: dict[str, Any] | None = None, level: L = L.OPS, **kw: Any
) -> tuple[am.Machine, list[str]]:
    lines: list[str] = []
    kw.setdefault("dont_log_id", True)
    mach = am.Machine(
        NORELS if schema is None else schema,
        id=kw.pop("id", "logm"),
        log_level=level,
        logger=lambda lvl, line: lines.append(line),
        **kw,
    )
    return mach, lines


class Handlers:
    def __init__(self, mach: am.Machine) -> None:
        self.mach = mach

    def a_enter(self, e: am.Event) -> None:
        pass

    def a_state(self, e: am.Event) -> None:
        pass


# ----- 11.1 log lines


def test_log_lines_ops_simple_add() -> None:
    mach, lines = logged()
    mach.add1("A")
    assert lines == ["[queue:add] A", "[add] A", "[state] +A"]


def test_log_lines_changes_only_state() -> None:
    mach, lines = logged(level=L.CHANGES)
    mach.set(["A", "B"])
    mach.set(["C"])
    mach.add1("C")  # no change: no line
    mach.remove1("C")
    assert lines == ["[state] +A +B", "[state] +C -A -B", "[state] -C"]


def test_log_lines_everything_lists_unchanged() -> None:
    mach, lines = logged(level=L.CHANGES)
    mach.add1("A")
    mach.log_level = L.EVERYTHING
    lines.clear()
    mach.add1("B")
    assert "[state] +B A" in lines
    mach.log_level = L.DECISIONS
    lines.clear()
    mach.add1("C")
    assert "[state] +C" in lines


def test_log_lines_with_handlers() -> None:
    mach, lines = logged()
    mach.bind_handlers(Handlers(mach), id="h")
    lines.clear()
    mach.add1("A")
    assert lines == [
        "[queue:add] A",
        "[add] A",
        "[handler:0] AEnter",
        "[state] +A",
        "[handler:0] AState",
    ]


def test_log_lines_everything_with_handlers() -> None:
    mach, lines = logged(level=L.EVERYTHING)
    mach.bind_handlers(Handlers(mach), id="h")
    lines.clear()
    mach.add1("A")
    assert lines == [
        "[queue:add] A",
        "[add] A",
        "[handle:h] AEnter",
        "[handler:0] AEnter",
        "[handler:end] AEnter from h",
        "[handle:h] AnyEnter",
        "[state] +A",
        "[handle:h] AState",
        "[handler:0] AState",
        "[handler:end] AState from h",
        "[handle:h] AnyState",
    ]


def test_log_lines_nested_queue_dedup_and_auto() -> None:
    schema = {**NORELS, "E": am.State(auto=True, require=["B"])}
    mach, lines = logged(schema, level=L.DECISIONS)

    class H:
        def a_state(self, e: am.Event) -> None:
            mach.add1("B")
            mach.add1("B")

    mach.bind_handlers(H(), id="h")
    lines.clear()
    mach.add1("A")
    assert lines == [
        "[queue:add] A",
        "[add] A",
        "[state] +A",
        "[handler:0] AState",
        "[queue:add] B",
        "[postpone] queue running (1 item)",
        "[queue:skipped] Duplicate detected for [add] B",
        "[auto] E",
        "[prepend:add] E",
        "[postpone] queue running (2 items)",
        "[add:auto] E",
        "[reject:auto] E(-B)",
        "[cancel:reject] E",
        "[add] B",
        "[state] +B",
        "[auto] E",
        "[prepend:add] E",
        "[postpone] queue running (1 item)",
        "[add:auto] E",
        "[auto_] +E",
    ]


def test_log_lines_cancel_by_handler() -> None:
    mach, lines = logged()

    class H:
        def b_enter(self, e: am.Event) -> bool:
            return False

    mach.set(["A"])
    mach.bind_handlers(H(), id="h")
    lines.clear()
    assert mach.add1("B") is R.CANCELED
    assert lines == ["[queue:add] B", "[add] B", "[handler:0] BEnter", "[cancel] (B A) by BEnter"]


def test_log_source_line() -> None:
    mach, lines = logged()
    ids: list[str] = []

    class H:
        def a_state(self, e: am.Event) -> None:
            ids.append(e.id)
            mach.add1("B", event=e)

    mach.bind_handlers(H(), id="h")
    mach.add1("A")
    assert f"[source] logm/{ids[0]}/0" in lines
    i = lines.index(f"[source] logm/{ids[0]}/0")
    assert lines[i - 1] == "[add] B"


def test_log_external() -> None:
    mach, lines = logged(level=L.EXTERNAL)
    mach.log("hello %s\nworld", "x")
    mach.log("plain")
    mach.add1("A")  # changes are above EXTERNAL
    assert lines == ["[exter] hello x world", "[exter] plain"]
    mach.log_level = L.NOTHING
    mach.log("quiet")
    assert len(lines) == 2


def test_is_unknown_state_raises() -> None:
    # port (issue 11): the reference logs "[is] state X not found" and answers
    # False; an unknown name is refused by every read here
    mach, lines = logged(level=L.DECISIONS)
    with pytest.raises(am.StateUnknownError, match="X not defined"):
        mach.is_(["X"])
    assert lines == []


def test_log_eval_lines() -> None:
    mach, lines = logged(level=L.EVERYTHING)
    mach.eval("my-src", lambda: None)
    # Go's PrependMut logs the eval too, with no states
    assert lines == ["[eval] my-src", "[prepend:eval] ", "[eval:end] my-src"]


def test_log_tracers_bind_detach() -> None:
    mach, lines = logged()
    tracer = am.Tracer()
    tid = mach.tracer_bind(tracer)
    mach.tracer_detach(tid)
    assert lines == [f"[tracers] bind {tid}", f"[tracers] detach {tid}"]


def test_log_import_line() -> None:
    m1 = am.Machine(NORELS, id="imp", names=["A", "B", "C", "D", "Exception"])
    m1.add(["A", "B"])
    m2, lines = logged(id="imp", level=L.CHANGES)
    m2.import_(m1.export())
    assert lines == ["[import] imported 1 times, now at 2 ticks"]


def test_id_prefix() -> None:
    lines: list[str] = []
    mach = am.Machine(
        NORELS, id="machine1", log_level=L.CHANGES, logger=lambda _, x: lines.append(x)
    )
    mach.add1("A")
    short = am.Machine(NORELS, id="ab", log_level=L.CHANGES, logger=lambda _, x: lines.append(x))
    short.add1("B")
    assert lines == ["[machi] [state] +A", "[ab] [state] +B"]


def test_dont_log_id() -> None:
    lines: list[str] = []
    mach = am.Machine(
        NORELS,
        id="machine1",
        log_level=L.CHANGES,
        dont_log_id=True,
        logger=lambda _, x: lines.append(x),
    )
    mach.add1("A")
    assert lines == ["[state] +A"]


def test_logger_receives_levels() -> None:
    got: list[tuple[L, str]] = []
    mach = am.Machine(
        NORELS,
        id="lv",
        log_level=L.EVERYTHING,
        dont_log_id=True,
        logger=lambda lvl, x: got.append((lvl, x)),
    )
    mach.add1("A")
    mach.log("x")
    assert got == [
        (L.OPS, "[queue:add] A"),
        (L.OPS, "[add] A"),
        (L.CHANGES, "[state] +A"),
        (L.EXTERNAL, "[exter] x"),
    ]


def test_set_logger() -> None:
    mach = am.Machine(NORELS, id="sl", log_level=L.CHANGES, dont_log_id=True)
    lines: list[str] = []
    mach.set_logger(lambda _, x: lines.append(x))
    mach.add1("A")
    assert lines == ["[state] +A"]


def test_log_args_test_log_args() -> None:
    mach, lines = logged(log_args_names=["arg", "arg2"], log_args_max=5)
    mach.add1("D", {"arg": "foofoofoo"})
    assert lines == [
        "[queue:add] D (arg=fo...)",
        "[add] D (arg=fo...)",
        "[state] +D (arg=fo...)",
    ]


def test_log_args_sorted_and_filtered() -> None:
    mach, lines = logged(level=L.CHANGES, log_args_names=["zed", "alpha", "n"])
    mach.add1("A", {"zed": 1, "alpha": "x", "other": 3})
    assert lines == ["[state] +A (alpha=x zed=1)"]
    lines.clear()
    mach.add1("B", {"other": 3})
    assert lines == ["[state] +B"]


def test_log_args_default_off_and_log_args_list() -> None:
    mach, lines = logged(level=L.CHANGES)
    mach.add1("A", {"name": "x"})
    assert lines == ["[state] +A"]
    mach2, lines2 = logged(level=L.CHANGES, log_args_names=am.LOG_ARGS)
    mach2.add1("A", {"name": "x", "t": 1, "url": "http://example.com/long/path"})
    assert lines2 == ["[state] +A (name=x url=http://example.co...)"]
    assert am.LOG_ARGS == ("name", "id", "port", "addr", "err", "path", "url", "uri")


def test_log_args_mapper_truncation() -> None:
    assert am.log_args_mapper(5, ["a"])({"a": "abcdef"}) == {"a": "ab..."}
    assert am.log_args_mapper(5, ["a"])({"a": "abcde"}) == {"a": "abcde"}
    assert am.log_args_mapper(3, ["a"])({"a": "abcdef"}) == {"a": "abc"}
    assert am.log_args_mapper(20, ["a", "b"])({"b": 12, "c": 1}) == {"b": "12"}


def test_am_log_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AM_LOG", "3")
    assert am.Machine(NORELS).log_level is L.OPS
    assert am.Machine(NORELS, log_level=L.NOTHING).log_level is L.NOTHING
    monkeypatch.setenv("AM_LOG", "2")
    lines: list[str] = []
    mach = am.Machine(NORELS, dont_log_id=True, logger=lambda _, x: lines.append(x))
    mach.add1("A")
    assert lines == ["[state] +A"]
    monkeypatch.delenv("AM_LOG")
    assert am.Machine(NORELS).log_level is L.NOTHING


def test_log_level_strings_and_values() -> None:
    assert [int(lv) for lv in L] == [0, 1, 2, 3, 4, 5]
    assert [str(lv) for lv in L] == [
        "nothing",
        "external",
        "changes",
        "ops",
        "decisions",
        "everything",
    ]
    mach = am.Machine(NORELS)
    assert mach.log_level is L.NOTHING
    mach.log_level = 4  # type: ignore[assignment]
    assert mach.log_level is L.DECISIONS


def test_transition_log_entries_and_pre_log() -> None:
    last = am.LastTxTracer()
    mach, _ = logged(level=L.EXTERNAL, tracers=[last])
    mach.log("before")
    mach.log("before")  # consecutive duplicates dropped
    mach.add1("A")
    tx = last.last
    assert tx is not None
    assert tx.pre_log_entries == ["[exter] before"]
    mach.log_level = L.OPS
    mach.add1("B")
    tx = last.last
    assert tx is not None
    assert tx.log_entries == ["[add] B", "[state] +B"]
    assert tx.pre_log_entries == ["[queue:add] B"]


# ----- 11.2 tracers


class RecTracer(am.Tracer):
    def __init__(self, name: str = "rec") -> None:
        self.name = name
        self.calls: list[tuple[Any, ...]] = []

    def tracer_id(self) -> str:
        return self.name

    def machine_init(self, machine: am.Machine) -> None:
        self.calls.append(("machine_init", machine.id))

    def new_submachine(self, parent: am.Machine, machine: am.Machine) -> None:
        self.calls.append(("new_submachine", parent.id, machine.id))

    def mutation_queued(self, machine: am.Machine, mutation: am.Mutation) -> None:
        self.calls.append(("mutation_queued", str(mutation), mutation.is_auto, mutation.is_check))

    def transition_init(self, transition: am.Transition) -> None:
        self.calls.append(("transition_init", list(transition.target_states)))

    def transition_start(self, transition: am.Transition) -> None:
        self.calls.append(("transition_start",))

    def handler_start(self, transition: am.Transition, binding_id: str, name: str) -> None:
        self.calls.append(("handler_start", binding_id, name))

    def handler_end(self, transition: am.Transition, binding_id: str, name: str) -> None:
        self.calls.append(("handler_end", binding_id, name))

    def transition_finals(self, transition: am.Transition) -> None:
        self.calls.append(("transition_finals", transition.machine.active_states()))

    def transition_end(self, transition: am.Transition) -> None:
        self.calls.append(("transition_end", transition.is_accepted))

    def queue_end(self, machine: am.Machine) -> None:
        self.calls.append(("queue_end",))

    def schema_change(self, machine: am.Machine, old_schema: dict[str, am.State]) -> None:
        self.calls.append(("schema_change", len(old_schema)))

    def verify_states(self, machine: am.Machine) -> None:
        self.calls.append(("verify_states",))

    def machine_dispose(self, machine_id: str) -> None:
        self.calls.append(("machine_dispose", machine_id))


def test_tracer_hook_order_for_a_transition() -> None:
    tracer = RecTracer()
    mach = am.Machine(NORELS, id="tr", tracers=[tracer])
    assert tracer.calls == [("machine_init", "tr")]
    mach.bind_handlers(Handlers(mach), id="h")
    tracer.calls.clear()
    mach.add1("A")
    assert tracer.calls == [
        ("mutation_queued", "[add] A", False, False),
        ("transition_init", ["A"]),
        ("transition_start",),
        ("handler_start", "h", "AEnter"),
        ("handler_end", "h", "AEnter"),
        ("transition_finals", ["A"]),
        ("handler_start", "h", "AState"),
        ("handler_end", "h", "AState"),
        ("transition_end", True),
        ("queue_end",),
    ]


def test_tracer_canceled_transition_and_check() -> None:
    tracer = RecTracer()
    mach = am.Machine(NORELS, id="tr", tracers=[tracer])

    class H:
        def b_enter(self, e: am.Event) -> bool:
            return False

    mach.bind_handlers(H(), id="h")
    tracer.calls.clear()
    mach.add1("B")
    assert tracer.calls == [
        ("mutation_queued", "[add] B", False, False),
        ("transition_init", ["B"]),
        ("transition_start",),
        ("handler_start", "h", "BEnter"),
        ("handler_end", "h", "BEnter"),
        ("transition_end", False),
        ("queue_end",),
    ]
    tracer.calls.clear()
    mach.can_add1("A")
    assert tracer.calls == [
        ("mutation_queued", "[add] A", False, True),
        ("transition_init", ["A"]),
        ("transition_start",),
        ("transition_end", True),
        ("queue_end",),
    ]


def test_tracer_auto_and_eval_and_dedup() -> None:
    tracer = RecTracer()
    mach = am.Machine({**NORELS, "E": am.State(auto=True)}, id="tr", tracers=[tracer])
    tracer.calls.clear()
    mach.add1("A")
    queued = [c for c in tracer.calls if c[0] == "mutation_queued"]
    assert queued == [
        ("mutation_queued", "[add] A", False, False),
        ("mutation_queued", "[add] E", True, False),
    ]
    assert tracer.calls.count(("queue_end",)) == 1
    tracer.calls.clear()
    mach.eval("src", lambda: None)
    assert ("mutation_queued",) not in [c[:1] for c in tracer.calls]


def test_tracer_schema_verify_dispose_hooks() -> None:
    tracer = RecTracer()
    mach = am.Machine(NORELS, id="tr", tracers=[tracer])
    tracer.calls.clear()
    mach.verify_states(["D", "C", "B", "A", "Exception"])
    mach.set_schema({**mach.schema, "E": am.State()}, ["E", "D", "C", "B", "A", "Exception"])
    mach.dispose()
    assert tracer.calls == [
        ("verify_states",),
        ("verify_states",),
        ("schema_change", 5),
        ("machine_dispose", "tr"),
    ]


def test_tracer_bind_detach_and_errors() -> None:
    mach = am.Machine(NORELS, id="tr")
    t1 = RecTracer("one")
    t2 = RecTracer("two")
    assert mach.tracer_bind(t1) == "one"
    assert mach.tracer_bind(t2) == "two"
    assert mach.tracers == [t1, t2]
    mach.add1("A")
    assert t1.calls[0][0] == "mutation_queued"  # machine_init only via tracers=
    mach.tracer_detach("one")
    assert mach.tracers == [t2]
    with pytest.raises(am.TracerError):
        mach.tracer_detach("one")
    with pytest.raises(am.TracerError):
        mach.tracer_bind(object())
    with pytest.raises(am.TracerError):
        am.Machine(NORELS, tracers=[object()])  # type: ignore[list-item]
    assert issubclass(am.TracerError, am.AsyncMachineError)


def test_tracer_default_id_and_noop_hooks() -> None:
    t = am.Tracer()
    tid = t.tracer_id()
    assert isinstance(tid, str) and tid
    assert t.tracer_id() == tid
    assert t.inheritable() is False
    mach = am.Machine(NORELS, tracers=[t])
    mach.add1("A")
    mach.dispose()


def test_tracers_called_in_bind_order() -> None:
    order: list[str] = []

    class T(am.Tracer):
        def __init__(self, name: str) -> None:
            self.name = name

        def transition_end(self, transition: am.Transition) -> None:
            order.append(self.name)

    mach = am.Machine(NORELS, tracers=[T("1"), T("2")])
    mach.tracer_bind(T("3"))
    mach.add1("A")
    assert order == ["1", "2", "3"]


def test_parent_calls_new_submachine() -> None:
    tracer = RecTracer()
    parent = am.Machine(NORELS, id="parent", tracers=[tracer])
    tracer.calls.clear()
    child = am.Machine(NORELS, id="child", parent=parent)
    assert tracer.calls == [("new_submachine", "parent", "child")]
    assert child.parent_id == "parent"
    assert child.tracers == []  # not inherited
    by_id = am.Machine(NORELS, parent="some-id")
    assert by_id.parent_id == "some-id"
    assert am.Machine(NORELS).parent_id == ""


def test_last_tx_tracer() -> None:
    last = am.LastTxTracer()
    mach = am.Machine(NORELS, tracers=[last])
    assert last.last is None
    mach.add1("A")
    assert last.last is not None
    assert last.last.called_states == ["A"]


def test_opts() -> None:
    parent = am.Machine(NORELS, id="p")
    mach = am.Machine(
        {},
        parent=parent,
        dont_log_id=True,
        log_stack_trace=False,
        log_level=L.CHANGES,
        queue_limit=10,
        tags=["a", "b", "a"],
    )
    assert mach.parent_id == "p"
    assert mach.log_stack_trace is False
    assert mach.tags == ["a", "b"]
    assert mach.queue_limit == 10
    assert mach.log_level is L.CHANGES
    mach.set_tags(["c"])
    assert mach.tags == ["c"]
    tags = mach.tags
    tags.append("x")
    assert mach.tags == ["c"]
    assert mach.state_names == ("Exception",)


def test_random_id() -> None:
    import re

    a = am.Machine(NORELS)
    b = am.Machine(NORELS)
    assert re.fullmatch(r"[0-9a-f]{16}", a.id)
    assert a.id != b.id


# ----- 11.3 string formats


def test_string_and_string_all() -> None:
    mach = am.Machine(NORELS, id="s")
    assert str(mach) == "()"
    assert mach.string_all() == "() [A:0 B:0 C:0 D:0 Exception:0]"
    mach.set(["B", "A"])
    assert mach.string() == "(A:1 B:1)"
    assert str(mach) == "(A:1 B:1)"
    assert mach.string_all() == "(A:1 B:1) [C:0 D:0 Exception:0]"
    mach.remove1("A")
    assert mach.string_all() == "(B:1) [A:2 C:0 D:0 Exception:0]"


def test_inspect_rels() -> None:
    mach = am.Machine(RELS, id="i")
    mach.set(["A", "C"])
    assert mach.inspect() == (
        "1 A\n    |Tick     1\n    |Auto     true\n    |Require  C\n"
        "0 B\n    |Tick     0\n    |Multi    true\n    |Add      C\n"
        "1 C\n    |Tick     1\n    |After    D\n"
        "0 D\n    |Tick     0\n    |Add      C B\n"
        "0 Exception\n    |Tick     0\n    |Multi    true\n"
    )
    assert mach.inspect(["D", "A"]) == (
        "0 D\n    |Tick     0\n    |Add      C B\n"
        "1 A\n    |Tick     1\n    |Auto     true\n    |Require  C\n"
    )


def test_inspect_after_self_prints_empty_after_line() -> None:
    mach = am.Machine(
        {"A": am.State(after=["A"]), "B": am.State(remove=["B", "X"], require=[])},
        id="i",
        strict_schema=False,  # the unknown X is dropped, as the reference does
    )
    assert mach.inspect(["A", "B"]) == (
        "0 A\n    |Tick     0\n    |After    \n"
        "0 B\n    |Tick     0\n    |Require  \n    |Remove   \n"
    )


def test_inspect_all_relations_order() -> None:
    schema = {
        "A": am.State(
            auto=True, multi=True, after=["B"], remove=["C"], require=["D"], add=["B"], tags=["t"]
        ),
        "B": {},
        "C": {},
        "D": {},
    }
    mach = am.Machine(schema, id="i")
    assert mach.inspect(["A"]) == (
        "0 A\n"
        "    |Tick     0\n"
        "    |Auto     true\n"
        "    |Multi    true\n"
        "    |Add      B\n"
        "    |Require  D\n"
        "    |Remove   C\n"
        "    |After    B\n"
    )


# ----- 10 disposal


def test_dispose_mutations_canceled() -> None:
    mach = am.Machine(NORELS, id="d")
    mach.add1("A")
    e_holder: list[am.Event] = []

    class H:
        def b_state(self, e: am.Event) -> None:
            e_holder.append(e)

    mach.bind_handlers(H())
    mach.add1("B")
    mach.dispose()
    e = e_holder[0]
    results = [
        mach.set(["A"]),
        mach.add1("A"),
        mach.add(["A"]),
        mach.remove1("A"),
        mach.remove(["A"]),
        mach.toggle1("A"),
        mach.toggle(["A"]),
        mach.add_err(ValueError("e")),
        mach.add_err_state("A", ValueError("e")),
        mach.add1("A", event=e),
        mach.remove1("A", event=e),
        mach.can_add1("A"),
        mach.can_remove1("A"),
    ]
    assert results == [R.CANCELED] * len(results)
    assert mach.eval("test", lambda: None) is False


def test_dispose_getters() -> None:
    mach = am.Machine(NORELS, id="d")
    mach.add(["A", "B"])
    mach.dispose()
    assert mach.is_disposed is True
    assert mach.queue() == []
    assert mach.queue_len() == 0
    assert mach.active_states() == []
    assert mach.active_states(["A"]) == []
    assert mach.clock() == {}
    assert list(mach.time()) == []
    assert mach.time().sum() == 0
    assert mach.index1("A") == -1
    assert mach.index(["A"]) == []
    assert mach.has1("A") is False
    assert mach.has(["A"]) is False
    assert mach.string() == ""
    assert str(mach) == "(disposed)"  # issue 11: str() says so
    assert mach.string_all() == ""
    assert mach.inspect() == ""
    assert mach.tick("A") == 0
    assert mach.is_queued(am.MutationType.ADD, ["A"]) == (False, 0, 0)
    mach.verify_states(["A"])  # no-op
    assert mach.new_state_ctx("A").expired is True


def test_dispose_checks_return_false() -> None:
    # semantics §10: from disposal on "checks return false/empty" (Go Is/Not/IsClock...)
    mach = am.Machine(NORELS, id="d")
    mach.add(["A", "B"])
    mach.dispose()
    assert mach.is1("A") is False
    assert mach.is_(["A"]) is False
    assert ("A" in mach) is False
    assert mach.any1("A") is False
    assert mach.any(["A"]) is False
    assert mach.switch(["A", "B"]) == ""


def test_dispose_not_and_err_checks_return_false() -> None:
    mach = am.Machine(NORELS, id="d")
    mach.add_err(ValueError("x"))
    mach.dispose()
    assert mach.is_err() is False
    assert mach.not1("C") is False
    assert mach.not_(["C"]) is False


def test_dispose_time_checks_return_false() -> None:
    mach = am.Machine(NORELS, id="d")
    mach.dispose()
    assert mach.is_clock({}) is False
    assert mach.was_clock({}) is False
    assert mach.is_time([], ["A"]) is False
    assert mach.was_time([], ["A"]) is False


def test_dispose_waiters_resolved_and_callbacks() -> None:
    tracer = RecTracer()
    mach = am.Machine(NORELS, id="d", tracers=[tracer])
    pending = mach.when1("A")
    ctx = mach.new_state_ctx("B")
    ids: list[str] = []
    mach.on_dispose(ids.append)
    mach.on_dispose(lambda mid: ids.append(mid + "2"))
    disposed = mach.when_disposed()
    assert not disposed.is_set()
    assert not pending.is_set()
    mach.dispose()
    assert pending.is_set()
    assert ctx.expired
    assert disposed.is_set()
    assert ids == ["d", "d2"]
    assert tracer.calls[-1] == ("machine_dispose", "d")
    for w in (
        mach.when1("A"),
        mach.when_not1("A"),
        mach.when_args("A", {}),
        mach.when_time(["A"], [5]),
        mach.when_queue_ends(),
        mach.when_err(),
    ):
        assert w.is_set()
    mach.dispose()  # idempotent
    assert ids == ["d", "d2"]


def test_dispose_inside_handler() -> None:
    mach = am.Machine(NORELS, id="d")
    after: list[R] = []

    class H:
        def a_state(self, e: am.Event) -> None:
            mach.add1("C")
            mach.dispose()
            after.append(mach.add1("B"))

    mach.bind_handlers(H())
    # disposing cancels the transition in progress; the queued C is dropped
    assert mach.add1("A") is R.CANCELED
    assert after == [R.CANCELED]
    assert mach.transition is None
    assert mach.is_disposed


def test_dispose_no_log_lines() -> None:
    mach, lines = logged(level=L.EVERYTHING)
    mach.dispose()
    lines.clear()
    mach.log("x")
    mach.add1("A")
    assert lines == []
