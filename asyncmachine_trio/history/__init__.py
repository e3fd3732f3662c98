"""Mutation history: tracking transitions as records, traversal and restoring.

A port of the reference's ``pkg/history`` (docs/history.md)::

    from asyncmachine_trio import history

    hist = history.SqliteHistory("hist.sqlite", mach, history.Config(tracked_states=["Start"]))
    mach.toggle1("Start")
    hist.sync()
    hist.activated_between("Start", start, history.utc_now())
    hist.find_latest(history.Query(active=["Start"]), limit=10)

Backends: :class:`MemoryHistory` (a bounded deque) and :class:`SqliteHistory`
(stdlib ``sqlite3``, WAL, a writer thread). Both answer every query the same.
Differences from the reference, on purpose (docs/history.md has the details):

* state conditions filter (Go's in-process backend ignores them), the SQL
  machine-time ranges work, and ``activated`` / ``deactivated`` are defined by
  the transition itself in both backends;
* a range bound applies on its own (Go needs both ends non-zero);
* ``active_between`` / ``inactive_between`` also see the state as it was at
  ``start`` (the last record before it);
* the machine record follows every accepted transition, not only recorded ones;
* SQL GC deletes tick rows too, and queries never see more than
  ``max_records`` records, before or after GC;
* the ``called`` filter is the same in both backends; a blocklist hit always wins;
* writes are also flushed on a timer; errors are typed.
"""

from .base import ErrorHandler as ErrorHandler
from .base import History as History
from .base import HistoryTracer as HistoryTracer
from .errors import ConfigError as ConfigError
from .errors import DatabaseCorruptError as DatabaseCorruptError
from .errors import DatabaseError as DatabaseError
from .errors import DatabaseLockedError as DatabaseLockedError
from .errors import HistoryClosedError as HistoryClosedError
from .errors import HistoryError as HistoryError
from .errors import QueryError as QueryError
from .errors import StateNotTrackedError as StateNotTrackedError
from .errors import UnknownStateError as UnknownStateError
from .errors import WriterExistsError as WriterExistsError
from .memory import MemoryHistory as MemoryHistory
from .records import UTC as UTC
from .records import ArgsMapper as ArgsMapper
from .records import ConditionTime as ConditionTime
from .records import Config as Config
from .records import MachineRecord as MachineRecord
from .records import MemoryRecord as MemoryRecord
from .records import Query as Query
from .records import SqliteConfig as SqliteConfig
from .records import TimeRecord as TimeRecord
from .records import TransitionRecord as TransitionRecord
from .records import restore as restore
from .records import schema_from_json as schema_from_json
from .records import schema_to_json as schema_to_json
from .records import utc_now as utc_now
from .sqlite import SCHEMA_SQL as SCHEMA_SQL
from .sqlite import SqliteHistory as SqliteHistory
from .sqlite import list_machines as list_machines
from .sqlite import load_machine_record as load_machine_record

__all__ = [
    "SCHEMA_SQL",
    "UTC",
    "ArgsMapper",
    "ConditionTime",
    "Config",
    "ConfigError",
    "DatabaseCorruptError",
    "DatabaseError",
    "DatabaseLockedError",
    "ErrorHandler",
    "History",
    "HistoryClosedError",
    "HistoryError",
    "HistoryTracer",
    "MachineRecord",
    "MemoryHistory",
    "MemoryRecord",
    "Query",
    "QueryError",
    "SqliteConfig",
    "SqliteHistory",
    "StateNotTrackedError",
    "TimeRecord",
    "TransitionRecord",
    "UnknownStateError",
    "WriterExistsError",
    "list_machines",
    "load_machine_record",
    "restore",
    "schema_from_json",
    "schema_to_json",
    "utc_now",
]
