"""The debugger protocol, version 2: framing, frames and their encoding.

A connection is a byte stream (TCP; the same bytes may travel in binary
websocket messages). The client (the exporter) opens it with the 8-byte
preamble :data:`PREAMBLE`, then every message in both directions is a *frame*:
a 4-byte big-endian length followed by that many bytes of msgpack holding the
2-item array ``[kind, body]``. Bodies are the attrs records of
:mod:`asyncmachine_trio.telemetry.model` (and the small frames below)
unstructured by cattrs *as arrays*: field order is the wire order, new fields
are only appended, a decoder fills missing trailing fields with their defaults
and ignores extra ones.

Handshake: client → preamble + ``hello``; server → ``welcome`` (or ``error``
and close). Then the client streams ``schema``, ``txs``, ``dropped`` and
``gone`` frames; the server sends nothing more except an ``error`` before it
closes. A ``txs`` record is valid only after the ``schema`` of its machine on
the same connection. ``docs/telemetry.md`` has the full description.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import attrs
import msgpack
from cattrs.preconf.msgpack import make_converter

from .errors import ProtocolError, VersionError
from .model import SchemaRecord, StateRecord, StepRecord, TxRecord

__all__ = [
    "DEFAULT_ADDR",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_PORT",
    "KINDS",
    "PREAMBLE",
    "PROTOCOL_VERSION",
    "Decoder",
    "Dropped",
    "ErrorFrame",
    "Frame",
    "Gone",
    "Hello",
    "TxBatch",
    "Welcome",
    "check_hello",
    "check_welcome",
    "decode_frame",
    "encode_frame",
    "encode_txs",
    "encode_wire_txs",
    "parse_addr",
]

PROTOCOL_VERSION = 2
#: what a client writes first: lets a server tell v2 from other protocols (v1 gob)
PREAMBLE = b"AMDBG/2\n"
DEFAULT_PORT = 6831
DEFAULT_ADDR = f"localhost:{DEFAULT_PORT}"
#: the largest frame a decoder accepts by default (bytes after the length)
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

_LEN = struct.Struct(">I")

T = TypeVar("T")


# ----- the small frames


@attrs.define(slots=True)
class Hello:
    """Client → server, first frame: the protocol version and who is talking."""

    protocol: int = PROTOCOL_VERSION
    agent: str = ""
    #: the client's process id and host name (display only)
    pid: int = 0
    host: str = ""


@attrs.define(slots=True)
class Welcome:
    """Server → client, the answer to :class:`Hello`."""

    protocol: int = PROTOCOL_VERSION
    agent: str = ""


@attrs.define(slots=True)
class TxBatch:
    """Transitions, in the order they ended (any machines of this connection)."""

    txs: list[TxRecord] = attrs.Factory(list)


@attrs.define(slots=True)
class Dropped:
    """``count`` records of ``machine_id`` were dropped since the last such frame."""

    machine_id: str
    count: int


@attrs.define(slots=True)
class Gone:
    """The machine was disposed (or the exporter stopped tracing it)."""

    machine_id: str
    time_ns: int = 0


@attrs.define(slots=True)
class ErrorFrame:
    """Either side: a fatal error; the sender closes the connection after it."""

    message: str


Frame = Hello | Welcome | SchemaRecord | TxBatch | Dropped | Gone | ErrorFrame

#: frame kind on the wire → class
KINDS: dict[str, type[Any]] = {
    "hello": Hello,
    "welcome": Welcome,
    "schema": SchemaRecord,
    "txs": TxBatch,
    "dropped": Dropped,
    "gone": Gone,
    "error": ErrorFrame,
}
_KIND_OF: dict[type[Any], str] = {v: k for k, v in KINDS.items()}

for _cls in (Hello, Welcome, TxBatch, Dropped, Gone, ErrorFrame):
    attrs.resolve_types(_cls)


# ----- cattrs: arrays on the wire, lenient on length

_conv = make_converter()


def _tuple_structure(cls: type[T]) -> Callable[[Any, Any], T]:
    fields = [(a.name, a.type) for a in attrs.fields(cls)]  # type: ignore[arg-type]

    def hook(raw: Any, _t: Any) -> T:
        if not isinstance(raw, list | tuple):
            raise ValueError(f"{cls.__name__}: expected an array, got {type(raw).__name__}")
        kw = {name: _conv.structure(v, typ) for (name, typ), v in zip(fields, raw, strict=False)}
        return cls(**kw)

    return hook


def _tuple_unstructure(cls: type[Any]) -> Callable[[Any], list[Any]]:
    fields = [(a.name, a.type) for a in attrs.fields(cls)]

    def hook(obj: Any) -> list[Any]:
        return [_conv.unstructure(getattr(obj, name), typ) for name, typ in fields]

    return hook


_ARRAYS: tuple[type[Any], ...] = (
    Hello,
    Welcome,
    SchemaRecord,
    Dropped,
    Gone,
    ErrorFrame,
    StateRecord,
    StepRecord,
)
for _arr in _ARRAYS:
    _conv.register_structure_hook(_arr, _tuple_structure(_arr))
    _conv.register_unstructure_hook(_arr, _tuple_unstructure(_arr))


# TxRecord is the hot one: hand-written, with the same leniency and checks
_TX_FIELDS = tuple(a.name for a in attrs.fields(TxRecord))
_TX_N = len(_TX_FIELDS)
_TX_DEFAULTS: list[Any] = []
for _a in attrs.fields(TxRecord):
    if _a.default is attrs.NOTHING:
        _TX_DEFAULTS.append(attrs.NOTHING)
    elif isinstance(_a.default, attrs.Factory):  # type: ignore[arg-type]
        _TX_DEFAULTS.append(_a.default)
    else:
        _TX_DEFAULTS.append(_a.default)
_TX_REQUIRED = sum(1 for d in _TX_DEFAULTS if d is attrs.NOTHING)


def _tx_out(r: TxRecord) -> list[Any]:
    return [
        r.machine_id,
        r.seq,
        r.id,
        r.type,
        r.called,
        r.args,
        r.accepted,
        r.is_auto,
        r.is_check,
        r.is_queued,
        r.time_before,
        r.time_after,
        r.queue_tick,
        r.machine_tick,
        r.queue_len,
        [
            [s.type, s.from_state, s.to_state, s.relation, s.is_final, s.is_enter, s.is_self]
            for s in r.steps
        ],
        r.log_entries,
        r.pre_log_entries,
        r.time_ns,
        r.source_machine,
        r.source_tx,
        r.source_time,
    ]


def _check(ok: bool, field: str, v: Any) -> None:
    if not ok:
        raise ValueError(f"TxRecord.{field}: bad value {v!r:.60}")


_INT = frozenset({int})
_STR = frozenset({str})


def _ints(v: Any, field: str) -> list[int]:
    # set(map(type, v)) runs in C: the hot check of every clock vector
    _check(type(v) is list and (not v or _INT.issuperset(map(type, v))), field, v)
    return v  # type: ignore[no-any-return]


def _strs(v: Any, field: str) -> list[str]:
    _check(
        isinstance(v, list)
        and (not v or _STR.issuperset(map(type, v)) or all(isinstance(i, str) for i in v)),
        field,
        v,
    )
    return v  # type: ignore[no-any-return]


_TX_FAST_INTS = frozenset({int})
_TX_FAST_BOOLS = frozenset({bool})


def _tx_fast(raw: list[Any]) -> TxRecord | None:
    """A full-length, well-typed record without per-field calls (None: take the slow path)."""
    (mid, seq, tid, typ, called, args, acc, auto, check, queued) = raw[:10]
    (before, after, qt, mt, qlen, steps, logs, pre, tns, smach, stx, stime) = raw[10:22]
    ints = _TX_FAST_INTS
    if not (
        type(mid) is str
        and type(tid) is str
        and type(smach) is str
        and type(stx) is str
        and ints.issuperset(map(type, (seq, typ, qt, mt, qlen, tns, stime)))
        and _TX_FAST_BOOLS.issuperset(map(type, (acc, auto, check, queued)))
        and type(called) is list
        and type(before) is list
        and type(after) is list
        and ints.issuperset(map(type, called))
        and ints.issuperset(map(type, before))
        and ints.issuperset(map(type, after))
        and type(args) is dict
        and (not args or _STR.issuperset(map(type, (*args, *args.values()))))
        and type(steps) is list
        and type(logs) is list
        and type(pre) is list
        and (not logs or _STR.issuperset(map(type, logs)))
        and (not pre or _STR.issuperset(map(type, pre)))
    ):
        return None
    return TxRecord(
        mid,
        seq,
        tid,
        typ,
        called,
        args,
        acc,
        auto,
        check,
        queued,
        before,
        after,
        qt,
        mt,
        qlen,
        [_conv.structure(s, StepRecord) for s in steps] if steps else [],
        logs,
        pre,
        tns,
        smach,
        stx,
        stime,
    )


def _tx_in(raw: Any, _t: Any = None) -> TxRecord:
    if type(raw) is list and len(raw) == _TX_N:
        rec = _tx_fast(raw)
        if rec is not None:
            return rec
    if not isinstance(raw, list) or len(raw) < _TX_REQUIRED:
        raise ValueError(f"TxRecord: expected an array of >= {_TX_REQUIRED} items")
    vals = list(raw[:_TX_N])
    for i in range(len(vals), _TX_N):
        d = _TX_DEFAULTS[i]
        vals.append(d.factory() if isinstance(d, attrs.Factory) else d)  # type: ignore[arg-type]
    (mid, seq, tid, typ, called, args, acc, auto, check, queued) = vals[:10]
    (before, after, qt, mt, qlen, steps, logs, pre, tns, smach, stx, stime) = vals[10:22]
    _check(isinstance(mid, str), "machine_id", mid)
    _check(isinstance(tid, str), "id", tid)
    for name, v in (
        ("seq", seq),
        ("type", typ),
        ("queue_tick", qt),
        ("machine_tick", mt),
        ("queue_len", qlen),
        ("time_ns", tns),
        ("source_time", stime),
    ):
        _check(type(v) is int, name, v)
    for name, v in (("accepted", acc), ("is_auto", auto), ("is_check", check)):
        _check(isinstance(v, bool), name, v)
    _check(isinstance(queued, bool), "is_queued", queued)
    _check(
        isinstance(args, dict)
        and all(isinstance(k, str) and isinstance(x, str) for k, x in args.items()),
        "args",
        args,
    )
    _check(isinstance(smach, str) and isinstance(stx, str), "source", (smach, stx))
    _check(isinstance(steps, list), "steps", steps)
    return TxRecord(
        mid,
        seq,
        tid,
        typ,
        _ints(called, "called"),
        args,
        acc,
        auto,
        check,
        queued,
        _ints(before, "time_before"),
        _ints(after, "time_after"),
        qt,
        mt,
        qlen,
        [_conv.structure(s, StepRecord) for s in steps],
        _strs(logs, "log_entries"),
        _strs(pre, "pre_log_entries"),
        tns,
        smach,
        stx,
        stime,
    )


def _batch_in(raw: Any, _t: Any = None) -> TxBatch:
    if not isinstance(raw, list) or len(raw) < 1 or not isinstance(raw[0], list):
        raise ValueError("TxBatch: expected [[record, ...]]")
    return TxBatch([_tx_in(r) for r in raw[0]])


_conv.register_structure_hook(TxRecord, _tx_in)
_conv.register_unstructure_hook(TxRecord, _tx_out)
_conv.register_structure_hook(TxBatch, _batch_in)
_conv.register_unstructure_hook(TxBatch, lambda b: [[_tx_out(r) for r in b.txs]])


# ----- frames


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return _LEN.pack(len(data)) + data


def encode_frame(frame: Frame) -> bytes:
    """The bytes of one frame, length prefix included."""
    kind = _KIND_OF.get(type(frame))
    if kind is None:
        raise ProtocolError(f"not a protocol v2 frame: {type(frame).__name__}")
    return _pack([kind, _conv.unstructure(frame, type(frame))])


def encode_txs(records: list[TxRecord]) -> bytes:
    """A ``txs`` frame for ``records`` (what the exporter sends per batch)."""
    return _pack(["txs", [[_tx_out(r) for r in records]]])


def encode_wire_txs(arrays: list[list[Any]]) -> bytes:
    """A ``txs`` frame from records already in their wire (array) form."""
    return _pack(["txs", [arrays]])


def decode_frame(body: bytes) -> Frame:
    """One frame from its msgpack bytes (without the length prefix).

    Raises :class:`ProtocolError` naming the problem for malformed input and
    for unknown kinds.
    """
    try:
        raw = msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=True)
    except Exception as err:
        raise ProtocolError(f"malformed frame: {err}") from err
    if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], str):
        raise ProtocolError("malformed frame: expected [kind, body]")
    kind, payload = raw
    cls = KINDS.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown frame kind {kind!r}; known: {', '.join(KINDS)}")
    try:
        frame: Frame = _conv.structure(payload, cls)
    except Exception as err:
        raise ProtocolError(f"malformed {kind} frame: {err}") from err
    return frame


class Decoder:
    """Incremental decoder of one connection's byte stream (sans-I/O).

    ``feed()`` bytes as they arrive; it returns the complete frames. With
    ``expect_preamble`` (the server side) the stream must start with
    :data:`PREAMBLE` (:class:`VersionError` otherwise). Frames longer than
    ``max_frame`` raise :class:`ProtocolError`.
    """

    def __init__(self, *, expect_preamble: bool = False, max_frame: int = DEFAULT_MAX_FRAME):
        self._buf = bytearray()
        self._need_preamble = expect_preamble
        self.max_frame = max_frame
        #: bytes consumed so far (preamble included)
        self.bytes_in: int = 0

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by ``data`` (possibly none)."""
        self._buf += data
        self.bytes_in += len(data)
        return list(self._frames())

    def _frames(self) -> Iterator[Frame]:
        buf = self._buf
        if self._need_preamble:
            n = len(PREAMBLE)
            if len(buf) < n:
                if not PREAMBLE.startswith(bytes(buf)):
                    raise VersionError(_not_v2(bytes(buf)))
                return
            if bytes(buf[:n]) != PREAMBLE:
                raise VersionError(_not_v2(bytes(buf[:n])))
            del buf[:n]
            self._need_preamble = False
        pos = 0
        try:
            while len(buf) - pos >= 4:
                (size,) = _LEN.unpack_from(buf, pos)
                if size > self.max_frame:
                    raise ProtocolError(f"frame of {size} bytes exceeds the limit {self.max_frame}")
                end = pos + 4 + size
                if len(buf) < end:
                    break
                body = bytes(buf[pos + 4 : end])
                pos = end
                yield decode_frame(body)
        finally:
            del buf[:pos]


def _not_v2(head: bytes) -> str:
    if head[:1] and head[:1] not in b"A":
        return (
            f"not protocol v2 (first bytes {head[:8]!r}); a v1 (Go gob) client cannot talk"
            " to this receiver"
        )
    return f"bad preamble {head!r}, expected {PREAMBLE!r}"


def check_hello(frame: Frame) -> Hello:
    """The client's first frame as a :class:`Hello` of protocol 2, or :class:`VersionError`."""
    if not isinstance(frame, Hello):
        raise ProtocolError(f"expected a hello frame first, got {_KIND_OF[type(frame)]}")
    if frame.protocol != PROTOCOL_VERSION:
        raise VersionError(
            f"client speaks protocol {frame.protocol}, this receiver {PROTOCOL_VERSION}"
        )
    return frame


def check_welcome(frame: Frame) -> Welcome:
    """The server's answer as a :class:`Welcome` of protocol 2, or :class:`VersionError`."""
    if not isinstance(frame, Welcome):
        raise ProtocolError(f"expected a welcome frame, got {_KIND_OF[type(frame)]}")
    if frame.protocol != PROTOCOL_VERSION:
        raise VersionError(
            f"the debugger speaks protocol {frame.protocol}, this exporter {PROTOCOL_VERSION}"
        )
    return frame


def parse_addr(addr: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host:port`` (``1`` / ``""`` → :data:`DEFAULT_ADDR`) as ``(host, port)``.

    ``[::1]:6831`` works for IPv6; a bare host gets ``default_port``.
    """
    from .errors import TelemetryError

    text = addr.strip()
    if text in ("", "1"):
        text = DEFAULT_ADDR
    host, sep, port_s = text.rpartition(":")
    if not sep:
        host, port_s = text, str(default_port)
    host = host.strip("[]") or "localhost"
    try:
        port = int(port_s)
    except ValueError:
        msg = f"bad debugger address {addr!r}: port {port_s!r} is not a number"
        raise TelemetryError(msg) from None
    if not 0 <= port <= 65535:
        raise TelemetryError(f"bad debugger address {addr!r}: port {port} out of range")
    return host, port
