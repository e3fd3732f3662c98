"""The public names of ``asyncmachine_trio`` and the core with / without an event loop."""

from __future__ import annotations

import subprocess
import sys

import trio
import trio.lowlevel

import asyncmachine_trio as am

R = am.Result
NORELS = {"A": am.State(), "B": am.State(), "C": am.State(), "D": am.State()}

# every public name of a freshly imported package (submodules imported by other
# tests would add attributes, so the list is read in a clean interpreter)
PUBLIC = [
    "ACheck",
    "AException",
    "ANY",
    "ARGS_PREFIX",
    "ArgumentError",
    "AsyncMachineError",
    "AutoLivelockError",
    "Ctx",
    "DISPOSING",
    "DisposedError",
    "EXCEPTION",
    "Event",
    "ExceptionArgsPanic",
    "ExceptionHandler",
    "HEALTHCHECK",
    "HEARTBEAT",
    "HandlerTimeoutError",
    "HandlerWarning",
    "LOG_ARGS",
    "LastTxTracer",
    "LogLevel",
    "MACHINE_RESTORED",
    "Machine",
    "MutSource",
    "Mutation",
    "MutationType",
    "NestedEvalError",
    "NoNurseryError",
    "Position",
    "READY",
    "Relation",
    "RelationError",
    "Result",
    "START",
    "Schema",
    "SchemaError",
    "Serialized",
    "State",
    "StateCtx",
    "StateGroups",
    "StateNames",
    "StateUnknownError",
    "States",
    "Step",
    "StepType",
    "TAG_ARGS_REQ",
    "Time",
    "TimeIndex",
    "Tracer",
    "TracerError",
    "Transition",
    "TypedArgs",
    "Waiter",
    "WrongThreadError",
    "adjacent_states",
    "args_key",
    "args_merge",
    "capitalize",
    "compiled",
    "graph",
    "hash_str",
    "helpers",
    "history",
    "index_to_states",
    "is_active_tick",
    "log_args_mapper",
    "machine",
    "next_active",
    "next_active_in",
    "next_inactive",
    "next_inactive_in",
    "node",
    "not_handler",
    "open_machine",
    "parse_args",
    "parse_schema",
    "pass_args",
    "rpc",
    "schema_filter_by_tag",
    "schema_merge",
    "schema_prefix",
    "snake",
    "states",
    "states_add",
    "states_by_tag",
    "states_diff",
    "states_equal",
    "states_equal_order",
    "states_filter_match",
    "states_hash",
    "states_prefix",
    "states_remove",
    "states_shared",
    "states_to_index",
    "states_unique",
    "states_with_prefix",
    "telemetry",
    "testing",
    "vis",
]

# the core names the manual and docs/api.md document
CORE_NAMES = [
    "AsyncMachineError",
    "Ctx",
    "DisposedError",
    "EXCEPTION",
    "Event",
    "ExceptionHandler",
    "HandlerTimeoutError",
    "LOG_ARGS",
    "LogLevel",
    "Machine",
    "MutSource",
    "Mutation",
    "MutationType",
    "NestedEvalError",
    "NoNurseryError",
    "Position",
    "Relation",
    "Result",
    "Schema",
    "SchemaError",
    "Serialized",
    "State",
    "StateCtx",
    "StateGroups",
    "StateUnknownError",
    "States",
    "Time",
    "TimeIndex",
    "Tracer",
    "Transition",
    "Waiter",
    "index_to_states",
    "is_active_tick",
    "log_args_mapper",
    "open_machine",
    "parse_schema",
    "states_add",
    "states_diff",
    "states_equal",
    "states_equal_order",
    "states_prefix",
    "states_remove",
    "states_shared",
    "states_to_index",
    "states_unique",
    "states_with_prefix",
]


def fresh_public_names() -> list[str]:
    code = (
        "import asyncmachine_trio as am\n"
        "print('\\n'.join(n for n in dir(am) if not n.startswith('_')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.split()


def test_public_names_pinned() -> None:
    assert sorted(PUBLIC) == PUBLIC
    assert fresh_public_names() == PUBLIC


def test_design_names_present() -> None:
    public = [n for n in dir(am) if not n.startswith("_")]
    assert [n for n in CORE_NAMES if n not in public] == []


def test_version() -> None:
    assert isinstance(am.__version__, str)


def test_error_hierarchy() -> None:
    for err in (
        am.StateUnknownError,
        am.SchemaError,
        am.HandlerTimeoutError,
        am.AutoLivelockError,
        am.NestedEvalError,
        am.DisposedError,
        am.NoNurseryError,
        am.ArgumentError,
        am.TracerError,
        am.RelationError,
        am.WrongThreadError,
    ):
        assert issubclass(err, am.AsyncMachineError)
    assert issubclass(am.StateUnknownError, KeyError)
    assert issubclass(am.ArgumentError, TypeError)


# ----- the core without an event loop


def test_core_works_without_event_loop() -> None:
    calls: list[str] = []

    class H:
        def a_state(self, e: am.Event) -> None:
            calls.append(e.name)
            e.machine.add1("B")

    mach = am.Machine(NORELS, id="sync", handlers=H())
    w = mach.when1("B")
    assert not w.is_set()
    assert mach.add1("A") is R.EXECUTED
    assert calls == ["AState"]
    assert mach.is_(["A", "B"])
    assert w.is_set()
    assert mach.handlers == ["comm-Sync"]
    assert mach.can_add1("C") is R.EXECUTED
    assert mach.eval("sync", lambda: None) is True
    mach.dispose()
    assert mach.when_disposed().is_set()


def test_wrong_thread_raises() -> None:
    # a machine started on a loop belongs to that loop's thread
    async def main() -> list[BaseException]:
        errors: list[BaseException] = []
        async with am.open_machine(NORELS, id="thr") as mach:

            def other() -> None:
                try:
                    mach.add1("A")
                except BaseException as err:
                    errors.append(err)

            await trio.to_thread.run_sync(other)
            assert mach.active_states() == []
            # trio.from_thread is the way in
            await trio.to_thread.run_sync(lambda: trio.from_thread.run_sync(mach.add1, "B"))
            assert mach.active_states() == ["B"]
        return errors

    errors = trio.run(main)
    assert len(errors) == 1
    assert isinstance(errors[0], am.WrongThreadError)
    assert "trio.from_thread" in str(errors[0])


# ----- inside trio.run


def test_core_inside_trio_run() -> None:
    async def main() -> list[str]:
        mach = am.Machine(NORELS, id="trio")
        seen: list[str] = []

        class H:
            def a_state(self, e: am.Event) -> None:
                seen.append("AState")

        mach.bind_handlers(H())
        w = mach.when(["A", "B"])
        assert mach.add1("A") is R.EXECUTED
        assert not w.is_set()
        assert mach.add1("B") is R.EXECUTED
        with trio.fail_after(1):
            await w
        t = mach.when_ticks("A", 2)
        mach.remove1("A")
        mach.add1("A")
        with trio.fail_after(1):
            await t.wait()
        seen.append(mach.string())
        mach.dispose()
        with trio.fail_after(1):
            await mach.when_disposed()
        return seen

    assert trio.run(main) == ["AState", "AState", "(A:3 B:1)"]


def test_waiter_resolved_by_task() -> None:
    async def main() -> str:
        mach = am.Machine(NORELS, id="task")

        async def later() -> None:
            await trio.lowlevel.checkpoint()
            mach.add1("C")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(later)
            with trio.fail_after(1):
                await mach.when1("C")
        return mach.string()

    assert trio.run(main) == "(C:1)"


def test_open_machine_inside_trio_run() -> None:
    async def main() -> tuple[str, bool]:
        async with am.open_machine(NORELS, id="om") as mach:
            assert isinstance(mach, am.Machine)
            assert mach.set(["A", "C"]) is R.EXECUTED
            text = mach.string_all()
        return text, mach.is_disposed

    assert trio.run(main) == ("(A:1 C:1) [B:0 D:0 Exception:0]", True)
