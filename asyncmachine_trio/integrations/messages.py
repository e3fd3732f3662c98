"""JSON control messages: requests and responses with a ``kind`` discriminator.

Field names, kinds and result codes are the reference's (``pkg/integrations``), so
Python and Go peers exchange the same JSON. Every field but ``kind`` (and
``result`` / ``mach_id`` where the reference always writes them) is left out of
the JSON when empty, like Go's ``omitempty``.

One addition: a response may carry an ``error`` object (``code``, ``message``,
``hint``) when the request was refused. A refused mutation also reports
``result: 1`` (canceled), so a peer that does not know ``error`` still reads a
failure.
"""

from __future__ import annotations

import enum
import json
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import cattrs
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

import asyncmachine_trio as am

from .errors import (
    ERROR_TYPES,
    IntegrationError,
    MalformedMessageError,
    MessageTooLargeError,
    UnknownKindError,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_MESSAGE_SIZE",
    "ErrorInfo",
    "GetterReq",
    "GetterResp",
    "Kind",
    "Message",
    "MutationReq",
    "MutationResp",
    "Request",
    "Response",
    "WaitingReq",
    "WaitingResp",
    "decode",
    "decode_request",
    "decode_response",
    "encode",
    "from_dict",
    "to_dict",
]

MAX_MESSAGE_SIZE = 1024 * 1024
"""Largest payload :func:`decode` accepts, in bytes (NATS' default max_payload)."""

MAX_DEPTH = 32
"""Deepest nesting of JSON arrays and objects :func:`decode` accepts (the message
itself is level 1, its ``args`` level 2); deeper payloads are malformed, so no
peer can make a handler, a log line or a response recurse without bound."""


class Kind(str, enum.Enum):
    """The ``kind`` of every message (the reference's names)."""

    REQ_GETTER = "am_req_getter"
    REQ_MUTATION = "am_req_mutation"
    REQ_WAITING = "am_req_waiting"
    RESP_GETTER = "am_resp_getter"
    RESP_MUTATION = "am_resp_mutation"
    RESP_WAITING = "am_resp_waiting"
    RESP_ERROR = "am_resp_error"
    """Ours: the answer to a payload whose request kind is unknown."""

    def __str__(self) -> str:
        return self.value


def _doc(text: str, **meta: Any) -> dict[str, Any]:
    return {"doc": text, **meta}


@attrs.frozen
class ErrorInfo:
    """Why a request was refused: a stable ``code``, a message, an optional hint."""

    code: str = attrs.field(metadata=_doc("Stable error code, e.g. unknown_state."))
    message: str = attrs.field(metadata=_doc("Human-readable description."))
    hint: str = attrs.field(default="", metadata=_doc("The closest valid name, if any."))

    @classmethod
    def from_exc(cls, err: IntegrationError) -> ErrorInfo:
        """The wire form of a typed error."""
        return cls(code=err.code, message=str(err), hint=err.hint)

    def to_exc(self) -> IntegrationError:
        """The typed error this describes (``IntegrationError`` for unknown codes)."""
        exc_type = ERROR_TYPES.get(self.code, IntegrationError)
        err = exc_type(self.message, hint=self.hint)
        if exc_type is IntegrationError:
            err.code = self.code
        return err


_ERROR_FIELD = attrs.field(
    default=None,
    metadata=_doc("Set when the request was refused (an addition to the reference)."),
)


@attrs.define(kw_only=True)
class MutationReq:
    """Add or remove states (exactly one of ``add`` / ``remove``)."""

    KIND: ClassVar[Kind] = Kind.REQ_MUTATION
    kind: str = attrs.field(default=Kind.REQ_MUTATION.value, metadata=_doc("The kind."))
    add: list[str] = attrs.field(factory=list, metadata=_doc("The states to add."))
    remove: list[str] = attrs.field(factory=list, metadata=_doc("The states to remove."))
    args: dict[str, Any] = attrs.field(
        factory=dict, metadata=_doc("Arguments passed to transition handlers.")
    )


@attrs.define(kw_only=True)
class MutationResp:
    """The result of a mutation: 0 executed, 1 canceled, 2 and above queued."""

    KIND: ClassVar[Kind] = Kind.RESP_MUTATION
    kind: str = attrs.field(default=Kind.RESP_MUTATION.value, metadata=_doc("The kind."))
    result: int = attrs.field(
        default=int(am.Result.CANCELED),
        metadata=_doc("0 executed, 1 canceled, 2 and above queued.", always=True),
    )
    error: ErrorInfo | None = _ERROR_FIELD


@attrs.define(kw_only=True)
class WaitingReq:
    """Wait until all ``states`` are active, all ``states_not`` inactive, or ticks reached.

    ``states_not`` wins over ``states``; with ``time`` (one tick per state in
    ``states``) the wait is for each state's tick to reach the given value.
    """

    KIND: ClassVar[Kind] = Kind.REQ_WAITING
    kind: str = attrs.field(default=Kind.REQ_WAITING.value, metadata=_doc("The kind."))
    states: list[str] = attrs.field(
        factory=list, metadata=_doc("The states to wait for (all active, or the ticks).")
    )
    states_not: list[str] = attrs.field(
        factory=list, metadata=_doc("The states to wait for to be inactive.")
    )
    time: list[int] = attrs.field(
        factory=list, metadata=_doc("The minimal ticks of ``states``, in the same order.")
    )


@attrs.define(kw_only=True)
class WaitingResp:
    """Sent once the awaited condition holds."""

    KIND: ClassVar[Kind] = Kind.RESP_WAITING
    kind: str = attrs.field(default=Kind.RESP_WAITING.value, metadata=_doc("The kind."))
    mach_id: str = attrs.field(default="", metadata=_doc("The machine's id.", always=True))
    states: list[str] = attrs.field(factory=list, metadata=_doc("The active states waited for."))
    states_not: list[str] = attrs.field(
        factory=list, metadata=_doc("The inactive states waited for.")
    )
    time: list[int] = attrs.field(
        factory=list, metadata=_doc("The current ticks of the states waited for by time.")
    )
    error: ErrorInfo | None = _ERROR_FIELD


@attrs.define(kw_only=True)
class GetterReq:
    """Ask for data; each flag or list fills the matching field of the response."""

    KIND: ClassVar[Kind] = Kind.REQ_GETTER
    kind: str = attrs.field(default=Kind.REQ_GETTER.value, metadata=_doc("The kind."))
    time: list[str] = attrs.field(factory=list, metadata=_doc("Ticks of these states."))
    time_sum: list[str] = attrs.field(
        factory=list, metadata=_doc("The sum of the ticks of these states.")
    )
    clocks: list[str] = attrs.field(
        factory=list, metadata=_doc("Named clocks (state: tick) of these states.")
    )
    tags: bool = attrs.field(default=False, metadata=_doc("The machine's tags."))
    export: bool = attrs.field(default=False, metadata=_doc("An importable export."))
    id: bool = attrs.field(default=False, metadata=_doc("The machine's id."))
    parent_id: bool = attrs.field(default=False, metadata=_doc("The parent's id."))


@attrs.define(kw_only=True)
class GetterResp:
    """The data a :class:`GetterReq` asked for."""

    KIND: ClassVar[Kind] = Kind.RESP_GETTER
    kind: str = attrs.field(default=Kind.RESP_GETTER.value, metadata=_doc("The kind."))
    mach_id: str = attrs.field(default="", metadata=_doc("The machine's id."))
    time: list[int] = attrs.field(factory=list, metadata=_doc("Ticks of the states asked."))
    time_sum: int = attrs.field(default=0, metadata=_doc("The sum of those ticks."))
    clocks: dict[str, int] = attrs.field(
        factory=dict, metadata=_doc("State name to tick, for the states asked.")
    )
    tags: list[str] = attrs.field(factory=list, metadata=_doc("The machine's tags."))
    export: am.Serialized | None = attrs.field(
        default=None, metadata=_doc("Id, state names, time, queue and machine ticks.")
    )
    id: str = attrs.field(default="", metadata=_doc("The machine's id."))
    parent_id: str = attrs.field(default="", metadata=_doc("The parent machine's id."))
    error: ErrorInfo | None = _ERROR_FIELD


@attrs.define(kw_only=True)
class ErrorResp:
    """Ours: the answer to a payload that is not a request of a known kind."""

    KIND: ClassVar[Kind] = Kind.RESP_ERROR
    kind: str = attrs.field(default=Kind.RESP_ERROR.value, metadata=_doc("The kind."))
    error: ErrorInfo | None = attrs.field(
        default=None, metadata=_doc("Why the payload was refused.", always=True)
    )


Request = MutationReq | WaitingReq | GetterReq
Response = MutationResp | WaitingResp | GetterResp | ErrorResp
Message = Request | Response

MESSAGE_TYPES: dict[str, type[Any]] = {
    t.KIND.value: t
    for t in (MutationReq, MutationResp, WaitingReq, WaitingResp, GetterReq, GetterResp, ErrorResp)
}
REQUEST_KINDS = frozenset({Kind.REQ_MUTATION.value, Kind.REQ_WAITING.value, Kind.REQ_GETTER.value})
RESPONSE_KINDS = frozenset(MESSAGE_TYPES) - REQUEST_KINDS


# ----- the converter: strict types in, Go's omitempty out


def _strict(kind: type[Any], name: str) -> Any:
    def hook(value: Any, _type: Any) -> Any:
        if type(value) is bool and kind is not bool:
            raise TypeError(f"expected {name}, got a boolean")
        if not isinstance(value, kind):
            raise TypeError(f"expected {name}, got {type(value).__name__}")
        return value

    return hook


def _any_map(value: Any, _type: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True)
    conv.register_structure_hook(str, _strict(str, "a string"))
    conv.register_structure_hook(int, _strict(int, "an integer"))
    conv.register_structure_hook(bool, _strict(bool, "a boolean"))
    conv.register_structure_hook_func(lambda t: t == dict[str, Any], _any_map)

    def is_list(t: Any) -> bool:
        return typing.get_origin(t) is list

    def list_hook(t: Any) -> Any:
        item = typing.get_args(t)[0]
        item_hook = conv.get_structure_hook(item)

        def hook(value: Any, _type: Any) -> list[Any]:
            if not isinstance(value, list):
                raise TypeError(f"expected an array, got {type(value).__name__}")
            errors = []
            out = []
            for i, v in enumerate(value):
                try:
                    out.append(item_hook(v, item))
                except Exception as err:
                    note = IterableValidationNote(f"Structuring {t} @ index {i}", i, item)
                    setattr(err, "__notes__", [*getattr(err, "__notes__", []), note])
                    errors.append(err)
            if errors:
                raise IterableValidationError(f"While structuring {t!r}", errors, t)
            return out

        return hook

    conv.register_structure_hook_factory(is_list, list_hook)
    conv.register_unstructure_hook_func(lambda t: t == dict[str, Any], lambda v: v)

    def serialized(value: Any, _type: Any) -> am.Serialized:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        return am.Serialized(
            id=conv.structure(value.get("id", ""), str),
            state_names=tuple(conv.structure(value.get("state_names") or [], list[str])),
            time=tuple(conv.structure(value.get("time") or [], list[int])),
            queue_tick=conv.structure(value.get("queue_tick", 0), int),
            machine_tick=conv.structure(value.get("machine_tick", 0), int),
        )

    conv.register_structure_hook(am.Serialized, serialized)
    conv.register_unstructure_hook(
        am.Serialized,
        lambda s: {
            "id": s.id,
            "state_names": list(s.state_names),
            "time": list(s.time),
            "queue_tick": s.queue_tick,
            "machine_tick": s.machine_tick,
        },
    )
    classes: list[type[Any]] = [ErrorInfo, *MESSAGE_TYPES.values()]
    for cls in classes:
        keep = {
            f.name: override(omit_if_default=False)
            for f in attrs.fields(cls)
            if f.name == "kind" or f.metadata.get("always")
        }
        conv.register_unstructure_hook(
            cls,
            make_dict_unstructure_fn(
                cls,
                conv,
                _cattrs_omit_if_default=True,
                **keep,  # type: ignore[arg-type]
            ),
        )
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv))
    return conv


converter: cattrs.Converter = _make_converter()
"""The cattrs converter for messages (strict on input types, omits empty fields)."""


def to_dict(msg: Message) -> dict[str, Any]:
    """A message as a JSON-ready dict, empty fields left out."""
    out: dict[str, Any] = converter.unstructure(msg)
    return out


def encode(msg: Message) -> bytes:
    """A message as compact UTF-8 JSON."""
    return json.dumps(to_dict(msg), separators=(",", ":")).encode()


def from_dict(data: Mapping[str, Any], cls: type[Any] | None = None) -> Message:
    """Structure a decoded JSON object; the class comes from ``kind`` unless given.

    Raises :class:`UnknownKindError` or :class:`MalformedMessageError`.
    """
    if not isinstance(data, dict):
        raise MalformedMessageError(f"expected a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    if cls is None:
        if not isinstance(kind, str):
            raise UnknownKindError(
                "missing or non-string 'kind'", hint=", ".join(sorted(MESSAGE_TYPES))
            )
        cls = MESSAGE_TYPES.get(kind)
        if cls is None:
            raise UnknownKindError.for_name(kind, MESSAGE_TYPES)
    elif kind != cls.KIND.value:
        raise UnknownKindError(
            f"expected kind {cls.KIND.value!r}, got {kind!r}", hint=cls.KIND.value
        )
    # null is the zero value, as Go's decoder reads it
    data = {k: v for k, v in data.items() if v is not None}
    try:
        msg: Message = converter.structure(data, cls)
    except cattrs.BaseValidationError as err:
        detail = "; ".join(cattrs.transform_error(err, path=""))
        raise MalformedMessageError(f"invalid {kind}: {detail}", kind=str(kind)) from None
    return msg


def decode(payload: bytes | str, cls: type[Any] | None = None) -> Message:
    """Parse JSON (at most :data:`MAX_MESSAGE_SIZE` bytes) into a message."""
    if len(payload) > MAX_MESSAGE_SIZE:
        raise MessageTooLargeError(
            f"payload of {len(payload)} bytes exceeds the limit of {MAX_MESSAGE_SIZE}"
        )
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedMessageError(f"not JSON: {err}") from None
    except RecursionError:
        raise MalformedMessageError(f"nested deeper than {MAX_DEPTH} levels") from None
    _check_depth(data)
    return from_dict(data, cls)


def _check_depth(data: Any) -> None:
    """Refuse containers nested deeper than :data:`MAX_DEPTH` (iterative walk)."""
    level: list[Any] = [data]
    depth = 0
    while level:
        depth += 1
        nested: list[Any] = []
        for value in level:
            if isinstance(value, dict):
                nested.extend(v for v in value.values() if isinstance(v, (dict, list)))
            elif isinstance(value, list):
                nested.extend(v for v in value if isinstance(v, (dict, list)))
        if nested and depth >= MAX_DEPTH:
            raise MalformedMessageError(f"nested deeper than {MAX_DEPTH} levels")
        level = nested


def decode_request(payload: bytes | str) -> Request:
    """Parse a request; a response kind is an :class:`UnknownKindError`."""
    msg = decode(payload)
    if msg.kind not in REQUEST_KINDS:
        raise UnknownKindError(f"{msg.kind!r} is not a request kind")
    return msg  # type: ignore[return-value]


def decode_response(payload: bytes | str) -> Response:
    """Parse a response; a request kind is an :class:`UnknownKindError`."""
    msg = decode(payload)
    if msg.kind not in RESPONSE_KINDS:
        raise UnknownKindError(f"{msg.kind!r} is not a response kind")
    return msg  # type: ignore[return-value]
