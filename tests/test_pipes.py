"""Pipes between machines (``asyncmachine_trio.states.pipes``) and ``examples/pipes.py``."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

import asyncmachine_trio as am
from asyncmachine_trio import states as ss
from asyncmachine_trio.states import pipes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class PipeStates(ss.BasicStates, ss.ConnectedStates):
    Foo = am.State()
    Bar = am.State()
    Custom = am.State()
    Multi = am.State(multi=True)
    ErrCustom = am.State(require=(am.EXCEPTION,))
    Failed = am.State()
    Online = am.State()
    Dialing = am.State()
    HangingUp = am.State()
    Offline = am.State()
    Guarded = am.State(require=("Custom",))


S = PipeStates


class Log:
    """Log lines of a machine, without its id prefix."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, _level: am.LogLevel, line: str) -> None:
        self.lines.append(line)

    def pipes(self) -> list[str]:
        return [x for x in self.lines if x.startswith("[pipe")]


class Recorder:
    """Target handlers: records args per state, rejects what it is told to."""

    def __init__(self) -> None:
        self.args: dict[str, dict[str, Any]] = {}
        self.reject: set[str] = set()
        self.raise_in: set[str] = set()

    def any_enter(self, e: am.Event) -> bool:
        tx = e.transition
        assert tx is not None
        return not any(s in self.reject for s in tx.called_states)

    def any_state(self, e: am.Event) -> None:
        tx = e.transition
        assert tx is not None
        for s in tx.called_states:
            if s in self.raise_in:
                raise RuntimeError(f"target handler failed for {s}")
            self.args[s] = dict(e.args)


def machine(name: str, log: Log | None = None, **kwargs: Any) -> am.Machine:
    return am.Machine(
        S,
        id=name,
        log_level=am.LogLevel.OPS if log is not None else am.LogLevel.NOTHING,
        logger=log,
        dont_log_id=True,
        **kwargs,
    )


@asynccontextmanager
async def started(*machs: am.Machine) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        for m in machs:
            m.start(tg)
        try:
            yield
        finally:
            for m in machs:
                m.dispose()


async def settle() -> None:
    """Let scheduled pipe deliveries run (no time passes)."""
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


async def wait(waiter: am.Waiter) -> None:
    with anyio.fail_after(1):
        await waiter


pytestmark = pytest.mark.anyio


# ----- add / add_flat / remove / remove_flat


async def test_add_forwards_args_without_blocking_the_source() -> None:
    rec = Recorder()
    src, dst = machine("src"), machine("dst", handlers=rec)
    async with started(src, dst):
        src.bind_handlers({"foo_state": pipes.add(src, dst, S.Foo)})
        assert src.add1(S.Foo, {"n": 1}) is am.Result.EXECUTED
        # the source transition is done; the target mutation comes later
        assert src.is1(S.Foo) and dst.not1(S.Foo)
        await wait(dst.when1(S.Foo))
        assert rec.args[S.Foo] == {"n": 1}


async def test_add_maps_to_another_state_and_errors_add_exception() -> None:
    src, dst = machine("src"), machine("dst")
    async with started(src, dst):
        src.bind_handlers(
            {
                "foo_state": pipes.add(src, dst, S.Foo, S.Bar),
                "custom_state": pipes.add(src, dst, S.Custom, S.ErrCustom),
            }
        )
        src.add([S.Foo, S.Custom])
        await wait(dst.when([S.Bar, S.ErrCustom, am.EXCEPTION]))
        assert dst.not_([S.Foo, S.Custom])


async def test_add_flat_sends_no_args_and_skips_active_states() -> None:
    rec = Recorder()
    src, dst = machine("src"), machine("dst", handlers=rec)
    async with started(src, dst):
        src.bind_handlers({"multi_state": pipes.add_flat(src, dst, S.Multi, S.Foo)})
        src.add1(S.Multi, {"n": 1})
        await wait(dst.when1(S.Foo))
        assert rec.args[S.Foo] == {}
        qt = dst.queue_tick()
        src.add1(S.Multi)  # re-entered on the source, Foo already active on the target
        await settle()
        assert src.tick(S.Multi) == 3
        assert dst.queue_tick() == qt  # no mutation at all
        assert dst.tick(S.Foo) == 1


async def test_remove_forwards_args() -> None:
    rec = Recorder()
    src, dst = machine("src"), machine("dst", handlers=rec)
    async with started(src, dst):
        src.bind_handlers({"foo_end": pipes.remove(src, dst, S.Foo, S.Bar)})
        dst.add1(S.Bar)
        src.add1(S.Foo)
        await settle()
        assert dst.is1(S.Bar)  # only deactivation is piped
        src.remove1(S.Foo, {"why": "done"})
        assert dst.is1(S.Bar)
        await wait(dst.when_not1(S.Bar))
        tx_args: list[dict[str, Any]] = []
        dst.bind_handlers({"bar_end": lambda e: tx_args.append(dict(e.args))})
        dst.add1(S.Bar)
        src.add1(S.Foo)
        src.remove1(S.Foo, {"why": "again"})
        await wait(dst.when_not1(S.Bar))
        assert tx_args == [{"why": "again"}]


async def test_remove_flat_skips_inactive_states() -> None:
    src, dst = machine("src"), machine("dst")
    async with started(src, dst):
        src.bind_handlers({"foo_end": pipes.remove_flat(src, dst, S.Foo)})
        src.add1(S.Foo)
        src.remove1(S.Foo)
        qt = dst.queue_tick()
        await settle()
        assert dst.queue_tick() == qt
        dst.add1(S.Foo)
        src.add1(S.Foo)
        src.remove1(S.Foo)
        await wait(dst.when_not1(S.Foo))


async def test_piped_mutations_keep_their_order() -> None:
    src, dst = machine("src"), machine("dst")
    async with started(src, dst):
        pipes.bind(src, dst, S.Foo)
        pipes.bind_many(src, dst, [S.Foo], [S.Bar])
        for _ in range(3):
            src.add1(S.Foo)
            src.remove1(S.Foo)
        src.add1(S.Foo)
        await settle()
        assert dst.is_([S.Foo, S.Bar])
        assert dst.tick(S.Foo) == src.tick(S.Foo) == 7
        src.remove1(S.Foo)
        await settle()
        assert dst.not_([S.Foo, S.Bar])
        # flat pipes decide on delivery: an Add still pending is not "inactive"
        src.bind_handlers(
            {
                "custom_state": pipes.add_flat(src, dst, S.Custom),
                "custom_end": pipes.remove_flat(src, dst, S.Custom),
            }
        )
        src.add1(S.Custom)
        src.remove1(S.Custom)
        await settle()
        assert dst.not1(S.Custom)
        assert dst.tick(S.Custom) == 2


# ----- a target that rejects, or fails


async def test_target_rejects_the_piped_mutation() -> None:
    rec = Recorder()
    rec.reject.add(S.Bar)
    src, dst = machine("src"), machine("dst", handlers=rec)
    async with started(src, dst):
        pipes.bind_many(src, dst, [S.Foo, S.Guarded], [S.Bar, S.Guarded])
        src.add1(S.Custom)
        assert src.add1(S.Foo) is am.Result.EXECUTED
        assert src.add1(S.Guarded) is am.Result.EXECUTED
        await settle()
        # the target said no (a handler, a relation): the source is unaffected
        assert src.is_([S.Foo, S.Guarded]) and not src.is_err()
        assert dst.not_([S.Bar, S.Guarded]) and not dst.is_err()
        # once the target accepts, the next activation gets through
        rec.reject.clear()
        dst.add1(S.Custom)
        src.remove([S.Foo, S.Guarded])
        src.add([S.Foo, S.Guarded])
        await wait(dst.when([S.Bar, S.Guarded]))


async def test_target_handler_error_stays_on_the_target() -> None:
    rec = Recorder()
    rec.raise_in.add(S.Foo)
    src, dst = machine("src"), machine("dst", handlers=rec)
    async with started(src, dst):
        pipes.bind(src, dst, S.Foo)
        src.add1(S.Foo)
        await wait(dst.when_err())
        assert isinstance(dst.err, RuntimeError)
        assert src.is1(S.Foo) and not src.is_err()


async def test_a_delivery_that_raises_does_not_crash_the_task_group() -> None:
    rec = Recorder()
    rec.raise_in.add(S.Foo)
    dst_log = Log()
    src, dst = machine("src"), machine("dst", dst_log, handlers=rec, panic_to_exception=False)
    async with started(src, dst):
        pipes.bind(src, dst, S.Foo)
        src.add1(S.Foo)
        await wait(dst.when_err())
        assert isinstance(dst.err, RuntimeError)
        assert "[pipe:err] RuntimeError: target handler failed for Foo" in dst_log.lines
        assert src.is1(S.Foo) and not src.is_err()


# ----- binds


async def test_bind_any_mirrors_every_transition() -> None:
    src, dst = machine("src"), machine("dst")
    async with started(src, dst):
        assert pipes.bind_any(src, dst) == "BindAny-dst"
        assert "BindAny-dst" in src.handlers
        src.add([S.Start, S.Foo], {"n": 1})
        await settle()
        assert set(dst.active_states()) == {S.Start, S.Foo, S.Disconnected}
        # removals are mirrored too (the reference skipped them)
        src.remove1(S.Foo)
        await settle()
        assert set(dst.active_states()) == {S.Start, S.Disconnected}
        # a Multi re-entry re-enters on the target
        src.add1(S.Multi)
        src.add1(S.Multi)
        await settle()
        assert dst.tick(S.Multi) == src.tick(S.Multi) == 3
        assert dst.string_all() == src.string_all()


async def test_bind_any_needs_every_source_state() -> None:
    src = machine("src")
    small = am.Machine({"Foo": am.State()}, id="small")
    with pytest.raises(am.StateUnknownError, match="BindAny"):
        pipes.bind_any(src, small)
    assert src.handlers == []


async def test_bind_connected() -> None:
    src, dst = machine("src"), machine("dst")
    async with started(src, dst):
        bid = pipes.bind_connected(
            src, dst, disconnected=S.Offline, connecting=S.Dialing, connected=S.Online
        )
        assert bid == "BindConnected-dst"
        src.add1(S.Start)  # Disconnected (Auto)
        await wait(dst.when1(S.Offline))
        src.add1(S.Connecting)
        await wait(dst.when1(S.Dialing))
        assert dst.not1(S.Offline)
        src.add1(S.Connected)
        await wait(dst.when1(S.Online))
        assert dst.not1(S.Dialing)
        src.add1(S.Disconnecting)  # not bound
        await wait(dst.when_not1(S.Online))
        assert dst.not_([S.Offline, S.Dialing, S.Online, S.HangingUp])


async def test_bind_err_forwards_the_error() -> None:
    src, dst, dst2 = machine("src"), machine("dst"), machine("dst2")
    async with started(src, dst, dst2):
        assert pipes.bind_err(src, dst) == "BindErr-dst"
        assert pipes.bind_err(src, dst2, S.Failed) == "BindErr-dst2"
        err = ValueError("boom")
        src.add_err(err)
        await wait(dst.when_err())
        await wait(dst2.when([S.Failed, am.EXCEPTION]))
        assert dst.err is err and dst2.err is err
        # Exception is Multi: every error is piped
        src.add_err(KeyError("again"))
        await wait(dst.when_ticks(am.EXCEPTION, 2))
        assert isinstance(dst.err, KeyError)


async def test_bind_start_and_bind_ready() -> None:
    src, dst = machine("src"), machine("dst")
    async with started(src, dst):
        assert pipes.bind_start(src, dst) == "BindStart-dst"
        assert pipes.bind_ready(src, dst, S.Online, S.Offline) == "BindReady-dst"
        dst.add1(S.Offline)
        src.add([S.Start, S.Ready])
        await wait(dst.when([S.Start, S.Online]))
        assert dst.is1(S.Offline)
        src.remove1(S.Ready)
        await wait(dst.when_not1(S.Offline))
        assert dst.is1(S.Online)  # removal goes to the "inactive" state
        src.remove1(S.Start)
        await wait(dst.when_not1(S.Start))


async def test_bind_one_state() -> None:
    src, dst = machine("src"), machine("dst")
    async with started(src, dst):
        assert pipes.bind(src, dst, S.Custom) == "Bind-Custom-dst"
        assert pipes.bind(src, dst, S.Foo, S.Online, S.Offline) == "Bind-Foo-dst"
        src.add([S.Custom, S.Foo])
        await wait(dst.when([S.Custom, S.Online]))
        dst.add1(S.Offline)
        src.remove([S.Custom, S.Foo])
        await wait(dst.when_not([S.Custom, S.Offline]))
        assert dst.is1(S.Online)


async def test_bind_many() -> None:
    src, dst = machine("src"), machine("dst")
    async with started(src, dst):
        assert pipes.bind_many(src, dst, [S.Foo, S.Bar]) == "BindMany-2-dst"
        assert pipes.bind_many(src, dst, [S.Custom], [S.Online]) == "BindMany-1-dst"
        src.add([S.Foo, S.Bar, S.Custom])
        await wait(dst.when([S.Foo, S.Bar, S.Online]))
        src.remove([S.Foo, S.Custom])
        await wait(dst.when_not([S.Foo, S.Online]))
        assert dst.is1(S.Bar)
        with pytest.raises(pipes.PipeError, match="2 source states but 1"):
            pipes.bind_many(src, dst, [S.Foo, S.Bar], [S.Foo])
        with pytest.raises(pipes.PipeError, match="twice"):
            pipes.bind_many(src, dst, [S.Foo, S.Foo], [S.Foo, S.Bar])


async def test_sync_copies_once_after_pending_pipes() -> None:
    src, dst = machine("src"), machine("dst")
    async with started(src, dst):
        src.add([S.Foo, S.Custom])
        dst.add([S.Bar, S.Online])
        assert pipes.sync(src, dst, [S.Foo, S.Bar]) == 2
        assert dst.is1(S.Foo) and dst.not1(S.Bar)
        assert pipes.sync(src, dst, [S.Custom, S.Start], [S.Dialing, S.Online]) == 2
        assert dst.is1(S.Dialing) and dst.not1(S.Online)
        # a pending piped Remove is delivered before the copy, not after it
        pipes.bind(src, dst, S.Custom)
        src.remove1(S.Custom)
        src.add1(S.Custom)
        pipes.sync(src, dst, [S.Custom])
        await settle()
        assert dst.is1(S.Custom)
        with pytest.raises(pipes.PipeError):
            pipes.sync(src, dst, [S.Foo], [])


# ----- log lines and bookkeeping


async def test_pipe_log_lines() -> None:
    src_log, dst_log = Log(), Log()
    src, dst = machine("src", src_log), machine("dst", dst_log)
    pipes.bind(src, dst, S.Foo, S.Bar)
    pipes.bind_err(src, dst)
    assert src_log.pipes() == [
        "[pipe-out:add] Foo to dst",
        "[pipe-out:remove] Foo to dst",
        "[pipe-out:add] Exception to dst",
    ]
    assert dst_log.pipes() == [
        "[pipe-in:add] Bar from src",
        "[pipe-in:remove] Bar from src",
        "[pipe-in:add] Exception from src",
    ]
    assert pipes.pipes_of(src) == src_log.pipes()
    assert pipes.pipes_of(dst) == dst_log.pipes()
    any_log = Log()
    other = machine("other", any_log)
    pipes.bind_any(src, other)
    assert any_log.pipes()[:2] == [
        "[pipe-in:add] Exception from src",
        "[pipe-in:add] ErrNetwork from src",
    ]
    assert len(pipes.pipes_of(other)) == len(src.state_names)
    assert src_log.pipes()[3] == "[pipe-out:add] Exception to other"


async def test_pipe_checks_states_and_machines() -> None:
    src, dst = machine("src"), machine("dst")
    small = am.Machine({"Foo": am.State()}, id="small")
    with pytest.raises(am.StateUnknownError):
        pipes.add(src, small, S.Bar)
    with pytest.raises(am.StateUnknownError):
        pipes.remove(small, src, S.Bar)
    with pytest.raises(am.StateUnknownError):
        pipes.bind_ready(src, small)
    with pytest.raises(pipes.PipeError):
        pipes.add(src, dst, "")
    with pytest.raises(am.StateUnknownError):
        pipes.sync(src, small, [S.Bar])
    dst.dispose()
    with pytest.raises(am.DisposedError):
        pipes.bind(src, dst, S.Foo)
    assert src.handlers == []


# ----- disposal


async def test_target_disposal_drops_the_pipes() -> None:
    src_log = Log()
    src, dst, other = machine("src", src_log), machine("dst"), machine("other")
    async with started(src, dst, other):
        pipes.bind_many(src, dst, [S.Foo, S.Bar])
        pipes.bind_err(src, dst)
        pipes.bind(src, other, S.Foo)
        src.add1(S.Foo)  # delivery still pending when dst goes away
        dst.dispose()
        assert src.handlers == ["Bind-Foo-other"]
        assert "[pipe:gc] dst" in src_log.lines
        assert pipes.pipes_of(src) == [
            "[pipe-out:add] Foo to other",
            "[pipe-out:remove] Foo to other",
        ]
        await settle()
        assert dst.active_states() == []
        src.add1(S.Bar)
        src.add_err(ValueError("still fine"))
        await wait(other.when1(S.Foo))
        assert src.is_([S.Foo, S.Bar, am.EXCEPTION])


async def test_source_disposal_drops_the_pipes() -> None:
    dst_log = Log()
    src, dst = machine("src"), machine("dst", dst_log)
    async with started(src, dst):
        pipes.bind(src, dst, S.Foo)
        src.add1(S.Foo)
        src.dispose()
        assert "[pipe:gc] src" in dst_log.lines
        assert pipes.pipes_of(dst) == []
        # what the source piped before it went away is still delivered
        await wait(dst.when1(S.Foo))


async def test_handler_of_a_disposed_target_does_nothing() -> None:
    src, dst = machine("src"), machine("dst")
    handler = pipes.add(src, dst, S.Foo)
    src.bind_handlers({"foo_state": handler}, id="manual")
    dst.dispose()
    assert src.handlers == ["manual"]  # not ours to detach
    assert src.add1(S.Foo) is am.Result.EXECUTED
    assert not src.is_err()


# ----- without a task group


def test_pipes_without_a_task_group_run_inline() -> None:
    src, dst = machine("src"), machine("dst")
    pipes.bind_many(src, dst, [S.Foo, S.Bar])
    pipes.bind_err(src, dst, S.ErrCustom)
    src.add([S.Foo, S.Bar])
    assert dst.is_([S.Foo, S.Bar])
    src.remove1(S.Foo)
    assert dst.is1(S.Bar) and dst.not1(S.Foo)
    src.add_err(ValueError("x"))
    assert dst.is_([S.ErrCustom, am.EXCEPTION])


def test_pipes_in_a_cycle_settle() -> None:
    a, b = machine("a"), machine("b")
    pipes.bind(a, b, S.Foo)
    pipes.bind(b, a, S.Foo)
    pipes.bind_any(a, machine("mirror"))
    a.add1(S.Foo)
    assert a.is1(S.Foo) and b.is1(S.Foo)
    b.remove1(S.Foo)
    assert a.not1(S.Foo) and b.not1(S.Foo)
    assert a.tick(S.Foo) == b.tick(S.Foo) == 2


# ----- the example


def load_example() -> Callable[[], Awaitable[list[str]]]:
    mod_name = "examples_pipes"
    module = sys.modules.get(mod_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(mod_name, EXAMPLES / "pipes.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    return cast(Callable[[], Awaitable[list[str]]], module.main)


async def test_example_runs() -> None:
    lines = await load_example()()
    assert "     source [pipe-out:add] Foo to destination" in lines
    assert "destination [pipe-in:add] Foo from source" in lines
    changes = [x for x in lines if "[pipe" not in x]
    assert changes == [
        "     source [state] +Ready",
        "     source [state] +Foo +Bar",
        "     source [state] +Custom",
        "destination [state] +Ready",
        "destination [state] +Foo",
        "destination [state] +Bar",
        "destination [state] +Custom",
        "     source [state] -Foo",
        "     source [state] +Exception",
        "     source [error] disk full",
        "destination [state] -Foo",
        "destination [state] +Exception",
        "destination [error] disk full",
        "destination error: ValueError('disk full')",
        "done: source (Ready:1 Bar:1 Custom:1 Exception:1)"
        " destination (Ready:1 Bar:1 Custom:1 Exception:1)",
    ]


async def test_one_drain_task_per_target_however_many_deliveries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,000 toggles piped to 20 targets without yielding: 20 drain tasks, not 20,000."""
    started_tasks = 0
    real = pipes._drain_task

    async def counted(target: Any, book: Any) -> None:
        await real(target, book)

    def start_soon_count(fn: Any) -> Any:
        nonlocal started_tasks
        started_tasks += 1
        return fn

    monkeypatch.setattr(pipes, "_drain_task", lambda t, b: start_soon_count(counted)(t, b))
    src = machine("src")
    targets = [machine(f"dst{i}") for i in range(20)]
    async with started(src, *targets):
        for dst in targets:
            src.bind_handlers({"foo_state": pipes.add(src, dst, S.Foo)})
            src.bind_handlers({"foo_end": pipes.remove(src, dst, S.Foo)})
        for _ in range(500):
            src.add1(S.Foo)
            src.remove1(S.Foo)
        assert started_tasks == len(targets)
        await settle()
        assert all(dst.not1(S.Foo) and dst.tick(S.Foo) == 1000 for dst in targets)
        # the next burst gets a new drain per target
        src.add1(S.Foo)
        await settle()
        assert started_tasks == 2 * len(targets)
        assert all(dst.is1(S.Foo) for dst in targets)


async def test_a_slow_moment_in_a_pipe_never_reverts_the_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """handler_timeout does not apply to pipes: a pause of the loop or the OS inside
    one (simulated by a slow delivery) would revert the source's transition and skip
    the pipes bound after it, losing their deliveries."""
    import time

    real = pipes._deliver

    def slow(source: Any, target: Any, fn: Any) -> None:
        time.sleep(0.02)
        real(source, target, fn)

    monkeypatch.setattr(pipes, "_deliver", slow)
    src = machine("src", handler_timeout=0.005)
    targets = [machine(f"dst{i}") for i in range(3)]
    async with started(src, *targets):
        for dst in targets:
            src.bind_handlers({"foo_state": pipes.add(src, dst, S.Foo)})
            src.bind_handlers({"foo_end": pipes.remove(src, dst, S.Foo)})
        for _ in range(3):
            src.add1(S.Foo)
            src.remove1(S.Foo)
        await settle()
        assert src.tick(S.Foo) == 6
        assert [dst.tick(S.Foo) for dst in targets] == [6, 6, 6]
        assert src.internal_errors == []
