"""Mutations confirmed by waiting, failsafe mutation requests, checks before mutating."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from .. import Ctx, Event, Machine, MutationType, Result, Waiter, next_active_in
from ._util import CANCELED, EXECUTED, QUEUED
from .api import MachineApi
from .errors import ContextCanceledError, RetriesExceededError
from .waiting import _wait, wait

# ----- mutations confirmed by waiting (help.go AddSync, AddAsync, RemoveSync)


def _when_queued(mach: MachineApi, res: Result) -> Waiter:
    """A waiter for a queued mutation to have been processed."""
    if int(res) > QUEUED:  # a result carrying its queue tick (semantics §3.2)
        return mach.when_queue(int(res))
    if isinstance(mach, Machine):
        # the core's Result has no queue tick; the current drain processes it
        return mach.when_queue_ends()
    return mach.when_queue(mach.queue_tick() + 1)


async def _confirm(
    mach: MachineApi,
    mutate: Callable[[], Result],
    check: Callable[[], bool],
    time_limit: float | None,
    ctx: Ctx | None,
) -> bool:
    await anyio.lowlevel.checkpoint_if_cancelled()
    res = mutate()
    if res in (EXECUTED, CANCELED):
        await anyio.lowlevel.cancel_shielded_checkpoint()
        return res == EXECUTED
    w = _when_queued(mach, res)
    try:
        await _wait((w,), all_=True, mach=None, time_limit=time_limit, ctx=ctx, close=True)
    except ContextCanceledError:
        return False
    return not mach.is_disposed and check()


async def add_sync(
    mach: MachineApi,
    states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (timeout= is the API; AM_DEBUG x100)
    ctx: Ctx | None = None,
    event: Event | None = None,
) -> bool:
    """Add ``states``; True if executed, or if queued and active once processed (``AddSync``).

    False when canceled, when ``ctx`` ends first or the machine is disposed;
    :class:`TimeoutError` when ``timeout`` expires. ``event`` traces the source.
    """
    return await _confirm(
        mach, lambda: mach.add(states, args, event=event), lambda: mach.is_(states), timeout, ctx
    )


async def add1_sync(
    mach: MachineApi,
    state: str,
    args: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (timeout= is the API; AM_DEBUG x100)
    ctx: Ctx | None = None,
    event: Event | None = None,
) -> bool:
    """:func:`add_sync` for one state."""
    return await add_sync(mach, [state], args, timeout=timeout, ctx=ctx, event=event)


async def remove_sync(
    mach: MachineApi,
    states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (timeout= is the API; AM_DEBUG x100)
    ctx: Ctx | None = None,
    event: Event | None = None,
) -> bool:
    """Remove ``states``; True if executed, or if queued and inactive once processed.

    help.go ``RemoveSync`` returns True after waiting even when the states are
    still active; here the result is ``not_(states)``.
    """
    return await _confirm(
        mach,
        lambda: mach.remove(states, args, event=event),
        lambda: mach.not_(states),
        timeout,
        ctx,
    )


async def remove1_sync(
    mach: MachineApi,
    state: str,
    args: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (timeout= is the API; AM_DEBUG x100)
    ctx: Ctx | None = None,
    event: Event | None = None,
) -> bool:
    """:func:`remove_sync` for one state."""
    return await remove_sync(mach, [state], args, timeout=timeout, ctx=ctx, event=event)


async def add_async(
    mach: MachineApi,
    wait_state: str,
    add_states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (timeout= is the API; AM_DEBUG x100)
    ctx: Ctx | None = None,
    event: Event | None = None,
) -> bool:
    """Add ``add_states`` and wait for the *next* activation of ``wait_state`` (``AddAsync``).

    Tick based, so a Multi ``wait_state`` works and an activation during the
    mutation itself counts. False if the mutation is canceled, ``ctx`` ends or
    the machine is disposed; :class:`TimeoutError` when ``timeout`` expires.
    """
    await anyio.lowlevel.checkpoint_if_cancelled()
    tick = mach.tick(wait_state)
    target = tick + next_active_in(tick)
    w = mach.when_time1(wait_state, target)
    try:
        if mach.add(add_states, args, event=event) == CANCELED:
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return False
        if not w.is_set():
            try:
                await _wait((w,), all_=True, mach=None, time_limit=timeout, ctx=ctx, close=False)
            except ContextCanceledError:
                return False
        else:
            await anyio.lowlevel.cancel_shielded_checkpoint()
        return mach.tick(wait_state) >= target
    finally:
        w.close()


async def add1_async(
    mach: MachineApi,
    wait_state: str,
    add_state: str,
    args: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (timeout= is the API; AM_DEBUG x100)
    ctx: Ctx | None = None,
    event: Event | None = None,
) -> bool:
    """:func:`add_async` for one state."""
    return await add_async(
        mach, wait_state, [add_state], args, timeout=timeout, ctx=ctx, event=event
    )


# ----- failsafe mutation requests (help.go MutRequest, failsafe-go retry policy)


@attrs.define
class MutRequest:
    """A mutation retried while it returns ``CANCELED`` (help.go ``MutRequest``).

    Up to ``retries`` retries (``retries + 1`` attempts), waiting ``delay``
    seconds before the first retry, then doubling up to ``backoff`` (0: a fixed
    ``delay``); a failure once ``max_duration`` seconds have passed ends it
    (0: unbounded) and no wait overshoots it. ``QUEUED`` counts as success.
    Set the policy fields directly (Go's fluent setters). Raises
    :class:`RetriesExceededError`, or :class:`ContextCanceledError` if ``ctx``
    ends.
    """

    mach: MachineApi
    mut_type: MutationType
    states: list[str]
    args: Mapping[str, Any] | None = None
    event: Event | None = None
    retries: int = 10
    delay: float = 0.1
    backoff: float = 5.0
    max_duration: float = 5.0

    def clone(
        self,
        mach: MachineApi | None = None,
        mut_type: MutationType | None = None,
        states: Sequence[str] | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> MutRequest:
        """A copy with the same policy; ``event`` is not copied (as in the reference)."""
        return attrs.evolve(
            self,
            mach=self.mach if mach is None else mach,
            mut_type=self.mut_type if mut_type is None else mut_type,
            states=list(self.states if states is None else states),
            args=self.args if args is None else args,
            event=None,
        )

    def _mutate(self) -> Result:
        if self.mut_type is MutationType.ADD:
            return self.mach.add(self.states, self.args, event=self.event)
        return self.mach.remove(self.states, self.args, event=self.event)

    async def run(self, ctx: Ctx | None = None) -> Result:
        """Mutate until not canceled; :class:`RetriesExceededError` when the policy gives up."""
        if self.mut_type not in (MutationType.ADD, MutationType.REMOVE):
            raise ValueError(f"MutRequest supports add and remove, not {self.mut_type}")
        if ctx is not None and ctx.cancelled:
            raise ContextCanceledError("ctx canceled before the mutation request")
        start = anyio.current_time()
        failed = 0
        base = 0.0
        while True:
            res = self._mutate()
            if res != CANCELED:
                await anyio.lowlevel.cancel_shielded_checkpoint()
                return res
            failed += 1
            elapsed = anyio.current_time() - start
            # port: >= where failsafe-go has >, or a virtual clock retries with 0 delays
            if failed > self.retries or (self.max_duration and elapsed >= self.max_duration):
                await anyio.lowlevel.cancel_shielded_checkpoint()
                raise RetriesExceededError(
                    f"{self.mut_type} {' '.join(self.states)} canceled {failed} times",
                    failed,
                    res,
                )
            if self.backoff and failed > 1:
                base = min(base * 2, self.backoff)
            else:
                base = self.delay
            delay = base
            if self.max_duration:
                delay = max(0.0, min(delay, self.max_duration - elapsed))
            if not await wait(delay, ctx):
                raise ContextCanceledError("ctx canceled during the mutation request")


def new_req_add(
    mach: MachineApi,
    states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> MutRequest:
    """A failsafe Add request with the default policy (help.go ``NewReqAdd``)."""
    return MutRequest(mach, MutationType.ADD, list(states), args, event)


def new_req_add1(
    mach: MachineApi,
    state: str,
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> MutRequest:
    """:func:`new_req_add` for one state."""
    return new_req_add(mach, [state], args, event=event)


def new_req_remove(
    mach: MachineApi,
    states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> MutRequest:
    """A failsafe Remove request with the default policy (help.go ``NewReqRemove``)."""
    return MutRequest(mach, MutationType.REMOVE, list(states), args, event)


def new_req_remove1(
    mach: MachineApi,
    state: str,
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> MutRequest:
    """:func:`new_req_remove` for one state."""
    return new_req_remove(mach, [state], args, event=event)


# ----- check before mutating (help.go CantAdd, AskAdd, ...)


def cant_add(
    mach: MachineApi, states: Sequence[str], args: Mapping[str, Any] | None = None
) -> bool:
    """True if a dry run confirms the Add would be canceled (help.go ``CantAdd``).

    Called from a handler the dry run is only queued, so nothing is confirmed:
    False. (The reference's ``CantAdd`` has its result inverted.)
    """
    return mach.can_add(states, args) == CANCELED


def cant_add1(mach: MachineApi, state: str, args: Mapping[str, Any] | None = None) -> bool:
    """:func:`cant_add` for one state."""
    return cant_add(mach, [state], args)


def cant_remove(
    mach: MachineApi, states: Sequence[str], args: Mapping[str, Any] | None = None
) -> bool:
    """True if a dry run confirms the Remove would be canceled (help.go ``CantRemove``)."""
    return mach.can_remove(states, args) == CANCELED


def cant_remove1(mach: MachineApi, state: str, args: Mapping[str, Any] | None = None) -> bool:
    """:func:`cant_remove` for one state."""
    return cant_remove(mach, [state], args)


def ask_add(
    mach: MachineApi,
    states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> Result:
    """Add only if not confirmed impossible, avoiding canceled transitions (``AskAdd``)."""
    if cant_add(mach, states, args):
        return CANCELED
    return mach.add(states, args, event=event)


def ask_add1(
    mach: MachineApi,
    state: str,
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> Result:
    """:func:`ask_add` for one state."""
    return ask_add(mach, [state], args, event=event)


def ask_remove(
    mach: MachineApi,
    states: Sequence[str],
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> Result:
    """Remove only if not confirmed impossible (help.go ``AskRemove``)."""
    if cant_remove(mach, states, args):
        return CANCELED
    return mach.remove(states, args, event=event)


def ask_remove1(
    mach: MachineApi,
    state: str,
    args: Mapping[str, Any] | None = None,
    *,
    event: Event | None = None,
) -> Result:
    """:func:`ask_remove` for one state."""
    return ask_remove(mach, [state], args, event=event)
