"""Typed errors of the history layer; every one is an :class:`am.AsyncMachineError`."""

from __future__ import annotations

from .. import AsyncMachineError, StateUnknownError

__all__ = [
    "ConfigError",
    "DatabaseCorruptError",
    "DatabaseError",
    "DatabaseLockedError",
    "HistoryClosedError",
    "HistoryError",
    "QueryError",
    "StateNotTrackedError",
    "UnknownStateError",
    "WriterExistsError",
]


class HistoryError(AsyncMachineError):
    """Root of the history errors (Go ``ErrConfig``, ``ErrCondition`` and the DB errors)."""


class ConfigError(HistoryError):
    """The tracking configuration is invalid (no states to track, unknown states,
    a bad ``max_records`` / ``batch_size``...)."""


class QueryError(HistoryError):
    """A query is malformed (Go ``ErrCondition``): a negative limit, a naive datetime..."""


class UnknownStateError(QueryError, StateUnknownError):
    """A query names a state the machine does not have (also an ``am.StateUnknownError``)."""

    def __init__(self, states: list[str], machine_id: str) -> None:
        self.states = states
        super().__init__(f"unknown states for {machine_id}: {' '.join(states)}")


class StateNotTrackedError(QueryError):
    """A query names a state of the machine that this history does not track."""

    def __init__(self, states: list[str]) -> None:
        self.states = states
        super().__init__(f"states not tracked: {' '.join(states)}")


class HistoryClosedError(HistoryError):
    """The history was closed (or its machine disposed) and has no database any more."""


class DatabaseError(HistoryError):
    """The database failed; ``__cause__`` holds the ``sqlite3`` error.

    Records that were not written stay queued and are retried by the next flush;
    records already synced are never touched by a failure.
    """


class DatabaseLockedError(DatabaseError):
    """Another connection holds the database lock longer than ``busy_timeout``."""


class WriterExistsError(DatabaseLockedError):
    """Another history (in this or another process) writes this machine's records.

    Two writers for one machine id would interleave and duplicate record ids;
    the second one is refused when it opens.
    """


class DatabaseCorruptError(DatabaseError):
    """The file is not a SQLite database, is damaged, or is not a history database.

    The file is left exactly as it was found.
    """
