"""Tests for the state-list helpers (semantics §12.3)."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncmachine_trio.machine.slist import (
    capitalize,
    hash_str,
    index_to_states,
    states_add,
    states_diff,
    states_equal,
    states_equal_order,
    states_filter_match,
    states_hash,
    states_prefix,
    states_remove,
    states_shared,
    states_to_index,
    states_unique,
    states_with_prefix,
)

names = st.lists(st.sampled_from(["A", "B", "C", "D", "E"]), max_size=8)


def test_states_add_vector() -> None:
    # conformance vector api.sadd / Go TestSMerge
    assert states_add(["A", "B", "C"], ["C", "D", "E"]) == ["A", "B", "C", "D", "E"]
    assert states_add() == []


def test_states_add_edges() -> None:
    assert states_add(["A", "A", "B"]) == ["A", "B"]
    assert states_add([], ["B"], ("A", "B")) == ["B", "A"]
    assert states_add([]) == []
    src = ["A"]
    out = states_add(src)
    assert out == ["A"]
    assert out is not src


def test_states_unique() -> None:
    assert states_unique(["B", "A", "B", "C", "A"]) == ["B", "A", "C"]
    assert states_unique([]) == []
    src = ["A"]
    assert states_unique(src) is not src


def test_states_diff() -> None:
    assert states_diff(["A", "B", "C"], ["B"]) == ["A", "C"]
    assert states_diff(["A", "B"], []) == ["A", "B"]
    assert states_diff([], ["A"]) == []
    assert states_diff(["A", "B", "A"], ["B"]) == ["A", "A"]  # duplicates kept


def test_states_shared() -> None:
    assert states_shared(["A", "B", "C"], ["C", "A"]) == ["A", "C"]  # receiver order
    assert states_shared(["A"], []) == []
    assert states_shared(["A", "A", "B"], ["A"]) == ["A", "A"]


def test_states_equal() -> None:
    # Go TestStateUtils
    assert not states_equal(["A"], ["B"])
    assert not states_equal(["A"], ["A", "B"])
    assert states_equal(["A"], ["A"])
    # order and multiplicity ignored
    assert states_equal(["A", "B"], ["B", "A"])
    assert states_equal(["A", "A", "B"], ["B", "A"])
    assert states_equal([], [])
    assert not states_equal([], ["A"])


def test_states_equal_order() -> None:
    assert states_equal_order(["A", "B"], ["A", "B"])
    assert states_equal_order(("A", "B"), ["A", "B"])
    assert not states_equal_order(["A", "B"], ["B", "A"])
    assert not states_equal_order(["A", "A", "B"], ["A", "B"])
    assert states_equal_order([], [])


def test_states_remove_intended() -> None:
    # Go quirk #15: SRem ignores its first list; the port removes it too
    assert states_remove(["A", "B", "C"], ["A"]) == ["B", "C"]
    assert states_remove(["A", "B", "C"], ["A"], ["C"]) == ["B"]
    assert states_remove(["A", "B", "C"]) == ["A", "B", "C"]
    assert states_remove(["A", "B"], ["X"]) == ["A", "B"]
    assert states_remove(["A", "B", "A"], ["A"]) == ["B"]
    assert states_remove([], ["A"]) == []
    src = ["A"]
    out = states_remove(src)
    assert out == src
    assert out is not src


def test_states_prefix() -> None:
    assert states_prefix(["A", "B"], "Foo") == ["FooA", "FooB"]
    assert states_prefix([], "Foo") == []
    assert states_prefix(["A"], "") == ["A"]


def test_states_with_prefix() -> None:
    states = ["FooA", "BarB", "FooC", "Baz", "FooA"]
    assert states_with_prefix(states, "Foo") == ["FooA", "FooC"]
    # grouped by prefix order, no repeats
    assert states_with_prefix(states, "Ba", "Foo") == ["BarB", "Baz", "FooA", "FooC"]
    assert states_with_prefix(states, "Ba", "Bar") == ["BarB", "Baz"]
    assert states_with_prefix(states) == []
    assert states_with_prefix(states, "Nope") == []
    assert states_with_prefix(["A", "B"], "") == ["A", "B"]


def test_states_filter_match() -> None:
    states = ["FooA", "BarB", "FooC", "Baz"]
    assert states_filter_match(states, "^Foo") == ["FooA", "FooC"]
    assert states_filter_match(states, "a") == ["BarB", "Baz"]  # unanchored
    assert states_filter_match(states, re.compile(r"[BC]$")) == ["BarB", "FooC"]
    assert states_filter_match(states, "^$") == []
    assert states_filter_match([], ".*") == []


def test_states_to_index() -> None:
    idx = ["A", "B", "C"]
    assert states_to_index(idx, ["C", "A"]) == [2, 0]
    assert states_to_index(idx, ["A", "X"]) == [0, -1]
    assert states_to_index(idx, []) == []
    assert states_to_index(["A", "B", "A"], ["A"]) == [0]  # first match


def test_index_to_states() -> None:
    idx = ["A", "B", "C"]
    assert index_to_states(idx, [2, 0]) == ["C", "A"]
    assert index_to_states(idx, [3, -1]) == ["unknown3", "unknown-1"]
    assert index_to_states(idx, []) == []
    assert index_to_states([], [0]) == ["unknown0"]


def test_hash_str() -> None:
    full = hashlib.md5(b"foo").hexdigest()
    assert full == "acbd18db4cc2f85cedef654fccc4a4d8"
    assert hash_str("foo") == "acbd18"
    assert hash_str("foo", 10) == full[:10]
    assert hash_str("foo", 0) == "acbd18"  # like Go: 0 means the default
    assert hash_str("foo", 100) == full
    assert hash_str("") == "d41d8c"
    with pytest.raises(ValueError):
        hash_str("foo", -1)


def test_states_hash() -> None:
    assert states_hash(["A", "B"]) == hashlib.md5(b"A,B").hexdigest()[:4]
    assert states_hash(["A", "B"]) == hash_str("A,B", 4)
    assert len(states_hash(["A"])) == 4
    assert states_hash(["A", "B"]) != states_hash(["B", "A"])
    assert states_hash([]) == "d41d"


def test_capitalize() -> None:
    assert capitalize("foo") == "Foo"
    assert capitalize("fooBar") == "FooBar"  # rest untouched
    assert capitalize("FOO") == "FOO"
    assert capitalize("") == ""
    assert capitalize("é") == "É"
    assert capitalize("1a") == "1a"


# ----- properties


@given(names, names)
def test_prop_diff_shared_partition(a: list[str], b: list[str]) -> None:
    diff = states_diff(a, b)
    shared = states_shared(a, b)
    assert sorted(diff + shared) == sorted(a)
    assert not set(diff) & set(b)
    assert set(shared) <= set(b)


@given(names, names)
def test_prop_add_remove(a: list[str], b: list[str]) -> None:
    added = states_add(a, b)
    assert added == states_unique(added)
    assert states_equal(added, a + b)
    assert states_remove(added, b) == states_diff(states_unique(a), b)
    assert states_to_index(added, added) == list(range(len(added)))
    assert index_to_states(added, states_to_index(added, a)) == a
