"""The Disposed schema mixin and its handlers: disposal as states.

Port of the reference's ``pkg/states/ss_disposed.go`` (docs/states.md).
A machine using it is disposed by adding ``Disposing`` (``am.helpers.dispose``
does that), not by calling ``mach.dispose()`` directly:

1. ``RegisterDisposal`` (Multi) with ``{DISPOSED_ARG_HANDLER: fn}`` registers
   ``fn(machine_id)``; ``am.helpers.dispose_bind`` does that too.
2. ``Disposing`` removes ``Start`` and ``Exception`` and runs every registered
   callback in order, in a task bound to the ``Disposing`` state (callbacks
   may be ``async``; they are cancelled if ``Disposing`` ends first).
3. ``Disposed`` follows and the machine disposes itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import asyncmachine_trio as am
from asyncmachine_trio import helpers as amhelp

__all__ = ["DISPOSED_ARG_HANDLER", "DisposalFn", "DisposedHandlers", "DisposedStates"]

#: The arg key of the callback passed to ``RegisterDisposal`` (same as
#: ``am.helpers.DISPOSED_ARG_HANDLER``).
DISPOSED_ARG_HANDLER = amhelp.DISPOSED_ARG_HANDLER

#: A disposal callback: ``fn(machine_id)``, plain or ``async``.
DisposalFn: TypeAlias = Callable[[str], "Awaitable[Any] | Any"]


class DisposedStates(am.States):
    """Disposal in states; ``Start`` is expected in the host schema.

    - ``RegisterDisposal`` (Multi): registers the callback under
      :data:`DISPOSED_ARG_HANDLER`; needs :class:`DisposedHandlers` bound.
    - ``Disposing``: disposal started (removes Start and Exception).
    - ``Disposed``: resources released, ``mach.dispose()`` follows.
    """

    RegisterDisposal: am.State = am.State(multi=True)
    Disposing: am.State = am.State(remove=(am.START, am.EXCEPTION))
    Disposed: am.State = am.State(remove=(am.START, am.EXCEPTION, "Disposing"))


class DisposedHandlers:
    """Handlers of :class:`DisposedStates`; inherit them in your handler class.

    Override ``disposing_state`` to release your own resources and call
    ``super().disposing_state(e)`` to run the registered callbacks. A callback
    that raises is logged (``[dispose:err]``) and the next one still runs, so
    a faulty callback cannot stop the disposal.
    """

    disposal_handlers: list[DisposalFn]

    def _disposal_fns(self) -> list[DisposalFn]:
        try:
            return self.disposal_handlers
        except AttributeError:
            self.disposal_handlers = []
            return self.disposal_handlers

    def register_disposal_enter(self, e: am.Event) -> bool:
        """Accept only a callable under :data:`DISPOSED_ARG_HANDLER`."""
        ok = callable(e.args.get(DISPOSED_ARG_HANDLER))
        # a dry run (can_add) must not put the machine in Exception
        if not ok and not e.mutation.is_check:
            e.machine.add_err(
                am.ArgumentError(f"{DISPOSED_ARG_HANDLER} invalid: expected a callable"),
                event=e,
            )
        return ok

    def register_disposal_state(self, e: am.Event) -> None:
        """Append the callback; it runs when ``Disposing`` activates."""
        self._disposal_fns().append(e.args[DISPOSED_ARG_HANDLER])

    def disposing_state(self, e: am.Event) -> None:
        """Run the callbacks in a task bound to ``Disposing``, then add ``Disposed``.

        Without a task group (``am.open_machine`` / ``mach.start``) the callbacks
        run right here; an ``async`` one is then logged as an error and skipped.
        """
        mach = e.machine
        fns = list(self._disposal_fns())
        if mach.task_group is not None:
            # skipped (like the reference) when Disposing already ended
            e.fork(_run_disposal, mach, fns, e)
            return
        for fn in fns:
            try:
                ret = fn(mach.id)
                if inspect.isawaitable(ret):
                    _close(ret)
                    raise am.NoNurseryError(
                        f"async disposal callback {fn!r} needs a started machine"
                    )
            except Exception as err:
                _log_err(mach, err)
        mach.add1(DisposedStates.Disposed, event=e)

    def disposed_state(self, e: am.Event) -> None:
        """Dispose the machine once this transition has finished (right away without
        a task group)."""
        mach = e.machine
        tg = mach.task_group
        if tg is not None:
            try:
                tg.start_soon(_dispose_now, mach, name=f"am-{mach.id[:5]}-disposed")
                return
            except RuntimeError:  # the task group is closed
                pass
        mach.dispose()


async def _run_disposal(mach: am.Machine, fns: list[DisposalFn], e: am.Event) -> None:
    for fn in fns:
        try:
            ret = fn(mach.id)
            if inspect.isawaitable(ret):
                await ret
        except Exception as err:
            _log_err(mach, err)
    mach.add1(DisposedStates.Disposed, event=e)


async def _dispose_now(mach: am.Machine) -> None:
    # no checkpoint before dispose(): runs even in a task group being cancelled
    mach.dispose()


def _close(aw: Awaitable[Any]) -> None:
    close = getattr(aw, "close", None)
    if callable(close):
        close()


def _log_err(mach: am.Machine, err: Exception) -> None:
    mach.log_at(am.LogLevel.CHANGES, f"[dispose:err] {type(err).__name__}: {err}")
