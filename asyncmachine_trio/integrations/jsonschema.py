"""JSON Schemas (draft 2020-12) of the messages, generated from the attrs classes.

``python -m asyncmachine_trio.integrations.jsonschema [DIR]`` writes one file per
message (``mutation_req.json``...); the package ships them in ``schemas/``.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Union

import attrs

import asyncmachine_trio as am

from .messages import MESSAGE_TYPES, ErrorInfo

__all__ = ["SCHEMA_DIR", "file_name", "load_schema", "message_schema", "write_schemas"]

SCHEMA_DIR = Path(__file__).with_name("schemas")
"""Where the package keeps the generated schemas."""

_ID_BASE = "urn:asyncmachine-trio:integrations:"
_DRAFT = "https://json-schema.org/draft/2020-12/schema"

_SERIALIZED = {
    "type": "object",
    "description": "An importable export of a machine.",
    "properties": {
        "id": {"type": "string"},
        "state_names": {"type": "array", "items": {"type": "string"}},
        "time": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "queue_tick": {"type": "integer", "minimum": 0},
        "machine_tick": {"type": "integer", "minimum": 0},
    },
    "required": ["id", "state_names", "time", "queue_tick", "machine_tick"],
    "additionalProperties": False,
}


def file_name(cls: type[Any]) -> str:
    """``mutation_req.json`` for ``MutationReq``: the reference's file names."""
    kind: str = cls.KIND.value
    return kind.removeprefix("am_").split("_", 1)[1] + "_" + kind.split("_")[1] + ".json"


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_schema(inner[0], defs)
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer", "minimum": 0}
    if origin is list:
        return {"type": "array", "items": _type_schema(typing.get_args(tp)[0], defs)}
    if origin is dict:
        value = typing.get_args(tp)[1]
        if value is Any:
            return {"type": "object"}
        return {"type": "object", "additionalProperties": _type_schema(value, defs)}
    if tp is am.Serialized:
        defs["Serialized"] = _SERIALIZED
        return {"$ref": "#/$defs/Serialized"}
    if tp is ErrorInfo:
        defs["ErrorInfo"] = _object_schema(ErrorInfo, defs)
        return {"$ref": "#/$defs/ErrorInfo"}
    raise TypeError(f"no JSON Schema mapping for {tp!r}")


def _object_schema(cls: type[Any], defs: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in attrs.fields(cls):
        if f.name == "kind":
            prop: dict[str, Any] = {"type": "string", "const": cls.KIND.value}
        else:
            prop = _type_schema(hints[f.name], defs)
        if f.metadata.get("doc"):
            prop = {**prop, "description": f.metadata["doc"]}
        props[f.name] = prop
        if f.name == "kind" or f.metadata.get("always") or f.default is attrs.NOTHING:
            required.append(f.name)
    out: dict[str, Any] = {
        "type": "object",
        "description": (cls.__doc__ or "").strip().splitlines()[0],
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    return out


def message_schema(cls: type[Any]) -> dict[str, Any]:
    """The JSON Schema of one message class."""
    defs: dict[str, Any] = {}
    body = _object_schema(cls, defs)
    kind = cls.KIND.value
    if kind == "am_req_mutation":
        # exactly one of add / remove
        body["oneOf"] = [{"required": ["add"]}, {"required": ["remove"]}]
    elif kind == "am_req_waiting":
        body["anyOf"] = [{"required": ["states"]}, {"required": ["states_not"]}]
    out: dict[str, Any] = {"$schema": _DRAFT, "$id": _ID_BASE + file_name(cls), **body}
    if defs:
        out["$defs"] = dict(sorted(defs.items()))
    return out


def render(cls: type[Any]) -> str:
    """The schema file's text (stable: sorted defs, two-space indent, final newline)."""
    return json.dumps(message_schema(cls), indent=2) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every message's schema into ``directory``; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for cls in MESSAGE_TYPES.values():
        path = directory / file_name(cls)
        path.write_text(render(cls))
        paths.append(path)
    return paths


def load_schema(kind: str) -> dict[str, Any]:
    """The shipped schema of a message kind (e.g. ``"am_req_mutation"``)."""
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / file_name(MESSAGE_TYPES[kind])).read_text())
    return loaded


def _main() -> None:
    for path in write_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(path)


if __name__ == "__main__":  # pragma: no cover - a developer tool
    _main()
