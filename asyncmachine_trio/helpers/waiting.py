"""Waiting: ``wait_for_*``, ``wait``, ``interval``, ``group_when1``, ``when_func``."""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel

from .. import Ctx, DisposedError, StateUnknownError, Waiter
from ..machine.excgroup import unwrap_single
from .api import MachineApi
from .env import is_debug
from .errors import ContextCanceledError, ExceptionStateError


def _timeout(timeout: float | None) -> float | None:
    """``AM_DEBUG`` makes timeouts 100x longer, for stepping in a debugger (help.go WaitFor*)."""
    if timeout is not None and is_debug():
        return timeout * 100
    return timeout


class Waitable(Protocol):
    """Anything with ``is_set()`` and ``await wait()``: ``am.Waiter``, ``anyio.Event``, ..."""

    def is_set(self) -> bool:
        """True once resolved."""
        ...

    async def wait(self) -> None:
        """Wait until resolved."""
        ...


async def _settle(w: Waitable) -> None:
    """``await w.wait()``; a waiter resolved by disposal returns (the callers
    check the machine and raise their own :class:`DisposedError`)."""
    try:
        await w.wait()
    except DisposedError:
        pass


def _settler(w: Waitable) -> Callable[[], Awaitable[None]]:
    return lambda: _settle(w)


async def _first(*fns: Callable[[], Awaitable[object]]) -> int:
    """Run ``fns`` concurrently; the first to return wins (its index), the others are cancelled."""
    winner = -1
    with unwrap_single():  # a waiter's error leaves as itself (semantics §9.3)
        async with anyio.create_task_group() as tg:

            async def run(i: int, fn: Callable[[], Awaitable[object]]) -> None:
                nonlocal winner
                await fn()
                if winner < 0:
                    winner = i
                    tg.cancel_scope.cancel()

            for i, fn in enumerate(fns):
                tg.start_soon(run, i, fn)
    return winner


async def _wait(
    waiters: Sequence[Waitable],
    *,
    all_: bool,
    mach: MachineApi | None,
    time_limit: float | None,
    ctx: Ctx | None,
    close: bool,
) -> int:
    """The engine of the ``wait_for_*`` helpers: index of the success, or raise."""
    err_w = mach.when_err() if mach is not None else None
    try:

        def success() -> int:
            if all_:
                return 0 if all(w.is_set() for w in waiters) else -1
            return next((i for i, w in enumerate(waiters) if w.is_set()), -1)

        async def wait_all() -> None:
            for w in waiters:
                await _settle(w)

        async def wait_any() -> None:
            await _first(*(_settler(w) for w in waiters))

        target = wait_all if all_ else wait_any

        async def race() -> None:
            if err_w is None:
                await target()
            else:
                await _first(target, _settler(err_w))

        if ctx is not None and ctx.cancelled:
            raise ContextCanceledError("ctx canceled before waiting")
        if success() >= 0 or (err_w is not None and err_w.is_set()):
            await anyio.lowlevel.checkpoint()
        else:
            with anyio.fail_after(_timeout(time_limit)):
                if ctx is None:
                    await race()
                else:
                    with ctx.cancel_scope():
                        await race()
        if mach is not None and mach.is_disposed:
            raise DisposedError(f"machine {mach.id} disposed while waiting")
        idx = success()
        if idx >= 0:
            return idx
        if err_w is not None and err_w.is_set():
            assert mach is not None
            raise ExceptionStateError(mach) from mach.err
        raise ContextCanceledError("ctx canceled while waiting")
    finally:
        if err_w is not None:
            err_w.close()
        if close:
            for w in waiters:
                if isinstance(w, Waiter):
                    w.close()


async def wait(duration: float, ctx: Ctx | None = None) -> bool:
    """Sleep ``duration`` seconds; False if ``ctx`` ended first (help.go ``Wait``)."""
    if ctx is None:
        await anyio.sleep(duration)
        return True
    if ctx.cancelled:
        await anyio.lowlevel.checkpoint()
        return False
    with ctx.cancel_scope():
        await anyio.sleep(duration)
        return True
    return False


async def wait_for_all(
    *waiters: Waitable,
    timeout: float | None = None,  # noqa: ASYNC109 (timeout= is the API; AM_DEBUG x100)
    ctx: Ctx | None = None,
    close: bool = True,
) -> None:
    """Wait until every waiter resolved (help.go ``WaitForAll``).

    Raises :class:`TimeoutError`, or :class:`ContextCanceledError` when ``ctx``
    ends. A waiter also resolves when its own ``when*`` context ends, so check
    that context after this call.
    """
    if not waiters:
        return
    await _wait(waiters, all_=True, mach=None, time_limit=timeout, ctx=ctx, close=close)


async def wait_for_any(
    *waiters: Waitable,
    timeout: float | None = None,  # noqa: ASYNC109 (timeout= is the API; AM_DEBUG x100)
    ctx: Ctx | None = None,
    close: bool = True,
) -> int:
    """Wait for the first waiter to resolve and return its index (help.go ``WaitForAny``)."""
    if not waiters:
        raise ValueError("wait_for_any needs at least one waiter")
    return await _wait(waiters, all_=False, mach=None, time_limit=timeout, ctx=ctx, close=close)


async def wait_for_err_all(
    mach: MachineApi,
    *waiters: Waitable,
    timeout: float | None = None,  # noqa: ASYNC109 (timeout= is the API; AM_DEBUG x100)
    ctx: Ctx | None = None,
    close: bool = True,
) -> None:
    """:func:`wait_for_all`, failing early when ``mach`` enters ``Exception`` (``WaitForErrAll``).

    Raises :class:`ExceptionStateError` (from ``mach.err``), or
    :class:`am.DisposedError` if the machine is disposed meanwhile. When the
    waiters and the error resolve together, the waiters win.
    """
    if not waiters:
        return
    await _wait(waiters, all_=True, mach=mach, time_limit=timeout, ctx=ctx, close=close)


async def wait_for_err_any(
    mach: MachineApi,
    *waiters: Waitable,
    timeout: float | None = None,  # noqa: ASYNC109 (timeout= is the API; AM_DEBUG x100)
    ctx: Ctx | None = None,
    close: bool = True,
) -> int:
    """:func:`wait_for_any`, failing early on ``Exception`` (help.go ``WaitForErrAny``).

    Fixes the reference, whose error branch listens on the timer twice and so
    never reports the machine's error.
    """
    if not waiters:
        raise ValueError("wait_for_err_any needs at least one waiter")
    return await _wait(waiters, all_=False, mach=mach, time_limit=timeout, ctx=ctx, close=close)


async def interval(
    period: float,
    fn: Callable[[], bool | Awaitable[bool | None] | None],
    *,
    length: float | None = None,
    ctx: Ctx | None = None,
) -> bool:
    """Call ``fn`` every ``period`` seconds until it returns False (help.go ``Interval``).

    Calls happen at ``period``, ``2*period``, ... strictly before ``length``
    elapsed; like a Go ticker, after a slow ``fn`` one missed tick runs at once
    and the others are dropped. ``fn`` may be async. Returns True when ``fn``
    or ``length`` ended the loop, False when ``ctx`` (e.g. a state context)
    ended it.
    """
    if period <= 0:
        raise ValueError(f"interval period must be > 0, got {period}")
    if ctx is not None and ctx.cancelled:
        await anyio.lowlevel.checkpoint()
        return False
    start = anyio.current_time()
    end = math.inf if length is None else start + length
    scope: contextlib.AbstractContextManager[Any] = (
        contextlib.nullcontext() if ctx is None else ctx.cancel_scope()
    )
    with scope:
        n = 1
        while True:
            await anyio.sleep_until(start + n * period)
            now = anyio.current_time()
            if now >= end:
                return True
            ret = fn()
            if inspect.isawaitable(ret):
                ret = await ret
            if ret is False:
                return True
            # a Go ticker keeps one missed tick (delivered at once) and drops the rest
            missed = int((anyio.current_time() - start) // period)
            n = missed if missed > n else n + 1
    return False


def group_when1(machs: Iterable[MachineApi], state: str, ctx: Ctx | None = None) -> list[Waiter]:
    """One ``when1(state)`` per machine; raises if a machine lacks the state (``GroupWhen1``)."""
    machs = list(machs)
    for m in machs:
        if not m.has1(state):
            raise StateUnknownError(f"missing states: {state} in machine {m.id}")
    return [m.when1(state, ctx) for m in machs]


def when_func(
    task_group: anyio.abc.TaskGroup, fn: Callable[..., Awaitable[Any]], *args: Any
) -> anyio.Event:
    """Start ``fn(*args)`` in ``task_group``; the event is set when it returns or raises.

    help.go ``WhenFunc`` / ``ExecAndClose``: turns a call into something the
    ``wait_for_*`` helpers can wait on.
    """
    done = anyio.Event()

    async def run() -> None:
        try:
            await fn(*args)
        finally:
            done.set()

    task_group.start_soon(run)
    return done
