"""The errors the helpers raise."""

from __future__ import annotations

from .. import EXCEPTION, AsyncMachineError, Result
from .api import MachineApi


class ContextCanceledError(AsyncMachineError):
    """The ``ctx`` given to a helper was cancelled (Go ``ctx.Err()``)."""


class ExceptionStateError(AsyncMachineError):
    """The machine entered ``Exception`` while a ``wait_for_err_*`` waited; ``err`` is its error."""

    def __init__(self, mach: MachineApi) -> None:
        self.err: Exception | None = mach.err
        super().__init__(f"{EXCEPTION}: {self.err}")


class MutationCanceledError(AsyncMachineError):
    """A mutation was canceled (Go ``ErrCanceled``)."""


class RetriesExceededError(MutationCanceledError):
    """A :class:`MutRequest` gave up; ``attempts`` were made, the last returned ``result``."""

    def __init__(self, msg: str, attempts: int, result: Result) -> None:
        super().__init__(msg)
        self.attempts = attempts
        self.result = result


class EvalError(AsyncMachineError):
    """``eval`` could not run the function: nested in a handler, or disposed (Go ErrEvalTimeout)."""


class StateLoopError(AsyncMachineError):
    """A :class:`StateLoop` stopped: its context ended or the loop ran too fast."""
