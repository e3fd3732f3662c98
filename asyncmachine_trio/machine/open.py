"""``am.open_machine``: a machine with its own task group (semantics §10)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio

from .excgroup import unwrap_single
from .machine import Machine
from .sigs import params_of
from .tasks import dispose, start

__all__ = ["open_machine"]


@params_of(Machine)
@contextlib.asynccontextmanager
async def open_machine(*args: Any, **kwargs: Any) -> AsyncIterator[Machine]:
    """``async with am.open_machine(schema, ...) as mach``: a machine with its own
    task group, disposed on exit (its forked tasks are cancelled).

    Takes the parameters of :class:`Machine`. A bad schema or option raises
    before the task group starts; an exception raised in the block (or by one
    task) leaves as itself, not in an ``ExceptionGroup`` (several at once do:
    semantics §9.3).
    """
    mach = Machine(*args, **kwargs)
    with unwrap_single():
        async with anyio.create_task_group() as tg:
            start(mach, tg)
            try:
                yield mach
            finally:
                dispose(mach)
