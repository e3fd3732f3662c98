"""State and transition utilities: tags, ticks, results, ids, time matrices."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from .. import Result, Time, Transition
from ._util import CANCELED
from .api import MachineApi
from .errors import MutationCanceledError


def get_transition_states(
    tx: Transition, index: Sequence[str] | None = None
) -> tuple[list[str], list[str], list[str]]:
    """``(added, removed, touched)`` of a transition (help.go ``GetTransitionStates``).

    From the ticks before and after (a re-entered Multi state counts as added)
    and, for touched, from the recorded steps (needs ``log_steps``). ``index``
    defaults to the machine's state names.
    """
    names = tx.machine.state_names if index is None else index
    before, after = tx.time_before, tx.time_after
    added: list[str] = []
    removed: list[str] = []
    for i, name in enumerate(names):
        b, a = before.tick(i), after.tick(i)
        if b % 2 and not a % 2:
            removed.append(name)
        elif (not b % 2 and a % 2) or b != a:
            added.append(name)
    touched: list[str] = []
    for step in tx.steps:
        for s in (step.from_state, step.to_state):
            if s and s in names:
                touched.append(s)
    return added, removed, list(dict.fromkeys(touched))


def handler_to_state(handler: str) -> str:
    """Strip the ``State``, ``Enter``, ``End``, ``Exit`` suffixes, in that order (Go names)."""
    for suffix in ("State", "Enter", "End", "Exit"):
        handler = handler.removesuffix(suffix)
    return handler


def tag_value(tags: Iterable[str], key: str) -> str:
    """The value of a ``key:value`` tag; a bare ``key`` tag gives ``key``; else ``""``."""
    prefix = key + ":"
    for t in tags:
        if t == key:
            return key
        if t.startswith(prefix):
            return t[len(prefix) :]
    return ""


def tag_value_int(tags: Iterable[str], key: str) -> int:
    """:func:`tag_value` as an int: -1 if missing, 0 if not a number."""
    v = tag_value(tags, key)
    if v == "":
        return -1
    try:
        return int(v)
    except ValueError:
        return 0


def activations(ticks: int) -> int:
    """The number of activations a tick count stands for: ``(ticks + 1) // 2``."""
    return (ticks + 1) // 2


def result_to_err(result: Result) -> MutationCanceledError | None:
    """A :class:`MutationCanceledError` for ``CANCELED``, else None."""
    if result == CANCELED:
        return MutationCanceledError("mutation canceled")
    return None


def rand_id(length: int = 16) -> str:
    """A random hex id of ``length`` chars, rounded up to even (0 means 16, as in Go)."""
    if length == 0:
        length = 16
    return os.urandom((length + 1) // 2).hex()


def time_matrix(machines: Sequence[MachineApi]) -> list[Time]:
    """The machines' times stacked; they must have the same number of states (x_help.go)."""
    if not machines:
        raise ValueError("no machines provided")
    n = len(machines[0].state_names)
    if any(len(m.state_names) != n for m in machines):
        raise ValueError("machines have different state lengths")
    return [m.time() for m in machines]
