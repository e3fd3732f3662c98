"""History: tracking, traversal, both backends, restarts and bad input.

Every scenario that makes sense for both backends runs on both; the reference's
shared assertions (``AssertBasics``, ``AssertGc``) come from ``history_util``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from history_util import BACKENDS, BASIC, FakeClock, assert_basics, assert_gc, factory

import asyncmachine_trio as am
from asyncmachine_trio import history as amhist

Q = amhist.Query
C = amhist.ConditionTime


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_hist(
    kind: str, tmp_path: Path, mach: am.Machine, **cfg: Any
) -> amhist.MemoryHistory | amhist.SqliteHistory:
    if kind == "memory":
        return amhist.MemoryHistory(mach, amhist.Config(**cfg))
    return amhist.SqliteHistory(tmp_path / "hist.sqlite", mach, amhist.SqliteConfig(**cfg))


@pytest.fixture
def closing() -> Iterator[list[amhist.History]]:
    """Histories appended here are closed after the test."""
    opened: list[amhist.History] = []
    yield opened
    for h in opened:
        h.close()


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# ----- the reference's shared assertions


def test_basics(kind: str, tmp_path: Path) -> None:
    """TestTrack / TestGormTrack: 50 toggles of Start, then AssertBasics."""
    mach = am.Machine(BASIC, id="MyMach1")
    make = factory(kind, tmp_path, batch_size=10)
    mem = make(mach, amhist.Config(tracked_states=["Start"]))
    try:
        assert_basics(mem, 50)
    finally:
        mem.close()


def test_gc(kind: str, tmp_path: Path) -> None:
    """TestBboltTrack shape: 50 toggles, batch 10, max 30 records, GC check."""
    mach = am.Machine(BASIC, id="MyMach2")
    make = factory(kind, tmp_path, batch_size=10)
    mem = make(mach, amhist.Config(tracked_states=["Start"], max_records=30))
    try:
        assert_basics(mem, 50)
        assert_gc(mem)
        latest = mem.find_latest()
        assert [r.time.id for r in latest] == list(range(50, 20, -1))
        if isinstance(mem, amhist.SqliteHistory):
            path = Path(mem.path)
            # GC ran at 1.5 x max_records (after 50 saved): times and ticks alike
            assert rows(path, "SELECT COUNT(*) FROM times") == [(30,)]
            assert rows(path, "SELECT COUNT(*) FROM ticks") == [(30,)]
            for _ in range(20):
                mach.toggle1("Start")
            mem.sync()
            # not yet due: the extra rows are stored but never returned
            assert rows(path, "SELECT COUNT(*) FROM times") == [(50,)]
            assert_gc(mem)
            mem.gc()
            assert rows(path, "SELECT COUNT(*) FROM times") == [(30,)]
            assert rows(path, "SELECT MIN(time_id), COUNT(*) FROM ticks") == [(41, 30)]
    finally:
        mem.close()


@pytest.mark.parametrize("kind", BACKENDS)
def test_track_many(kind: str, tmp_path: Path) -> None:
    """TestTrackMany / TestGormTrackMany: 50,000 tracked toggles."""
    mach = am.Machine(BASIC, id="MyMach3")
    make = factory(kind, tmp_path, batch_size=1000)
    mem = make(mach, amhist.Config(tracked_states=["Start"], max_records=10_000_000))
    try:
        t0 = time.perf_counter()
        assert_basics(mem, 50_000)
        elapsed = time.perf_counter() - t0
        assert len(mem.find_latest()) == 50_000
        assert mem.machine_record().next_id == 50_001
        assert elapsed < 30  # generous: the suite runs on loaded machines too
    finally:
        mem.close()


# ----- tracking configuration


def test_check_and_rejected(kind: str, tmp_path: Path) -> None:
    mach = am.Machine({"A": am.State(), "B": am.State(require=("A",))})
    h = open_hist(kind, tmp_path, mach, track_rejected=False, store_transitions=True)
    mach.add1("B")  # canceled: B requires A
    mach.can_add1("A")  # check: never recorded
    mach.add1("A")
    h.sync()
    assert [r.time.id for r in h.find_latest()] == [1]
    h.close()

    mach2 = am.Machine({"A": am.State(), "B": am.State(require=("A",))}, id="m2")
    h2 = open_hist(kind, tmp_path, mach2, track_rejected=True, store_transitions=True)
    mach2.add1("B")
    mach2.can_add1("A")
    mach2.add1("A")
    h2.sync()
    got = h2.find_latest(with_tx=True)
    assert [r.time.id for r in got] == [2, 1]
    rejected = got[1]
    assert rejected.transition is not None
    assert not rejected.transition.is_accepted
    assert rejected.time.m_time_diff_sum == 0
    assert rejected.transition.called == ("B",)
    assert got[0].transition is not None and got[0].transition.is_accepted
    h2.close()


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        # no filters: everything accepted
        ({}, ["A", "B", "C", "AB"]),
        # called allowlist
        ({"called": ["A"]}, ["A", "AB"]),
        # called blocklist
        ({"called": ["A"], "called_exclude": True}, ["B", "C"]),
        # changed allowlist: C is called but changes nothing the first time? no: it activates
        ({"changed": ["B"]}, ["B", "AB"]),
        ({"changed": ["B"], "changed_exclude": True}, ["A", "C"]),
        # two allowlists: either one
        ({"called": ["C"], "changed": ["A"]}, ["A", "C", "AB"]),
        # a blocklist hit always wins over an allowlist hit
        ({"called": ["A"], "changed": ["B"], "changed_exclude": True}, ["A"]),
        ({"called": ["B"], "called_exclude": True, "changed": ["A"]}, ["A"]),
    ],
)
def test_filters(kind: str, tmp_path: Path, cfg: dict[str, Any], expected: list[str]) -> None:
    schema = {"A": am.State(multi=True), "B": am.State(multi=True), "C": am.State()}
    mach = am.Machine(schema)
    h = open_hist(kind, tmp_path, mach, store_transitions=True, **cfg)
    mach.add1("A")
    mach.add1("B")
    mach.add1("C")
    mach.add(["A", "B"])
    h.sync()
    got = [
        "".join(r.transition.called) if r.transition else "" for r in h.find_latest(with_tx=True)
    ]
    assert got[::-1] == expected
    h.close()


def test_tracked_states_config(tmp_path: Path) -> None:
    mach = am.Machine({"A": am.State(), "B": am.State(), "C": am.State()})
    h = amhist.MemoryHistory(mach, amhist.Config(tracked_states=["A"], called=["B"]))
    assert h.tracked_states == ("A", "B")  # allowlists are tracked automatically
    h2 = amhist.MemoryHistory(mach, amhist.Config(called=["B"], called_exclude=True))
    assert h2.tracked_states == ("A", "B", "C", "Exception")  # None: all states
    assert h2.index(["C", "Nope"]) == [2, -1]
    assert h2.index1("A") == 0
    assert h2.is_tracked(["A", "C"]) and not h2.is_tracked(["A", "Nope"])
    with pytest.raises(amhist.ConfigError, match="Nope"):
        amhist.MemoryHistory(mach, amhist.Config(tracked_states=["A", "Nope"]))
    with pytest.raises(amhist.ConfigError, match="no states"):
        amhist.MemoryHistory(mach, amhist.Config(tracked_states=[]))
    with pytest.raises(amhist.ConfigError):
        amhist.Config(max_records=0)
    with pytest.raises(amhist.ConfigError):
        amhist.Config(tracked_states="A")
    with pytest.raises(amhist.ConfigError):
        amhist.SqliteConfig(batch_size=0)
    with pytest.raises(amhist.ConfigError):
        amhist.SqliteHistory(tmp_path / "x.sqlite", mach, amhist.Config(tracked_states=["Z"]))
    assert not (tmp_path / "x.sqlite").exists()  # validated before touching the disk
    other = am.Machine({"A": am.State()}, id="other")
    rec = amhist.MemoryHistory(other).machine_record()
    with pytest.raises(amhist.ConfigError, match="other"):
        amhist.MemoryHistory(mach, machine_record=rec)
    disposed = am.Machine({"A": am.State()})
    disposed.dispose()
    with pytest.raises(am.DisposedError):
        amhist.MemoryHistory(disposed)
    with pytest.raises(am.DisposedError):
        amhist.SqliteHistory(tmp_path / "d.sqlite", disposed)
    assert not (tmp_path / "d.sqlite").exists()
    for x in (h, h2):
        x.close()


# ----- records and queries


def scenario(kind: str, tmp_path: Path) -> tuple[amhist.History, FakeClock]:
    """A, B (Multi), C; one record per microsecond of fake time."""
    clock = FakeClock()
    schema = {"A": am.State(), "B": am.State(multi=True), "C": am.State(remove=("A",))}
    mach = am.Machine(schema, id="scn")
    h = open_hist(kind, tmp_path, mach, now=clock, store_transitions=True)
    steps: list[tuple[str, list[str]]] = [
        ("add", ["A"]),  # 1: A activated            A=1 B=0 C=0
        ("add", ["B"]),  # 2: B activated            A=1 B=1 C=0
        ("add", ["B"]),  # 3: B re-entered (multi)   A=1 B=3 C=0
        ("add", ["C"]),  # 4: C activated, A removed: A=2 B=3 C=1
        ("remove", ["B"]),  # 5: B deactivated       A=2 B=4 C=1
        ("set", ["A"]),  # 6: A on, C off            A=3 B=4 C=2
    ]
    for op, states in steps:
        clock.advance(10)
        getattr(mach, op)(states)
    h.sync()
    return h, clock


def ids(records: list[amhist.MemoryRecord]) -> list[int]:
    return [r.time.id for r in records]


def test_records(kind: str, tmp_path: Path) -> None:
    h, clock = scenario(kind, tmp_path)
    got = h.find_latest(with_tx=True)
    assert ids(got) == [6, 5, 4, 3, 2, 1]
    assert [r.time.m_time_tracked for r in reversed(got)] == [
        (1, 0, 0, 0),
        (1, 1, 0, 0),
        (1, 3, 0, 0),
        (2, 3, 1, 0),
        (2, 4, 1, 0),
        (3, 4, 2, 0),
    ]
    assert [r.time.m_time_tracked_diff for r in reversed(got)][3] == (1, 0, 1, 0)
    first, last = got[-1].time, got[0].time
    assert first.mut_type is am.MutationType.ADD and last.mut_type is am.MutationType.SET
    assert first.h_time == clock.at(10) and last.h_time == clock.at(60)
    assert [r.time.m_time_sum for r in reversed(got)] == [1, 2, 4, 6, 7, 9]
    assert [r.time.m_time_diff_sum for r in reversed(got)] == [1, 1, 2, 2, 1, 2]
    assert [r.time.m_time_record_diff_sum for r in reversed(got)] == [0, 1, 2, 2, 1, 2]
    assert got[0].time.mach_tick == 0
    tx = got[0].transition
    assert tx is not None
    assert tx.called == ("A",) and tx.is_accepted and not tx.is_auto and tx.time_record_id == 6
    assert tx.queued_at > 0 and tx.executed_at > 0
    assert h.find_latest(limit=1)[0].transition is None  # with_tx=False
    h.close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (Q(), [6, 5, 4, 3, 2, 1]),
        (Q(active=["A"]), [6, 3, 2, 1]),
        (Q(inactive=["A"]), [5, 4]),
        (Q(activated=["A"]), [6, 1]),
        (Q(deactivated=["A"]), [4]),
        (Q(activated=["B"]), [3, 2]),  # a Multi re-entry counts
        (Q(deactivated=["B"]), [5]),
        (Q(active=["B"], inactive=["C"]), [3, 2]),
        (Q(activated=["C"], deactivated=["A"]), [4]),
        (Q(inactive=["Exception"]), [6, 5, 4, 3, 2, 1]),
        (Q(start=C(mtime={"B": 3})), [6, 5, 4, 3]),
        (Q(start=C(mtime={"B": 3}), end=C(mtime={"B": 3, "C": 0})), [3]),
        (Q(start=C(m_time_sum=4), end=C(m_time_sum=7)), [5, 4, 3]),
        (Q(end=C(m_time_sum=2)), [2, 1]),
        (Q(start=C(m_time_tracked_sum=9)), [6]),
        (Q(start=C(m_time_diff=2), end=C(m_time_diff=2)), [6, 4, 3]),
        (Q(start=C(m_time_tracked_diff=2)), [6, 4, 3]),
        (Q(start=C(m_time_record_diff=1), end=C(m_time_record_diff=1)), [5, 2]),
        (Q(start=C(mach_tick=0), end=C(mach_tick=0)), [6, 5, 4, 3, 2, 1]),
        (Q(start=C(mach_tick=1)), []),
        (Q(active=["A"], start=C(m_time_sum=2)), [6, 3, 2]),
    ],
)
def test_queries(kind: str, tmp_path: Path, query: amhist.Query, expected: list[int]) -> None:
    h, _ = scenario(kind, tmp_path)
    assert ids(h.find_latest(query)) == expected
    assert ids(h.find_latest(query, 2)) == expected[:2]
    h.close()


def test_human_time(kind: str, tmp_path: Path) -> None:
    h, clock = scenario(kind, tmp_path)
    at = clock.at
    assert ids(h.find_latest(Q(start=C(h_time=at(30)), end=C(h_time=at(50))))) == [5, 4, 3]
    assert ids(h.find_latest(Q(start=C(h_time=at(31)), end=C(h_time=at(49))))) == [4]
    assert ids(h.find_latest(Q(end=C(h_time=at(20))))) == [2, 1]
    # predefined queries
    assert h.activated_between("A", at(0), at(10))
    assert not h.activated_between("A", at(11), at(59))
    assert h.activated_between("A", at(60), at(60))
    assert h.deactivated_between("A", at(0), at(100))
    assert not h.deactivated_between("C", at(0), at(59))
    assert h.deactivated_between("C", at(60), at(61))
    assert h.activated_between("B", at(25), at(35))  # re-entered at 30
    # A was active from 10 to 40 and from 60: nothing recorded in 15..25 but A was on
    assert h.active_between("A", at(15), at(25))
    assert not h.active_between("A", at(41), at(59))
    assert h.inactive_between("A", at(41), at(59))
    assert not h.inactive_between("A", at(11), at(39))
    assert not h.inactive_between("C", at(0), at(5))  # no record yet: nothing is known
    assert not h.active_between("C", at(0), at(5))
    assert not h.activated_between("A", at(60), at(10))  # start after end
    h.close()


def test_machine_record(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    mach = am.Machine({"A": am.State(), "B": am.State()}, id="mr")
    h = open_hist(kind, tmp_path, mach, now=clock, called=["A"], store_schema=True)
    rec = h.machine_record()
    assert rec.mach_id == "mr" and rec.next_id == 1 and rec.m_time == (0, 0, 0)
    assert rec.first_tracking == clock.at(0) and rec.state_names == ("A", "B", "Exception")
    assert rec.schema is not None and rec.schema["A"] == am.State()
    clock.advance()
    mach.add1("B")  # not recorded, but the machine record follows
    rec = h.machine_record()
    assert rec.next_id == 1 and rec.m_time == (0, 1, 0) and rec.m_time_sum == 1
    mach.add1("A")
    assert h.machine_record().next_id == 2
    # a dynamic schema
    mach.set_schema(
        {"A": am.State(), "B": am.State(), "Exception": am.State(multi=True), "D": am.State()},
        ["A", "B", "Exception", "D"],
    )
    rec = h.machine_record()
    assert rec.state_names == ("A", "B", "Exception", "D") and rec.m_time == (1, 1, 0, 0)
    assert rec.schema is not None and "D" in rec.schema
    mach.add(["A", "D"])
    h.sync()
    if isinstance(h, amhist.SqliteHistory):
        stored = amhist.load_machine_record(h.path, "mr")
        assert stored is not None
        assert stored.state_names == ("A", "B", "Exception", "D")
        assert stored.m_time == (1, 1, 0, 1)
        assert stored.schema is not None and stored.schema["D"] == am.State()
        assert stored.next_id == 3
    h.close()


def test_schema_json_roundtrip() -> None:
    schema = {
        "A": am.State(auto=True, require=("B",), tags=("x",)),
        "B": am.State(multi=True, add=("A",), remove=("C",), after=("C",)),
        "C": am.State(),
    }
    assert amhist.schema_from_json(amhist.schema_to_json(schema)) == schema


def test_args_in_transition_records(kind: str, tmp_path: Path) -> None:
    mach = am.Machine({"A": am.State(multi=True)})
    h = open_hist(kind, tmp_path, mach, store_transitions=True)
    mach.add1("A", {"id": 7, "secret": "no", "url": "https://example.com/very/long/path"})
    h.sync()
    (rec,) = h.find_latest(with_tx=True)
    assert rec.transition is not None
    assert rec.transition.arguments == {"id": "7", "url": "https://example.c..."}
    h.close()


def test_auto_and_source(kind: str, tmp_path: Path) -> None:
    mach = am.Machine({"A": am.State(), "B": am.State(auto=True, require=("A",))})
    h = open_hist(kind, tmp_path, mach, store_transitions=True)
    mach.add1("A")
    h.sync()
    got = h.find_latest(with_tx=True)
    assert [r.transition.is_auto for r in got if r.transition] == [True, False]
    assert got[0].transition is not None and got[0].transition.queued_at == 0
    assert got[0].transition.executed_at == 0
    h.close()


# ----- bad input


def test_unknown_and_untracked_states(kind: str, tmp_path: Path) -> None:
    mach = am.Machine(BASIC, id="bad")
    h = open_hist(kind, tmp_path, mach, tracked_states=["Start"])
    for _ in range(5):
        mach.toggle1("Start")
    h.sync()
    with pytest.raises(amhist.UnknownStateError, match="Nope") as info:
        h.find_latest(Q(active=["Nope", "Start"]))
    assert info.value.states == ["Nope"]
    assert isinstance(info.value, am.StateUnknownError)  # and a KeyError
    with pytest.raises(amhist.StateNotTrackedError, match="Ready"):
        h.find_latest(Q(start=C(mtime={"Ready": 1})))
    with pytest.raises(amhist.UnknownStateError):
        h.activated_between("Nope", amhist.utc_now(), amhist.utc_now())
    with pytest.raises(amhist.QueryError, match="naive"):
        h.find_latest(Q(start=C(h_time=datetime(2020, 1, 1))))
    with pytest.raises(amhist.QueryError, match="naive"):
        h.active_between("Start", datetime(2020, 1, 1), datetime(2021, 1, 1))
    with pytest.raises(amhist.QueryError, match="limit"):
        h.find_latest(Q(), -1)
    with pytest.raises(amhist.QueryError):
        Q(active="Start")
    with pytest.raises(amhist.QueryError):
        h.find_latest(Q(start=C(m_time_sum="3")))  # type: ignore[arg-type]
    # nothing lost, tracking goes on
    mach.toggle1("Start")
    h.sync()
    assert ids(h.find_latest()) == [6, 5, 4, 3, 2, 1]
    h.close()


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.sqlite"
    junk = b"definitely not sqlite " * 300
    path.write_bytes(junk)
    mach = am.Machine(BASIC)
    with pytest.raises(amhist.DatabaseCorruptError) as info:
        amhist.SqliteHistory(path, mach)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert isinstance(info.value, am.AsyncMachineError)
    with pytest.raises(amhist.DatabaseCorruptError):
        amhist.load_machine_record(path, mach.id)
    assert path.read_bytes() == junk  # left as found
    assert mach.tracers == []  # nothing bound

    # a SQLite file of another application
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE times (x)")
    conn.execute("INSERT INTO times VALUES (1)")
    conn.commit()
    conn.close()
    with pytest.raises(amhist.DatabaseCorruptError, match="not a history database"):
        amhist.SqliteHistory(other, mach)
    assert rows(other, "SELECT * FROM times") == [(1,)]
    assert amhist.list_machines(tmp_path / "missing-but-empty.sqlite") == []


def test_truncated_file_keeps_synced_records(tmp_path: Path) -> None:
    path = tmp_path / "hist.sqlite"
    mach = am.Machine(BASIC, id="trunc")
    h = amhist.SqliteHistory(path, mach, amhist.Config(tracked_states=["Start"]))
    for _ in range(10):
        mach.toggle1("Start")
    h.close()
    good = path.read_bytes()
    # damage a copy: the header page survives, the rest is garbage
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(good[:100] + b"\xff" * (len(good) - 100))
    with pytest.raises(amhist.DatabaseError):
        amhist.SqliteHistory(broken, am.Machine(BASIC, id="trunc"))
    assert path.read_bytes() == good
    rec = amhist.load_machine_record(path, "trunc")
    assert rec is not None and rec.next_id == 11


def test_locked_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "hist.sqlite"
    mach = am.Machine(BASIC, id="locked")
    cfg = amhist.SqliteConfig(tracked_states=["Start"], busy_timeout=0.01, flush_interval=60)
    errors: list[amhist.HistoryError] = []
    h = amhist.SqliteHistory(path, mach, cfg, on_error=errors.append)
    for _ in range(10):
        mach.toggle1("Start")
    h.sync()

    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        for _ in range(5):
            mach.toggle1("Start")
        with pytest.raises(amhist.DatabaseLockedError) as info:
            h.sync()
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert errors and isinstance(errors[-1], amhist.DatabaseLockedError)
        # what was synced is still there and readable (WAL readers do not wait)
        assert ids(h.find_latest()) == list(range(10, 0, -1))
        # a second tracker cannot even open the file
        with pytest.raises(amhist.DatabaseLockedError):
            amhist.SqliteHistory(path, am.Machine(BASIC, id="locked2"), cfg)
        # closing now fails too, and keeps the history open
        with pytest.raises(amhist.DatabaseLockedError):
            h.close()
        assert not h.is_closed
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    h.sync()  # the queued records are retried
    assert ids(h.find_latest()) == list(range(15, 0, -1))
    h.close()
    assert h.is_closed
    assert rows(path, "SELECT COUNT(*), MAX(id) FROM times") == [(15, 15)]


def test_default_error_handler_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "hist.sqlite"
    mach = am.Machine(BASIC, id="logged")
    cfg = amhist.SqliteConfig(busy_timeout=0.01, flush_interval=60, batch_size=1)
    h = amhist.SqliteHistory(path, mach, cfg)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.ERROR, logger="asyncmachine_trio.history"):
            mach.add1("Start")
            with pytest.raises(amhist.DatabaseLockedError):
                h.sync()
        assert any("locked" in r.getMessage() for r in caplog.records)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    h.close()


def test_closed_history(tmp_path: Path) -> None:
    mach = am.Machine(BASIC)
    h = amhist.SqliteHistory(tmp_path / "h.sqlite", mach)
    h.close()
    h.close()  # idempotent
    with pytest.raises(amhist.HistoryClosedError):
        h.find_latest()
    with pytest.raises(amhist.HistoryClosedError):
        h.sync()
    assert mach.tracers == []
    mach.add1("Start")  # not tracked any more
    m = amhist.MemoryHistory(mach)
    mach.add1("Ready")
    m.close()
    mach.remove1("Ready")
    assert ids(m.find_latest()) == [1]  # memory records stay queryable


# ----- write policy


def wait_for(pred: Any, timeout: float = 5.0) -> None:
    """Poll ``pred`` (the writer thread runs on its own; each poll sleeps 1 ms)."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_flush_on_batch_size(tmp_path: Path) -> None:
    mach = am.Machine(BASIC)
    path = tmp_path / "h.sqlite"
    h = amhist.SqliteHistory(path, mach, amhist.SqliteConfig(batch_size=5, flush_interval=60))
    for _ in range(4):
        mach.toggle1("Start")
    assert h.find_latest() == []  # below the batch size, no timer due
    mach.toggle1("Start")
    wait_for(lambda: len(h.find_latest()) == 5)
    h.close()


def test_flush_on_timer(tmp_path: Path) -> None:
    mach = am.Machine(BASIC)
    path = tmp_path / "h.sqlite"
    cfg = amhist.SqliteConfig(batch_size=1000, flush_interval=0.005)
    h = amhist.SqliteHistory(path, mach, cfg)
    mach.toggle1("Start")
    wait_for(lambda: len(h.find_latest()) == 1)
    last_sync = h.machine_record().last_sync
    assert last_sync >= h.machine_record().last_tracking
    h.close()


def test_dispose_closes_and_flushes(tmp_path: Path) -> None:
    mach = am.Machine(BASIC, id="disp")
    path = tmp_path / "h.sqlite"
    h = amhist.SqliteHistory(path, mach, amhist.SqliteConfig(flush_interval=60))
    mem = amhist.MemoryHistory(mach)
    mach.add1("Start")
    mach.dispose()
    assert h.is_closed and mem.is_closed
    assert rows(path, "SELECT COUNT(*) FROM times") == [(1,)]
    rec = amhist.load_machine_record(path, "disp")
    assert rec is not None and rec.m_time[rec.state_names.index("Start")] == 1
    assert [r.mach_id for r in amhist.list_machines(path)] == ["disp"]


def test_dispose_reports_close_errors(tmp_path: Path) -> None:
    mach = am.Machine(BASIC, id="disp-err")
    path = tmp_path / "h.sqlite"
    errors: list[amhist.HistoryError] = []
    cfg = amhist.SqliteConfig(flush_interval=60, busy_timeout=0.01)
    h = amhist.SqliteHistory(path, mach, cfg, on_error=errors.append)
    mach.add1("Start")
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        mach.dispose()  # never raises: the failed close goes to on_error
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert any(isinstance(e, amhist.DatabaseLockedError) for e in errors)
    assert not h.is_closed
    h.close()  # the retry writes the pending record
    assert rows(path, "SELECT COUNT(*) FROM times") == [(1,)]


# ----- restarts


def test_restart_restore_and_query(tmp_path: Path) -> None:
    """Write, close, reopen, restore, query."""
    path = tmp_path / "wf.sqlite"
    clock = FakeClock()
    cfg = amhist.SqliteConfig(tracked_states=["Start", "Ready", "MachineRestored"], now=clock)

    mach = am.Machine(BASIC, id="wf")
    h = amhist.SqliteHistory(path, mach, cfg)
    assert h.previous_record is None and not h.restore()
    clock.advance()
    mach.add1("Start")
    clock.advance()
    mach.add1("Ready")
    clock.advance()
    mach.add1("Heartbeat")  # untracked, still in the machine record
    h.close()
    before = mach.time()

    # "restart": a new machine with the same id, a new history on the same file
    clock.advance(1000)
    mach2 = am.Machine(BASIC, id="wf")
    h2 = amhist.SqliteHistory(path, mach2, cfg)
    prev = h2.previous_record
    assert prev is not None and prev.m_time == tuple(before) and prev.next_id == 4
    assert prev.first_tracking == clock.at(0)
    assert h2.machine_record().first_tracking == clock.at(0)
    assert h2.machine_record().last_tracking == clock.at(1003)
    assert ids(h2.find_latest()) == [3, 2, 1]  # the old records, queryable at once
    assert h2.restore()
    assert mach2.is_(["Start", "Ready", "Heartbeat", "MachineRestored"])
    assert mach2.machine_tick() == 1
    h2.sync()
    latest = h2.find_latest(limit=1)[0].time
    assert latest.id == 4 and latest.mach_tick == 1
    assert latest.m_time_record_diff_sum == 1  # continues from the stored record
    assert h2.activated_between("Start", clock.at(0), clock.at(1))
    assert h2.activated_between("MachineRestored", clock.at(1000), clock())
    assert h2.active_between("Ready", clock.at(500), clock.at(600))
    assert ids(h2.find_latest(Q(start=C(mach_tick=1)))) == [4]
    h2.close()
    stored = amhist.load_machine_record(path, "wf")
    assert stored is not None and stored.mach_tick == 1 and stored.next_id == 5
    assert amhist.load_machine_record(path, "nope") is None


def test_reopen_without_restore_keeps_saved_time(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    mach = am.Machine(BASIC, id="keep")
    h = amhist.SqliteHistory(path, mach)
    mach.add(["Start", "Ready"])
    h.close()
    # a reader-only session: open, query, close, no transition
    h2 = amhist.SqliteHistory(path, am.Machine(BASIC, id="keep"))
    assert len(h2.find_latest()) == 1
    h2.close()
    rec = amhist.load_machine_record(path, "keep")
    assert rec is not None and rec.m_time_sum == 2  # not overwritten by the fresh machine


def test_memory_continues_machine_record(tmp_path: Path) -> None:
    mach = am.Machine(BASIC, id="mem")
    h = amhist.MemoryHistory(mach)
    mach.add1("Start")
    rec = h.machine_record()
    h.close()
    mach2 = am.Machine(BASIC, id="mem")
    h2 = amhist.MemoryHistory(mach2, machine_record=rec)
    assert h2.previous_record == rec
    assert h2.restore()
    assert mach2.is_(["Start", "MachineRestored"]) and mach2.machine_tick() == 1
    assert h2.find_latest()[0].time.id == 2
    amhist.restore(am.Machine(BASIC, id="mem"), rec)
    with pytest.raises(am.SchemaError):
        amhist.restore(am.Machine(BASIC, id="other"), rec)
    h2.close()


def test_two_machines_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    m1 = am.Machine(BASIC, id="one")
    m2 = am.Machine(BASIC, id="two")
    h1 = amhist.SqliteHistory(path, m1, amhist.Config(tracked_states=["Start"]))
    h2 = amhist.SqliteHistory(path, m2, amhist.Config(tracked_states=["Ready", "Start"]))
    m1.toggle1("Start")
    m1.toggle1("Start")
    m2.add(["Start", "Ready"])
    h1.sync()
    h2.sync()
    assert ids(h1.find_latest()) == [2, 1]
    (r,) = h2.find_latest()
    assert r.time.m_time_tracked == (1, 1)
    h1.close()
    h2.close()
    assert [r.mach_id for r in amhist.list_machines(path)] == ["one", "two"]


def test_tracked_states_change_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    mach = am.Machine(BASIC, id="chg")
    h = amhist.SqliteHistory(path, mach, amhist.Config(tracked_states=["Start"]))
    mach.add1("Start")
    h.close()
    mach2 = am.Machine(BASIC, id="chg")
    h2 = amhist.SqliteHistory(path, mach2, amhist.Config(tracked_states=["Ready", "Start"]))
    h2.restore()
    mach2.add1("Ready")
    h2.sync()
    got = h2.find_latest()
    # the first record knew nothing of Ready: tick 0, it never matches Ready conditions
    assert [r.time.m_time_tracked for r in got] == [(1, 1), (0, 1), (0, 1)]
    assert ids(h2.find_latest(Q(active=["Ready"]))) == [3]
    assert ids(h2.find_latest(Q(inactive=["Ready"]))) == [2, 1]
    h2.close()


def test_human_time_is_utc(kind: str, tmp_path: Path) -> None:
    from datetime import timezone

    plus2 = timezone(timedelta(hours=2))
    fixed = datetime(2025, 6, 1, 12, 0, tzinfo=plus2)
    mach = am.Machine(BASIC)
    h = open_hist(kind, tmp_path, mach, now=lambda: fixed)
    mach.add1("Start")
    h.sync()
    (r,) = h.find_latest()
    assert r.time.h_time == fixed and r.time.h_time.tzinfo is amhist.UTC
    assert h.activated_between("Start", fixed, fixed)
    h.close()


def test_state_order_changes(kind: str, tmp_path: Path) -> None:
    """verify_states and import_ reorder the states; records follow the names."""
    mach = am.Machine({"A": am.State(), "B": am.State(), "C": am.State()}, id="order")
    h = open_hist(kind, tmp_path, mach, tracked_states=["C", "A"])
    mach.add1("A")
    mach.verify_states(["C", "B", "A", "Exception"])
    mach.add1("C")
    assert h.machine_record().state_names == ("C", "B", "A", "Exception")
    assert h.machine_record().m_time == (1, 0, 1, 0)
    mach.import_(
        am.Serialized(id="order", state_names=("B", "A", "Exception", "C"), time=(1, 3, 0, 2))
    )
    mach.add1("C")
    h.sync()
    assert [r.time.m_time_tracked for r in h.find_latest()] == [(3, 3), (1, 1), (0, 1)]
    assert h.machine_record().state_names == ("B", "A", "Exception", "C")
    assert h.machine_record().m_time == (1, 3, 0, 3) and h.machine_record().mach_tick == 1
    assert [r.time.mach_tick for r in h.find_latest()] == [1, 0, 0]
    h.close()


def test_restore_without_machine_restored(kind: str, tmp_path: Path) -> None:
    schema = {"A": am.State(), "B": am.State()}
    mach = am.Machine(schema, id="plain")
    h = open_hist(kind, tmp_path, mach)
    mach.add(["A", "B"])
    rec = h.machine_record()
    h.close()
    mach2 = am.Machine(schema, id="plain")
    if kind == "memory":
        h2: amhist.History = amhist.MemoryHistory(mach2, machine_record=rec)
    else:
        h2 = amhist.SqliteHistory(tmp_path / "hist.sqlite", mach2)
    with h2:
        assert h2.restore()
        assert mach2.is_(["A", "B"]) and mach2.machine_tick() == 1
        assert h2.machine_record().m_time == (1, 1, 0)
        assert h2.machine_record().mach_tick == 1
    if kind == "sqlite":
        stored = amhist.load_machine_record(tmp_path / "hist.sqlite", "plain")
        assert stored is not None and stored.mach_tick == 1
