"""The SQLite backend: stdlib ``sqlite3``, WAL, normalized tables, a writer thread.

Tables (see ``SCHEMA_SQL``): ``machines`` (one row per machine id, the machine
record), ``states`` (one row per tracked state of a machine), ``times`` (one row
per time record), ``ticks`` (one row per tracked state per time record) and
``transitions`` (one row per time record with ``store_transitions``). Human
times are integer microseconds since the Unix epoch (UTC); lists and the schema
are JSON text.

The tracer only appends records to a queue. A writer thread with its own
connection writes them in one transaction per batch: when ``batch_size``
records are pending, every ``flush_interval`` seconds, and on ``sync()`` /
``close()``. A failed write keeps its records queued for the next flush (and
raises from ``sync()``); what was committed is never touched by a failure.
Queries use a second connection (WAL readers do not wait for the writer).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import attrs

from .. import DisposedError, Machine, MutationType
from .base import ErrorHandler, History, resolve_config
from .errors import (
    DatabaseCorruptError,
    DatabaseError,
    DatabaseLockedError,
    HistoryClosedError,
    WriterExistsError,
)
from .records import (
    SCALAR_FIELDS,
    UTC,
    Config,
    MachineRecord,
    MemoryRecord,
    Query,
    RawTime,
    RawTx,
    SqliteConfig,
    TimeRecord,
    TransitionRecord,
    from_us,
    schema_from_json,
    schema_to_json,
    to_us,
)

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_SQL",
    "SCHEMA_VERSION",
    "SqliteHistory",
    "list_machines",
    "load_machine_record",
]

#: ``PRAGMA application_id`` of a history database ("amhi")
APPLICATION_ID = 0x616D6869
#: ``PRAGMA user_version`` of the current table layout
SCHEMA_VERSION = 1

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS machines (
    id INTEGER PRIMARY KEY,
    mach_id TEXT NOT NULL UNIQUE,
    state_names TEXT NOT NULL,
    schema TEXT,
    first_tracking INTEGER NOT NULL,
    last_tracking INTEGER NOT NULL,
    last_sync INTEGER NOT NULL,
    m_time TEXT NOT NULL,
    m_time_sum INTEGER NOT NULL,
    mach_tick INTEGER NOT NULL,
    queue_tick INTEGER NOT NULL,
    next_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS states (
    id INTEGER PRIMARY KEY,
    machine_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (machine_id, name)
);
CREATE TABLE IF NOT EXISTS times (
    machine_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    mut_type TEXT NOT NULL,
    m_time_sum INTEGER NOT NULL,
    m_time_tracked_sum INTEGER NOT NULL,
    m_time_diff_sum INTEGER NOT NULL,
    m_time_tracked_diff_sum INTEGER NOT NULL,
    m_time_record_diff_sum INTEGER NOT NULL,
    h_time INTEGER NOT NULL,
    mach_tick INTEGER NOT NULL,
    PRIMARY KEY (machine_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ticks (
    machine_id INTEGER NOT NULL,
    time_id INTEGER NOT NULL,
    state_id INTEGER NOT NULL,
    tick INTEGER NOT NULL,
    diff INTEGER NOT NULL,
    active INTEGER NOT NULL,
    activated INTEGER NOT NULL,
    deactivated INTEGER NOT NULL,
    PRIMARY KEY (machine_id, time_id, state_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transitions (
    machine_id INTEGER NOT NULL,
    time_id INTEGER NOT NULL,
    tx_id TEXT NOT NULL,
    source_tx TEXT NOT NULL,
    source_mach TEXT NOT NULL,
    is_auto INTEGER NOT NULL,
    is_accepted INTEGER NOT NULL,
    is_check INTEGER NOT NULL,
    is_broken INTEGER NOT NULL,
    queue_len INTEGER NOT NULL,
    queued_at INTEGER NOT NULL,
    executed_at INTEGER NOT NULL,
    called TEXT NOT NULL,
    arguments TEXT NOT NULL,
    PRIMARY KEY (machine_id, time_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS transitions_tx_id ON transitions (tx_id);
"""

_TABLES = ("machines", "states", "times", "ticks", "transitions")
_INT64 = (1 << 63) - 1
_IN_CHUNK = 500

_MACHINE_COLS = (
    "id, mach_id, state_names, schema, first_tracking, last_tracking, last_sync,"
    " m_time, m_time_sum, mach_tick, queue_tick, next_id"
)

# ----- connections and errors


def _translate(err: BaseException) -> DatabaseError:
    """A ``sqlite3`` error as a typed history error (``__cause__`` set)."""
    if isinstance(err, DatabaseError):
        return err
    text = str(err)
    low = text.lower()
    name = getattr(err, "sqlite_errorname", "")
    ret: DatabaseError
    if "locked" in low or "busy" in low or name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        ret = DatabaseLockedError(f"database locked by another connection ({text})")
    elif (
        "not a database" in low
        or "malformed" in low
        or "corrupt" in low
        or name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT"))
    ):
        ret = DatabaseCorruptError(f"database file is corrupt or not SQLite ({text})")
    else:
        ret = DatabaseError(f"database error ({text})")
    ret.__cause__ = err
    return ret


def _connect(path: str, timeout: float, *, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, timeout=timeout, uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False)
    conn.isolation_level = None  # explicit BEGIN / COMMIT
    return conn


def _check_format(conn: sqlite3.Connection) -> bool:
    """Raise for a file that is not ours; True if the tables still need creating."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app_id == APPLICATION_ID:
        if version != SCHEMA_VERSION:
            raise DatabaseCorruptError(
                f"history database version {version}, this library reads {SCHEMA_VERSION}"
            )
        missing = [t for t in _TABLES if t not in tables]
        if missing:
            raise DatabaseCorruptError(f"history database lacks tables: {' '.join(missing)}")
        return False
    if app_id != 0 or tables:
        raise DatabaseCorruptError("not a history database (other tables or application id)")
    return True


def _prepare(conn: sqlite3.Connection) -> None:
    """WAL, the format check and the tables (in one write transaction)."""
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise DatabaseError(f"cannot enable WAL (journal_mode is {mode})")
    conn.execute("PRAGMA synchronous = NORMAL")
    if not _check_format(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _check_format(conn):  # another process may have won the race
            for stmt in SCHEMA_SQL.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _machine_record(row: Sequence[Any]) -> MachineRecord:
    schema_text = row[3]
    return MachineRecord(
        mach_id=row[1],
        state_names=tuple(json.loads(row[2])),
        schema=schema_from_json(schema_text) if schema_text else None,
        first_tracking=from_us(row[4]),
        last_tracking=from_us(row[5]),
        last_sync=from_us(row[6]),
        m_time=tuple(json.loads(row[7])),
        m_time_sum=row[8],
        mach_tick=row[9],
        queue_tick=row[10],
        next_id=row[11],
    )


def load_machine_record(
    path: str | os.PathLike[str], mach_id: str, *, busy_timeout: float = 5.0
) -> MachineRecord | None:
    """The stored machine record of ``mach_id`` (read-only; ``None`` if absent).

    Raises :class:`DatabaseCorruptError` for a file that is not a history
    database and :class:`DatabaseLockedError` when it stays locked.
    """
    if not os.path.exists(path):
        return None
    try:
        conn = _connect(os.fspath(path), busy_timeout, read_only=True)
    except sqlite3.Error as err:
        raise _translate(err) from err
    try:
        if _check_format(conn):
            return None
        row = conn.execute(
            f"SELECT {_MACHINE_COLS} FROM machines WHERE mach_id = ?", (mach_id,)
        ).fetchone()
        return None if row is None else _machine_record(row)
    except sqlite3.Error as err:
        raise _translate(err) from err
    finally:
        conn.close()


def list_machines(
    path: str | os.PathLike[str], *, busy_timeout: float = 5.0
) -> list[MachineRecord]:
    """Every machine record in a history database, by machine id (none: ``[]``)."""
    if not os.path.exists(path):
        return []
    try:
        conn = _connect(os.fspath(path), busy_timeout, read_only=True)
    except sqlite3.Error as err:
        raise _translate(err) from err
    try:
        if _check_format(conn):
            return []
        rows = conn.execute(f"SELECT {_MACHINE_COLS} FROM machines ORDER BY mach_id").fetchall()
        return [_machine_record(r) for r in rows]
    except sqlite3.Error as err:
        raise _translate(err) from err
    finally:
        conn.close()


# ----- the writer


#: the machine record: names, m_time, mach_tick, queue_tick, next_id, last_tracking (us),
#: schema json
_Snapshot = tuple[tuple[str, ...], Sequence[int], int, int, int, int, "str | None"]
_Item = tuple["RawTime", "RawTx | None"]


def _writer_lock(path: str, mach_id: str) -> int | None:
    """An exclusive lock on ``<path>.<hash of mach_id>.lock``: one writer per machine.

    ``flock`` locks are released by the kernel when the process dies, so a
    killed writer never blocks the next one. None where there is no ``flock``
    (Windows) or no file (``:memory:``).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    if path == ":memory:" or path.startswith("file:"):
        return None
    digest = hashlib.sha256(mach_id.encode()).hexdigest()[:16]
    fd = os.open(f"{path}.{digest}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        raise WriterExistsError(
            f"the history of {mach_id} in {path} is already open for writing"
            " (by this or another process)"
        ) from err
    return fd


def _writer_unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # releases the flock


class _Writer:
    """Owns the write connection; drains the queue in its own thread."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        machine_id: int,
        state_ids: list[int],
        max_id: int,
        cfg: SqliteConfig,
        snapshot: _Snapshot,
        on_error: Callable[[DatabaseError], None],
        on_synced: Callable[[datetime], None],
    ) -> None:
        self.conn = conn
        self.inbox: deque[_Item] = deque()
        self.enqueued = 0
        #: the latest machine record and its version (replaced, never mutated)
        self.snapshot = snapshot
        self.snap_version = 0
        self._snap_written = 0
        self.kicked = 0
        self.batch = cfg.batch_size
        #: records queued and not committed, at most (the tracker blocks past it)
        self.max_pending = cfg.max_pending or 2 * cfg.batch_size
        self.peak_pending = 0
        self.dropped = 0
        self._interval = cfg.flush_interval
        self._max_records = cfg.max_records
        self._now = cfg.now
        self._mid = machine_id
        self._state_ids = state_ids
        self._max_id = max_id
        self._saved_since_gc = 0
        self._gc_requested = False
        self._on_error = on_error
        self._on_synced = on_synced
        self.wake = threading.Event()
        self._cond = threading.Condition()
        self._retry: list[_Item] = []
        self._stop = False
        # guarded by _cond
        self.written = 0
        self.attempts = 0
        self.failures = 0
        self.error: DatabaseError | None = None
        self._thread = threading.Thread(target=self._run, name="am-history-writer", daemon=True)
        self._thread.start()

    # producer side (the machine's thread)

    def publish(self, snapshot: _Snapshot) -> None:
        self.snapshot = snapshot
        self.snap_version += 1

    def wait_written(self, target: int, snap_target: int, *, gc: bool = False) -> None:
        """Block until ``target`` records and the machine record version
        ``snap_target`` are committed; raise the error of a failed try."""
        with self._cond:
            failures = self.failures
            attempts = self.attempts
            if gc:
                self._gc_requested = True
            self.wake.set()
            while (
                self.written < target
                or self._snap_written < snap_target
                or (gc and self.attempts == attempts)
            ):
                if self.failures != failures and self.error is not None:
                    raise self.error
                if not self._thread.is_alive():
                    raise DatabaseError("the history writer thread stopped")
                self._cond.wait(1.0)

    def make_room(self) -> bool:
        """Wait until a record may be queued; False: drop it (the writer is failing)."""
        with self._cond:
            while self.enqueued - self.written >= self.max_pending:
                if self.error is not None or not self._thread.is_alive():
                    return False
                self.wake.set()
                self._cond.wait(0.1)
        return True

    def stop(self) -> None:
        self._stop = True
        self.wake.set()
        self._thread.join()

    # writer side

    def _run(self) -> None:
        while True:
            self.wake.wait(self._interval)
            self.wake.clear()
            stopping = self._stop
            self._flush()
            if stopping:
                return

    def _flush(self) -> None:
        batch = self._retry
        self._retry = []
        inbox = self.inbox
        while True:
            try:
                batch.append(inbox.popleft())
            except IndexError:
                break
        gc = self._gc_requested
        # read after draining: the machine record is at least as new as the batch
        snap_version = self.snap_version
        snapshot = self.snapshot
        fresh = snap_version != self._snap_written
        if not batch and not gc and not fresh:
            with self._cond:
                self.attempts += 1
                self._cond.notify_all()
            return
        try:
            self._write(batch, snapshot if fresh else None, gc)
        except Exception as exc:
            err = _translate(exc)
            self._retry = batch
            try:
                self._on_error(err)
            except Exception:  # pragma: no cover - a broken error handler
                pass
            with self._cond:
                self.error = err
                self.failures += 1
                self.attempts += 1
                self._cond.notify_all()
            return
        with self._cond:
            if gc:
                self._gc_requested = False
            self._snap_written = snap_version
            self.written += len(batch)
            self.attempts += 1
            self.error = None
            self._cond.notify_all()

    def _write(self, batch: list[_Item], snap: _Snapshot | None, gc: bool) -> None:
        mid = self._mid
        state_ids = self._state_ids
        times: list[tuple[Any, ...]] = []
        ticks: list[tuple[Any, ...]] = []
        txs: list[tuple[Any, ...]] = []
        add_tick = ticks.append
        for t, x in batch:
            rid = t[0]
            times.append((mid, rid, t[1].value, *t[2:8], t[10]))
            for sid, tick, d in zip(state_ids, t[8], t[9], strict=True):
                active = tick & 1
                add_tick(
                    (mid, rid, sid, tick, d, active, active & (d > 0), (tick - d) & 1 & ~active)
                )
            if x is not None:
                txs.append(
                    (mid, rid, *x[0:1], *x[2:11], json.dumps(list(x[11])), json.dumps(x[12]))
                )
        conn = self.conn
        now = self._now()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if times:
                conn.executemany("INSERT INTO times VALUES (?,?,?,?,?,?,?,?,?,?)", times)
            if ticks:
                conn.executemany("INSERT INTO ticks VALUES (?,?,?,?,?,?,?,?)", ticks)
            if txs:
                conn.executemany(
                    "INSERT INTO transitions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", txs
                )
            if snap is not None:
                names, m_time, mach_tick, queue_tick, next_id, last_tracking, schema = snap
                conn.execute(
                    "UPDATE machines SET state_names = ?, m_time = ?, m_time_sum = ?,"
                    " mach_tick = ?, queue_tick = ?, next_id = ?, last_tracking = ?,"
                    " last_sync = ?, schema = COALESCE(?, schema) WHERE id = ?",
                    (
                        json.dumps(list(names)),
                        json.dumps(list(m_time)),
                        sum(m_time),
                        mach_tick,
                        queue_tick,
                        next_id,
                        last_tracking,
                        to_us(now),
                        schema,
                        mid,
                    ),
                )
            max_id = times[-1][1] if times else self._max_id
            saved = self._saved_since_gc + len(times)
            if gc or saved > self._max_records * 1.5:
                _gc(conn, mid, max_id - self._max_records)
                saved = 0
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._max_id = max_id
        self._saved_since_gc = saved
        self._on_synced(now)


def _gc(conn: sqlite3.Connection, machine_id: int, cutoff: int) -> None:
    """Delete every record with an id <= ``cutoff``: times, ticks and transitions."""
    if cutoff <= 0:
        return
    conn.execute("DELETE FROM times WHERE machine_id = ? AND id <= ?", (machine_id, cutoff))
    conn.execute("DELETE FROM ticks WHERE machine_id = ? AND time_id <= ?", (machine_id, cutoff))
    conn.execute(
        "DELETE FROM transitions WHERE machine_id = ? AND time_id <= ?", (machine_id, cutoff)
    )


def _clamp(value: int) -> int:
    return max(-_INT64 - 1, min(_INT64, value))


# ----- the backend


class SqliteHistory(History):
    """History in a SQLite file (Go ``gorm.NewMemory`` + ``NewDb``).

    Opens (or creates) ``path`` in WAL mode and continues the records of the
    same machine id if the file has them: ids go on from the stored
    ``next_id``, and :attr:`previous_record` holds the machine record as it was
    found (use :meth:`restore` to import it into the machine). Records are
    written by a writer thread; call :meth:`sync` (or ``await sync_async()``)
    before querying fresh records and :meth:`close` at the end (disposing the
    machine closes it too).

    Raises :class:`DatabaseCorruptError` / :class:`DatabaseLockedError` /
    :class:`DatabaseError` when the file cannot be used; the file is then left
    untouched.
    """

    _kind = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        mach: Machine,
        config: Config | None = None,
        *,
        on_error: ErrorHandler | None = None,
    ) -> None:
        if config is None:
            cfg = SqliteConfig()
        elif isinstance(config, SqliteConfig):
            cfg = config
        else:
            cfg = SqliteConfig(**attrs.asdict(config, recurse=False))
        if mach.is_disposed:
            raise DisposedError(f"machine {mach.id} is disposed")
        resolved = resolve_config(mach, cfg)
        tracked = resolved.tracked_states or ()
        self._path = os.fspath(path)
        self._read_lock = threading.Lock()
        opened_at = cfg.now().astimezone(UTC)
        wconn: sqlite3.Connection | None = None
        rconn: sqlite3.Connection | None = None
        self._lock_fd = _writer_lock(self._path, mach.id)
        try:
            wconn = _connect(self._path, cfg.busy_timeout)
            _prepare(wconn)
            mid, previous, state_ids, max_id, last_sum = self._open_machine(
                wconn, mach, tracked, to_us(opened_at), resolved.max_records
            )
            rconn = _connect(self._path, cfg.busy_timeout)
        except BaseException as err:
            for c in (wconn, rconn):
                if c is not None:
                    c.close()
            _writer_unlock(self._lock_fd)
            if isinstance(err, sqlite3.Error):
                raise _translate(err) from err
            raise
        self._rconn = rconn
        self._db_id = mid
        self._state_pos = {sid: i for i, sid in enumerate(state_ids)}
        try:
            super().__init__(mach, cfg, previous=previous, last_sum=last_sum, on_error=on_error)
        except BaseException:
            wconn.close()
            rconn.close()
            _writer_unlock(self._lock_fd)
            raise
        self._next_id = max(self._next_id, max_id + 1)
        self._first_tracking = previous.first_tracking if previous is not None else opened_at
        self._last_tracking = opened_at
        self._last_tracking_us = to_us(opened_at)
        self._schema_json: str | None = (
            schema_to_json(self._schema) if self._schema is not None else None
        )
        self._writer = _Writer(
            wconn,
            mid,
            state_ids,
            max_id,
            cfg,
            self._snapshot(),  # version 0: the stored row stays until something changes
            self._report_db_error,
            self._set_last_sync,
        )
        self._bind()

    @staticmethod
    def _open_machine(
        conn: sqlite3.Connection,
        mach: Machine,
        tracked: Sequence[str],
        now_us: int,
        max_records: int,
    ) -> tuple[int, MachineRecord | None, list[int], int, int | None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                f"SELECT {_MACHINE_COLS} FROM machines WHERE mach_id = ?", (mach.id,)
            ).fetchone()
            previous: MachineRecord | None = None
            if row is None:
                m_time = mach.time()
                cur = conn.execute(
                    "INSERT INTO machines (mach_id, state_names, schema, first_tracking,"
                    " last_tracking, last_sync, m_time, m_time_sum, mach_tick, queue_tick,"
                    " next_id) VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, 1)",
                    (
                        mach.id,
                        json.dumps(list(mach.state_names)),
                        now_us,
                        now_us,
                        now_us,
                        json.dumps(list(m_time)),
                        sum(m_time),
                        mach.machine_tick(),
                        mach.queue_tick(),
                    ),
                )
                mid = cur.lastrowid
                assert mid is not None
            else:
                mid = row[0]
                previous = _machine_record(row)
                conn.execute("UPDATE machines SET last_tracking = ? WHERE id = ?", (now_us, mid))
            conn.executemany(
                "INSERT OR IGNORE INTO states (machine_id, name) VALUES (?, ?)",
                [(mid, s) for s in tracked],
            )
            ids = dict(
                conn.execute("SELECT name, id FROM states WHERE machine_id = ?", (mid,)).fetchall()
            )
            last = conn.execute(
                "SELECT id, m_time_sum FROM times WHERE machine_id = ? ORDER BY id DESC LIMIT 1",
                (mid,),
            ).fetchone()
            max_id, last_sum = (0, None) if last is None else (last[0], last[1])
            _gc(conn, mid, max_id - max_records)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return mid, previous, [ids[s] for s in tracked], max_id, last_sum

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    @property
    def config(self) -> SqliteConfig:
        """The effective configuration (``tracked_states`` resolved)."""
        cfg = self._config
        assert isinstance(cfg, SqliteConfig)
        return cfg

    # ----- writing

    def _snapshot(self) -> _Snapshot:
        return (
            self._mr_names,
            self._m_time,
            self._mach_tick,
            self._queue_tick,
            self._next_id,
            self._last_tracking_us,
            self._schema_json,
        )

    def _store(self, time: RawTime, tx: RawTx | None, now_us: int) -> None:
        w = self._writer
        if w.enqueued - w.written >= w.max_pending and not w.make_room():
            w.dropped += 1
            if w.dropped == 1 or w.dropped % 1000 == 0:
                self._report(
                    DatabaseError(
                        f"history of {self._mach_id}: the writer is failing ({w.error});"
                        f" {w.dropped} record(s) dropped"
                    )
                )
            return
        w.inbox.append((time, tx))
        w.snapshot = (
            self._mr_names,
            self._m_time,
            self._mach_tick,
            self._queue_tick,
            self._next_id,
            self._last_tracking_us,
            self._schema_json,
        )
        w.snap_version += 1
        n = w.enqueued = w.enqueued + 1
        if n - w.written > w.peak_pending:
            w.peak_pending = n - w.written
        if n - w.kicked >= w.batch:
            w.kicked = n
            w.wake.set()

    def _touched(self) -> None:
        if self._closed:
            return
        self._writer.publish(self._snapshot())

    def _reload_machine(self) -> None:
        super()._reload_machine()
        if self._schema is not None:
            self._schema_json = schema_to_json(self._schema)

    def _set_last_sync(self, now: datetime) -> None:
        self._last_sync_us = to_us(now)

    def _report_db_error(self, err: DatabaseError) -> None:
        self._report(err)

    @property
    def dropped(self) -> int:
        """Records dropped because the writer was failing with ``max_pending`` queued."""
        return self._writer.dropped

    def sync(self) -> None:
        """Write every pending record and wait for the commit (blocking).

        Raises the :class:`DatabaseError` of a failed write; the records stay
        queued and the next flush retries them.
        """
        self._check_open()
        self._writer.wait_written(self._writer.enqueued, self._writer.snap_version)

    async def sync_async(self) -> None:
        """:meth:`sync` in a worker thread."""
        self._check_open()
        w = self._writer
        await anyio.to_thread.run_sync(w.wait_written, w.enqueued, w.snap_version)

    def gc(self) -> None:
        """Write what is pending and delete every record beyond ``max_records`` now
        (normally done after 1.5 x ``max_records`` new records)."""
        self._check_open()
        self._writer.wait_written(self._writer.enqueued, self._writer.snap_version, gc=True)

    def close(self) -> None:
        """Stop tracking, write what is pending, close the database.

        If the final write fails the error is raised and the history stays
        open (records still queued): call ``close()`` again later.
        """
        if self._closed:
            return
        self._detach()
        self._close_db()

    async def close_async(self) -> None:
        """:meth:`close` with the final write in a worker thread."""
        if self._closed:
            return
        self._detach()
        await anyio.to_thread.run_sync(self._close_db)

    def _close_db(self) -> None:
        """Flush, stop the writer, close both connections (any thread)."""
        if self._closed:
            return
        w = self._writer
        w.wait_written(w.enqueued, w.snap_version)
        self._closed = True
        w.stop()
        w.conn.close()
        with self._read_lock:
            self._rconn.close()
        _writer_unlock(self._lock_fd)
        self._lock_fd = None

    async def find_latest_async(
        self, query: Query | None = None, limit: int = 0, *, with_tx: bool = False
    ) -> list[MemoryRecord]:
        """:meth:`find_latest` in a worker thread."""
        q = Query() if query is None else query
        self._validate(q, limit)
        return await anyio.to_thread.run_sync(self._find, q, limit, with_tx)

    def _check_open(self) -> None:
        if self._closed:
            raise HistoryClosedError(f"history of {self._mach_id} ({self._path}) is closed")

    # ----- reading

    def _find(self, query: Query, limit: int, with_tx: bool) -> list[MemoryRecord]:
        self._check_open()
        mid = self._db_id
        join_sql: list[str] = []
        join_params: list[Any] = []
        where: list[str] = [
            "t.machine_id = ?",
            "t.id > (SELECT COALESCE(MAX(id), 0) FROM times WHERE machine_id = ?) - ?",
        ]
        params: list[Any] = [mid, mid, self._config.max_records]
        state_ids = self._writer._state_ids
        alias: dict[str, str] = {}
        for n, state in enumerate(query.states()):
            a = f"k{n}"
            alias[state] = a
            join_sql.append(
                f"LEFT JOIN ticks {a} ON {a}.machine_id = t.machine_id"
                f" AND {a}.time_id = t.id AND {a}.state_id = ?"
            )
            join_params.append(state_ids[self._tracked_pos[state]])
        for s in query.active:
            where.append(f"{alias[s]}.active = 1")
        for s in query.inactive:
            where.append(f"COALESCE({alias[s]}.active, 0) = 0")
        for s in query.activated:
            where.append(f"{alias[s]}.activated = 1")
        for s in query.deactivated:
            where.append(f"{alias[s]}.deactivated = 1")
        for s, bound in query.start.mtime.items():
            where.append(f"COALESCE({alias[s]}.tick, 0) >= ?")
            params.append(_clamp(bound))
        for s, bound in query.end.mtime.items():
            where.append(f"COALESCE({alias[s]}.tick, 0) <= ?")
            params.append(_clamp(bound))
        if query.start.h_time is not None:
            where.append("t.h_time >= ?")
            params.append(_clamp(to_us(query.start.h_time)))
        if query.end.h_time is not None:
            where.append("t.h_time <= ?")
            params.append(_clamp(to_us(query.end.h_time)))
        for cond_field, col in SCALAR_FIELDS:
            lo = getattr(query.start, cond_field)
            hi = getattr(query.end, cond_field)
            if lo is not None:
                where.append(f"t.{col} >= ?")
                params.append(_clamp(lo))
            if hi is not None:
                where.append(f"t.{col} <= ?")
                params.append(_clamp(hi))
        cols = (
            "t.id, t.mut_type, t.m_time_sum, t.m_time_tracked_sum, t.m_time_diff_sum,"
            " t.m_time_tracked_diff_sum, t.m_time_record_diff_sum, t.h_time, t.mach_tick"
        )
        want_tx = with_tx and self._store_tx
        if want_tx:
            cols += (
                ", x.tx_id, x.source_tx, x.source_mach, x.is_auto, x.is_accepted, x.is_check,"
                " x.is_broken, x.queue_len, x.queued_at, x.executed_at, x.called, x.arguments"
            )
            join_sql.append(
                "LEFT JOIN transitions x ON x.machine_id = t.machine_id AND x.time_id = t.id"
            )
        sql = (
            f"SELECT {cols} FROM times t {' '.join(join_sql)} WHERE {' AND '.join(where)}"
            " ORDER BY t.id DESC LIMIT ?"
        )
        all_params = [*join_params, *params, limit if limit > 0 else -1]
        try:
            with self._read_lock:
                self._check_open()
                rows = self._rconn.execute(sql, all_params).fetchall()
                ticks = self._read_ticks([r[0] for r in rows])
        except sqlite3.Error as err:
            raise _translate(err) from err
        n = len(self._tracked)
        out: list[MemoryRecord] = []
        for r in rows:
            rid = r[0]
            tick_list, diff_list = ticks.get(rid, ([0] * n, [0] * n))
            time_rec = TimeRecord(
                rid,
                MutationType(r[1]),
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                from_us(r[7]),
                tuple(tick_list),
                tuple(diff_list),
                r[8],
            )
            tx_rec: TransitionRecord | None = None
            if want_tx and r[9] is not None:
                tx_rec = TransitionRecord(
                    r[9],
                    rid,
                    r[10],
                    r[11],
                    bool(r[12]),
                    bool(r[13]),
                    bool(r[14]),
                    bool(r[15]),
                    r[16],
                    r[17],
                    r[18],
                    tuple(json.loads(r[19])),
                    json.loads(r[20]),
                )
            out.append(MemoryRecord(time_rec, tx_rec))
        return out

    def _read_ticks(self, ids: list[int]) -> dict[int, tuple[list[int], list[int]]]:
        """``{time_id: (ticks, diffs)}`` in tracked order (missing rows: 0)."""
        out: dict[int, tuple[list[int], list[int]]] = {}
        if not ids:
            return out
        n = len(self._tracked)
        pos = self._state_pos
        mid = self._db_id
        lo, hi = min(ids), max(ids)
        if hi - lo + 1 <= 2 * len(ids):
            queries = [
                (
                    "SELECT time_id, state_id, tick, diff FROM ticks"
                    " WHERE machine_id = ? AND time_id BETWEEN ? AND ?",
                    [mid, lo, hi],
                )
            ]
        else:
            queries = []
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i : i + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                queries.append(
                    (
                        "SELECT time_id, state_id, tick, diff FROM ticks"
                        f" WHERE machine_id = ? AND time_id IN ({marks})",
                        [mid, *chunk],
                    )
                )
        for sql, params in queries:
            for time_id, state_id, tick, diff in self._rconn.execute(sql, params):
                at = pos.get(state_id)
                if at is None:
                    continue
                entry = out.get(time_id)
                if entry is None:
                    entry = out[time_id] = ([0] * n, [0] * n)
                entry[0][at] = tick
                entry[1][at] = diff
        return out
