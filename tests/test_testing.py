"""asyncmachine_trio.testing: assertions and waiting helpers, passing and failing.

Async tests run on trio with ``MockClock(autojump_threshold=0)``: a timeout
jumps the virtual clock instead of sleeping.
"""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest
import trio
from trio.testing import MockClock

import asyncmachine_trio as am
from asyncmachine_trio import testing as amt

SCHEMA = {"A": am.State(), "B": am.State(), "C": am.State(multi=True)}


@pytest.fixture
def anyio_backend() -> Any:
    return ("trio", {"clock": MockClock(autojump_threshold=0)})


@pytest.fixture(autouse=True)
def _no_debug_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AM_DEBUG", raising=False)


@pytest.fixture
def mach() -> am.Machine:
    m = am.Machine(SCHEMA, id="tm")
    m.add1("A")
    return m


def fails(match: str) -> pytest.RaisesExc[AssertionError]:
    return pytest.raises(AssertionError, match=match)


async def later(delay: float, fn: Any, *args: Any) -> None:
    await anyio.sleep(delay)
    fn(*args)


# ----- describe


def test_describe(mach: am.Machine) -> None:
    assert amt.describe(mach) == "machine tm (A:1) [B:0 C:0 Exception:0]"
    mach.add_err(ValueError("boom"))
    assert amt.describe(mach).endswith("[B:0 C:0], err: ValueError('boom')")
    mach.dispose()
    assert amt.describe(mach) == "machine tm (disposed)"


# ----- active states


def test_assert_is(mach: am.Machine) -> None:
    amt.assert_is(mach, ["A"])
    amt.assert_is(mach, [])
    amt.assert_is1(mach, "A")
    with fails(r"^expected active: B\n  machine tm \(A:1\) \[B:0 C:0 Exception:0\]$"):
        amt.assert_is(mach, ["A", "B"])
    with fails(r"^after init: expected active: B\n"):
        amt.assert_is1(mach, "B", "after init")
    with fails(r"expected active: B Nope\(unknown\)"):
        amt.assert_is(mach, ["B", "Nope"])


def test_assert_not(mach: am.Machine) -> None:
    amt.assert_not(mach, ["B", "C"])
    amt.assert_not1(mach, "B")
    with fails(r"^expected inactive: A\n  machine tm \(A:1\)"):
        amt.assert_not(mach, ["A", "B"])
    with fails(r"^x: expected inactive: A"):
        amt.assert_not1(mach, "A", "x")


def test_a_bare_str_is_rejected(mach: am.Machine) -> None:
    with pytest.raises(am.ArgumentError, match="use assert_is1"):
        amt.assert_is(mach, "A")
    with pytest.raises(am.ArgumentError, match="use assert_not1"):
        amt.assert_not(mach, "B")


# ----- clocks


def test_assert_clock(mach: am.Machine) -> None:
    mach.add1("C")
    mach.add1("C")
    amt.assert_clock(mach, {"A": 1, "C": 3, "B": 0})
    amt.assert_clock(mach, {})
    with fails(r"^clock mismatch: A: expected tick 3, got 1; Nope: not in the schema\n  machine"):
        amt.assert_clock(mach, {"A": 3, "C": 3, "Nope": 0})


def test_assert_time(mach: am.Machine) -> None:
    amt.assert_time(mach, [1, 0, 0, 0])
    amt.assert_time(mach, [1])  # a prefix, like is_time
    amt.assert_time(mach, [0, 1], ["B", "A"])
    with fails(r"^time mismatch: expected 1 1, got 1 0: B: expected tick 1, got 0\n"):
        amt.assert_time(mach, [1, 1])
    with fails(r"^time has 2 ticks for 1 states"):
        amt.assert_time(mach, [1, 0], ["A"])


# ----- errors


def test_assert_no_err(mach: am.Machine) -> None:
    amt.assert_no_err(mach)
    amt.assert_no_err_ever(mach)
    amt.assert_no_err_queued(mach)
    err = ValueError("disk full")
    mach.add_err(err)
    with fails(r"^unexpected Exception\n.*err: ValueError\('disk full'\)") as info:
        amt.assert_no_err(mach)
    assert info.value.__cause__ is err


def test_assert_no_err_ever(mach: am.Machine) -> None:
    mach.add_err(ValueError("old"))
    mach.remove1(am.EXCEPTION)
    amt.assert_no_err(mach)  # not now...
    with fails(r"^Exception was active before \(tick 2\), last err: ValueError\('old'\)"):
        amt.assert_no_err_ever(mach)  # ...but before


def test_assert_no_err_queued() -> None:
    class Handlers:
        def a_state(self, e: am.Event) -> None:
            # queued behind this transition, checked while it is still pending
            e.machine.add1(am.EXCEPTION)
            with fails(r"^unexpected Exception in the queue"):
                amt.assert_no_err_queued(e.machine)
            with fails(r"^unexpected Exception in the queue"):
                amt.assert_no_err_ever(e.machine)
            self.checked = True

    handlers = Handlers()
    mach = am.Machine(SCHEMA, handlers=handlers)
    mach.add1("A")
    assert handlers.checked


def test_assert_err(mach: am.Machine) -> None:
    with fails(r"^expected Exception to be active\n  machine tm"):
        amt.assert_err(mach)
    err = KeyError("missing")
    mach.add_err(err)
    assert amt.assert_err(mach) is err
    assert amt.assert_err(mach, KeyError, match="miss") is err
    assert amt.assert_err(mach, (ValueError, LookupError)) is err
    with fails(r"^expected err of type ValueError, got KeyError\('missing'\)") as info:
        amt.assert_err(mach, ValueError)
    assert info.value.__cause__ is err
    with fails(r"^expected err of type ValueError or TypeError"):
        amt.assert_err(mach, (ValueError, TypeError))
    with fails(r"^expected err matching '\^x', got KeyError"):
        amt.assert_err(mach, match="^x")


# ----- logs


def test_capture_log() -> None:
    before: list[str] = []
    mach = am.Machine(
        SCHEMA,
        id="log",
        log_level=am.LogLevel.EXTERNAL,
        logger=lambda level, line: before.append(line),
    )
    printed: list[str] = []
    lines = amt.capture_log(mach, am.LogLevel.CHANGES, sink=printed.append)
    assert mach.log_level == am.LogLevel.CHANGES  # raised to the captured level
    mach.add1("A")
    mach.log("hello")
    assert lines == ["[log] [state] +A", "[log] [exter] hello"]
    assert printed == lines
    assert before == lines  # the previous logger is chained

    # a higher machine level is kept; lines above the captured level are dropped
    mach.log_level = am.LogLevel.OPS
    ops = amt.capture_log(mach, am.LogLevel.CHANGES)
    mach.add1("B")
    assert ops == ["[log] [state] +B"]
    assert "[log] [add] B" not in lines  # the first capture keeps its own level...
    assert "[log] [add] B" in before  # ...and the logger before it gets every line


# ----- waiting


@pytest.mark.anyio
async def test_wait_for(mach: am.Machine) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(later, 5, mach.add1, "B")
        start = trio.current_time()
        await amt.wait_for(mach.when1("B"), timeout=10, mach=mach)
        assert trio.current_time() - start == 5
    await amt.wait_for(mach.when1("B"), mach=mach)  # already resolved


@pytest.mark.anyio
async def test_wait_for_timeout(mach: am.Machine) -> None:
    start = trio.current_time()
    msg = r"^wait_for: #0 when not resolved within 1\.5s\n  machine tm \(A:1\) \[B:0 C:0"
    with pytest.raises(TimeoutError, match=msg):
        await amt.wait_for(mach.when1("B"), timeout=1.5, mach=mach)
    assert trio.current_time() - start == 1.5
    with pytest.raises(TimeoutError, match=r"^B on: #0 whenNot not resolved within 1s$"):
        await amt.wait_for(mach.when_not1("A"), source="B on")


@pytest.mark.anyio
async def test_wait_for_debug_timeout(mach: am.Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AM_DEBUG", "1")
    start = trio.current_time()
    with pytest.raises(TimeoutError):
        await amt.wait_for(mach.when1("B"), timeout=1)
    assert trio.current_time() - start == 100


@pytest.mark.anyio
async def test_wait_for_disposed(mach: am.Machine) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(later, 1, mach.dispose)
        with pytest.raises(am.DisposedError, match="machine tm was disposed while waiting"):
            await amt.wait_for(mach.when1("B"), timeout=5, mach=mach)


@pytest.mark.anyio
async def test_wait_for_all(mach: am.Machine) -> None:
    w_b, w_c = mach.when1("B"), mach.when1("C")
    async with anyio.create_task_group() as tg:
        tg.start_soon(later, 1, mach.add1, "B")
        tg.start_soon(later, 2, mach.add1, "C")
        await amt.wait_for_all(w_b, w_c, timeout=3)
    await amt.wait_for_all()  # nothing to wait for

    w_b, w_a = mach.when_not1("B"), mach.when_not1("A")
    async with anyio.create_task_group() as tg:
        tg.start_soon(later, 1, mach.remove1, "B")
        msg = r"^wait_for_all: #1 whenNot not resolved within 3s\n  machine tm \(A:1 C:1\)"
        with pytest.raises(TimeoutError, match=msg):
            await amt.wait_for_all(w_b, w_a, timeout=3, mach=mach)


@pytest.mark.anyio
async def test_wait_for_any(mach: am.Machine) -> None:
    w_b, w_c = mach.when1("B"), mach.when1("C")
    async with anyio.create_task_group() as tg:
        tg.start_soon(later, 1, mach.add1, "C")
        assert await amt.wait_for_any(w_b, w_c, timeout=3) == 1
    assert await amt.wait_for_any(w_b, w_c) == 1  # already resolved
    with pytest.raises(TimeoutError, match=r"^wait_for_any: none of #0 when, #1 whenNot"):
        await amt.wait_for_any(w_b, mach.when_not1("A"), timeout=2)
    with pytest.raises(ValueError, match="no waiters"):
        await amt.wait_for_any()


@pytest.mark.anyio
async def test_wait_for_any_anyio_event() -> None:
    event = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(later, 1, event.set)
        assert await amt.wait_for_any(event, timeout=2) == 0
    with pytest.raises(TimeoutError, match=r"#0 Event not resolved"):
        await amt.wait_for(anyio.Event())


@pytest.mark.anyio
async def test_wait_for_err_all(mach: am.Machine) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(later, 1, mach.add1, "B")
        await amt.wait_for_err_all(mach, mach.when1("B"), timeout=2)

    err = ValueError("boom")
    async with anyio.create_task_group() as tg:
        tg.start_soon(later, 1, mach.add_err, err)
        start = trio.current_time()
        msg = r"^wait_for_err_all: Exception activated while waiting\n.*err: ValueError\('boom'\)"
        with pytest.raises(AssertionError, match=msg) as info:
            await amt.wait_for_err_all(mach, mach.when_not1("A"), timeout=5)
        assert trio.current_time() - start == 1  # failed early, not at the timeout
    assert info.value.__cause__ is err

    # Exception already active: fails at once, unless the waiters are resolved too
    with pytest.raises(AssertionError, match="Exception activated"):
        await amt.wait_for_err_all(mach, mach.when_not1("A"))
    await amt.wait_for_err_all(mach, mach.when1("A"))


@pytest.mark.anyio
async def test_wait_for_err_all_timeout(mach: am.Machine) -> None:
    msg = r"^wait_for_err_all: #0 when not resolved within 2s\n  machine tm"
    with pytest.raises(TimeoutError, match=msg):
        await amt.wait_for_err_all(mach, mach.when1("B"), timeout=2)
    assert mach._subs.count == 1  # the err waiter was closed, only when1("B") remains


def test_waiting_on_asyncio(mach: am.Machine) -> None:
    async def run() -> int:
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, 0, mach.add1, "B")
            await amt.wait_for(mach.when1("B"), mach=mach)
        return await amt.wait_for_any(mach.when1("C"), mach.when1("B"))

    assert anyio.run(run, backend="asyncio") == 1


def test_messages_are_single_paragraphs(mach: am.Machine) -> None:
    with fails("B") as info:
        amt.assert_is1(mach, "B")
    assert re.fullmatch(r"[^\n]+\n  [^\n]+", str(info.value))
