"""Handler dispatch, applying and reverting states, bindings and tracers (semantics §2.1, 5).

These functions are bound as Machine methods (``Machine._handle = dispatch.handle``),
so the hot path pays no wrapper call.
"""

from __future__ import annotations

import os
import time as _time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import report as _report
from .args import AException, ExceptionArgsPanic, pass_args
from .errors import (
    ArgumentError,
    AutoLivelockError,
    HandlerTimeoutError,
    TracerError,
    format_trace,
)
from .handlers import UNTIMED, Binding, Finals, sanitize_binding_id
from .logging import L_CHANGES, L_DECISIONS, L_EVERYTHING, L_OPS, report_warning
from .mutation import ADD as _ADD
from .mutation import CANCELED, EXECUTED, Mutation, MutSource, Result
from .schema import EXCEPTION
from .tracing import Tracer
from .transition import Event, Transition

if TYPE_CHECKING:
    from .machine import Machine

_INTERNAL_ERRORS_MAX = 10


def apply(m: Machine, tx: Transition, called: Sequence[str], targets: Sequence[str]) -> None:
    """Set the active list and tick the clocks (Go ``setActiveStates``)."""
    if m._disposing:
        return
    previous = m._active_set
    new_set = set(targets)
    removed = [s for s in m._active if s not in new_set]
    ticks = m._ticks
    old: dict[int, int] | None = None
    if m._ticks_pinned:
        # copy-on-write: an escaped transition reads this list (its time
        # before / after), so it is never mutated again
        ticks = ticks.copy()
        m._ticks = ticks
        m._ticks_pinned = tx._escaped
    elif ticks is tx._t0:
        # in place: keep the ticks overwritten for tx's time_before
        old = tx._old_ticks()
        if old is None:
            old = tx._old = {}
    index = m._index
    changes = tx._apply_changes
    multi = m._resolver.multi
    log = m._log_level >= L_CHANGES
    new_states: list[str] = []
    no_change: list[str] = []
    touched: list[tuple[int, int]] = []
    for s in targets:
        if s not in previous:
            touched.append((index[s], 1))
            new_states.append(s)
        else:
            if log:
                no_change.append(s)
            if s in multi and s in called:
                touched.append((index[s], 2))
                new_states.append(s)
    for s in removed:
        touched.append((index[s], 1))
    total = 0
    for i, delta in touched:
        tick = ticks[i]
        if old is not None and i not in old:
            old[i] = tick
        tick += delta
        ticks[i] = tick
        changes[i] = tick
        total += delta
    m._tick_sum += total
    m._active = list(targets)
    m._active_set = new_set
    if log:
        msg = ""
        if new_states:
            msg += " +" + " +".join(new_states)
        if removed:
            msg += " -" + " -".join(removed)
        if no_change and m._log_level > L_DECISIONS:
            msg += " " + " ".join(no_change)
        if msg:
            label = "auto_" if tx.mutation.is_auto else "state"
            m._log(
                L_CHANGES,
                f"[{label}]{msg}{m._log_args(tx.mutation.args)}",
            )


def revert(m: Machine, tx: Transition) -> None:
    """Undo the states whose final handlers did not run (semantics §5.6)."""
    active = list(m._active)
    found = False
    for s in (*tx.exits, *tx.enters):
        if tx._latest_to == s:
            found = True
        if not found:
            continue
        if tx._latest_is_enter:
            if s in active:
                active.remove(s)
        else:
            active.append(s)
    m._log(L_OPS, f"[recover] partial final states as ({' '.join(active)})")
    m._apply(tx, tx.mutation.called, active)


def handle(m: Machine, name: str, is_final: bool, is_enter: bool, is_self: bool) -> Result:
    """Call ``name`` on every binding, in bind order; the first rejection cancels.

    Hot: every dispatched event of every transition comes here, so the logging,
    tracer and timeout branches are each behind one cheap test.
    """
    m._handler_called = False
    level = m._log_level
    if name not in m._handler_names and level < L_EVERYTHING:
        # fast path: no binding defines this handler (most events)
        subs = m._subs
        if subs.when_args or subs._expired_args:
            assert m._tx is not None
            subs.process_args(name, m._tx.mutation.args)
        return CANCELED if m._disposing else EXECUTED
    if m._disposing:
        return CANCELED
    tx = m._tx
    assert tx is not None
    tx._latest_is_enter = is_enter
    tx._latest_is_final = is_final
    args = tx.mutation.args
    # the list is mutated in place by tracer_bind / tracer_detach, never replaced
    tracers = m._tracers
    res = EXECUTED
    event: Event | None = None
    # a raising handler ends its event: later bindings are not called for it,
    # also when recover() kept the transition valid (it called Exception)
    failed = False
    for b in m._bindings:
        if level >= L_EVERYTHING:
            m._log(L_EVERYTHING, f"[handle:{b.id}] {name}")
        fn = b.table.get(name)
        if fn is None:
            continue
        m._handler_called = True
        if event is None:
            event = Event(name, m, tx, args, b.event_state.get(name, ""))
        if failed or m._tx is not tx or tx.is_completed or not tx.is_accepted:
            m._log(L_DECISIONS, f"[handler:invalid] {name}")
            if not is_final:
                res = CANCELED
                break
            continue
        if level >= L_OPS:
            m._log(L_OPS, f"[handler:{b.num}] {name}")
        if tracers:
            for t in tracers:
                t.handler_start(tx, b.id, name)
        if name in b.async_names:
            # semantics §5.6 (port): a task scoped to the state, started after the call
            m._start_async_handler(event, fn)
            if tracers:
                for t in tracers:
                    t.handler_end(tx, b.id, name)
            continue
        timeout = m.handler_timeout
        started = _time.perf_counter() if timeout is not None else 0.0
        panicked = False
        m._current_handler = name
        try:
            ret = fn(event)
        except Exception as err:
            m._current_handler = ""
            if not m.panic_to_exception:
                raise
            panicked = failed = True
            ret = False
            m._recover(err, event)
        finally:
            m._current_handler = ""
        timed_out = (
            timeout is not None
            and not panicked
            and _time.perf_counter() - started > timeout
            # library handlers of bounded cost (pipes): time spent in them is the
            # loop's or the OS's, and reverting for it would lose their deliveries
            and not getattr(fn, UNTIMED, False)
        )
        if tracers:
            for t in tracers:
                t.handler_end(tx, b.id, name)
        if timed_out:
            m._handler_timeout(tx, b, name, _time.perf_counter() - started)
            res = CANCELED
            break
        if level >= L_EVERYTHING:
            m._log(L_EVERYTHING, f"[handler:end] {name} from {b.id}")
        if not is_final and (ret is False or panicked):
            res = CANCELED
            break
    else:
        subs = m._subs
        if subs.when_args or subs._expired_args:
            subs.process_args(name, args)
    if m._panic_caught:
        res = CANCELED
        m._panic_caught = False
    if res is CANCELED and not is_final and level >= L_OPS:
        label = "cancel:self" if is_self else "cancel"
        m._log(L_OPS, f"[{label}] ({' '.join(tx.target_states)}) by {name}")
    return res


def handler_timeout(m: Machine, tx: Transition, b: Binding, name: str, elapsed: float) -> None:
    # a timed-out handler cancels (never a partial rejection of an auto state)
    tx.is_accepted = False
    m._log(L_OPS, f"[cancel] ({' '.join(tx.target_states)}) by timeout")
    m._log(L_DECISIONS, f"[handler:timeout]: {name} from {b.id}")
    fn = b.table.get(name)
    pyname = _report._qualname(fn) if fn is not None else name
    limit = m.handler_timeout or 0.0
    err = HandlerTimeoutError(
        f"handler timeout: {name} from {b.id}: {pyname} took {elapsed:.3f}s, limit {limit:g}s"
    )
    err.handler = pyname
    err.elapsed = elapsed
    err.limit = limit
    m._internal_errors.append(err)
    del m._internal_errors[:-_INTERNAL_ERRORS_MAX]
    for t in m._tracers:
        t.internal_error(m, err)
    state = b.event_state.get(name, "")
    _report.report_timeout(m, err, pyname, state, elapsed, limit, tx._latest_is_final)


def recover(m: Machine, err: Exception, event: Event) -> None:
    """A handler raised: store the error, revert, prepend Exception (semantics §5.6)."""
    m._panic_caught = True
    tx = m._tx
    assert tx is not None
    if EXCEPTION in tx.called_set:
        # no second error, but the transition is canceled all the same
        tx.is_accepted = False
        return
    m._log(L_OPS, "[recover] handling panic...")
    m._err = err
    # the error's args hold the transition (ExceptionArgsPanic)
    tx._escape()
    source = _report.handler_name(m, event, err)
    if tx._latest_is_final:
        m._revert(tx)
    m._log(L_OPS, f"[cancel] ({' '.join(tx.target_states)}) by recover")
    tx.is_accepted = False
    tx.is_completed = True
    trace = format_trace(err)
    exc = AException(
        err=err,
        err_trace=trace,
        panic=ExceptionArgsPanic(list(tx.mutation.called), list(tx.states_before), tx),
        fn=source,
    )
    args = pass_args(exc)
    if m.report_errors:
        _report.watch(m, exc, source, event.state or " ".join(tx.mutation.called))
    mut = Mutation(_ADD, [EXCEPTION], args, source=MutSource(event.machine_id, event.id, 0))
    if tx.mutation.is_auto:
        # the Exception mutation triggers the auto states again (semantics §6.1); count
        # the same auto attempt failing the same way from the same active
        # states, for the livelock guard (Transition._auto)
        key = (tuple(tx.mutation.called), frozenset(tx._before_set), event.name)
        prev = tx.mutation.auto_chain
        mut.auto_chain = (key, prev[1] + 1 if prev is not None and prev[0] == key else 1)
    m._prepend(mut)


def auto_livelock(m: Machine, tx: Transition, auto: list[str], fails: int) -> None:
    """The livelock guard stopped retrying the auto states: report it."""
    err = AutoLivelockError(
        f"auto livelock: {' '.join(auto)} failed {fails} times in a row with no"
        f" progress (auto_retry_limit={m.auto_retry_limit}) for {m.id}, last error:"
        f" {m._err!r}"
    )
    m._log(L_CHANGES, f"[auto:livelock] {' '.join(auto)} not retried after {fails} failures")
    m._internal_errors.append(err)
    del m._internal_errors[:-_INTERNAL_ERRORS_MAX]
    report_warning("machine %s: %s", m.id, err)
    for t in m._tracers:
        t.internal_error(m, err)


def bind_handlers(m: Machine, handlers: object, *, id: str | None = None) -> str:
    """Bind a handler object, or a ``{method name: callable}`` mapping; returns its id (5.1)."""
    if m._disposing:
        return ""
    if handlers is None or isinstance(handlers, str | int | float | bool):
        raise ArgumentError(f"handlers must be an object with methods, got {handlers!r}")
    first = not m._handlers_ever_bound
    bid = sanitize_binding_id(id) if id else f"anon-{os.urandom(2).hex()}"
    binding = Binding(handlers, bid, m._binding_num)
    binding.compile(m._names, warn=m.strict_schema)
    m._binding_num += 1
    m._bindings = [*m._bindings, binding]
    m._handlers_ever_bound = True
    m._index_handler_names()
    m._log(L_OPS, f"[handlers] bind {binding.num}:{bid}")
    if first and m.is_err() and m._err is not None:
        m.add_err(m._err)
    return bid


def detach_handlers(m: Machine, binding_id: str) -> None:
    """Detach a binding by id; unknown ids raise :class:`ArgumentError`."""
    if m._disposing:
        return
    for b in m._bindings:
        if b.id == binding_id:
            m._bindings = [x for x in m._bindings if x is not b]
            m._index_handler_names()
            m._log(L_OPS, f"[handlers] detach {binding_id}")
            return
    raise ArgumentError(f"handlers not bound: {binding_id}")


def index_handler_names(m: Machine) -> None:
    # every event name some binding defines: dispatch skips the rest cheaply
    names: set[str] = set()
    pair_firsts: set[str] = set()
    for b in m._bindings:
        names.update(b.table)
        pair_firsts.update(first for first, _ in b.pairs)
    m._handler_names = hn = _intern(frozenset(names))
    finals = _FINALS.get(hn)
    m._finals = final_names(hn) if finals is None else finals
    # states that start a state-state handler: step 4 of the negotiation only
    # walks these (it is |before| x |targets| otherwise, semantics §5.3)
    m._pair_firsts = _intern(frozenset(pair_firsts))


_INTERNED: dict[frozenset[str], frozenset[str]] = {}
_FINALS: dict[frozenset[str], Finals] = {}


def _intern(names: frozenset[str]) -> frozenset[str]:
    """One shared object per set of names: machines bound to the same handler
    class share it (memory), and memoised plans check it by identity (speed)."""
    hit = _INTERNED.get(names)
    if hit is None:
        if len(_INTERNED) >= 1024:
            _INTERNED.clear()
            _FINALS.clear()
        _INTERNED[names] = hit = names
    return hit


def final_names(names: frozenset[str]) -> Finals:
    """``({state: state + "End"}, {state: state + "State"})`` for the names in
    ``names``: the plain transition's final handlers, found without building and
    hashing a name per state (``s in ends`` iff ``s + "End" in names``).

    Shared (read-only) by the machines bound to the same names, like ``_intern``.
    """
    hit = _FINALS.get(names)
    if hit is None:
        if len(_FINALS) >= 1024:
            _FINALS.clear()
        ends = {n[:-3]: n for n in names if n.endswith("End")}
        states = {n[:-5]: n for n in names if n.endswith("State")}
        _FINALS[names] = hit = (ends, states)
    return hit


def tracer_bind(m: Machine, tracer: Tracer) -> str:
    """Bind a tracer; returns its id."""
    m._check_tracer(tracer)
    if m._disposing:
        return ""
    m._tracers.append(tracer)
    tid = tracer.tracer_id()
    m._log(L_OPS, f"[tracers] bind {tid}")
    return tid


def tracer_detach(m: Machine, tracer_id: str) -> None:
    """Detach a tracer by id (``TracerError`` if not bound)."""
    if m._disposing:
        return
    for i, t in enumerate(m._tracers):
        if t.tracer_id() == tracer_id:
            del m._tracers[i]
            m._log(L_OPS, f"[tracers] detach {tracer_id}")
            return
    raise TracerError(f"tracer not bound: {tracer_id}")
