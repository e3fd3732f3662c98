"""Waiting, state-scoped tasks, async handlers and dispose, on trio and asyncio."""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

import asyncmachine_trio as am
from asyncmachine_trio.machine.tasks import IDLE_WORKERS

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
    ended: list[bool] = []

    class Handlers:
        def a_state(self, e: am.Event) -> None:
            e.fork(self.loop, e.machine, e.machine.new_state_ctx("A"))

        async def loop(self, mach: am.Machine, ctx: am.StateCtx) -> None:
            try:
                while True:
                    ticks.append(mach.tick("A"))
                    await anyio.sleep(0.01)
                    # on a slow loop the sleep can end just before A does: the
                    # cancellation then comes at the next checkpoint, and the
                    # code in between checks the context (docs: manual §8)
                    if ctx.expired:
                        await anyio.sleep_forever()
            finally:
                ended.append(True)

    async with am.open_machine(SCHEMA, handlers=Handlers()) as mach:
        mach.add1("A")
        await anyio.sleep(0.025)
        mach.remove1("A")
        n = len(ticks)
        await anyio.sleep(0.05)
        assert ended == [True]  # cancelled, not only stopped by the check
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


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
@pytest.mark.parametrize("schema", [SCHEMA, {"A": am.State()}], ids=["disposing", "dispose"])
def test_a_cancelled_machine_leaves_no_exception_being_handled(
    backend: str, schema: dict[str, am.State]
) -> None:
    """The machine's watcher and task host handle the task group's cancellation, then
    wait (a graceful dispose, the tasks ending): once the loop ended, no exception is
    left "being handled" on the thread (the compiled build once left the cancellation
    there, as the ``__context__`` of every later exception and in ``sys.exc_info()``).
    A fresh thread, so nothing else ran on it."""
    seen: dict[str, object] = {}

    async def main() -> None:
        mach = am.Machine(schema, id="cx")
        async with anyio.create_task_group() as tg:
            mach.start(tg)
            mach.add1("A")
            mach.fork("A", anyio.sleep_forever)
            await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        seen["disposed"] = mach.is_disposed

    def run() -> None:
        anyio.run(main, backend=backend)
        seen["exc_info"] = sys.exc_info()
        try:
            raise ValueError("after the loop")
        except ValueError as e:
            seen["context"] = e.__context__

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert seen == {"disposed": True, "exc_info": (None, None, None), "context": None}


async def test_calls_from_another_thread_are_refused() -> None:
    async with am.open_machine(SCHEMA) as mach:
        with pytest.raises(am.WrongThreadError, match="from_thread"):
            await anyio.to_thread.run_sync(mach.add1, "A")
        await anyio.to_thread.run_sync(lambda: anyio.from_thread.run_sync(mach.add1, "A"))
        assert mach.is1("A")


# ----- the workers that run forks and async handlers (issue 12)


async def until(cond: Callable[[], bool]) -> None:
    """Poll ``cond`` (the tasks it watches run meanwhile), at most 5 s."""
    with anyio.fail_after(5):
        while not cond():  # noqa: ASYNC110
            await anyio.sleep(0.001)


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def test_jobs_see_the_contextvars_of_their_starter() -> None:
    seen: list[tuple[str, str]] = []

    class Handlers:
        async def a_state(self, e: am.Event) -> None:
            seen.append(("a", REQUEST_ID.get()))
            REQUEST_ID.set("set-in-a")  # stays in this job
            await anyio.lowlevel.checkpoint()
            seen.append(("a after await", REQUEST_ID.get()))

        async def b_state(self, e: am.Event) -> None:
            seen.append(("b", REQUEST_ID.get()))

    async def forked() -> None:
        seen.append(("fork", REQUEST_ID.get()))

    async with am.open_machine(SCHEMA, handlers=Handlers()) as mach:
        REQUEST_ID.set("r1")
        mach.add1("A")
        await until(lambda: len(seen) >= 2)
        REQUEST_ID.set("r2")
        mach.add1("B")
        mach.fork("B", forked)
        await until(lambda: len(seen) >= 4)
        assert REQUEST_ID.get() == "r2"
    assert seen[:2] == [("a", "r1"), ("a after await", "set-in-a")]
    assert sorted(seen[2:]) == [("b", "r2"), ("fork", "r2")]  # two tasks: either order


async def test_forks_on_a_reused_worker_run_in_their_starters_contextvars() -> None:
    seen: list[tuple[int, str]] = []

    async def job(k: int) -> None:
        seen.append((k, REQUEST_ID.get()))
        REQUEST_ID.set(f"set-in-{k}")  # stays in this job
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
            seen.append((k, REQUEST_ID.get()))

    async with am.open_machine(SCHEMA) as mach:
        mach.add1("A")
        workers = mach._workers
        assert workers is not None
        for k in range(3):
            REQUEST_ID.set(f"r{k}")
            assert mach.fork("A", job, k)
            await until(lambda k=k: len(seen) >= 4 * (k + 1) and len(workers.idle) == 1)
        assert REQUEST_ID.get() == "r2"
    # one worker ran the three jobs, one after another
    assert seen == [
        (k, v) for k in range(3) for v in (f"r{k}", f"set-in-{k}", f"set-in-{k}", f"set-in-{k}")
    ]


@pytest.mark.parametrize("reused", [False, True])
async def test_a_fork_whose_state_ended_before_it_started_is_cancelled_at_its_first_await(
    reused: bool,
) -> None:
    events: list[str] = []

    async def job() -> None:
        events.append("start")
        try:
            await anyio.sleep(1)
        except anyio.get_cancelled_exc_class():
            events.append("cancelled")
            raise
        events.append("never")

    async def quick() -> None:
        pass

    async with am.open_machine(SCHEMA) as mach:
        mach.add1("A")
        if reused:
            mach.fork("A", quick)
            await until(lambda: len(mach._workers.idle) == 1)
        assert mach.fork("A", job)
        mach.remove1("A")  # before the job started
        await until(lambda: len(events) >= 2)
        assert events == ["start", "cancelled"]
        assert not mach.is_err()


async def test_a_worker_whose_job_was_cancelled_runs_the_next_job_uncancelled() -> None:
    events: list[str] = []
    go = anyio.Event()

    class Handlers:
        async def a_state(self, e: am.Event) -> None:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                events.append("a cancelled")
                raise

        async def b_state(self, e: am.Event) -> None:
            await go.wait()  # a checkpoint in the (fresh) scope of the same worker
            await anyio.sleep(0.001)
            events.append("b done")

    async with am.open_machine(SCHEMA, handlers=Handlers()) as mach:
        for _ in range(3):
            go = anyio.Event()
            mach.add1("A")
            await anyio.sleep(0.001)
            mach.remove1("A")
            await anyio.sleep(0.001)
            mach.add1("B")
            go.set()
            await until(lambda: events.count("b done") >= events.count("a cancelled"))
            mach.remove1("B")
        assert events == ["a cancelled", "b done"] * 3
        assert not mach.is_err()


async def test_a_handler_that_ends_its_state_before_waiting_is_cancelled_at_its_first_await() -> (
    None
):
    events: list[str] = []

    class Handlers:
        async def a_state(self, e: am.Event) -> None:
            events.append("start")
            e.machine.remove1("A")
            try:
                await anyio.sleep(1)
            except anyio.get_cancelled_exc_class():
                events.append("cancelled")
                raise
            events.append("never")

    async with am.open_machine(SCHEMA, handlers=Handlers()) as mach:
        mach.add1("A")
        await until(lambda: len(events) >= 2)
        assert events == ["start", "cancelled"]
        assert not mach.is_err()


async def test_many_forks_per_activation_all_run_and_all_end() -> None:
    running = 0
    ended = 0

    async def task() -> None:
        nonlocal running, ended
        running += 1
        try:
            await anyio.sleep_forever()
        finally:
            running -= 1
            ended += 1

    async with am.open_machine(SCHEMA) as mach:
        for round_ in range(1, 4):
            mach.add1("A")
            for _ in range(100):
                assert mach.fork("A", task)
            await until(lambda: running >= 100)
            mach.remove1("A")
            await until(lambda r=round_: ended >= 100 * r)
            assert running == 0
        # parked workers are bounded, whatever the peak
        workers = mach._workers
        assert workers is not None and len(workers.idle) == IDLE_WORKERS
    assert not workers.idle  # disposal ended them


async def test_a_cancelled_group_ends_parked_workers() -> None:
    done = anyio.Event()

    class Handlers:
        async def a_state(self, e: am.Event) -> None:
            done.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            mach = am.Machine(SCHEMA, handlers=Handlers())
            mach.start(tg)
            mach.add1("A")
            await done.wait()  # its worker parked
            tg.cancel_scope.cancel()
    assert mach.is_disposed
