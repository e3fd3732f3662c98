"""Test hooks, assertions and waiting helpers for asyncmachine-trio machines.

A port of the reference's ``pkg/helpers/testing``, shaped for pytest: every
``assert_*`` raises :class:`AssertionError` whose message says what was expected
and shows the machine (id, ``string_all()`` and its error, if any); the
``wait_for*`` helpers raise :class:`TimeoutError` the same way. Waiting uses
anyio deadlines only, so ``trio.testing.MockClock(autojump_threshold=0)`` makes
timeouts instant. ``AM_DEBUG`` makes every timeout 100x longer, for stepping in
a debugger.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence

import anyio
import anyio.lowlevel

from .helpers.waiting import Waitable as Waitable
from .helpers.waiting import _first, _settle, _settler, _timeout
from .machine.errors import ArgumentError, DisposedError
from .machine.logging import LoggerFn, LogLevel
from .machine.machine import Machine
from .machine.report import ErrorReport, add_listener, remove_listener
from .machine.schema import EXCEPTION

__all__ = [
    "ErrorReport",
    "Waitable",
    "assert_clock",
    "assert_err",
    "assert_is",
    "assert_is1",
    "assert_no_err",
    "assert_no_err_ever",
    "assert_no_err_queued",
    "assert_not",
    "assert_not1",
    "assert_time",
    "capture_log",
    "describe",
    "error_reports",
    "fail_on_unhandled_errors",
    "inject_state",
    "wait_for",
    "wait_for_all",
    "wait_for_any",
    "wait_for_err_all",
]


def inject_state(
    mach: Machine,
    active: Sequence[str],
    clock: Mapping[str, int] | None = None,
    queue_tick: int | None = None,
) -> None:
    """Set the ordered active list, ticks (missing = 0) and queue tick directly.

    No handlers run and no transition is made. An active state given an even
    (or no) tick gets tick 1 so the clock stays consistent.
    """
    mach._inject(active, clock or {}, queue_tick)


# ----- messages


def describe(mach: Machine) -> str:
    """One line for failure messages: ``machine <id> (A:1) [B:0 Exception:0]`` + the error."""
    state = mach.string_all()
    if not state:
        return f"machine {mach.id} (disposed)"
    text = f"machine {mach.id} {state}"
    if mach.is_err():
        text += f", err: {mach.err!r}"
    return text


def _fail(mach: Machine, what: str, msg: str) -> AssertionError:
    head = f"{msg}: {what}" if msg else what
    return AssertionError(f"{head}\n  {describe(mach)}")


def _names(mach: Machine, states: Sequence[str]) -> str:
    """States joined by spaces, unknown ones marked."""
    return " ".join(s if mach.has1(s) else f"{s}(unknown)" for s in states)


def _active(mach: Machine, state: str) -> bool:
    """``is1`` that answers False for unknown names (the message marks them)."""
    return mach.has1(state) and mach.is1(state)


def _state_list(fn: str, states: Sequence[str]) -> list[str]:
    if isinstance(states, str):
        raise ArgumentError(f"{fn}() takes a list of states, got the str {states!r}; use {fn}1()")
    return list(states)


# ----- active states (Go AssertIs, AssertNot)


def assert_is(mach: Machine, states: Sequence[str], msg: str = "") -> None:
    """Assert every state of ``states`` is active (others may be active too)."""
    want = _state_list("assert_is", states)
    missing = [s for s in want if not _active(mach, s)]
    if missing:
        raise _fail(mach, f"expected active: {_names(mach, missing)}", msg)


def assert_is1(mach: Machine, state: str, msg: str = "") -> None:
    """Assert ``state`` is active."""
    assert_is(mach, [state], msg)


def assert_not(mach: Machine, states: Sequence[str], msg: str = "") -> None:
    """Assert none of ``states`` is active.

    Stricter than the reference's ``AssertNot``, which fails only when all of
    them are active; use ``assert not mach.is_(states)`` for that.
    """
    want = _state_list("assert_not", states)
    active = [s for s in want if _active(mach, s)]
    if active:
        raise _fail(mach, f"expected inactive: {_names(mach, active)}", msg)


def assert_not1(mach: Machine, state: str, msg: str = "") -> None:
    """Assert ``state`` is inactive."""
    assert_not(mach, [state], msg)


# ----- clocks


def _clock_diff(mach: Machine, clock: Mapping[str, int]) -> list[str]:
    diff: list[str] = []
    for state, tick in clock.items():
        if not mach.has1(state):
            diff.append(f"{state}: not in the schema")
        elif mach.tick(state) != tick:
            diff.append(f"{state}: expected tick {tick}, got {mach.tick(state)}")
    return diff


def assert_clock(mach: Machine, clock: Mapping[str, int], msg: str = "") -> None:
    """Assert each state of ``clock`` has exactly the given tick (others unchecked)."""
    diff = _clock_diff(mach, clock)
    if diff:
        raise _fail(mach, "clock mismatch: " + "; ".join(diff), msg)


def assert_time(
    mach: Machine, time: Sequence[int], states: Sequence[str] | None = None, msg: str = ""
) -> None:
    """Assert the ticks of ``states`` (default: all, in state order) equal ``time``.

    Like :meth:`Machine.is_time`: ``time`` may be shorter than ``states``.
    """
    names = list(mach.state_names) if states is None else _state_list("assert_time", states)
    if len(time) > len(names):
        raise _fail(mach, f"time has {len(time)} ticks for {len(names)} states", msg)
    names = names[: len(time)]
    diff = _clock_diff(mach, dict(zip(names, time, strict=True)))
    if diff:
        got = " ".join(str(mach.tick(s)) if mach.has1(s) else "?" for s in names)
        want = " ".join(str(t) for t in time)
        raise _fail(mach, f"time mismatch: expected {want}, got {got}: " + "; ".join(diff), msg)


# ----- errors (Go AssertNoErrNow, AssertNoErrEver, AssertNoErrQueued, AssertErr)


def assert_no_err(mach: Machine, msg: str = "") -> None:
    """Assert ``Exception`` is not active; the failure is chained to ``mach.err``."""
    if mach.is_err():
        raise _fail(mach, "unexpected Exception", msg) from mach.err


def assert_no_err_queued(mach: Machine, msg: str = "") -> None:
    """Assert no mutation adding ``Exception`` is queued."""
    if mach.will_be1(EXCEPTION):
        raise _fail(mach, "unexpected Exception in the queue", msg)


def assert_no_err_ever(mach: Machine, msg: str = "") -> None:
    """Assert ``Exception`` was never active (its tick is 0) and none is queued."""
    tick = mach.tick(EXCEPTION)
    if tick > 0:
        raise _fail(
            mach, f"Exception was active before (tick {tick}), last err: {mach.err!r}", msg
        ) from mach.err
    assert_no_err_queued(mach, msg)


def assert_err(
    mach: Machine,
    err_type: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    match: str | None = None,
    msg: str = "",
) -> Exception | None:
    """Assert ``Exception`` is active, optionally with ``mach.err`` an ``err_type``
    whose text matches the regex ``match`` (``re.search``); returns ``mach.err``."""
    if not mach.is_err():
        raise _fail(mach, "expected Exception to be active", msg)
    err = mach.err
    if err_type is not None and not isinstance(err, err_type):
        names = err_type if isinstance(err_type, tuple) else (err_type,)
        expected = " or ".join(t.__name__ for t in names)
        raise _fail(mach, f"expected err of type {expected}, got {err!r}", msg) from err
    if match is not None and (err is None or not re.search(match, str(err))):
        raise _fail(mach, f"expected err matching {match!r}, got {err!r}", msg) from err
    return err


# ----- logs (Go LogToTestLog)


def capture_log(
    mach: Machine,
    level: LogLevel | int = LogLevel.CHANGES,
    sink: Callable[[str], object] | None = None,
) -> list[str]:
    """Collect the machine's log lines up to ``level`` in the returned list.

    Raises the machine's log level to ``level`` if it is lower. ``sink`` (e.g.
    ``print``, which pytest captures and shows for failed tests) gets each
    collected line too; a logger set before keeps receiving every line.
    """
    max_level = LogLevel.parse(level)
    lines: list[str] = []
    previous: LoggerFn | None = mach._logger

    def logger(line_level: LogLevel, line: str) -> None:
        if line_level <= max_level:
            lines.append(line)
            if sink is not None:
                sink(line)
        if previous is not None:
            previous(line_level, line)

    if mach.log_level < max_level:
        mach.log_level = max_level
    mach.set_logger(logger)
    return lines


# ----- waiting (Go WaitForAll, WaitForAny, WaitForErrAll)


def _label(w: Waitable) -> str:
    kind = getattr(w, "kind", "")
    return kind if isinstance(kind, str) and kind else type(w).__name__


def _timeout_error(source: str, what: str, timeout: float, mach: Machine | None) -> TimeoutError:
    text = f"{source}: {what} not resolved within {timeout:g}s"
    if mach is not None:
        text += f"\n  {describe(mach)}"
    return TimeoutError(text)


def _check_disposed(source: str, mach: Machine | None, waiters: Sequence[Waitable] = ()) -> None:
    # disposal resolves every waiter: don't let it pass for the awaited change
    if mach is not None and mach.is_disposed:
        raise DisposedError(f"{source}: machine {mach.id} was disposed while waiting")
    for i, w in enumerate(waiters):
        if getattr(w, "disposed", False) is True:
            raise DisposedError(f"{source}: #{i} {_label(w)}: its machine was disposed")


def _deadline(timeout: float) -> float:
    deadline = _timeout(timeout)
    assert deadline is not None
    return deadline


async def wait_for(
    waiter: Waitable,
    timeout: float = 1.0,  # noqa: ASYNC109 (a test helper's deadline, AM_DEBUG x100)
    *,
    mach: Machine | None = None,
    source: str = "wait_for",
) -> None:
    """Wait for ``waiter`` (e.g. ``mach.when1("X")``) or raise :class:`TimeoutError`.

    Pass ``mach`` to have its state in the message, and to raise
    :class:`am.DisposedError` when the machine was disposed while waiting
    (disposal resolves every waiter).
    """
    await wait_for_all(waiter, timeout=timeout, mach=mach, source=source)


async def wait_for_all(
    *waiters: Waitable,
    timeout: float = 1.0,  # noqa: ASYNC109 (a test helper's deadline, AM_DEBUG x100)
    mach: Machine | None = None,
    source: str = "wait_for_all",
) -> None:
    """Wait until every waiter resolved, within one ``timeout`` (see :func:`wait_for`)."""
    with anyio.move_on_after(_deadline(timeout)):
        for w in waiters:
            await _settle(w)
    pending = [f"#{i} {_label(w)}" for i, w in enumerate(waiters) if not w.is_set()]
    if pending:
        raise _timeout_error(source, ", ".join(pending), timeout, mach)
    _check_disposed(source, mach, waiters)


async def wait_for_any(
    *waiters: Waitable,
    timeout: float = 1.0,  # noqa: ASYNC109 (a test helper's deadline, AM_DEBUG x100)
    mach: Machine | None = None,
    source: str = "wait_for_any",
) -> int:
    """Wait for the first waiter to resolve and return its index (see :func:`wait_for`)."""
    if not waiters:
        raise ValueError(f"{source}: no waiters given")
    done = next((i for i, w in enumerate(waiters) if w.is_set()), -1)
    if done >= 0:
        await anyio.lowlevel.checkpoint()
    else:
        with anyio.move_on_after(_deadline(timeout)):
            done = await _first(*(_settler(w) for w in waiters))
    if done < 0:
        what = "none of " + ", ".join(f"#{i} {_label(w)}" for i, w in enumerate(waiters))
        raise _timeout_error(source, what, timeout, mach)
    _check_disposed(source, mach, waiters[done : done + 1])
    return done


async def wait_for_err_all(
    mach: Machine,
    *waiters: Waitable,
    timeout: float = 1.0,  # noqa: ASYNC109 (a test helper's deadline, AM_DEBUG x100)
    source: str = "wait_for_err_all",
) -> None:
    """:func:`wait_for_all`, failing as soon as ``mach`` is in ``Exception``.

    The :class:`AssertionError` is chained to ``mach.err``. An ``Exception``
    already active when called fails at once, unless every waiter resolved.
    """
    err_w = mach.when_err()
    try:

        async def all_done() -> None:
            for w in waiters:
                await _settle(w)

        if not all(w.is_set() for w in waiters) and not err_w.is_set():
            with anyio.move_on_after(_deadline(timeout)):
                await _first(all_done, _settler(err_w))
        else:
            await anyio.lowlevel.checkpoint()
        if all(w.is_set() for w in waiters):
            _check_disposed(source, mach, waiters)
            return
        if err_w.is_set():
            _check_disposed(source, mach)
            raise _fail(mach, "Exception activated while waiting", source) from mach.err
        pending = [f"#{i} {_label(w)}" for i, w in enumerate(waiters) if not w.is_set()]
        raise _timeout_error(source, ", ".join(pending), timeout, mach)
    finally:
        err_w.close()


# ----- error reports (unhandled errors, handler timeouts)


@contextlib.contextmanager
def error_reports() -> Iterator[list[ErrorReport]]:
    """Collect every error report any machine makes inside the block.

    A report is made when ``Exception`` activates and no bound handler
    defines ``exception_state`` (``kind == "unhandled"``), when
    ``am.ExceptionHandler`` logs an error (``"handled"``) and when a handler
    exceeds ``handler_timeout`` (``"timeout"``). Machines made with
    ``report_errors=False`` report nothing.
    """
    reports: list[ErrorReport] = []
    add_listener(reports.append)
    try:
        yield reports
    finally:
        remove_listener(reports.append)


@contextlib.contextmanager
def fail_on_unhandled_errors() -> Iterator[list[ErrorReport]]:
    """Raise :class:`AssertionError` after the block if a machine reported an
    unhandled error in it (a test's machine failed and nothing noticed)."""
    with error_reports() as reports:
        yield reports
    unhandled = [r for r in reports if r.kind == "unhandled"]
    if unhandled:
        text = "\n\n".join(r.message for r in unhandled)
        raise AssertionError(f"{len(unhandled)} unhandled machine error(s):\n{text}")
