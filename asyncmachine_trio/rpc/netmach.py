"""The network machine: a local mirror of a remote machine (docs/rpc.md).

A :class:`NetworkMachine` *is* an :class:`am.Machine`: every read (``is_``,
``clock``, ``time``, ``string``, ``inspect``...), every ``when*`` and
``new_state_ctx`` is answered locally from the clock the server pushes. Only
mutations travel. Because a trio program cannot block on the network inside a
synchronous call, each mutation has two forms:

- the synchronous one of the machine API (``add``, ``remove``, ``set``,
  ``toggle``, ``add_err``...) sends the mutation in order through the client's
  outbox and returns ``Result.QUEUED`` (``CANCELED`` when not connected), so
  pipes, helpers and handlers can use a network machine like a local one;
- the awaitable one, :meth:`NetworkMachine.call` and ``call_add``,
  ``call_remove``... returns the source's own ``Result`` (with its clock
  already applied here).

Final handlers (``foo_state``, ``foo_end``, ``any_state``) bound to a network
machine run when a received clock activates / deactivates their state;
negotiation handlers never run (the change already happened at the source).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..machine.args import AException, pass_args
from ..machine.errors import format_trace
from ..machine.machine import Machine
from ..machine.mirror import mirror_schema, mirror_update
from ..machine.mutation import ADD, REMOVE, SET, MutationType, Result
from ..machine.names import StateNames
from ..machine.schema import EXCEPTION, State
from ..machine.transition import Event
from ..machine.waiting import Ctx, Waiter
from .errors import RpcError, RpcNotConnectedError

if TYPE_CHECKING:
    from .client import Client

__all__ = ["NetworkMachine"]

ERR_ON_CLIENT = "ErrOnClient"


class NetworkMachine(Machine):
    """A machine whose clock comes from a remote source (see the module doc).

    Made by :class:`~asyncmachine_trio.rpc.Client` (``client.netmach``); with
    ``client=None`` it is a read-only mirror (every mutation is CANCELED).
    """

    def __init__(
        self,
        schema: Any = None,
        *,
        id: str,
        client: Client | None = None,
        parent: Machine | str | None = None,
        tags: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            schema if schema is not None else {},
            id=id,
            parent=parent,
            tags=["rpc-netmach", *tags],
            **kwargs,
        )
        self._client = client
        #: the id of the source machine (after the handshake)
        self.remote_id: str = ""
        #: the queue tick of the last mutation the source queued (``when_queue``)
        self.last_queue_tick = 0

    # ----- updates from the client (internal)

    def _install(
        self,
        names: Sequence[str],
        schema: Mapping[str, State] | None,
        ticks: Sequence[int],
        queue_tick: int,
        machine_tick: int,
        remote_id: str,
    ) -> None:
        if schema is None:
            schema = {n: self._schema.get(n, State()) for n in names}
        if list(names) != list(self._names) or dict(schema) != self._schema:
            mirror_schema(self, dict(schema), names)
        self.remote_id = remote_id
        tags = [t for t in self._tags if not t.startswith("src-id:")]
        self._tags = [*tags, f"src-id:{remote_id}"]
        self._update(ticks, queue_tick, machine_tick)

    def _update(self, ticks: Sequence[int], queue_tick: int, machine_tick: int) -> None:
        mirror_update(
            self,
            ticks,
            queue_tick,
            machine_tick,
            inferred=self._inferred(ticks),
            on_handler_error=self._handler_error,
        )

    def _inferred(self, ticks: Sequence[int]) -> list[str]:
        """States shown active because an active tracked state requires them (1.11)."""
        client = self._client
        if client is None or client.tracked_all:
            return []
        schema = self._schema
        names = self._names
        seen: set[str] = set()
        stack = [names[i] for i, t in enumerate(ticks) if t % 2]
        while stack:
            s = stack.pop()
            for r in schema[s].require or ():
                if r not in seen and r in schema:
                    seen.add(r)
                    stack.append(r)
        return [n for n in seen if not ticks[self._index[n]] % 2]

    def _handler_error(self, err: Exception, event: Event) -> None:
        # a final handler of the mirror failed: report it to the source, as
        # a local machine would add Exception
        self._log_err(f"[error:handler] {event.name}: {err!r}")
        self.add_err(err)

    def _log_err(self, line: str) -> None:
        from ..machine.logging import LogLevel

        self._log(LogLevel.OPS, line)

    # ----- mutations (remote)

    def _send(
        self,
        type: MutationType,
        states: StateNames,
        args: Mapping[str, Any] | None,
        event: Event | None,
    ) -> Result:
        if self._disposing or self._client is None:
            return Result.CANCELED
        called = self._parse_list(states)
        return self._client._mutate_nowait(type, called, self._check_args(args), event)

    def add(
        self,
        states: StateNames,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Send an add; ``QUEUED`` (``CANCELED`` when not connected)."""
        return self._send(ADD, states, args, event)

    def add1(
        self, state: str, args: Mapping[str, Any] | None = None, *, event: Event | None = None
    ) -> Result:
        return self._send(ADD, self._parse1(state), args, event)

    def remove(
        self,
        states: StateNames,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        return self._send(REMOVE, states, args, event)

    def remove1(
        self, state: str, args: Mapping[str, Any] | None = None, *, event: Event | None = None
    ) -> Result:
        return self._send(REMOVE, self._parse1(state), args, event)

    def set(
        self,
        states: StateNames,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        return self._send(SET, states, args, event)

    def toggle(
        self,
        states: StateNames,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Decided locally (all active → remove, else add), then sent."""
        called = self._parse_list(states)
        on = all(s in self._active_set for s in called)
        return self._send(REMOVE if on else ADD, called, args, event)

    def toggle1(
        self, state: str, args: Mapping[str, Any] | None = None, *, event: Event | None = None
    ) -> Result:
        return self.toggle(self._parse1(state), args, event=event)

    def _err_mutation(
        self, state: str, err: Exception, args: Mapping[str, Any] | None
    ) -> tuple[list[str], dict[str, Any]]:
        self._err = err
        trace = format_trace(err) if self.log_stack_trace else ""
        called = [state, EXCEPTION] if state != EXCEPTION else [EXCEPTION]
        if ERR_ON_CLIENT in self._index:
            called.append(ERR_ON_CLIENT)
        merged = dict(args or {})
        merged.update(pass_args(AException(err=err, err_trace=trace)))
        return called, merged

    def add_err_state(
        self,
        state: str,
        err: Exception,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Store ``err`` locally and add ``[state, Exception, ErrOnClient]`` on the source."""
        if self._disposing or err is None:
            return Result.CANCELED
        self._parse1(state)
        called, merged = self._err_mutation(state, err, args)
        return self._send(ADD, called, merged, event)

    def add_ns(self, states: StateNames, args: Mapping[str, Any] | None = None) -> Result:
        """Fire-and-forget add (no response, no clock); ``client.sync()`` later."""
        if self._disposing or self._client is None:
            return Result.CANCELED
        called = self._parse_list(states)
        return self._client._mutate_nowait(ADD, called, self._check_args(args), None, ns=True)

    def add1_ns(self, state: str, args: Mapping[str, Any] | None = None) -> Result:
        """``add_ns`` of one state: fire-and-forget, no response and no clock."""
        return self.add_ns([state], args)

    async def call(
        self,
        type: MutationType | str,
        states: StateNames,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Send a mutation and wait for the source's result (its clock is applied).

        Raises :class:`RpcNotConnectedError` without a client, and
        :class:`~asyncmachine_trio.rpc.RpcCallError` when every retry failed.
        """
        mtype = MutationType(type)
        if self._disposing:
            return Result.CANCELED
        if self._client is None:
            raise RpcNotConnectedError(f"{self._id} is a read-only network machine")
        called = self._parse_list(states)  # a str raises ArgumentError, not split
        return await self._client._mutate(mtype, called, self._check_args(args), event)

    async def call_add(self, states: StateNames, args: Mapping[str, Any] | None = None) -> Result:
        """Add ``states`` on the source; its ``Result``, with the clock applied here."""
        return await self.call(ADD, states, args)

    async def call_add1(self, state: str, args: Mapping[str, Any] | None = None) -> Result:
        """Add one state on the source; its ``Result``, with the clock applied here."""
        return await self.call(ADD, [state], args)

    async def call_remove(
        self, states: StateNames, args: Mapping[str, Any] | None = None
    ) -> Result:
        """Remove ``states`` on the source; its ``Result``, with the clock applied here."""
        return await self.call(REMOVE, states, args)

    async def call_remove1(self, state: str, args: Mapping[str, Any] | None = None) -> Result:
        """Remove one state on the source; its ``Result``, with the clock applied here."""
        return await self.call(REMOVE, [state], args)

    async def call_set(self, states: StateNames, args: Mapping[str, Any] | None = None) -> Result:
        """Set exactly ``states`` on the source; its ``Result``, with the clock applied here."""
        return await self.call(SET, states, args)

    async def call_toggle(
        self, states: StateNames, args: Mapping[str, Any] | None = None
    ) -> Result:
        """Toggle ``states`` (decided locally: all active -> remove, else add) on the source."""
        called = self._parse_list(states)
        on = all(s in self._active_set for s in called)
        return await self.call(REMOVE if on else ADD, called, args)

    async def call_toggle1(self, state: str, args: Mapping[str, Any] | None = None) -> Result:
        """Toggle one state on the source (decided locally)."""
        return await self.call_toggle([state], args)

    async def call_add_err(self, err: Exception, args: Mapping[str, Any] | None = None) -> Result:
        """Store ``err`` locally and add ``Exception`` (and ``ErrOnClient``) on the source."""
        return await self.call_add_err_state(EXCEPTION, err, args)

    async def call_add_err_state(
        self, state: str, err: Exception, args: Mapping[str, Any] | None = None
    ) -> Result:
        """Store ``err`` locally and add ``state`` + ``Exception`` on the source."""
        if self._disposing:
            return Result.CANCELED
        self._parse1(state)
        called, merged = self._err_mutation(state, err, args)
        return await self.call(ADD, called, merged)

    # ----- what a mirror cannot answer

    def can_add(self, states: StateNames, args: Mapping[str, Any] | None = None) -> Result:
        """Not answered by the source: always ``EXECUTED`` (as the reference)."""
        self._parse_list(states)
        return Result.CANCELED if self._disposing else Result.EXECUTED

    def can_remove(self, states: StateNames, args: Mapping[str, Any] | None = None) -> Result:
        """Not answered by the source: always ``EXECUTED`` (as the reference)."""
        self._parse_list(states)
        return Result.CANCELED if self._disposing else Result.EXECUTED

    def when_args(self, state: str, args: Mapping[str, Any], ctx: Ctx | None = None) -> Waiter:
        """Args are not synchronised: pipe the state to a local machine instead."""
        raise RpcError(
            "when_args is not available on a network machine: args are not synced;"
            " pipe the state to a local machine (am.states.pipes) and wait there"
        )

    def __repr__(self) -> str:
        return f"<NetworkMachine {self._id} of {self.remote_id or '?'}>"
