"""Contexts, waiters and the subscription index (semantics §2.4, 8).

Subscriptions are indexed by state, so a transition only looks at the waiters
of the states it activated, deactivated or ticked; cancelled contexts report
themselves, so no list of waiters is ever scanned as a whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .errors import DisposedError
from .logging import L_OPS

if TYPE_CHECKING:
    from .machine import Machine
    from .transition import Transition

__all__ = ["Ctx", "StateCtx", "Subscriptions", "Waiter"]


class Ctx:
    """A cancellable token; children are cancelled with their parent.

    ``with ctx.cancel_scope():`` runs a block in an anyio ``CancelScope`` that
    is cancelled when the context is.
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_cancelled",
        "_children",
        "_scopes",
        "parent",
    )

    def __init__(self, parent: Ctx | None = None) -> None:
        self.parent: Ctx | None = parent
        self._cancelled = False
        # insertion-ordered; a child leaves when it is cancelled (no growth
        # in long-lived parents such as the machine's context)
        self._children: dict[Ctx, None] = {}
        self._scopes: set[anyio.CancelScope] = set()
        self._callbacks: list[Callable[[], Any]] = []
        if parent is not None:
            if parent._cancelled:
                self._cancelled = True
            else:
                parent._children[self] = None

    @property
    def cancelled(self) -> bool:
        """True once cancelled (directly or through a parent)."""
        return self._cancelled

    def cancel(self) -> None:
        """Cancel this context, its scopes, callbacks and children (idempotent)."""
        if self._cancelled:
            return
        self._cancelled = True
        parent = self.parent
        if parent is not None:
            parent._children.pop(self, None)
        if self._scopes:
            for scope in list(self._scopes):
                scope.cancel()
        if self._callbacks:
            callbacks, self._callbacks = self._callbacks, []
            for fn in callbacks:
                fn()
        if self._children:
            children, self._children = self._children, {}
            for child in children:
                child.cancel()

    def on_cancel(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` when cancelled (at once if already cancelled)."""
        if self._cancelled:
            fn()
        else:
            self._callbacks.append(fn)

    @contextlib.contextmanager
    def cancel_scope(self) -> Generator[anyio.CancelScope, None, None]:
        """An anyio ``CancelScope`` cancelled together with this context."""
        with anyio.CancelScope() as scope:
            if self._cancelled:
                scope.cancel()
            else:
                self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} cancelled={self._cancelled}>"


class StateCtx(Ctx):
    """A context bound to one tick of a state: expired when that tick changes."""

    __slots__ = ("machine_id", "state", "tick")

    def __init__(self, machine_id: str, state: str, tick: int, parent: Ctx | None) -> None:
        super().__init__(parent)
        self.machine_id: str = machine_id
        self.state: str = state
        self.tick: int = tick

    @property
    def expired(self) -> bool:
        """True once the state's tick changed (or the machine was disposed)."""
        return self._cancelled

    def __repr__(self) -> str:
        return f"<StateCtx {self.state}@{self.tick} expired={self._cancelled}>"


class Waiter:
    """A one-shot subscription: awaitable, ``is_set()``, closable (semantics §8).

    Registered synchronously by the ``when*`` methods; awaiting needs a running
    trio or asyncio loop. A shared (reused) waiter is unregistered only when
    every holder closed it.

    A waiter resolved by the machine's disposal (or made by a ``when*`` call on
    a disposed machine) is set too, but awaiting it raises
    :class:`DisposedError`: what it waited for never happened.

    A ``when_queue`` waiter of a mutation the queue dropped (an exception
    escaped a handler) resolves with ``canceled`` true.
    """

    __slots__ = ("_canceled", "_disposed", "_event", "_holders", "_on_close", "_set", "kind")

    def __init__(self, kind: str = "") -> None:
        self.kind: str = kind
        self._set = False
        self._event: anyio.Event | None = None
        self._holders = 1
        self._on_close: Callable[[Waiter], None] | None = None
        # the id of the machine whose disposal resolved this waiter
        self._disposed: str | None = None
        self._canceled = False

    def is_set(self) -> bool:
        """True once resolved (by what it waited for, or by disposal)."""
        return self._set

    @property
    def disposed(self) -> bool:
        """True if disposal of the machine resolved it (``await`` raises)."""
        return self._disposed is not None

    @property
    def canceled(self) -> bool:
        """True if it waited for a queued mutation that was dropped, not processed."""
        return self._canceled

    def _resolve(self) -> None:
        if self._set:
            return
        self._set = True
        self._on_close = None
        if self._event is not None:
            self._event.set()

    def _dispose(self, machine_id: str) -> None:
        if self._set:
            return
        self._disposed = machine_id
        self._resolve()

    async def wait(self) -> None:
        """Wait until resolved; :class:`DisposedError` if disposal resolved it."""
        if self._set:
            await anyio.lowlevel.checkpoint()
        else:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
        if self._disposed is not None:
            raise DisposedError(
                f"{self.kind or 'waiter'}: machine {self._disposed} was disposed"
                " before the awaited change happened"
            )

    def __await__(self) -> Generator[Any, None, None]:
        return self.wait().__await__()

    def close(self) -> None:
        """Drop this holder's interest; the last holder unregisters the waiter."""
        if self._set:
            return
        self._holders -= 1
        if self._holders <= 0 and self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._disposed is not None:
            return f"<Waiter {self.kind} disposed>"
        return f"<Waiter {self.kind} set={self._set}>"


def _resolved(kind: str) -> Waiter:
    w = Waiter(kind)
    w._set = True
    return w


class _When:
    __slots__ = ("ctx", "matched", "negation", "states", "total", "waiter")

    def __init__(
        self, waiter: Waiter, states: dict[str, bool], negation: bool, ctx: Ctx | None
    ) -> None:
        self.waiter = waiter
        self.states = states
        self.negation = negation
        self.ctx = ctx
        self.total = len(states)
        if negation:
            self.matched = sum(1 for v in states.values() if not v)
        else:
            self.matched = sum(1 for v in states.values() if v)


class _WhenTime:
    __slots__ = ("completed", "ctx", "index", "matched", "times", "total", "waiter")

    def __init__(self, waiter: Waiter, index: dict[str, int], times: list[int]) -> None:
        self.waiter = waiter
        self.index = index
        self.times = times
        self.completed: dict[str, bool] = {}
        self.matched = 0
        self.total = len(index)
        self.ctx: Ctx | None = None


class _WhenArgs:
    __slots__ = ("args", "ctx", "handler", "waiter")

    def __init__(self, waiter: Waiter, handler: str, args: dict[str, Any], ctx: Ctx | None) -> None:
        self.waiter = waiter
        self.handler = handler
        self.args = args
        self.ctx = ctx


class _WhenQuery:
    __slots__ = ("ctx", "fn", "waiter")

    def __init__(
        self, waiter: Waiter, fn: Callable[[dict[str, int]], bool], ctx: Ctx | None
    ) -> None:
        self.waiter = waiter
        self.fn = fn
        self.ctx = ctx


def _args_match(args: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    for k, v in want.items():
        if k not in args:
            return False
        try:
            if args[k] != v:
                return False
        except Exception:
            return False
    return True


class Subscriptions:
    """The waiters of one machine, indexed by state (semantics §8)."""

    def __init__(self, mach: Machine) -> None:
        self._m = mach
        self.state_ctx: dict[str, StateCtx] = {}
        self.when: dict[str, list[_When]] = {}
        self.when_time: dict[str, list[_WhenTime]] = {}
        self.when_args: dict[str, list[_WhenArgs]] = {}
        self.when_query: list[_WhenQuery] = []
        self.when_queue: list[tuple[int, Waiter]] = []
        self.when_queue_ends: list[Waiter] = []
        # subscriptions whose ctx was cancelled, resolved at the next evaluation
        self._expired: list[_When | _WhenTime | _WhenQuery] = []
        self._expired_args: list[_WhenArgs] = []
        self.count: int = 0

    # ----- registration

    def new_state_ctx(self, state: str, tick: int, parent: Ctx | None) -> StateCtx:
        ctx = self.state_ctx.get(state)
        if ctx is not None:
            return ctx
        m = self._m
        ctx = StateCtx(m._id, state, tick, parent)
        self.state_ctx[state] = ctx
        if m._log_level >= L_OPS:
            m._log(L_OPS, f"[ctx:new] {state}")
        return ctx

    def _track_ctx(self, sub: _When | _WhenTime | _WhenQuery, ctx: Ctx | None) -> None:
        if ctx is not None:
            ctx.on_cancel(lambda: self._expired.append(sub))

    def add_when(
        self,
        states: Sequence[str],
        active: Callable[[str], bool],
        negation: bool,
        ctx: Ctx | None,
    ) -> Waiter:
        kind = "whenNot" if negation else "when"
        if ctx is not None and ctx.cancelled:
            return _resolved(kind)
        first = self.when.get(states[0])
        if first:
            want = set(states)
            for sub in first:
                if sub.negation == negation and sub.ctx is ctx and set(sub.states) == want:
                    sub.waiter._holders += 1
                    return sub.waiter
        waiter = Waiter(kind)
        sub = _When(waiter, {s: active(s) for s in states}, negation, ctx)
        self._m._log(L_OPS, f"[{kind}:new] {' '.join(states)}")
        for s in sub.states:
            self.when.setdefault(s, []).append(sub)
        self._track_ctx(sub, ctx)
        waiter._on_close = lambda _w: self._gc_when(sub)
        self.count += 1
        return waiter

    def add_when_time(
        self,
        states: Sequence[str],
        times: Sequence[int],
        tick: Callable[[str], int],
        ctx: Ctx | None,
    ) -> Waiter:
        index = {s: i for i, s in enumerate(states)}
        first = self.when_time.get(states[0])
        if first:
            for sub in first:
                if sub.times == list(times) and sub.index == index and sub.ctx is ctx:
                    sub.waiter._holders += 1
                    return sub.waiter
        if all(tick(s) >= times[i] for i, s in enumerate(states)) or (
            ctx is not None and ctx.cancelled
        ):
            return _resolved("whenTime")
        waiter = Waiter("whenTime")
        sub = _WhenTime(waiter, index, list(times))
        for s, i in index.items():
            done = tick(s) >= times[i]
            sub.completed[s] = done
            if done:
                sub.matched += 1
        sub.ctx = ctx
        self._m._log(
            L_OPS,
            f"[whenTime:new] {','.join(states)} {' '.join(str(t) for t in times)}",
        )
        for s in index:
            self.when_time.setdefault(s, []).append(sub)
        self._track_ctx(sub, ctx)
        waiter._on_close = lambda _w: self._gc_when_time(sub)
        self.count += 1
        return waiter

    def add_when_args(self, state: str, args: Mapping[str, Any], ctx: Ctx | None) -> Waiter:
        if ctx is not None and ctx.cancelled:
            return _resolved("whenArgs")
        handler = state + "State"
        self._m._log(L_OPS, f"[whenArgs:new] {state} ({','.join(args)})")
        want = dict(args)
        for sub in self.when_args.get(handler, ()):
            # port: reuse only for equal args and the same context (semantics §14 #17)
            if sub.ctx is ctx and sub.args == want:
                sub.waiter._holders += 1
                return sub.waiter
        waiter = Waiter("whenArgs")
        sub = _WhenArgs(waiter, handler, want, ctx)
        self.when_args.setdefault(handler, []).append(sub)
        if ctx is not None:
            ctx.on_cancel(lambda: self._expired_args.append(sub))
        waiter._on_close = lambda _w: self._gc_when_args(sub)
        self.count += 1
        return waiter

    def add_when_query(self, fn: Callable[[dict[str, int]], bool], ctx: Ctx | None) -> Waiter:
        if ctx is not None and ctx.cancelled:
            return _resolved("whenQuery")
        waiter = Waiter("whenQuery")
        sub = _WhenQuery(waiter, fn, ctx)
        self._m._log(L_OPS, f"[whenQuery:new] {len(self.when_query)}")
        self.when_query.append(sub)
        self._track_ctx(sub, ctx)
        waiter._on_close = lambda _w: self._gc_when_query(sub)
        self.count += 1
        return waiter

    def add_when_queue(self, tick: int) -> Waiter:
        waiter = Waiter("whenQueue")
        self._m._log(L_OPS, f"[whenQueue:new] {tick}")
        entry = (tick, waiter)
        self.when_queue.append(entry)
        waiter._on_close = lambda _w: self._remove(self.when_queue, entry)
        self.count += 1
        return waiter

    def add_when_queue_ends(self) -> Waiter:
        waiter = Waiter("whenQueueEnds")
        self.when_queue_ends.append(waiter)
        waiter._on_close = lambda _w: self._remove(self.when_queue_ends, waiter)
        self.count += 1
        return waiter

    # ----- garbage collection

    def _remove(self, lst: list[Any], item: Any) -> None:
        try:
            lst.remove(item)
            self.count -= 1
        except ValueError:
            pass

    def _gc_when(self, sub: _When) -> None:
        found = False
        for s in sub.states:
            lst = self.when.get(s)
            if lst is not None and sub in lst:
                found = True
                lst.remove(sub)
                if not lst:
                    del self.when[s]
        if found:
            self.count -= 1

    def _gc_when_time(self, sub: _WhenTime) -> None:
        found = False
        for s in sub.index:
            lst = self.when_time.get(s)
            if lst is not None and sub in lst:
                found = True
                lst.remove(sub)
                if not lst:
                    del self.when_time[s]
        if found:
            self.count -= 1

    def _gc_when_args(self, sub: _WhenArgs) -> None:
        lst = self.when_args.get(sub.handler)
        if lst is not None and sub in lst:
            lst.remove(sub)
            self.count -= 1
            if not lst:
                del self.when_args[sub.handler]

    def _gc_when_query(self, sub: _WhenQuery) -> None:
        self._remove(self.when_query, sub)

    # ----- processing (after an accepted transition, semantics §8)

    def process_state_ctx(self, activated: Iterable[str], deactivated: Iterable[str]) -> None:
        """Cancel the contexts of states whose tick changed (semantics §2.4)."""
        state_ctx = self.state_ctx
        if not state_ctx:
            return
        m = self._m
        for group in (activated, deactivated):
            for s in group:
                ctx = state_ctx.pop(s, None)
                if ctx is not None:
                    if m._log_level >= L_OPS:
                        m._log(L_OPS, f"[ctx:match] {s}")
                    ctx.cancel()

    def _process_expired(self) -> None:
        expired, self._expired = self._expired, []
        for sub in expired:
            if sub.waiter.is_set():
                continue
            if isinstance(sub, _When):
                self._gc_when(sub)
                self._log_when_match(sub)
            elif isinstance(sub, _WhenTime):
                self._gc_when_time(sub)
                self._log_when_time_match(sub)
            else:
                self._log_when_query_match(sub)
                self._gc_when_query(sub)
            sub.waiter._resolve()

    def _log_when_time_match(self, sub: _WhenTime) -> None:
        m = self._m
        if m._log_level >= L_OPS:
            times = " ".join(str(t) for t in sub.times)
            m._log(L_OPS, f"[whenTime:match] {' '.join(sub.index)} [{times}]")

    def _log_when_args_match(self, sub: _WhenArgs) -> None:
        m = self._m
        if m._log_level >= L_OPS:
            state = sub.handler.removesuffix("State")
            m._log(L_OPS, f"[whenArgs:match] {state} ({','.join(sub.args)})")

    def _log_when_query_match(self, sub: _WhenQuery) -> None:
        m = self._m
        if m._log_level >= L_OPS and sub in self.when_query:
            m._log(L_OPS, f"[whenQuery:match] {self.when_query.index(sub)}")

    def _log_when_match(self, sub: _When) -> None:
        m = self._m
        if m._log_level >= L_OPS:
            kind = "whenNot" if sub.negation else "when"
            m._log(L_OPS, f"[{kind}:match] {' '.join(sub.states)}")

    def concerns(self, tx: Transition) -> bool:
        """Could ``process`` resolve anything after ``tx``? (a cheap pre-check)

        Waiters on unrelated states are the common case (issue 6: 1000 pending
        ``when1`` must not slow a toggle down): only ``when`` is indexed by state
        here; any other kind of subscription takes the full ``process``.
        """
        if self._expired or self.when_time or self.when_queue or self.when_query:
            return True
        when = self.when
        if not when:
            return False
        keys = when.keys()
        return not (keys.isdisjoint(tx.activated) and keys.isdisjoint(tx.deactivated))

    def process(
        self,
        activated: Sequence[str],
        deactivated: Sequence[str],
        ticked: Iterable[int],
        names: Sequence[str],
        clock: Callable[[str], int],
        queue_tick: int,
    ) -> None:
        """Resolve what an accepted transition satisfied (semantics §8 order).

        ``ticked`` holds the indexes (into ``names``) of the states whose tick
        changed; only the subscriptions indexed under touched states are visited.
        """
        if self._expired:
            self._process_expired()
        when = self.when
        if when:
            # update every touched subscription first, then resolve: the
            # reference checks between updates, so When(A, B) resolved when B
            # activated and A deactivated in the same transition (fixed here)
            touched: dict[int, _When] | None = None
            for group, on in ((activated, True), (deactivated, False)):
                for s in group:
                    subs = when.get(s)
                    if not subs:
                        continue
                    if touched is None:
                        touched = {}
                    for sub in subs:
                        if sub.states[s] != on:
                            if sub.negation:
                                sub.matched += -1 if on else 1
                            else:
                                sub.matched += 1 if on else -1
                            sub.states[s] = on
                        touched[id(sub)] = sub
            for sub in touched.values() if touched is not None else ():
                if sub.matched >= sub.total:
                    self._gc_when(sub)
                    self._log_when_match(sub)
                    sub.waiter._resolve()
        if self.when_time:
            for i in ticked:
                s = names[i]
                tsubs = self.when_time.get(s)
                if not tsubs:
                    continue
                now = clock(s)
                for tsub in list(tsubs):
                    if not tsub.completed[s] and now >= tsub.times[tsub.index[s]]:
                        tsub.matched += 1
                        tsub.completed[s] = True
                    if tsub.matched < tsub.total:
                        continue
                    self._gc_when_time(tsub)
                    self._log_when_time_match(tsub)
                    tsub.waiter._resolve()
        if self.when_queue:
            self.process_when_queue(queue_tick)
        if self.when_query:
            snapshot = self._m.clock()
            for qsub in list(self.when_query):
                if qsub.fn(snapshot):
                    self._log_when_query_match(qsub)
                    self._gc_when_query(qsub)
                    qsub.waiter._resolve()

    def process_when_queue(self, queue_tick: int) -> None:
        """Resolve the ``when_queue`` waiters of ticks up to ``queue_tick``."""
        keep: list[tuple[int, Waiter]] = []
        for entry in self.when_queue:
            if entry[0] <= queue_tick:
                self._m._log(L_OPS, f"[whenQueue:match] {entry[0]}")
                self.count -= 1
                entry[1]._resolve()
            else:
                keep.append(entry)
        self.when_queue = keep

    def process_args(self, name: str, args: Mapping[str, Any]) -> None:
        """Resolve ``when_args`` waiters for a dispatched ``<State>State`` event."""
        if self._expired_args:
            expired, self._expired_args = self._expired_args, []
            for sub in expired:
                if not sub.waiter.is_set():
                    self._gc_when_args(sub)
                    self._log_when_args_match(sub)
                    sub.waiter._resolve()
        subs = self.when_args.get(name)
        if not subs:
            return
        for sub in list(subs):
            if _args_match(args, sub.args):
                self._gc_when_args(sub)
                self._log_when_args_match(sub)
                sub.waiter._resolve()

    def process_queue_ends(self) -> None:
        """Resolve every ``when_queue_ends`` waiter (a drain finished)."""
        if self.when_queue_ends:
            waiters, self.when_queue_ends = self.when_queue_ends, []
            self.count -= len(waiters)
            for w in waiters:
                w._resolve()

    def dispose(self) -> None:
        """Cancel every state context and resolve every waiter."""
        ctxs, self.state_ctx = self.state_ctx, {}
        for ctx in ctxs.values():
            ctx.cancel()
        waiters: list[Waiter] = []
        for subs in self.when.values():
            waiters.extend(s.waiter for s in subs)
        for tsubs in self.when_time.values():
            waiters.extend(s.waiter for s in tsubs)
        for asubs in self.when_args.values():
            waiters.extend(s.waiter for s in asubs)
        waiters.extend(s.waiter for s in self.when_query)
        waiters.extend(w for _, w in self.when_queue)
        waiters.extend(self.when_queue_ends)
        self.when.clear()
        self.when_time.clear()
        self.when_args.clear()
        self.when_query.clear()
        self.when_queue.clear()
        self.when_queue_ends.clear()
        self._expired.clear()
        self._expired_args.clear()
        self.count = 0
        mid = self._m._id
        for w in waiters:
            w._dispose(mid)
