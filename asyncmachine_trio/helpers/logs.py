"""Typed args in log lines (help.go ArgsToLogMap, LogArgs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

#: Default value length of :func:`args_to_log_map` (Go ``am.LogArgsMaxLen``).
LOG_ARGS_MAX_LEN = 20


def _truncate(text: str, max_len: int) -> str:
    if len(text) <= max_len:
        return text
    return text[:max_len] if max_len < 5 else text[: max_len - 3] + "..."


def args_to_log_map(args: object, max_len: int = 0) -> dict[str, str]:
    """Fields of an attrs instance tagged ``metadata={"log": "name"}``, as text.

    help.go ``ArgsToLogMap``: zero values (``""``, 0, False, None, empty
    lists) are skipped; lists show at most ``max_len // 2`` quoted items and a
    ``... (N more)`` note (the reference shows one item too many and a wrong
    count); other values are truncated to ``max_len`` (0: 20).
    """
    if max_len == 0:
        max_len = max(4, LOG_ARGS_MAX_LEN)
    out: dict[str, str] = {}
    cls = type(args)
    if not attrs.has(cls):
        return out
    for field in attrs.fields(cls):
        key = field.metadata.get("log")
        if not key:
            continue
        value = getattr(args, field.name)
        if value is None or value is False or (isinstance(value, int | float) and value == 0):
            continue
        if isinstance(value, list | tuple | set | frozenset):
            if value and all(isinstance(v, bool | int | float) for v in value):
                out[key] = " ".join(
                    str(v).lower() if isinstance(v, bool) else str(v) for v in value
                )
                continue
            items = [str(v) for v in value if v is not None and str(v) != ""]
            if not items:
                continue
            half = max(1, max_len // 2)
            text = ", ".join(f'"{_truncate(s, half)}"' for s in items[:half])
            if len(items) > half:
                text += f" ... ({len(items) - half} more)"
            out[key] = text.replace("\n", " ")
            continue
        text = "true" if value is True else str(value)
        if text == "":
            continue
        out[key] = _truncate(text.replace("\n", " "), max_len)
    return out


def log_args(args: Mapping[str, Any], max_len: int = 0) -> dict[str, str]:
    """:func:`args_to_log_map` of every typed value in a mutation's args, merged."""
    out: dict[str, str] = {}
    for value in args.values():
        out.update(args_to_log_map(value, max_len))
    return out
