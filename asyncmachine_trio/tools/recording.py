"""Debugger recordings: the protocol v2 stream of a session, saved to a file.

A recording (``*.amdbg.gz``) is exactly what an exporter sends to a debugger,
gzip-compressed: the preamble, a ``hello`` frame, then ``schema`` frames (each
machine's schema before its first transition) and ``txs`` frames, plus
``dropped`` / ``gone`` frames where the live stream had them. Any protocol v2
decoder reads it; :func:`read_recording` returns the machines with their
schemas and transitions, :func:`write_recording` writes one. ``am-relay
rotate-dbg`` writes rotated recordings; ``am-vis`` draws them.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..telemetry.errors import ProtocolError
from ..telemetry.model import SchemaRecord, TxRecord
from ..telemetry.protocol import PREAMBLE, Dropped, Gone, Hello, TxBatch, encode_frame, encode_txs
from ..telemetry.receiver import Collector, Connection

__all__ = ["RECORDING_SUFFIX", "read_recording", "recording_bytes", "write_recording"]

RECORDING_SUFFIX = ".amdbg.gz"
#: transitions per ``txs`` frame in a recording
BATCH = 500


def recording_bytes(
    schemas: Iterable[SchemaRecord],
    txs: Iterable[TxRecord],
    *,
    agent: str = "asyncmachine-trio recording",
    gone: Iterable[str] = (),
    dropped: Mapping[str, int] | None = None,
) -> bytes:
    """The uncompressed stream: preamble, hello, every schema, the transitions."""
    out = bytearray(PREAMBLE)
    out += encode_frame(Hello(agent=agent))
    for s in schemas:
        out += encode_frame(s)
    batch: list[TxRecord] = []
    for tx in txs:
        batch.append(tx)
        if len(batch) >= BATCH:
            out += encode_txs(batch)
            batch = []
    if batch:
        out += encode_txs(batch)
    for mid, n in (dropped or {}).items():
        if n:
            out += encode_frame(Dropped(mid, n))
    for mid in gone:
        out += encode_frame(Gone(mid))
    return bytes(out)


def write_recording(
    path: str | os.PathLike[str],
    schemas: Iterable[SchemaRecord],
    txs: Iterable[TxRecord],
    **kwargs: object,
) -> Path:
    """Write a gzip-compressed recording (atomically: a temp file, then rename)."""
    data = recording_bytes(schemas, txs, **kwargs)  # type: ignore[arg-type]
    dst = Path(path)
    tmp = dst.with_name(dst.name + ".tmp")
    with gzip.open(tmp, "wb", compresslevel=6) as f:
        f.write(data)
    tmp.replace(dst)
    return dst


def read_recording(path: str | os.PathLike[str]) -> Collector:
    """The machines of a recording (a :class:`Collector` filled from the file).

    Plain (uncompressed) streams are read too. Raises :class:`ProtocolError`
    naming the file for anything that is not a complete recording.
    """
    from ..telemetry.protocol import Decoder

    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ProtocolError(f"{path}: not a readable gzip file ({err})") from None
    dec = Decoder(expect_preamble=True)
    try:
        frames = dec.feed(raw)
    except ProtocolError as err:
        raise ProtocolError(f"{path}: {err}") from None
    if dec._buf:
        raise ProtocolError(f"{path}: truncated ({len(dec._buf)} bytes of a frame at the end)")
    if not frames or not isinstance(frames[0], Hello):
        raise ProtocolError(f"{path}: no hello frame")
    col = Collector()
    conn = Connection(0, str(path), frames[0])
    for frame in frames[1:]:
        if isinstance(frame, SchemaRecord):
            conn.machines[frame.machine_id] = frame
            col.on_schema(conn, frame)
        elif isinstance(frame, TxBatch):
            for tx in frame.txs:
                if tx.machine_id not in col.machines:
                    raise ProtocolError(
                        f"{path}: a transition of {tx.machine_id!r} before its schema"
                    )
            col.on_txs(conn, frame.txs)
        elif isinstance(frame, Dropped):
            col.on_dropped(conn, frame)
        elif isinstance(frame, Gone):
            col.on_gone(conn, frame)
        else:
            raise ProtocolError(f"{path}: unexpected {type(frame).__name__} frame")
    return col


def recording_graph(col: Collector) -> Any:
    """The :class:`~asyncmachine_trio.graph.Graph` of a recording's machines.

    Active states come from each machine's last transition (or its schema's
    clock); pipes from the ``[pipe-...]`` log lines of its transitions; aRPC
    links from ``src-id:`` tags.
    """
    from ..graph import Graph, MachineNode

    g = Graph()
    for mid, log in col.machines.items():
        s = log.schema
        schema = {r.name: r.state() for r in s.states}
        clock = log.txs[-1].time_after if log.txs else s.time
        names = s.state_names
        active = [n for n, t in zip(names, clock, strict=False) if t % 2 == 1]
        groups = {
            name: tuple(names[i] for i in s.groups.get(name, ()) if i < len(names))
            for name in s.groups_order
        }
        lines = [ln for tx in log.txs for ln in (*tx.pre_log_entries, *tx.log_entries)]
        node = MachineNode(
            mid,
            schema,
            parent_id=s.parent_id,
            tags=tuple(s.tags),
            active=active,
            ticks=dict(zip(names, clock, strict=False)),
            groups=groups,
        )
        g.add(node, pipe_lines=[ln for ln in lines if ln.startswith("[pipe")])
        for ln in lines:
            if ln.startswith("[pipe:gc] "):
                g.remove_pipes_of(ln.split(" ", 1)[1].strip())
    return g
