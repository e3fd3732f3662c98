"""Mutations, their results and the queue entry type (semantics §3)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["MutSource", "Mutation", "MutationType", "Position", "Result"]


class Result(enum.IntEnum):
    """Outcome of a mutation call (semantics §3.2)."""

    EXECUTED = 0
    CANCELED = 1
    QUEUED = 2

    def __str__(self) -> str:
        return self.name.lower()


class MutationType(str, enum.Enum):
    """The kind of a mutation; ``str()`` gives the reference's short name."""

    ADD = "add"
    REMOVE = "remove"
    SET = "set"
    EVAL = "eval"

    def __str__(self) -> str:
        return self.value


class Position(enum.Enum):
    """Where ``is_queued`` looks: anywhere, only the first or only the last entry."""

    ANY = "any"
    FIRST = "first"
    LAST = "last"


# module-level aliases: the hot paths compare by identity (``res is CANCELED``)
EXECUTED = Result.EXECUTED
CANCELED = Result.CANCELED
QUEUED = Result.QUEUED
ADD = MutationType.ADD
REMOVE = MutationType.REMOVE
SET = MutationType.SET
EVAL = MutationType.EVAL


@attrs.frozen(slots=True)
class MutSource:
    """Where a traced mutation came from: machine, transition, machine time."""

    mach_id: str
    tx_id: str
    mach_time: int = 0


class Mutation:
    """One queued request to change the machine (a queue entry).

    ``called`` holds state names, deduplicated; ``queue_tick`` is 0 for
    prepended entries (auto, checks, evals, exceptions), else the queue tick at
    which it is processed (semantics §2.3, 3.3).
    """

    # No __slots__: every attribute but type, called and args has its default
    # here, on the class, so the mutation methods' fast paths make a plain
    # mutation with ``object.__new__`` and three stores (``Machine.add1``); a
    # class call running ``__init__`` costs twice that (an args tuple, a C call
    # into a new frame, ten stores), ~4 % of a toggle on CPython 3.12.
    type: MutationType
    called: list[str]
    args: dict[str, Any]
    is_auto: bool = False
    is_check: bool = False
    source: MutSource | None = None
    queue_tick: int = 0
    # the livelock guard (semantics §6.1): on the Exception mutation of a failed
    # auto transition and on the auto mutation it triggers, ``(what failed, how
    # many times in a row)``; None everywhere else
    auto_chain: tuple[object, int] | None = None
    eval_fn: Callable[[], Any] | None = None
    eval_source: str = ""

    def __init__(
        self,
        type: MutationType,
        called: list[str],
        args: dict[str, Any],
        *,
        is_auto: bool = False,
        is_check: bool = False,
        source: MutSource | None = None,
        eval_fn: Callable[[], Any] | None = None,
        eval_source: str = "",
    ) -> None:
        self.type = type
        self.called = called
        self.args = args
        # the rest only when not the class default (see above)
        if is_auto:
            self.is_auto = is_auto
        if is_check:
            self.is_check = is_check
        if source is not None:
            self.source = source
        if eval_fn is not None:
            self.eval_fn = eval_fn
        if eval_source:
            self.eval_source = eval_source

    def is_called(self, state: str) -> bool:
        """True if ``state`` is one of the called states."""
        return state in self.called

    def __repr__(self) -> str:
        flags = "".join(
            f" {f}" for f, on in (("auto", self.is_auto), ("check", self.is_check)) if on
        )
        return f"<Mutation [{self.type}] {' '.join(self.called)}{flags}>"

    def __str__(self) -> str:
        return f"[{self.type}] {' '.join(self.called)}"
