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
from collections.abc import Callable, Iterator, Sequence
from itertools import chain, repeat
from operator import itemgetter
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
    "TX_FIELDS",
    "Decoder",
    "Dropped",
    "ErrorFrame",
    "Frame",
    "Gone",
    "Hello",
    "TxBatch",
    "Welcome",
    "WireTx",
    "WireTxs",
    "check_hello",
    "check_welcome",
    "check_wire_txs",
    "decode_frame",
    "encode_frame",
    "encode_txs",
    "encode_wire_txs",
    "parse_addr",
    "tx_from_wire",
    "tx_to_wire",
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
class WireTxs:
    """A ``txs`` frame decoded without building records (``Decoder(wire_txs=True)``).

    ``txs`` are normalized wire records (:data:`WireTx`, checked by
    :func:`check_wire_txs`): what the receiver hands to
    :meth:`~asyncmachine_trio.telemetry.receiver.ReceiverHandler.on_wire_txs`.
    """

    txs: list[tuple[Any, ...]] = attrs.Factory(list)


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


Frame = Hello | Welcome | SchemaRecord | TxBatch | WireTxs | Dropped | Gone | ErrorFrame

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
_KIND_OF[WireTxs] = "txs"

for _cls in (Hello, Welcome, TxBatch, WireTxs, Dropped, Gone, ErrorFrame):
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


# ----- transitions: the hot path, hand-written (same leniency as the arrays above)

#: a transition record in its wire form, normalized: a tuple of ``len(TX_FIELDS)``
#: items in :class:`TxRecord` field order, arrays as tuples, ``args`` a dict
WireTx = tuple[Any, ...]

#: the wire order of a transition record: :class:`TxRecord`'s fields
TX_FIELDS: tuple[str, ...] = tuple(a.name for a in attrs.fields(TxRecord))
_TX_N = len(TX_FIELDS)
#: machine_id, seq, id, type, called: the fields a record needs at least
_TX_REQUIRED = 5
_U64 = 1 << 64
# the exact item types of a normalized record (what msgpack gives for a well-formed one)
_TX_TYPES: tuple[type, ...] = (
    *(str, int, str, int, tuple, dict, bool, bool, bool, bool, tuple, tuple, int),
    *(int, int, tuple, tuple, tuple, int, str, str, int, bytes, bytes, int),
)
# how the slow path checks (and normalizes) each field
_TX_KINDS: tuple[str, ...] = (
    *("str", "int", "str", "int", "ticks", "args", "bool", "bool", "bool", "bool"),
    *("ticks", "ticks", "int", "int", "int", "steps", "strs", "strs", "time", "str"),
    *("str", "int", "bytes", "bytes", "int"),
)
_NO_ARGS: dict[str, str] = {}  # shared by normalized records, never mutated
_TX_DEFAULTS: tuple[Any, ...] = (
    *("", 0, "", 0, (), _NO_ARGS, True, False, False, False, (), (), 0, 0, 0, (), (), ()),
    *(0, "", "", 0, b"", b"", 0),
)
_STEP_TYPES: tuple[type, ...] = (int, str, str, str, bool, bool, bool)
_STEP_DEFAULTS: tuple[Any, ...] = (0, "", "", "", False, False, False)
assert len(_TX_TYPES) == len(_TX_KINDS) == len(_TX_DEFAULTS) == _TX_N
_G = [itemgetter(i) for i in range(_TX_N)]
_INT = frozenset({int})
_STR = frozenset({str})


def _bad(field: str, v: Any) -> ValueError:
    return ValueError(f"TxRecord.{field}: bad value {v!r:.60}")


def _ticks(v: Any, field: str) -> tuple[int, ...]:
    if not isinstance(v, list | tuple) or not all(type(i) is int and 0 <= i < _U64 for i in v):
        raise _bad(field, v)
    return tuple(v)


def _step(v: Any) -> tuple[Any, ...]:
    if not isinstance(v, list | tuple) or not v:
        raise _bad("steps", v)
    s = (*v[:7], *_STEP_DEFAULTS[len(v) :])
    if tuple(map(type, s)) != _STEP_TYPES:
        raise _bad("steps", v)
    return s


def _check_tx(raw: Any) -> WireTx:
    """One record, any length and sequence type, checked field by field."""
    if not isinstance(raw, list | tuple) or len(raw) < _TX_REQUIRED:
        raise ValueError(f"TxRecord: expected an array of >= {_TX_REQUIRED} items")
    vals = [*raw[:_TX_N], *_TX_DEFAULTS[len(raw) :]]
    for i, kind in enumerate(_TX_KINDS):
        v = vals[i]
        name = TX_FIELDS[i]
        if kind == "ticks":
            vals[i] = _ticks(v, name)
        elif kind == "strs":
            if not isinstance(v, list | tuple) or not all(type(s) is str for s in v):
                raise _bad(name, v)
            vals[i] = tuple(v)
        elif kind == "args":
            if type(v) is not dict or not all(
                type(k) is str and type(x) is str for k, x in v.items()
            ):
                raise _bad(name, v)
        elif kind == "steps":
            if not isinstance(v, list | tuple):
                raise _bad(name, v)
            vals[i] = tuple(_step(s) for s in v)
        elif kind == "time":
            if type(v) is not int or not 0 <= v < _U64:
                raise _bad(name, v)
        elif kind == "bytes":
            if not isinstance(v, bytes | bytearray):
                raise _bad(name, v)
            vals[i] = bytes(v)
        elif type(v) is not {"str": str, "int": int, "bool": bool}[kind]:
            raise _bad(name, v)
    return tuple(vals)


def _fast_ok(recs: Sequence[Any]) -> bool:
    """Whether every record of a batch is full-length and well-typed (checks run in C)."""
    try:
        # map(type, rec) per record, compared with the expected types
        if not all(map(_TX_TYPES.__eq__, map(tuple, map(map, repeat(type), recs)))):
            return False
    except TypeError:  # a record is not iterable
        return False
    g = _G
    ticks = list(chain.from_iterable(chain(map(g[4], recs), map(g[10], recs), map(g[11], recs))))
    if ticks and (not _INT.issuperset(map(type, ticks)) or min(ticks) < 0):
        return False
    if recs:
        times = list(map(g[18], recs))
        if min(times) < 0 or max(times) >= _U64:
            return False
    args = list(filter(None, map(g[5], recs)))
    if args and not _STR.issuperset(
        map(type, chain(chain.from_iterable(args), chain.from_iterable(map(dict.values, args))))
    ):
        return False
    lines = chain.from_iterable(chain(map(g[16], recs), map(g[17], recs)))
    if not _STR.issuperset(map(type, lines)):
        return False
    steps = list(filter(None, map(g[15], recs)))
    if steps:
        for s in chain.from_iterable(steps):
            if type(s) is not tuple or tuple(map(type, s)) != _STEP_TYPES:
                return False
    return True


def check_wire_txs(recs: Any) -> list[WireTx]:
    """Transition records in their wire form, checked and normalized.

    Well-formed full-length records (what msgpack decodes with ``use_list=False``
    from a current client) are checked in bulk and returned as they are; any
    other batch is checked record by record: shorter records get the defaults
    of the missing trailing fields, longer ones lose the extra items, lists
    become tuples. Raises ``ValueError`` naming the first bad field.
    """
    if not isinstance(recs, list | tuple):
        raise ValueError("TxBatch: expected [[record, ...]]")
    if _fast_ok(recs):
        return recs if type(recs) is list else list(recs)
    return [_check_tx(r) for r in recs]


def tx_from_wire(t: WireTx) -> TxRecord:
    """The :class:`TxRecord` of a normalized wire record (see :func:`check_wire_txs`)."""
    (mid, seq, tid, typ, called, args, acc, auto, check, queued, before, after) = t[:12]
    (qt, mt, qlen, steps, logs, pre, tns, smach, stx, stime, lv, plv, mqt) = t[12:]
    return TxRecord(
        mid,
        seq,
        tid,
        typ,
        list(called),
        dict(args),
        acc,
        auto,
        check,
        queued,
        list(before),
        list(after),
        qt,
        mt,
        qlen,
        [StepRecord(*s) for s in steps],
        list(logs),
        list(pre),
        tns,
        smach,
        stx,
        stime,
        lv,
        plv,
        mqt,
    )


def tx_to_wire(r: TxRecord) -> list[Any]:
    """The wire array of ``r`` (field order of :data:`TX_FIELDS`)."""
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
        r.log_levels,
        r.pre_log_levels,
        r.mut_queue_tick,
    ]


_tx_out = tx_to_wire


def _wire_batch(raw: Any) -> list[WireTx]:
    if not isinstance(raw, list | tuple) or len(raw) < 1:
        raise ValueError("TxBatch: expected [[record, ...]]")
    return check_wire_txs(raw[0])


def _batch_in(raw: Any, _t: Any = None) -> TxBatch:
    return TxBatch([tx_from_wire(t) for t in _wire_batch(raw)])


def _tx_in(raw: Any, _t: Any = None) -> TxRecord:
    return tx_from_wire(check_wire_txs([raw])[0])


_conv.register_structure_hook(TxRecord, _tx_in)
_conv.register_unstructure_hook(TxRecord, tx_to_wire)
_conv.register_structure_hook(TxBatch, _batch_in)
_conv.register_unstructure_hook(TxBatch, lambda b: [[tx_to_wire(r) for r in b.txs]])
_conv.register_unstructure_hook(WireTxs, lambda b: [list(b.txs)])


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


def encode_txs(records: Sequence[TxRecord]) -> bytes:
    """A ``txs`` frame for ``records`` (what the exporter sends per batch)."""
    return _pack(["txs", [[tx_to_wire(r) for r in records]]])


def encode_wire_txs(arrays: Sequence[Sequence[Any]]) -> bytes:
    """A ``txs`` frame from records already in their wire (array) form."""
    return _pack(["txs", [arrays]])


def decode_frame(body: bytes, *, wire_txs: bool = False) -> Frame:
    """One frame from its msgpack bytes (without the length prefix).

    With ``wire_txs`` a ``txs`` frame becomes :class:`WireTxs` (checked wire
    records, no :class:`TxRecord` objects) instead of :class:`TxBatch`.
    Raises :class:`ProtocolError` naming the problem for malformed input and
    for unknown kinds.
    """
    try:
        # tuples, not lists: msgpack builds them faster and the records stay immutable
        raw = msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=False)
    except Exception as err:
        raise ProtocolError(f"malformed frame: {err}") from err
    if type(raw) is not tuple or len(raw) != 2 or type(raw[0]) is not str:
        raise ProtocolError("malformed frame: expected [kind, body]")
    kind, payload = raw
    cls = KINDS.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown frame kind {kind!r}; known: {', '.join(KINDS)}")
    try:
        if wire_txs and cls is TxBatch:
            return WireTxs(_wire_batch(payload))
        frame: Frame = _conv.structure(payload, cls)
    except Exception as err:
        raise ProtocolError(f"malformed {kind} frame: {err}") from err
    return frame


class Decoder:
    """Incremental decoder of one connection's byte stream (sans-I/O).

    ``feed()`` bytes as they arrive; it returns the complete frames. With
    ``expect_preamble`` (the server side) the stream must start with
    :data:`PREAMBLE` (:class:`VersionError` otherwise). Frames longer than
    ``max_frame`` raise :class:`ProtocolError`. With ``wire_txs``, ``txs``
    frames come as :class:`WireTxs` (see :func:`decode_frame`).
    """

    def __init__(
        self,
        *,
        expect_preamble: bool = False,
        max_frame: int = DEFAULT_MAX_FRAME,
        wire_txs: bool = False,
    ):
        self._buf = bytearray()
        self._need_preamble = expect_preamble
        self.max_frame = max_frame
        self.wire_txs = wire_txs
        #: bytes consumed so far (preamble included)
        self.bytes_in: int = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes received but not decoded yet (a frame, or the preamble, in progress)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by ``data`` (possibly none)."""
        return list(self.feed_iter(data))

    def feed_iter(self, data: bytes) -> Iterator[Frame]:
        """Like :meth:`feed`, but each frame is decoded only when the iteration
        reaches it (so one decoded frame at a time is alive: less work for the
        GC). Iterate to the end before feeding more."""
        self._buf += data
        self.bytes_in += len(data)
        return self._frames()

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
                yield decode_frame(body, wire_txs=self.wire_txs)
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
