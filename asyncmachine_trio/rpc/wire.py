"""Frames and messages on the wire, and their encoding (docs/rpc.md).

Every frame is one msgpack value: the tuple ``(seq, method, error, body)``.
``method`` set means a request (``seq == 0``: a notification, no response);
``method`` None means the response to ``seq``; ``error`` set means the request
failed. Messages are attrs classes unstructured by cattrs *as tuples* (field
order is the wire order, no field names travel), which keeps a mutation round
trip under the reference's 115 bytes.

Args values and payload data are arbitrary Python values: msgpack-native ones
(None, bool, int, float, str, bytes, list, tuple, dict) travel as they are;
other classes must be registered with :func:`register_type`, and travel as a
msgpack extension holding ``(tag, value)`` (the reference's ``gob.Register``).
"""

from __future__ import annotations

import reprlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import msgpack
from cattrs import UnstructureStrategy
from cattrs.preconf.msgpack import make_converter

from ..machine.args import AException, ExceptionArgsPanic
from ..telemetry.model import StateRecord
from .errors import RpcDecodeError, RpcEncodeError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "MAX_DEPTH",
    "MAX_EXT_DEPTH",
    "MAX_ITEMS",
    "CliHello",
    "CliMutation",
    "Empty",
    "ErrorInfo",
    "Frame",
    "RemoteException",
    "SrvArgs",
    "SrvHello",
    "SrvMutation",
    "SrvPayload",
    "SrvSync",
    "StateDef",
    "Update",
    "UpdateMuts",
    "decode_frame",
    "encode_frame",
    "err_text",
    "register_type",
    "short_repr",
    "structure",
]

DEFAULT_MAX_FRAME = 4 * 1024 * 1024
#: arrays and maps nested in one frame (the envelope is level 1, a body level 2)
MAX_DEPTH = 32
#: registered values nested in registered values (each level is decoded apart)
MAX_EXT_DEPTH = 8
#: items in one array or map (refused by the decoder before it allocates them)
MAX_ITEMS = 65536
_EXT = 1

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlong = 40
for _attr in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset", "maxdeque", "maxarray"):
    setattr(_repr, _attr, 6)


def short_repr(value: Any, limit: int = 120) -> str:
    """A repr of ``value`` bounded in length and depth (safe on hostile input)."""
    try:
        text = _repr.repr(value)
    except Exception as err:  # a user __repr__ that fails (or recurses)
        text = f"<{type(value).__name__}: repr failed: {type(err).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def err_text(err: BaseException, limit: int = 200, *, typed: bool = True) -> str:
    """``Type: message`` of an exception, bounded (its ``str`` may be huge or fail)."""
    try:
        msg = str(err)
    except Exception:
        msg = "<str failed>"
    if not typed:
        text = msg
    else:
        text = f"{type(err).__name__}: {msg}" if msg else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


T = TypeVar("T")


# ----- messages (field order = wire order; append new fields at the end)


@attrs.define(slots=True)
class ErrorInfo:
    """The error of a failed request: a kind (``access``, ``invalid_params``...) and a text."""

    kind: str
    message: str = ""


@attrs.define(slots=True)
class Frame:
    """One message on the wire."""

    seq: int
    method: str | None = None
    error: ErrorInfo | None = None
    body: Any = None


@attrs.define(slots=True)
class Empty:
    """No parameters."""


@attrs.define(slots=True)
class CliHello:
    """Handshake step 1, client → server (``MsgCliHello`` + token)."""

    id: str
    sync_schema: bool = True
    schema_hash: str = ""
    sync_mutations: bool = False
    allowed_states: list[str] | None = None
    skipped_states: list[str] | None = None
    shallow_clocks: bool = False
    token: str = ""


@attrs.define(slots=True)
class StateDef(StateRecord):
    """One state of a transferred schema: the fields (and ``of``) of the
    telemetry's :class:`~asyncmachine_trio.telemetry.StateRecord`, ``state()``
    included)."""


@attrs.define(slots=True)
class SrvHello:
    """Handshake step 1, server → client (``MsgSrvHello``): the source's snapshot.

    ``state_names`` / ``time`` are in the client's index space: every state with
    a schema sync, the tracked states only without one. ``schema`` is None when
    not requested or when the client's hash already matches.
    """

    id: str
    state_names: list[str]
    time: list[int]
    queue_tick: int
    machine_tick: int
    states_count: int
    schema: list[StateDef] | None = None
    schema_hash: str = ""
    tracked: list[int] | None = None
    #: the identity of the server's de-duplication memory (new after a restart)
    instance: str = ""


@attrs.define(slots=True)
class Update:
    """A clock diff (``MsgSrvUpdate``): ``(index, delta)`` pairs, tick deltas, checksum."""

    indexes: list[int]
    ticks: list[int]
    queue_tick: int
    machine_tick: int
    checksum: int


@attrs.define(slots=True)
class UpdateMuts:
    """One diff per source mutation (``MsgSrvUpdateMuts``, sync_mutations mode)."""

    types: list[str]
    called: list[list[int]]
    updates: list[Update]


@attrs.define(slots=True)
class CliMutation:
    """A mutation from the client (``MsgCliMutation``); ``id`` de-duplicates retries."""

    states: list[int]
    args: dict[str, Any] | None = None
    id: int = 0
    source_tx: str = ""


@attrs.define(slots=True)
class SrvMutation:
    """The result of a mutation and the clock diff since the last data sent."""

    result: int
    update: Update | None = None
    mutations: UpdateMuts | None = None
    queue_tick: int = 0


@attrs.define(slots=True)
class SrvSync:
    """A full clock (``MsgSrvSync``), machine tick included (a gap in the reference)."""

    time: list[int]
    queue_tick: int
    machine_tick: int


@attrs.define(slots=True)
class SrvPayload:
    """Data pushed by the server to the client's consumer (``MsgSrvPayload``)."""

    name: str
    data: Any = None
    destination: str = ""
    token: str = ""
    source: str = ""
    source_tx: str = ""


@attrs.define(slots=True)
class SrvArgs:
    """The typed-args names the server understands."""

    args: list[str]


# string annotations (``from __future__ import annotations``) resolved once, for cattrs
for _cls in (
    ErrorInfo,
    Frame,
    Empty,
    CliHello,
    StateDef,
    SrvHello,
    Update,
    UpdateMuts,
    CliMutation,
    SrvMutation,
    SrvSync,
    SrvPayload,
    SrvArgs,
):
    attrs.resolve_types(_cls)

# ----- encoding

_conv = make_converter(unstruct_strat=UnstructureStrategy.AS_TUPLE)
# ``Any`` fields (args values, payload data) go to msgpack as they are: cattrs
# would turn an unregistered attrs instance into a bare tuple (its type lost);
# msgpack's ``default`` hook encodes registered ones and refuses the rest
_conv.register_unstructure_hook_func(lambda t: t is Any, lambda v: v)
# registered values keep their identity through cattrs; msgpack's ``default``
# hook below turns them into extensions
_values_conv = make_converter()


# The messages of every mutation round trip (CliMutation, SrvMutation, Update,
# Empty) get hand-written hooks: cattrs' generic tuple path costs ~30 us per
# round trip, a third of a loopback call. They check the same shapes and raise
# the same errors (wrapped in RpcDecodeError by ``structure``).


def _ints(v: Any, what: str) -> list[int]:
    if type(v) is not list or not all(type(i) is int for i in v):
        raise ValueError(f"{what}: expected a list of ints, got {short_repr(v)}")
    return v


def _int(v: Any, what: str) -> int:
    if type(v) is not int:
        raise ValueError(f"{what}: expected an int, got {short_repr(v)}")
    return v


def _fields(raw: Any, cls: type, n: int) -> list[Any]:
    if type(raw) is not list or len(raw) < n:
        raise ValueError(f"{cls.__name__}: expected an array of {n}, got {short_repr(raw)}")
    return raw


def _update_in(raw: Any, _cls: Any = None) -> Update:
    f = _fields(raw, Update, 5)
    return Update(
        _ints(f[0], "indexes"),
        _ints(f[1], "ticks"),
        _int(f[2], "queue_tick"),
        _int(f[3], "machine_tick"),
        _int(f[4], "checksum"),
    )


def _update_out(u: Update) -> tuple[Any, ...]:
    return (u.indexes, u.ticks, u.queue_tick, u.machine_tick, u.checksum)


def _cli_mutation_in(raw: Any, _cls: Any = None) -> CliMutation:
    f = _fields(raw, CliMutation, 4)
    args = f[1]
    if args is not None and (type(args) is not dict or not all(type(k) is str for k in args)):
        raise ValueError(f"args: expected a map of str keys, got {short_repr(args)}")
    tx = f[3]
    if type(tx) is not str:
        raise ValueError(f"source_tx: expected a str, got {short_repr(tx)}")
    return CliMutation(_ints(f[0], "states"), args, _int(f[2], "id"), tx)


def _cli_mutation_out(m: CliMutation) -> tuple[Any, ...]:
    return (m.states, m.args, m.id, m.source_tx)


def _srv_mutation_in(raw: Any, _cls: Any = None) -> SrvMutation:
    f = _fields(raw, SrvMutation, 4)
    upd = None if f[1] is None else _update_in(f[1])
    muts = None if f[2] is None else _conv.structure(f[2], UpdateMuts)
    return SrvMutation(_int(f[0], "result"), upd, muts, _int(f[3], "queue_tick"))


def _srv_mutation_out(m: SrvMutation) -> tuple[Any, ...]:
    upd = None if m.update is None else _update_out(m.update)
    muts = None if m.mutations is None else _conv.unstructure(m.mutations)
    return (m.result, upd, muts, m.queue_tick)


def _empty_in(raw: Any, _cls: Any = None) -> Empty:
    if type(raw) is not list:
        raise ValueError(f"Empty: expected an array, got {short_repr(raw)}")
    return Empty()


def _empty_out(_e: Empty) -> tuple[Any, ...]:
    return ()


def _is(cls: type) -> Callable[[Any], bool]:
    return lambda t: t is cls


_HOOKS: tuple[tuple[type, Callable[..., Any], Callable[[Any], Any]], ...] = (
    (Update, _update_in, _update_out),
    (CliMutation, _cli_mutation_in, _cli_mutation_out),
    (SrvMutation, _srv_mutation_in, _srv_mutation_out),
    (Empty, _empty_in, _empty_out),
)
for _c, _in, _out in _HOOKS:
    _conv.register_structure_hook_func(_is(_c), _in)
    _conv.register_unstructure_hook_func(_is(_c), _out)

_by_class: dict[type, tuple[str, Callable[[Any], Any]]] = {}
_by_tag: dict[str, Callable[[Any], Any]] = {}


def register_type(
    cls: type[T],
    tag: str | None = None,
    *,
    encode: Callable[[T], Any] | None = None,
    decode: Callable[[Any], T] | None = None,
) -> None:
    """Let values of ``cls`` travel in args and payloads (Go ``gob.Register``).

    attrs classes and dataclasses need nothing else (they are unstructured by
    cattrs, field by field); other classes pass ``encode`` (to a msgpack-native
    value) and ``decode``. ``tag`` defaults to ``module.QualName`` and must be the
    same on both ends.
    """
    name = tag or f"{cls.__module__}.{cls.__qualname__}"
    enc: Callable[[Any], Any] = encode or _values_conv.unstructure
    dec: Callable[[Any], Any] = decode or (lambda raw: _values_conv.structure(raw, cls))
    _by_class[cls] = (name, enc)
    _by_tag[name] = dec
    _conv.register_unstructure_hook_func(lambda t: t is cls, lambda v: v)


def _default(obj: Any) -> Any:
    entry = _by_class.get(type(obj))
    if entry is None:
        if isinstance(obj, set | frozenset):
            return sorted(obj, key=repr)
        raise RpcEncodeError(
            f"cannot encode a value of type {type(obj).__qualname__}:"
            " register it with am.rpc.register_type()"
        )
    tag, enc = entry
    return msgpack.ExtType(_EXT, _pack([tag, enc(obj)]))


_ext_depth = threading.local()


def _ext_hook(code: int, data: bytes) -> Any:
    if code != _EXT:
        raise RpcDecodeError(f"unknown msgpack extension {code}")
    # each extension is unpacked by a nested call of the C decoder (tens of
    # kilobytes of C stack each): their nesting is bounded before recursing
    depth: int = getattr(_ext_depth, "n", 0)
    if depth >= MAX_EXT_DEPTH:
        raise RpcDecodeError(f"registered values nested deeper than {MAX_EXT_DEPTH}")
    _ext_depth.n = depth + 1
    try:
        raw = _unpack(data)
    finally:
        _ext_depth.n = depth
    if type(raw) is not list or len(raw) != 2 or type(raw[0]) is not str:
        raise RpcDecodeError(f"malformed extension: {short_repr(raw)}")
    tag, value = raw
    dec = _by_tag.get(tag)
    if dec is None:
        raise RpcDecodeError(f"unknown type tag {short_repr(tag)} (register it on both ends)")
    try:
        return dec(value)
    except Exception as err:
        raise RpcDecodeError(f"cannot decode a {short_repr(tag)}: {err_text(err)}") from err


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> Any:
    # msgpack bounds strings, bytes and extensions by len(data) itself; arrays
    # and maps get a tighter bound (their items are allocated up front)
    raw = msgpack.unpackb(
        data,
        ext_hook=_ext_hook,
        raw=False,
        strict_map_key=False,
        max_array_len=MAX_ITEMS,
        max_map_len=MAX_ITEMS,
    )
    _check_depth(raw)
    return raw


_NESTED = (list, dict, tuple)
_NESTED_SET = frozenset(_NESTED)


def _check_depth(raw: Any, depth: int = 1) -> None:
    """Refuse values nested deeper than :data:`MAX_DEPTH`.

    Recursive, but never deeper than ``MAX_DEPTH`` calls. Only containers are
    visited; a wide container's items are first scanned by type at C speed
    (``map(type, ...)``), so a long list of scalars costs little.
    """
    t = type(raw)
    if t is dict:
        if depth > MAX_DEPTH:
            raise RpcDecodeError(f"values nested deeper than {MAX_DEPTH}")
        for part in (raw.keys(), raw.values()):
            if len(part) > 8 and _NESTED_SET.isdisjoint(map(type, part)):
                continue
            for x in part:
                if type(x) in _NESTED_SET:
                    _check_depth(x, depth + 1)
    elif t is list or t is tuple:
        if len(raw) > 8 and _NESTED_SET.isdisjoint(map(type, raw)):
            return
        for x in raw:
            if type(x) in _NESTED_SET:
                if depth >= MAX_DEPTH:
                    raise RpcDecodeError(f"values nested deeper than {MAX_DEPTH}")
                _check_depth(x, depth + 1)


def encode_frame(frame: Frame) -> bytes:
    """The bytes of one frame; :class:`RpcEncodeError` for an unencodable value."""
    try:
        err = None if frame.error is None else _conv.unstructure(frame.error)
        body = None if frame.body is None else _conv.unstructure(frame.body)
        return _pack((frame.seq, frame.method, err, body))
    except RpcEncodeError:
        raise
    except Exception as err:
        raise RpcEncodeError(f"cannot encode {frame.method or 'response'}: {err}") from err


def decode_frame(data: bytes) -> Frame:
    """Decode the envelope of one frame; the body stays raw (see :func:`structure`).

    Total: any byte string gives a :class:`Frame` or raises :class:`RpcDecodeError`
    (depth, item count and size are bounded before the values are built).
    """
    try:
        raw = _unpack(data)
    except RpcDecodeError:
        raise
    except Exception as err:  # ExtraData, StackError, FormatError, MemoryError...
        raise RpcDecodeError(f"malformed frame: {err_text(err)}") from None
    if type(raw) is not list or len(raw) != 4:
        raise RpcDecodeError(f"malformed frame: not a 4-item array: {short_repr(raw)}")
    seq, method, error, body = raw
    if type(seq) is not int or seq < 0:  # bool is an int: refused too
        raise RpcDecodeError(f"malformed frame: bad seq {short_repr(seq)}")
    if method is not None and type(method) is not str:
        raise RpcDecodeError(f"malformed frame: bad method {short_repr(method)}")
    err_info = None
    if error is not None:
        # an error frame always decodes (answering it with another error
        # could ping-pong between two peers forever)
        if (
            type(error) is list
            and len(error) == 2
            and type(error[0]) is str
            and type(error[1]) is str
        ):
            err_info = ErrorInfo(error[0][:64], error[1][:1000])
        else:
            err_info = ErrorInfo("malformed", short_repr(error, 200))
    return Frame(seq, method, err_info, body)


def structure(raw: Any, cls: type[T]) -> T:
    """A message of type ``cls`` from a raw body; :class:`RpcDecodeError` when malformed."""
    try:
        return _conv.structure(raw, cls)
    except Exception as err:
        raise RpcDecodeError(f"malformed {cls.__name__}: {err_text(err, 300)}") from err


# ----- exceptions in args (``AException``) travel by type name and text


class RemoteException(Exception):
    """An exception that happened in another process: its type name and message."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


def _enc_exc(e: AException) -> Any:
    err = e.err
    if err is None:
        tname, msg = "", ""
    elif isinstance(err, RemoteException):
        tname, msg = err.type_name, err.message
    else:
        tname, msg = type(err).__qualname__, str(err)
    return [tname, msg, e.err_trace, list(e.target_states or [])]


def _dec_exc(raw: Any) -> AException:
    tname, msg, trace, targets = raw
    err = RemoteException(tname, msg) if tname else None
    return AException(err=err, err_trace=trace, target_states=list(targets) or None)


register_type(AException, "am.AException", encode=_enc_exc, decode=_dec_exc)
register_type(
    ExceptionArgsPanic,
    "am.ExceptionArgsPanic",
    encode=lambda p: [list(p.called_states), list(p.states_before)],
    decode=lambda raw: ExceptionArgsPanic(list(raw[0]), list(raw[1])),
)
