"""What every backend shares: the tracer, the filters, record building, the
machine record, query validation and the predefined queries."""

from __future__ import annotations

import abc
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from operator import itemgetter, sub
from time import time_ns
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

import anyio.lowlevel
import attrs

from .. import DisposedError, Machine, State, Tracer, Transition, is_active_tick
from .errors import (
    ConfigError,
    HistoryError,
    QueryError,
    StateNotTrackedError,
    UnknownStateError,
)
from .records import (
    SCALAR_FIELDS,
    UTC,
    ConditionTime,
    Config,
    MachineRecord,
    MemoryRecord,
    Query,
    RawTime,
    RawTx,
    from_us,
    restore,
    to_us,
    utc_now,
)

__all__ = ["ErrorHandler", "History", "HistoryTracer"]

_log = logging.getLogger("asyncmachine_trio.history")
_US = timedelta(microseconds=1)

#: receives the errors nobody called for (writer thread failures, dispose-time
#: flushes); called from the thread where they happened
ErrorHandler = Callable[[HistoryError], Any]

_Between = Literal["activated", "active", "deactivated", "inactive"]
_H = TypeVar("_H", bound="History")


class HistoryTracer(Tracer):
    """The ``am.Tracer`` a history binds to its machine (``History.tracer``).

    Uses ``transition_end`` (records), ``schema_change`` and ``verify_states``
    (state order, machine record) and ``machine_dispose`` (closes the history).
    """

    def __init__(self, history: History, kind: str) -> None:
        self._history = history
        self._id = f"history-{kind}-{secrets.token_hex(3)}"

    def tracer_id(self) -> str:
        return self._id

    def transition_end(self, transition: Transition) -> None:
        self._history._track(transition)

    def schema_change(self, machine: Machine, old_schema: dict[str, State]) -> None:
        self._history._schema_changed()

    def verify_states(self, machine: Machine) -> None:
        self._history._schema_changed()

    def machine_dispose(self, machine_id: str) -> None:
        self._history._machine_disposed()


def resolve_config(mach: Machine, config: Config) -> Config:
    """``config`` with ``tracked_states`` resolved: all states when ``None``,
    plus the ``called`` / ``changed`` allowlists; unknown states raise."""
    names = mach.state_names
    known = set(names)
    tracked = list(names if config.tracked_states is None else config.tracked_states)
    if not config.called_exclude:
        tracked += config.called
    if not config.changed_exclude:
        tracked += config.changed
    every = [*tracked, *config.called, *config.changed]
    unknown = [s for s in dict.fromkeys(every) if s not in known]
    if unknown:
        raise ConfigError(f"unknown states for {mach.id}: {' '.join(unknown)}")
    resolved = tuple(dict.fromkeys(tracked))
    if not resolved:
        raise ConfigError("no states to track")
    return attrs.evolve(config, tracked_states=resolved)


class History(abc.ABC):
    """Mutation history of one machine (Go ``MemoryApi``).

    A backend binds :attr:`tracer` to the machine on construction; every
    accepted transition that passes the filters becomes a record. Closing the
    history (or disposing the machine) detaches it.
    """

    _kind = "base"

    def __init__(
        self,
        mach: Machine,
        config: Config,
        *,
        previous: MachineRecord | None,
        last_sum: int | None,
        on_error: ErrorHandler | None,
    ) -> None:
        if mach.is_disposed:
            raise DisposedError(f"machine {mach.id} is disposed")
        cfg = resolve_config(mach, config)
        self._mach = mach
        self._mach_id = mach.id
        self._config = cfg
        tracked = cfg.tracked_states or ()
        self._tracked: tuple[str, ...] = tracked
        self._tracked_pos: dict[str, int] = {s: i for i, s in enumerate(tracked)}
        self._on_error = on_error
        self._closed = False
        self._track_rejected = cfg.track_rejected
        self._store_tx = cfg.store_transitions
        self._store_schema = cfg.store_schema
        self._now = cfg.now
        #: the default clock, read as an int (no datetime per record)
        self._fast_clock = cfg.now is utc_now
        self._args_mapper = cfg.args_mapper
        # filters
        self._called_allow = frozenset(cfg.called) if not cfg.called_exclude else frozenset()
        self._called_block = frozenset(cfg.called) if cfg.called_exclude else frozenset()
        self._changed_allow = frozenset(cfg.changed) if not cfg.changed_exclude else frozenset()
        self._changed_block = frozenset(cfg.changed) if cfg.changed_exclude else frozenset()
        self._filtered = bool(cfg.called or cfg.changed)
        # state order cache (set_schema, verify_states and import_ may reorder)
        self._names: tuple[str, ...] = ()
        self._names_set: frozenset[str] = frozenset()
        self._idxs: list[int] = []
        self._refresh_names(mach.state_names)
        # the machine record, kept as plain fields
        now = self._utc_now()
        self._first_tracking = previous.first_tracking if previous is not None else now
        self._last_tracking = now
        self._last_sync_us = to_us(now)
        self._next_id = previous.next_id if previous is not None else 1
        self._mr_names: tuple[str, ...] = self._names
        self._m_time: Sequence[int] = mach.time()
        #: also tells the tracer when an ``import_`` may have reordered the states
        self._mach_tick = mach.machine_tick()
        self._queue_tick = mach.queue_tick()
        self._schema: dict[str, State] | None = mach.schema if cfg.store_schema else None
        #: m_time_sum of the previous record, for m_time_record_diff_sum
        self._last_sum = last_sum
        #: the machine record this history continues (given, or found in the database)
        self.previous_record: MachineRecord | None = previous
        self.tracer: HistoryTracer = HistoryTracer(self, self._kind)

    def _bind(self) -> None:
        self._mach.tracer_bind(self.tracer)

    # ----- read-only views

    @property
    def machine(self) -> Machine:
        """The tracked machine."""
        return self._mach

    @property
    def config(self) -> Config:
        """The effective configuration (``tracked_states`` resolved)."""
        return self._config

    @property
    def tracked_states(self) -> tuple[str, ...]:
        """The states whose ticks the records store, in record order."""
        return self._tracked

    @property
    def is_closed(self) -> bool:
        """True after :meth:`close` (or the machine's disposal)."""
        return self._closed

    def is_tracked(self, states: Sequence[str]) -> bool:
        """True if every state is tracked."""
        return all(s in self._tracked_pos for s in states)

    def is_tracked1(self, state: str) -> bool:
        """True if ``state`` is tracked."""
        return state in self._tracked_pos

    def index(self, states: Sequence[str]) -> list[int]:
        """Positions in :attr:`tracked_states` (-1: not tracked)."""
        return [self._tracked_pos.get(s, -1) for s in states]

    def index1(self, state: str) -> int:
        """Position of ``state`` in :attr:`tracked_states` (-1: not tracked)."""
        return self._tracked_pos.get(state, -1)

    def machine_record(self) -> MachineRecord:
        """A copy of the machine record as it is now (pending writes included)."""
        return MachineRecord(
            mach_id=self._mach_id,
            state_names=self._mr_names,
            schema=dict(self._schema) if self._schema is not None else None,
            first_tracking=self._first_tracking,
            last_tracking=self._last_tracking,
            last_sync=from_us(self._last_sync_us),
            m_time=tuple(self._m_time),
            m_time_sum=sum(self._m_time),
            mach_tick=self._mach_tick,
            queue_tick=self._queue_tick,
            next_id=self._next_id,
        )

    def restore(self) -> bool:
        """Import :attr:`previous_record` into the machine (``am.Machine.import_``).

        The machine tick goes up by one and ``MachineRestored`` is added if the
        schema has it (that transition is recorded as any other). Returns False
        when there is no previous record.
        """
        if self.previous_record is None:
            return False
        restore(self._mach, self.previous_record)
        # without MachineRestored in the schema no transition followed the import
        self._reload_machine()
        self._touched()
        return True

    # ----- queries

    def find_latest(
        self, query: Query | None = None, limit: int = 0, *, with_tx: bool = False
    ) -> list[MemoryRecord]:
        """Records matching ``query``, newest first; ``limit`` 0 returns all.

        Only the newest ``max_records`` records are ever searched. Transition
        records come with ``with_tx`` (and ``store_transitions``). Raises
        :class:`UnknownStateError` / :class:`StateNotTrackedError` for states
        the query cannot be answered for, :class:`QueryError` for the rest.
        """
        q = Query() if query is None else query
        self._validate(q, limit)
        return self._find(q, limit, with_tx)

    def activated_between(self, state: str, start: datetime, end: datetime) -> bool:
        """``state`` was activated (or re-entered) by a transition recorded in
        ``[start, end]`` (human time, inclusive)."""
        return self._between("activated", state, start, end)

    def deactivated_between(self, state: str, start: datetime, end: datetime) -> bool:
        """``state`` was deactivated by a transition recorded in ``[start, end]``."""
        return self._between("deactivated", state, start, end)

    def active_between(self, state: str, start: datetime, end: datetime) -> bool:
        """``state`` was active at some point of ``[start, end]``: a record in the
        range shows it active, or the last record before ``start`` does."""
        return self._between("active", state, start, end)

    def inactive_between(self, state: str, start: datetime, end: datetime) -> bool:
        """``state`` was inactive at some point of ``[start, end]`` (as
        :meth:`active_between`)."""
        return self._between("inactive", state, start, end)

    def _between(self, kind: _Between, state: str, start: datetime, end: datetime) -> bool:
        if state not in self._names_set:
            raise UnknownStateError([state], self._mach_id)
        if state not in self._tracked_pos:
            # nothing is known about an untracked state (the reference answers false)
            return False
        for value in (start, end):
            if value.tzinfo is None:
                raise QueryError(f"naive datetime {value!r}: pass an aware datetime")
        if start > end:
            return False
        one = (state,)
        lo, hi = ConditionTime(h_time=start), ConditionTime(h_time=end)
        if kind == "activated":
            q = Query(activated=one, start=lo, end=hi)
        elif kind == "deactivated":
            q = Query(deactivated=one, start=lo, end=hi)
        elif kind == "active":
            q = Query(active=one, start=lo, end=hi)
        else:
            q = Query(inactive=one, start=lo, end=hi)
        if self.find_latest(q, 1):
            return True
        if kind in ("active", "inactive"):
            before = self.find_latest(Query(end=ConditionTime(h_time=start - _US)), 1)
            if before:
                tick = before[0].time.m_time_tracked[self._tracked_pos[state]]
                return is_active_tick(tick) == (kind == "active")
        return False

    def _validate(self, query: Query, limit: int) -> None:
        if not isinstance(limit, int) or limit < 0:
            raise QueryError(f"limit must be an int >= 0, got {limit!r}")
        names = query.states()
        unknown = [s for s in names if s not in self._names_set]
        if unknown:
            raise UnknownStateError(unknown, self._mach_id)
        untracked = [s for s in names if s not in self._tracked_pos]
        if untracked:
            raise StateNotTrackedError(untracked)
        for cond in (query.start, query.end):
            if cond.h_time is not None and cond.h_time.tzinfo is None:
                raise QueryError(f"naive datetime {cond.h_time!r}: pass an aware datetime")
            for field, _ in SCALAR_FIELDS:
                value = getattr(cond, field)
                if value is not None and not isinstance(value, int):
                    raise QueryError(f"{field} must be an int or None, got {value!r}")

    @abc.abstractmethod
    def _find(self, query: Query, limit: int, with_tx: bool) -> list[MemoryRecord]:
        """Backend search of a validated query."""

    # ----- lifecycle

    @abc.abstractmethod
    def sync(self) -> None:
        """Write pending records so that queries see them (blocking)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop tracking, write what is pending and release the backend (Go ``Dispose``)."""

    async def sync_async(self) -> None:
        """:meth:`sync` without blocking the event loop."""
        self.sync()
        await anyio.lowlevel.checkpoint()

    async def find_latest_async(
        self, query: Query | None = None, limit: int = 0, *, with_tx: bool = False
    ) -> list[MemoryRecord]:
        """:meth:`find_latest` without blocking the event loop."""
        ret = self.find_latest(query, limit, with_tx=with_tx)
        await anyio.lowlevel.checkpoint()
        return ret

    async def close_async(self) -> None:
        """:meth:`close` without blocking the event loop."""
        self.close()
        await anyio.lowlevel.checkpoint()

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self: _H) -> _H:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close_async()

    def _detach(self) -> None:
        """Stop tracking (idempotent; a disposing machine detaches by itself)."""
        if self.tracer in self._mach.tracers:
            self._mach.tracer_detach(self.tracer.tracer_id())

    def _machine_disposed(self) -> None:
        try:
            self.close()
        except HistoryError as err:
            self._report(err)

    def _report(self, err: HistoryError) -> None:
        if self._on_error is not None:
            self._on_error(err)
        else:
            _log.error("history of %s: %s", self._mach_id, err, exc_info=err)

    # ----- tracking (the tracer's hot path)

    def _utc_now(self) -> datetime:
        now = self._now()
        return now if now.tzinfo is UTC else now.astimezone(UTC)

    def _refresh_names(self, names: tuple[str, ...]) -> None:
        self._names = names
        self._names_set = frozenset(names)
        pos = {s: i for i, s in enumerate(names)}
        idxs = [pos[s] for s in self._tracked]
        self._idxs = idxs
        if idxs == list(range(len(names))):
            self._pick: Callable[[Sequence[int]], tuple[int, ...]] = tuple
        elif len(idxs) == 1:
            only = idxs[0]
            self._pick = lambda t: (t[only],)
        else:
            self._pick = cast(Callable[[Sequence[int]], tuple[int, ...]], itemgetter(*idxs))

    def _passes(self, tx: Transition) -> bool:
        """The called / changed filters (see :class:`Config`)."""
        called = tx.called_set
        if self._called_block and not self._called_block.isdisjoint(called):
            return False
        changed: set[str] | None = None
        if self._changed_block or self._changed_allow:
            before, after, names = tx.time_before, tx.time_after, self._names
            changed = {names[i] for i in range(len(after)) if after[i] != before[i]}
            if self._changed_block and not self._changed_block.isdisjoint(changed):
                return False
        if not self._called_allow and not self._changed_allow:
            return True
        if self._called_allow and not self._called_allow.isdisjoint(called):
            return True
        return bool(self._changed_allow and changed and not self._changed_allow.isdisjoint(changed))

    def _track(self, tx: Transition) -> None:
        mut = tx.mutation
        if mut.is_check:
            return
        accepted = tx.is_accepted
        if not accepted and not self._track_rejected:
            return
        mach = self._mach
        mach_tick = mach.machine_tick()
        if mach_tick != self._mach_tick:
            # import_ happened: the state order may have changed
            self._mach_tick = mach_tick
            self._refresh_names(mach.state_names)
            self._mr_names = self._names
            self._m_time = tx.time_before
        after = tx.time_after
        if accepted:
            self._m_time = after
            self._queue_tick = mach.queue_tick()
        if self._filtered and not self._passes(tx):
            if accepted:
                self._touched()
            return

        sum_after = sum(after)
        before = tx.time_before
        pick = self._pick
        tracked = pick(after)
        tracked_before = pick(before)
        tracked_sum = sum(tracked)
        rid = self._next_id
        self._next_id = rid + 1
        last_sum = self._last_sum
        self._last_sum = sum_after
        now = time_ns() // 1000 if self._fast_clock else to_us(self._now())
        time_rec: RawTime = (
            rid,
            mut.type,
            sum_after,
            tracked_sum,
            sum_after - sum(before),
            tracked_sum - sum(tracked_before),
            0 if last_sum is None else sum_after - last_sum,
            now,
            tracked,
            tuple(map(sub, tracked, tracked_before)),
            mach_tick,
        )
        tx_rec: RawTx | None = None
        if self._store_tx:
            src = mut.source
            queued_at = mut.queue_tick
            tx_rec = (
                tx.id,
                rid,
                src.tx_id if src is not None else "",
                src.mach_id if src is not None else "",
                mut.is_auto,
                accepted,
                mut.is_check,
                False,
                tx.queue_len,
                queued_at,
                mach.queue_tick() if queued_at > 0 else 0,
                tuple(mut.called),
                self._args_mapper(mut.args),
            )
        self._store(time_rec, tx_rec, now)

    def _schema_changed(self) -> None:
        self._reload_machine()
        self._touched()

    def _reload_machine(self) -> None:
        """Machine record fields from the machine itself (after ``set_schema``)."""
        mach = self._mach
        self._refresh_names(mach.state_names)
        self._mr_names = self._names
        self._m_time = mach.time()
        self._mach_tick = mach.machine_tick()
        if self._store_schema:
            self._schema = mach.schema

    @abc.abstractmethod
    def _store(self, time: RawTime, tx: RawTx | None, now_us: int) -> None:
        """Keep a new record (the machine record fields are already updated)."""

    @abc.abstractmethod
    def _touched(self) -> None:
        """The machine record changed without a new record."""
