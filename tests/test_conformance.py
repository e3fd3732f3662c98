"""Replays every ``kind: machine`` conformance vector through the public API.

The engine is ``conformance.py``; the vectors in ``tests/vectors.json``
(scenarios taken from asyncmachine-go's own tests and replayed against it).
Each test builds the machine, runs the setup, binds the handlers, runs the ops
and checks every ``expect`` and the reference's ``observed`` values (see the
engine's docstring for what is compared how).
"""

from __future__ import annotations

from typing import Any

import pytest
from conformance import (
    EXPECT,
    OBSERVED,
    OBSERVED_TIMING,
    OPS,
    load_vectors,
    replay,
)

MACHINE_VECTORS = load_vectors("machine")


@pytest.mark.parametrize("vector", MACHINE_VECTORS, ids=[v["id"] for v in MACHINE_VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    replay(vector)


def test_vector_ids_are_unique() -> None:
    ids = [v["id"] for v in MACHINE_VECTORS + load_vectors("api")]
    assert len(ids) == len(set(ids))


def test_every_timing_note_is_decided() -> None:
    """Each ``observed_note`` was read and its skips decided in OBSERVED_TIMING."""
    noted = {v["id"] for v in MACHINE_VECTORS if "observed_note" in v}
    assert noted == set(OBSERVED_TIMING)


def test_engine_knows_every_key() -> None:
    """Static sweep: every op, expect key and observed key of the file is handled
    (the replay also fails on unknown ones; this reports them all at once)."""

    def ops_of(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found = []
        for op in ops:
            found.append(op)
            found += ops_of(op.get("ops", []))
        return found

    every: list[dict[str, Any]] = []
    observed: set[str] = set()
    for v in MACHINE_VECTORS:
        every += ops_of(v.get("setup_ops", []) + v["ops"])
        for binding in v.get("bindings", []):
            for behaviour in binding["handlers"].values():
                every += ops_of(behaviour.get("ops", []))
        for entry in v["observed"]:
            observed |= set(entry)
    assert {op["op"] for op in every} - set(OPS) == set()
    assert {key for op in every for key in op.get("expect", {})} - set(EXPECT) == set()
    assert observed - set(OBSERVED) == set()
