"""Tests for ticks, `Time` and `TimeIndex` (semantics §2.1-2.2)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asyncmachine_trio.machine.clock import (
    Time,
    TimeIndex,
    is_active_tick,
    next_active,
    next_active_in,
    next_inactive,
    next_inactive_in,
)

ticks = st.integers(min_value=0, max_value=2**64)
times = st.lists(ticks, max_size=12)


def same_len_pair() -> st.SearchStrategy[tuple[list[int], list[int]]]:
    return st.integers(min_value=0, max_value=12).flatmap(
        lambda n: st.tuples(
            st.lists(ticks, min_size=n, max_size=n),
            st.lists(ticks, min_size=n, max_size=n),
        )
    )


# ----- tick helpers


def test_is_active_tick() -> None:
    # Go TestIsActiveTick
    assert is_active_tick(1)
    assert not is_active_tick(0)
    assert not is_active_tick(6548734)
    assert is_active_tick(6548735)


def test_next_active_inactive() -> None:
    assert next_active(0) == 1
    assert next_active(1) == 3
    assert next_active(4) == 5
    assert next_inactive(0) == 2
    assert next_inactive(1) == 2
    assert next_inactive(3) == 4
    assert next_active_in(0) == 1
    assert next_active_in(7) == 2
    assert next_inactive_in(0) == 2
    assert next_inactive_in(7) == 1


@given(ticks)
def test_next_ticks_parity(tick: int) -> None:
    assert is_active_tick(next_active(tick))
    assert not is_active_tick(next_inactive(tick))
    assert next_active(tick) - tick == next_active_in(tick)
    assert next_inactive(tick) - tick == next_inactive_in(tick)


# ----- Time: construction, str


def test_time_is_a_list() -> None:
    t = Time([2, 1, 3])
    assert isinstance(t, list)
    assert t == [2, 1, 3]
    assert len(t) == 3
    assert Time() == []


def test_time_str_repr() -> None:
    assert str(Time([1, 0, 13])) == "1 0 13"
    assert str(Time()) == ""
    assert repr(Time([1, 2])) == "Time([1, 2])"


def test_time_from_active() -> None:
    assert Time.from_active(4, [0, 2]) == [1, 0, 1, 0]
    assert Time.from_active(2, []) == [0, 0]
    # out of range and -1 are skipped
    assert Time.from_active(2, [-1, 5, 1]) == [0, 1]
    assert isinstance(Time.from_active(1, [0]), Time)


# ----- Time: conformance vector api.time_methods / Go TestTimeMethods


def test_time_methods_vector() -> None:
    mt = Time([2, 1, 3])
    assert mt.is1(1) is True
    assert mt.is1(-1) is False
    assert mt.is_([1]) is True
    assert mt.is_([-1]) is False
    assert mt.any1(1) is True
    assert mt.any1(2) is True
    mt2 = mt.add(mt)
    assert mt2 == [4, 2, 6]
    assert mt2.diff_since(mt) == [2, 1, 3]


# ----- Time: state checks


def test_time_tick() -> None:
    t = Time([2, 1, 3])
    assert t.tick(0) == 2
    assert t.tick(2) == 3
    assert t.tick(3) == 0
    assert t.tick(100) == 0
    assert t.tick(-1) == 0
    assert Time().tick(0) == 0


def test_time_is1() -> None:
    t = Time([2, 1, 3])
    assert not t.is1(0)
    assert t.is1(1)
    assert t.is1(2)
    assert not t.is1(3)
    assert not t.is1(-1)
    assert not t.is1(-2)


def test_time_is() -> None:
    t = Time([2, 1, 3])
    assert t.is_([1, 2])
    assert not t.is_([0, 1])
    assert not t.is_([])  # empty -> False
    assert not t.is_([1, -1])  # any -1 -> False
    assert not t.is_([1, 7])  # out of range reads as tick 0


def test_time_not() -> None:
    t = Time([2, 1, 3])
    assert t.not_([0])
    assert not t.not_([0, 1])
    assert t.not_([])  # empty -> True
    assert t.not_([-1])  # -1 ignored
    assert t.not_([0, -1])
    assert not t.not_([-1, 2])
    assert t.not_([9])  # out of range reads as tick 0


def test_time_not1() -> None:
    t = Time([2, 1, 3])
    assert t.not1(0)
    assert not t.not1(1)
    # -1 / out of range give False (unlike not_([-1]))
    assert not t.not1(-1)
    assert not t.not1(3)


def test_time_any() -> None:
    t = Time([2, 1, 3, 0])
    assert t.any([0], [1, 2])
    assert not t.any([0], [1, 3])
    assert not t.any()
    assert not t.any([])  # an empty group is never active
    assert not t.any([-1], [0])
    assert t.any([-1], [2])


def test_time_any1() -> None:
    t = Time([2, 1, 3, 0])
    assert t.any1(0, 1)
    assert not t.any1(0, 3)
    assert not t.any1()
    assert not t.any1(-1, 10)


def test_time_active_states() -> None:
    t = Time([2, 1, 3, 0, 5])
    assert t.active_states() == [1, 2, 4]
    assert t.active_states(None) == [1, 2, 4]
    assert t.active_states([4, 0, 1]) == [1, 4]  # index order kept
    assert t.active_states([]) == []
    assert t.active_states([-1, 99]) == []
    assert Time().active_states() == []


def test_time_non_zero_states() -> None:
    assert Time([0, 2, 0, 1]).non_zero_states() == [1, 3]
    assert Time([0, 0]).non_zero_states() == []
    assert Time().non_zero_states() == []


def test_time_sum() -> None:
    t = Time([2, 1, 3])
    assert t.sum() == 6
    assert t.sum(None) == 6
    assert t.sum([0, 2]) == 5
    assert t.sum([]) == 0  # an empty list is not None
    assert t.sum([2, 5, -1]) == 3  # out of range skipped
    assert t.sum([1, 1]) == 2
    assert Time().sum() == 0


def test_time_filter() -> None:
    t = Time([2, 1, 3])
    f = t.filter([2, 0])
    assert isinstance(f, Time)
    assert f == [3, 2]
    assert t.filter([]) == []
    assert t.filter([1, 9, -1]) == [1, 0, 0]
    assert t.filter([1, 1]) == [1, 1]


# ----- Time: arithmetic


def test_time_increment() -> None:
    t = Time([2, 1, 3])
    t2 = t.increment(1)
    assert isinstance(t2, Time)
    assert t2 == [2, 2, 3]
    assert t == [2, 1, 3]  # a copy
    t3 = t.increment(3)
    assert t3 == [2, 1, 3]
    assert t3 is not t
    assert t.increment(-1) == [2, 1, 3]


def test_time_add() -> None:
    t = Time([2, 1, 3])
    r = t.add([1, 1, 1])
    assert isinstance(r, Time)
    assert r == [3, 2, 4]
    assert t == [2, 1, 3]
    # lengths differ: the receiver's ticks unchanged
    r2 = t.add([1, 1])
    assert r2 == [2, 1, 3]
    assert isinstance(r2, Time)
    assert Time().add([]) == []


def test_time_diff_since() -> None:
    now = Time([3, 7, 5, 1])
    before = Time([3, 7, 4, 1])
    d = now.diff_since(before)
    assert isinstance(d, Time)
    assert d == [0, 0, 1, 0]
    # lengths differ: all zeros, receiver's length
    assert now.diff_since([1, 1]) == [0, 0, 0, 0]
    assert Time().diff_since([1]) == []


# ----- Time: comparisons


def test_time_equal() -> None:
    t = Time([1, 2, 3])
    assert t.equal(True, [1, 2, 3])
    assert t.equal(False, [1, 2, 3])
    assert not t.equal(True, [1, 2, 4])
    assert not t.equal(False, [1, 2, 4])
    # lengths differ
    assert not t.equal(True, [1, 2, 3, 4])
    assert t.equal(False, [1, 2, 3, 4])
    assert not t.equal(True, [1, 2])
    assert t.equal(False, [1, 2])
    assert not t.equal(False, [9, 2, 3, 4])
    assert Time().equal(True, [])


def test_time_after_before_go_test_time() -> None:
    # Go TestTime: before/now around Add(C)
    before = Time([3, 7, 4, 1])
    now = Time([3, 7, 5, 1])
    assert now.after(True, before)
    assert not before.after(True, now)
    assert before.before(True, now)
    assert not now.before(True, before)
    # not every position is strictly greater / smaller (semantics §14 #23)
    assert not now.after(False, before)
    assert not before.before(False, now)


def test_time_after_before_every_position() -> None:
    t = Time([2, 2])
    assert t.after(False, [1, 1])
    assert not t.after(False, [1, 3])  # one greater is not enough
    assert t.after(True, [2, 1])
    assert not t.after(False, [2, 1])
    assert t.before(False, [3, 3])
    assert not t.before(False, [3, 1])
    assert t.before(True, [2, 3])
    assert not t.before(False, [2, 3])


def test_time_after_before_lengths() -> None:
    t = Time([5, 5, 0])
    # positions beyond len(t2) are ignored
    assert t.after(False, [1, 1])
    assert t.before(False, [6, 6, 1, 0])  # extra t2 positions ignored
    assert t.before(False, [6])
    assert not t.before(False, [5])
    assert not t.after(True, [6])
    # nothing to compare -> True
    assert t.after(False, [])
    assert t.before(False, [])
    assert Time().after(False, [1])
    assert Time().before(False, [1])


# ----- Time <-> TimeIndex


def test_time_to_index() -> None:
    t = Time([1, 0, 3])
    ti = t.to_index(["A", "B", "C"])
    assert isinstance(ti, TimeIndex)
    assert ti.time == [1, 0, 3]
    assert isinstance(ti.time, Time)
    assert ti.index == ["A", "B", "C"]
    assert str(ti) == "A C"
    # no shared list with the source
    t[0] = 2
    assert ti.time == [1, 0, 3]


# ----- TimeIndex

NAMES = ["A", "B", "C", "D"]


def make_ti() -> TimeIndex:
    return TimeIndex(Time([1, 2, 3, 0]), NAMES)


def test_time_index_init_and_eq() -> None:
    ti = TimeIndex([1, 2], ("A", "B"))
    assert isinstance(ti.time, Time)
    assert ti.index == ["A", "B"]
    assert ti == TimeIndex(Time([1, 2]), ["A", "B"])
    assert ti != TimeIndex(Time([1, 3]), ["A", "B"])
    assert ti != TimeIndex(Time([1, 2]), ["A", "C"])
    assert ti != [1, 2]
    assert repr(ti) == "TimeIndex(time=[1, 2], index=['A', 'B'])"


def test_time_index_from_active() -> None:
    ti = TimeIndex.from_active(NAMES, [0, 3])
    assert ti.time == [1, 0, 0, 1]
    assert ti.index == NAMES
    assert str(ti) == "A D"
    assert TimeIndex.from_active(NAMES, []).time == [0, 0, 0, 0]
    assert str(TimeIndex.from_active(NAMES, [])) == ""


def test_time_index_str() -> None:
    assert str(make_ti()) == "A C"
    # ticks beyond the index get "unknown<N>" names
    assert str(TimeIndex(Time([1, 0, 1]), ["A"])) == "A unknown2"


def test_time_index_state_name() -> None:
    ti = make_ti()
    assert ti.state_name(0) == "A"
    assert ti.state_name(3) == "D"
    assert ti.state_name(4) == ""
    assert ti.state_name(-1) == ""


def test_time_index_tick() -> None:
    ti = make_ti()
    assert ti.tick("C") == 3
    assert ti.tick("D") == 0
    assert ti.tick("Unknown") == 0


def test_time_index_is() -> None:
    ti = make_ti()
    assert ti.is_(["A", "C"])
    assert not ti.is_(["A", "B"])
    assert not ti.is_([])
    assert not ti.is_(["A", "Unknown"])
    assert ti.is1("A")
    assert not ti.is1("B")
    assert not ti.is1("Unknown")


def test_time_index_not() -> None:
    ti = make_ti()
    assert ti.not_(["B", "D"])
    assert not ti.not_(["B", "C"])
    assert ti.not_([])
    assert ti.not_(["B", "Unknown"])  # unknown ignored
    assert ti.not1("B")
    assert not ti.not1("A")
    # unlike Time.not1(-1), an unknown name gives True
    assert ti.not1("Unknown")


def test_time_index_go_handler_state_info() -> None:
    # Go TestHandlerStateInfo: TimeIndexDiff / TimeIndexCalled
    names = ["A", "B", "C", "D", "Exception"]
    added = TimeIndex.from_active(names, [3])
    removed = TimeIndex.from_active(names, [0])
    called = TimeIndex.from_active(names, [3])
    assert added.is1("D")
    assert added.not1("C")
    assert removed.not1("C")
    assert called.is1("D")
    assert called.not1("C")


def test_time_index_any() -> None:
    ti = make_ti()
    assert ti.any(["B"], ["A", "C"])
    assert not ti.any(["B"], ["A", "D"])
    assert not ti.any()
    assert not ti.any([])
    assert not ti.any(["Unknown", "A"])
    # bare names are single-state groups (Go's TimeIndex.Any(...string))
    assert ti.any("B", "C")
    assert not ti.any("B", "D")
    assert ti.any("B", ["A", "C"])


def test_time_index_any1() -> None:
    ti = make_ti()
    assert ti.any1("B", "C")
    assert not ti.any1("B", "D")
    assert not ti.any1()
    assert not ti.any1("Unknown")


def test_time_index_active_states() -> None:
    ti = make_ti()
    assert ti.active_states() == ["A", "C"]
    assert ti.active_states(None) == ["A", "C"]
    assert ti.active_states(["C", "B"]) == ["C"]
    assert ti.active_states([]) == []
    assert ti.active_states(["Unknown"]) == []
    ti2 = TimeIndex(Time([0, 1, 1]), ["A"])
    assert ti2.active_states() == ["unknown1", "unknown2"]
    assert ti2.active_states(["unknown2"]) == ["unknown2"]


def test_time_index_non_zero_states() -> None:
    ti = make_ti()
    assert ti.non_zero_states() == ["A", "B", "C"]
    assert TimeIndex(Time([0, 0, 4]), ["A", "B"]).non_zero_states() == ["unknown2"]


def test_time_index_sum() -> None:
    ti = make_ti()
    assert ti.sum() == 6
    assert ti.sum(None) == 6
    assert ti.sum(["A", "C"]) == 4
    assert ti.sum([]) == 0
    assert ti.sum(["C", "Unknown"]) == 3


def test_time_index_filter() -> None:
    ti = make_ti()
    f = ti.filter(["C", "A", "Unknown"])
    assert isinstance(f, TimeIndex)
    assert f.time == [3, 1, 0]
    assert f.index == ["C", "A", "Unknown"]
    assert str(f) == "C A"
    assert ti.filter([]) == TimeIndex(Time(), [])


def test_time_index_go_test_time_sequence() -> None:
    # semantics §2.1 worked sequence, final row: ticks A B C D = 3 7 5 1
    names = ["A", "B", "C", "D", "Exception"]
    ti = TimeIndex(Time([3, 7, 5, 1, 0]), names)
    assert ti.active_states() == ["A", "B", "C", "D"]
    assert ti.sum() == 16
    assert ti.filter(["A", "B", "C", "D"]).time == [3, 7, 5, 1]


# ----- properties


@given(same_len_pair())
def test_prop_add_diff_round_trip(pair: tuple[list[int], list[int]]) -> None:
    t, d = Time(pair[0]), Time(pair[1])
    assert t.add(d).diff_since(t) == d
    assert t.add(d) == d.add(t)


@given(times)
def test_prop_diff_since_self_is_zero(t: list[int]) -> None:
    assert Time(t).diff_since(t) == [0] * len(t)
    assert Time(t).equal(True, t)


@given(same_len_pair())
def test_prop_after_before_mirror(pair: tuple[list[int], list[int]]) -> None:
    t1, t2 = Time(pair[0]), Time(pair[1])
    for or_equal in (False, True):
        assert t1.after(or_equal, t2) == t2.before(or_equal, t1)


@given(times)
def test_prop_active_states_partition(t: list[int]) -> None:
    tm = Time(t)
    active = tm.active_states()
    assert tm.is_(active) == bool(active)
    inactive = [i for i in range(len(t)) if i not in active]
    assert tm.not_(inactive)
    assert tm.sum() == tm.sum(list(range(len(t))))
    assert tm.filter(list(range(len(t)))) == tm
    assert str(tm).split() == [str(x) for x in t]
