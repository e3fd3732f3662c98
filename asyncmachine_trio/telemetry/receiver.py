"""The receiving side of the debugger protocol: accept connections, decode frames.

:class:`Receiver` listens (TCP, anyio: trio or asyncio), performs the version
handshake with every client and hands the decoded frames of each connection to
a :class:`ReceiverHandler`. :class:`Collector` is a handler that keeps
everything in memory (what tests and small tools need); the debugger UI and
the relay implement their own handlers.

    collector = Collector()
    receiver = Receiver(collector)
    async with anyio.create_task_group() as tg:
        port = await tg.start(receiver.serve, "127.0.0.1", 6831)
        ...
        await collector.wait(lambda c: "my-id" in c.machines, timeout=5)
"""

from __future__ import annotations

import errno
import itertools
import logging
import math
import operator
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import anyio.abc
import attrs

from .errors import ClientLimitError, ProtocolError
from .model import SchemaRecord, TxRecord
from .protocol import (
    DEFAULT_MAX_FRAME,
    DEFAULT_PORT,
    Decoder,
    Dropped,
    ErrorFrame,
    Gone,
    Hello,
    Welcome,
    WireTx,
    WireTxs,
    check_hello,
    encode_frame,
    tx_from_wire,
)

__all__ = [
    "MAX_HELLO",
    "MAX_MACHINES",
    "MAX_PENDING",
    "Collector",
    "Connection",
    "MachineLog",
    "Receiver",
    "ReceiverHandler",
]

#: the largest first frame (``hello``) a receiver reads before the handshake (bytes)
MAX_HELLO = 64 * 1024
#: connections a receiver keeps in the handshake at once by default
MAX_PENDING = 1024
#: machines a receiver tracks at once by default (all live connections together)
MAX_MACHINES = 100_000
# accept() failing for lack of resources: wait and try again (peers leave)
_ACCEPT_RETRY = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})

_log = logging.getLogger("asyncmachine_trio.telemetry")
_conn_ids = itertools.count(1)
_MID = operator.itemgetter(0)


@attrs.define(eq=False)
class Connection:
    """One client connection, as the handler sees it."""

    conn_id: int
    peer: str
    hello: Hello | None = None
    #: the latest schema of each machine announced on this connection
    machines: dict[str, SchemaRecord] = attrs.Factory(dict)
    frames: int = 0
    txs: int = 0


class ReceiverHandler:
    """Callbacks of a :class:`Receiver`; override what you need.

    They run in the connection's task, in frame order; an exception raised by a
    callback closes that connection (the client reconnects) and is logged.
    """

    #: the cap on concurrent clients a :class:`Receiver` applies when not given
    #: its own ``max_clients`` (None: no cap)
    max_clients: int | None = None

    def on_refused(self, conn: Connection, error: ClientLimitError) -> None:
        """A client was refused (``max_clients`` reached); it got an ``error`` frame."""

    def on_connect(self, conn: Connection) -> None:
        """The handshake of ``conn`` succeeded."""

    def on_schema(self, conn: Connection, schema: SchemaRecord) -> None:
        """A machine's schema (first, or changed, or after a reconnect)."""

    def on_txs(self, conn: Connection, txs: list[TxRecord]) -> None:
        """A batch of transitions, each of a machine whose schema came first."""

    def on_wire_txs(self, conn: Connection, txs: list[WireTx]) -> None:
        """The same batch as checked wire records (what the receiver decodes).

        The default builds the :class:`TxRecord` objects and calls
        :meth:`on_txs`; a handler that stores the wire form directly (the
        debugger's store) overrides this one and skips that cost.
        """
        self.on_txs(conn, [tx_from_wire(t) for t in txs])

    def on_dropped(self, conn: Connection, dropped: Dropped) -> None:
        """The client dropped records of a machine (buffer full / debugger away)."""

    def on_gone(self, conn: Connection, gone: Gone) -> None:
        """A machine was disposed."""

    def on_disconnect(self, conn: Connection, error: Exception | None) -> None:
        """The connection ended (``error``: why, for a protocol error)."""


async def _serve_listener(
    listener: anyio.abc.Listener[Any],
    handler: Callable[[Any], Any],
    what: str,
) -> None:
    """Accept on every socket of ``listener`` and run ``handler(stream)`` per connection.

    Unlike ``Listener.serve``, running out of descriptors or memory in
    ``accept()`` (``EMFILE``, ``ENFILE``, ``ENOMEM``, ``ENOBUFS``: a flood of
    connections) does not end the server: it logs, waits 0.1 s and accepts
    again once peers have left.
    """
    starved = 0

    async def accept_loop(ln: Any, tg: anyio.abc.TaskGroup) -> None:
        nonlocal starved
        while True:
            try:
                stream = await ln.accept()
            except (OSError, anyio.BrokenResourceError) as err:
                # (anyio on trio wraps the OSError)
                cause = err if isinstance(err, OSError) else err.__cause__
                if not isinstance(cause, OSError) or cause.errno not in _ACCEPT_RETRY:
                    raise
                starved += 1
                if starved == 1 or starved % 100 == 0:
                    _log.warning("%s: accept failed (%s), retrying", what, cause.strerror)
                await anyio.sleep(0.1)
                continue
            tg.start_soon(handler, stream)

    listeners = getattr(listener, "listeners", None) or [listener]
    async with anyio.create_task_group() as tg:
        for ln in listeners:
            tg.start_soon(accept_loop, ln, tg)


class Receiver:
    """Accepts exporters' connections and decodes protocol v2 (see ``docs/telemetry.md``).

    ``serve()`` listens on TCP; ``handle_stream()`` serves one already
    accepted byte stream (any anyio ``ByteStream``, e.g. one adapted from a
    websocket). A client sending malformed frames gets an ``error`` frame and
    is disconnected; the others are not affected. ``max_clients`` caps the
    clients served at once (default: the handler's ``max_clients``, None: no
    cap): one more gets an ``error`` frame after its ``hello``
    (:class:`ClientLimitError`), is counted in :attr:`refused` and reported to
    :meth:`ReceiverHandler.on_refused`.

    Bounds against hostile peers (each breach is a :class:`ProtocolError` sent
    to that peer as an ``error`` frame, then its connection closes):

    * ``max_hello`` (:data:`MAX_HELLO`): the largest first frame, read before
      the handshake (later frames may be up to ``max_frame``);
    * ``handshake_timeout``: seconds from the connection to a complete ``hello``;
    * ``max_pending`` (:data:`MAX_PENDING`, None: no cap): connections in the
      handshake at once; when one more comes, the oldest of them gets a
      :class:`ClientLimitError` and is closed (counted in :attr:`evicted` and
      :attr:`refused`, reported to :meth:`ReceiverHandler.on_refused`), so
      silent connections cannot lock well-behaved clients out;
    * ``frame_timeout`` (None: none): seconds a started frame may take to
      arrive completely (a client trickling bytes);
    * ``max_machines`` (:data:`MAX_MACHINES`, None: no cap): machines (schemas)
      tracked at once over all live connections (a ``gone`` frame ends the
      tracking of its machine: it leaves :attr:`Connection.machines`); the
      client whose ``schema`` frame would exceed it gets a :class:`ClientLimitError`.
    """

    def __init__(
        self,
        handler: ReceiverHandler,
        *,
        agent: str = "asyncmachine-trio receiver",
        max_frame: int = DEFAULT_MAX_FRAME,
        handshake_timeout: float = 10.0,
        max_clients: int | None = None,
        max_hello: int = MAX_HELLO,
        max_pending: int | None = MAX_PENDING,
        frame_timeout: float | None = 10.0,
        max_machines: int | None = MAX_MACHINES,
    ) -> None:
        self.handler = handler
        self.max_clients = handler.max_clients if max_clients is None else max_clients
        #: clients refused because of ``max_clients`` or ``max_pending``
        self.refused = 0
        self.agent = agent
        self.max_frame = max_frame
        self.handshake_timeout = handshake_timeout
        self.max_hello = min(max_hello, max_frame)
        self.max_pending = max_pending
        self.frame_timeout = frame_timeout
        self.max_machines = max_machines
        #: the live connections by id
        self.connections: dict[int, Connection] = {}
        #: connections closed in the handshake to make room (``max_pending``)
        self.evicted = 0
        self._pending: dict[anyio.CancelScope, None] = {}
        #: machines tracked now (the schemas of all live connections)
        self.machines = 0
        self.port: int = 0

    @property
    def pending(self) -> int:
        """Connections in the handshake now."""
        return len(self._pending)

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (``0``: any free port) until cancelled.

        With ``TaskGroup.start`` / ``nursery.start`` it reports the bound port.
        A flood of connections exhausting the process's descriptors pauses
        accepting (0.1 s at a time) instead of ending the server.
        """
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started(self.port)
            await _serve_listener(listener, self.handle_stream, "telemetry")

    async def handle_stream(self, stream: anyio.abc.ByteStream) -> None:
        """Serve one client until it disconnects (closes ``stream``)."""
        peer = ""
        try:
            peer = str(stream.extra(anyio.abc.SocketAttribute.remote_address))
        except Exception:
            pass
        conn = Connection(next(_conn_ids), peer)
        dec = Decoder(expect_preamble=True, max_frame=self.max_hello, wire_txs=True)
        error: Exception | None = None
        try:
            async with stream:
                try:
                    await self._run(stream, conn, dec)
                except ClientLimitError as err:
                    self.refused += 1
                    if self.refused == 1 or self.refused % 1000 == 0:  # a flood: a line per 1000
                        _log.warning(
                            "telemetry: client %s refused (%d so far): %s",
                            peer or conn.conn_id,
                            self.refused,
                            err,
                        )
                    with anyio.move_on_after(1):
                        await stream.send(encode_frame(ErrorFrame(str(err))))
                    if conn.hello is not None:
                        error = err
                    self.handler.on_refused(conn, err)
                except ProtocolError as err:
                    error = err
                    _log.warning("telemetry: client %s: %s", peer or conn.conn_id, err)
                    with anyio.move_on_after(1):
                        await stream.send(encode_frame(ErrorFrame(str(err))))
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
                except Exception as err:  # a handler failed: drop this client only
                    error = err
                    _log.exception("telemetry: handler failed for client %s", peer)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            if self.connections.pop(conn.conn_id, None) is not None:
                self.machines -= len(conn.machines)
            if conn.hello is not None:
                self.handler.on_disconnect(conn, error)

    async def _handshake(self, stream: anyio.abc.ByteStream, dec: Decoder) -> list[Any]:
        """The frames of the first chunks up to a complete ``hello`` (first)."""
        cap = self.max_pending
        pending = self._pending
        if cap is not None and pending and len(pending) >= cap:
            # the oldest connection still in its handshake makes room (a flood of
            # silent connections cannot lock well-behaved clients out)
            oldest = next(iter(pending))
            del pending[oldest]
            oldest.cancel()
            self.evicted += 1
        with anyio.CancelScope() as scope:
            pending[scope] = None
            try:
                with anyio.fail_after(self.handshake_timeout):
                    while True:
                        frames = dec.feed_iter(await stream.receive())
                        first = next(frames, None)
                        if first is not None:
                            break
            except TimeoutError:
                raise ProtocolError(
                    f"no hello within the handshake timeout ({self.handshake_timeout:g} s)"
                ) from None
            finally:
                pending.pop(scope, None)
        if scope.cancelled_caught:
            raise ClientLimitError(
                f"too many connections in the handshake (this receiver takes {cap} at once):"
                " the oldest one is closed"
            )
        dec.max_frame = self.max_frame  # the hello was small; the rest may be large
        return [first, *frames]

    async def _run(self, stream: anyio.abc.ByteStream, conn: Connection, dec: Decoder) -> None:
        h = self.handler
        first = await self._handshake(stream, dec)
        hello = check_hello(first.pop(0))
        frames: Iterable[Any] = first
        cap = self.max_clients
        if cap is not None and len(self.connections) >= cap:
            raise ClientLimitError(
                f"too many clients: this debugger serves {cap} at most"
                f" ({len(self.connections)} connected)"
            )
        conn.hello = hello
        self.connections[conn.conn_id] = conn  # before any await: the cap counts it
        await stream.send(encode_frame(Welcome(agent=self.agent)))
        h.on_connect(conn)
        frame_timeout = self.frame_timeout
        deadline: float | None = None
        while True:
            got = 0
            for frame in frames:
                got += 1
                conn.frames += 1
                self._dispatch(conn, frame)
            if got:
                deadline = None
            if frame_timeout is not None and dec.pending_bytes:
                # a frame has started: the rest of it must come within frame_timeout
                if deadline is None:
                    deadline = anyio.current_time() + frame_timeout
                with anyio.move_on_after(deadline - anyio.current_time()) as scope:
                    data = await stream.receive()
                if scope.cancelled_caught:
                    raise ProtocolError(
                        f"a frame did not arrive completely within {frame_timeout:g} s"
                        f" ({dec.pending_bytes} bytes of it so far)"
                    )
            else:
                deadline = None
                data = await stream.receive()
            frames = dec.feed_iter(data)

    def _dispatch(self, conn: Connection, frame: Any) -> None:
        h = self.handler
        if isinstance(frame, WireTxs):
            txs = frame.txs
            known = conn.machines
            mids = set(map(_MID, txs))
            if not mids.issubset(known):
                unknown = sorted(mids - known.keys())[0]
                raise ProtocolError(f"transition of machine {unknown!r} before its schema")
            conn.txs += len(txs)
            h.on_wire_txs(conn, txs)

        elif isinstance(frame, SchemaRecord):
            known = conn.machines
            if frame.machine_id not in known:
                cap = self.max_machines
                if cap is not None and self.machines >= cap:
                    raise ClientLimitError(
                        f"too many machines: this receiver tracks {cap} at most"
                        f" (machine {frame.machine_id!r:.80} refused)"
                    )
                self.machines += 1
            known[frame.machine_id] = frame
            h.on_schema(conn, frame)
        elif isinstance(frame, Dropped):
            h.on_dropped(conn, frame)
        elif isinstance(frame, Gone):
            h.on_gone(conn, frame)
            if conn.machines.pop(frame.machine_id, None) is not None:
                self.machines -= 1  # a disposed machine no longer counts
        elif isinstance(frame, ErrorFrame):
            raise ProtocolError(f"client reported an error: {frame.message}")
        else:
            raise ProtocolError(f"unexpected {type(frame).__name__} frame from a client")


@attrs.define(eq=False)
class MachineLog:
    """What a :class:`Collector` knows about one machine."""

    schema: SchemaRecord
    txs: list[TxRecord] = attrs.Factory(list)
    #: records the exporter reported as dropped
    dropped: int = 0
    #: schema frames received (the first one, changes, resends after reconnects)
    schemas: int = 1
    gone: bool = False
    connected: bool = True
    conn_id: int = 0


class Collector(ReceiverHandler):
    """A handler keeping every machine's schema and transitions in memory.

    ``max_txs`` bounds the transitions kept per machine (the oldest half is
    dropped when exceeded; ``None``: no bound). :attr:`errors` keeps the last
    100 connection errors.
    """

    def __init__(self, *, max_txs: int | None = None) -> None:
        self.machines: dict[str, MachineLog] = {}
        self.max_txs = max_txs
        self.connects: int = 0
        self.disconnects: int = 0
        self.errors: list[Exception] = []
        self._changed = anyio.Event()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def on_connect(self, conn: Connection) -> None:
        self.connects += 1
        self._poke()

    def on_schema(self, conn: Connection, schema: SchemaRecord) -> None:
        log = self.machines.get(schema.machine_id)
        if log is None:
            self.machines[schema.machine_id] = MachineLog(schema, conn_id=conn.conn_id)
        else:
            log.schema = schema
            log.schemas += 1
            log.connected = True
            log.gone = False
            log.conn_id = conn.conn_id
        self._poke()

    def on_txs(self, conn: Connection, txs: list[TxRecord]) -> None:
        machines = self.machines
        for tx in txs:
            log = machines[tx.machine_id]
            log.txs.append(tx)
            if self.max_txs is not None and len(log.txs) > self.max_txs:
                del log.txs[: len(log.txs) // 2]
        self._poke()

    def on_dropped(self, conn: Connection, dropped: Dropped) -> None:
        log = self.machines.get(dropped.machine_id)
        if log is not None:
            log.dropped += dropped.count
        self._poke()

    def on_gone(self, conn: Connection, gone: Gone) -> None:
        log = self.machines.get(gone.machine_id)
        if log is not None:
            log.gone = True
            log.connected = False
        self._poke()

    def on_disconnect(self, conn: Connection, error: Exception | None) -> None:
        self.disconnects += 1
        if error is not None:
            self.errors.append(error.with_traceback(None))
            del self.errors[:-100]
        for mid in conn.machines:
            log = self.machines.get(mid)
            if log is not None and log.conn_id == conn.conn_id:
                log.connected = False
        self._poke()

    async def wait(self, predicate: Callable[[Collector], bool], timeout: float = math.inf) -> None:
        """Return once ``predicate(self)`` holds; ``TimeoutError`` after ``timeout`` s."""
        with anyio.fail_after(timeout):
            while not predicate(self):
                await self._changed.wait()
