"""Property test: the in-memory and the SQLite backends answer every query the same.

Both histories track the same machine (two tracers, one shared fake human
clock) through a random sequence of mutations under a random configuration;
then random queries, predefined queries and the machine records are compared.
The reference's backends do not agree (docs/history.md); these must.
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import pytest
from history_util import FakeClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncmachine_trio as am
from asyncmachine_trio import history as amhist

SCHEMA = {
    "A": am.State(remove=("B",)),
    "B": am.State(remove=("A",)),
    "M": am.State(multi=True),
    "R": am.State(require=("A",)),
    "U": am.State(auto=True, require=("M",)),
    "E": am.State(add=("M",)),
}
NAMES = [*SCHEMA, "Exception"]


class Handlers:
    def r_enter(self, e: am.Event) -> bool:
        return not e.args.get("deny")


ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "set", "toggle"]),
        st.lists(st.sampled_from(list(SCHEMA)), min_size=1, max_size=3, unique=True),
        st.booleans(),  # deny R
        st.integers(0, 3),  # human time advance, 0 = the same microsecond
        st.booleans(),  # sync the SQL backend now
    ),
    max_size=30,
)

configs = st.fixed_dictionaries(
    {
        "tracked_states": st.one_of(
            st.none(), st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True)
        ),
        "called": st.lists(st.sampled_from(list(SCHEMA)), max_size=2, unique=True),
        "called_exclude": st.booleans(),
        "changed": st.lists(st.sampled_from(list(SCHEMA)), max_size=2, unique=True),
        "changed_exclude": st.booleans(),
        "track_rejected": st.booleans(),
        "store_transitions": st.booleans(),
        "max_records": st.integers(1, 25),
    }
)

_files = itertools.count()


_AT = FakeClock().at


def _bound(hi: int) -> st.SearchStrategy[int | None]:
    return st.one_of(st.none(), st.integers(0, hi))


_conds = st.builds(
    amhist.ConditionTime,
    mtime=st.dictionaries(st.sampled_from(NAMES), st.integers(0, 12), max_size=2),
    h_time=st.one_of(st.none(), st.integers(0, 100).map(_AT)),
    m_time_sum=_bound(40),
    m_time_tracked_sum=_bound(40),
    m_time_diff=_bound(4),
    m_time_tracked_diff=_bound(4),
    m_time_record_diff=_bound(6),
    mach_tick=_bound(1),
)
_states = st.lists(st.sampled_from(NAMES), max_size=2, unique=True)
#: (query, limit, with_tx); states the config does not track are dropped later
queries = st.lists(
    st.tuples(
        st.builds(
            amhist.Query,
            active=_states,
            activated=_states,
            inactive=_states,
            deactivated=_states,
            start=_conds,
            end=_conds,
        ),
        st.integers(0, 4),
        st.booleans(),
    ),
    min_size=6,
    max_size=6,
)
#: human-time ranges (microseconds) for the predefined queries
ranges = st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), min_size=3, max_size=3)


def only_tracked(q: amhist.Query, tracked: list[str]) -> amhist.Query:
    def keep(states: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(s for s in states if s in tracked)

    def cond(c: amhist.ConditionTime) -> amhist.ConditionTime:
        return attrs.evolve(c, mtime={k: v for k, v in c.mtime.items() if k in tracked})

    return attrs.evolve(
        q,
        active=keep(q.active),
        activated=keep(q.activated),
        inactive=keep(q.inactive),
        deactivated=keep(q.deactivated),
        start=cond(q.start),
        end=cond(q.end),
    )


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cfg=configs, steps=ops, qs=queries, between=ranges, batch=st.integers(1, 8))
def test_backends_agree(
    tmp_path: Path,
    cfg: dict[str, Any],
    steps: list[Any],
    qs: list[tuple[amhist.Query, int, bool]],
    between: list[tuple[int, int]],
    batch: int,
) -> None:
    clock = FakeClock()
    mach = am.Machine(SCHEMA, handlers=Handlers(), id="prop")
    config = amhist.Config(now=clock, **cfg)
    path = tmp_path / f"prop-{next(_files)}.sqlite"
    mem = amhist.MemoryHistory(mach, config)
    sql_cfg = amhist.SqliteConfig(
        **attrs.asdict(config, recurse=False), batch_size=batch, flush_interval=60
    )
    sql = amhist.SqliteHistory(path, mach, sql_cfg)
    try:
        for n, (op, states, deny, advance, sync_now) in enumerate(steps):
            clock.advance(advance)
            args = {"deny": deny, "id": n}
            if op == "toggle":
                mach.toggle(states, args)
            else:
                getattr(mach, op)(states, args)
            if sync_now:
                sql.sync()
        sql.sync()

        assert mem.tracked_states == sql.tracked_states
        tracked = list(mem.tracked_states)
        everything = mem.find_latest(with_tx=True)
        assert everything == sql.find_latest(with_tx=True)
        assert len(everything) <= config.max_records
        assert [r.time.id for r in everything] == sorted(
            (r.time.id for r in everything), reverse=True
        )

        for raw, limit, with_tx in qs:
            q = only_tracked(raw, tracked)
            got = mem.find_latest(q, limit, with_tx=with_tx)
            assert got == sql.find_latest(q, limit, with_tx=with_tx), q

        for state in tracked:
            for lo, hi in between:
                for name in ("activated", "active", "deactivated", "inactive"):
                    a = getattr(mem, f"{name}_between")(state, clock.at(lo), clock.at(hi))
                    b = getattr(sql, f"{name}_between")(state, clock.at(lo), clock.at(hi))
                    assert a == b, (name, state, lo, hi)

        for h in (mem, sql):
            with pytest.raises(amhist.UnknownStateError):
                h.find_latest(amhist.Query(active=["Nope"]))
        untracked = [s for s in NAMES if s not in tracked]
        for h in (mem, sql):
            if untracked:
                with pytest.raises(amhist.StateNotTrackedError):
                    h.find_latest(amhist.Query(inactive=untracked[:1]))

        same_sync = mem.machine_record().last_sync
        assert attrs.evolve(sql.machine_record(), last_sync=same_sync) == mem.machine_record()
    finally:
        mem.close()
        sql.close()

    stored = amhist.load_machine_record(path, "prop")
    assert stored is not None
    assert stored == attrs.evolve(mem.machine_record(), last_sync=stored.last_sync)
    conn = sqlite3.connect(path)
    try:
        (n_times,), (n_ticks,) = (
            conn.execute("SELECT COUNT(*) FROM times").fetchone(),
            conn.execute("SELECT COUNT(*) FROM ticks").fetchone(),
        )
    finally:
        conn.close()
    assert n_ticks == n_times * len(tracked)  # GC removes tick rows with their times
    assert n_times <= config.max_records * 2.5
