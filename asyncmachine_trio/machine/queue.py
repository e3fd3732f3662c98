"""The mutation queue: guards, de-duplication, prepending and the drain loop (semantics §3).

Bound as Machine methods; ``drain`` is the machine's main loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .args import ACheck, parse_args
from .errors import (
    ArgumentError,
    NestedEvalError,
)
from .logging import L_CHANGES, L_EVERYTHING, L_OPS, report_warning
from .mutation import ADD as _ADD
from .mutation import (
    CANCELED,
    EXECUTED,
    QUEUED,
    Mutation,
    MutationType,
    MutSource,
    Position,
    Result,
)
from .mutation import EVAL as _EVAL
from .mutation import REMOVE as _REMOVE
from .names import StateNames
from .schema import EXCEPTION
from .transition import Event, Transition

if TYPE_CHECKING:
    from .machine import Machine

_INTERNAL_ERRORS_MAX = 10


def add(
    m: Machine, called: list[str], args: Mapping[str, Any] | None, event: Event | None
) -> Result:
    if len(m._queue) >= m.queue_limit and (
        event is not None or EXCEPTION not in called or EXCEPTION in m._active_set
    ):
        return m._queue_full(called)
    return m._mutate(_ADD, called, m._check_args(args), event)


def remove(
    m: Machine, called: list[str], args: Mapping[str, Any] | None, event: Event | None
) -> Result:
    if len(m._queue) >= m.queue_limit and (
        event is not None or EXCEPTION not in called or EXCEPTION not in m._active_set
    ):
        return m._queue_full(called)
    # semantics §3.3 step 2: inside a transition, removing inactive states is a no-op
    if not m._queue and m._tx is not None:
        active = m._active_set
        if not any(s in active for s in called):
            return EXECUTED
    return m._mutate(_REMOVE, called, m._check_args(args), event)


def queue_full(m: Machine, called: list[str]) -> Result:
    m._log(
        L_OPS,
        f"[queue:full] {' '.join(called)} (limit {m.queue_limit})",
    )
    return CANCELED


def mutate(
    m: Machine,
    mtype: MutationType,
    called: list[str],
    args: dict[str, Any],
    event: Event | None,
) -> Result:
    if m._loop_thread is not None:
        m._check_thread()
    # semantics §3.3 step 3: drop an identical arg-less mutation already queued
    if not args and m._queue and m._resolver.multi.isdisjoint(called):
        want = set(called)
        for q in m._queue:
            if (
                q.type is mtype
                and not q.is_check
                and not q.args
                and len(q.called) == len(want)
                and want.issuperset(q.called)
            ):
                m._log(
                    L_OPS,
                    f"[queue:skipped] Duplicate detected for [{mtype}] {' '.join(called)}",
                )
                return EXECUTED
    mut = Mutation(mtype, called, args, source=None if event is None else source_of(event))
    m._queue.append(mut)
    m._queue_pending += 1
    mut.queue_tick = m._queue_pending + m._queue_tick
    if m._log_level >= L_OPS:
        m._log(
            L_OPS,
            f"[queue:{mtype}] {' '.join(called)}{m._log_args(args)}",
        )
    for t in m._tracers:
        t.mutation_queued(m, mut)
    if m._draining and not m._disposing:
        # drain() postpones: the running drain loop takes it
        if m._log_level >= L_OPS:
            n = len(m._queue)
            m._log(L_OPS, f"[postpone] queue running ({n} {'item' if n == 1 else 'items'})")
        return QUEUED
    return m._drain()


def enqueue(m: Machine, mut: Mutation) -> Result:
    """``mutate()`` of an arg-less mutation while the queue drains, with nothing
    queued, logged or traced (what ``add1`` / ``remove1`` check): append it for
    the running drain loop, which takes it after the current transition."""
    if m._loop_thread is not None:
        m._check_thread()
    m._queue.append(mut)
    m._queue_pending += 1
    mut.queue_tick = m._queue_pending + m._queue_tick
    return QUEUED


def source_of(event: Event) -> MutSource:
    """Where a mutation made with ``event=`` comes from: the event's machine, its
    transition and the machine time (the tick sum) before the machine's current
    transition (O(1): the machine keeps the sum, the transition its value at
    the start)."""
    em = event.machine
    etx = em._tx
    return MutSource(em.id, event.id, etx._sum0 if etx is not None else 0)


def prepend(m: Machine, mut: Mutation) -> Result:
    """Put ``mut`` at the queue front and drain (Go ``PrependMut``, semantics §3.4)."""
    if m._disposing:
        return CANCELED
    if m._log_level >= L_OPS:
        m._log(
            L_OPS,
            f"[prepend:{mut.type}] {' '.join(mut.called)}{m._log_args(mut.args)}",
        )
    m._queue.appendleft(mut)
    if mut.type is not _EVAL:
        for t in m._tracers:
            t.mutation_queued(m, mut)
    return m._drain()


def drain(m: Machine) -> Result:
    """Process the queue until empty (semantics §3.5)."""
    queue = m._queue
    if not queue or m._disposing:
        return CANCELED
    if m._draining:
        if m._log_level >= L_OPS:
            n = len(queue)
            m._log(
                L_OPS,
                f"[postpone] queue running ({n} {'item' if n == 1 else 'items'})",
            )
        return QUEUED
    m._draining = True
    try:
        first, stopped = _drain_loop(m, None)
        if stopped:
            return CANCELED
    except BaseException as exc:
        abort(m, exc)
        raise
    finally:
        m._tx = None
        m._draining = False
    return _queue_end(m, first)


def run_idle(m: Machine, mut: Mutation) -> Result:
    """``mutate()`` + ``drain()`` of a mutation made while the machine is idle.

    The fast path of the mutation methods (issue 6), for the case they check:
    nothing queued, nothing draining, no tracer, log level below OPS, not
    disposed, not a check, not auto (args and a source from ``event=`` are
    set on ``mut`` as ``mutate()`` sets them). Then ``mutate()`` would only
    log nothing, drop no duplicate (the queue is empty), append ``mut`` and
    ``drain()`` pop it again at once with the next queue tick; this does the
    same without the queue round trip. Mutations queued by its handlers are
    drained as usual.
    """
    if m._loop_thread is not None:
        m._check_thread()
    mut.queue_tick = m._queue_pending + 1 + m._queue_tick
    m._queue_tick += 1
    m._draining = True
    try:
        # run_tx() inlined, with what the callers checked taken as given
        tx = Transition(m, mut)
        m._tx = tx
        if m._pre_logs:
            tx.pre_log_entries = m._pre_logs
            tx.pre_log_levels = m._pre_log_levels
            m._pre_logs = []
            m._pre_log_levels = bytearray()
        subs = m._subs
        if tx._steps is None and not subs.when_args and not subs._expired_args:
            first: Result | None = tx.run_plain()
        else:
            tx.setup()
            first = tx.run()
        if tx.is_accepted and (subs.count or subs._expired) and subs.concerns(tx):
            subs.process(
                tx.activated,
                tx.deactivated,
                tx._apply_changes,
                m._names,
                m.tick,
                m._queue_tick,
            )
        if m._queue:
            first, stopped = _drain_loop(m, first)
            if stopped:
                return CANCELED
    except BaseException as exc:
        abort(m, exc)
        raise
    finally:
        m._tx = None
        m._draining = False
    # _queue_end() inlined (a call is ~2 % of a toggle)
    for t in m._tracers:
        t.queue_end(m)
    if m._subs.when_queue_ends:
        m._subs.process_queue_ends()
    return CANCELED if first is None else first


def abort(m: Machine, exc: BaseException) -> None:
    """Something escaped the drain (a ``BaseException`` from a handler, an error
    from an eval function, a tracer or a callback): make the machine idle and
    consistent again before it propagates.

    The transition in progress stays where it stopped (no revert, no
    ``Exception``), but the waiters of what it applied are resolved; every
    queued mutation is dropped: the queue ticks handed out for them are used
    up (never handed out again), their ``when_queue`` waiters resolve with
    ``canceled`` set, checks report canceled, and the drop is logged (the machine log at CHANGES and
    the ``asyncmachine_trio`` logger at WARNING).
    """
    queue = m._queue
    dropped = list(queue)
    queue.clear()
    if dropped and m._subs.when_queue:
        ticks = {q.queue_tick for q in dropped if q.queue_tick}
        for tick, waiter in m._subs.when_queue:
            if tick in ticks:
                waiter._canceled = True
    # dropped = skipped: their ticks are taken, as if each was processed
    m._queue_tick += m._queue_pending
    m._queue_pending = 0
    m._panic_caught = False
    m._current_handler = ""
    m._current_eval = ""
    tx = m._tx
    subs = m._subs
    if tx is not None and (m._tracers or m._end_hooks):
        tx._escape()  # tracers may keep it
    try:
        checks = [q for q in dropped if q.is_check]
        if tx is not None:
            mut = tx.mutation
            if mut.is_check:
                # stopped before it completed: its check_done was not called
                if not tx.is_completed:
                    checks.insert(0, mut)
            elif tx._apply_changes:
                # what the transition applied, whatever it did not finish
                names = m._names
                active = m._active_set
                changed = [names[i] for i in tx._apply_changes]
                activated = [s for s in changed if s in active]
                deactivated = [s for s in changed if s not in active]
                subs.process_state_ctx(activated, deactivated)
                subs.process(
                    activated, deactivated, tx._apply_changes, names, m.tick, m._queue_tick
                )
            tx.is_completed = True
        if subs.when_queue:
            subs.process_when_queue(m._queue_tick)
        for q in checks:
            check = parse_args(q.args, ACheck)
            if check is not None and callable(check.check_done):
                check.canceled = True
                check.check_done()
        if subs.when_queue_ends:
            subs.process_queue_ends()
    except Exception as err:  # a callback failing here must not hide ``exc``
        report_warning("machine %s: error while resetting after %r: %r", m.id, exc, err)
    name = type(exc).__name__
    if dropped:
        muts = ", ".join(str(q) for q in dropped if q.type is not _EVAL)
        line = f"[queue:dropped] {len(dropped)} after {name}: {muts}"
        m._log(L_CHANGES, line)
        report_warning(
            "machine %s: %d queued mutations dropped after %s escaped the queue: %s",
            m.id,
            len(dropped),
            name,
            muts,
        )
    else:
        m._log(L_CHANGES, f"[queue:abort] {name}")


def _drain_loop(m: Machine, first: Result | None) -> tuple[Result | None, bool]:
    """The drain loop: ``(first result, stopped by disposal)``."""
    queue = m._queue
    while queue:
        if m._disposing:
            return first, True
        mut = queue.popleft()
        if mut.queue_tick:
            m._queue_pending -= 1
            m._queue_tick += 1
        if mut.type is _EVAL:
            m._current_eval = mut.eval_source
            try:
                if mut.eval_fn is not None:
                    mut.eval_fn()
            finally:
                m._current_eval = ""
            continue
        res = run_tx(m, mut)
        if first is None:
            first = res
    return first, False


def run_tx(m: Machine, mut: Mutation) -> Result:
    """Run one transition of the drain loop and resolve what it satisfied."""
    tx = Transition(m, mut)
    m._tx = tx
    if m._pre_logs:
        tx.pre_log_entries = m._pre_logs
        tx.pre_log_levels = m._pre_log_levels
        m._pre_logs = []
        m._pre_log_levels = bytearray()
    subs = m._subs
    if (
        m._log_level < L_OPS
        and tx._steps is None
        and not mut.is_check
        and not mut.is_auto
        and not m._tracers
        and not subs.when_args
        and not subs._expired_args
        and not m._disposing
    ):
        res = tx.run_plain()
    else:
        tx.setup()
        res = tx.run()
    if mut.is_check:
        check = parse_args(mut.args, ACheck)
        if check is not None and callable(check.check_done):
            check.canceled = not tx.is_accepted
            check.check_done()
    elif tx.is_accepted and (subs.count or subs._expired) and subs.concerns(tx):
        subs.process(
            tx.activated,
            tx.deactivated,
            tx._apply_changes,
            m._names,
            m.tick,
            m._queue_tick,
        )
    return res


def _queue_end(m: Machine, first: Result | None) -> Result:
    for t in m._tracers:
        t.queue_end(m)
    if m._subs.when_queue_ends:
        m._subs.process_queue_ends()
    return CANCELED if first is None else first


def can_add(m: Machine, states: StateNames, args: Mapping[str, Any] | None = None) -> Result:
    """Dry run of ``add``: EXECUTED if it would be accepted (semantics §3.6)."""
    if m._disposing:
        return CANCELED
    called = m._parse(states)
    return m._prepend(Mutation(_ADD, called, m._check_args(args), is_check=True))


def can_remove(m: Machine, states: StateNames, args: Mapping[str, Any] | None = None) -> Result:
    """Dry run of ``remove``."""
    if m._disposing:
        return CANCELED
    called = m._parse(states)
    return m._prepend(Mutation(_REMOVE, called, m._check_args(args), is_check=True))


def eval(m: Machine, source: str, fn: Callable[[], Any]) -> bool:
    """Run ``fn`` serialized with handlers; False when it cannot run (semantics §3.7)."""
    if m._disposing:
        return False
    if not source or not isinstance(source, str):
        raise ArgumentError("eval needs a non-empty source name")
    if m._draining:
        if m.detect_eval and m._current_handler:
            err = NestedEvalError(
                f"eval nested in handler or eval: eval:{source} called directly in"
                f" handler {m._current_handler}(), skipping"
            )
            m._log(L_OPS, f"[eval] {err}")
            m.add_err(err)
        return False
    m._log(L_OPS, f"[eval] {source}")
    ran = False

    def run() -> None:
        nonlocal ran
        ran = True
        fn()

    m._prepend(Mutation(_EVAL, [], {}, eval_fn=run, eval_source=source))
    m._log(L_EVERYTHING, f"[eval:end] {source}")
    return ran


def is_queued(
    m: Machine,
    mut_type: MutationType,
    states: StateNames,
    *,
    without_args_only: bool = False,
    strict_equal: bool = False,
    min_queue_tick: int = 0,
    is_check: bool = False,
    position: Position = Position.ANY,
) -> tuple[bool, int, int]:
    """``(found, index, queue_tick)`` of the first match, ``(False, 0, 0)`` else."""
    q = list(m._queue)
    idxs: Iterable[int] = range(len(q))
    if position is Position.FIRST:
        idxs = range(min(1, len(q)))
    elif position is Position.LAST:
        idxs = range(len(q) - 1, len(q)) if q else range(0)
    want = list(states)
    for i in idxs:
        mut = q[i]
        if mut.is_check != is_check or mut.type is not mut_type:
            continue
        if without_args_only and mut.args:
            continue
        if strict_equal and len(mut.called) != len(want):
            continue
        if len(mut.called) < len(want):
            continue
        if not all(s in mut.called for s in want):
            continue
        if min_queue_tick > 0 and mut.queue_tick < min_queue_tick:
            continue
        return True, i, mut.queue_tick
    return False, 0, 0


def is_queued_above(
    m: Machine, threshold: int, mut_type: MutationType, states: StateNames, **kw: Any
) -> bool:
    """True if more than ``threshold`` pending mutations match (see is_queued)."""
    count = 0
    want = list(states)
    for mut in m._queue:
        if mut.type is not mut_type or mut.is_check != kw.get("is_check", False):
            continue
        if kw.get("without_args_only") and mut.args:
            continue
        if kw.get("strict_equal") and len(mut.called) != len(want):
            continue
        if all(s in mut.called for s in want):
            count += 1
            if count > threshold:
                return True
    return False


def will_be_any(m: Machine, states: StateNames) -> bool:
    """Some pending Add calls any of ``states``."""
    want = set(states)
    return any(m.type is _ADD and not want.isdisjoint(m.called) for m in m._queue)
