"""asyncmachine_trio.helpers, on trio and asyncio.

Waiting logic never uses real sleeps: on trio the clock is a ``MockClock`` that
jumps whenever every task is blocked, so ``unit`` is one virtual second and
exact times are asserted; on asyncio ``unit`` is 1 ms and only order is checked.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import anyio
import attrs
import pytest

import asyncmachine_trio as am
from asyncmachine_trio import helpers as h

NORELS = {"A": am.State(), "B": am.State(), "C": am.State(), "D": am.State()}


@pytest.fixture
def unit(anyio_backend_name: str) -> float:
    """One time unit: a virtual second on trio, 10 real milliseconds on asyncio.

    (1 ms made the asyncio runs flaky on a loaded 2-core machine: a retry loop
    with a 5-unit budget could run out of real time.)
    """
    return 1.0 if anyio_backend_name == "trio" else 0.01


@pytest.fixture
def virtual(anyio_backend_name: str) -> bool:
    """True when exact (virtual) times can be asserted."""
    return anyio_backend_name == "trio"


@pytest.fixture(autouse=True)
def _no_debug_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset the env vars helpers read or write, restoring them afterwards."""
    for name in ("AM_DEBUG", "AM_DBG_ADDR", "AM_LOG", "AM_LOG_PRINT", "AM_TEST_RUNNER"):
        monkeypatch.setenv(name, "")  # records the old value, even when unset
        monkeypatch.delenv(name)


async def later(delay: float, fn: Any, *args: Any) -> None:
    await anyio.sleep(delay)
    fn(*args)


class EvalMach(am.Machine):
    """Mutations made inside an ``eval``, where the core returns ``QUEUED`` (semantics §3.3)."""

    def _in_eval(self, fn: Any) -> am.Result:
        out: list[am.Result] = []
        assert self.eval("test", lambda: out.append(fn()))
        return out[0]

    def add(
        self,
        states: Sequence[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> am.Result:
        return self._in_eval(lambda: super(EvalMach, self).add(states, args, event=event))

    def remove(
        self,
        states: Sequence[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> am.Result:
        return self._in_eval(lambda: super(EvalMach, self).remove(states, args, event=event))


# ----- MachineApi


def test_machine_implements_machine_api() -> None:
    assert isinstance(am.Machine(NORELS), h.MachineApi)
    assert not isinstance(object(), h.MachineApi)


# ----- schema hash


def test_schema_canonical_by_hand() -> None:
    schema = {
        "B": am.State(multi=True, require=("A",), after=("C", "A")),
        "A": am.State(auto=True, remove=("C", "B"), add=("D",), tags=("ignored",)),
        "D": am.State(),
        "C": am.State(require=()),
    }
    # sorted names; per state: name ":" [a,] [m,] then After; Remove; Add; Require;
    want = "A:a,;B,C,;D,;;" + "B:m,A,C,;;;A,;" + "C:;;;;" + "D:;;;;"
    assert h.schema_canonical(schema) == want
    # md5 of the UTF-8 text, first 6 hex chars (value from coreutils md5sum)
    assert h.schema_hash(schema) == "12e675"
    assert hashlib.md5(want.encode()).hexdigest()[:6] == "12e675"


def test_schema_hash_of_a_machine_includes_exception() -> None:
    schema = {
        "A": am.State(auto=True, remove=("C", "B"), add=("D",)),
        "B": am.State(multi=True, require=("A",), after=("C", "A")),
        "C": am.State(),
        "D": am.State(),
    }
    mach = am.Machine(schema)
    assert h.schema_canonical(mach.schema).endswith("D:;;;;Exception:m,;;;;")
    assert h.schema_hash(mach.schema) == "69611b"


def test_schema_hash_order_independent_and_edges() -> None:
    a = {"X": am.State(add=("Y", "Z")), "Y": am.State(), "Z": am.State()}
    b = {"Z": am.State(), "Y": am.State(), "X": am.State(add=("Z", "Y"))}
    assert h.schema_hash(a) == h.schema_hash(b)
    assert h.schema_hash(a) != h.schema_hash({**a, "Y": am.State(multi=True)})
    assert h.schema_hash(None) == ""
    assert h.schema_hash({}) == "d41d8c"  # md5 of the empty string

    class Typed(am.States):
        X = am.State(add=("Y", "Z"))
        Y = am.State()
        Z = am.State()

    assert h.schema_hash(Typed) == h.schema_hash(a)


def test_schema_hash_sorts_like_go_bytes() -> None:
    # Go sorts UTF-8 bytes; Python sorts code points: the same order
    schema = {name: am.State() for name in ("é", "a", "Ä", "Z")}
    assert h.schema_canonical(schema) == "Z:;;;;a:;;;;Ä:;;;;é:;;;;"
    assert h.schema_hash(schema) == "2c36ce"


# ----- waiting


@pytest.mark.anyio
async def test_wait_for_all(unit: float, virtual: bool) -> None:
    async with am.open_machine(NORELS) as mach:
        w1, w2 = mach.when1("A"), mach.when1("B")
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, unit, mach.add1, "A")
            tg.start_soon(later, 2 * unit, mach.add1, "B")
            await h.wait_for_all(w1, w2, timeout=10)
        assert mach.is_(["A", "B"])
        if virtual:
            assert anyio.current_time() == 2
        # nothing to wait for, or already resolved
        await h.wait_for_all()
        await h.wait_for_all(mach.when1("A"), timeout=0)


@pytest.mark.anyio
async def test_wait_for_all_timeout_closes_waiters(unit: float, virtual: bool) -> None:
    async with am.open_machine(NORELS) as mach:
        w = mach.when1("A")
        with pytest.raises(TimeoutError):
            await h.wait_for_all(w, mach.when1("B"), timeout=unit)
        if virtual:
            assert anyio.current_time() == 1
        mach.add1("A")
        assert not w.is_set()  # consumed: unregistered on return
        kept = mach.when1("B")
        with pytest.raises(TimeoutError):
            await h.wait_for_all(kept, timeout=unit, close=False)
        mach.add1("B")
        assert kept.is_set()


@pytest.mark.anyio
async def test_wait_for_all_ctx(unit: float) -> None:
    async with am.open_machine(NORELS) as mach:
        mach.add1("A")
        ctx = mach.new_state_ctx("A")
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, unit, mach.remove1, "A")
            with pytest.raises(h.ContextCanceledError):
                await h.wait_for_all(mach.when1("B"), timeout=10, ctx=ctx)
        assert ctx.cancelled
        with pytest.raises(h.ContextCanceledError):
            await h.wait_for_all(mach.when1("B"), ctx=ctx)


@pytest.mark.anyio
async def test_wait_for_all_debug_timeout(
    unit: float, virtual: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AM_DEBUG", "1")
    monkeypatch.delenv("AM_TEST_RUNNER", raising=False)
    assert h.is_debug()
    ev = anyio.Event()
    with pytest.raises(TimeoutError):
        await h.wait_for_all(ev, timeout=unit)
    if virtual:
        assert anyio.current_time() == 100  # AM_DEBUG: timeouts x100
    monkeypatch.setenv("AM_TEST_RUNNER", "1")
    assert not h.is_debug()


@pytest.mark.anyio
async def test_wait_for_any(unit: float, virtual: bool) -> None:
    async with am.open_machine(NORELS) as mach:
        w_a, w_b = mach.when1("A"), mach.when1("B")
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, unit, mach.add1, "B")
            assert await h.wait_for_any(w_a, w_b, timeout=10) == 1
        if virtual:
            assert anyio.current_time() == 1
        mach.add1("A")
        assert not w_a.is_set()  # the loser was closed
        ev = anyio.Event()
        assert await h.wait_for_any(ev, mach.when1("B")) == 1
        with pytest.raises(TimeoutError):
            await h.wait_for_any(ev, mach.when1("C"), timeout=unit)
        with pytest.raises(ValueError):
            await h.wait_for_any()


@pytest.mark.anyio
async def test_wait_for_err_all(unit: float) -> None:
    async with am.open_machine(NORELS) as mach:
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, unit, mach.add1, "A")
            tg.start_soon(later, 2 * unit, mach.add1, "B")
            await h.wait_for_err_all(mach, mach.when1("A"), mach.when1("B"), timeout=10)

        boom = ValueError("boom")
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, unit, mach.add_err, boom)
            with pytest.raises(h.ExceptionStateError) as info:
                await h.wait_for_err_all(mach, mach.when1("C"), timeout=10)
        assert info.value.err is boom
        assert info.value.__cause__ is boom
        assert str(info.value) == "Exception: boom"
        # already in Exception: fails at once, unless the waiters are done too
        with pytest.raises(h.ExceptionStateError):
            await h.wait_for_err_all(mach, mach.when1("C"), timeout=10)
        await h.wait_for_err_all(mach, mach.when1("A"), timeout=10)


@pytest.mark.anyio
async def test_wait_for_err_any_reports_the_error(unit: float) -> None:
    # the reference listens on the timer twice and never sees the error
    async with am.open_machine(NORELS) as mach:
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, unit, mach.add1, "B")
            got = await h.wait_for_err_any(mach, mach.when1("A"), mach.when1("B"), timeout=10)
            assert got == 1
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, unit, mach.add_err, RuntimeError("x"))
            with pytest.raises(h.ExceptionStateError):
                await h.wait_for_err_any(mach, mach.when1("C"), mach.when1("D"), timeout=10)


@pytest.mark.anyio
async def test_wait_for_err_disposed(unit: float) -> None:
    async with am.open_machine(NORELS) as mach:
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, unit, mach.dispose)
            with pytest.raises(am.DisposedError):
                await h.wait_for_err_all(mach, mach.when1("A"), timeout=10)


@pytest.mark.anyio
async def test_wait_and_interval(unit: float, virtual: bool) -> None:
    assert await h.wait(unit)
    async with am.open_machine(NORELS) as mach:
        mach.add1("A")
        ctx = mach.new_state_ctx("A")
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, unit, mach.remove1, "A")
            assert not await h.wait(10, ctx)
        assert not await h.wait(10, ctx)

    start = anyio.current_time()
    calls: list[float] = []

    def tick() -> None:
        calls.append(anyio.current_time() - start)

    # strictly before length: 1 2 (the tick at 3 ends the loop)
    assert await h.interval(unit, tick, length=3 * unit)
    assert len(calls) == 2
    if virtual:
        assert calls == [1, 2]

    calls.clear()

    async def until_three() -> bool:
        calls.append(0)
        return len(calls) < 3

    assert await h.interval(unit, until_three)
    assert len(calls) == 3
    with pytest.raises(ValueError):
        await h.interval(0, tick)


@pytest.mark.anyio
async def test_interval_while_state_ctx_lives(unit: float) -> None:
    async with am.open_machine(NORELS) as mach:
        mach.add1("A")
        ctx = mach.new_state_ctx("A")
        calls: list[int] = []

        def tick() -> None:
            calls.append(1)
            if len(calls) == 2:
                mach.remove1("A")

        assert not await h.interval(unit, tick, ctx=ctx)
        assert len(calls) == 2
        assert not await h.interval(unit, tick, ctx=ctx)
        assert len(calls) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
async def test_interval_slow_fn_like_a_go_ticker() -> None:
    start = anyio.current_time()
    calls: list[float] = []

    async def slow() -> bool:
        calls.append(anyio.current_time() - start)
        if len(calls) == 1:
            await anyio.sleep(2.5)
        return len(calls) < 3

    assert await h.interval(1, slow)
    # one missed tick runs at once, the other is dropped
    assert calls == [1, 3.5, 4]


@pytest.mark.anyio
async def test_group_when1_and_mach_group(unit: float) -> None:
    async with am.open_machine(NORELS) as m1, am.open_machine(NORELS) as m2:
        group = h.MachGroup([m1, m2])
        assert not group.is1("A")
        ws = h.group_when1(group, "A")
        m1.add1("A")
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, unit, m2.add1, "A")
            await h.wait_for_all(*ws, timeout=10)
        assert group.is1("A")
        assert not h.MachGroup().is1("A")
        m3 = am.Machine({"X": am.State()}, id="m3")
        with pytest.raises(am.StateUnknownError, match="A in machine m3"):
            h.group_when1([m1, m3], "A")


@pytest.mark.anyio
async def test_when_func(unit: float) -> None:
    async with am.open_machine(NORELS) as mach, anyio.create_task_group() as tg:
        done = h.when_func(tg, anyio.sleep, unit)
        assert await h.wait_for_any(mach.when1("A"), done, timeout=10) == 1
        assert done.is_set()


# ----- confirmed mutations


class Rejecting:
    """``b_enter`` and ``a_exit`` reject."""

    def b_enter(self, e: am.Event) -> bool:
        return False

    def a_exit(self, e: am.Event) -> bool:
        return False


@pytest.mark.anyio
async def test_add_sync_and_remove_sync() -> None:
    async with am.open_machine(NORELS, handlers=Rejecting()) as mach:
        assert await h.add1_sync(mach, "A")
        assert await h.add_sync(mach, ["C", "D"])
        assert not await h.add1_sync(mach, "B")
        assert not await h.remove1_sync(mach, "A")
        assert await h.remove_sync(mach, ["C", "D"])
        assert mach.active_states() == ["A"]


@pytest.mark.anyio
async def test_sync_helpers_wait_for_queued_mutations() -> None:
    mach = EvalMach(NORELS, handlers=Rejecting())
    assert mach.add(["C"]) == am.Result.QUEUED
    assert await h.add1_sync(mach, "A")
    assert not await h.add1_sync(mach, "B")
    # the reference returns True here although A stays active
    assert not await h.remove1_sync(mach, "A")
    assert await h.remove1_sync(mach, "C")
    assert mach.active_states() == ["A"]


class StartReady:
    """Adding Start forks a task that adds Ready one unit later."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def start_state(self, e: am.Event) -> None:
        mach = e.machine

        async def work() -> None:
            await anyio.sleep(self.delay)
            mach.add1("Ready")

        mach.fork("Start", work)


@pytest.mark.anyio
async def test_add_async(unit: float, virtual: bool) -> None:
    handlers = StartReady(unit)
    schema = {"Start": am.State(), "Ready": am.State(multi=True), "Never": am.State()}
    async with am.open_machine(schema, handlers=handlers) as mach:
        assert await h.add1_async(mach, "Ready", "Start", timeout=10)
        assert mach.tick("Ready") == 1
        if virtual:
            assert anyio.current_time() == 1
        # Multi: the *next* activation (tick 3), even though Ready is active
        mach.remove1("Start")
        assert await h.add_async(mach, "Ready", ["Start"], timeout=10)
        assert mach.tick("Ready") == 3
        with pytest.raises(TimeoutError):
            await h.add1_async(mach, "Never", "Start", timeout=unit)


@pytest.mark.anyio
async def test_add_async_activation_during_the_mutation() -> None:
    schema = {"Start": am.State(add=("Ready",)), "Ready": am.State(), "B": am.State()}

    class RejectingB:
        def b_enter(self, e: am.Event) -> bool:
            return False

    async with am.open_machine(schema, handlers=RejectingB()) as mach:
        assert await h.add1_async(mach, "Ready", "Start", timeout=0)
        assert not await h.add1_async(mach, "Ready", "B", timeout=0)  # canceled


@pytest.mark.anyio
async def test_add_async_ctx_and_dispose(unit: float) -> None:
    schema = {"Start": am.State(), "Ready": am.State(), "Other": am.State()}
    async with am.open_machine(schema) as mach:
        mach.add1("Other")
        ctx = mach.new_state_ctx("Other")
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, unit, mach.remove1, "Other")
            assert not await h.add1_async(mach, "Ready", "Start", timeout=10, ctx=ctx)
        mach.remove1("Start")
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, unit, mach.dispose)
            assert not await h.add1_async(mach, "Ready", "Start", timeout=10)


# ----- failsafe mutation requests


class RejectTimes:
    """``a_enter`` / ``a_exit`` reject the first ``n`` calls, recording call times."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.times: list[float] = []

    def _call(self) -> bool:
        self.times.append(anyio.current_time())
        return len(self.times) > self.n

    def a_enter(self, e: am.Event) -> bool:
        return self._call()

    def a_exit(self, e: am.Event) -> bool:
        return self._call()


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 9) for a, b in itertools.pairwise(times)]


@pytest.mark.anyio
async def test_mut_request_backoff(unit: float, virtual: bool) -> None:
    rec = RejectTimes(3)
    async with am.open_machine(NORELS, handlers=rec) as mach:
        req = h.new_req_add1(mach, "A")
        assert (req.retries, req.delay, req.backoff, req.max_duration) == (10, 0.1, 5.0, 5.0)
        req.delay, req.backoff, req.max_duration = 0.1 * unit, 5 * unit, 5 * unit
        assert await req.run() == am.Result.EXECUTED
        assert mach.is1("A")
        assert len(rec.times) == 4
        if virtual:
            assert gaps(rec.times) == [0.1, 0.2, 0.4]  # doubling from delay

        rec.times.clear()
        req = h.new_req_remove1(mach, "A")
        req.delay, req.backoff = 0.1 * unit, 0.25 * unit
        rec.n = 4
        assert await req.run() == am.Result.EXECUTED
        assert mach.not1("A")
        if virtual:
            assert gaps(rec.times) == [0.1, 0.2, 0.25, 0.25]  # capped at backoff


@pytest.mark.anyio
async def test_mut_request_gives_up(unit: float, virtual: bool) -> None:
    rec = RejectTimes(1000)
    async with am.open_machine(NORELS, handlers=rec) as mach:
        req = h.new_req_add(mach, ["A"])
        req.retries, req.delay = 3, 0.1 * unit
        with pytest.raises(h.RetriesExceededError) as info:
            await req.run()
        assert info.value.attempts == 4 and info.value.result == am.Result.CANCELED
        assert isinstance(info.value, h.MutationCanceledError)
        assert len(rec.times) == 4

        # max duration: fixed 1 unit delays, the last one cut to fit 2.5 units
        rec.times.clear()
        req = req.clone()
        req.retries, req.delay, req.backoff, req.max_duration = 100, unit, 0, 2.5 * unit
        start = anyio.current_time()
        with pytest.raises(h.RetriesExceededError) as info:
            await req.run()
        assert info.value.attempts == len(rec.times)
        if virtual:
            assert [t - start for t in rec.times] == [0, 1, 2, 2.5]


@pytest.mark.anyio
async def test_mut_request_ctx_and_clone(unit: float) -> None:
    rec = RejectTimes(1000)
    async with am.open_machine({**NORELS, "Live": am.State()}, handlers=rec) as mach:
        mach.add1("Live")
        ctx = mach.new_state_ctx("Live")
        req = h.new_req_add1(mach, "A")
        req.delay = unit
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, 2.5 * unit, mach.remove1, "Live")
            with pytest.raises(h.ContextCanceledError):
                await req.run(ctx)
        with pytest.raises(h.ContextCanceledError):
            await req.run(ctx)

        other = am.Machine(NORELS)
        clone = req.clone(other, am.MutationType.ADD, ["B"], {"x": 1})
        assert clone.mach is other and clone.states == ["B"] and clone.args == {"x": 1}
        assert clone.delay == unit and clone.event is None
        assert await clone.run() == am.Result.EXECUTED
        assert other.is1("B")
        with pytest.raises(ValueError):
            await h.MutRequest(mach, am.MutationType.SET, ["A"]).run()


# ----- check before mutating


class Guards:
    """``c_exit`` rejects; ``d_state`` records what ``cant_add1`` says from a handler."""

    def __init__(self) -> None:
        self.nested: list[bool] = []

    def c_exit(self, e: am.Event) -> bool:
        return False

    def d_state(self, e: am.Event) -> None:
        self.nested.append(h.cant_add1(e.machine, "A"))


def test_cant_and_ask() -> None:
    guards = Guards()
    tracer = am.LastTxTracer()
    rels = {"A": am.State(require=("C",)), "B": am.State(), "C": am.State(), "D": am.State()}
    mach = am.Machine(rels, handlers=guards, tracers=[tracer])
    qt = mach.queue_tick()
    # impossible: both report True (the reference's CantAdd has it inverted)
    assert h.cant_add1(mach, "A") and h.cant_add(mach, ["A", "B"])
    assert h.ask_add1(mach, "A") == am.Result.CANCELED
    assert h.ask_add(mach, ["A"]) == am.Result.CANCELED
    assert mach.queue_tick() == qt  # only dry runs happened
    assert tracer.last is not None and tracer.last.mutation.is_check
    assert not h.cant_add1(mach, "C")
    assert h.ask_add1(mach, "C") == am.Result.EXECUTED
    assert h.ask_add(mach, ["A"]) == am.Result.EXECUTED
    assert h.cant_remove1(mach, "C") and h.cant_remove(mach, ["C"])
    assert h.ask_remove1(mach, "C") == am.Result.CANCELED
    assert not h.cant_remove1(mach, "A")
    assert h.ask_remove(mach, ["A"]) == am.Result.EXECUTED
    assert h.ask_remove1(mach, "B") == am.Result.EXECUTED
    # from a handler the dry run is only queued: nothing confirmed
    mach.add1("D")
    assert guards.nested == [False]


# ----- Cond


def test_cond() -> None:
    mach = am.Machine(NORELS)
    mach.add(["A", "B"])
    assert h.Cond(is_=["A", "B"]).check(mach)
    assert not h.Cond(is_=["A", "C"]).check(mach)
    assert h.Cond(not_=["C"]).check(mach)
    assert not h.Cond(not_=["C", "A"]).check(mach)
    assert h.Cond(any1=["C", "B"]).check(mach)
    assert not h.Cond(any1=["C", "D"]).check(mach)
    assert h.Cond(any=[["A", "C"], ["B"]]).check(mach)
    assert not h.Cond(any=[["A", "C"]]).check(mach)
    assert h.Cond(clock={"A": 1}).check(mach)
    assert not h.Cond(clock={"A": 2}).check(mach)
    assert h.Cond().check(mach)
    assert not h.Cond().check(None)
    assert h.Cond().is_empty()
    assert not h.Cond(any=[["A"]]).is_empty()  # the reference forgets `any`
    cond = h.Cond(is_=["A"], any=[["B", "C"]], not_=["D"], clock={"A": 1})
    assert str(cond) == "is: [A], any: [[B C]], any1: [], not: [D], clock: [A:1]"
    assert cond == h.Cond(is_=("A",), any=(("B", "C"),), not_=("D",), clock={"A": 1})
    with pytest.raises(TypeError):
        h.Cond(is_="A")


# ----- StateLoop


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


LOOP_SCHEMA = {
    "Heartbeat": am.State(require=("Dep",)),
    "Dep": am.State(),
    "Starter": am.State(add=("Heartbeat",)),
    "Stopper": am.State(remove=("Heartbeat",)),
}


def beat(mach: am.Machine, n: int) -> None:
    for _ in range(n):
        mach.remove1("Heartbeat")
        mach.add1("Heartbeat")


def test_state_loop_threshold_per_window() -> None:
    mach = am.Machine(LOOP_SCHEMA)
    mach.add(["Dep", "Heartbeat"])
    beat(mach, 100)  # older ticks never count (the reference sums them all)
    clock = FakeClock()
    loop = h.StateLoop(mach, "Heartbeat", threshold=10, clock=clock)
    assert loop.ctx_states == ["Heartbeat", "Dep", "Starter"]
    assert str(loop) == f"StateLoop: ok for {mach.id}/Heartbeat"
    assert loop.ok()
    beat(mach, 5)  # 10 ticks: not above the threshold
    assert loop.ok()
    clock.now = 1.5  # a new window
    assert loop.ok()
    beat(mach, 5)
    assert loop.ok()
    beat(mach, 1)
    assert not loop.ok()
    assert loop.ended() and not loop.ok()
    assert mach.is_err()
    assert isinstance(mach.err, h.StateLoopError)
    assert str(mach.err) == f"loop: threshold exceeded for {mach.id}/Heartbeat"
    assert str(loop) == f"StateLoop: ended for {mach.id}/Heartbeat"


def test_state_loop_stops() -> None:
    mach = am.Machine(LOOP_SCHEMA)
    mach.add(["Dep", "Heartbeat"])
    loop = h.StateLoop(mach, "Heartbeat")
    mach.remove1("Heartbeat")
    assert not loop.ok()
    assert str(mach.err) == f"loop: state ctx expired for {mach.id}/Heartbeat"

    mach = am.Machine(LOOP_SCHEMA)
    mach.add(["Dep", "Heartbeat"])
    ctx = mach.new_state_ctx("Dep")
    loop = h.StateLoop(mach, "Heartbeat")
    mach.remove1("Dep")
    mach.add(["Dep", "Heartbeat"])
    assert not loop.ok(ctx)
    assert str(mach.err) == f"loop: arg ctx expired for {mach.id}/Heartbeat"

    mach = am.Machine(LOOP_SCHEMA)
    mach.add(["Dep", "Heartbeat"])
    go = [True, False]
    loop = h.StateLoop(mach, "Heartbeat", lambda: go.pop(0))
    assert loop.ok()
    assert not loop.ok()
    assert not mach.is_err()  # a check saying stop is no error

    loop = h.StateLoop(mach, "Heartbeat")
    loop.break_()
    assert loop.ended() and not loop.ok()
    assert not h.StateLoop(mach, "Missing").ok()


# ----- pools and fan-out / fan-in


@pytest.mark.anyio
async def test_pool_limits_concurrency(unit: float, virtual: bool) -> None:
    running = peak = 0
    done: list[int] = []

    async def task(i: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(unit)
        running -= 1
        done.append(i)

    async with h.open_pool(2) as pool:
        for i in range(5):
            pool.start_soon(task, i)
        assert pool.limiter.total_tokens == 2
    assert peak == 2 and sorted(done) == [0, 1, 2, 3, 4]
    if virtual:
        assert anyio.current_time() == 3

    async def square(x: int) -> int:
        await anyio.sleep(unit * (5 - x))
        return x * x

    assert await h.fan_out(square, range(5), limit=3) == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError):
        async with h.open_pool(0):
            pass


@pytest.mark.anyio
async def test_pool_ctx_cancels_tasks(unit: float) -> None:
    async with am.open_machine(NORELS) as mach:
        mach.add1("A")
        ctx = mach.new_state_ctx("A")
        finished: list[int] = []

        async def task(i: int) -> None:
            await anyio.sleep(unit * 10)
            finished.append(i)

        async with h.open_pool(1, ctx) as pool:
            pool.start_soon(task, 1)
            pool.start_soon(task, 2)
            await anyio.sleep(unit)
            mach.remove1("A")
        assert finished == []


@pytest.mark.anyio
async def test_fan_out_in(unit: float, virtual: bool) -> None:
    schema = {
        "Start": am.State(),
        "Task": am.State(require=("Start",)),
        "TaskDone": am.State(),
        "Ready": am.State(auto=True, require=("TaskDone",)),
    }
    async with am.open_machine(schema, id="fan") as mach:
        started: list[int] = []
        peak = 0

        def fn(i: int, task: str, task_done: str) -> None:
            started.append(i)

            async def work() -> None:
                nonlocal peak
                peak = max(peak, len(mach.active_states(fan.group_tasks)))
                await anyio.sleep(unit)
                mach.add1(task_done)

            mach.fork(task, work)

        fan = h.fan_out_in(mach, "Task", 7, 3, fn, rng=random.Random(1))
        assert fan.group_tasks == [f"Task{i}" for i in range(7)]
        assert fan.binding_id in mach.handlers
        assert mach.schema["TaskDone"].auto
        mach.add(["Start", "Task"])
        await h.wait_for_all(mach.when1("Ready"), timeout=100)
        assert sorted(started) == list(range(7))
        assert peak == 3
        assert mach.is_(["TaskDone", *fan.group_done]) and mach.not1("Task")
        if virtual:
            assert anyio.current_time() == 3
        with pytest.raises(am.StateUnknownError):
            h.fan_out_in(mach, "Nope", 2, 1, fn)


# ----- handlers, composition, eval, dispose


def test_remove_multi_and_nested_state() -> None:
    parent = am.Machine({"Job": am.State(multi=True)}, id="parent")
    subs = {
        "s1": am.Machine({"Job": am.State(multi=True)}, id="s1"),
        "s2": am.Machine({"Job": am.State()}, id="s2"),
    }
    results: list[tuple[am.Result, am.Waiter | None]] = []

    class Handlers:
        def job_state(self, e: am.Event) -> None:
            results.append(h.nested_state(e, "id", subs.get))

    handlers = Handlers()
    parent.bind_handlers(handlers)
    parent.add1("Job", {"id": "s1"})
    parent.add1("Job", {"id": "s1"})
    assert subs["s1"].tick("Job") == 3
    assert results == [(am.Result.EXECUTED, None)] * 2
    parent.add1("Job", {"id": "s2"})
    assert subs["s2"].is1("Job")
    # an active non-Multi nested state is refused (the handler raises)
    parent.add1("Job", {"id": "s2"})
    assert isinstance(parent.err, ValueError)
    assert "nested state Job is active" in str(parent.err)

    # remove_multi: a self-cleaning Multi state
    mach = am.Machine({"Ping": am.State(multi=True)})

    class Cleaner:
        pass

    cleaner = Cleaner()
    cleaner.ping_state = h.remove_multi(mach, "Ping")  # type: ignore[attr-defined]
    mach.bind_handlers(cleaner)
    mach.add1("Ping")
    assert mach.not1("Ping") and mach.tick("Ping") == 2


def test_nested_state_queued_waiter() -> None:
    sub = am.Machine({"Job": am.State(multi=True), "Go": am.State()}, id="sub")
    got: list[tuple[am.Result, am.Waiter | None]] = []

    class SubHandlers:
        def go_state(self, e: am.Event) -> None:
            got.append(h.nested_state(e_parent[0], "id", {"sub": sub}.get))

    parent = am.Machine({"Job": am.State(multi=True)}, id="p")
    e_parent: list[am.Event] = []

    class ParentHandlers:
        def job_state(self, e: am.Event) -> None:
            e_parent.append(e)

    parent.bind_handlers(ParentHandlers())
    parent.add1("Job", {"id": "sub"})
    sub.bind_handlers(SubHandlers())
    sub.add1("Go")  # nested_state runs while `sub` drains: its add1 is queued
    res, waiter = got[0]
    assert res == am.Result.QUEUED and waiter is not None and waiter.is_set()
    assert sub.tick("Job") == 1


def test_eval_getter_setter() -> None:
    mach = am.Machine(NORELS)
    assert h.eval_getter(mach, "ticks", lambda: mach.tick("A")) == 0
    box: list[int] = []
    h.eval_setter(mach, "box", lambda: box.append(1))
    assert box == [1]
    errors: list[BaseException] = []

    class Handlers:
        def a_state(self, e: am.Event) -> None:
            try:
                h.eval_getter(mach, "nested", lambda: 1)
            except h.EvalError as err:
                errors.append(err)

    mach.bind_handlers(Handlers())
    mach.add1("A")
    assert len(errors) == 1 and "EvalGet/nested" in str(errors[0])
    mach.dispose()
    with pytest.raises(h.EvalError, match="EvalSet/x"):
        h.eval_setter(mach, "x", lambda: None)


def test_dispose_helpers() -> None:
    ids: list[str] = []
    mach = am.Machine(NORELS, id="plain")
    h.dispose_bind(mach, ids.append)
    h.dispose(mach)
    assert mach.is_disposed and ids == ["plain"]

    registered: list[Any] = []

    class Disposed:
        def register_disposal_state(self, e: am.Event) -> None:
            registered.append(e.args[h.DISPOSED_ARG_HANDLER])

    schema = {
        "RegisterDisposal": am.State(multi=True),
        "Disposing": am.State(),
    }
    mach = am.Machine(schema, handlers=Disposed())
    h.dispose_bind(mach, ids.append)
    assert registered == [ids.append]
    h.dispose(mach)
    assert mach.is1("Disposing") and not mach.is_disposed


@pytest.mark.anyio
async def test_healthcheck(unit: float, virtual: bool) -> None:
    schema = {"Healthcheck": am.State(multi=True)}
    async with am.open_machine(schema) as mach:
        assert h.healthcheck(mach, unit)
        await h.wait_for_all(mach.when_time1("Healthcheck", 5), timeout=100)
        if virtual:
            assert anyio.current_time() == 3
    assert not h.healthcheck(am.Machine(NORELS))
    with pytest.raises(am.NoNurseryError):
        h.healthcheck(am.Machine(schema))


# ----- state and schema utilities


def test_small_utilities() -> None:
    assert h.tag_value(["a", "port:80", "x:y:z"], "port") == "80"
    assert h.tag_value(["a", "port:80", "x:y:z"], "x") == "y:z"
    assert h.tag_value(["a"], "a") == "a"
    assert h.tag_value(["a"], "b") == ""
    assert h.tag_value_int(["port:80"], "port") == 80
    assert h.tag_value_int(["port:eighty"], "port") == 0
    assert h.tag_value_int([], "port") == -1
    assert [h.activations(t) for t in (0, 1, 2, 3, 4)] == [0, 1, 1, 2, 2]
    assert len(h.rand_id()) == 16 and len(h.rand_id(0)) == 16
    assert len(h.rand_id(5)) == 6 and int(h.rand_id(8), 16) >= 0
    assert h.handler_to_state("FooState") == "Foo"
    assert h.handler_to_state("FooEnter") == "Foo"
    assert h.handler_to_state("FooExitState") == "Foo"  # suffixes trimmed in turn, as in Go
    assert h.handler_to_state("FooBar") == "FooBar"
    assert h.count_relations(am.State(add=("A", "B"), require=("C",), after=("D",))) == 4
    assert h.count_relations(am.State()) == 0
    assert h.result_to_err(am.Result.EXECUTED) is None
    assert h.result_to_err(am.Result.QUEUED) is None
    assert isinstance(h.result_to_err(am.Result.CANCELED), h.MutationCanceledError)


def test_schema_utilities() -> None:
    schema = {"A": am.State(multi=True), "B": am.State()}
    mach = am.Machine(schema)
    assert h.is_multi(mach, "A") and not h.is_multi(mach, "B")
    assert not h.is_multi(mach, "Nope")
    h.implements(["A", "B", "C"], ["A", "C"])
    with pytest.raises(am.StateUnknownError, match="missing state: D"):
        h.implements(["A", "B"], ["A", "D"])
    h.schema_implements(schema, ["B"])
    with pytest.raises(am.StateUnknownError):
        h.schema_implements(schema, ["C"])

    source = {"C": am.State(require=("A",)), "D": am.State()}
    h.copy_schema(source, mach, ["C"])
    assert mach.state_names == ("A", "B", "Exception", "C")
    assert mach.schema["C"].require == ("A",)
    h.copy_schema(source, mach, [])
    with pytest.raises(am.StateUnknownError):
        h.copy_schema(source, mach, ["X"])


def test_time_matrix() -> None:
    # x_help_test.go TestTimeMatrix
    names = ["A", "B", "C", "D", "Bump1", "Exception"]
    m1 = am.Machine({**NORELS, "B": am.State(multi=True), "Bump1": am.State()}, names=names)
    m1.add(["A", "B"])
    m1.add(["A", "B"])
    m2 = am.Machine({**NORELS, "B": am.State(multi=True), "Bump1": am.State()}, names=names)
    m2.add(["A", "B"])
    m2.add(["A", "B"])
    m2.add(["A", "B", "C"])
    m2.set(["D"])
    assert m1.time(["A", "B", "C", "D"]) == [1, 3, 0, 0]
    assert m2.time(["A", "B", "C", "D"]) == [2, 6, 2, 1]
    assert h.time_matrix([m1, m2]) == [[1, 3, 0, 0, 0, 0], [2, 6, 2, 1, 0, 0]]
    with pytest.raises(ValueError):
        h.time_matrix([])
    with pytest.raises(ValueError):
        h.time_matrix([m1, am.Machine(NORELS)])


def test_get_transition_states() -> None:
    tracer = am.LastTxTracer()
    mach = am.Machine(
        {"A": am.State(), "B": am.State(multi=True), "C": am.State(remove=("A",))},
        tracers=[tracer],
        log_steps=True,
    )
    mach.add(["A", "B"])
    mach.add(["B", "C"])
    assert tracer.last is not None
    added, removed, touched = h.get_transition_states(tracer.last)
    assert added == ["B", "C"]  # re-entered Multi B counts as added
    assert removed == ["A"]
    assert set(touched) >= {"A", "B", "C"}
    assert len(touched) == len(set(touched))


def test_args_to_log_map() -> None:
    @attrs.define
    class Args(am.TypedArgs):
        args_state: ClassVar[str] = "Job"

        name: str = attrs.field(default="", metadata={"log": "name"})
        port: int = attrs.field(default=0, metadata={"log": "port"})
        on: bool = attrs.field(default=False, metadata={"log": "on"})
        ids: list[str] = attrs.field(factory=list, metadata={"log": "ids"})
        nums: list[int] = attrs.field(factory=list, metadata={"log": "nums"})
        secret: str = "hidden"

    assert h.args_to_log_map(Args()) == {}
    got = h.args_to_log_map(
        Args(name="a\nb" + "x" * 30, port=80, on=True, ids=["p", "q", "r"], nums=[1, 2]),
        max_len=10,
    )
    assert got == {
        "name": "a bxxxx...",
        "port": "80",
        "on": "true",
        "ids": '"p", "q", "r"',
        "nums": "1 2",
    }
    long = h.args_to_log_map(Args(ids=[str(i) for i in range(8)]), max_len=6)
    assert long == {"ids": '"0", "1", "2" ... (5 more)'}
    assert h.args_to_log_map("not attrs") == {}
    args = am.pass_args(Args(name="job1"))
    assert h.log_args({**args, "plain": 1}) == {"name": "job1"}


def test_env_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AM_TEST_RUNNER", raising=False)
    h.set_env_log_level(am.LogLevel.OPS)
    assert am.LogLevel.parse(os.environ["AM_LOG"]) is am.LogLevel.OPS
    assert not h.is_telemetry()
    h.enable_debugging(stdout=True)
    assert h.is_debug() and h.is_telemetry() and os.environ["AM_LOG_PRINT"] == "1"
    monkeypatch.setenv("AM_TEST_RUNNER", "1")
    assert h.is_test_runner() and not h.is_debug() and not h.is_telemetry()
