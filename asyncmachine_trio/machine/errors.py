"""The error hierarchy (semantics §9) and the typed payloads carried in mutation args."""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "AsyncMachineError",
    "AutoLivelockError",
    "DisposedError",
    "HandlerTimeoutError",
    "NestedEvalError",
    "NoNurseryError",
    "RelationError",
    "SchemaError",
    "StateUnknownError",
    "TracerError",
    "WrongThreadError",
    "format_trace",
]


class AsyncMachineError(Exception):
    """Root of every error raised or reported by asyncmachine-trio."""


class StateUnknownError(AsyncMachineError, KeyError):
    """A state name is not defined in the machine's schema (Go ErrStateMissing)."""

    def __str__(self) -> str:
        # KeyError.__str__ quotes its argument; show the message as written.
        return str(self.args[0]) if self.args else ""


class SchemaError(AsyncMachineError):
    """A schema is malformed or cannot be applied (Go ErrSchema, semantics §1.4-1.7)."""


class RelationError(AsyncMachineError):
    """A relation could not be resolved, e.g. a Require cycle (Go ErrRelation)."""


class HandlerTimeoutError(AsyncMachineError):
    """A sync handler call took longer than ``handler_timeout``.

    ``handler`` is the Python name of the method (``Handlers.foo_state``),
    ``elapsed`` the seconds it took and ``limit`` the ``handler_timeout``.
    """

    handler: str = ""
    elapsed: float = 0.0
    limit: float = 0.0


class AutoLivelockError(AsyncMachineError):
    """The auto states kept failing the same way: the livelock guard stopped them.

    Reported to ``internal_errors``, the tracers' ``internal_error`` hook and
    the ``asyncmachine_trio`` logger; the bound is ``Machine.auto_retry_limit``.
    """


class NestedEvalError(AsyncMachineError):
    """``eval`` was called from a handler or another eval (semantics §3.7)."""


class DisposedError(AsyncMachineError):
    """The machine has been disposed."""


class NoNurseryError(AsyncMachineError):
    """Forking needs a task group: use ``open_machine`` or ``Machine.start``."""


class ArgumentError(AsyncMachineError, TypeError):
    """An argument has the wrong type (e.g. a bare str where a list is expected)."""


class TracerError(AsyncMachineError):
    """A tracer could not be bound or detached."""


class WrongThreadError(AsyncMachineError, RuntimeError):
    """A machine was called from a thread other than its event loop's thread."""


def format_trace(err: BaseException | None) -> str:
    """The traceback of ``err``, or the current stack when it has none."""
    import traceback  # on the first error only: not a cost of importing the package

    if err is not None and err.__traceback__ is not None:
        return "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return "".join(traceback.format_stack()[:-3])
