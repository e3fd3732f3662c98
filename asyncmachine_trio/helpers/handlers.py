"""Handlers and composition: Multi cleanup, nested states, eval, disposal, healthcheck."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from .. import (
    DISPOSING,
    HEALTHCHECK,
    Event,
    Machine,
    MutationType,
    NoNurseryError,
    Result,
    Waiter,
    next_active_in,
)
from ._util import QUEUED
from .api import MachineApi
from .errors import EvalError
from .schema import is_multi

T = TypeVar("T")

#: States and arg key of the ``Disposed`` mixin used by :func:`dispose_bind` / :func:`dispose`.
REGISTER_DISPOSAL = "RegisterDisposal"
DISPOSED_ARG_HANDLER = "DisposedArgHandler"


def remove_multi(mach: MachineApi, state: str) -> Callable[[Event], None]:
    """A final handler removing ``state``: a self-cleaning Multi event (``RemoveMulti``)."""

    def handler(_e: Event) -> None:
        mach.remove1(state)

    return handler


def nested_state(
    e: Event, id_arg: str, mach_getter: Callable[[str], MachineApi | None]
) -> tuple[Result, Waiter | None]:
    """Forward an Add of ``e``'s state to the submachine named by ``e.args[id_arg]``.

    x_help.go ``NestedState``. Returns the submachine's result and, when that
    is queued, a waiter for the nested state's next activation. Raises
    ValueError for a non-Add mutation, a missing id or submachine, or an
    already active non-Multi nested state.
    """
    if e.mutation.type is not MutationType.ADD:
        raise ValueError(f"unsupported nested mutation {e.mutation.type}")
    sub_id = e.args.get(id_arg)
    if not isinstance(sub_id, str) or not sub_id:
        raise ValueError(f"invalid args: {id_arg} must be a non-empty str")
    sub = mach_getter(sub_id)
    if sub is None:
        raise ValueError(f"submachine {sub_id} not found")
    state = e.state or e.name[:-5]
    tick = sub.tick(state)
    multi = is_multi(sub, state)
    if tick % 2 and not multi:
        raise ValueError(f"nested state {state} is active")
    res = sub.add1(state, e.args)
    if res < QUEUED:
        return res, None
    if multi:
        # the reference waits for tick + 2: one activation too many when inactive
        return res, sub.when_time1(state, tick + next_active_in(tick))
    return res, sub.when1(state)


def eval_getter(mach: Machine, source: str, fn: Callable[[], T]) -> T:
    """Return ``fn()`` run inside ``mach.eval`` (help.go ``EvalGetter``).

    Raises :class:`EvalError` when it cannot run (nested in a handler, or
    disposed). The reference retries ``min(max_tries, 1)`` times, i.e. once;
    the port's eval fails deterministically, so there is no retry.
    """
    box: list[T] = []
    if not mach.eval("Get/" + source, lambda: box.append(fn())):
        raise EvalError(f"eval failed: EvalGet/{source}")
    return box[0]


def eval_setter(mach: Machine, source: str, fn: Callable[[], Any]) -> None:
    """Run ``fn()`` inside ``mach.eval``; :class:`EvalError` if it cannot (``EvalSetter``)."""
    if not mach.eval("Set/" + source, fn):
        raise EvalError(f"eval failed: EvalSet/{source}")


def dispose_bind(mach: MachineApi, fn: Callable[[str], Any]) -> None:
    """Register a disposal callback via the ``Disposed`` mixin, else ``on_dispose``."""
    if mach.has1(REGISTER_DISPOSAL):
        mach.add1(REGISTER_DISPOSAL, {DISPOSED_ARG_HANDLER: fn})
        return
    mach.on_dispose(fn)


def dispose(mach: MachineApi, *, event: Event | None = None) -> None:
    """Dispose via the ``Disposing`` state when the schema has it, else ``mach.dispose()``."""
    if mach.has1(DISPOSING):
        mach.add1(DISPOSING, event=event)
        return
    mach.dispose()


def healthcheck(mach: Machine, period: float = 30.0) -> bool:
    """Add ``Healthcheck`` every ``period`` seconds until disposed (help.go ``Healthcheck``).

    Runs in the machine's task group; False (nothing started) without the state.
    """
    if not mach.has1(HEALTHCHECK):
        return False
    tg = mach.task_group
    if tg is None:
        raise NoNurseryError(f"healthcheck for {mach.id} needs a started machine")

    async def loop() -> None:
        disposed = mach.when_disposed()
        try:
            while True:
                with anyio.move_on_after(period):
                    await disposed
                if mach.is_disposed:
                    return
                mach.add1(HEALTHCHECK)
        finally:
            disposed.close()

    tg.start_soon(loop)
    return True
