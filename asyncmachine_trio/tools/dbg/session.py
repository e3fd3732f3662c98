"""Export and import of a debugger session: a recording of protocol v2 frames, gzip-compressed.

The file is a debugger *recording* (the same format ``am-relay`` writes and
``am-vis`` reads, see :mod:`asyncmachine_trio.tools.recording`):
``gzip( PREAMBLE + frames )`` where the frames are exactly those of the
debugger protocol (see ``docs/telemetry.md``): a ``hello`` naming the writer,
then per machine its ``schema``, its transitions in ``txs`` frames of up to
:data:`CHUNK` records, a ``dropped`` frame with the records its exporter
reported lost and a ``gone`` frame when the machine was disposed. Uncompressed
streams are read too. An import
replays them into a :class:`~.store.Store` through the same code as live
traffic, so an exported session imports into an identical store (imported
machines are disconnected). A damaged, truncated or foreign file raises
:class:`SessionError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...telemetry.errors import ProtocolError
from ...telemetry.model import SchemaRecord
from ...telemetry.protocol import (
    PREAMBLE,
    Decoder,
    Dropped,
    Gone,
    Hello,
    WireTxs,
    encode_frame,
    encode_wire_txs,
)
from ...telemetry.receiver import Connection
from .store import Store

__all__ = ["CHUNK", "MAGIC", "SUFFIX", "SessionError", "export_session", "import_session"]

#: what a recording starts with (after decompression): the protocol's preamble
MAGIC = PREAMBLE
SUFFIX = ".amdbg.gz"
#: transitions per ``txs`` frame in a file
CHUNK = 2000
_READ = 1 << 20

#: ``progress(done, total)`` - transitions written / compressed bytes read
Progress = Callable[[int, int], None]


class SessionError(ProtocolError):
    """A session file that cannot be read (corrupt, truncated, not a session)."""


def export_session(
    store: Store,
    path: str | os.PathLike[str],
    *,
    machines: list[str] | None = None,
    progress: Progress | None = None,
    level: int = 6,
) -> int:
    """Write ``store`` (or only ``machines``) to ``path``; returns the transitions written."""
    from ... import __version__

    ids = list(store.machines) if machines is None else machines
    total = sum(len(store.get(m).txs) for m in ids)
    done = 0
    tmp = Path(str(path) + ".part")
    with gzip.open(tmp, "wb", compresslevel=level) as f:
        f.write(MAGIC)
        f.write(encode_frame(Hello(agent=f"am-dbg {__version__} export")))
        for mid in ids:
            md = store.get(mid)
            f.write(encode_frame(md.schema))
            n = len(md.txs)
            for start in range(1, n + 1, CHUNK):
                end = min(start + CHUNK, n + 1)
                f.write(encode_wire_txs([md.wire(pos) for pos in range(start, end)]))
                done += end - start
                if progress is not None and end <= n:
                    progress(done, total)
            if md.dropped_reported:
                f.write(encode_frame(Dropped(mid, md.dropped_reported)))
            if md.gone:
                f.write(encode_frame(Gone(mid, md.gone_ns)))
    os.replace(tmp, path)
    if progress is not None:
        progress(done, total)
    return done


def import_session(
    path: str | os.PathLike[str],
    store: Store | None = None,
    *,
    progress: Progress | None = None,
) -> Store:
    """Read a session file into ``store`` (a new one by default) and return it."""
    name = os.fspath(path)
    if store is None:
        store = Store()
    try:
        raw = open(name, "rb")  # noqa: SIM115 - closed below, position read for progress
    except OSError as err:
        raise SessionError(f"{name}: {err.strerror or err}") from err
    size = os.fstat(raw.fileno()).st_size
    conn = Connection(0, f"import:{name}")
    dec = Decoder(max_frame=64 * 1024 * 1024, wire_txs=True)
    head = b""
    frames = 0
    try:
        with raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            src: Any = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
            while True:
                chunk = src.read(_READ)
                if not chunk:
                    break
                if len(head) < len(MAGIC):
                    need = len(MAGIC) - len(head)
                    head += chunk[:need]
                    chunk = chunk[need:]
                    if not MAGIC.startswith(head):
                        raise SessionError(f"{name}: not an am-dbg session (bad header)")
                for frame in dec.feed_iter(chunk):
                    frames += 1
                    _apply(store, conn, frame, name)
                if progress is not None:
                    progress(raw.tell(), size)
    except SessionError:
        raise
    except (gzip.BadGzipFile, zlib.error) as err:
        raise SessionError(f"{name}: not a valid compressed session ({err})") from err
    except EOFError as err:
        raise SessionError(f"{name}: truncated ({err})") from err
    except ProtocolError as err:
        raise SessionError(f"{name}: corrupt frame: {err}") from err
    if head != MAGIC:
        raise SessionError(f"{name}: not an am-dbg session (empty or bad header)")
    if dec._buf:
        raise SessionError(f"{name}: truncated (a partial frame at the end)")
    if frames == 0 or not isinstance(conn.hello, Hello):
        raise SessionError(f"{name}: no session header frame")
    for mid in conn.machines:
        md = store.machines.get(mid)
        if md is not None:
            md.connected = False
    store.version += 1
    return store


def _apply(store: Store, conn: Connection, frame: object, name: str) -> None:
    if conn.hello is None:
        if not isinstance(frame, Hello):
            raise SessionError(f"{name}: expected a hello frame first")
        conn.hello = frame
        return
    if isinstance(frame, SchemaRecord):
        conn.machines[frame.machine_id] = frame
        store.on_schema(conn, frame)
    elif isinstance(frame, WireTxs):
        for mid in {t[0] for t in frame.txs}:
            if mid not in conn.machines:
                raise SessionError(f"{name}: transition of {mid!r} before its schema")
        store.add_wire_txs(frame.txs)
    elif isinstance(frame, Dropped):
        store.on_dropped(conn, frame)
    elif isinstance(frame, Gone):
        store.on_gone(conn, frame)
    else:
        raise SessionError(f"{name}: unexpected {type(frame).__name__} frame")
