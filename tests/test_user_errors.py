"""Ordinary mistakes are loud, typed and named (issue 11: items 1, 2, 3, 5, 6, 8)."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import anyio
import pytest

import asyncmachine_trio as am
import asyncmachine_trio.testing as amt

pytest_plugins = ["pytester"]

AB = {"A": am.State(), "B": am.State()}


# ----- 8. disposal is visible


@pytest.mark.anyio
async def test_waiter_resolved_by_dispose_raises() -> None:
    async with am.open_machine(AB, id="disp1") as mach:
        w = mach.when1("A")
        done = mach.when_disposed()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_dispose_soon, mach)
            with pytest.raises(am.DisposedError, match="machine disp1 was disposed"):
                with anyio.fail_after(1):
                    await w
        assert w.is_set() and w.disposed
        assert repr(w) == "<Waiter when disposed>"
        await done  # when_disposed resolves normally
        # a when* on a disposed machine: set, and awaiting it raises too
        late = mach.when1("B")
        assert late.is_set() and late.disposed
        with pytest.raises(am.DisposedError):
            await late


async def _dispose_soon(mach: am.Machine) -> None:
    await anyio.sleep(0.01)
    mach.dispose()


def test_str_repr_of_disposed_machine() -> None:
    mach = am.Machine(AB, id="m1")
    mach.add1("A")
    assert str(mach) == "(A:1)"
    assert repr(mach) == "<Machine m1 (A:1)>"
    mach.dispose()
    assert str(mach) == "(disposed)"
    assert repr(mach) == "<Machine m1 disposed>"
    assert mach.string() == ""  # the reference's getter stays empty


@pytest.mark.anyio
async def test_resolved_waiter_is_not_disposed() -> None:
    async with am.open_machine(AB) as mach:
        w = mach.when1("A")
        mach.add1("A")
        with anyio.fail_after(1):
            await w
        assert not w.disposed


# ----- 6. state-scoped work on an inactive state


@pytest.mark.anyio
async def test_fork_of_inactive_state_never_runs() -> None:
    ran: list[str] = []
    done = anyio.Event()

    async def work(tag: str) -> None:
        ran.append(tag)
        done.set()

    async with am.open_machine(AB) as mach:
        assert mach.fork("A", work, "inactive") is False
        mach.add1("A")  # activating A later does not start it either
        assert mach.fork("A", work, "active") is True
        with anyio.fail_after(1):
            await done.wait()
        await anyio.sleep(0.01)
        assert ran == ["active"]
        with pytest.raises(am.StateUnknownError, match="Aa"):
            mach.fork("Aa", work, "unknown")


def test_fork_of_sync_function_raises_at_the_call() -> None:
    mach = am.Machine(AB)
    mach.add1("A")

    def sync_work() -> None:  # pragma: no cover - must never run
        pass

    with pytest.raises(TypeError, match=r"fork needs an async function.*sync_work"):
        mach.fork("A", sync_work)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_event_fork_of_sync_function_raises() -> None:
    seen: list[BaseException] = []

    class H:
        def a_state(self, e: am.Event) -> None:
            try:
                e.fork(lambda: None)  # type: ignore[arg-type, return-value]
            except TypeError as err:
                seen.append(err)

    async with am.open_machine(AB, handlers=H()) as mach:
        mach.add1("A")
    assert len(seen) == 1 and "Event.fork needs an async function" in str(seen[0])


# ----- 5. unknown names are refused by every read, wait and mutation


def _reads(mach: am.Machine, name: str) -> dict[str, Any]:
    return {
        "is1": lambda: mach.is1(name),
        "is_": lambda: mach.is_(["A", name]),
        "in": lambda: name in mach,
        "not1": lambda: mach.not1(name),
        "not_": lambda: mach.not_([name]),
        "any": lambda: mach.any(["A"], [name]),
        "any1": lambda: mach.any1("A", name),
        "tick": lambda: mach.tick(name),
        "time": lambda: mach.time([name]),
        "clock": lambda: mach.clock([name]),
        "is_time": lambda: mach.is_time([0], [name]),
        "was_time": lambda: mach.was_time([0], [name]),
        "is_clock": lambda: mach.is_clock({name: 0}),
        "was_clock": lambda: mach.was_clock({name: 0}),
        "active_states": lambda: mach.active_states([name]),
        "switch": lambda: mach.switch(["B", name]),
        "inspect": lambda: mach.inspect([name]),
        "sort_states": lambda: mach.sort_states([name]),
        "will_be": lambda: mach.will_be([name]),
        "will_be1": lambda: mach.will_be1(name),
        "will_be_removed1": lambda: mach.will_be_removed1(name),
        "will_be_any": lambda: mach.will_be_any([name]),
        "new_state_ctx": lambda: mach.new_state_ctx(name),
        "when1": lambda: mach.when1(name),
        "when_not1": lambda: mach.when_not1(name),
        "when_time1": lambda: mach.when_time1(name, 1),
        "when_ticks": lambda: mach.when_ticks(name, 1),
        "when_next_active": lambda: mach.when_next_active(name),
        "when_args": lambda: mach.when_args(name, {}),
        "add1": lambda: mach.add1(name),
        "remove1": lambda: mach.remove1(name),
        "set": lambda: mach.set([name]),
        "toggle1": lambda: mach.toggle1(name),
        "can_add1": lambda: mach.can_add1(name),
        "add_err_state": lambda: mach.add_err_state(name, ValueError("x")),
    }


def test_unknown_names_raise_everywhere() -> None:
    mach = am.Machine({"Alpha": am.State(), "A": am.State(), "B": am.State()}, id="u1")
    mach.add1("A")
    for what, call in _reads(mach, "Alpah").items():
        with pytest.raises(am.StateUnknownError) as info:
            call()
        msg = str(info.value)
        assert "Alpah not defined in schema for u1 (did you mean Alpha?)" in msg, (what, msg)
    # the schema queries answer for any name
    assert mach.has1("Alpah") is False
    assert mach.has(["A", "Alpah"]) is False
    assert mach.index1("Alpah") == -1
    assert mach.parse_states(["A", "Alpah"]) == ["A"]


def test_unknown_names_after_dispose_answer_empty() -> None:
    mach = am.Machine(AB)
    mach.dispose()
    assert mach.is1("X") is False
    assert mach.is_(["X"]) is False
    assert mach.tick("X") == 0


def test_str_where_a_list_belongs() -> None:
    mach = am.Machine(AB)
    calls = {
        "add": lambda: mach.add("A"),  # type: ignore[arg-type]
        "is_": lambda: mach.is_("A"),  # type: ignore[arg-type]
        "not_": lambda: mach.not_("A"),  # type: ignore[arg-type]
        "any": lambda: mach.any("AB"),  # type: ignore[arg-type]
        "time": lambda: mach.time("A"),  # type: ignore[arg-type]
        "clock": lambda: mach.clock("A"),  # type: ignore[arg-type]
        "active_states": lambda: mach.active_states("A"),  # type: ignore[arg-type]
        "switch": lambda: mach.switch("AB"),  # type: ignore[arg-type]
        "has": lambda: mach.has("A"),  # type: ignore[arg-type]
        "index": lambda: mach.index("A"),  # type: ignore[arg-type]
        "parse_states": lambda: mach.parse_states("A"),  # type: ignore[arg-type]
        "when": lambda: mach.when("A"),  # type: ignore[arg-type]
        "when_time": lambda: mach.when_time("A", [1]),  # type: ignore[arg-type]
        "will_be": lambda: mach.will_be("A"),  # type: ignore[arg-type]
        "set_tags": lambda: mach.set_tags("tag"),
        "tags=": lambda: am.Machine(AB, tags="tag"),
    }
    for what, call in calls.items():
        with pytest.raises(am.ArgumentError, match="str"):
            call()
        assert what


@pytest.mark.trio
async def test_network_machine_refuses_str_and_unknown_names() -> None:
    from asyncmachine_trio import rpc

    schema = {"Foo": am.State(), "Bar": am.State()}
    async with am.open_machine(schema, id="worker") as worker:
        async with rpc.open_server(worker) as server:
            async with rpc.open_client(server.addr, schema=schema) as client:
                net = client.netmach
                with pytest.raises(am.ArgumentError, match="str 'Foo'"):
                    net.add("Foo")  # type: ignore[arg-type]
                with pytest.raises(am.ArgumentError, match="str"):
                    net.toggle("Foo")  # type: ignore[arg-type]
                with pytest.raises(am.StateUnknownError, match="did you mean Foo"):
                    net.add1("Fooo")
                with pytest.raises(am.StateUnknownError, match="did you mean Bar"):
                    net.is1("Baar")


# ----- 2. schemas are checked


def test_unknown_relation_target_raises_with_closest_name() -> None:
    schema = {
        "Downloading": am.State(require=("Conected",), remove=("Downloaded",)),
        "Downloaded": am.State(after=("Downloding",)),
        "Connected": am.State(),
    }
    with pytest.raises(am.SchemaError) as info:
        am.Machine(schema)
    assert str(info.value) == (
        "schema error: state Downloading: require names unknown state Conected"
        " (did you mean Connected?)\n"
        "schema error: state Downloaded: after names unknown state Downloding"
        " (did you mean Downloading?)"
    )


def test_bad_flags_and_relations_raise() -> None:
    with pytest.raises(am.SchemaError, match="state A: auto must be a bool, got 'yes'"):
        am.Machine({"A": {"auto": "yes"}})
    with pytest.raises(am.SchemaError, match="state A: multi must be a bool, got 1"):
        am.Machine({"A": am.State(multi=1)})  # type: ignore[arg-type]
    with pytest.raises(am.SchemaError, match="state A: require must be a sequence"):
        am.Machine({"A": {"require": 5}})
    with pytest.raises(am.SchemaError, match=r"add must be a sequence .* got set"):
        am.State(add={"B"})
    with pytest.raises(am.SchemaError, match="the str 'B'"):
        am.State(remove="B")  # type: ignore[arg-type]


def test_require_remove_conflict_raises_when_strict() -> None:
    schema = {"A": am.State(require=("B",), remove=("B",)), "B": am.State()}
    with pytest.raises(am.SchemaError, match="require-remove conflict for A to B"):
        am.Machine(schema)
    lenient = am.Machine(schema, strict_schema=False)
    assert lenient.is_err() and isinstance(lenient.err, am.SchemaError)


def test_lenient_schema_keeps_the_reference_rules() -> None:
    schema = {
        "A": am.State(require=("Missing",)),
        "B": am.State(add=("Missing", "C"), after=("Missing",)),
        "C": am.State(remove=("Missing",)),
    }
    mach = am.Machine(schema, strict_schema=False)
    assert not mach.is_err()
    assert mach.schema["B"].add == ("C",)
    assert mach.schema["B"].after == ()
    assert mach.schema["C"].remove == ()
    assert mach.add1("A") is am.Result.CANCELED  # requires a state that never exists
    assert mach.add1("B") is am.Result.EXECUTED
    assert mach.active_states() == ["B", "C"]


def test_set_schema_checks_too() -> None:
    base = {"A": am.State()}
    mach = am.Machine(base)
    grown = {**mach.schema, "B": am.State(require=("C",))}
    with pytest.raises(am.SchemaError, match="state B: require names unknown state C"):
        mach.set_schema(grown, ["A", "Exception", "B"])
    # assembled in steps: a lenient machine accepts B first, C later
    steps = am.Machine(base, strict_schema=False)
    steps.set_schema(grown, ["A", "Exception", "B"])
    assert steps.add1("B") is am.Result.CANCELED
    steps.set_schema({**steps.schema, "C": am.State()}, ["A", "Exception", "B", "C"])
    assert steps.add(["B", "C"]) is am.Result.EXECUTED


def test_exception_is_always_known() -> None:
    mach = am.Machine({"ErrFoo": am.State(require=("Exception",)), "A": am.State()})
    mach.add_err_state("ErrFoo", ValueError("x"))
    assert mach.is_(["ErrFoo", "Exception"])


# ----- 3. handler names are checked at binding


FOO_BAR = {"Foo": am.State(), "Bar": am.State()}


def test_misspelled_handlers_warn_with_the_closest_name() -> None:
    class Handlers:
        def foo_enterr(self, e: am.Event) -> None: ...
        def fooo_enter(self, e: am.Event) -> None: ...
        def foo_stat(self, e: am.Event) -> None: ...
        def foo_baz(self, e: am.Event) -> None: ...
        def foo_state(self, e: am.Event) -> None: ...  # a handler: no warning

    with pytest.warns(am.HandlerWarning) as record:
        am.Machine(FOO_BAR, handlers=Handlers())
    got = sorted(str(w.message).split(" matches")[0] + " -> " + str(w.message) for w in record)
    assert len(got) == 4
    expect = {
        "Handlers.foo_baz": "foo_bar",
        "Handlers.foo_enterr": "foo_enter",
        "Handlers.foo_stat": "foo_state",
        "Handlers.fooo_enter": "foo_enter",
    }
    for line in got:
        name = line.split(" -> ")[0]
        assert f"(did you mean {expect[name]}?)" in line, line
    assert all(w.filename == __file__ for w in record)  # points at the user's call
    assert str(record[0].message).endswith(
        "so it is never called (did you mean foo_bar?); mark a helper method with"
        " @am.not_handler or start its name with '_'"
    )


def test_helpers_marked_or_private_do_not_warn() -> None:
    calls: list[str] = []

    class Handlers:
        @am.not_handler
        def foo_state(self, e: am.Event) -> None:  # pragma: no cover - not bound
            calls.append("foo_state")

        @am.not_handler
        def get_state(self) -> str:
            return "helper"

        @staticmethod
        @am.not_handler
        def bar_total() -> int:
            return 1

        def _foo_helper(self) -> None: ...
        def process_data(self) -> None: ...  # no state prefix, no handler suffix

    mach = am.Machine(FOO_BAR, handlers=Handlers())  # no warning (warnings are errors)
    mach.add1("Foo")
    assert calls == []  # a marked method is never bound, even with a handler's name


def test_handler_scan_warns_once_per_class() -> None:
    class Handlers:
        def foo_stat(self, e: am.Event) -> None: ...

    with pytest.warns(am.HandlerWarning):
        am.Machine(FOO_BAR, handlers=Handlers())
    am.Machine(FOO_BAR, handlers=Handlers())  # cached scan: silent


# ----- 1. unhandled errors are reported


class Raising:
    def foo_state(self, e: am.Event) -> None:
        raise ValueError("boom")


def test_unhandled_handler_error_is_reported_once_at_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "asyncmachine_trio")
    with amt.error_reports() as reports:
        mach = am.Machine(FOO_BAR, id="rep1", handlers=Raising())
        assert mach.add1("Foo") is am.Result.CANCELED
        assert mach.is_err()
        mach.add1("Bar")  # later transitions report nothing more
    assert [r.kind for r in reports] == ["unhandled"]
    report = reports[0]
    assert report.machine_id == "rep1"
    assert report.handler == "Raising.foo_state"
    assert report.state == "Foo"
    assert report.err is mach.err
    lines = report.message.splitlines()
    assert lines[0] == (
        "unhandled error in machine rep1 in Raising.foo_state (state Foo): ValueError: boom"
    )
    assert lines[1].startswith("no handler defines exception_state: bind am.ExceptionHandler()")
    assert "report_errors=False (AM_REPORT_ERRORS=0)" in lines[1]
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"
    assert 'raise ValueError("boom")' in report.message
    records = [r for r in caplog.records if r.name == "asyncmachine_trio"]
    assert [r.levelname for r in records] == ["ERROR"]
    record = records[0]
    assert record.getMessage() == "\n".join(lines[:2])  # the traceback is exc_info
    assert record.exc_info is not None and record.exc_info[1] is mach.err
    assert caplog.text.rstrip().endswith("ValueError: boom")
    assert record.__dict__["machine_id"] == "rep1"
    assert record.__dict__["handler"] == "Raising.foo_state"
    assert record.__dict__["state"] == "Foo"


def test_add_err_without_handlers_is_reported() -> None:
    with amt.error_reports() as reports:
        mach = am.Machine(FOO_BAR, id="rep2")
        err = RuntimeError("disk full")
        mach.add_err(err)
        mach.bind_handlers(object())  # the first binding re-adds the error: not twice
    assert [r.kind for r in reports] == ["unhandled"]
    assert reports[0].message.startswith(
        "unhandled error in machine rep2: RuntimeError: disk full\n"
    )


@pytest.mark.anyio
async def test_async_handler_and_fork_errors_are_reported() -> None:
    class AsyncRaising:
        async def foo_state(self, e: am.Event) -> None:
            raise KeyError("gone")

    async def task() -> None:
        raise OSError("no route")

    with amt.error_reports() as reports:
        async with am.open_machine(FOO_BAR, id="rep3", handlers=AsyncRaising()) as mach:
            with anyio.fail_after(1):
                w = mach.when_err()
                mach.add1("Foo")
                await w
                mach.remove1("Exception")
                mach.add1("Bar")
                w = mach.when_err()
                mach.fork("Bar", task)
                await w
    heads = [r.message.splitlines()[0] for r in reports]
    assert heads == [
        "unhandled error in machine rep3 in task AsyncRaising.foo_state of state Foo:"
        " KeyError: 'gone'",
        "unhandled error in machine rep3 in task test_async_handler_and_fork_errors_are_reported"
        ".<locals>.task of state Bar: OSError: no route",
    ]


def test_handled_errors_are_not_reported_as_unhandled() -> None:
    seen: list[BaseException | None] = []

    class Handled(Raising):
        def exception_state(self, e: am.Event) -> None:
            args = am.parse_args(e.args, am.AException)
            seen.append(args.err if args else None)

    with amt.error_reports() as reports:
        mach = am.Machine(FOO_BAR, handlers=Handled())
        mach.add1("Foo")
    assert reports == []
    assert len(seen) == 1 and isinstance(seen[0], ValueError)


def test_exception_handler_logs_at_error(caplog: pytest.LogCaptureFixture) -> None:
    class Logged(am.ExceptionHandler, Raising):
        pass

    caplog.set_level(logging.WARNING, "asyncmachine_trio")
    with amt.error_reports() as reports:
        mach = am.Machine(FOO_BAR, id="rep4", handlers=Logged())
        mach.add1("Foo")
    assert [r.kind for r in reports] == ["handled"]
    assert reports[0].message.startswith(
        "error in machine rep4 in Logged.foo_state: ValueError: boom\nTraceback"
    )
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert caplog.records[0].getMessage() == (
        "error in machine rep4 in Logged.foo_state: ValueError: boom"
    )


def test_switch_silences_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    with amt.error_reports() as reports:
        am.Machine(FOO_BAR, handlers=Raising(), report_errors=False).add1("Foo")
        monkeypatch.setenv("AM_REPORT_ERRORS", "0")
        mach = am.Machine(FOO_BAR, handlers=Raising())
        assert mach.report_errors is False
        mach.add1("Foo")
    assert reports == []


def test_handler_timeout_is_reported_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    class Slow:
        def foo_state(self, e: am.Event) -> None:
            time.sleep(0.03)

        def bar_enter(self, e: am.Event) -> None:
            time.sleep(0.03)

    caplog.set_level(logging.WARNING, "asyncmachine_trio")
    with amt.error_reports() as reports:
        mach = am.Machine(FOO_BAR, id="slow", handlers=Slow(), handler_timeout=0.01)
        assert mach.add1("Foo") is am.Result.CANCELED
        assert mach.add1("Bar") is am.Result.CANCELED
    assert mach.active_states() == []
    assert [r.kind for r in reports] == ["timeout", "timeout"]
    first, second = (r.message for r in reports)
    assert re.fullmatch(
        r"handler timeout in machine slow: Slow.foo_state took 0\.0\d\ds,"
        r" over handler_timeout=0.01s; its states were reverted",
        first,
    ), first
    assert second.endswith("Slow.bar_enter took " + second.split(" took ")[1])
    assert second.endswith("its transition was canceled")
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert caplog.records[0].getMessage() == first
    err = mach.internal_errors[0]
    assert isinstance(err, am.HandlerTimeoutError)
    assert err.handler == "Slow.foo_state" and err.limit == 0.01 and err.elapsed >= 0.03
    assert str(err).startswith("handler timeout: FooState from comm-Slow: Slow.foo_state took")
    assert mach.err is None  # a timeout is not an error of the machine's own


def test_fail_on_unhandled_errors() -> None:
    with pytest.raises(AssertionError, match="1 unhandled machine error") as info:
        with amt.fail_on_unhandled_errors():
            am.Machine(FOO_BAR, id="rep5", handlers=Raising()).add1("Foo")
    assert "unhandled error in machine rep5 in Raising.foo_state" in str(info.value)
    with amt.fail_on_unhandled_errors():  # handled: passes
        am.Machine(FOO_BAR, handlers=am.ExceptionHandler()).add_err(ValueError("x"))


PLUGIN_TESTS = """
import pytest
import asyncmachine_trio as am

SCHEMA = {"Foo": am.State()}

class Raising:
    def foo_state(self, e):
        raise ValueError("boom")

def test_fixture_fails(am_no_unhandled_errors):
    am.Machine(SCHEMA, handlers=Raising()).add1("Foo")

def test_fixture_passes(am_no_unhandled_errors):
    am.Machine(SCHEMA).add1("Foo")

def test_without_fixture():
    am.Machine(SCHEMA, handlers=Raising()).add1("Foo")

@pytest.mark.am_unhandled_errors_ok
def test_opted_out():
    am.Machine(SCHEMA, handlers=Raising()).add1("Foo")
"""


# the textual snapshot plugin's session hooks do not survive a nested session
ARGS = ("-q", "-p", "no:cacheprovider", "-p", "no:textual-snapshot", "-p", "no:syrupy")


def test_pytest_plugin(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["asyncmachine_trio.pytest_plugin"]\n')
    pytester.makepyfile(PLUGIN_TESTS)
    result = pytester.runpytest_inprocess(*ARGS)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*1 unhandled machine error(s):*"])
    strict = pytester.runpytest_inprocess(*ARGS, "--am-fail-unhandled")
    strict.assert_outcomes(passed=2, failed=2)


def test_the_same_unhandled_error_again_soon_is_counted_not_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from asyncmachine_trio.machine import report

    with amt.error_reports() as reports:
        mach = am.Machine(FOO_BAR, id="rep-again")
        for _ in range(3):  # e.g. a worker failing at start-up, over and over
            mach.add_err(RuntimeError("disk full"))
        mach.add_err(RuntimeError("disk on fire"))  # a different error: reported
        mach.add_err(RuntimeError("disk on fire"))
        monkeypatch.setattr(report, "REPEAT_WINDOW", 0.0)  # the window has passed
        mach.add_err(RuntimeError("disk on fire"))
        other = am.Machine(FOO_BAR, id="rep-other")  # another machine: its own reports
        other.add_err(RuntimeError("disk full"))
    heads = [(r.machine_id, r.message.splitlines()[0]) for r in reports]
    assert heads == [
        ("rep-again", "unhandled error in machine rep-again: RuntimeError: disk full"),
        ("rep-again", "unhandled error in machine rep-again: RuntimeError: disk on fire"),
        (
            "rep-again",
            "unhandled error in machine rep-again: RuntimeError: disk on fire"
            " (it happened 1 more time since its last report, not logged)",
        ),
        ("rep-other", "unhandled error in machine rep-other: RuntimeError: disk full"),
    ]
