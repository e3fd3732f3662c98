"""Typed errors of the integrations; each has a stable wire ``code``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import asyncmachine_trio as am

__all__ = [
    "ERROR_TYPES",
    "AddAndRemoveError",
    "IntegrationError",
    "InternalError",
    "MalformedMessageError",
    "MessageTooLargeError",
    "NoStatesError",
    "RequestCanceledError",
    "RequestTimeoutError",
    "StateNotAllowedError",
    "TimeLengthError",
    "UnknownKindError",
    "UnknownStateError",
    "closest",
]


def closest(name: str, valid: Iterable[str]) -> str:
    """The valid name closest to ``name``, or ``""``."""
    found = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return found[0] if found else ""


class IntegrationError(am.AsyncMachineError):
    """A request refused by a handler; ``code`` is what goes on the wire."""

    code = "error"

    def __init__(self, message: str, *, hint: str = "", kind: str = "") -> None:
        super().__init__(message)
        self.hint = hint
        self.kind = kind
        """The kind of the request refused, when known."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MalformedMessageError(IntegrationError):
    """The payload is not JSON, not an object, or a field has the wrong type."""

    code = "malformed"


class MessageTooLargeError(MalformedMessageError):
    """The payload exceeds the size limit."""

    code = "too_large"


class UnknownKindError(MalformedMessageError):
    """``kind`` is missing or names no message this endpoint handles."""

    code = "unknown_kind"

    @classmethod
    def for_name(cls, kind: str, valid: Iterable[str]) -> UnknownKindError:
        hint = closest(kind, valid)
        more = f" (did you mean {hint!r}?)" if hint else ""
        return cls(f"unknown kind {kind!r}{more}", hint=hint)


class UnknownStateError(IntegrationError):
    """A state name is not in the machine's schema."""

    code = "unknown_state"

    @classmethod
    def for_names(cls, names: Iterable[str], mach: am.Machine) -> UnknownStateError:
        names = list(names)
        hint = closest(names[0], mach.state_names) if names else ""
        more = f" (did you mean {hint!r}?)" if hint else ""
        return cls(f"unknown states ({' '.join(names)}) for machine {mach.id}{more}", hint=hint)


class StateNotAllowedError(IntegrationError):
    """A state exists but this endpoint may not mutate it."""

    code = "state_not_allowed"


class AddAndRemoveError(IntegrationError):
    """A mutation request gave both ``add`` and ``remove``."""

    code = "add_and_remove"


class NoStatesError(IntegrationError):
    """A mutation or waiting request names no states."""

    code = "no_states"


class TimeLengthError(IntegrationError):
    """A waiting request's ``time`` is not as long as its ``states``."""

    code = "time_length_mismatch"


class RequestTimeoutError(IntegrationError):
    """A waiting request was not satisfied in time."""

    code = "timeout"


class RequestCanceledError(IntegrationError):
    """A waiting request's context was cancelled before it was satisfied."""

    code = "canceled"


class InternalError(IntegrationError):
    """The handler failed unexpectedly; the message names the exception."""

    code = "internal"


ERROR_TYPES: dict[str, type[IntegrationError]] = {
    t.code: t
    for t in (
        IntegrationError,
        MalformedMessageError,
        MessageTooLargeError,
        UnknownKindError,
        UnknownStateError,
        StateNotAllowedError,
        AddAndRemoveError,
        NoStatesError,
        TimeLengthError,
        RequestTimeoutError,
        RequestCanceledError,
        InternalError,
    )
}
