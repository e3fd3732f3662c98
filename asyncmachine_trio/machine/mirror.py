"""Replacing a machine's clock from outside: the network machine's update (1.18).

A network machine (``am.rpc.NetworkMachine``) is a :class:`Machine` whose
clock is not computed locally but received from its source. :func:`mirror_update`
installs a received clock the way the reference's ``UpdateClock`` does: it
builds a synthetic, already accepted transition (a ``set`` of the new active
states), tells the tracers, runs the *final* handlers only (``<S>State`` for
activated, ``<S>End`` for deactivated states, then ``AnyState``; nothing can be
negotiated about a change that already happened), and resolves subscriptions
and state contexts. No relation is resolved and no tick is computed here: the
ticks are taken as given.

This module lives in the core because it touches the machine's internals; it is
not part of the public API (the network machine wraps it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .clock import is_active_tick
from .errors import SchemaError
from .logging import LogLevel
from .mutation import SET, Mutation
from .schema import State, parse_schema
from .transition import Event, Transition

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["MirrorTransition", "mirror_schema", "mirror_update"]


class MirrorTransition(Transition):
    """The synthetic transition of a received clock (already accepted)."""

    __slots__ = ()


def mirror_update(
    m: Machine,
    ticks: Sequence[int],
    queue_tick: int,
    machine_tick: int,
    *,
    inferred: Sequence[str] = (),
    on_handler_error: Callable[[Exception, Event], Any] | None = None,
) -> MirrorTransition | None:
    """Install ``ticks`` (one per state, in state order) and the two counters.

    Active states are those with odd ticks, plus ``inferred`` (states shown as
    active because an active state requires them, for partially synced
    clocks). Returns the synthetic transition, or None when nothing changed
    (no handler, tracer or subscription runs then). A handler exception goes to
    ``on_handler_error`` (default: stored as ``m.err`` and logged).
    """
    if m._disposing:
        return None
    names = m._names
    if len(ticks) != len(names):
        raise ValueError(f"{len(ticks)} ticks for {len(names)} states")
    old_ticks = m._ticks
    extra = set(inferred)
    new_active = [n for i, n in enumerate(names) if is_active_tick(ticks[i]) or n in extra]
    new_set = set(new_active)
    before_set = m._active_set
    activated = [s for s in new_active if s not in before_set]
    deactivated = [s for s in m._active if s not in new_set]
    ticked = [i for i, t in enumerate(ticks) if t != old_ticks[i]]
    old_qt = m._queue_tick
    if not ticked and not activated and not deactivated:
        if queue_tick == old_qt and machine_tick == m._machine_tick:
            return None
        m._machine_tick = machine_tick
        _set_queue_tick(m, queue_tick)
        return None

    tx = MirrorTransition(m, Mutation(SET, new_active, {}))
    tx.target_states = new_active
    tx.enters = activated
    tx.exits = deactivated
    tx.activated = activated
    tx.deactivated = deactivated
    for t in m._tracers:
        t.transition_init(tx)
    for t in m._tracers:
        t.transition_start(tx)

    m._ticks = list(ticks)
    m._tick_sum = sum(ticks)
    m._active = new_active
    m._active_set = new_set
    m._machine_tick = machine_tick
    tx._after = m._ticks.copy()
    if m._log_level >= LogLevel.CHANGES:
        parts = [f"+{s}" for s in activated] + [f"-{s}" for s in deactivated]
        if parts:
            m._log(LogLevel.CHANGES, f"[state] {' '.join(parts)}")
    if m._subs.state_ctx:
        m._subs.process_state_ctx(activated, deactivated)
    for t in m._tracers:
        t.transition_finals(tx)

    if m._bindings:
        prev_tx = m._tx
        m._tx = tx
        try:
            for s in activated:
                _run_final(m, tx, s + "State", s, on_handler_error)
            for s in deactivated:
                _run_final(m, tx, s + "End", s, on_handler_error)
            _run_final(m, tx, "AnyState", "", on_handler_error)
        finally:
            m._tx = prev_tx
    if m._on_change is not None:
        m._on_change(m, tx.time_before, tx.time_after)
    tx.is_completed = True
    for t in m._tracers:
        t.transition_end(tx)
    for hook in m._end_hooks:
        hook(tx)
    _set_queue_tick(m, queue_tick)
    m._subs.process(activated, deactivated, ticked, names, m.tick, m._queue_tick)
    return tx


def _set_queue_tick(m: Machine, queue_tick: int) -> None:
    subs = m._subs
    if queue_tick < m._queue_tick and subs.when_queue:
        # the source restarted (its queue tick went back): nothing queued
        # before can be waited for any more
        for _tick, waiter in subs.when_queue:
            subs.count -= 1
            waiter._resolve()
        subs.when_queue = []
    m._queue_tick = queue_tick
    if subs.when_queue:
        m._subs.process((), (), (), m._names, m.tick, queue_tick)


def _run_final(
    m: Machine,
    tx: MirrorTransition,
    name: str,
    state: str,
    on_error: Callable[[Exception, Event], Any] | None,
) -> None:
    if name not in m._handler_names:
        return
    for b in m._bindings:
        fn = b.table.get(name)
        if fn is None:
            continue
        event = Event(name, m, tx, tx.mutation.args, b.event_state.get(name, state))
        if m._log_level >= LogLevel.OPS:
            m._log(LogLevel.OPS, f"[handler:{b.num}] {name}")
        for t in m._tracers:
            t.handler_start(tx, b.id, name)
        try:
            if name in b.async_names:
                m._start_async_handler(event, fn)
            else:
                fn(event)
        except Exception as err:
            if on_error is not None:
                on_error(err, event)
            else:
                m._err = err
                m._log(LogLevel.OPS, f"[error:handler] {name}: {err!r}")
        finally:
            for t in m._tracers:
                t.handler_end(tx, b.id, name)


def mirror_schema(m: Machine, schema: dict[str, State], names: Sequence[str]) -> None:
    """Replace the schema and the state order with a source's (may shrink or reorder).

    Ticks are kept by name (new states start at 0); active states follow the
    kept ticks. Handlers are recompiled and tracers get ``schema_change``.
    No handler runs: call :func:`mirror_update` next with the source's clock.
    """
    if m._tx is not None or m._draining:
        raise SchemaError("schema error: cannot replace the schema during a transition")
    names = list(names)
    if sorted(names) != sorted(schema) or len(set(names)) != len(names):
        raise SchemaError("schema error: state names do not match the schema")
    parsed, err = parse_schema(schema)
    if err is not None:
        raise err
    old_schema = m._schema
    old = dict(zip(m._names, m._ticks, strict=True))
    m._schema = parsed
    m._names = names
    m._index = {n: i for i, n in enumerate(names)}
    m._ticks = [old.get(n, 0) for n in names]
    m._tick_sum = sum(m._ticks)
    m._active = [n for n, t in zip(names, m._ticks, strict=True) if is_active_tick(t)]
    m._active_set = set(m._active)
    m._verified = True
    m._resolver.new_schema(parsed, names)
    for b in m._bindings:
        b.compile(names)
    m._index_handler_names()
    for t in m._tracers:
        t.schema_change(m, old_schema)
    for hook in m._schema_hooks:
        hook(m)
