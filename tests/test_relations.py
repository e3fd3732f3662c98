"""semantics §4: relation resolution, acceptance, ordering and resolver queries."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pytest

import asyncmachine_trio as am

R = am.Result
NORELS = {"A": am.State(), "B": am.State(), "C": am.State(), "D": am.State()}
RELS = {
    "A": am.State(auto=True, require=["C"]),
    "B": am.State(multi=True, add=["C"]),
    "C": am.State(after=["D"]),
    "D": am.State(add=["C", "B"]),
}


def machine(
    schema: Mapping[str, Any], *active: str, level: am.LogLevel = am.LogLevel.NOTHING
) -> tuple[am.Machine, list[str]]:
    """A machine with ``active`` set (before logging starts) and its log lines."""
    lines: list[str] = []
    mach = am.Machine(
        schema, id="rel", logger=lambda lvl, line: lines.append(line), dont_log_id=True
    )
    if active:
        assert mach.set(list(active)) is R.EXECUTED
    mach.log_level = level
    return mach, lines


class Rec:
    """Records calls of the given handler event names (others not defined)."""

    def __init__(self, states: Iterable[str], *, reject: Iterable[str] = ()) -> None:
        self.calls: list[str] = []
        self.reject = set(reject)
        states = list(states)
        for s in states:
            sn = am.snake(s)
            for suffix in ("Enter", "Exit", "State", "End"):
                setattr(self, f"{sn}_{suffix.lower()}", self._make(s + suffix))
        self.any_enter = self._make("AnyEnter")
        self.any_state = self._make("AnyState")

    def _make(self, ev: str) -> Callable[[am.Event], Any]:
        def handler(e: am.Event) -> Any:
            self.calls.append(ev)
            return False if ev in self.reject else None

        return handler


# ----- 4.2 consequences, one test each


def test_called_beats_active() -> None:
    schema = {"C": am.State(remove=["D"]), "D": am.State(remove=["C"])}
    mach, _ = machine(schema, "D")
    assert mach.add1("C") is R.EXECUTED
    assert mach.active_states() == ["C"]
    assert mach.add1("D") is R.EXECUTED
    assert mach.active_states() == ["D"]
    assert mach.clock() == {"C": 2, "D": 3, "Exception": 0}


def test_called_vs_called() -> None:
    schema = {"C": am.State(remove=["D"]), "D": am.State()}
    mach, lines = machine(schema, level=am.LogLevel.DECISIONS)
    assert mach.set(["C", "D"]) is R.CANCELED
    assert mach.active_states() == []
    assert "[rel:remove] D by C" in lines
    assert "[cancel:reject] D" in lines


def test_active_state_that_nothing_removes_blocks_called() -> None:
    schema = {"Foo": am.State(), "Bar": am.State(remove=["Foo"])}
    mach, lines = machine(schema, "Bar", level=am.LogLevel.DECISIONS)
    assert mach.add1("Foo") is R.CANCELED
    assert mach.active_states() == ["Bar"]
    assert mach.tick("Foo") == 0
    assert "[rel:remove] Foo by Bar" in lines


def test_blocker_dropped_later_still_blocks() -> None:
    schema = {"A": am.State(remove=["C"]), "B": am.State(remove=["A"]), "C": am.State()}
    mach, lines = machine(schema, level=am.LogLevel.DECISIONS)
    assert mach.set(["A", "B", "C"]) is R.CANCELED
    assert mach.active_states() == []
    assert "[rel:remove] C by A" in lines
    assert "[rel:remove] A by B" in lines
    assert "[cancel:reject] A C" in lines


def test_add_is_two_levels_deep() -> None:
    schema = {
        "A": am.State(add=["B"]),
        "B": am.State(add=["C"]),
        "C": am.State(add=["D"]),
        "D": am.State(),
    }
    mach, _ = machine(schema)
    assert mach.add1("A") is R.EXECUTED
    # C is implied only by the second parse_add (over the reversed list), so
    # it ends up first after the final reverse (semantics §4.2)
    assert mach.active_states() == ["C", "A", "B"]
    assert mach.not1("D")


def test_add_chain_order_without_remove_relations() -> None:
    # no state has a Remove relation: the reverse / parse_add / reverse round
    # trip still runs (no shortcut), so the implied G comes first
    schema = {"A": am.State(add=["G"]), "B": am.State(add=["A"]), "G": am.State()}
    mach, _ = machine(schema)
    assert mach.add1("B") is R.EXECUTED
    assert mach.active_states() == ["G", "B", "A"]
    assert mach.string() == "(A:1 B:1 G:1)"


def test_active_non_multi_does_not_re_imply() -> None:
    schema = {"N": am.State(add=["X"]), "X": am.State(), "Y": am.State()}
    mach, _ = machine(schema)
    mach.add1("N")
    assert mach.active_states() == ["N", "X"]
    mach.remove1("X")
    assert mach.add1("Y") is R.EXECUTED
    assert mach.active_states() == ["Y", "N"]


def test_active_multi_re_implies_on_unrelated_add() -> None:
    schema = {"M": am.State(multi=True, add=["X"]), "X": am.State(), "Y": am.State()}
    mach, _ = machine(schema)
    mach.add1("M")
    assert mach.active_states() == ["M", "X"]
    assert mach.remove1("X") is R.EXECUTED
    assert mach.active_states() == ["M"]
    assert mach.add1("Y") is R.EXECUTED
    assert mach.active_states() == ["Y", "M", "X"]
    # M was not called: no re-entry
    assert mach.clock() == {"M": 1, "X": 3, "Y": 1, "Exception": 0}


def test_active_multi_re_implies_in_remove_mutation() -> None:
    schema = {"M": am.State(multi=True, add=["X"]), "X": am.State(), "Y": am.State()}
    mach, _ = machine(schema)
    mach.add(["M", "Y"])
    mach.remove1("X")
    assert mach.active_states() == ["M", "Y"]
    assert mach.remove1("Y") is R.EXECUTED
    assert mach.active_states() == ["M", "X"]


def test_add_targets_called_for_removal_are_skipped() -> None:
    schema = {
        "A": am.State(multi=True, add=["B"], require=["C"]),
        "B": am.State(require=["C"]),
        "C": am.State(),
    }
    mach, _ = machine(schema)
    assert mach.add(["A", "B", "C"]) is R.EXECUTED
    assert set(mach.active_states()) == {"A", "B", "C"}
    assert mach.remove1("B") is R.EXECUTED
    assert mach.active_states() == ["C", "A"]


def test_blocker_dropped_earlier_no_longer_blocks_readme_quiz() -> None:
    schema = {
        "Wet": am.State(require=["Water"]),
        "Dry": am.State(remove=["Water"]),
        "Water": am.State(add=["Wet"], remove=["Dry"]),
    }
    mach, lines = machine(schema, level=am.LogLevel.OPS)
    assert mach.add1("Dry") is R.EXECUTED
    lines.clear()
    assert mach.add1("Water") is R.EXECUTED
    assert mach.active_states() == ["Water", "Wet"]
    assert mach.clock() == {"Wet": 1, "Dry": 2, "Water": 1, "Exception": 0}
    assert "[rel:remove] Dry by Water" in lines
    assert "[implied] Wet" in lines
    assert "[state] +Water +Wet -Dry" in lines
    assert lines.index("[rel:remove] Dry by Water") < lines.index("[implied] Wet")


def test_implied_states_re_added_after_blocking() -> None:
    schema = {
        "Wet": am.State(require=["Water"]),
        "Dry": am.State(remove=["Wet"]),
        "Water": am.State(add=["Wet"], remove=["Dry"]),
    }
    mach, _ = machine(schema)
    mach.add1("Dry")
    assert mach.add1("Water") is R.EXECUTED
    assert mach.active_states() == ["Water", "Wet"]


def test_regression_implied_block_by_being_removed_set() -> None:
    schema = {
        "Wet": am.State(require=["Water"]),
        "Dry": am.State(remove=["Wet"]),
        "Water": am.State(add=["Wet"], remove=["Dry"]),
    }
    mach, _ = machine(schema)
    mach.set(["Dry"])
    assert mach.set(["Water"]) is R.EXECUTED
    assert mach.active_states() == ["Water", "Wet"]


def test_remove_cascades_through_require() -> None:
    schema = {"A": am.State(), "B": am.State(require=["A"]), "C": am.State(remove=["A"])}
    mach, _ = machine(schema)
    mach.add(["A", "B"])
    assert mach.active_states() == ["A", "B"]
    assert mach.add1("C") is R.EXECUTED
    assert mach.active_states() == ["C"]
    assert mach.clock() == {"A": 2, "B": 2, "C": 1, "Exception": 0}


def test_implied_state_blocked_by_called_state_is_skipped() -> None:
    schema = {
        "A": am.State(remove=["D"]),
        "B": am.State(),
        "C": am.State(add=["D"]),
        "D": am.State(),
    }
    mach, _ = machine(schema)
    mach.add1("C")
    assert mach.active_states() == ["C", "D"]
    assert mach.set(["A", "C"]) is R.EXECUTED
    assert mach.active_states() == ["A", "C"]
    assert mach.clock() == {"A": 1, "B": 0, "C": 1, "D": 2, "Exception": 0}


def test_called_state_removed_by_implied_one_cancels() -> None:
    schema = {"A": am.State(add=["B"]), "B": am.State(remove=["A"])}
    mach, _ = machine(schema)
    assert mach.add1("A") is R.CANCELED
    assert mach.active_states() == []
    assert mach.time().sum() == 0


# ----- 4.3 acceptance


def test_remove_always_accepted_by_relations() -> None:
    schema = {"A": am.State(), "B": am.State(require=["A"]), "C": am.State(add=["A"])}
    mach, _ = machine(schema)
    mach.add(["A", "B"])
    assert mach.remove1("A") is R.EXECUTED
    assert mach.active_states() == []


def test_remove_result_canceled_when_called_stays_active() -> None:
    # a handler rejecting AExit keeps the called states active: canceled
    mach, _ = machine(NORELS, "A", "B")
    mach.bind_handlers(Rec(NORELS, reject=["AExit"]))
    assert mach.remove(["A", "B"]) is R.CANCELED
    assert mach.active_states() == ["A", "B"]


def test_set_rejected_by_require_cancels_whole_set() -> None:
    schema = {**NORELS, "C": am.State(require=["D"])}
    mach, lines = machine(schema, "A", level=am.LogLevel.OPS)
    assert mach.set(["C", "A"]) is R.CANCELED
    assert mach.active_states() == ["A"]
    assert "[reject] C(-D)" in lines
    assert "[cancel:reject] C" in lines


def test_set_drops_active_requirement() -> None:
    schema = {**NORELS, "B": am.State(require=["C"])}
    mach, _ = machine(schema, "C")
    assert mach.set(["A", "B"]) is R.CANCELED
    assert mach.active_states() == ["C"]


def test_reject_lists_every_missing_requirement() -> None:
    schema = {"A": am.State(require=["B", "C", "D"]), "B": {}, "C": {}, "D": {}}
    mach, lines = machine(schema, level=am.LogLevel.OPS)
    assert mach.add(["A", "C"]) is R.CANCELED
    assert "[reject] A(-B -D)" in lines
    assert "[cancel:reject] A" in lines


def test_implied_states_logged() -> None:
    mach, lines = machine(RELS, level=am.LogLevel.OPS)
    mach.add1("D")
    # targets [D B C] (B has no Require relation, so it sorts before C)
    assert "[implied] B C" in lines
    assert mach.active_states() == ["D", "B", "C", "A"]


def test_auto_accepted_if_one_called_survives() -> None:
    # 4.7 example 5
    schema = {
        "A": am.State(auto=True),
        "B": am.State(auto=True, after=["A"], require=["C"]),
        "C": am.State(),
        "D": am.State(),
    }
    mach, lines = machine(schema, level=am.LogLevel.DECISIONS)
    assert mach.add1("D") is R.EXECUTED
    assert mach.active_states() == ["A", "D"]
    assert "[add:auto] A B" in lines
    assert "[reject:auto] B(-C)" in lines
    assert "[auto_] +A" in lines
    assert not any(line.startswith("[cancel:reject]") for line in lines)


def test_auto_canceled_if_no_called_survives() -> None:
    # TestPartialAuto
    schema = {
        **NORELS,
        "C": am.State(auto=True, require=["B"]),
        "D": am.State(auto=True, require=["B"]),
    }
    mach, lines = machine(schema, level=am.LogLevel.OPS)
    assert mach.add1("A") is R.EXECUTED
    assert mach.active_states() == ["A"]
    assert "[auto] C D" in lines
    assert "[cancel:reject] C D" in lines


# ----- 4.5 sort_states


def test_states_without_require_sort_first() -> None:
    schema = {"A": am.State(require=["B"]), "B": am.State(), "C": am.State()}
    mach, _ = machine(schema)
    rec = Rec(schema)
    mach.bind_handlers(rec)
    assert mach.add(["A", "B", "C"]) is R.EXECUTED
    assert mach.active_states() == ["C", "B", "A"]
    assert rec.calls[:3] == ["CEnter", "BEnter", "AEnter"]


def test_require_order() -> None:
    schema = {
        "A": am.State(require=["B", "C"]),
        "B": am.State(require=["D"]),
        "C": am.State(),
        "D": am.State(),
    }
    mach, _ = machine(schema)
    for perm in itertools.permutations(["A", "B", "C", "D"]):
        assert mach.sort_states(list(perm)) == ["D", "B", "C", "A"], perm
    perm = ["C", "A", "D", "B"]
    assert mach.sort_states(perm) == ["D", "B", "C", "A"]
    assert perm == ["C", "A", "D", "B"]  # a sorted copy


def test_require_topology_dfs_in_state_order() -> None:
    # two independent chains: X{Require Y}, P{Require Q}; DFS from X first
    schema = {
        "P": am.State(require=["Q"]),
        "X": am.State(require=["Y"]),
        "Q": am.State(),
        "Y": am.State(),
        "Z": am.State(),
    }
    mach, _ = machine(schema)
    # topology: [Q P Y X], Z has no Require relation -> -1
    assert mach.sort_states(["X", "Y", "P", "Q", "Z"]) == ["Z", "Q", "P", "Y", "X"]
    mach2 = am.Machine(schema, id="r2")
    mach2.verify_states(["X", "P", "Q", "Y", "Z", "Exception"])
    # verify_states does not recompute the topology
    assert mach2.sort_states(["X", "Y", "P", "Q", "Z"]) == ["Z", "Q", "P", "Y", "X"]


def test_after_only_moves_past_adjacent() -> None:
    schema = {**NORELS, "A": am.State(after=["C"])}
    mach, _ = machine(schema)
    assert mach.set(["A", "B", "C"]) is R.EXECUTED
    assert mach.active_states() == ["A", "B", "C"]  # After not honored
    mach.set([])
    assert mach.set(["A", "C", "B"]) is R.EXECUTED
    assert mach.active_states() == ["C", "A", "B"]
    assert mach.sort_states(["A", "B", "C"]) == ["A", "B", "C"]
    assert mach.sort_states(["A", "C", "B"]) == ["C", "A", "B"]
    assert mach.sort_states(["B", "A", "C"]) == ["B", "C", "A"]


def test_after_mutual_is_no_order() -> None:
    schema = {"A": am.State(after=["B"]), "B": am.State(after=["A"])}
    mach, _ = machine(schema)
    assert mach.sort_states(["A", "B"]) == ["A", "B"]
    assert mach.sort_states(["B", "A"]) == ["B", "A"]


def test_after_with_require_manual_example() -> None:
    schema = {"Foo": am.State(after=["Bar"]), "Bar": am.State(require=["Foo"])}
    mach, _ = machine(schema)
    rec = Rec(schema)
    mach.bind_handlers(rec)
    assert mach.add(["Foo", "Bar"]) is R.EXECUTED
    assert mach.active_states() == ["Bar", "Foo"]
    assert rec.calls == ["BarEnter", "FooEnter", "AnyEnter", "BarState", "FooState", "AnyState"]


def test_exits_are_sorted_too() -> None:
    schema = {**NORELS, "A": am.State(after=["B"]), "C": am.State(after=["D"])}
    mach, _ = machine(schema, "A", "B")
    assert mach.active_states() == ["B", "A"]
    rec = Rec(schema)
    mach.bind_handlers(rec)
    mach.set(["C", "D"])
    assert mach.active_states() == ["D", "C"]
    assert rec.calls[:4] == ["BExit", "AExit", "DEnter", "CEnter"]


# Go's sort.SliceStable, written here from the Go source (sort/zsortfunc.go),
# independently of the library's copy.


def go_insertion_sort(data: list[str], a: int, b: int, less: Callable[[str, str], bool]) -> None:
    for i in range(a + 1, b):
        j = i
        while j > a and less(data[j], data[j - 1]):
            data[j], data[j - 1] = data[j - 1], data[j]
            j -= 1


def go_swap_range(data: list[str], a: int, b: int, n: int) -> None:
    for i in range(n):
        data[a + i], data[b + i] = data[b + i], data[a + i]


def go_rotate(data: list[str], a: int, m: int, b: int) -> None:
    i, j = m - a, b - m
    while i != j:
        if i > j:
            go_swap_range(data, m - i, m, j)
            i -= j
        else:
            go_swap_range(data, m - i, m + j - i, i)
            j -= i
    go_swap_range(data, m - i, m, i)


def go_sym_merge(data: list[str], a: int, m: int, b: int, less: Callable[[str, str], bool]) -> None:
    if m - a == 1:
        i, j = m, b
        while i < j:
            h = (i + j) // 2
            if less(data[h], data[a]):
                i = h + 1
            else:
                j = h
        k = a
        while k < i - 1:
            data[k], data[k + 1] = data[k + 1], data[k]
            k += 1
        return
    if b - m == 1:
        i, j = a, m
        while i < j:
            h = (i + j) // 2
            if not less(data[m], data[h]):
                i = h + 1
            else:
                j = h
        k = m
        while k > i:
            data[k], data[k - 1] = data[k - 1], data[k]
            k -= 1
        return
    mid = (a + b) // 2
    n = mid + m
    if m > mid:
        start, r = n - b, mid
    else:
        start, r = a, m
    p = n - 1
    while start < r:
        c = (start + r) // 2
        if not less(data[p - c], data[c]):
            start = c + 1
        else:
            r = c
    end = n - start
    if start < m < end:
        go_rotate(data, start, m, end)
    if a < start < mid:
        go_sym_merge(data, a, start, mid, less)
    if mid < end < b:
        go_sym_merge(data, mid, end, b, less)


def go_slice_stable(data: list[str], less: Callable[[str, str], bool]) -> None:
    n = len(data)
    block = 20
    a, b = 0, block
    while b <= n:
        go_insertion_sort(data, a, b, less)
        a = b
        b += block
    go_insertion_sort(data, a, n, less)
    while block < n:
        a, b = 0, 2 * block
        while b <= n:
            go_sym_merge(data, a, a + block, b, less)
            a = b
            b += 2 * block
        m = a + block
        if m < n:
            go_sym_merge(data, a, m, n, less)
        block *= 2


def after_less(schema: Mapping[str, am.State]) -> Callable[[str, str], bool]:
    def less(x: str, y: str) -> bool:
        # Go: states[i] After states[j] -> false; states[j] After states[i] -> true
        if y in (schema[x].after or ()):
            return False
        return x in (schema[y].after or ())

    return less


def reference_sort(schema: Mapping[str, am.State], states: Sequence[str]) -> list[str]:
    out = list(states)
    go_slice_stable(out, after_less(schema))
    return out


def random_after_schema(rng: random.Random, n: int) -> dict[str, am.State]:
    names = [f"S{i:02d}" for i in range(n)]
    schema: dict[str, am.State] = {}
    for name in names:
        k = rng.choice([0, 0, 1, 1, 2, 3])
        after = rng.sample([x for x in names if x != name], k)
        schema[name] = am.State(after=after) if after else am.State()
    return schema


def test_reference_sort_matches_insertion_sort_up_to_20() -> None:
    rng = random.Random(7)
    for _ in range(50):
        schema = random_after_schema(rng, 12)
        states = rng.sample(list(schema), rng.randint(2, 12))
        want = list(states)
        less = after_less(schema)
        for i in range(1, len(want)):
            j = i
            while j > 0 and less(want[j], want[j - 1]):
                want[j], want[j - 1] = want[j - 1], want[j]
                j -= 1
        assert reference_sort(schema, states) == want


def test_reference_sort_is_stable_for_strict_orders() -> None:
    # sanity check of the reference: with a strict weak order it equals sorted()
    rng = random.Random(3)
    for n in (21, 40, 64, 100):
        data = [f"{rng.randint(0, 9)}:{i:03d}" for i in range(n)]
        out = list(data)
        go_slice_stable(out, lambda x, y: x.split(":")[0] < y.split(":")[0])
        assert out == sorted(data, key=lambda s: s.split(":")[0])


@pytest.mark.parametrize("n", [21, 25, 33, 41, 60])
def test_after_sort_over_20_states_matches_go(n: int) -> None:
    rng = random.Random(n)
    for _ in range(20):
        schema = random_after_schema(rng, n)
        mach = am.Machine(schema, id="big")
        for _ in range(5):
            perm = rng.sample(list(schema), n)
            assert mach.sort_states(perm) == reference_sort(schema, perm)


def test_after_sort_over_20_states_in_a_transition() -> None:
    rng = random.Random(99)
    schema = random_after_schema(rng, 30)
    perm = rng.sample(list(schema), 30)
    mach = am.Machine(schema, id="big")
    assert mach.set(perm) is R.EXECUTED
    assert mach.active_states() == reference_sort(schema, perm)


def test_require_cycle_log_line_and_input_order() -> None:
    lines: list[tuple[am.LogLevel, str]] = []
    schema = {
        "A": am.State(require=["B"]),
        "B": am.State(require=["A"]),
        "C": am.State(),
    }
    mach = am.Machine(
        schema,
        id="cycle-machine",
        log_level=am.LogLevel.CHANGES,
        logger=lambda lvl, line: lines.append((lvl, line)),
    )
    assert lines == [
        (
            am.LogLevel.CHANGES,
            "[cycle] [resolver] relation error: state A has a Require cycle for cycle-machine",
        )
    ]
    # topology stays empty: the Require pass keeps the input order
    assert mach.sort_states(["B", "C", "A"]) == ["B", "C", "A"]
    assert mach.sort_states(["A", "B", "C"]) == ["A", "B", "C"]


def test_require_cycle_not_logged_below_changes() -> None:
    lines: list[str] = []
    am.Machine(
        {"A": am.State(require=["A"])},
        id="c",
        log_level=am.LogLevel.EXTERNAL,
        logger=lambda lvl, line: lines.append(line),
    )
    assert lines == []


def test_require_cycle_in_set_schema_keeps_previous_topology() -> None:
    lines: list[str] = []
    mach = am.Machine(
        {"A": am.State(require=["B"]), "B": am.State()},
        id="c",
        log_level=am.LogLevel.CHANGES,
        logger=lambda lvl, line: lines.append(line),
        dont_log_id=True,
    )
    assert mach.sort_states(["A", "B"]) == ["B", "A"]
    schema = {**mach.schema, "B": am.State(require=["C"]), "C": am.State(require=["A"])}
    mach.set_schema(schema, [*mach.state_names, "C"])
    assert lines == ["[resolver] relation error: state A has a Require cycle for c"]
    assert mach.sort_states(["A", "B"]) == ["B", "A"]


# ----- 4.6 resolver queries


def test_relations_of() -> None:
    schema = {
        "A": am.State(after=["B"], remove=["C"], require=["D"], add=["B"]),
        "B": am.State(after=["B"]),  # sanitized to an empty, present list
        "C": am.State(),
        "D": am.State(require=[]),
    }
    mach, _ = machine(schema)
    assert mach.relations_of("A") == [
        am.Relation.ADD,
        am.Relation.REQUIRE,
        am.Relation.REMOVE,
        am.Relation.AFTER,
    ]
    assert mach.relations_of("B") == [am.Relation.AFTER]
    assert mach.relations_of("C") == []
    assert mach.relations_of("D") == [am.Relation.REQUIRE]
    assert [str(r) for r in mach.relations_of("A")] == ["add", "require", "remove", "after"]


def test_relations_between() -> None:
    schema = {
        "A": am.State(add=["B"], after=["B"], remove=["C"], require=["D"]),
        "B": am.State(),
        "C": am.State(),
        "D": am.State(),
    }
    mach, _ = machine(schema)
    assert mach.relations_between("A", "B") == [am.Relation.ADD, am.Relation.AFTER]
    assert mach.relations_between("A", "C") == [am.Relation.REMOVE]
    assert mach.relations_between("A", "D") == [am.Relation.REQUIRE]
    assert mach.relations_between("B", "A") == []


def test_relations_unknown_state() -> None:
    mach, _ = machine(NORELS)
    with pytest.raises(am.StateUnknownError):
        mach.relations_of("X")
    with pytest.raises(am.StateUnknownError):
        mach.relations_between("A", "X")
    with pytest.raises(am.StateUnknownError):
        mach.relations_between("X", "A")
    with pytest.raises(am.StateUnknownError):
        mach.inbound_relations_of("X")


def test_inbound_relations_of() -> None:
    schema = {
        "A": am.State(add=["D"], remove=["D"]),  # Add wins: Remove loses D
        "B": am.State(require=["D"], after=["D"]),
        "C": am.State(),
        "D": am.State(),
        "E": am.State(remove=["D"]),
    }
    mach, _ = machine(schema)
    assert mach.inbound_relations_of("D") == ["A", "B", "B", "E"]
    assert mach.inbound_relations_of("C") == []


# ----- 4.7 worked examples


def test_example1_cancel_log_lists_called_then_active() -> None:
    mach, lines = machine(NORELS, "A", level=am.LogLevel.OPS)
    mach.bind_handlers(Rec(NORELS, reject=["DEnter"]))
    assert mach.add(["D"]) is R.CANCELED
    assert "[cancel] (D A) by DEnter" in lines
    lines.clear()
    assert mach.set(["D"]) is R.CANCELED
    assert "[cancel] (D) by DEnter" in lines
    assert mach.active_states() == ["A"]


def test_example1_cancel_by_exit_log() -> None:
    mach, lines = machine(NORELS, "A", level=am.LogLevel.OPS)
    mach.bind_handlers(Rec(NORELS, reject=["AExit"]))
    assert mach.remove(["A"]) is R.CANCELED
    assert "[cancel] () by AExit" in lines
    assert mach.active_states() == ["A"]


def test_example2_test_inspect() -> None:
    mach, _ = machine(RELS)
    assert mach.set(["A", "C"]) is R.EXECUTED
    assert mach.active_states() == ["C", "A"]
    assert mach.inspect() == (
        "1 A\n"
        "    |Tick     1\n"
        "    |Auto     true\n"
        "    |Require  C\n"
        "0 B\n"
        "    |Tick     0\n"
        "    |Multi    true\n"
        "    |Add      C\n"
        "1 C\n"
        "    |Tick     1\n"
        "    |After    D\n"
        "0 D\n"
        "    |Tick     0\n"
        "    |Add      C B\n"
        "0 Exception\n"
        "    |Tick     0\n"
        "    |Multi    true\n"
    )
    assert mach.remove(["C"]) is R.EXECUTED
    assert mach.active_states() == []
    assert mach.clock(["A", "C"]) == {"A": 2, "C": 2}
    assert mach.add(["B"]) is R.EXECUTED
    assert mach.active_states() == ["B", "C", "A"]
    assert mach.string() == "(A:3 B:1 C:3)"
    assert mach.add(["D"]) is R.EXECUTED
    assert mach.string() == "(A:3 B:1 C:3 D:1)"
    mach.verify_states(["Exception", "A", "B", "C", "D"])
    assert mach.inspect() == (
        "0 Exception\n"
        "    |Tick     0\n"
        "    |Multi    true\n"
        "1 A\n"
        "    |Tick     3\n"
        "    |Auto     true\n"
        "    |Require  C\n"
        "1 B\n"
        "    |Tick     1\n"
        "    |Multi    true\n"
        "    |Add      C\n"
        "1 C\n"
        "    |Tick     3\n"
        "    |After    D\n"
        "1 D\n"
        "    |Tick     1\n"
        "    |Add      C B\n"
    )


def test_example3_when_args() -> None:
    mach, _ = machine(RELS)
    w = mach.when_args("B", {"foo": "bar"})
    assert mach.add1("B", {"foo": "foo"}) is R.EXECUTED
    assert mach.active_states() == ["B", "C", "A"]
    assert mach.clock(["A", "B", "C"]) == {"A": 1, "B": 1, "C": 1}
    assert not w.is_set()
    assert mach.add1("B", {"foo": "bar"}) is R.EXECUTED
    assert mach.tick("B") == 3
    assert w.is_set()


def test_example4_regression_remove_cross_blocked_by_implied() -> None:
    schema = {
        "A": am.State(remove=["B"]),
        "B": am.State(remove=["A"]),
        "Z": am.State(add=["B"]),
    }
    mach, _ = machine(schema)
    assert mach.set(["Z"]) is R.EXECUTED
    assert mach.active_states() == ["Z", "B"]


def test_relation_steps_are_recorded_once() -> None:
    """log_steps: every relation the resolver applies is a step, listed once."""
    mach = am.Machine(
        {
            "A": am.State(add=("B",)),
            "B": am.State(require=("C",)),
            "C": am.State(after=("D",)),
            "D": am.State(remove=("E",)),
            "E": am.State(),
            "F": am.State(require=("G",)),
            "G": am.State(),
        },
        log_steps=True,
    )
    last = am.LastTxTracer()
    mach.tracer_bind(last)
    mach.add1("E")
    mach.add(["A", "C", "D"])
    tx = last.last
    assert tx is not None
    assert [str(s) for s in tx.steps] == [
        "called **A**",
        "called **C**",
        "called **D**",
        "activate **A**",
        "activate **C**",
        "activate **D**",
        "**A** add **B**",
        "activate **B**",
        "**B** require **C**",
        "**D** remove **E**",
        "deactivate **E**",
        "**C** after **D**",
    ]
    rel = [s for s in tx.steps if s.type is am.StepType.RELATION]
    assert [(s.from_state, s.relation, s.to_state) for s in rel] == [
        ("A", "add", "B"),
        ("B", "require", "C"),
        ("D", "remove", "E"),
        ("C", "after", "D"),
    ]
    # a missing requirement of a called state: the passive deactivation and the cancel
    mach.add1("F")
    tx = last.last
    assert tx is not None and not tx.is_accepted
    steps = [str(s) for s in tx.steps]
    assert steps[:5] == [
        "called **F**",
        "activate **F**",
        "**F** require **G**",
        "deactivate-passive **F**",
        "cancel **G**",
    ]
    assert steps[-1] == "cancel **F**"
    # without log_steps nothing is recorded
    plain = am.Machine({"A": am.State(add=("B",)), "B": am.State()})
    plain.tracer_bind(last)
    plain.add1("A")
    assert last.last is not None and last.last.steps == []
