"""``--fwd-data``: forward every incoming telemetry frame to other am-dbg instances.

:class:`Forwarder` is a :class:`~asyncmachine_trio.telemetry.receiver.ReceiverHandler`
placed next to the store (:class:`Tee` hands every callback to both). For
every client connection and every target it opens one protocol v2
connection to the target, so the target sees the same machines, the same
connections and the same disconnects as this debugger:

* a client connects: one link per target starts (hello, welcome);
* ``schema`` / ``txs`` / ``dropped`` / ``gone`` frames are encoded once and
  queued on every link;
* the client disconnects: each link sends what is queued and closes.

Buffers are bounded (``max_frames`` per link, ``max_bytes`` over all links:
:data:`MAX_BYTES`, 64 MiB, by default). A slow or unreachable target
never slows the receiver: when a link's queue is full, ``txs`` frames are
dropped and counted per machine, and the link later sends ``dropped`` frames
with those counts, so the target's store shows the loss. A link that fails
reconnects with exponential backoff (``backoff`` to ``max_backoff`` seconds)
and first re-sends the schemas of its connection's machines.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc
import attrs

from ...telemetry.errors import ClientLimitError, TelemetryError
from ...telemetry.model import SchemaRecord, TxRecord
from ...telemetry.protocol import (
    PREAMBLE,
    Decoder,
    Dropped,
    Gone,
    Hello,
    WireTx,
    check_welcome,
    encode_frame,
    encode_txs,
    parse_addr,
)
from ...telemetry.receiver import Connection, ReceiverHandler

__all__ = ["MAX_BYTES", "ForwardStats", "Forwarder", "Tee"]

#: bytes a :class:`Forwarder` queues at most over all its links by default
MAX_BYTES = 64 * 1024 * 1024

_log = logging.getLogger("asyncmachine_trio.tools.dbg")


class Tee(ReceiverHandler):
    """Hands every receiver callback to ``primary``, then to each of ``others``.

    An exception of ``primary`` (the store) propagates as usual (the receiver
    drops that client); one of the others is logged and counted in
    :attr:`errors`, so a forwarding bug never costs the debugger its data.
    """

    def __init__(self, primary: ReceiverHandler, *others: ReceiverHandler) -> None:
        self.primary = primary
        self.others = others
        self.errors = 0
        # the receiver's client cap is the primary's
        self.max_clients = primary.max_clients

    def _each(self, method: str, *args: Any) -> None:
        getattr(self.primary, method)(*args)
        for h in self.others:
            try:
                getattr(h, method)(*args)
            except Exception:
                self.errors += 1
                _log.exception("am-dbg: %s.%s failed", type(h).__name__, method)

    def on_connect(self, conn: Connection) -> None:
        self._each("on_connect", conn)

    def on_schema(self, conn: Connection, schema: SchemaRecord) -> None:
        self._each("on_schema", conn, schema)

    def on_txs(self, conn: Connection, txs: list[TxRecord]) -> None:
        self._each("on_txs", conn, txs)

    def on_wire_txs(self, conn: Connection, txs: list[WireTx]) -> None:
        self._each("on_wire_txs", conn, txs)

    def on_refused(self, conn: Connection, error: ClientLimitError) -> None:
        self._each("on_refused", conn, error)

    def on_dropped(self, conn: Connection, dropped: Dropped) -> None:
        self._each("on_dropped", conn, dropped)

    def on_gone(self, conn: Connection, gone: Gone) -> None:
        self._each("on_gone", conn, gone)

    def on_disconnect(self, conn: Connection, error: Exception | None) -> None:
        self._each("on_disconnect", conn, error)


@attrs.define
class ForwardStats:
    """Counters of one target (all its links)."""

    addr: str
    #: frames and transitions sent
    frames: int = 0
    txs: int = 0
    #: transitions dropped because the link's queue was full
    dropped: int = 0
    #: schema / dropped / gone frames dropped (a queue twice over its bound)
    control_dropped: int = 0
    #: successful connections (first ones and reconnects)
    connects: int = 0
    #: failed connection attempts and broken links
    failures: int = 0
    last_error: str = ""


class _Link:
    """One client connection forwarded to one target."""

    def __init__(
        self, fwd: Forwarder, conn: Connection, addr: tuple[str, int], stats: ForwardStats
    ):
        self.fwd = fwd
        self.conn = conn
        self.addr = addr
        self.stats = stats
        #: (bytes, {machine id: transitions}) per queued frame
        self.queue: deque[tuple[bytes, dict[str, int]]] = deque()
        self.lost: dict[str, int] = {}
        self.closing = False
        self.wake = anyio.Event()

    def push(self, data: bytes, counts: dict[str, int] | None = None) -> None:
        fwd = self.fwd
        full = fwd.queued_bytes + len(data) > fwd.max_bytes
        if counts is None and (full or len(self.queue) >= 2 * fwd.max_frames):
            self.stats.control_dropped += 1  # schemas are re-sent on reconnect anyway
            return
        if counts is not None and (full or len(self.queue) >= fwd.max_frames):
            for mid, n in counts.items():
                self.lost[mid] = self.lost.get(mid, 0) + n
            self.stats.dropped += sum(counts.values())
            return
        self.queue.append((data, counts or {}))
        fwd.queued_bytes += len(data)
        self.wake.set()

    def _clear(self) -> None:
        self.stats.dropped += sum(sum(c.values()) for _d, c in self.queue)
        self.fwd.queued_bytes -= sum(len(d) for d, _c in self.queue)
        self.queue.clear()

    def close(self) -> None:
        self.closing = True
        self.wake.set()

    async def run(self) -> None:
        delay = self.fwd.backoff
        while True:
            try:
                await self._session()
                return
            except (
                OSError,
                anyio.BrokenResourceError,
                anyio.EndOfStream,
                anyio.ClosedResourceError,
                TelemetryError,
            ) as err:
                self.stats.failures += 1
                self.stats.last_error = f"{type(err).__name__}: {err}"
                _log.debug("am-dbg forward to %s:%s: %s", *self.addr, err)
            if self.closing:  # the client left and the target is down: give up the rest
                self._clear()
                return
            await anyio.sleep(delay)
            delay = min(delay * 2, self.fwd.max_backoff)

    async def _session(self) -> None:
        host, port = self.addr
        with anyio.fail_after(self.fwd.connect_timeout):
            stream = await anyio.connect_tcp(host, port)
        async with stream:
            with anyio.fail_after(self.fwd.connect_timeout):
                hello = Hello(agent=f"am-dbg forward ({self.conn.peer or self.conn.conn_id})")
                await stream.send(PREAMBLE + encode_frame(hello))
                dec = Decoder(max_frame=1 << 20)
                frames: list[Any] = []
                while not frames:
                    frames = dec.feed(await stream.receive())
                check_welcome(frames[0])
            self.stats.connects += 1
            # what the target must know first: the machines of this connection
            for schema in list(self.conn.machines.values()):
                await stream.send(encode_frame(schema))
            while True:
                if self.lost and len(self.queue) < self.fwd.max_frames:
                    lost, self.lost = self.lost, {}
                    await stream.send(
                        b"".join(encode_frame(Dropped(m, n)) for m, n in lost.items())
                    )
                if self.queue:
                    data, counts = self.queue[0]
                    with anyio.fail_after(self.fwd.send_timeout):
                        await stream.send(data)
                    self.queue.popleft()
                    self.fwd.queued_bytes -= len(data)
                    self.stats.frames += 1
                    self.stats.txs += sum(counts.values())
                    continue
                if self.closing:
                    return
                self.wake = anyio.Event()
                await self.wake.wait()


class Forwarder(ReceiverHandler):
    """Forwards what a receiver gets to other am-dbg instances (see the module doc).

    Call :meth:`run` in a task group first (it owns the links' tasks);
    ``targets`` are ``host:port`` addresses.
    """

    def __init__(
        self,
        targets: Sequence[str],
        *,
        max_frames: int = 1000,
        max_bytes: int = MAX_BYTES,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        connect_timeout: float = 5.0,
        send_timeout: float = 10.0,
    ) -> None:
        self.targets = [parse_addr(t) for t in targets]
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        #: bytes queued on all links now (at most ``max_bytes``)
        self.queued_bytes = 0
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.connect_timeout = connect_timeout
        self.send_timeout = send_timeout
        self.stats = [ForwardStats(f"{h}:{p}") for h, p in self.targets]
        self._links: dict[int, list[_Link]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        # connections made before run() started (their links start with it)
        self._pending: list[_Link] = []

    @property
    def dropped(self) -> int:
        """Transitions dropped on every target."""
        return sum(s.dropped for s in self.stats)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the links until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for link in self._pending:
                tg.start_soon(self._run_link, link)
            self._pending.clear()
            task_status.started()
            try:
                await anyio.sleep(math.inf)
            finally:
                self._tg = None

    def _each(self, conn: Connection) -> list[_Link]:
        return self._links.get(conn.conn_id, [])

    def on_connect(self, conn: Connection) -> None:
        links = [_Link(self, conn, a, s) for a, s in zip(self.targets, self.stats, strict=True)]
        self._links[conn.conn_id] = links
        tg = self._tg
        for link in links:
            if tg is None:
                self._pending.append(link)
            else:
                tg.start_soon(self._run_link, link)

    async def _run_link(self, link: _Link) -> None:
        try:
            await link.run()
        finally:
            if link.queue:  # cancelled: what it still held is no longer queued
                link._clear()
            links = self._links.get(link.conn.conn_id)
            if links is not None and link in links:
                links.remove(link)
                if not links:
                    del self._links[link.conn.conn_id]

    def on_schema(self, conn: Connection, schema: SchemaRecord) -> None:
        links = self._each(conn)
        if links:
            data = encode_frame(schema)
            for link in links:
                link.push(data)

    def on_txs(self, conn: Connection, txs: list[TxRecord]) -> None:
        links = self._each(conn)
        if links:
            data = encode_txs(txs)
            counts: dict[str, int] = {}
            for tx in txs:
                counts[tx.machine_id] = counts.get(tx.machine_id, 0) + 1
            for link in links:
                link.push(data, counts)

    def on_dropped(self, conn: Connection, dropped: Dropped) -> None:
        links = self._each(conn)
        if links:
            data = encode_frame(dropped)
            for link in links:
                link.push(data)

    def on_gone(self, conn: Connection, gone: Gone) -> None:
        links = self._each(conn)
        if links:
            data = encode_frame(gone)
            for link in links:
                link.push(data)

    def on_disconnect(self, conn: Connection, error: Exception | None) -> None:
        for link in self._each(conn):
            link.close()
