"""Structured concurrency: the machine's task group, state-scoped tasks, dispose (semantics §10).

Each state owns a cancel scope through its :class:`StateCtx`: a task forked for
a state (or an ``async def`` final handler) runs inside the scope of the
state's current tick and is cancelled when that tick changes — the state was
deactivated, or a Multi state re-entered — or when the machine is disposed.
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

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
    m._spawn, m._scope_cls, host = _spawner(task_group)
    task_group.start_soon(watch_task_group, m, name=f"am-{m._id[:5]}-watch")
    if host is not None:
        m._host = host
        m._on_dispose.insert(0, lambda _id: host.poke())
        task_group.start_soon(host.run, m, name=f"am-{m._id[:5]}-tasks")


def _spawner(task_group: Any) -> tuple[Callable[..., Any], Callable[[], Any], _AsyncioHost | None]:
    """How the machine starts its state-scoped tasks: ``(start_soon, CancelScope, host)``.

    anyio's ``TaskGroup.start_soon`` wraps every task in a TaskHandle with its
    own cancel scope and event (plus, on asyncio, its task-state bookkeeping), and
    ``anyio.CancelScope()`` looks the backend up on every call: together most of
    the cost of an async handler (issue 6). So on trio the tasks start in the
    task group's own nursery with ``trio.CancelScope`` (same nursery: the same
    structure); on asyncio as plain asyncio tasks owned by an ``_AsyncioHost``
    task in the group. Anything else keeps the task group's ``start_soon``.
    """
    # trio and asyncio are imported by whoever runs their loop: not at our import
    trio = sys.modules.get("trio")
    if trio is not None:
        nursery: Any = task_group
        if not isinstance(nursery, trio.Nursery):
            # anyio's task group on the trio backend keeps its nursery there
            nursery = getattr(task_group, "_nursery", None)
        if isinstance(nursery, trio.Nursery):
            return nursery.start_soon, trio.CancelScope, None
    scope_cls: Callable[[], Any] = type(anyio.CancelScope())
    if type(task_group).__module__ == "anyio._backends._asyncio":
        host = _AsyncioHost(scope_cls)
        return host.spawn, scope_cls, host
    return task_group.start_soon, scope_cls, None


class _AsyncioHost:
    """The machine's state-scoped tasks on asyncio: plain tasks, owned by a host.

    ``run`` is a task of the machine's task group that does for these tasks what
    the group would do: the group cannot end before they did (the host returns
    once the machine is disposed and its tasks finished); cancelling the group
    cancels them (their cancel scopes, so level-triggered, and tasks started
    afterwards start cancelled); a BaseException escaping one (exceptions
    become ``add_err``) cancels the others and is raised in the group.
    """

    __slots__ = ("closing", "error", "event", "loop", "scope_cls", "scopes", "tasks")

    def __init__(self, scope_cls: Callable[[], Any]) -> None:
        import asyncio

        self.loop = asyncio.get_running_loop()
        self.scope_cls = scope_cls
        self.tasks: set[asyncio.Task[Any]] = set()
        self.scopes: set[Any] = set()  # the cancel scopes of the running tasks
        self.closing = False
        self.error: BaseException | None = None
        self.event: anyio.Event | None = None

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        task = self.loop.create_task(fn(*args))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None and self.error is None:
                self.error = exc
        self.poke()

    def poke(self) -> None:
        if self.event is not None:
            self.event.set()

    def _cancel_all(self) -> None:
        self.closing = True
        for scope in list(self.scopes):
            scope.cancel()

    async def _wait(self, done: Callable[[], bool]) -> None:
        while self.error is None and not done():
            self.event = event = anyio.Event()
            await event.wait()

    async def run(self, m: Machine) -> None:
        def settled() -> bool:
            return m._disposed and not self.tasks

        try:
            await self._wait(settled)
        except anyio.get_cancelled_exc_class():
            self._cancel_all()
            with anyio.CancelScope(shield=True):
                await self._wait(settled)
            if self.error is None:
                raise
            # a task's BaseException while the group was being cancelled: it
            # joins the group's other errors (as a trio nursery would keep it)
        if self.error is not None:
            self._cancel_all()
            with anyio.CancelScope(shield=True):
                while self.tasks:
                    self.event = event = anyio.Event()
                    await event.wait()
            raise self.error


async def watch_task_group(m: Machine) -> None:
    try:
        await m._disposed_waiter.wait()
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            if m._disposing:
                raise
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
        raise


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
    ctx = m.new_state_ctx(state)
    if ctx.expired:
        return False
    m._spawn(run_scoped, m, ctx, fn, args)
    return True


def fork_from_event(m: Machine, event: Event, fn: AsyncFn, args: tuple[Any, ...]) -> bool:
    check_async_fn(fn, "Event.fork")
    if m._disposing:
        return False
    require_task_group(m)
    ctx: Ctx = m.new_state_ctx(event.state) if event.state else m._ctx
    if ctx.cancelled:
        return False
    m._spawn(run_scoped, m, ctx, fn, args)
    return True


async def run_scoped(m: Machine, ctx: Ctx, fn: AsyncFn, args: tuple[Any, ...]) -> None:
    # ``with ctx.cancel_scope():`` written out, with the machine's scope class
    # (no contextlib generator, no backend lookup: this runs per async handler)
    scope = m._scope_cls()
    host = m._host
    with scope:
        if ctx._cancelled or (host is not None and host.closing):
            scope.cancel()
        else:
            ctx._scopes.add(scope)
        if host is not None:
            host.scopes.add(scope)
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
            if host is not None:
                host.scopes.discard(scope)


def start_async_handler(m: Machine, event: Event, fn: AsyncFn) -> None:
    """Start an ``async def`` final handler as a task scoped to its state (5.6)."""
    tg = m._task_group
    if tg is None:
        m.add_err(
            NoNurseryError(
                f"async handler {event.name} needs a task group: use"
                " am.open_machine() or Machine.start(nursery)"
            )
        )
        return
    state = event.state
    ctx: Ctx
    if not state:
        ctx = m._ctx
    else:
        # new_state_ctx() without its checks: the event's state is a known one
        # and the machine is not disposed (handle() checked) - unless a handler
        # of an earlier binding disposed it, then the checked path
        i = m._index.get(state)
        existing = m._subs.state_ctx.get(state)
        if existing is not None and not m._disposing:
            ctx = existing
        elif i is not None and not m._disposing:
            ctx = m._subs.new_state_ctx(state, m._ticks[i], m._ctx)
        else:
            ctx = m.new_state_ctx(state)
    m._spawn(run_scoped, m, ctx, fn, (event,))


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
