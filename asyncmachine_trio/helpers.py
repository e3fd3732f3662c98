"""Helpers above the core: waiting, confirmed mutations, retries, checks, loops, pools.

A port of the reference's ``pkg/helpers`` and ``pkg/x/helpers`` (upper-layers.md
section 4). Everything runs on trio or asyncio (anyio). Differences from the
reference, on purpose:

* Go's ``ctx`` becomes an optional ``ctx: am.Ctx`` (e.g. a state context); a helper
  waiting on it stops when it is cancelled. ``timeout`` is in seconds, ``None``
  waits forever, and an expired timeout raises the builtin :class:`TimeoutError`.
  With ``AM_DEBUG`` set (and not ``AM_TEST_RUNNER``) timeouts are 100 times longer.
* ``add_sync`` / ``add_async`` keep the reference's names but are coroutines:
  "sync" waits for the mutation itself, "async" for a later confirming state.
* Waiters handed to the ``wait_for_*`` helpers are consumed: closed on return
  (``close=False`` keeps the unresolved ones registered).
* Bugs the reference has are fixed (see each docstring): ``remove_sync`` result,
  ``wait_for_err_any`` never seeing the error, ``cant_add`` polarity, the
  ``StateLoop`` threshold, ``Cond.is_empty``, ``nested_state``'s Multi tick,
  list truncation in ``args_to_log_map``.

Not ported: telemetry and semantic-logger setup (``MachDebug*``, ``SemConfigEnv``),
``NewMirror`` (needs the pipes of ``states/``), REPL args (``ArgsUnmarshal``,
``ArgsNames``), the visualisation matrices other than :func:`time_matrix`, and
what the core already has (``StatesToIndexes`` = ``am.states_to_index``).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import random
import secrets
import time as _time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import anyio
import anyio.abc
import anyio.lowlevel
import attrs

from . import (
    DISPOSING,
    EXCEPTION,
    HEALTHCHECK,
    AsyncMachineError,
    Ctx,
    DisposedError,
    Event,
    Machine,
    MutationType,
    NoNurseryError,
    Relation,
    Result,
    Serialized,
    State,
    StateCtx,
    States,
    StateUnknownError,
    Time,
    Tracer,
    Transition,
    Waiter,
    hash_str,
    next_active_in,
)

__all__ = [
    "DISPOSED_ARG_HANDLER",
    "ENV_AM_DBG_ADDR",
    "ENV_AM_DEBUG",
    "ENV_AM_HEALTHCHECK",
    "ENV_AM_LOG",
    "ENV_AM_LOG_PRINT",
    "ENV_AM_TEST_RUNNER",
    "LOG_ARGS_MAX_LEN",
    "REGISTER_DISPOSAL",
    "Cond",
    "ContextCanceledError",
    "EvalError",
    "ExceptionStateError",
    "FanHandlers",
    "MachGroup",
    "MachineApi",
    "MutRequest",
    "MutationCanceledError",
    "RetriesExceededError",
    "StateLoop",
    "StateLoopError",
    "TaskPool",
    "Waitable",
    "activations",
    "add1_async",
    "add1_sync",
    "add_async",
    "add_sync",
    "args_to_log_map",
    "ask_add",
    "ask_add1",
    "ask_remove",
    "ask_remove1",
    "cant_add",
    "cant_add1",
    "cant_remove",
    "cant_remove1",
    "copy_schema",
    "count_relations",
    "dispose",
    "dispose_bind",
    "enable_debugging",
    "eval_getter",
    "eval_setter",
    "fan_out",
    "fan_out_in",
    "get_transition_states",
    "group_when1",
    "handler_to_state",
    "healthcheck",
    "implements",
    "interval",
    "is_debug",
    "is_multi",
    "is_telemetry",
    "is_test_runner",
    "log_args",
    "nested_state",
    "new_req_add",
    "new_req_add1",
    "new_req_remove",
    "new_req_remove1",
    "open_pool",
    "rand_id",
    "remove1_sync",
    "remove_multi",
    "remove_sync",
    "result_to_err",
    "schema_canonical",
    "schema_hash",
    "schema_implements",
    "set_env_log_level",
    "tag_value",
    "tag_value_int",
    "time_matrix",
    "wait",
    "wait_for_all",
    "wait_for_any",
    "wait_for_err_all",
    "wait_for_err_any",
    "when_func",
]

T = TypeVar("T")
R = TypeVar("R")

EXECUTED = Result.EXECUTED
CANCELED = Result.CANCELED
QUEUED = Result.QUEUED

ENV_AM_DEBUG = "AM_DEBUG"
ENV_AM_TEST_RUNNER = "AM_TEST_RUNNER"
ENV_AM_LOG = "AM_LOG"
ENV_AM_LOG_PRINT = "AM_LOG_PRINT"
ENV_AM_HEALTHCHECK = "AM_HEALTHCHECK"
ENV_AM_DBG_ADDR = "AM_DBG_ADDR"

#: Default value length of :func:`args_to_log_map` (Go ``am.LogArgsMaxLen``).
LOG_ARGS_MAX_LEN = 20
#: States and arg key of the ``Disposed`` mixin used by :func:`dispose_bind` / :func:`dispose`.
REGISTER_DISPOSAL = "RegisterDisposal"
DISPOSED_ARG_HANDLER = "DisposedArgHandler"


# ----- the machine API (SPEC 12.4)


@runtime_checkable
class MachineApi(Protocol):
    """The Machine API subset upper layers rely on, for local and network machines (SPEC 12.4).

    ``event=`` covers Go's traced ``Ev*`` variants. Not in the Python core, so not
    here: ``IsLocal``, ``Context``, ``ContextParent``, ``SemLogger``,
    ``HandlersBindMaps``, ``AddBreakpoint``.
    """

    # identity
    @property
    def id(self) -> str: ...
    @property
    def parent_id(self) -> str: ...
    @property
    def tags(self) -> list[str]: ...

    # mutations
    def add(
        self,
        states: Sequence[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result: ...
    def add1(
        self, state: str, args: Mapping[str, Any] | None = None, *, event: Event | None = None
    ) -> Result: ...
    def remove(
        self,
        states: Sequence[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result: ...
    def remove1(
        self, state: str, args: Mapping[str, Any] | None = None, *, event: Event | None = None
    ) -> Result: ...
    def set(
        self,
        states: Sequence[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result: ...
    def toggle(
        self,
        states: Sequence[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result: ...
    def toggle1(
        self, state: str, args: Mapping[str, Any] | None = None, *, event: Event | None = None
    ) -> Result: ...
    def add_err(
        self, err: Exception, args: Mapping[str, Any] | None = None, *, event: Event | None = None
    ) -> Result: ...
    def add_err_state(
        self,
        state: str,
        err: Exception,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result: ...

    # checking
    @property
    def err(self) -> Exception | None: ...
    def is_err(self) -> bool: ...
    def is_(self, states: Sequence[str]) -> bool: ...
    def is1(self, state: str) -> bool: ...
    def any(self, *groups: Sequence[str]) -> bool: ...
    def any1(self, *states: str) -> bool: ...
    def not_(self, states: Sequence[str]) -> bool: ...
    def not1(self, state: str) -> bool: ...
    def is_time(self, t: Sequence[int], states: Sequence[str] | None = None) -> bool: ...
    def was_time(self, t: Sequence[int], states: Sequence[str] | None = None) -> bool: ...
    def is_clock(self, clock: Mapping[str, int]) -> bool: ...
    def was_clock(self, clock: Mapping[str, int]) -> bool: ...
    def has(self, states: Sequence[str]) -> bool: ...
    def has1(self, state: str) -> bool: ...
    def can_add(self, states: Sequence[str], args: Mapping[str, Any] | None = None) -> Result: ...
    def can_add1(self, state: str, args: Mapping[str, Any] | None = None) -> Result: ...
    def can_remove(
        self, states: Sequence[str], args: Mapping[str, Any] | None = None
    ) -> Result: ...
    def can_remove1(self, state: str, args: Mapping[str, Any] | None = None) -> Result: ...
    @property
    def transition(self) -> Transition | None: ...
    @property
    def internal_errors(self) -> list[AsyncMachineError]: ...

    # waiting
    def when(self, states: Sequence[str], ctx: Ctx | None = None) -> Waiter: ...
    def when1(self, state: str, ctx: Ctx | None = None) -> Waiter: ...
    def when_not(self, states: Sequence[str], ctx: Ctx | None = None) -> Waiter: ...
    def when_not1(self, state: str, ctx: Ctx | None = None) -> Waiter: ...
    def when_time(
        self, states: Sequence[str], ticks: Sequence[int], ctx: Ctx | None = None
    ) -> Waiter: ...
    def when_time1(self, state: str, tick: int, ctx: Ctx | None = None) -> Waiter: ...
    def when_ticks(self, state: str, n: int, ctx: Ctx | None = None) -> Waiter: ...
    def when_next_active(self, state: str, ctx: Ctx | None = None) -> Waiter: ...
    def when_query(
        self, fn: Callable[[dict[str, int]], bool], ctx: Ctx | None = None
    ) -> Waiter: ...
    def when_err(self, ctx: Ctx | None = None) -> Waiter: ...
    def when_queue(self, tick: int) -> Waiter: ...
    def when_args(self, state: str, args: Mapping[str, Any], ctx: Ctx | None = None) -> Waiter: ...

    # getters
    @property
    def state_names(self) -> tuple[str, ...]: ...
    @property
    def schema(self) -> dict[str, State]: ...
    def active_states(self, states: Sequence[str] | None = None) -> list[str]: ...
    def tick(self, state: str) -> int: ...
    def clock(self, states: Sequence[str] | None = None) -> dict[str, int]: ...
    def time(self, states: Sequence[str] | None = None) -> Time: ...
    def queue_tick(self) -> int: ...
    def machine_tick(self) -> int: ...
    def queue_len(self) -> int: ...
    def new_state_ctx(self, state: str) -> StateCtx: ...
    def export(self) -> Serialized: ...
    def switch(self, *groups: Sequence[str]) -> str: ...
    def groups(self) -> tuple[dict[str, list[int]], list[str]]: ...
    def index(self, states: Sequence[str]) -> list[int]: ...
    def index1(self, state: str) -> int: ...

    # misc
    def parse_states(self, states: Sequence[str]) -> list[str]: ...
    def string(self) -> str: ...
    def string_all(self) -> str: ...
    def inspect(self, states: Sequence[str] | None = None) -> str: ...
    def log(self, msg: str, *args: Any) -> None: ...
    def bind_handlers(self, handlers: object, *, id: str | None = None) -> str: ...
    def detach_handlers(self, binding_id: str) -> None: ...
    @property
    def handlers(self) -> list[str]: ...
    @property
    def states_verified(self) -> bool: ...
    @property
    def tracers(self) -> list[Tracer]: ...
    def tracer_bind(self, tracer: Tracer) -> str: ...
    def tracer_detach(self, tracer_id: str) -> None: ...
    def dispose(self) -> None: ...
    def when_disposed(self) -> Waiter: ...
    @property
    def is_disposed(self) -> bool: ...
    def on_dispose(self, fn: Callable[[str], Any]) -> None: ...


if TYPE_CHECKING:  # mypy proves the local machine implements the protocol

    def _machine_is_api(m: Machine) -> MachineApi:
        return m


# ----- errors


class ContextCanceledError(AsyncMachineError):
    """The ``ctx`` given to a helper was cancelled (Go ``ctx.Err()``)."""


class ExceptionStateError(AsyncMachineError):
    """The machine entered ``Exception`` while a ``wait_for_err_*`` waited; ``err`` is its error."""

    def __init__(self, mach: MachineApi) -> None:
        self.err = mach.err
        super().__init__(f"{EXCEPTION}: {self.err}")


class MutationCanceledError(AsyncMachineError):
    """A mutation was canceled (Go ``ErrCanceled``)."""


class RetriesExceededError(MutationCanceledError):
    """A :class:`MutRequest` gave up; ``attempts`` were made, the last returned ``result``."""

    def __init__(self, msg: str, attempts: int, result: Result) -> None:
        super().__init__(msg)
        self.attempts = attempts
        self.result = result


class EvalError(AsyncMachineError):
    """``eval`` could not run the function: nested in a handler, or disposed (Go ErrEvalTimeout)."""


class StateLoopError(AsyncMachineError):
    """A :class:`StateLoop` stopped: its context ended or the loop ran too fast."""


# ----- environment (help.go IsDebug, IsTestRunner, ...)


def is_test_runner() -> bool:
    """``AM_TEST_RUNNER`` is set."""
    return os.environ.get(ENV_AM_TEST_RUNNER, "") != ""


def is_debug() -> bool:
    """``AM_DEBUG`` is set and this is not the test runner."""
    return os.environ.get(ENV_AM_DEBUG, "") != "" and not is_test_runner()


def is_telemetry() -> bool:
    """``AM_DBG_ADDR`` is set and this is not the test runner."""
    return os.environ.get(ENV_AM_DBG_ADDR, "") != "" and not is_test_runner()


def set_env_log_level(level: int) -> None:
    """Set ``AM_LOG`` (the default log level of machines created later)."""
    os.environ[ENV_AM_LOG] = str(int(level))


def enable_debugging(stdout: bool = False) -> None:
    """Set ``AM_DEBUG``, ``AM_DBG_ADDR=1`` and ``AM_LOG=3`` (ops); no-op under the test runner."""
    if is_test_runner():
        return
    os.environ[ENV_AM_DEBUG] = "1"
    if stdout:
        os.environ[ENV_AM_LOG_PRINT] = "1"
    os.environ[ENV_AM_DBG_ADDR] = "1"
    set_env_log_level(3)


def _timeout(timeout: float | None) -> float | None:
    """``AM_DEBUG`` makes timeouts 100x longer, for stepping in a debugger (help.go WaitFor*)."""
    if timeout is not None and is_debug():
        return timeout * 100
    return timeout


# ----- waiting


class Waitable(Protocol):
    """Anything with ``is_set()`` and ``await wait()``: ``am.Waiter``, ``anyio.Event``, ..."""

    def is_set(self) -> bool: ...
    async def wait(self) -> None: ...


async def _first(*fns: Callable[[], Awaitable[object]]) -> int:
    """Run ``fns`` concurrently; the first to return wins (its index), the others are cancelled."""
    winner = -1
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
                await w.wait()

        async def wait_any() -> None:
            await _first(*(w.wait for w in waiters))

        target = wait_all if all_ else wait_any

        async def race() -> None:
            if err_w is None:
                await target()
            else:
                await _first(target, err_w.wait)

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
    timeout: float | None = None,  # noqa: ASYNC109 (DESIGN: timeout=, AM_DEBUG x100)
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
    timeout: float | None = None,  # noqa: ASYNC109 (DESIGN: timeout=, AM_DEBUG x100)
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
    timeout: float | None = None,  # noqa: ASYNC109 (DESIGN: timeout=, AM_DEBUG x100)
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
    timeout: float | None = None,  # noqa: ASYNC109 (DESIGN: timeout=, AM_DEBUG x100)
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


# ----- mutations confirmed by waiting (help.go AddSync, AddAsync, RemoveSync)


def _when_queued(mach: MachineApi, res: Result) -> Waiter:
    """A waiter for a queued mutation to have been processed."""
    if int(res) > QUEUED:  # a result carrying its queue tick (SPEC 3.2)
        return mach.when_queue(int(res))
    if isinstance(mach, Machine):
        # the core's Result has no queue tick; the current drain processes it
        return mach.when_queue_ends()
    return mach.when_queue(mach.queue_tick() + 1)


async def _confirm(
    mach: MachineApi,
    mutate: Callable[[], Result],
    check: Callable[[], bool],
    time_limit: float | None,
    ctx: Ctx | None,
) -> bool:
    await anyio.lowlevel.checkpoint_if_cancelled()
    res = mutate()
    if res in (EXECUTED, CANCELED):
        await anyio.lowlevel.cancel_shielded_checkpoint()
        return res == EXECUTED
    w = _when_queued(mach, res)
    try:
        await _wait((w,), all_=True, mach=None, time_limit=time_limit, ctx=ctx, close=True)
    except ContextCanceledError:
        return False
    return not mach.is_disposed and check()


async def add_sync(
    mach: MachineApi,
    states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (DESIGN: timeout=, AM_DEBUG x100)
    ctx: Ctx | None = None,
    event: Event | None = None,
) -> bool:
    """Add ``states``; True if executed, or if queued and active once processed (``AddSync``).

    False when canceled, when ``ctx`` ends first or the machine is disposed;
    :class:`TimeoutError` when ``timeout`` expires. ``event`` traces the source.
    """
    return await _confirm(
        mach, lambda: mach.add(states, args, event=event), lambda: mach.is_(states), timeout, ctx
    )


async def add1_sync(
    mach: MachineApi,
    state: str,
    args: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (DESIGN: timeout=, AM_DEBUG x100)
    ctx: Ctx | None = None,
    event: Event | None = None,
) -> bool:
    """:func:`add_sync` for one state."""
    return await add_sync(mach, [state], args, timeout=timeout, ctx=ctx, event=event)


async def remove_sync(
    mach: MachineApi,
    states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (DESIGN: timeout=, AM_DEBUG x100)
    ctx: Ctx | None = None,
    event: Event | None = None,
) -> bool:
    """Remove ``states``; True if executed, or if queued and inactive once processed.

    help.go ``RemoveSync`` returns True after waiting even when the states are
    still active; here the result is ``not_(states)``.
    """
    return await _confirm(
        mach,
        lambda: mach.remove(states, args, event=event),
        lambda: mach.not_(states),
        timeout,
        ctx,
    )


async def remove1_sync(
    mach: MachineApi,
    state: str,
    args: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (DESIGN: timeout=, AM_DEBUG x100)
    ctx: Ctx | None = None,
    event: Event | None = None,
) -> bool:
    """:func:`remove_sync` for one state."""
    return await remove_sync(mach, [state], args, timeout=timeout, ctx=ctx, event=event)


async def add_async(
    mach: MachineApi,
    wait_state: str,
    add_states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (DESIGN: timeout=, AM_DEBUG x100)
    ctx: Ctx | None = None,
    event: Event | None = None,
) -> bool:
    """Add ``add_states`` and wait for the *next* activation of ``wait_state`` (``AddAsync``).

    Tick based, so a Multi ``wait_state`` works and an activation during the
    mutation itself counts. False if the mutation is canceled, ``ctx`` ends or
    the machine is disposed; :class:`TimeoutError` when ``timeout`` expires.
    """
    await anyio.lowlevel.checkpoint_if_cancelled()
    tick = mach.tick(wait_state)
    target = tick + next_active_in(tick)
    w = mach.when_time1(wait_state, target)
    try:
        if mach.add(add_states, args, event=event) == CANCELED:
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return False
        if not w.is_set():
            try:
                await _wait((w,), all_=True, mach=None, time_limit=timeout, ctx=ctx, close=False)
            except ContextCanceledError:
                return False
        else:
            await anyio.lowlevel.cancel_shielded_checkpoint()
        return mach.tick(wait_state) >= target
    finally:
        w.close()


async def add1_async(
    mach: MachineApi,
    wait_state: str,
    add_state: str,
    args: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (DESIGN: timeout=, AM_DEBUG x100)
    ctx: Ctx | None = None,
    event: Event | None = None,
) -> bool:
    """:func:`add_async` for one state."""
    return await add_async(
        mach, wait_state, [add_state], args, timeout=timeout, ctx=ctx, event=event
    )


# ----- failsafe mutation requests (help.go MutRequest, failsafe-go retry policy)


@attrs.define
class MutRequest:
    """A mutation retried while it returns ``CANCELED`` (help.go ``MutRequest``).

    Up to ``retries`` retries (``retries + 1`` attempts), waiting ``delay``
    seconds before the first retry, then doubling up to ``backoff`` (0: a fixed
    ``delay``); a failure once ``max_duration`` seconds have passed ends it
    (0: unbounded) and no wait overshoots it. ``QUEUED`` counts as success.
    Set the policy fields directly (Go's fluent setters). Raises
    :class:`RetriesExceededError`, or :class:`ContextCanceledError` if ``ctx``
    ends.
    """

    mach: MachineApi
    mut_type: MutationType
    states: list[str]
    args: Mapping[str, Any] | None = None
    event: Event | None = None
    retries: int = 10
    delay: float = 0.1
    backoff: float = 5.0
    max_duration: float = 5.0

    def clone(
        self,
        mach: MachineApi | None = None,
        mut_type: MutationType | None = None,
        states: Sequence[str] | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> MutRequest:
        """A copy with the same policy; ``event`` is not copied (as in the reference)."""
        return attrs.evolve(
            self,
            mach=self.mach if mach is None else mach,
            mut_type=self.mut_type if mut_type is None else mut_type,
            states=list(self.states if states is None else states),
            args=self.args if args is None else args,
            event=None,
        )

    def _mutate(self) -> Result:
        if self.mut_type is MutationType.ADD:
            return self.mach.add(self.states, self.args, event=self.event)
        return self.mach.remove(self.states, self.args, event=self.event)

    async def run(self, ctx: Ctx | None = None) -> Result:
        """Mutate until not canceled; :class:`RetriesExceededError` when the policy gives up."""
        if self.mut_type not in (MutationType.ADD, MutationType.REMOVE):
            raise ValueError(f"MutRequest supports add and remove, not {self.mut_type}")
        if ctx is not None and ctx.cancelled:
            raise ContextCanceledError("ctx canceled before the mutation request")
        start = anyio.current_time()
        failed = 0
        base = 0.0
        while True:
            res = self._mutate()
            if res != CANCELED:
                await anyio.lowlevel.cancel_shielded_checkpoint()
                return res
            failed += 1
            elapsed = anyio.current_time() - start
            # port: >= where failsafe-go has >, or a virtual clock retries with 0 delays
            if failed > self.retries or (self.max_duration and elapsed >= self.max_duration):
                await anyio.lowlevel.cancel_shielded_checkpoint()
                raise RetriesExceededError(
                    f"{self.mut_type} {' '.join(self.states)} canceled {failed} times",
                    failed,
                    res,
                )
            if self.backoff and failed > 1:
                base = min(base * 2, self.backoff)
            else:
                base = self.delay
            delay = base
            if self.max_duration:
                delay = max(0.0, min(delay, self.max_duration - elapsed))
            if not await wait(delay, ctx):
                raise ContextCanceledError("ctx canceled during the mutation request")


def new_req_add(
    mach: MachineApi,
    states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> MutRequest:
    """A failsafe Add request with the default policy (help.go ``NewReqAdd``)."""
    return MutRequest(mach, MutationType.ADD, list(states), args, event)


def new_req_add1(
    mach: MachineApi,
    state: str,
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> MutRequest:
    """:func:`new_req_add` for one state."""
    return new_req_add(mach, [state], args, event=event)


def new_req_remove(
    mach: MachineApi,
    states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> MutRequest:
    """A failsafe Remove request with the default policy (help.go ``NewReqRemove``)."""
    return MutRequest(mach, MutationType.REMOVE, list(states), args, event)


def new_req_remove1(
    mach: MachineApi,
    state: str,
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> MutRequest:
    """:func:`new_req_remove` for one state."""
    return new_req_remove(mach, [state], args, event=event)


# ----- check before mutating (help.go CantAdd, AskAdd, ...)


def cant_add(
    mach: MachineApi, states: Sequence[str], args: Mapping[str, Any] | None = None
) -> bool:
    """True if a dry run confirms the Add would be canceled (help.go ``CantAdd``).

    Called from a handler the dry run is only queued, so nothing is confirmed:
    False. (The reference's ``CantAdd`` has its result inverted.)
    """
    return mach.can_add(states, args) == CANCELED


def cant_add1(mach: MachineApi, state: str, args: Mapping[str, Any] | None = None) -> bool:
    """:func:`cant_add` for one state."""
    return cant_add(mach, [state], args)


def cant_remove(
    mach: MachineApi, states: Sequence[str], args: Mapping[str, Any] | None = None
) -> bool:
    """True if a dry run confirms the Remove would be canceled (help.go ``CantRemove``)."""
    return mach.can_remove(states, args) == CANCELED


def cant_remove1(mach: MachineApi, state: str, args: Mapping[str, Any] | None = None) -> bool:
    """:func:`cant_remove` for one state."""
    return cant_remove(mach, [state], args)


def ask_add(
    mach: MachineApi,
    states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> Result:
    """Add only if not confirmed impossible, avoiding canceled transitions (``AskAdd``)."""
    if cant_add(mach, states, args):
        return CANCELED
    return mach.add(states, args, event=event)


def ask_add1(
    mach: MachineApi,
    state: str,
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> Result:
    """:func:`ask_add` for one state."""
    return ask_add(mach, [state], args, event=event)


def ask_remove(
    mach: MachineApi,
    states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> Result:
    """Remove only if not confirmed impossible (help.go ``AskRemove``)."""
    if cant_remove(mach, states, args):
        return CANCELED
    return mach.remove(states, args, event=event)


def ask_remove1(
    mach: MachineApi,
    state: str,
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> Result:
    """:func:`ask_remove` for one state."""
    return ask_remove(mach, [state], args, event=event)


# ----- conditions and groups (help.go Cond, MachGroup)


def _names(v: Iterable[str]) -> tuple[str, ...]:
    if isinstance(v, str):
        raise TypeError(f"expected a list of state names, got the str {v!r}")
    return tuple(v)


def _groups(v: Iterable[Iterable[str]]) -> tuple[tuple[str, ...], ...]:
    return tuple(_names(g) for g in v)


def _clock(v: Mapping[str, int] | None) -> dict[str, int]:
    return dict(v or {})


@attrs.frozen
class Cond:
    """A declarative condition over a machine; ``check`` is True when all parts hold (``Cond``).

    ``is_``: all active; ``any``: some group fully active; ``any1``: some state
    active; ``not_``: none active; ``clock``: every tick at least the given one.
    """

    is_: tuple[str, ...] = attrs.field(default=(), converter=_names)
    any: tuple[tuple[str, ...], ...] = attrs.field(default=(), converter=_groups)
    any1: tuple[str, ...] = attrs.field(default=(), converter=_names)
    not_: tuple[str, ...] = attrs.field(default=(), converter=_names)
    clock: dict[str, int] = attrs.field(factory=dict, converter=_clock, hash=False)

    def check(self, mach: MachineApi | None) -> bool:
        """True if ``mach`` meets every part (False for None)."""
        if mach is None:
            return False
        if not mach.is_(self.is_):
            return False
        if mach.any1(*self.not_):
            return False
        if self.any1 and not mach.any1(*self.any1):
            return False
        if self.any and not mach.any(*self.any):
            return False
        return mach.was_clock(self.clock)

    def is_empty(self) -> bool:
        """True when no part is set (the reference forgets ``any``)."""
        return not (self.is_ or self.any or self.any1 or self.not_ or self.clock)

    def __str__(self) -> str:
        groups = " ".join("[" + " ".join(g) + "]" for g in self.any)
        clock = " ".join(f"{k}:{v}" for k, v in self.clock.items())
        return (
            f"is: [{' '.join(self.is_)}], any: [{groups}], any1: [{' '.join(self.any1)}],"
            f" not: [{' '.join(self.not_)}], clock: [{clock}]"
        )


class MachGroup(list[MachineApi]):
    """A list of machines (help.go ``MachGroup``)."""

    def is1(self, state: str) -> bool:
        """``state`` is active in every machine (False for an empty group)."""
        return bool(self) and all(m.is1(state) for m in self)


# ----- state loop guard (help.go StateLoop)


class StateLoop:
    """A guard for a repeating state (e.g. ``Heartbeat``) against running away (``StateLoop``).

    Counts the ticks of the loop state, its ``require`` states and the states
    that ``add`` it (the reference's code takes any inbound relation, against
    its own comment); ``ok()`` fails when more than ``threshold`` of those
    ticks happen within one ``reset_interval``. The reference compares the
    *total* ticks with the threshold, so any long-running machine fails; here
    only the ticks of the current window count. Not thread-safe.
    """

    def __init__(
        self,
        mach: Machine,
        loop_state: str,
        check: Callable[[], bool] | None = None,
        *,
        threshold: int = 500,
        reset_interval: float = 1.0,
        clock: Callable[[], float] = _time.monotonic,
    ) -> None:
        self.mach = mach
        self.loop_state = loop_state
        self.threshold = threshold
        self.reset_interval = reset_interval
        self.clock = clock
        self._check = check
        self._ended = not mach.has1(loop_state)
        ctx_states = [loop_state]
        if not self._ended:
            ctx_states.extend(mach.schema[loop_state].require or ())
            ctx_states.extend(
                s
                for s in mach.inbound_relations_of(loop_state)
                if Relation.ADD in mach.relations_between(s, loop_state)
            )
        self.ctx_states = list(dict.fromkeys(ctx_states))
        self._window_start = self.clock()
        self._window_ticks = self.sum()
        if not self._ended:
            mach.log(str(self))

    def __str__(self) -> str:
        status = "ended" if self._ended else "ok"
        return f"StateLoop: {status} for {self.mach.id}/{self.loop_state}"

    def sum(self) -> int:
        """The sum of the ticks of the counted states."""
        return self.mach.time(self.ctx_states).sum()

    def ended(self) -> bool:
        """True once stopped (reads no context: usable in negotiation handlers)."""
        return self._ended

    def break_(self) -> None:
        """Stop the loop (Go ``Break``)."""
        self._ended = True
        self.mach.log(str(self))

    def _fail(self, what: str) -> bool:
        self._ended = True
        self.mach.add_err(StateLoopError(f"loop: {what} for {self.mach.id}/{self.loop_state}"))
        return False

    def ok(self, ctx: Ctx | None = None) -> bool:
        """True if the loop may continue; a failure adds a :class:`StateLoopError`."""
        if self._ended:
            return False
        if ctx is not None and ctx.cancelled:
            return self._fail("arg ctx expired")
        if self.mach.not1(self.loop_state):
            return self._fail("state ctx expired")
        if self._check is not None and not self._check():
            self._ended = True
            return False
        now = self.clock()
        total = self.sum()
        if now - self._window_start > self.reset_interval:
            self._window_start = now
            self._window_ticks = total
            return True
        if total - self._window_ticks > self.threshold:
            return self._fail("threshold exceeded")
        return True


# ----- schema and state utilities


def schema_canonical(schema: Mapping[str, State] | type[States] | None) -> str:
    """The text :func:`schema_hash` digests (help.go ``SchemaHash``), bit for bit.

    For each state name in ascending order (Go ``sort.Strings``: bytewise on
    UTF-8, which is the same as Python's code-point order): ``name + ":"``,
    then ``"a,"`` if Auto, ``"m,"`` if Multi, then the relation lists After,
    Remove, Add, Require in that order, each sorted, each name followed by
    ``","`` and each list closed by ``";"``. Duplicates in a list are kept;
    ``None`` and ``()`` are the same; tags are not part of it.
    """
    if schema is None:
        return ""
    if isinstance(schema, type):
        schema = schema.schema()
    out: list[str] = []
    for name in sorted(schema):
        state = schema[name]
        out.append(name + ":")
        if state.auto:
            out.append("a,")
        if state.multi:
            out.append("m,")
        for rel in (state.after, state.remove, state.add, state.require):
            out.extend(r + "," for r in sorted(rel or ()))
            out.append(";")
    return "".join(out)


def schema_hash(schema: Mapping[str, State] | type[States] | None) -> str:
    """Order-independent short schema hash used by the aRPC handshake (help.go ``SchemaHash``).

    The first 6 hex chars of the MD5 of the UTF-8 bytes of
    :func:`schema_canonical`; ``""`` for None. To match a Go peer, hash the
    machine's schema (``mach.schema``: sanitized, with ``Exception``).
    """
    if schema is None:
        return ""
    return hash_str(schema_canonical(schema), 6)


def is_multi(mach: MachineApi, state: str) -> bool:
    """``state`` is a Multi state (False if unknown)."""
    s = mach.schema.get(state)
    return s is not None and s.multi


def implements(checked: Iterable[str], needed: Iterable[str]) -> None:
    """Raise :class:`am.StateUnknownError` for the first needed state not in ``checked``."""
    have = set(checked)
    for s in needed:
        if s not in have:
            raise StateUnknownError(f"missing state: {s}")


def schema_implements(schema: Mapping[str, State] | type[States], states: Iterable[str]) -> None:
    """:func:`implements` against a schema's state names."""
    names = schema.names() if isinstance(schema, type) else list(schema)
    implements(names, states)


def count_relations(state: State) -> int:
    """The number of states referenced by all relations of ``state``."""
    return sum(len(r or ()) for r in (state.remove, state.add, state.require, state.after))


def get_transition_states(
    tx: Transition, index: Sequence[str] | None = None
) -> tuple[list[str], list[str], list[str]]:
    """``(added, removed, touched)`` of a transition (help.go ``GetTransitionStates``).

    From the ticks before and after (a re-entered Multi state counts as added)
    and, for touched, from the recorded steps (needs ``log_steps``). ``index``
    defaults to the machine's state names.
    """
    names = tx.machine.state_names if index is None else index
    before, after = tx.time_before, tx.time_after
    added: list[str] = []
    removed: list[str] = []
    for i, name in enumerate(names):
        b, a = before.tick(i), after.tick(i)
        if b % 2 and not a % 2:
            removed.append(name)
        elif (not b % 2 and a % 2) or b != a:
            added.append(name)
    touched: list[str] = []
    for step in tx.steps:
        for s in (step.from_state, step.to_state):
            if s and s in names:
                touched.append(s)
    return added, removed, list(dict.fromkeys(touched))


def handler_to_state(handler: str) -> str:
    """Strip the ``State``, ``Enter``, ``End``, ``Exit`` suffixes, in that order (Go names)."""
    for suffix in ("State", "Enter", "End", "Exit"):
        handler = handler.removesuffix(suffix)
    return handler


def tag_value(tags: Iterable[str], key: str) -> str:
    """The value of a ``key:value`` tag; a bare ``key`` tag gives ``key``; else ``""``."""
    prefix = key + ":"
    for t in tags:
        if t == key:
            return key
        if t.startswith(prefix):
            return t[len(prefix) :]
    return ""


def tag_value_int(tags: Iterable[str], key: str) -> int:
    """:func:`tag_value` as an int: -1 if missing, 0 if not a number."""
    v = tag_value(tags, key)
    if v == "":
        return -1
    try:
        return int(v)
    except ValueError:
        return 0


def activations(ticks: int) -> int:
    """The number of activations a tick count stands for: ``(ticks + 1) // 2``."""
    return (ticks + 1) // 2


def result_to_err(result: Result) -> MutationCanceledError | None:
    """A :class:`MutationCanceledError` for ``CANCELED``, else None."""
    if result == CANCELED:
        return MutationCanceledError("mutation canceled")
    return None


def rand_id(length: int = 16) -> str:
    """A random hex id of ``length`` chars, rounded up to even (0 means 16, as in Go)."""
    if length == 0:
        length = 16
    return secrets.token_hex((length + 1) // 2)


def copy_schema(source: Mapping[str, State], target: Machine, states: Sequence[str]) -> None:
    """Copy the definitions of ``states`` into ``target``'s schema (``set_schema``)."""
    if not states:
        return
    schema = target.schema
    for name in states:
        if name not in source:
            raise StateUnknownError(f"missing states: state {name} in source schema")
        schema[name] = source[name]
    names = list(dict.fromkeys([*target.state_names, *states]))
    target.set_schema(schema, names)


def time_matrix(machines: Sequence[MachineApi]) -> list[Time]:
    """The machines' times stacked; they must have the same number of states (x_help.go)."""
    if not machines:
        raise ValueError("no machines provided")
    n = len(machines[0].state_names)
    if any(len(m.state_names) != n for m in machines):
        raise ValueError("machines have different state lengths")
    return [m.time() for m in machines]


# ----- handlers and composition


def remove_multi(mach: MachineApi, state: str) -> Callable[[Event], None]:
    """A final handler removing ``state``: a self-cleaning Multi event (``RemoveMulti``)."""

    def handler(_e: Event) -> None:
        mach.remove1(state)

    return handler


def nested_state(
    e: Event, id_arg: str, mach_getter: Callable[[str], MachineApi | None]
) -> tuple[Result, Waiter | None]:
    """Forward an Add of ``e``'s state to the submachine named by ``e.args[id_arg]``.

    x_help.go ``NestedState``. Returns the submachine's result and, when that
    is queued, a waiter for the nested state's next activation. Raises
    ValueError for a non-Add mutation, a missing id or submachine, or an
    already active non-Multi nested state.
    """
    if e.mutation.type is not MutationType.ADD:
        raise ValueError(f"unsupported nested mutation {e.mutation.type}")
    sub_id = e.args.get(id_arg)
    if not isinstance(sub_id, str) or not sub_id:
        raise ValueError(f"invalid args: {id_arg} must be a non-empty str")
    sub = mach_getter(sub_id)
    if sub is None:
        raise ValueError(f"submachine {sub_id} not found")
    state = e.state or e.name[:-5]
    tick = sub.tick(state)
    multi = is_multi(sub, state)
    if tick % 2 and not multi:
        raise ValueError(f"nested state {state} is active")
    res = sub.add1(state, e.args)
    if res < QUEUED:
        return res, None
    if multi:
        # the reference waits for tick + 2: one activation too many when inactive
        return res, sub.when_time1(state, tick + next_active_in(tick))
    return res, sub.when1(state)


def eval_getter(mach: Machine, source: str, fn: Callable[[], T]) -> T:
    """Return ``fn()`` run inside ``mach.eval`` (help.go ``EvalGetter``).

    Raises :class:`EvalError` when it cannot run (nested in a handler, or
    disposed). The reference retries ``min(max_tries, 1)`` times, i.e. once;
    the port's eval fails deterministically, so there is no retry.
    """
    box: list[T] = []
    if not mach.eval("Get/" + source, lambda: box.append(fn())):
        raise EvalError(f"eval failed: EvalGet/{source}")
    return box[0]


def eval_setter(mach: Machine, source: str, fn: Callable[[], Any]) -> None:
    """Run ``fn()`` inside ``mach.eval``; :class:`EvalError` if it cannot (``EvalSetter``)."""
    if not mach.eval("Set/" + source, fn):
        raise EvalError(f"eval failed: EvalSet/{source}")


def dispose_bind(mach: MachineApi, fn: Callable[[str], Any]) -> None:
    """Register a disposal callback via the ``Disposed`` mixin, else ``on_dispose``."""
    if mach.has1(REGISTER_DISPOSAL):
        mach.add1(REGISTER_DISPOSAL, {DISPOSED_ARG_HANDLER: fn})
        return
    mach.on_dispose(fn)


def dispose(mach: MachineApi, *, event: Event | None = None) -> None:
    """Dispose via the ``Disposing`` state when the schema has it, else ``mach.dispose()``."""
    if mach.has1(DISPOSING):
        mach.add1(DISPOSING, event=event)
        return
    mach.dispose()


def healthcheck(mach: Machine, period: float = 30.0) -> bool:
    """Add ``Healthcheck`` every ``period`` seconds until disposed (help.go ``Healthcheck``).

    Runs in the machine's task group; False (nothing started) without the state.
    """
    if not mach.has1(HEALTHCHECK):
        return False
    tg = mach.task_group
    if tg is None:
        raise NoNurseryError(f"healthcheck for {mach.id} needs a started machine")

    async def loop() -> None:
        disposed = mach.when_disposed()
        try:
            while True:
                with anyio.move_on_after(period):
                    await disposed
                if mach.is_disposed:
                    return
                mach.add1(HEALTHCHECK)
        finally:
            disposed.close()

    tg.start_soon(loop)
    return True


# ----- pools and fan-out / fan-in


class TaskPool:
    """A task group running at most ``limit`` tasks at once (help.go ``Pool``, alitto/pond)."""

    def __init__(self, task_group: anyio.abc.TaskGroup, limit: int, ctx: Ctx | None = None) -> None:
        if limit < 1:
            raise ValueError(f"pool limit must be >= 1, got {limit}")
        self.task_group = task_group
        self.limiter = anyio.CapacityLimiter(limit)
        self.ctx = ctx

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Queue ``fn(*args)``; it starts when a slot is free (skipped once ``ctx`` ended)."""
        self.task_group.start_soon(self._run, fn, args)

    async def _run(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        scope: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if self.ctx is None else self.ctx.cancel_scope()
        )
        with scope:
            async with self.limiter:
                await fn(*args)


@contextlib.asynccontextmanager
async def open_pool(limit: int, ctx: Ctx | None = None) -> AsyncIterator[TaskPool]:
    """``async with open_pool(n) as pool:``; the block waits for every task on exit."""
    if limit < 1:
        raise ValueError(f"pool limit must be >= 1, got {limit}")
    async with anyio.create_task_group() as tg:
        yield TaskPool(tg, limit, ctx)


async def fan_out(fn: Callable[[T], Awaitable[R]], items: Iterable[T], *, limit: int) -> list[R]:
    """Run ``fn(item)`` for every item, at most ``limit`` at once; results in item order."""
    todo = list(items)
    results: list[Any] = [None] * len(todo)

    async def one(i: int, item: T) -> None:
        results[i] = await fn(item)

    async with open_pool(limit) as pool:
        for i, item in enumerate(todo):
            pool.start_soon(one, i, item)
    return results


@attrs.define
class FanHandlers:
    """What :func:`fan_out_in` created; change ``concurrency`` at any time."""

    concurrency: int
    group_tasks: list[str]
    group_done: list[str]
    binding_id: str = ""


class _FanBinding:
    """The bound handler object: only ``any_state`` (no other attribute parses as a handler)."""

    def __init__(
        self,
        mach: Machine,
        name: str,
        fan: FanHandlers,
        fn: Callable[[int, str, str], Any],
        rng: random.Random,
    ) -> None:
        self.mach = mach
        self.name = name
        self.fan = fan
        self.fn = fn
        self.rng = rng
        self.tasks = {s: i for i, s in enumerate(fan.group_tasks)}
        self.dones = set(fan.group_done)

    def any_state(self, e: Event) -> None:
        mach, fan = self.mach, self.fan
        for state in e.mutation.called:
            i = self.tasks.get(state)
            if i is not None:
                self.fn(i, state, fan.group_done[i])
            elif state in self.dones:
                mach.add1(self.name)
            elif state == self.name:
                remaining = [
                    t
                    for t, d in zip(fan.group_tasks, fan.group_done, strict=True)
                    if not mach.any1(t, d)
                ]
                running = len(mach.active_states(fan.group_tasks))
                while running < fan.concurrency and remaining:
                    mach.add1(remaining.pop(self.rng.randrange(len(remaining))))
                    running += 1


def fan_out_in(
    mach: Machine,
    name: str,
    total: int,
    concurrency: int,
    fn: Callable[[int, str, str], Any],
    *,
    rng: random.Random | None = None,
) -> FanHandlers:
    """Fan out ``total`` task states and fan in to ``<name>Done`` (x_help.go ``FanOutIn``).

    Adds states ``<name>0..N-1`` (copies of ``<name>``) and ``<name><i>Done``
    (removing its task), makes ``<name>Done`` Auto, requiring every task's
    Done and removing ``<name>``. Adding ``<name>`` starts up to
    ``concurrency`` random remaining tasks, calling ``fn(i, task, task_done)``
    from the handler as each starts (``fn`` typically forks the work and adds
    ``task_done``); each finished task starts the next. Unlike the reference,
    the fan-in state's own activation does not re-add ``<name>``.
    """
    done_name = name + "Done"
    if not mach.has([name, done_name]):
        raise StateUnknownError(f"missing states: {name} or {done_name}")
    schema = mach.schema
    base = schema[name]
    tasks = [f"{name}{i}" for i in range(total)]
    dones = [f"{t}Done" for t in tasks]
    for t, d in zip(tasks, dones, strict=True):
        schema[t] = base
        schema[d] = State(remove=(t,))
    fan_in = schema[done_name].extend(State(require=tuple(dones), remove=(name,)))
    schema[done_name] = attrs.evolve(fan_in, auto=True)
    mach.set_schema(schema, [*mach.state_names, *tasks, *dones])
    fan = FanHandlers(concurrency, tasks, dones)
    binding = _FanBinding(mach, name, fan, fn, rng or random.Random())
    fan.binding_id = mach.bind_handlers(binding, id=f"fan-{name}")
    return fan


# ----- typed args in log lines (help.go ArgsToLogMap, LogArgs)


def _truncate(text: str, max_len: int) -> str:
    if len(text) <= max_len:
        return text
    return text[:max_len] if max_len < 5 else text[: max_len - 3] + "..."


def args_to_log_map(args: object, max_len: int = 0) -> dict[str, str]:
    """Fields of an attrs instance tagged ``metadata={"log": "name"}``, as text.

    help.go ``ArgsToLogMap``: zero values (``""``, 0, False, None, empty
    lists) are skipped; lists show at most ``max_len // 2`` quoted items and a
    ``... (N more)`` note (the reference shows one item too many and a wrong
    count); other values are truncated to ``max_len`` (0: 20).
    """
    if max_len == 0:
        max_len = max(4, LOG_ARGS_MAX_LEN)
    out: dict[str, str] = {}
    cls = type(args)
    if not attrs.has(cls):
        return out
    for field in attrs.fields(cls):
        key = field.metadata.get("log")
        if not key:
            continue
        value = getattr(args, field.name)
        if value is None or value is False or (isinstance(value, int | float) and value == 0):
            continue
        if isinstance(value, list | tuple | set | frozenset):
            if value and all(isinstance(v, bool | int | float) for v in value):
                out[key] = " ".join(
                    str(v).lower() if isinstance(v, bool) else str(v) for v in value
                )
                continue
            items = [str(v) for v in value if v is not None and str(v) != ""]
            if not items:
                continue
            half = max(1, max_len // 2)
            text = ", ".join(f'"{_truncate(s, half)}"' for s in items[:half])
            if len(items) > half:
                text += f" ... ({len(items) - half} more)"
            out[key] = text.replace("\n", " ")
            continue
        text = "true" if value is True else str(value)
        if text == "":
            continue
        out[key] = _truncate(text.replace("\n", " "), max_len)
    return out


def log_args(args: Mapping[str, Any], max_len: int = 0) -> dict[str, str]:
    """:func:`args_to_log_map` of every typed value in a mutation's args, merged."""
    out: dict[str, str] = {}
    for value in args.values():
        out.update(args_to_log_map(value, max_len))
    return out
