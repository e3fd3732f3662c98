"""Structured concurrency: the machine's task group, state-scoped tasks, dispose (semantics §10).

Work forked for a state (or an ``async def`` final handler) is scoped to the
state's current tick: it is cancelled when that tick changes — the state was
deactivated, or a Multi state re-entered — or when the machine is disposed.
It runs in a worker of the machine's task group (:class:`_Workers`) whose
cancel scope the state's :class:`StateCtx` cancels.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import sys
import threading
import types
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.abc
import anyio.lowlevel

from . import report as _report
from .errors import ArgumentError, NoNurseryError
from .logging import L_CHANGES, L_EVERYTHING, L_OPS
from .schema import DISPOSING, EXCEPTION, START
from .waiting import Ctx, StateCtx

if TYPE_CHECKING:
    import asyncio

    from .machine import Machine
    from .transition import Event

__all__ = [
    "dispose",
    "dispose_async",
    "fork",
    "fork_from_event",
    "new_state_ctx",
    "start",
    "start_async_handler",
    "submit",
]

AsyncFn = Callable[..., Awaitable[Any]]


# ----- attaching to an event loop


def start(m: Machine, task_group: anyio.abc.TaskGroup) -> None:
    """Run the machine's tasks in ``task_group`` (a trio nursery works too).

    From now on the machine belongs to this loop's thread; when the task
    group is cancelled the machine adds ``Disposing`` if its schema has it,
    else disposes (semantics §10). The machine stays in the group until disposed.
    """
    if m._disposing:
        raise ArgumentError(f"machine {m._id} is disposed")
    if m._task_group is not None:
        raise ArgumentError(f"machine {m._id} is already started")
    m._task_group = task_group
    m._loop_thread = threading.get_ident()
    workers, host = _workers_for(m, task_group)
    task_group.start_soon(watch_task_group, m, name=f"am-{m._id[:5]}-watch")
    if workers is not None:
        m._workers = workers
        m._on_dispose.insert(0, lambda _id: workers.close())
    else:
        m._spawn = task_group.start_soon
        m._scope_cls = type(anyio.CancelScope())
    if host is not None:
        m._host = host
        m._on_dispose.insert(0, lambda _id: host.poke())
        task_group.start_soon(host.run, m, name=f"am-{m._id[:5]}-tasks")


def _workers_for(m: Machine, task_group: Any) -> tuple[_Workers | None, _AsyncioHost | None]:
    """How the machine runs its state-scoped tasks: ``(workers, asyncio host)``.

    A task per job costs a spawn plus a cancel scope of its own (with anyio's
    ``start_soon``, a TaskHandle and a backend lookup on top): most of the cost
    of an async handler (issues 6 and 12). So on trio and on anyio's asyncio
    backend the jobs run in :class:`_Workers`: tasks of the machine's group
    that each keep a cancel scope open and run job after job, parked in
    between. On trio they are tasks of the group's own nursery; on asyncio
    plain asyncio tasks owned by an ``_AsyncioHost`` task in the group. Any
    other task group keeps a task per job (``run_scoped``).
    """
    # trio and asyncio are imported by whoever runs their loop: not at our import
    trio = sys.modules.get("trio")
    if trio is not None:
        nursery: Any = task_group
        if not isinstance(nursery, trio.Nursery):
            # anyio's task group on the trio backend keeps its nursery there
            nursery = getattr(task_group, "_nursery", None)
        if isinstance(nursery, trio.Nursery):
            _trio.load()
            return _Workers(m, nursery.start_soon, trio.CancelScope, None, _TrioWorker), None
    if type(task_group).__module__ == "anyio._backends._asyncio":
        scope_cls: Callable[[], Any] = type(anyio.CancelScope())
        host = _AsyncioHost()
        host.workers = _Workers(m, host.spawn, scope_cls, host, _AsyncioWorker)
        return host.workers, host
    return None, None


# a job: (fn, args, state, index of the state or -1, its tick, its context or None).
# Forks come with their context (tied to it before they start); async handlers
# without (tied to it once they first wait, see _Workers).
_Job = tuple[AsyncFn, tuple[Any, ...], str, int, int, Ctx | None]

IDLE_WORKERS = 16  # parked workers a machine keeps at most (each holds a task, ~3 KB)


class _Workers:
    """The tasks that run a machine's state-scoped jobs (forks, async handlers).

    A worker is a task of the machine's group that enters a cancel scope and
    runs jobs in it one after another; between jobs it parks (at most
    :data:`IDLE_WORKERS` per machine; an extra one ends). While a job runs,
    cancelling its state's context (the state's tick changed, the machine was
    disposed) cancels the worker's scope, so the job is cancelled at its next
    checkpoint (a job whose state ended before it started, at its first). A
    fork is tied to that context before it starts; an async handler only once
    it awaits for the first time (its first step runs in the worker's step: a
    handler that finishes without waiting needs no context at all). A worker
    whose scope was cancelled opens a fresh one for its next job.

    Each job runs with the contextvars of the code that started it, as a task
    of its own would: a new worker's task got a copy of them when it was
    spawned (by that code); a parked worker is woken with a copy. On trio the
    waker puts it in the task's ``context`` (trio runs every step of a task in
    it), so the job runs as is. On asyncio a task's context cannot change: the
    worker runs each step of the job inside it (:func:`_resume`).
    """

    __slots__ = ("closed", "host", "idle", "m", "scope_cls", "spawn", "worker_cls")

    def __init__(
        self,
        m: Machine,
        spawn: Callable[..., Any],
        scope_cls: Callable[[], Any],
        host: _AsyncioHost | None,
        worker_cls: type[_TrioWorker | _AsyncioWorker],
    ) -> None:
        self.m = m
        self.spawn = spawn
        self.scope_cls = scope_cls
        self.host = host
        self.worker_cls = worker_cls
        self.idle: list[_TrioWorker | _AsyncioWorker] = []
        self.closed = False

    def submit(self, job: _Job) -> None:
        """Run ``job`` in a parked worker, else in a new one (called by the job's starter)."""
        idle = self.idle
        while idle:
            if idle.pop().wake(job):
                return
        self.spawn(_work, self, job)  # the task copies the caller's contextvars

    def close(self) -> None:
        """No more parking: the idle workers end (the machine is disposed)."""
        self.closed = True
        idle, self.idle = self.idle, []
        for w in idle:
            w.wake(None)


class _TrioWorker:
    """Parks with trio's ``wait_task_rescheduled``; woken by ``reschedule``, in the
    contextvars of its waker (the task's ``context``, which trio runs each step in)."""

    __slots__ = ("pool", "task")

    context: ClassVar[None] = None  # the job's contextvars are the task's own

    def __init__(self, pool: _Workers) -> None:
        self.pool = pool
        self.task = _trio.current_task()

    def _abort(self, _raise_cancel: Any) -> Any:
        # the group was cancelled while parked: leave the idle list
        with contextlib.suppress(ValueError):
            self.pool.idle.remove(self)
        return _trio.Abort.SUCCEEDED

    def wake(self, job: _Job | None) -> bool:
        task = self.task
        if job is not None:
            task.context = _copy_context()
        _trio.reschedule(task, _trio.Value(job))
        return True

    async def park(self) -> _Job | None:
        pool = self.pool
        if pool.closed or len(pool.idle) >= IDLE_WORKERS:
            return None
        pool.idle.append(self)
        job: _Job | None = await _trio.wait_task_rescheduled(self._abort)
        return job


class _TrioLowlevel:
    """trio's low-level calls, looked up once (trio is imported by whoever runs it)."""

    current_task: ClassVar[Any] = None
    reschedule: ClassVar[Any] = None
    wait_task_rescheduled: ClassVar[Any] = None
    Abort: ClassVar[Any] = None
    Value: ClassVar[Any] = None

    @classmethod
    def load(cls) -> None:
        if cls.Value is None:
            import outcome
            import trio.lowlevel

            cls.current_task = trio.lowlevel.current_task
            cls.reschedule = trio.lowlevel.reschedule
            cls.wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
            cls.Abort = trio.lowlevel.Abort
            cls.Value = outcome.Value


_trio = _TrioLowlevel
_copy_context = contextvars.copy_context


class _AsyncioWorker:
    """Parks on a future; woken by setting its result (``context``: its waker's contextvars)."""

    __slots__ = ("context", "fut", "pool")

    def __init__(self, pool: _Workers) -> None:
        self.pool = pool
        self.fut: asyncio.Future[_Job | None] | None = None
        self.context: contextvars.Context | None = None

    def wake(self, job: _Job | None) -> bool:
        fut = self.fut
        if fut is None or fut.done():  # cancelled while parked, not yet resumed
            return False
        self.context = _copy_context()
        fut.set_result(job)
        return True

    async def park(self) -> _Job | None:
        pool = self.pool
        host = pool.host
        assert host is not None
        if pool.closed or host.closing or len(pool.idle) >= IDLE_WORKERS:
            return None
        fut: asyncio.Future[_Job | None] = host.loop.create_future()
        self.fut = fut
        self.context = None  # keeps nothing of the last job alive
        pool.idle.append(self)
        try:
            return await fut
        except BaseException:
            with contextlib.suppress(ValueError):
                pool.idle.remove(self)
            raise


_CoroutineType = types.CoroutineType
# "no context", typed as a context that may be missing: assigning a literal None
# would narrow the variable to None for the type checker, and mypyc (which trusts
# the narrowing) would then reject the context a job still holds when its scope's
# cancellation ends the ``with`` block
_NO_CTX: Ctx | None = None
_NOT_STARTED = object()  # a job's awaitable that is not a coroutine: awaited as is


async def _work(pool: _Workers, job: _Job | None) -> None:
    """A worker: run ``job``, then the jobs it is woken with, each in a cancel scope.

    Everything a job needs is written out here rather than in coroutines of its
    own (each step of a job passes through every frame it is awaited from), and
    with as few ``try`` blocks as will do (a cancellation raised through each
    costs).
    """
    m = pool.m
    host = pool.host
    scope_cls = pool.scope_cls
    w: _TrioWorker | _AsyncioWorker | None = None
    context: contextvars.Context | None = None  # the job's contextvars if not the task's
    fn: Any = None
    args: Any = None
    ctx: Ctx | None = None
    coro: Any = None
    trap: Any = None
    while job is not None:
        with scope_cls() as scope:
            if host is not None:
                host.scopes.add(scope)
                if host.closing:
                    scope.cancel()
            while True:
                fn, args, state, i, tick, ctx = job
                job = None  # a parked worker keeps nothing of its last job alive
                if m._disposing or (i >= 0 and m._ticks[i] != tick):
                    # its state ended before it started: it runs up to its first
                    # checkpoint, as a task started in a cancelled scope would
                    scope.cancel()
                if context is not None:  # asyncio, a woken worker
                    await _in_context(m, scope, fn, args, state, i, tick, ctx, context)
                elif ctx is not None:  # a fork: tied to its context from the start
                    if ctx._cancelled:
                        scope.cancel()
                    else:
                        ctx._scopes.add(scope)
                    try:
                        await fn(*args)
                    except Exception as err:
                        _failed(m, fn, state, err)
                    ctx._scopes.discard(scope)
                else:  # an async handler: its first step, then tied to its context
                    try:
                        coro = fn(*args)
                        if type(coro) is _CoroutineType:
                            trap = coro.send(None)
                        else:
                            trap = _NOT_STARTED  # awaiting it raises if it is no awaitable
                    except StopIteration:
                        coro = None  # done without waiting: no context needed
                    except Exception as err:
                        coro = None
                        _failed(m, fn, state, err)
                    if coro is not None:
                        ctx = _register(m, scope, state, i, tick, None)
                        try:
                            if trap is _NOT_STARTED:
                                await coro
                            else:
                                await _drive(coro, trap)
                        except Exception as err:
                            _failed(m, fn, state, err)
                        if ctx is not None:
                            ctx._scopes.discard(scope)
                fn = args = coro = trap = None
                ctx = _NO_CTX
                if scope.cancel_called:
                    break  # the job's state ended: a fresh scope for the next one
                if w is None:
                    if pool.closed or len(pool.idle) >= IDLE_WORKERS:
                        break
                    w = pool.worker_cls(pool)
                job = await w.park()
                if job is None:
                    break
                context = w.context
        # no try/finally for these: a BaseException other than the scope's
        # cancellation ends the task (and the group), leaving a dead scope behind
        if host is not None:
            host.scopes.discard(scope)
        if ctx is not None:  # the job raised the scope's cancellation
            ctx._scopes.discard(scope)
        fn = args = coro = trap = None
        ctx = _NO_CTX
        if not scope.cancel_called:
            return  # no next job
        if w is None:
            if pool.closed or len(pool.idle) >= IDLE_WORKERS:
                return
            w = pool.worker_cls(pool)
        job = await w.park()
        context = w.context


async def _in_context(
    m: Machine,
    scope: Any,
    fn: AsyncFn,
    args: tuple[Any, ...],
    state: str,
    i: int,
    tick: int,
    ctx: Ctx | None,
    context: contextvars.Context,
) -> None:
    """A job run inside ``context`` (asyncio, a woken worker): its first step,
    then the rest tied to its state's context (``ctx``, else looked up)."""
    try:
        coro: Any = context.run(fn, *args)
        if type(coro) is not _CoroutineType:
            trap = _NOT_STARTED  # awaiting it raises if it is no awaitable
        else:
            trap = context.run(coro.send, None)
    except StopIteration:
        return  # done without waiting: no context needed
    except Exception as err:
        _failed(m, fn, state, err)
        return
    registered = _register(m, scope, state, i, tick, ctx)
    try:
        if trap is _NOT_STARTED:
            await coro
        else:
            await _resume(coro, trap, context)
    except Exception as err:
        _failed(m, fn, state, err)
    finally:
        if registered is not None:
            registered._scopes.discard(scope)


def _failed(m: Machine, fn: AsyncFn, state: str, err: Exception) -> None:
    if m._disposing:
        return
    source = f"task {_report._qualname(fn)}"
    if state:
        source += f" of state {state}"
    m._add_err_from(EXCEPTION, err, None, None, source)


@types.coroutine
def _drive(coro: Coroutine[Any, Any, Any], trap: Any) -> Any:
    """Go on running ``coro`` (suspended at ``trap``): ``await coro`` written out,
    since its first step already ran."""
    send = coro.send
    throw = coro.throw
    while True:
        try:
            value = yield trap
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                trap = throw(exc)
            except StopIteration:
                return
        else:
            try:
                trap = send(value)
            except StopIteration:
                return


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], trap: Any, context: contextvars.Context) -> Any:
    """:func:`_drive` with each step run in ``context``."""
    run = context.run
    send = coro.send
    throw = coro.throw
    while True:
        try:
            value = yield trap
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                trap = run(throw, exc)
            except StopIteration:
                return
        else:
            try:
                trap = run(send, value)
            except StopIteration:
                return


def _register(m: Machine, scope: Any, state: str, i: int, tick: int, ctx: Ctx | None) -> Ctx | None:
    """Tie ``scope`` to the job's context (``ctx``; else its state's, created now if
    nobody asked for it yet). ``None``: the context already ended, ``scope`` is cancelled."""
    if ctx is None:
        if i < 0:
            ctx = m._ctx
        elif m._disposing or m._ticks[i] != tick:
            scope.cancel()  # the state ended during the job's first step
            return None
        else:
            subs = m._subs
            ctx = subs.state_ctx.get(state) or subs.new_state_ctx(state, tick, m._ctx)
    if ctx._cancelled:
        scope.cancel()
        return None
    ctx._scopes.add(scope)
    return ctx


class _AsyncioHost:
    """The machine's workers on asyncio: plain tasks, owned by a host.

    ``run`` is a task of the machine's task group that does for these tasks what
    the group would do: the group cannot end before they did (the host returns
    once the machine is disposed and its tasks finished); cancelling the group
    cancels them (their cancel scopes, so level-triggered, and tasks started
    afterwards start cancelled); a BaseException escaping one (exceptions
    become ``add_err``) cancels the others and is raised in the group. The
    host sleeps until one of these happens: a task ending is no wake-up.
    """

    __slots__ = ("closing", "error", "event", "loop", "scopes", "tasks", "workers")

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.scopes: set[Any] = set()  # the cancel scopes of the running tasks
        self.closing = False
        self.error: BaseException | None = None
        self.event: anyio.Event | None = None
        self.workers: _Workers | None = None

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        task = self.loop.create_task(fn(*args))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        tasks = self.tasks
        tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None and self.error is None:
                self.error = exc
                self.poke()
                return
        if not tasks:
            self.poke()  # the host may wait for the last one

    def poke(self) -> None:
        if self.event is not None:
            self.event.set()

    def _cancel_all(self) -> None:
        self.closing = True
        if self.workers is not None:
            self.workers.close()  # parked workers are in no scope: they end
        for scope in list(self.scopes):
            scope.cancel()

    async def _wait(self, done: Callable[[], bool]) -> None:
        while self.error is None and not done():
            self.event = event = anyio.Event()
            await event.wait()

    async def run(self, m: Machine) -> None:
        def settled() -> bool:
            return m._disposed and not self.tasks

        cancelled: BaseException | None = None
        try:
            await self._wait(settled)
        except anyio.get_cancelled_exc_class() as exc:
            cancelled = exc  # awaited outside the except block (_NO_AWAIT_IN_EXCEPT)
        if cancelled is not None:
            self._cancel_all()
            with anyio.CancelScope(shield=True):
                await self._wait(settled)
            if self.error is None:
                try:
                    raise cancelled
                finally:
                    cancelled = None  # no frame -> traceback -> frame cycle
            # a task's BaseException while the group was being cancelled: it
            # joins the group's other errors (as a trio nursery would keep it)
        if self.error is not None:
            self._cancel_all()
            with anyio.CancelScope(shield=True):
                while self.tasks:
                    self.event = event = anyio.Event()
                    await event.wait()
            raise self.error


# _NO_AWAIT_IN_EXCEPT: the coroutines of this module never await inside an ``except``
# block. Compiled with mypyc, a coroutine suspended there leaves its exception set as
# the thread's "exception being handled" while other tasks run (CPython swaps it per
# coroutine; mypyc does not): exceptions raised elsewhere get it as ``__context__``
# and ``sys.exc_info()`` returns it, long after the task ended.


async def watch_task_group(m: Machine) -> None:
    cancelled: BaseException | None = None
    try:
        await m._disposed_waiter.wait()
    except anyio.get_cancelled_exc_class() as exc:
        cancelled = exc  # handled below, outside the except block (_NO_AWAIT_IN_EXCEPT)
    if cancelled is None:
        return
    try:
        with anyio.CancelScope(shield=True):
            if not m._disposing:
                await _shut_down(m)
        raise cancelled
    finally:
        cancelled = None  # no frame -> traceback -> frame cycle


async def _shut_down(m: Machine) -> None:
    """The task group was cancelled: dispose gracefully (via ``Disposing``) or at once."""
    if DISPOSING in m._schema:
        m._log(L_OPS, "[dispose] graceful shutdown via Disposing")
        m.add1(DISPOSING)
        with anyio.move_on_after(2 * m.dispose_timeout):
            await m._disposed_waiter.wait()
        if not m._disposed:
            m._log(L_CHANGES, "[dispose] graceful timeout")
    else:
        m._log(L_OPS, "[dispose] graceful shutdown via dispose()")
    m.dispose()


def require_task_group(m: Machine) -> anyio.abc.TaskGroup:
    tg: anyio.abc.TaskGroup | None = m._task_group
    if tg is None:
        raise NoNurseryError(
            f"machine {m._id} has no task group: use `async with"
            " am.open_machine(...)` or `mach.start(nursery)` before forking"
        )
    return tg


# ----- forks (semantics §2.4, §10)


def check_async_fn(fn: object, where: str) -> None:
    """``fn`` must be an ``async def`` function (or a partial / object of one)."""
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 (an object with an async __call__)
    ):
        return
    name = getattr(fn, "__qualname__", None) or repr(fn)
    raise TypeError(
        f"{where} needs an async function (async def), got {name}: a plain function"
        " would run in the caller, not as a task"
    )


def fork(m: Machine, state: str, fn: AsyncFn, args: tuple[Any, ...]) -> bool:
    """Start ``fn(*args)`` in the task group, inside ``state``'s current scope.

    ``state`` must be active: work scoped to an inactive state is cancelled at
    once (not started, False). Also False (nothing started) when the machine
    is disposed. An exception raised by the task becomes ``add_err``;
    cancellation (the state ended) is silent. A ``fn`` that is not an async
    function raises :class:`TypeError`, an unknown state
    :class:`StateUnknownError`.
    """
    check_async_fn(fn, "fork")
    if m._disposing:
        return False
    require_task_group(m)
    m._parse1(state)
    if state not in m._active_set:
        m._log(L_OPS, f"[fork:skip] {state} is not active")
        return False
    submit(m, state, fn, args)
    return True


def fork_from_event(m: Machine, event: Event, fn: AsyncFn, args: tuple[Any, ...]) -> bool:
    check_async_fn(fn, "Event.fork")
    if m._disposing:
        return False
    require_task_group(m)
    submit(m, event.state, fn, args)
    return True


def submit(m: Machine, state: str, fn: AsyncFn, args: tuple[Any, ...]) -> None:
    """Run ``fn(*args)`` in the task group, scoped to ``state``'s current tick
    (``""``: to the machine, cancelled by disposal only)."""
    if m._disposing:
        return
    workers = m._workers
    if workers is not None:
        if state:
            i = m._index[state]
            tick = m._ticks[i]
            subs = m._subs
            ctx = subs.state_ctx.get(state) or subs.new_state_ctx(state, tick, m._ctx)
            workers.submit((fn, args, state, i, tick, ctx))
        else:
            workers.submit((fn, args, "", -1, 0, m._ctx))
        return
    ctx_: Ctx = m.new_state_ctx(state) if state else m._ctx
    m._spawn(run_scoped, m, ctx_, fn, args)


async def run_scoped(m: Machine, ctx: Ctx, fn: AsyncFn, args: tuple[Any, ...]) -> None:
    """A job as a task of its own, in its own cancel scope (task groups other than
    a trio nursery or anyio's asyncio one)."""
    with m._scope_cls() as scope:
        if ctx._cancelled:
            scope.cancel()
        else:
            ctx._scopes.add(scope)
        try:
            await fn(*args)
        except Exception as err:
            if m._disposing:
                return
            source = f"task {_report._qualname(fn)}"
            if isinstance(ctx, StateCtx):
                source += f" of state {ctx.state}"
            m._add_err_from(EXCEPTION, err, None, None, source)
        finally:
            ctx._scopes.discard(scope)


def start_async_handler(m: Machine, event: Event, fn: AsyncFn) -> None:
    """Start an ``async def`` final handler as a task scoped to its state (5.6)."""
    workers = m._workers
    state = event.state
    if workers is not None and state and not m._disposing:
        # tied to its state's context only once it waits (see _Workers)
        i = m._index[state]
        workers.submit((fn, (event,), state, i, m._ticks[i], None))
        return
    if m._task_group is None:
        m.add_err(
            NoNurseryError(
                f"async handler {event.name} needs a task group: use"
                " am.open_machine() or Machine.start(nursery)"
            )
        )
        return
    submit(m, event.state, fn, (event,))


# ----- disposal (semantics §10)


def dispose(m: Machine) -> None:
    """Dispose now (Go ``DisposeForce``): cancel every state scope, resolve waiters.

    Allowed inside a handler. Afterwards every mutation returns CANCELED,
    getters return empty values and every ``when*`` is already resolved.
    """
    if m._disposing:
        return
    m._log(L_EVERYTHING, "[end] doDispose")
    m._disposing = True
    for t in m._tracers:
        t.machine_dispose(m._id)
    m._bindings = []
    m._handler_names = frozenset()
    m._finals = ({}, {})
    m._pair_firsts = frozenset()
    m._active = []
    m._active_set = set()
    m._queue.clear()
    m._queue_pending = 0
    m._subs.dispose()
    for fn in m._on_dispose:
        fn(m._id)
    m._ctx.cancel()
    m._disposed = True
    m._disposed_waiter._resolve()


async def dispose_async(m: Machine) -> None:
    """Dispose gracefully (Go ``Dispose``): remove ``Start``, let work settle, dispose."""
    if m._disposing:
        return
    if START in m._schema and START in m._active_set:
        m.remove1(START)
    with anyio.move_on_after(m.dispose_timeout):
        await anyio.lowlevel.checkpoint()
        while m._queue:  # pragma: no cover - the queue drains synchronously
            await anyio.lowlevel.checkpoint()
    m.dispose()


def new_state_ctx(m: Machine, state: str) -> StateCtx:
    """A context valid while ``state`` keeps its current tick (shared, semantics §2.4)."""
    if m._disposing:
        ctx = StateCtx(m._id, state, 0, None)
        ctx.cancel()
        return ctx
    m._parse1(state)
    return m._subs.new_state_ctx(state, m.tick(state), m._ctx)
