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

import itertools
import logging
import math
import operator
from collections.abc import Callable
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

__all__ = ["Collector", "Connection", "MachineLog", "Receiver", "ReceiverHandler"]

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
    """

    def __init__(
        self,
        handler: ReceiverHandler,
        *,
        agent: str = "asyncmachine-trio receiver",
        max_frame: int = DEFAULT_MAX_FRAME,
        handshake_timeout: float = 10.0,
        max_clients: int | None = None,
    ) -> None:
        self.handler = handler
        self.max_clients = handler.max_clients if max_clients is None else max_clients
        #: clients refused because of ``max_clients``
        self.refused = 0
        self.agent = agent
        self.max_frame = max_frame
        self.handshake_timeout = handshake_timeout
        #: the live connections by id
        self.connections: dict[int, Connection] = {}
        self.port: int = 0

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (``0``: any free port) until cancelled.

        With ``TaskGroup.start`` / ``nursery.start`` it reports the bound port.
        """
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started(self.port)
            await listener.serve(self.handle_stream)

    async def handle_stream(self, stream: anyio.abc.ByteStream) -> None:
        """Serve one client until it disconnects (closes ``stream``)."""
        peer = ""
        try:
            peer = str(stream.extra(anyio.abc.SocketAttribute.remote_address))
        except Exception:
            pass
        conn = Connection(next(_conn_ids), peer)
        dec = Decoder(expect_preamble=True, max_frame=self.max_frame, wire_txs=True)
        error: Exception | None = None
        try:
            async with stream:
                try:
                    await self._run(stream, conn, dec)
                except ClientLimitError as err:
                    self.refused += 1
                    _log.warning("telemetry: client %s refused: %s", peer or conn.conn_id, err)
                    with anyio.move_on_after(1):
                        await stream.send(encode_frame(ErrorFrame(str(err))))
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
            self.connections.pop(conn.conn_id, None)
            if conn.hello is not None:
                self.handler.on_disconnect(conn, error)

    async def _run(self, stream: anyio.abc.ByteStream, conn: Connection, dec: Decoder) -> None:
        h = self.handler
        frames: list[Any] = []
        with anyio.fail_after(self.handshake_timeout):
            while not frames:
                frames = dec.feed(await stream.receive())
        hello = check_hello(frames.pop(0))
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
        while True:
            for frame in frames:
                conn.frames += 1
                self._dispatch(conn, frame)
            frames = dec.feed_iter(await stream.receive())  # type: ignore[assignment]

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
            conn.machines[frame.machine_id] = frame
            h.on_schema(conn, frame)
        elif isinstance(frame, Dropped):
            h.on_dropped(conn, frame)
        elif isinstance(frame, Gone):
            h.on_gone(conn, frame)
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
    dropped when exceeded; ``None``: no bound).
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
        self._poke()

    def on_disconnect(self, conn: Connection, error: Exception | None) -> None:
        self.disconnects += 1
        if error is not None:
            self.errors.append(error)
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
