"""Typed mutation arguments: values stored under ``<prefix>__<state>`` keys (semantics §12.2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import attrs

if TYPE_CHECKING:
    from .clock import Time
    from .transition import Event, Transition

__all__ = [
    "ARGS_PREFIX",
    "ACheck",
    "AException",
    "ExceptionArgsPanic",
    "TypedArgs",
    "args_key",
    "args_merge",
    "parse_args",
    "pass_args",
]

ARGS_PREFIX = "_am"

T = TypeVar("T", bound="TypedArgs")


class TypedArgs:
    """Base for typed args: subclasses set ``args_prefix`` and ``args_state``."""

    args_prefix: ClassVar[str] = ARGS_PREFIX
    args_state: ClassVar[str] = "Any"

    @classmethod
    def args_key(cls) -> str:
        """The mapping key this type is stored under."""
        return args_key(cls.args_state, cls.args_prefix)


def args_key(state: str = "Any", prefix: str = ARGS_PREFIX) -> str:
    """``<prefix>__<state>``, e.g. ``_am__Exception``."""
    return f"{prefix}__{state}"


def pass_args(*values: TypedArgs) -> dict[str, Any]:
    """An args mapping holding each typed value under its key (Go ``Pass``)."""
    return {v.args_key(): v for v in values}


def args_merge(*maps: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge args mappings; later keys win (Go ``PassMerge`` / ``AMerge``)."""
    out: dict[str, Any] = {}
    for m in maps:
        if m:
            out.update(m)
    return out


def parse_args(args: Mapping[str, Any] | None, cls: type[T]) -> T | None:
    """The value of type ``cls`` stored in ``args``, or None (Go ``ParseArgs``)."""
    if not args:
        return None
    value = args.get(cls.args_key())
    return value if isinstance(value, cls) else None


@attrs.define(slots=True)
class ExceptionArgsPanic:
    """Where a handler exception happened: the mutation and the transition."""

    called_states: list[str]
    states_before: list[str]
    transition: Transition | None = None


@attrs.define(slots=True)
class AException(TypedArgs):
    """Args of the ``Exception`` state: the error, its trace and context (semantics §9)."""

    args_state: ClassVar[str] = "Exception"

    err: BaseException | None = None
    err_trace: str = ""
    panic: ExceptionArgsPanic | None = None
    fn: str = ""
    target_states: list[str] | None = None
    called_states: list[str] | None = None
    time_before: Time | None = None
    time_after: Time | None = None
    event: Event | None = None


@attrs.define(slots=True)
class ACheck(TypedArgs):
    """Args of a dry run: ``check_done`` is called when the check finished."""

    args_state: ClassVar[str] = "Check"

    check_done: Any = None
    canceled: bool = False
