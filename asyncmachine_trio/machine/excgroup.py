"""Exceptions leave our context managers as themselves (semantics §9.3).

trio nurseries and anyio task groups wrap whatever escapes them in an
``ExceptionGroup``, even a single exception raised by the ``async with`` body.
Every context manager of the package that owns a nursery or a task group runs
it inside :func:`unwrap_single`, so ``except ValueError`` catches a
``ValueError`` raised in the body; several concurrent failures stay a group.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio depends on
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["single_exception", "unwrap_single"]


def single_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception a group (of groups) of exactly one holds, else None."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


@contextlib.contextmanager
def unwrap_single() -> Iterator[None]:
    """Re-raise a group that holds a single exception as that exception.

    The exception keeps its own traceback (this frame is appended), ``__cause__``
    and ``__context__``; a group of several is re-raised untouched.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        exc = single_exception(group)
        if exc is None:
            raise
        context, suppress = exc.__context__, exc.__suppress_context__
        try:
            raise exc
        finally:
            # raising inside this handler made the group the context: undo that
            exc.__context__, exc.__suppress_context__ = context, suppress
            del exc, group, context
