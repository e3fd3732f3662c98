"""``am-relay rotate-dbg`` logic: record the debugger stream to rotated files.

A :class:`Rotator` is a receiver handler: it keeps every machine's latest
schema, buffers transitions, and writes a recording
(:mod:`asyncmachine_trio.tools.recording`) whenever ``interval_tx``
transitions are buffered or ``interval`` seconds passed since the last file.
Each file starts with the schemas of every machine known at that moment, so
each one can be read on its own. :class:`Forwarder` passes the same stream on
to live debuggers (reconnecting; dropping, and counting, while one is away).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectSendStream

from ..telemetry.model import SchemaRecord, TxRecord
from ..telemetry.protocol import (
    PREAMBLE,
    Decoder,
    Dropped,
    ErrorFrame,
    Gone,
    Hello,
    Welcome,
    encode_frame,
    encode_txs,
    parse_addr,
)
from ..telemetry.receiver import Connection, ReceiverHandler
from .recording import RECORDING_SUFFIX, write_recording

__all__ = ["Forwarder", "RotatedFile", "Rotator", "parse_duration"]

_log = logging.getLogger("asyncmachine_trio.relay")


def parse_duration(text: str) -> float:
    """``90``, ``10s``, ``5m``, ``24h``, ``1h30m``, ``2d`` -> seconds (> 0)."""
    import re

    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        value = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise ValueError(f"bad duration {text!r}: use e.g. 30s, 5m, 24h or 1h30m")
        scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
        value = sum(float(n) * scale[u] for n, u in parts)
    if value <= 0:
        raise ValueError(f"bad duration {text!r}: must be more than 0")
    return value


@attrs.frozen
class RotatedFile:
    """One written recording."""

    path: Path
    machines: int
    txs: int


class Forwarder:
    """Sends the relayed stream on to a live debugger at ``addr``.

    Frames wait in a bounded queue (``max_queue`` frames, ``max_bytes`` bytes);
    while the debugger is away or the queue is full they are dropped and
    counted (``dropped``). After a (re)connect the latest schema of every
    machine is sent first. A debugger that does not take a frame within
    ``send_timeout`` seconds is disconnected (the queue is dropped; the next
    connection starts with the schemas again).
    """

    def __init__(
        self,
        addr: str,
        schemas: Callable[[], Sequence[SchemaRecord]],
        *,
        max_queue: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        send_timeout: float = 10.0,
        retry_max: float = 5.0,
    ) -> None:
        self.addr = addr
        host, port = parse_addr(addr)
        self.host: str = host
        self.port: int = port
        self._schemas = schemas
        self.max_queue = max_queue
        self.max_bytes = max_bytes
        self.send_timeout = send_timeout
        #: bytes in the queue now
        self.queued_bytes = 0
        # the queue of the current connection (None while disconnected)
        self._send: MemoryObjectSendStream[bytes] | None = None
        self.retry_max = retry_max
        self.connected: bool = False
        #: frames dropped while disconnected or with a full queue
        self.dropped: int = 0
        self.sent: int = 0
        self.connects: int = 0

    def send(self, data: bytes) -> None:
        """Queue one encoded frame (dropped while disconnected or when the queue is full)."""
        if self._send is None or self.queued_bytes + len(data) > self.max_bytes:
            self.dropped += 1
            return
        try:
            self._send.send_nowait(data)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.dropped += 1
        else:
            self.queued_bytes += len(data)

    async def run(self) -> None:
        """Connect, hand-shake and pump frames until cancelled; reconnect on errors."""
        delay = 0.1
        while True:
            try:
                stream = await anyio.connect_tcp(self.host, self.port)
            except OSError as err:
                _log.debug("forward %s: %s", self.addr, err)
                await anyio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            try:
                async with stream:
                    await self._session(stream)
                    delay = 0.1
            except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as err:
                _log.info("forward %s: disconnected (%s)", self.addr, err)
            finally:
                self.connected = False
            await anyio.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    async def _session(self, stream: anyio.abc.SocketStream) -> None:
        await stream.send(PREAMBLE + encode_frame(Hello(agent="am-relay")))
        dec = Decoder()
        with anyio.fail_after(10):
            while True:
                frames = dec.feed(await stream.receive())
                if frames:
                    break
        if isinstance(frames[0], ErrorFrame):
            raise OSError(f"debugger refused: {frames[0].message}")
        if not isinstance(frames[0], Welcome):
            raise OSError(f"expected welcome, got {type(frames[0]).__name__}")
        send, recv = anyio.create_memory_object_stream[bytes](self.max_queue)
        with send, recv:
            self._send = send  # what arrives from now on waits behind the schemas
            self.connected = True
            self.connects += 1
            _log.info("forward %s: connected", self.addr)
            try:
                for s in self._schemas():  # everyone's schema first
                    with anyio.fail_after(self.send_timeout):
                        await stream.send(encode_frame(s))
                async for data in recv:
                    self.queued_bytes -= len(data)
                    with anyio.fail_after(self.send_timeout):
                        await stream.send(data)
                    self.sent += 1
            finally:
                self._send = None
                self.dropped += recv.statistics().current_buffer_used
                self.queued_bytes = 0


class Rotator(ReceiverHandler):
    """Buffers the stream and writes ``<dir>/<name>-<YYYY-MM-DDTHH-MM-SS>.amdbg.gz`` files."""

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        name: str = "am-relay",
        *,
        interval_tx: int = 10_000,
        interval: float = 24 * 3600.0,
        forwarders: Sequence[Forwarder] = (),
        now: Callable[[], datetime] | None = None,
        on_file: Callable[[RotatedFile], None] | None = None,
    ) -> None:
        if interval_tx < 1:
            raise ValueError(f"interval_tx must be at least 1, got {interval_tx}")
        self.out_dir: Path = Path(out_dir)
        self.name = name
        self.interval_tx = interval_tx
        self.interval = interval
        self.forwarders: list[Forwarder] = list(forwarders)
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(timezone.utc))
        self.on_file = on_file
        self.schemas: dict[str, SchemaRecord] = {}
        self.buffer: list[TxRecord] = []
        self.gone: list[str] = []
        self.dropped: dict[str, int] = {}
        self.files: list[RotatedFile] = []
        self.total_txs: int = 0
        #: every machine that sent its schema (``schemas`` forgets the gone ones)
        self.machines_seen: set[str] = set()
        self._rotated_at = math.inf  # set by run()
        self._wake = anyio.Event()

    def current_schemas(self) -> list[SchemaRecord]:
        return list(self.schemas.values())

    # ----- ReceiverHandler

    def on_schema(self, conn: Connection, schema: SchemaRecord) -> None:
        self.schemas[schema.machine_id] = schema
        self.machines_seen.add(schema.machine_id)
        self._forward(encode_frame(schema))

    def on_txs(self, conn: Connection, txs: list[TxRecord]) -> None:
        self.buffer.extend(txs)
        self.total_txs += len(txs)
        self._forward(encode_txs(txs))
        if len(self.buffer) >= self.interval_tx:
            self._wake.set()

    def on_dropped(self, conn: Connection, dropped: Dropped) -> None:
        self.dropped[dropped.machine_id] = self.dropped.get(dropped.machine_id, 0) + dropped.count
        self._forward(encode_frame(dropped))

    def on_gone(self, conn: Connection, gone: Gone) -> None:
        self.gone.append(gone.machine_id)
        self._forward(encode_frame(gone))

    def _forward(self, data: bytes) -> None:
        for f in self.forwarders:
            f.send(data)

    # ----- rotation

    def _file_name(self) -> Path:
        stamp = self.now().strftime("%Y-%m-%dT%H-%M-%S")
        path = self.out_dir / f"{self.name}-{stamp}{RECORDING_SUFFIX}"
        n = 1
        while path.exists():
            n += 1
            path = self.out_dir / f"{self.name}-{stamp}-{n}{RECORDING_SUFFIX}"
        return path

    async def rotate(self) -> RotatedFile | None:
        """Write the buffered transitions now (nothing buffered: no file)."""
        self._rotated_at = anyio.current_time()
        if not self.buffer and not self.gone:
            return None
        txs, self.buffer = self.buffer, []
        gone, self.gone = self.gone, []
        dropped, self.dropped = self.dropped, {}
        schemas = self.current_schemas()
        for mid in gone:
            self.schemas.pop(mid, None)

        def write() -> Path:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = self._file_name()
            return write_recording(path, schemas, txs, agent="am-relay", gone=gone, dropped=dropped)

        path = await anyio.to_thread.run_sync(write)
        used = {t.machine_id for t in txs}
        rf = RotatedFile(path, len(used | set(gone)), len(txs))
        self.files.append(rf)
        if self.on_file is not None:
            self.on_file(rf)
        return rf

    async def run(self) -> None:
        """Rotate by count (woken by ``on_txs``) and by time, until cancelled."""
        self._rotated_at = anyio.current_time()
        try:
            while True:
                deadline = self._rotated_at + self.interval
                with anyio.move_on_after(max(deadline - anyio.current_time(), 0)):
                    await self._wake.wait()
                self._wake = anyio.Event()
                if len(self.buffer) >= self.interval_tx or (
                    anyio.current_time() >= self._rotated_at + self.interval
                ):
                    await self.rotate()
        finally:
            with anyio.CancelScope(shield=True):
                await self.rotate()  # the rest, on shutdown
