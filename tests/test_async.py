"""Waiting, state-scoped tasks, async handlers and dispose, on trio and asyncio."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

import asyncmachine_trio as am

pytestmark = pytest.mark.anyio


SCHEMA = {
    "A": am.State(),
    "B": am.State(),
    "M": am.State(multi=True),
    "Start": am.State(),
    "Disposing": am.State(),
}


async def test_waiters_resolve_when_awaited() -> None:
    mach = am.Machine(SCHEMA)
    w_a = mach.when1("A")
    w_ab = mach.when(["A", "B"])
    w_not = mach.when_not1("A")
    assert w_not.is_set()
    mach.add1("A")
    await w_a
    assert not w_ab.is_set()
    mach.add1("B")
    await w_ab.wait()
    w_gone = mach.when_not(["A", "B"])
    mach.remove(["A", "B"])
    await w_gone
    w_ticks = mach.when_ticks("M", 3)
    for _ in range(2):
        mach.add1("M")
    await w_ticks
    assert mach.tick("M") == 3


async def test_waiter_wakes_a_blocked_task() -> None:
    mach = am.Machine(SCHEMA)
    seen: list[str] = []

    async def waiter() -> None:
        await mach.when1("B")
        seen.append("B")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(0.01)
        assert seen == []
        mach.add1("B")
    assert seen == ["B"]


async def test_closed_waiter_is_unregistered() -> None:
    mach = am.Machine(SCHEMA)
    with mach.when1("A") as w:
        assert not w.is_set()
    mach.add1("A")
    assert not w.is_set()


async def test_forked_tasks_are_cancelled_with_their_state() -> None:
    running = 0
    finished = 0
    other_cancelled = False

    async def work() -> None:
        nonlocal running, finished
        running += 1
        try:
            await anyio.sleep(100)
            finished += 1
        finally:
            running -= 1

    async def other() -> None:
        nonlocal other_cancelled
        try:
            await anyio.sleep(1)
        except anyio.get_cancelled_exc_class():
            other_cancelled = True
            raise

    async with am.open_machine(SCHEMA) as mach:
        mach.add(["A", "B"])
        for _ in range(1000):
            assert mach.fork("A", work)
        mach.fork("B", other)
        await anyio.sleep(0.01)
        assert running == 1000
        mach.remove1("A")
        await anyio.sleep(0.01)
        assert running == 0
        assert finished == 0
        assert mach.is1("B")
        assert not other_cancelled
        # an expired scope starts nothing
        ctx = mach.new_state_ctx("A")
        mach.add1("A")
        assert ctx.expired
    assert not mach.is_err()


async def test_multi_reentry_cancels_previous_instance() -> None:
    cancelled = 0
    started = 0

    class Handlers:
        async def m_state(self, e: am.Event) -> None:
            nonlocal cancelled, started
            started += 1
            try:
                await anyio.sleep(100)
            except anyio.get_cancelled_exc_class():
                cancelled += 1
                raise

    async with am.open_machine(SCHEMA, handlers=Handlers()) as mach:
        mach.add1("M")
        await anyio.sleep(0.01)
        mach.add1("M")
        await anyio.sleep(0.01)
        assert (started, cancelled) == (2, 1)
        assert mach.is1("M")
    assert cancelled == 2


async def test_async_handler_error_becomes_exception_and_machine_goes_on() -> None:
    class Handlers:
        async def a_state(self, e: am.Event) -> None:
            await anyio.sleep(0.001)
            raise ValueError("async boom")

    async with am.open_machine(SCHEMA, handlers=Handlers()) as mach:
        w = mach.when_err()
        assert mach.add1("A") is am.Result.EXECUTED
        await w
        assert isinstance(mach.err, ValueError)
        assert str(mach.err) == "async boom"
        assert mach.add1("B") is am.Result.EXECUTED
        assert mach.is_(["A", "B", "Exception"])


async def test_async_handler_cancelled_silently_when_state_removed() -> None:
    events: list[str] = []

    class Handlers:
        async def a_state(self, e: am.Event) -> None:
            events.append("start")
            await anyio.sleep(100)
            events.append("never")

    async with am.open_machine(SCHEMA, handlers=Handlers()) as mach:
        mach.add1("A")
        await anyio.sleep(0.01)
        mach.remove1("A")
        await anyio.sleep(0.01)
        assert events == ["start"]
        assert not mach.is_err()


async def test_event_fork_is_scoped_to_the_handler_state() -> None:
    ticks: list[int] = []

    class Handlers:
        def a_state(self, e: am.Event) -> None:
            e.fork(self.loop, e.machine)

        async def loop(self, mach: am.Machine) -> None:
            while True:
                ticks.append(mach.tick("A"))
                await anyio.sleep(0.01)

    async with am.open_machine(SCHEMA, handlers=Handlers()) as mach:
        mach.add1("A")
        await anyio.sleep(0.025)
        mach.remove1("A")
        n = len(ticks)
        await anyio.sleep(0.05)
        assert len(ticks) == n >= 2
        assert set(ticks) == {1}


async def test_fork_without_task_group_raises() -> None:
    mach = am.Machine(SCHEMA)
    mach.add1("A")

    async def nothing() -> None:
        pass

    with pytest.raises(am.NoNurseryError):
        mach.fork("A", nothing)


async def test_mutations_from_10000_tasks_are_all_processed() -> None:
    done = 0

    class Handlers:
        def m_state(self, e: am.Event) -> None:
            nonlocal done
            done += 1

    async with am.open_machine(SCHEMA, handlers=Handlers()) as mach:

        async def mutate() -> None:
            await anyio.lowlevel.checkpoint()
            assert mach.add1("M") is am.Result.EXECUTED

        async with anyio.create_task_group() as tg:
            for _ in range(10_000):
                tg.start_soon(mutate)
        assert done == 10_000
        assert mach.tick("M") == 1 + 2 * 9_999


async def test_queue_limit_is_honoured_and_reported() -> None:
    lines: list[str] = []
    results: list[am.Result] = []

    class Handlers:
        def a_state(self, e: am.Event) -> None:
            for _ in range(10_000):
                results.append(e.machine.add1("M"))

    mach = am.Machine(
        SCHEMA, queue_limit=100, log_level=am.LogLevel.OPS, logger=lambda _lvl, ln: lines.append(ln)
    )
    mach.bind_handlers(Handlers())
    mach.add1("A")
    assert results.count(am.Result.QUEUED) == 100
    assert results.count(am.Result.CANCELED) == 10_000 - 100
    assert mach.tick("M") == 1 + 2 * 99
    assert any("[queue:full] M (limit 100)" in ln for ln in lines)
    assert mach.queue_len() == 0


async def test_dispose_cancels_scopes_and_resolves_waiters() -> None:
    disposed: list[str] = []
    async with am.open_machine(SCHEMA, id="d1") as mach:
        mach.on_dispose(disposed.append)
        mach.add1("A")
        waiters = [mach.when1("B"), mach.when_ticks("A", 10), mach.when_query(lambda c: False)]
        ctx = mach.new_state_ctx("A")
        cancelled = False

        async def work() -> None:
            nonlocal cancelled
            try:
                await anyio.sleep(100)
            except anyio.get_cancelled_exc_class():
                cancelled = True
                raise

        mach.fork("A", work)
        await anyio.sleep(0.01)
        w_disposed = mach.when_disposed()
        mach.dispose()
        await w_disposed
        await anyio.sleep(0.01)
        assert cancelled
        assert ctx.expired
        assert all(w.is_set() for w in waiters)
        assert disposed == ["d1"]
        assert mach.add1("B") is am.Result.CANCELED
        assert mach.when1("B").is_set()


async def test_dispose_async_removes_start_first() -> None:
    seen: list[str] = []

    class Handlers:
        def start_end(self, e: am.Event) -> None:
            seen.append("StartEnd")

    async with am.open_machine(SCHEMA, handlers=Handlers()) as mach:
        mach.add1("Start")
        await mach.dispose_async()
        assert mach.is_disposed
    assert seen == ["StartEnd"]


async def test_cancelled_task_group_adds_disposing() -> None:
    seen: list[str] = []

    class Handlers:
        def disposing_state(self, e: am.Event) -> None:
            seen.append("Disposing")
            e.machine.dispose()

    mach = am.Machine(SCHEMA, handlers=Handlers())
    async with anyio.create_task_group() as tg:
        mach.start(tg)
        await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert seen == ["Disposing"]
    assert mach.is_disposed


async def test_cancelled_task_group_disposes_without_disposing_state() -> None:
    mach = am.Machine({"A": am.State()})
    async with anyio.create_task_group() as tg:
        mach.start(tg)
        tg.cancel_scope.cancel()
    assert mach.is_disposed


async def test_calls_from_another_thread_are_refused() -> None:
    async with am.open_machine(SCHEMA) as mach:
        with pytest.raises(am.WrongThreadError, match="from_thread"):
            await anyio.to_thread.run_sync(mach.add1, "A")
        await anyio.to_thread.run_sync(lambda: anyio.from_thread.run_sync(mach.add1, "A"))
        assert mach.is1("A")
