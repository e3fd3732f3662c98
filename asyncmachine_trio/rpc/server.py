"""The aRPC server: exposes a source machine to one client (docs/rpc.md).

A :class:`Server` serves one client at a time (a second connection is refused
with a ``busy`` error); many servers can expose one source, and a
:class:`~.mux.Mux` creates one per connection. Its own machine
(``server.mach``, :class:`~.states.ServerStates`, id ``rs-<name>``) shows what
it is doing: ``RpcStarting`` → ``RpcAccepting`` → ``RpcReady`` →
``ClientConnected`` → ``Handshaking`` → ``HandshakeDone`` → ``Ready``.

Clock sync: a tracer on the source records every transition; mutation
responses carry the diff since the last data sent (a client that only mutates
gets no pushes), and a pusher task sends what changed otherwise, at most once
per ``push_interval`` (debounced; the last change is always flushed). The
source machine is never blocked by a slow client: pushes are sent by the
pusher task, never from the source's transition.

Security beyond the reference: servers bind loopback unless told otherwise,
``token`` is checked in the handshake (wrong token: refused, logged, nothing
mutated, connection closed), ``tokens`` gives each client its own token and
allowlist, ``allowed_mutations`` limits the states any client may mutate, and
``ssl_context`` serves ``wss://``. Limits and deadlines before and after the
handshake are listed in docs/rpc.md, "Security and limits".
"""

from __future__ import annotations

import hmac
import math
import secrets
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import attrs

from ..helpers.schema import schema_hash
from ..machine.attached import PerMachine
from ..machine.errors import StateUnknownError
from ..machine.logging import LogLevel
from ..machine.machine import Machine
from ..machine.mutation import ADD, REMOVE, SET, MutationType, Result
from ..machine.sigs import params_of
from ..machine.transition import Event, Transition
from ._common import Listening, Traffic, machine_kwargs, serving
from .engine import Endpoint
from .errors import (
    RpcAccessError,
    RpcDestinationError,
    RpcError,
    RpcHandshakeError,
    RpcInvalidParamsError,
    RpcNotConnectedError,
    RpcRemoteError,
)
from .states import ServerStates
from .sync import Snapshot, make_update, shallow
from .transport import TASK_STATUS_IGNORED, Transport
from .wire import (
    DEFAULT_MAX_FRAME,
    CliHello,
    CliMutation,
    Empty,
    SrvArgs,
    SrvHello,
    SrvMutation,
    SrvPayload,
    SrvSync,
    StateDef,
    Update,
    UpdateMuts,
    short_repr,
)

__all__ = ["Server", "open_server"]

S = ServerStates
_DEDUPE_MAX = 4096
#: the frame limit before a handshake completes
PREAUTH_MAX_FRAME = 64 * 1024
#: the limit of a client's frames after the handshake (mutations and their args)
MAX_REQUEST = 64 * 1024
#: the top-level keys of one mutation's args
MAX_ARGS = 256

# mutation ids already applied, per source machine: a retried mutation (same
# client, same id) returns its first result instead of running again
_APPLIED: PerMachine[OrderedDict[tuple[str, int], tuple[int, int]]] = PerMachine()
# the identity of that memory, sent in the handshake: a client whose mutation
# was sent to another instance (a restarted process) knows it cannot retry it
_INSTANCE: PerMachine[str] = PerMachine()


def instance_of(source: Machine) -> str:
    """The id of ``source``'s de-duplication memory in this process."""
    inst = _INSTANCE.get(source)
    if inst is None:
        inst = _INSTANCE[source] = secrets.token_hex(8)
    return inst


@attrs.define(slots=True, eq=False)
class _Conn:
    """One accepted connection (handshaken or not)."""

    ep: Endpoint = attrs.field(default=None)
    nursery: anyio.abc.TaskGroup | None = None


@attrs.define(slots=True)
class _MutRecord:
    type: str
    called: list[int]
    snap: Snapshot


class Server(Traffic, Listening):
    """Exposes ``source`` to one client (see the module doc)."""

    def __init__(
        self,
        source: Machine,
        addr: str = "ws://127.0.0.1:0",
        *,
        name: str = "",
        token: str = "",
        allow_id: str = "",
        allowed_mutations: Iterable[str] | None = None,
        tokens: Mapping[str, Iterable[str] | None] | None = None,
        push_interval: float | None = 0.25,
        ssl_context: ssl.SSLContext | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        send_timeout: float = 3.0,
        handshake_timeout: float = 5.0,
        preauth_max_frame: int = PREAUTH_MAX_FRAME,
        max_connections: int | None = 16,
        connect_timeout: float = 5.0,
        frame_timeout: float | None = 10.0,
        idle_timeout: float | None = 15.0,
        max_request: int = MAX_REQUEST,
        max_args: int = MAX_ARGS,
        parent: Machine | str | None = None,
        log_level: LogLevel | int | None = None,
        logger: Any = None,
    ) -> None:
        if not isinstance(source, Machine):
            raise TypeError(f"source must be an am.Machine, got {type(source).__name__}")
        if not source.states_verified:
            source.verify_states(list(source.state_names))
        self.source = source
        self.addr = addr
        self.name: str = name or secrets.token_hex(4)
        self.token = token
        self.allow_id = allow_id
        self.allowed_mutations: frozenset[str] | None = (
            self._known(allowed_mutations) if allowed_mutations is not None else None
        )
        if tokens is not None and token:
            raise ValueError("pass token= or tokens=, not both")
        #: per-client tokens: each maps to the states its client may mutate (None: any)
        self.tokens: dict[str, frozenset[str] | None] | None = (
            None
            if tokens is None
            else {t: None if a is None else self._known(a) for t, a in tokens.items()}
        )
        if self.tokens is not None and (not self.tokens or "" in self.tokens):
            raise ValueError("tokens= needs at least one token, and no empty one")
        # the allowlist of the connected client (allowed_mutations and its token's)
        self._may_mutate: frozenset[str] | None = self.allowed_mutations
        self.push_interval = push_interval
        if ssl_context is not None and addr.startswith("ws://"):
            raise ValueError(f"an ssl_context with {addr!r}: use wss:// (ws:// is cleartext)")
        self.ssl_context = ssl_context
        self.max_frame = max_frame
        self.send_timeout = send_timeout
        self.handshake_timeout = handshake_timeout
        self.preauth_max_frame: int = min(preauth_max_frame, max_frame)
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.frame_timeout = frame_timeout
        self.idle_timeout = idle_timeout
        self.max_request = max_request
        self.max_args = max_args
        kw = machine_kwargs(log_level, logger, "AM_RPC_LOG_SERVER")
        self.mach: Machine = Machine(
            S, id=f"rs-{self.name}", tags=["rpc-server"], parent=parent or source, **kw
        )
        #: the id of the connected client (after Hello)
        self.client_id: str = ""
        # the connection holding the client slot (after an accepted Hello)
        self._ep: Endpoint | None = None
        self._conn_scope: anyio.CancelScope | None = None
        # every connection's scope (pre-handshake ones too), cancelled by close()
        self._scopes: set[anyio.CancelScope] = set()
        self._handshaken = False
        # source observers (internal hooks, not a tracer: a tracer would take
        # every source transition off the core's fast path)
        self._known_schema: object = source._schema
        source._end_hooks.append(self._on_transition)
        source._schema_hooks.append(self._on_schema)
        # per connection
        self._names: list[str] = []  # client index space
        self._src_idx: list[int] = []  # client index -> source index
        self._tracked: list[int] = []  # client indexes tracked
        self._tracked_set: frozenset[int] = frozenset()
        self._identity = False  # all tracked, client order = source order
        self._sync_schema = True
        self._sync_mutations = False
        self._shallow = False
        self._allowed: set[str] | None = None
        self._skipped: set[str] = set()
        self._last: Snapshot | None = None
        self._records: list[_MutRecord] = []
        self._dirty = False
        self._quiet = False
        self._schema_changed = False
        self._wake = anyio.Event()
        self._last_push = -math.inf
        self.pushes: int = 0

    def __repr__(self) -> str:
        return f"<rpc.Server {self.mach.id} of {self.source.id}>"

    def _known(self, states: Iterable[str]) -> frozenset[str]:
        names = [states] if isinstance(states, str) else list(states)
        unknown = [s for s in names if s not in self.source.schema]
        if unknown:
            raise StateUnknownError(f"unknown states {unknown} in an allowlist of {self.source.id}")
        return frozenset(names)

    def _check_token(self, token: str) -> tuple[bool, frozenset[str] | None]:
        """Whether ``token`` is accepted, and its allowlist (constant-time comparisons)."""
        given = token.encode()
        if self.tokens is None:
            ok = not self.token or hmac.compare_digest(given, self.token.encode())
            return ok, None
        found: tuple[bool, frozenset[str] | None] = (False, None)
        for t, allowed in self.tokens.items():  # every token compared: no early exit
            if hmac.compare_digest(given, t.encode()):
                found = (True, allowed)
        return found

    # ----- serving

    async def serve(self, *, task_status: anyio.abc.TaskStatus[str] = TASK_STATUS_IGNORED) -> None:
        """Listen on ``addr`` (port 0: any free port) and serve clients, one at a time.

        ``task_status.started`` gets the bound URL (also in ``self.addr``).
        """
        m = self.mach
        m.add1(S.Start)
        m.add1(S.RpcStarting)

        def bound(_url: str) -> None:
            m.add1(S.RpcAccepting)
            m.add1(S.RpcReady)

        try:
            await self._listen(bound, task_status)
        finally:
            m.remove1(S.Start)

    async def serve_transport(self, transport: Transport) -> None:
        """Serve one connection until it closes (used by ``serve``, a Mux and tests).

        Before its handshake a connection may send frames of ``preauth_max_frame``
        bytes at most (a larger one closes it) and must complete the handshake
        within ``handshake_timeout``. The client slot is taken by an accepted
        ``Hello`` only: until then other connections may try theirs; later
        ones get ``busy`` and are closed, like refused ones.
        """
        m = self.mach
        if not m.is1(S.Start):
            m.add1(S.Start)
        if not m.is1(S.RpcReady):
            m.add1(S.RpcReady)
        limit = getattr(transport, "limit", None)
        if limit is not None:
            limit(self.preauth_max_frame, strict=True)
        handlers: dict[str, tuple[type[Any], Any]] = {
            "Hello": (CliHello, self._on_hello),
            "Handshake": (Empty, self._on_handshake),
            "Add": (CliMutation, self._on_add),
            "AddNS": (CliMutation, self._on_add_ns),
            "Remove": (CliMutation, self._on_remove),
            "Set": (CliMutation, self._on_set),
            "Sync": (Empty, self._on_sync),
            "ArgsBase": (Empty, self._on_args),
            "Close": (Empty, self._on_close),
            "Ping": (Empty, self._on_ping),
        }
        conn = _Conn()
        ep = Endpoint(
            transport,
            {name: (cls, self._guard(conn, name, fn)) for name, (cls, fn) in handlers.items()},
            name=m.id,
            log=self._log,
        )
        conn.ep = ep
        try:
            async with anyio.create_task_group() as n:
                conn.nursery = n
                self._scopes.add(n.cancel_scope)
                n.start_soon(self._deadline, conn)
                await ep.run()
                n.cancel_scope.cancel()
        finally:
            if conn.nursery is not None:
                self._scopes.discard(conn.nursery.cancel_scope)
            self._retire(ep)
            if self._ep is ep:
                self._ep = None
                self._conn_scope = None
                self._may_mutate = self.allowed_mutations
                self._handshaken = False
                self._last = None
                self._records = []
                self.client_id = ""
                if not m.is_disposed:
                    m.remove([S.ClientConnected, S.HandshakeDone, S.Handshaking])

    def _guard(self, conn: _Conn, name: str, fn: Any) -> Any:
        """``fn`` for the connection holding the slot; others may only say Hello or bye."""
        if name == "Hello":
            return lambda body: self._on_hello(body, conn)

        def guarded(body: Any) -> Any:
            if self._ep is not conn.ep:
                if name == "Close":
                    conn.ep.close_soon()
                    return None
                raise RpcHandshakeError("no handshake yet")
            return fn(body)

        return guarded

    async def _deadline(self, conn: _Conn) -> None:
        """Close a connection not handshaken within ``handshake_timeout``, then watch it."""
        ep = conn.ep
        await anyio.sleep(self.handshake_timeout)
        if self._ep is not ep or not self._handshaken:
            self._log(f"[rpc] no handshake within {self.handshake_timeout}s: closing")
            await ep.aclose()
            return
        if self.idle_timeout is None:
            return
        # liveness: a client silent for idle_timeout is pinged; no answer
        # within send_timeout drops it (a frozen or vanished peer frees the slot)
        while not ep.closed:
            idle = anyio.current_time() - ep.last_received
            if idle < self.idle_timeout:
                await anyio.sleep(self.idle_timeout - idle)
                continue
            try:
                await ep.call("Ping", Empty(), Empty, timeout=self.send_timeout)
            except RpcRemoteError:
                pass  # answered (a client without Ping): alive
            except RpcError as err:
                self._log(f"[rpc] client {self.client_id} silent, dropping it: {err!r}")
                await ep.aclose()
                return
            ep.last_received = anyio.current_time()

    def close(self) -> None:
        """Detach from the source and dispose the server machine (connections end)."""
        for hooks, fn in (
            (self.source._end_hooks, self._on_transition),
            (self.source._schema_hooks, self._on_schema),
        ):
            if fn in hooks:
                hooks.remove(fn)  # type: ignore[arg-type]
        for scope in list(self._scopes):
            scope.cancel()
        self.mach.dispose()

    def _log(self, line: str) -> None:
        self.mach.log_at(LogLevel.OPS, line)

    # ----- snapshots

    def _snapshot(self) -> Snapshot:
        src = self.source
        ticks = src._ticks
        tracked_src = self._src_idx
        if self._identity and len(ticks) == len(tracked_src):
            # every state tracked, in the source's order (the common case)
            vals: Sequence[int] = ticks
        elif self._sync_schema:
            tracked = self._tracked_set
            vals = [ticks[j] if i in tracked else 0 for i, j in enumerate(tracked_src)]
        else:
            vals = [ticks[j] for j in tracked_src]
        if self._shallow:
            vals = shallow(vals)
        return Snapshot(tuple(vals), src._queue_tick, src._machine_tick)

    def _diff(self) -> Update | None:
        cur = self._snapshot()
        if self._last is not None and cur == self._last:
            return None
        upd = make_update(self._last, cur, self._tracked)
        self._last = cur
        return upd

    def _on_transition(self, tx: Transition) -> None:
        if not self._handshaken:
            return
        if self._sync_mutations:
            snap = self._snapshot()
            prev = self._records[-1].snap if self._records else self._last
            if prev is None or snap != prev:
                pos = {j: i for i, j in enumerate(self._src_idx)}
                idx = self.source._index
                called = [pos[idx[s]] for s in tx.mutation.called if idx.get(s, -1) in pos]
                self._records.append(_MutRecord(str(tx.mutation.type), called, snap))
        self._dirty = True
        if not self._quiet:
            self._wake.set()

    def _on_schema(self, source: Machine) -> None:
        """The source's states were verified (maybe reordered) or its schema changed."""
        self._on_reorder()
        if source._schema is not self._known_schema:
            self._known_schema = source._schema
            self._on_schema_change()

    def _on_reorder(self) -> None:
        # the source's state order changed: keep reading the client's states by
        # name (the client's index space does not change, see _track)
        index = self.source._index
        self._src_idx = [index[n] for n in self._names]
        self._index_cache()

    def _index_cache(self) -> None:
        self._tracked_set = frozenset(self._tracked)
        self._identity = len(self._tracked) == len(self._src_idx) and all(
            i == j for i, j in enumerate(self._src_idx)
        )

    def _on_schema_change(self) -> None:
        if self._handshaken:
            self._on_reorder()
            self._schema_changed = True
            self._wake.set()

    def _take_muts(self) -> UpdateMuts | None:
        if not self._records:
            return None
        types: list[str] = []
        called: list[list[int]] = []
        updates: list[Update] = []
        prev = self._last
        for r in self._records:
            types.append(r.type)
            called.append(r.called)
            updates.append(make_update(prev, r.snap, self._tracked))
            prev = r.snap
        self._records = []
        self._last = prev
        return UpdateMuts(types, called, updates)

    # ----- pushes

    async def _pusher(self, ep: Endpoint) -> None:
        while not ep.closed:
            self._wake = anyio.Event()
            if self._schema_changed:
                self._schema_changed = False
                self._track(keep=True)
                hello = self._hello_snapshot(with_schema=True)
                await self._push_call(ep, "SchemaChange", hello)
                continue
            if self._dirty and self.push_interval is not None and self._handshaken:
                wait = self._last_push + self.push_interval - anyio.current_time()
                if wait > 0:
                    # debounce: flush the latest state once the interval passed
                    await anyio.sleep(wait)
                self._dirty = False
                await self._push(ep)
                continue
            await self._wake.wait()

    async def _push(self, ep: Endpoint) -> None:
        self._last_push = anyio.current_time()
        if self._sync_mutations:
            muts = self._take_muts()
            if muts is not None:
                await self._push_call(ep, "ClientSetClockMany", muts)
            return
        upd = self._diff()
        if upd is None:
            return
        await self._push_call(ep, "ClientSetClock", upd)

    async def _push_call(self, ep: Endpoint, method: str, body: Any) -> None:
        self.pushes += 1
        try:
            await ep.notify(method, body, timeout=self.send_timeout)
        except RpcError as err:
            # a client that does not read: drop it (the source is never blocked)
            self._log(f"[rpc] push failed, dropping the client: {err!r}")
            # first the client goes (an active HandshakeDone blocks Exception)
            self.mach.remove([S.ClientConnected, S.HandshakeDone, S.Handshaking])
            self.mach.add_err_state(S.ErrNetwork, err)
            await ep.aclose()

    # ----- handlers (inline, in frame order)

    def _hello_snapshot(self, *, with_schema: bool, client_hash: str = "") -> SrvHello:
        src = self.source
        snap = self._snapshot()
        self._last = snap
        self._records = []
        schema = None
        full_hash = schema_hash(src.schema)
        if self._sync_schema and (with_schema or client_hash != full_hash):
            schema = [StateDef.of(n, src.schema[n]) for n in src.state_names]
        return SrvHello(
            id=src.id,
            state_names=list(self._names),
            time=list(snap.ticks),
            queue_tick=snap.queue_tick,
            machine_tick=snap.machine_tick,
            states_count=len(src.state_names),
            schema=schema,
            schema_hash=full_hash,
            tracked=None if len(self._tracked) == len(self._names) else list(self._tracked),
            instance=instance_of(src),
        )

    def _refuse(self, conn: _Conn, err: RpcError) -> RpcError:
        """Log a refused Hello; its connection closes once the error is sent."""
        self._log(f"[rpc] {err}")
        self.mach.add_err_state(S.ErrRpc, err)
        conn.ep.close_soon()
        return err

    def _on_hello(self, hello: CliHello, conn: _Conn) -> SrvHello:
        m = self.mach
        if not m.is1(S.Start):
            raise RpcHandshakeError("server not started")
        cid = short_repr(hello.id, 80)
        if not hello.id:
            raise self._refuse(conn, RpcHandshakeError("handshake failed: ID missing"))
        ok, token_allows = self._check_token(hello.token)
        if not ok:
            raise self._refuse(conn, RpcAccessError(f"no access: wrong token from {cid}"))
        if self.allow_id and hello.id != self.allow_id:
            raise self._refuse(
                conn, RpcAccessError(f"no access: client {cid} is not {self.allow_id}")
            )
        if self._ep is not None and self._ep is not conn.ep:
            raise self._refuse(conn, RpcRemoteError("busy", f"{m.id} serves a client"))
        src = self.source
        for s in (*(hello.allowed_states or ()), *(hello.skipped_states or ())):
            if s not in src.schema:
                raise RpcInvalidParamsError(f"unknown state {short_repr(s)} in the sync options")
        if self._ep is None:
            # the slot is this connection's from now on
            self._ep = conn.ep
            may = self.allowed_mutations
            if token_allows is not None:
                may = token_allows if may is None else may & token_allows
            self._may_mutate = may
            assert conn.nursery is not None
            self._conn_scope = conn.nursery.cancel_scope
            m.add1(S.ClientConnected)
            conn.nursery.start_soon(self._pusher, conn.ep)
        self._sync_schema = hello.sync_schema
        self._sync_mutations = hello.sync_mutations
        self._shallow = hello.shallow_clocks
        self._allowed = None if hello.allowed_states is None else set(hello.allowed_states)
        self._skipped = set(hello.skipped_states or ())
        self._track()
        self.client_id = hello.id
        m.add1(S.Handshaking)
        return self._hello_snapshot(with_schema=False, client_hash=hello.schema_hash)

    def _track(self, *, keep: bool = False) -> None:
        """The client's index space and tracked states, from the sync options.

        ``keep`` (a schema change during a connection): the index space only
        grows. Known states keep their index, so a mutation the client sent
        before it saw the change still names the same states; new states are
        appended in the source's order.
        """
        src = self.source
        names = list(src.state_names)
        if keep:
            known = set(self._names)
            names = [*self._names, *(n for n in names if n not in known)]
        allowed = set(names) if self._allowed is None else self._allowed
        tracked_names = [n for n in names if n in allowed and n not in self._skipped]
        if self._sync_schema:
            self._names = names
            self._src_idx = [src._index[n] for n in names]
            pos = set(tracked_names)
            self._tracked = [i for i, n in enumerate(names) if n in pos]
        else:
            self._names = tracked_names
            self._src_idx = [src._index[n] for n in tracked_names]
            self._tracked = list(range(len(tracked_names)))
        self._index_cache()

    def _on_handshake(self, _msg: Empty) -> Empty:
        if not self.client_id:
            raise RpcHandshakeError("Handshake before Hello")
        ep = self._ep
        limit = getattr(ep.transport, "limit", None) if ep is not None else None
        if limit is not None:
            limit(min(self.max_request, self.max_frame), strict=False)
        self._handshaken = True
        self.mach.add1(S.HandshakeDone)
        return Empty()

    def _check_ready(self) -> None:
        if not self._handshaken:
            raise RpcHandshakeError("no handshake yet")
        if not self.mach.is1(S.Start):
            raise RpcNotConnectedError("server not started")

    def _states(self, msg: CliMutation) -> list[str]:
        if not msg.states:
            raise RpcInvalidParamsError("no states in the mutation")
        n = len(self._names)
        if len(msg.states) > 2 * n + 16:
            # work bounded by the schema: each state once (plus a few repeats)
            raise RpcInvalidParamsError(f"{len(msg.states)} state indexes for {n} states")
        if msg.args is not None and len(msg.args) > self.max_args:
            raise RpcInvalidParamsError(f"{len(msg.args)} args (limit {self.max_args})")
        out: list[str] = []
        for i in dict.fromkeys(msg.states):  # duplicates folded
            if not isinstance(i, int) or not 0 <= i < n:
                raise RpcInvalidParamsError(f"state index {i!r} out of range (0..{n - 1})")
            out.append(self._names[i])
        if self._may_mutate is not None:
            denied = [s for s in out if s not in self._may_mutate]
            if denied:
                err = RpcAccessError(f"no access: {self.client_id} may not mutate {denied}")
                self._log(f"[rpc] {err}")
                raise err
        return out

    def _mutate(self, type: MutationType, msg: CliMutation) -> tuple[int, int]:
        self._check_ready()
        states = self._states(msg)
        if type is SET and self._may_mutate is not None:
            # a set removes every state it does not name: all of them must be allowed
            others = sorted(set(self.source.state_names) - self._may_mutate)
            if others:
                err = RpcAccessError(
                    f"no access: {self.client_id} may not set (it would mutate {others})"
                )
                self._log(f"[rpc] {err}")
                raise err
        applied = _APPLIED.setdefault(self.source, OrderedDict())
        key = (self.client_id, msg.id)
        if msg.id and key in applied:
            self._log(f"[rpc] mutation {msg.id} already applied: not again")
            return applied[key]
        args = dict(msg.args) if msg.args else None
        src = self.source
        if type is ADD:
            res = src.add(states, args)
        elif type is REMOVE:
            res = src.remove(states, args)
        else:
            res = src.set(states, args)
        qt = src.queue()[-1].queue_tick if res is Result.QUEUED and src.queue() else 0
        if msg.id:
            applied[key] = (int(res), qt)
            while len(applied) > _DEDUPE_MAX:
                applied.popitem(last=False)
        return int(res), qt

    def _mutation_response(self, type: MutationType, msg: CliMutation) -> SrvMutation:
        # the transitions of this mutation ride on its response: no pusher wake-up
        self._quiet = True
        try:
            res, qt = self._mutate(type, msg)
        except BaseException:
            self._wake.set()
            raise
        finally:
            self._quiet = False
        self._dirty = False
        if self._sync_mutations:
            return SrvMutation(res, None, self._take_muts() or UpdateMuts([], [], []), qt)
        return SrvMutation(res, self._diff(), None, qt)

    def _on_add(self, msg: CliMutation) -> SrvMutation:
        return self._mutation_response(ADD, msg)

    def _on_remove(self, msg: CliMutation) -> SrvMutation:
        return self._mutation_response(REMOVE, msg)

    def _on_set(self, msg: CliMutation) -> SrvMutation:
        return self._mutation_response(SET, msg)

    def _on_add_ns(self, msg: CliMutation) -> None:
        self._mutate(ADD, msg)

    def _on_sync(self, _msg: Empty) -> SrvSync:
        self._check_ready()
        snap = self._snapshot()
        self._last = snap
        self._records = []
        self._dirty = False
        self.mach.add1(S.MetricSync)
        return SrvSync(list(snap.ticks), snap.queue_tick, snap.machine_tick)

    def _on_args(self, _msg: Empty) -> SrvArgs:
        return SrvArgs([])

    def _on_ping(self, _msg: Empty) -> Empty:
        return Empty()

    def _on_close(self, _msg: Empty) -> None:
        self._log(f"[rpc] {self.client_id} says bye")
        ep = self._ep
        if ep is not None:
            ep.close_soon()

    # ----- payloads

    async def send_payload(
        self,
        name: str,
        data: Any = None,
        *,
        destination: str = "",
        event: Event | None = None,
        timeout: float | None = 5.0,
    ) -> None:
        """Deliver ``data`` to the client's consumer machine (its ``ServerPayload``).

        ``destination`` (a client machine id, ``rc-<name>``) must be the
        connected client's. Raises :class:`RpcNotConnectedError`,
        :class:`RpcDestinationError`, or the client's delivery error.
        """
        ep = self._ep
        if ep is None or ep.closed or not self._handshaken:
            raise RpcNotConnectedError(f"{self.mach.id}: no client connected")
        if destination and destination != self.client_id:
            raise RpcDestinationError(f"wrong destination {destination!r} ({self.client_id})")
        payload = SrvPayload(
            name=name,
            data=data,
            destination=destination,
            token=secrets.token_hex(8),
            source=event.machine_id if event is not None else self.source.id,
            source_tx=event.id if event is not None else "",
        )
        try:
            await ep.call("ClientSendPayload", payload, Empty, timeout=timeout)
        except RpcRemoteError as err:
            self.mach.add_err_state(S.ErrDelivery, err)
            raise


@params_of(Server)  # typed options: those of Server
@asynccontextmanager
async def open_server(*args: Any, **kwargs: Any) -> AsyncIterator[Server]:
    """A listening server (``server.addr`` is the bound URL); closed on exit.

    Takes the parameters of :class:`Server`; a lone error leaves as itself.
    """
    async with serving(Server(*args, **kwargs)) as server:
        yield server
