"""Shared pieces of the history tests: schemas, a fake human clock, backends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import attrs

import asyncmachine_trio as am
from asyncmachine_trio import history as amhist

# the reference's Basic states (pkg/states BasicStatesDef), local to the tests
BASIC = {
    "ErrNetwork": am.State(multi=True, add=("Exception",), require=("Exception",)),
    "ErrHandlerTimeout": am.State(multi=True, add=("Exception",), require=("Exception",)),
    "Start": am.State(),
    "Ready": am.State(require=("Start",)),
    "Healthcheck": am.State(multi=True),
    "Heartbeat": am.State(),
    "Exception": am.State(multi=True),
    "MachineRestored": am.State(),
}
BASIC_NAMES = tuple(BASIC)

BACKENDS = ("memory", "sqlite")


class FakeClock:
    """A human clock the test moves by hand (``Config.now``)."""

    def __init__(self) -> None:
        self.base = datetime(2025, 1, 1, tzinfo=amhist.UTC)
        self.us = 0

    def __call__(self) -> datetime:
        return self.base + timedelta(microseconds=self.us)

    def at(self, us: int) -> datetime:
        return self.base + timedelta(microseconds=us)

    def advance(self, us: int = 1) -> datetime:
        self.us += us
        return self()


HistoryFactory = Callable[[am.Machine, amhist.Config], amhist.History]


def factory(kind: str, tmp_path: Path, **sql: object) -> HistoryFactory:
    """Build histories of ``kind``; SQLite ones in ``tmp_path`` (one file per machine)."""

    def make(mach: am.Machine, config: amhist.Config) -> amhist.History:
        if kind == "memory":
            return amhist.MemoryHistory(mach, config)
        cfg = amhist.SqliteConfig(**attrs.asdict(config, recurse=False), **sql)  # type: ignore[arg-type]
        return amhist.SqliteHistory(tmp_path / f"{mach.id}.sqlite", mach, cfg)

    return make


def assert_basics(mem: amhist.History, rounds: int) -> None:
    """The reference's ``AssertBasics`` (pkg/history/test/test_hist.go)."""
    mach = mem.machine
    start = amhist.utc_now()
    assert mach.has(list(BASIC_NAMES)), "the machine has to implement the Basic states"
    assert mem.is_tracked1("Start"), "Start should be tracked"
    assert not mem.is_tracked1("Ready"), "Ready should not be tracked"
    for _ in range(rounds):
        mach.toggle1("Start")
    mem.sync()
    now = amhist.utc_now()
    assert mem.activated_between("Start", start, now), "Start was activated"
    assert not mem.activated_between("Ready", start, now), "Ready isn't tracked"
    mach_rec = mem.machine_record()
    assert mach_rec is not None
    latest = mem.find_latest(amhist.Query(), 25)
    assert len(latest) == 25
    assert latest[23].time.m_time_sum == mach_rec.next_id - 24
    assert latest[24].time.m_time_sum == mach_rec.next_id - 25


def assert_gc(mem: amhist.History) -> None:
    """The reference's ``AssertGc``."""
    limit = mem.config.max_records
    assert len(mem.find_latest(amhist.Query(), limit * 2)) <= limit
