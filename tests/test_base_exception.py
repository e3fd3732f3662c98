"""A BaseException escaping a handler: the machine is consistent and keeps working.

The exception propagates out of the mutation call that ran the queue; the
transition in progress stays where it stopped (no revert, no Exception), the
waiters of what it applied resolve, the queued mutations are dropped and
reported, and no queue tick is handed out twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import trio

import asyncmachine_trio as am

R = am.Result
SCHEMA = {"A": am.State(), "B": am.State(), "C": am.State(), "D": am.State()}


def cancelled() -> BaseException:
    return trio.Cancelled._create()  # type: ignore[no-any-return]


class Custom(BaseException):
    pass


KINDS: dict[str, Callable[[], BaseException]] = {
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": SystemExit,
    "GeneratorExit": GeneratorExit,
    "trio.Cancelled": cancelled,
    "custom": Custom,
}


def mk(**kw: Any) -> tuple[am.Machine, list[str]]:
    lines: list[str] = []
    mach = am.Machine(
        SCHEMA,
        id="be",
        logger=lambda _lvl, line: lines.append(line),
        dont_log_id=True,
        log_level=am.LogLevel.CHANGES,
        **kw,
    )
    return mach, lines


@pytest.mark.parametrize("kind", list(KINDS))
def test_final_handler(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    mach, lines = mk()
    mach.add1("D")
    handed_out: list[int] = []

    def a_state(e: am.Event) -> None:
        for s in ("B", "C"):
            assert mach.add1(s) is R.QUEUED
            handed_out.append(mach.queue()[-1].queue_tick)
        raise KINDS[kind]()

    binding = mach.bind_handlers({"a_state": a_state})
    w_a = mach.when1("A")
    w_not_d = mach.when_not1("D")
    w_ticks = mach.when_ticks("A", 1)
    w_b = mach.when1("B")
    ctx_a = mach.new_state_ctx("A")
    w_queue = [mach.when_queue(t) for t in (4, 5, 6)]
    w_ends = mach.when_queue_ends()
    assert handed_out == []

    with caplog.at_level(logging.WARNING, logger="asyncmachine_trio"):
        with pytest.raises(type(KINDS[kind]())) as info:
            mach.set(["A"])
    # applied, not reverted, no Exception
    assert mach.string_all() == "(A:1) [B:0 C:0 D:2 Exception:0]"
    assert mach.err is None
    # the waiters of what was applied resolved, the others did not
    assert w_a.is_set() and w_not_d.is_set() and w_ticks.is_set()
    assert ctx_a.expired
    assert not w_b.is_set()
    # set() ran at queue tick 3; the two dropped mutations used theirs up
    assert handed_out == [4, 5]
    assert mach.queue_tick() == 5
    assert [w.is_set() for w in w_queue] == [True, True, False]
    assert [w.canceled for w in w_queue] == [True, True, False]
    assert w_ends.is_set()
    # reported
    assert "[queue:dropped] 2 after " + type(info.value).__name__ + ": [add] B, [add] C" in lines
    assert any("2 queued mutations dropped" in r.getMessage() for r in caplog.records)
    # idle and working: no tick handed out twice
    assert mach.transition is None
    assert mach.queue_len() == 0
    mach.detach_handlers(binding)

    def b_state(e: am.Event) -> None:
        assert mach.add1("C") is R.QUEUED
        handed_out.append(mach.queue()[-1].queue_tick)

    mach.bind_handlers({"b_state": b_state})
    assert mach.add1("B") is R.EXECUTED
    assert handed_out == [4, 5, 7]
    assert mach.queue_tick() == 7
    assert w_queue[2].is_set() and w_b.is_set()
    assert mach.string() == "(A:1 B:1 C:1)"


@pytest.mark.parametrize("kind", list(KINDS))
def test_negotiation_handler(kind: str) -> None:
    mach, lines = mk()

    def a_enter(e: am.Event) -> None:
        mach.add1("C")
        raise KINDS[kind]()

    mach.bind_handlers({"a_enter": a_enter})
    w_a = mach.when1("A")
    w_c = mach.when1("C")
    w_q = mach.when_queue(3)
    with pytest.raises(type(KINDS[kind]())):
        mach.add1("A")
    # nothing applied: no waiter of a state resolves; C's tick was used up
    assert mach.string_all() == "() [A:0 B:0 C:0 D:0 Exception:0]"
    assert not w_a.is_set() and not w_c.is_set()
    assert w_q.is_set() and w_q.canceled
    assert mach.queue_tick() == 3
    assert any(line.startswith("[queue:dropped] 1 after") for line in lines)
    assert mach.add1("C") is R.EXECUTED
    assert w_c.is_set()
    assert mach.queue_tick() == 4


def test_any_state_and_exit_handlers() -> None:
    mach, _ = mk()
    mach.add1("A")

    def boom(e: am.Event) -> None:
        raise KeyboardInterrupt

    binding = mach.bind_handlers({"any_state": boom})
    w_b = mach.when1("B")
    with pytest.raises(KeyboardInterrupt):
        mach.add1("B")
    assert mach.is_(["A", "B"])
    assert w_b.is_set()
    mach.detach_handlers(binding)
    mach.bind_handlers({"a_end": boom})
    w_not_a = mach.when_not1("A")
    with pytest.raises(KeyboardInterrupt):
        mach.set(["C"])
    # A's End raised: every state change was applied already
    assert mach.active_states() == ["C"]
    assert w_not_a.is_set()


def test_no_tick_handed_out_twice_over_many_aborts() -> None:
    mach, _ = mk()
    handed: list[int] = []
    rounds = 0

    def a_state(e: am.Event) -> None:
        nonlocal rounds
        rounds += 1
        for _ in range(rounds % 3):
            mach.add(["B"], {"n": len(handed)})  # args: never de-duplicated
            handed.append(mach.queue()[-1].queue_tick)
        if rounds % 2:
            raise KeyboardInterrupt

    mach.bind_handlers({"a_state": a_state})
    aborted = 0
    for _ in range(12):
        try:
            mach.toggle1("A")
        except KeyboardInterrupt:
            aborted += 1
        # every tick handed out is used up once the call returns
        assert mach.queue_tick() >= max(handed, default=0)
    assert aborted == 3
    assert len(handed) == 6
    assert handed == sorted(set(handed))  # strictly increasing


def test_dropped_checks_report_canceled() -> None:
    mach, _ = mk()
    done: list[bool] = []
    check = am.ACheck(check_done=lambda: done.append(check.canceled))

    def a_state(e: am.Event) -> None:
        assert mach.can_add1("B", am.pass_args(check)) is R.QUEUED
        raise KeyboardInterrupt

    mach.bind_handlers({"a_state": a_state})
    with pytest.raises(KeyboardInterrupt):
        mach.add1("A")
    assert done == [True]


def test_check_interrupted_reports_canceled() -> None:
    mach, _ = mk()
    done: list[bool] = []
    check = am.ACheck(check_done=lambda: done.append(check.canceled))

    def b_enter(e: am.Event) -> None:
        raise KeyboardInterrupt

    mach.bind_handlers({"b_enter": b_enter})
    with pytest.raises(KeyboardInterrupt):
        mach.can_add1("B", am.pass_args(check))
    assert done == [True]
    assert mach.transition is None


def test_eval_function_raising_is_the_same_reset() -> None:
    mach, lines = mk()
    mach.add1("A")
    w_q = mach.when_queue(3)

    def fn() -> None:
        raise ValueError("in eval")

    with pytest.raises(ValueError, match="in eval"):
        mach.eval("src", fn)
    assert mach.transition is None
    assert not w_q.is_set()
    assert any(line == "[queue:abort] ValueError" for line in lines)
    assert mach.add1("B") is R.EXECUTED


def test_exception_without_panic_to_exception_is_the_same_reset() -> None:
    mach, lines = mk(panic_to_exception=False)

    def a_state(e: am.Event) -> None:
        mach.add1("B")
        raise ValueError("not converted")

    mach.bind_handlers({"a_state": a_state})
    w_a = mach.when1("A")
    w_q = mach.when_queue(2)  # add1("A") itself: it ran, interrupted
    with pytest.raises(ValueError, match="not converted"):
        mach.add1("A")
    assert w_a.is_set()
    assert w_q.is_set() and not w_q.canceled
    assert not mach.is_err()
    assert "[queue:dropped] 1 after ValueError: [add] B" in lines
    assert mach.queue_tick() == 3


@pytest.mark.anyio
async def test_awaiting_task_wakes_up() -> None:
    mach, _ = mk()

    def a_state(e: am.Event) -> None:
        mach.add1("B")
        raise Custom

    mach.bind_handlers({"a_state": a_state})
    woke: list[str] = []

    async def wait_a() -> None:
        await mach.when1("A")
        woke.append("A")

    async def wait_queue() -> None:
        await mach.when_queue(3)  # the dropped add1("B")
        woke.append("queue")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_a)
            tg.start_soon(wait_queue)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(Custom):
                mach.add1("A")
    assert sorted(woke) == ["A", "queue"]
    assert mach.add1("B") is R.EXECUTED
