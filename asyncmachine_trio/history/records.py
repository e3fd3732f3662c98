"""Configuration, records and queries of the history layer (attrs classes).

Names follow the reference (``pkg/history``) in snake_case: a *time record* per
tracked transition, an optional *transition record* with it, one *machine
record* per machine, and ``Query`` / ``ConditionTime`` for traversal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs

from .. import Machine, MutationType, Serialized, State, log_args_mapper
from .errors import ConfigError, QueryError

__all__ = [
    "UTC",
    "ArgsMapper",
    "ConditionTime",
    "Config",
    "MachineRecord",
    "MemoryRecord",
    "Query",
    "SqliteConfig",
    "TimeRecord",
    "TransitionRecord",
    "from_us",
    "restore",
    "schema_from_json",
    "schema_to_json",
    "to_us",
    "utc_now",
]

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

#: renders mutation args as text for transition records (``am.log_args_mapper()``)
ArgsMapper = Callable[[Mapping[str, Any]], dict[str, str]]


def utc_now() -> datetime:
    """The current human time, timezone-aware UTC (the default ``Config.now``)."""
    return datetime.now(UTC)


def to_us(dt: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch (SQL storage)."""
    return (dt - _EPOCH) // _US


def from_us(us: int) -> datetime:
    """Inverse of :func:`to_us`: an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=us)


# ----- converters


def _config_names(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError(f"expected a sequence of state names, got the str {value!r}")
    return tuple(value)


def _config_names_opt(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else _config_names(value)


def _query_names(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise QueryError(f"expected a sequence of state names, got the str {value!r}")
    return tuple(value)


def _ticks(value: Mapping[str, int]) -> dict[str, int]:
    return dict(value)


def _default_args_mapper() -> ArgsMapper:
    return log_args_mapper()


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"{attribute.name} must be >= 0, got {value!r}")


# ----- configuration


@attrs.frozen(kw_only=True)
class Config:
    """What to track and what to store (Go ``BaseConfig``).

    Filters: a transition is recorded when it passes both ``called`` and
    ``changed``. A non-empty allowlist needs at least one of its states called /
    changed (two allowlists: either one is enough); ``*_exclude`` turns a list
    into a blocklist, and a blocklist hit always wins. Check-only mutations are
    never recorded; canceled transitions only with ``track_rejected``.

    ``tracked_states``: the states whose ticks every record stores (``None``:
    all states of the machine). States of the ``called`` / ``changed``
    allowlists are added to it.
    """

    called: tuple[str, ...] = attrs.field(default=(), converter=_config_names)
    called_exclude: bool = False
    changed: tuple[str, ...] = attrs.field(default=(), converter=_config_names)
    changed_exclude: bool = False
    track_rejected: bool = False
    tracked_states: tuple[str, ...] | None = attrs.field(default=None, converter=_config_names_opt)
    store_transitions: bool = False
    store_schema: bool = False
    #: the newest records kept (and queried); older ones are dropped / GC'd
    max_records: int = attrs.field(default=1000, validator=_positive)
    #: args to text for ``TransitionRecord.arguments``
    args_mapper: ArgsMapper = attrs.field(factory=_default_args_mapper)
    #: the human clock; must return aware datetimes (tests inject a fake one)
    now: Callable[[], datetime] = utc_now


@attrs.frozen(kw_only=True)
class SqliteConfig(Config):
    """:class:`Config` plus the SQLite write policy.

    Records are queued and written by a writer thread when ``batch_size`` of them
    are pending, every ``flush_interval`` seconds, and on ``sync()`` /
    ``close()``. ``busy_timeout`` is how long a write waits for another
    connection's lock before :class:`DatabaseLockedError`.

    ``max_pending`` (default ``2 * batch_size``) bounds the records queued and
    not yet committed: a tracker that gets ahead of the writer **blocks** (the
    machine's thread waits for the commit), so a crash (SIGKILL) loses at most
    ``max_pending`` records, and at most ``flush_interval`` seconds of them
    when they come slower. While the writer is failing (a full or broken disk)
    the tracker does not block: new records past the bound are **dropped and
    counted** (``history.dropped``) and the error is reported.
    """

    batch_size: int = attrs.field(default=100, validator=_positive)
    flush_interval: float = attrs.field(default=1.0, validator=_positive)
    busy_timeout: float = attrs.field(default=5.0, validator=_non_negative)
    max_pending: int | None = None


# ----- records


@attrs.frozen
class TimeRecord:
    """Machine time after one tracked transition (Go ``TimeRecord``).

    ``m_time_tracked`` / ``m_time_tracked_diff`` follow the history's
    ``tracked_states`` order; diffs are against the time *before the transition*,
    ``m_time_record_diff_sum`` against the previous record.
    """

    #: per-machine sequence, from 1
    id: int
    mut_type: MutationType
    #: sum of all ticks after the transition
    m_time_sum: int
    #: sum of the tracked ticks after the transition
    m_time_tracked_sum: int
    #: ``m_time_sum`` minus the sum before the transition
    m_time_diff_sum: int
    #: the same for tracked states only
    m_time_tracked_diff_sum: int
    #: ``m_time_sum`` minus the previous record's (0 for the first one)
    m_time_record_diff_sum: int
    #: human time, aware UTC, microsecond precision
    h_time: datetime
    m_time_tracked: tuple[int, ...]
    m_time_tracked_diff: tuple[int, ...]
    #: ``machine_tick()`` at the time (bumped by every restore)
    mach_tick: int


@attrs.frozen
class TransitionRecord:
    """The transition behind a time record (``store_transitions``; Go ``TransitionRecord``)."""

    transition_id: str
    time_record_id: int
    source_tx: str
    source_mach: str
    is_auto: bool
    is_accepted: bool
    is_check: bool
    #: always False: the core has no broken transitions
    is_broken: bool
    queue_len: int
    queued_at: int
    executed_at: int
    #: the called state names (Go stores indexes)
    called: tuple[str, ...]
    #: the args rendered by ``Config.args_mapper``
    arguments: dict[str, str]


#: a TimeRecord as a plain tuple, fields in TimeRecord order (backends store these);
#: the human time is in microseconds (:func:`to_us`)
RawTime = tuple[
    int, MutationType, int, int, int, int, int, int, tuple[int, ...], tuple[int, ...], int
]
#: a TransitionRecord as a plain tuple, fields in TransitionRecord order
RawTx = tuple[
    str, int, str, str, bool, bool, bool, bool, int, int, int, tuple[str, ...], dict[str, str]
]

#: position of each TimeRecord field in a RawTime
TIME_INDEX: dict[str, int] = {name: i for i, name in enumerate(attrs.fields_dict(TimeRecord))}


@attrs.frozen
class MemoryRecord:
    """What queries return: a time record and, with ``with_tx``, its transition record."""

    time: TimeRecord
    transition: TransitionRecord | None = None

    @classmethod
    def from_raw(cls, time: RawTime, tx: RawTx | None) -> MemoryRecord:
        """Build from the tuples the backends keep."""
        t = TimeRecord(*time[:7], from_us(time[7]), *time[8:])
        return cls(t, TransitionRecord(*tx) if tx is not None else None)


@attrs.frozen
class MachineRecord:
    """The tracked machine's latest full time and bookkeeping (Go ``MachineRecord``).

    Updated by every accepted transition, tracked or not, so it always holds
    what :func:`restore` needs. ``schema`` is kept with ``store_schema``.
    """

    mach_id: str
    state_names: tuple[str, ...]
    schema: dict[str, State] | None
    #: the first time this machine id was tracked (kept across restarts)
    first_tracking: datetime
    #: when the current tracking started
    last_tracking: datetime
    #: the last write to the backend (memory: the last record)
    last_sync: datetime
    #: all ticks, in ``state_names`` order
    m_time: tuple[int, ...]
    m_time_sum: int
    mach_tick: int
    queue_tick: int
    #: the id the next time record gets
    next_id: int

    def serialized(self) -> Serialized:
        """The record as ``am.Serialized``, ready for ``Machine.import_``."""
        return Serialized(
            id=self.mach_id,
            state_names=self.state_names,
            time=self.m_time,
            queue_tick=self.queue_tick,
            machine_tick=self.mach_tick,
        )


def restore(mach: Machine, record: MachineRecord) -> None:
    """Restore ``mach`` from a machine record (``import_``).

    The machine tick goes up by one and ``MachineRestored`` is added when the
    schema has it. Raises ``am.SchemaError`` when the ids or the states differ.
    """
    mach.import_(record.serialized())


def schema_to_json(schema: Mapping[str, State]) -> str:
    """A schema as JSON text (relations as lists, ``null`` when not given)."""
    out: dict[str, dict[str, Any]] = {}
    for name, state in schema.items():
        d = attrs.asdict(state)
        out[name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
    return json.dumps(out, separators=(",", ":"))


def schema_from_json(text: str) -> dict[str, State]:
    """Inverse of :func:`schema_to_json`."""
    raw: dict[str, dict[str, Any]] = json.loads(text)
    return {name: State(**fields) for name, fields in raw.items()}


# ----- queries


@attrs.frozen(kw_only=True)
class ConditionTime:
    """One end of the scalar ranges of a :class:`Query` (Go ``ConditionTime``).

    ``Query.start`` holds lower bounds, ``Query.end`` upper bounds, both
    inclusive; ``None`` leaves that bound open. ``mtime`` bounds the ticks of
    tracked states (``{"Foo": 3}``).
    """

    mtime: dict[str, int] = attrs.field(factory=dict, converter=_ticks)
    h_time: datetime | None = None
    m_time_sum: int | None = None
    m_time_tracked_sum: int | None = None
    #: bounds ``TimeRecord.m_time_diff_sum``
    m_time_diff: int | None = None
    #: bounds ``TimeRecord.m_time_tracked_diff_sum``
    m_time_tracked_diff: int | None = None
    #: bounds ``TimeRecord.m_time_record_diff_sum``
    m_time_record_diff: int | None = None
    mach_tick: int | None = None


#: ConditionTime field -> TimeRecord field of the scalar ranges
SCALAR_FIELDS: tuple[tuple[str, str], ...] = (
    ("m_time_sum", "m_time_sum"),
    ("m_time_tracked_sum", "m_time_tracked_sum"),
    ("m_time_diff", "m_time_diff_sum"),
    ("m_time_tracked_diff", "m_time_tracked_diff_sum"),
    ("m_time_record_diff", "m_time_record_diff_sum"),
    ("mach_tick", "mach_tick"),
)


@attrs.frozen(kw_only=True)
class Query:
    """Conditions on one record; all given ones must hold (Go ``Query``).

    ``active`` / ``inactive``: the state is (in)active after the transition.
    ``activated``: it became active (or a Multi state re-entered) in the
    transition. ``deactivated``: it was active before and is not after. An
    empty query matches every record.
    """

    active: tuple[str, ...] = attrs.field(default=(), converter=_query_names)
    activated: tuple[str, ...] = attrs.field(default=(), converter=_query_names)
    inactive: tuple[str, ...] = attrs.field(default=(), converter=_query_names)
    deactivated: tuple[str, ...] = attrs.field(default=(), converter=_query_names)
    start: ConditionTime = attrs.field(factory=ConditionTime)
    end: ConditionTime = attrs.field(factory=ConditionTime)

    def states(self) -> list[str]:
        """Every state the query names, deduplicated, in order."""
        names = (
            *self.active,
            *self.activated,
            *self.inactive,
            *self.deactivated,
            *self.start.mtime,
            *self.end.mtime,
        )
        return list(dict.fromkeys(names))
