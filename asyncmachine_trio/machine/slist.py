"""State-list helpers: plain functions over lists of state names (semantics §12.3).

Every function takes any ``Sequence[str]`` and returns a new ``list[str]`` (or a
scalar); inputs are never modified. Unless stated otherwise, the order of the
result follows the first argument.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = [
    "capitalize",
    "hash_str",
    "index_to_states",
    "states_add",
    "states_diff",
    "states_equal",
    "states_equal_order",
    "states_filter_match",
    "states_hash",
    "states_prefix",
    "states_remove",
    "states_shared",
    "states_to_index",
    "states_unique",
    "states_with_prefix",
]


def _unique(names: Iterable[str]) -> list[str]:
    """Names without repeats, keeping each first occurrence in place."""
    return list(dict.fromkeys(names))


def states_unique(states: Sequence[str]) -> list[str]:
    """A copy of `states` without duplicates, first occurrences kept (semantics §12.3)."""
    return _unique(states)


def states_add(*lists: Sequence[str]) -> list[str]:
    """Concatenate `lists` and drop repeats, first occurrences kept; no args -> []."""
    return _unique(name for lst in lists for name in lst)


def states_diff(states1: Sequence[str], states2: Sequence[str]) -> list[str]:
    """Names of `states1` missing from `states2` (duplicates in `states1` kept)."""
    other = set(states2)
    return [name for name in states1 if name not in other]


def states_shared(states1: Sequence[str], states2: Sequence[str]) -> list[str]:
    """Names of `states1` also present in `states2` (duplicates in `states1` kept)."""
    other = set(states2)
    return [name for name in states1 if name in other]


def states_equal(states1: Sequence[str], states2: Sequence[str]) -> bool:
    """True if each list contains the other: order and multiplicity ignored."""
    return set(states1) == set(states2)


def states_equal_order(states1: Sequence[str], states2: Sequence[str]) -> bool:
    """True if both lists hold the same names in the same order and count."""
    return list(states1) == list(states2)


def states_remove(src: Sequence[str], *lists: Sequence[str]) -> list[str]:
    """A copy of `src` without any name listed in `lists` (Go quirk #15 fixed)."""
    removed = {name for lst in lists for name in lst}
    return [name for name in src if name not in removed]


def states_prefix(states: Sequence[str], prefix: str) -> list[str]:
    """Every name of `states` with `prefix` prepended."""
    return [prefix + name for name in states]


def states_with_prefix(states: Sequence[str], *prefixes: str) -> list[str]:
    """Names starting with a prefix, grouped by prefix order, without repeats."""
    return _unique(name for prefix in prefixes for name in states if name.startswith(prefix))


def states_filter_match(states: Sequence[str], pattern: str | re.Pattern[str]) -> list[str]:
    """Names in which the regex `pattern` matches anywhere (unanchored search)."""
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    return [name for name in states if regex.search(name) is not None]


def states_to_index(names: Sequence[str], states: Sequence[str]) -> list[int]:
    """Position of each of `states` in `names` (first match); -1 when unknown."""
    positions: dict[str, int] = {}
    for i, name in enumerate(names):
        positions.setdefault(name, i)
    return [positions.get(state, -1) for state in states]


def index_to_states(names: Sequence[str], idxs: Sequence[int]) -> list[str]:
    """The name at each of `idxs` in `names`, or ``unknown<N>`` when out of range."""
    return [names[i] if 0 <= i < len(names) else f"unknown{i}" for i in idxs]


def hash_str(s: str, n: int = 6) -> str:
    """The first `n` hex chars of the MD5 of `s`; ``n=0`` means 6, like Go's Hash."""
    if n < 0:
        raise ValueError(f"hash length must not be negative, got {n}")
    if n == 0:
        n = 6
    import hashlib  # on first use only: not a cost of importing the package

    return hashlib.md5(s.encode(), usedforsecurity=False).hexdigest()[:n]


def states_hash(states: Sequence[str]) -> str:
    """A short hash of a state list: 4 hex chars of MD5 of ``",".join(states)``."""
    return hash_str(",".join(states), 4)


def capitalize(s: str) -> str:
    """Upper-case the first character only, leaving the rest untouched."""
    return s[:1].upper() + s[1:]
