"""The aRPC client: connects, handshakes, mirrors the source into a network machine.

:class:`Client` owns a machine of :class:`~.states.ClientStates` (``client.mach``,
id ``rc-<name>``) whose states tell what the connection is doing, and the
:class:`~.netmach.NetworkMachine` (``client.netmach``, id ``rnm-<name>``).
Run it with ``async with am.rpc.open_client(url, schema) as client`` or
``client.start(nursery)`` + ``await client.wait_ready()``.

Resilience (docs/rpc.md): dialling retries with exponential backoff
(``RetryingConn``; ``ConnRetryFailed`` when exhausted), calls retry with
backoff (``RetryingCall``; ``CallRetryFailed`` adds ``ErrNetwork``), per-call
timeouts cancel for real, and a lost connection is re-dialled and re-synced.
Each mutation carries an id the server de-duplicates, so a retried mutation is
never applied twice.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import anyio.abc
import attrs
import trio

from ..helpers.schema import schema_hash
from ..machine import tracing as _tracing
from ..machine.args import TypedArgs, pass_args
from ..machine.errors import DisposedError
from ..machine.excgroup import unwrap_single
from ..machine.logging import LogLevel
from ..machine.machine import Machine
from ..machine.mutation import MutationType, Result
from ..machine.transition import Event
from ._common import Traffic, machine_kwargs
from .engine import Endpoint
from .errors import (
    RpcAccessError,
    RpcCallError,
    RpcConnectionError,
    RpcDriftError,
    RpcError,
    RpcHandshakeError,
    RpcNotConnectedError,
    RpcOutcomeUnknownError,
    RpcRemoteError,
    RpcTimeoutError,
)
from .netmach import NetworkMachine
from .states import ClientStates
from .sync import apply_update
from .transport import Transport, connect, locked
from .wire import (
    DEFAULT_MAX_FRAME,
    CliHello,
    CliMutation,
    Empty,
    SrvHello,
    SrvMutation,
    SrvPayload,
    SrvSync,
    Update,
    UpdateMuts,
)

__all__ = ["ARpc", "AServerPayload", "Client", "open_client"]

S = ClientStates

#: dial function for custom transports (tests: in-memory pairs)
Dialer = Callable[[], Awaitable[Transport]]


@attrs.define(slots=True)
class ARpc(TypedArgs):
    """Typed args of the rpc machines (the reference's ``rpc.A``, prefix ``am_rpc``)."""

    args_prefix = "am_rpc"
    args_state = "Any"

    id: str = ""
    name: str = ""
    addr: str = ""
    method: str = ""
    err: BaseException | None = None
    attempt: int = 0


@attrs.define(slots=True)
class AServerPayload(TypedArgs):
    """Args of ``ServerPayload``: the payload the server sent."""

    args_prefix = "am_rpc"
    args_state = "ServerPayload"

    name: str = ""
    payload: SrvPayload | None = None

    @property
    def data(self) -> Any:
        """The payload's data (None without a payload)."""
        return None if self.payload is None else self.payload.data


class Client(Traffic):
    """Connects to a server and mirrors its source machine (see the module doc)."""

    def __init__(
        self,
        addr: str,
        schema: Any = None,
        *,
        name: str = "",
        consumer: Machine | None = None,
        sync_schema: bool = True,
        allowed_states: Sequence[str] | None = None,
        skipped_states: Sequence[str] | None = None,
        sync_mutations: bool = False,
        shallow_clocks: bool = False,
        token: str = "",
        ssl_context: ssl.SSLContext | None = None,
        dial: Dialer | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        conn_timeout: float = 3.0,
        conn_retries: int = 50,
        conn_retry_delay: float = 1.0,
        conn_retry_backoff: float = 10.0,
        conn_retry_timeout: float = 300.0,
        call_timeout: float = 3.0,
        call_retries: int = 15,
        call_retry_delay: float = 0.1,
        call_retry_backoff: float = 10.0,
        call_retry_timeout: float = 60.0,
        idle_timeout: float | None = 15.0,
        reconnect: bool = True,
        parent: Machine | str | None = None,
        log_level: LogLevel | int | None = None,
        logger: Any = None,
    ) -> None:
        self.addr = addr
        self.name: str = name or secrets.token_hex(4)
        self.consumer = consumer
        self.sync_schema = sync_schema
        self.allowed_states: list[str] | None = (
            list(allowed_states) if allowed_states is not None else None
        )
        self.skipped_states: list[str] | None = (
            list(skipped_states) if skipped_states is not None else None
        )
        self.sync_mutations = sync_mutations
        self.shallow_clocks = shallow_clocks
        self.token = token
        if ssl_context is not None and addr.startswith("ws://"):
            raise ValueError(f"an ssl_context with {addr!r}: use wss:// (ws:// is cleartext)")
        self.ssl_context = ssl_context
        self.max_frame = max_frame
        self.conn_timeout = conn_timeout
        self.conn_retries = conn_retries
        self.conn_retry_delay = conn_retry_delay
        self.conn_retry_backoff = conn_retry_backoff
        self.conn_retry_timeout = conn_retry_timeout
        self.call_timeout = call_timeout
        self.call_retries = call_retries
        self.call_retry_delay = call_retry_delay
        self.call_retry_backoff = call_retry_backoff
        self.call_retry_timeout = call_retry_timeout
        self.reconnect = reconnect
        self.idle_timeout = idle_timeout
        self._dial_fn = dial
        kw = machine_kwargs(log_level, logger, "AM_RPC_LOG_CLIENT")
        self.mach: Machine = Machine(
            S, id=f"rc-{self.name}", tags=["rpc-client", f"addr:{addr}"], parent=parent, **kw
        )
        self.netmach: NetworkMachine = NetworkMachine(
            schema, id=f"rnm-{self.name}", client=self, parent=self.mach, **kw
        )
        #: the client-space indexes of the states the server tracks for us
        self.tracked: list[int] = []
        #: the server's instance (its de-duplication memory) of this connection
        self.instance: str = ""
        self.tracked_all: bool = True
        # the ticks as the server sends them (0 / 1 with shallow clocks)
        self._wire: list[int] = []
        self._ep: Endpoint | None = None
        self._nursery: anyio.abc.TaskGroup | None = None
        self._call_lock = anyio.Lock()
        self._mut_seq = secrets.randbits(40) << 16
        self._outbox: deque[tuple[MutationType, list[str], dict[str, Any], bool]] = deque()
        self._outbox_wake = anyio.Event()
        # set whenever the outbox is empty (``sync`` waits for queued mutations)
        self._outbox_drained = anyio.Event()
        self._outbox_drained.set()
        self._ready = anyio.Event()
        self._stopping = False
        self._fatal: RpcError | None = None
        self._resync = False

    def __repr__(self) -> str:
        return f"<rpc.Client {self.mach.id} {self.addr}>"

    # ----- lifecycle

    def start(self, nursery: anyio.abc.TaskGroup | trio.Nursery) -> None:
        """Start connecting in ``nursery`` (returns at once; see :meth:`wait_ready`)."""
        if self._nursery is not None:
            return
        self._nursery = cast(anyio.abc.TaskGroup, nursery)  # the same start_soon
        self._stopping = False
        self.mach.start(self._nursery)
        self.netmach.start(self._nursery)
        self.mach.add1(S.Start)
        nursery.start_soon(self._run)
        nursery.start_soon(self._outbox_loop)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until connected and handshaken; ``TimeoutError`` after ``timeout``."""
        with anyio.fail_after(math.inf if timeout is None else timeout):
            while not self.mach.is1(S.Ready):
                err = self.mach.when1(S.ConnRetryFailed)
                ready = self.mach.when1(S.Ready)
                async with anyio.create_task_group() as n:

                    async def wait(w: Any) -> None:
                        with contextlib.suppress(DisposedError):
                            await w
                        n.cancel_scope.cancel()

                    n.start_soon(wait, err)
                    n.start_soon(wait, ready)
                if self._fatal is not None:
                    raise self._fatal
                if self.mach.is_disposed:
                    raise DisposedError(f"rpc client {self.mach.id} disposed before Ready")
                if self.mach.is1(S.ConnRetryFailed) and not self.mach.is1(S.Ready):
                    raise RpcConnectionError(f"could not connect to {self.addr}: {self.mach.err!r}")

    async def stop(self, *, dispose: bool = False) -> None:
        """Say bye, close the connection and stop reconnecting."""
        self._stopping = True
        ep = self._ep
        if ep is not None and not ep.closed:
            self.mach.add1(S.Disconnecting)
            with anyio.move_on_after(self.call_timeout):
                try:
                    await ep.notify("Close", Empty())
                    await anyio.sleep(0.01)
                except RpcError:
                    pass
            await ep.aclose()
        self.mach.remove1(S.Start)
        self.mach.add1(S.Disconnected)
        self._outbox_wake.set()
        self._outbox_drained.set()
        if dispose:
            self.netmach.dispose()
            self.mach.dispose()

    # ----- connection loop

    async def _dial(self) -> Transport:
        if self._dial_fn is not None:
            with anyio.fail_after(self.conn_timeout):
                return await self._dial_fn()
        return await connect(
            self.addr,
            nursery=self._nursery,
            ssl_context=self.ssl_context,
            max_frame=self.max_frame,
            timeout=self.conn_timeout,
        )

    def _log(self, line: str) -> None:
        self.mach.log_at(LogLevel.OPS, line)

    async def _run(self) -> None:
        delay = self.conn_retry_delay
        attempts = 0
        started = anyio.current_time()
        m = self.mach
        while not self._stopping:
            m.add1(S.Connecting)
            try:
                transport = await self._dial()
            except (RpcConnectionError, TimeoutError, OSError) as err:
                m.add1(S.Disconnected)
                m.add_err_state(S.ErrNetwork, RpcConnectionError(str(err)))
                m.remove1(am_exception())
                attempts += 1
                if (
                    not self.reconnect
                    or attempts > self.conn_retries
                    or anyio.current_time() - started > self.conn_retry_timeout
                ):
                    m.remove1(S.RetryingConn)
                    m.add1(S.ConnRetryFailed)
                    return
                m.add1(S.RetryingConn, pass_args(ARpc(addr=self.addr, attempt=attempts)))
                await anyio.sleep(delay)
                delay = min(delay * 2, self.conn_retry_backoff)
                continue
            ep = Endpoint(
                transport,
                {
                    "ClientSetClock": (Update, self._on_set_clock),
                    "ClientSetClockMany": (UpdateMuts, self._on_set_clock_many),
                    "ClientSendPayload": (SrvPayload, self._on_payload),
                    "SchemaChange": (SrvHello, self._on_schema_change),
                    "ClientBye": (Empty, self._on_bye),
                    "Ping": (Empty, _pong),
                },
                name=m.id,
                log=self._log,
            )
            try:
                async with anyio.create_task_group() as n:
                    n.start_soon(ep.run)
                    self._ep = ep
                    m.add1(S.Connected)
                    try:
                        await self._handshake(ep)
                    except RpcAccessError as err:
                        # refused: retrying with the same credentials cannot help
                        m.add_err_state(S.ErrRpc, err)
                        self._fatal = err
                        self._stopping = True
                        await ep.aclose()
                    except RpcError as err:
                        self._log(f"[rpc] handshake failed: {err!r}")
                        m.add_err_state(S.ErrRpc, err)
                        m.remove1(am_exception())
                        await ep.aclose()
                        attempts += 1  # a failed handshake is a failed attempt too
                    else:
                        attempts = 0
                        delay = self.conn_retry_delay
                        started = anyio.current_time()
                        self._ready.set()
                        self._outbox_wake.set()
                        n.start_soon(self._resync_loop, ep)
                        if self.idle_timeout is not None:
                            n.start_soon(self._liveness, ep, self.idle_timeout)
                        await ep.wait_closed()
                        # the reconnect budget counts from the drop, not the connect
                        started = anyio.current_time()
                    n.cancel_scope.cancel()
            finally:
                self._retire(ep)
                self._ep = None
                self._ready = anyio.Event()
            if self._fatal is not None:
                # not raised inside the nursery: it would escape as an ExceptionGroup
                m.add1(S.ConnRetryFailed)
            m.remove([S.HandshakeDone, S.Handshaking])
            m.add1(S.Disconnected)
            if self._stopping or not self.reconnect:
                return
            if attempts and (
                attempts > self.conn_retries
                or anyio.current_time() - started > self.conn_retry_timeout
            ):
                m.remove1(S.RetryingConn)
                m.add1(S.ConnRetryFailed)
                return
            m.add1(S.RetryingConn, pass_args(ARpc(addr=self.addr, attempt=attempts)))
            await anyio.sleep(delay)
            delay = min(delay * 2, self.conn_retry_backoff)

    async def _handshake(self, ep: Endpoint) -> None:
        nm = self.netmach
        hello = CliHello(
            id=self.mach.id,
            sync_schema=self.sync_schema,
            schema_hash=schema_hash(nm.schema) if self.sync_schema and nm.schema else "",
            sync_mutations=self.sync_mutations,
            allowed_states=self.allowed_states,
            skipped_states=self.skipped_states,
            shallow_clocks=self.shallow_clocks,
            token=self.token,
        )
        self.mach.add1(S.Handshaking)
        resp = await ep.call("Hello", hello, SrvHello, timeout=self.call_timeout)
        if not resp.state_names or not resp.id:
            raise RpcHandshakeError("handshake failed: the server sent no states or no id")
        if len(resp.time) != len(resp.state_names):
            raise RpcHandshakeError("handshake failed: time and state names differ in length")
        schema = None
        if resp.schema is not None:
            schema = {d.name: d.state() for d in resp.schema}
        elif self.sync_schema and set(resp.state_names) != set(nm.schema):
            raise RpcHandshakeError("handshake failed: the server sent no schema")
        elif self.sync_schema:
            schema = nm.schema
        n = len(resp.state_names)
        self.tracked = list(resp.tracked) if resp.tracked is not None else list(range(n))
        self.tracked_all = len(self.tracked) == n or not self.sync_schema
        self._wire = list(resp.time)
        nm._install(
            resp.state_names, schema, resp.time, resp.queue_tick, resp.machine_tick, resp.id
        )
        if self.instance and resp.instance != self.instance:
            self._log(f"[rpc] {self.addr} is a new server instance ({resp.instance})")
        self.instance = resp.instance
        await ep.call("Handshake", Empty(), Empty, timeout=self.call_timeout)
        self.mach.add1(S.HandshakeDone, pass_args(ARpc(id=resp.id)))

    # ----- handlers of server calls (inline: in frame order)

    def _apply(self, update: Update) -> None:
        nm = self.netmach
        try:
            wire, qt, mt = apply_update(
                self._wire, nm._queue_tick, nm._machine_tick, update, self.tracked
            )
        except RpcDriftError as err:
            self._log(f"[rpc] {err}; full sync")
            self._resync = True
            self._resync_wake()
            return
        self._set_wire(wire, qt, mt)

    def _set_wire(self, wire: list[int], qt: int, mt: int) -> None:
        """Install ticks as received; shallow clocks (0 / 1) flip the local parity."""
        nm = self.netmach
        if self.shallow_clocks:
            ticks = [
                t if (t & 1) == (w & 1) else t + 1 for t, w in zip(nm._ticks, wire, strict=True)
            ]
        else:
            ticks = wire
        self._wire = list(wire)
        nm._update(ticks, qt, mt)

    def _on_set_clock(self, update: Update) -> Empty:
        self._apply(update)
        return Empty()

    def _on_set_clock_many(self, muts: UpdateMuts) -> Empty:
        for u in muts.updates:
            self._apply(u)
            if self._resync:
                break
        return Empty()

    def _on_payload(self, payload: SrvPayload) -> Empty:
        from .errors import RpcDestinationError

        if payload.destination and payload.destination != self.mach.id:
            raise RpcDestinationError(f"payload for {payload.destination}, not {self.mach.id}")
        args = pass_args(AServerPayload(name=payload.name, payload=payload))
        self.mach.add1(S.ServerPayload, args)
        if self.consumer is None:
            raise RpcError("no consumer machine to deliver the payload to")
        res = self.consumer.add1(S.ServerPayload, args)
        if res is Result.CANCELED:
            raise RpcError(f"the consumer {self.consumer.id} rejected the payload")
        return Empty()

    def _on_schema_change(self, hello: SrvHello) -> Empty:
        schema = None
        if hello.schema is not None:
            schema = {d.name: d.state() for d in hello.schema}
        n = len(hello.state_names)
        self.tracked = list(hello.tracked) if hello.tracked is not None else list(range(n))
        self.tracked_all = len(self.tracked) == n or not self.sync_schema
        self._wire = list(hello.time)
        self.netmach._install(
            hello.state_names, schema, hello.time, hello.queue_tick, hello.machine_tick, hello.id
        )
        return Empty()

    def _on_bye(self, _msg: Empty) -> Empty:
        self._stopping = True
        if self._ep is not None:
            self._nursery_close()
        return Empty()

    def _nursery_close(self) -> None:
        ep = self._ep
        if ep is not None and self._nursery is not None:
            self._nursery.start_soon(ep.aclose)

    # ----- full sync

    def _resync_wake(self) -> None:
        wake = getattr(self, "_resync_event", None)
        if wake is not None:
            wake.set()

    async def _liveness(self, ep: Endpoint, idle_timeout: float) -> None:
        """A server silent for ``idle_timeout`` is pinged; no answer within
        ``call_timeout`` closes the connection (then it is re-dialled): a frozen
        or vanished server is noticed even by a client that only listens."""
        while not ep.closed:
            idle = anyio.current_time() - ep.last_received
            if idle < idle_timeout:
                await anyio.sleep(idle_timeout - idle)
                continue
            try:
                await ep.call("Ping", Empty(), Empty, timeout=self.call_timeout)
            except RpcRemoteError:
                pass  # answered (a server without Ping): alive
            except RpcError as err:
                self._log(f"[rpc] server {self.addr} silent, reconnecting: {err!r}")
                await ep.aclose()
                return
            ep.last_received = anyio.current_time()

    async def _resync_loop(self, ep: Endpoint) -> None:
        while not ep.closed:
            self._resync_event = anyio.Event()
            if self._resync:
                try:
                    await self.sync()
                except RpcError as err:
                    self._log(f"[rpc] sync failed: {err!r}")
                    await anyio.sleep(self.call_retry_delay)
                    continue
            await self._resync_event.wait()

    async def sync(self) -> None:
        """Fetch the full clock (after ``add_ns`` batches, or on drift).

        Mutations still in the outbox (``add_ns``, ``add``...) are sent first,
        so the clock reflects them.
        """
        while self._outbox and not self._stopping:
            if self._outbox_drained.is_set():
                self._outbox_drained = anyio.Event()
            await self._outbox_drained.wait()

        def install(s: SrvSync) -> None:
            self._resync = False
            nm = self.netmach
            if len(s.time) != len(nm._names):
                raise RpcDriftError(f"sync: {len(s.time)} ticks for {len(nm._names)} states")
            self._set_wire(list(s.time), s.queue_tick, s.machine_tick)
            self.mach.add1(S.MetricSync)

        await self._call("Sync", Empty(), SrvSync, inline=install)

    # ----- calls with retries

    async def _call(
        self,
        method: str,
        body: Any,
        resp_cls: type[Any],
        *,
        inline: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Call with retries and backoff (``RetryingCall`` / ``CallRetryFailed``).

        A mutation is retried on the server instance it was sent to only (that
        instance de-duplicates it); sent, unanswered and not retriable there,
        it fails with :class:`RpcOutcomeUnknownError`.
        """
        m = self.mach
        delay = self.call_retry_delay
        started = anyio.current_time()
        attempt = 0
        mutation = method in _MUTATIONS
        sent_to: str | None = None  # the instance a mutation was sent to
        async with locked(self._call_lock):
            while True:
                try:
                    if self._stopping or not m.is1(S.Start):
                        raise RpcNotConnectedError(f"{m.id} is stopped")
                    # not connected within call_timeout: raised, not retried
                    ep = await self._wait_endpoint(started)
                except RpcNotConnectedError as gone:
                    if sent_to is not None:
                        raise self._unknown(method, body, sent_to, gone) from gone
                    raise
                if mutation and sent_to is not None and self.instance != sent_to:
                    restarted = RpcConnectionError(
                        f"{self.addr} restarted ({sent_to} -> {self.instance})"
                    )
                    raise self._unknown(method, body, sent_to, restarted)
                if mutation:
                    sent_to = self.instance
                try:
                    result = await ep.call(
                        method, body, resp_cls, timeout=self.call_timeout, inline=inline
                    )
                except (RpcConnectionError, RpcTimeoutError) as err:
                    attempt += 1
                    self._log(f"[rpc] {method} failed ({attempt}): {err!r}")
                    if isinstance(err, RpcTimeoutError):
                        m.add_err_state(S.ErrNetworkTimeout, err)
                        m.remove1(am_exception())
                        if method != "Sync":
                            # the server counts the lost response's clock diff as
                            # sent: later diffs miss it; re-sync after this call
                            self._resync = True
                    if (
                        attempt > self.call_retries
                        or anyio.current_time() - started > self.call_retry_timeout
                    ):
                        m.remove1(S.RetryingCall)
                        m.add1(S.CallRetryFailed, pass_args(ARpc(method=method, err=err)))
                        m._err = err
                        if sent_to is not None:
                            raise self._unknown(method, body, sent_to, err) from err
                        raise RpcCallError(
                            f"{method} to {self.addr} failed after {attempt} attempts: {err}"
                        ) from err
                    m.add1(S.RetryingCall, pass_args(ARpc(method=method, attempt=attempt)))
                    await anyio.sleep(delay)
                    delay = min(delay * 2, self.call_retry_backoff)
                    continue
                if attempt:
                    m.remove1(S.RetryingCall)
                return result

    def _unknown(
        self, method: str, body: Any, instance: str, cause: BaseException
    ) -> RpcOutcomeUnknownError:
        names = self.netmach._names
        states = [names[i] for i in body.states if 0 <= i < len(names)]
        err = RpcOutcomeUnknownError(
            f"{method} {states} was sent to {self.addr} (instance {instance}) and not"
            f" answered: applied once or not at all ({cause})"
        )
        self._log(f"[rpc] {err}")
        return err

    async def _wait_endpoint(self, started: float) -> Endpoint:
        """The connected endpoint; waits for a (re)connection up to ``call_timeout``."""
        ep = self._ep
        if ep is not None and not ep.closed and self._ready.is_set():
            return ep  # connected: no cancel scope to set up
        left = self.call_retry_timeout - (anyio.current_time() - started)
        wait = max(min(self.call_timeout, left), 0)
        with anyio.move_on_after(wait):
            while True:
                ep = self._ep
                if ep is not None and not ep.closed and self._ready.is_set():
                    return ep
                if self._stopping:
                    raise RpcNotConnectedError(f"{self.mach.id} is stopped")
                await self._ready.wait()
        last = self.mach.err
        cause = f" (last error: {last})" if last is not None else ""
        raise RpcNotConnectedError(f"not connected to {self.addr} within {wait:g}s{cause}")

    # ----- mutations (used by the network machine)

    def _mutation(
        self, called: list[str], args: dict[str, Any], event: Event | None
    ) -> CliMutation:
        self._mut_seq += 1
        index = self.netmach._index
        if event is not None and _tracing.rpc_args_hook is not None:
            args = _tracing.rpc_args_hook(event, args)  # telemetry: W3C traceparent
        return CliMutation(
            [index[s] for s in called],
            args or None,
            self._mut_seq,
            event.id if event is not None else "",
        )

    async def _mutate(
        self,
        type: MutationType,
        called: list[str],
        args: dict[str, Any],
        event: Event | None,
    ) -> Result:
        msg = self._mutation(called, args, event)
        try:
            resp: SrvMutation = await self._call(
                _METHODS[type], msg, SrvMutation, inline=self._on_mutation_response
            )
        except RpcError:
            if self._resync:
                self._resync_wake()  # a timed-out attempt: sync once connected
            raise
        if self._resync:
            # a timed-out attempt: sync before returning, so the caller sees the
            # mutation's clock (on failure the resync loop tries again)
            try:
                await self.sync()
            except RpcError:
                self._resync_wake()
        result = Result(resp.result)
        if result is Result.QUEUED:
            self.netmach.last_queue_tick = resp.queue_tick
        return result

    def _on_mutation_response(self, resp: SrvMutation) -> None:
        if resp.mutations is not None:
            self._on_set_clock_many(resp.mutations)
        elif resp.update is not None:
            self._apply(resp.update)

    def _mutate_nowait(
        self,
        type: MutationType,
        called: list[str],
        args: dict[str, Any],
        event: Event | None,
        *,
        ns: bool = False,
    ) -> Result:
        if self._nursery is None or self._stopping or not self.mach.is1(S.Ready):
            return Result.CANCELED
        if event is not None and _tracing.rpc_args_hook is not None:
            args = _tracing.rpc_args_hook(event, args)  # telemetry: W3C traceparent
        self._outbox.append((type, called, args, ns))
        if self._outbox_drained.is_set():
            self._outbox_drained = anyio.Event()
        self._outbox_wake.set()
        return Result.QUEUED

    async def _outbox_loop(self) -> None:
        while True:
            while self._outbox:
                type, called, args, ns = self._outbox[0]
                try:
                    if ns:
                        msg = self._mutation(called, args, None)
                        # notifications are never re-sent: no de-duplication id
                        msg.id = 0
                        ep = await self._wait_endpoint(anyio.current_time())
                        await ep.notify("AddNS", msg, timeout=self.call_timeout)
                    else:
                        await self._mutate(type, called, args, None)
                except RpcError as err:
                    self._log(f"[rpc] queued {type} {called} failed: {err!r}")
                    self.mach.add_err_state(S.ErrDelivery, err)
                    self.mach.remove1(am_exception())
                self._outbox.popleft()
            self._outbox_drained.set()
            if self._stopping and not self._outbox:
                return
            self._outbox_wake = anyio.Event()
            await self._outbox_wake.wait()


def _pong(_msg: Empty) -> Empty:
    return Empty()


def am_exception() -> str:
    # clients heal themselves: Exception is removed right after being handled
    return "Exception"


_METHODS = {MutationType.ADD: "Add", MutationType.REMOVE: "Remove", MutationType.SET: "Set"}
_MUTATIONS = frozenset(_METHODS.values())


@asynccontextmanager
async def open_client(
    addr: str, schema: Any = None, *, ready_timeout: float | None = 10.0, **kwargs: Any
) -> AsyncIterator[Client]:
    """A started client, ready (handshake done); stopped on exit.

    Not ready in time: raises :class:`RpcConnectionError` naming the address and
    the last error, not wrapped in an ``ExceptionGroup``.
    """
    failed: BaseException | None = None
    client = Client(addr, schema, **kwargs)  # bad options raise before any task starts
    with unwrap_single():  # an exception of the block leaves as itself
        async with anyio.create_task_group() as nursery:
            client.start(nursery)
            try:
                try:
                    await client.wait_ready(ready_timeout)
                except RpcError as err:
                    failed = err  # raised below, outside the nursery
                except TimeoutError:
                    last = client.mach.err
                    cause = f": {last}" if last is not None else ""
                    failed = RpcConnectionError(
                        f"not ready within {ready_timeout}s: cannot connect to {addr}{cause}"
                    )
                else:
                    yield client
            finally:
                with anyio.CancelScope(shield=True):
                    await client.stop(dispose=True)
                nursery.cancel_scope.cancel()
    if failed is not None:
        raise failed
