"""Log levels, the args mapper and log-line formatting helpers (semantics §11.1)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "LOG_ARGS",
    "L_CHANGES",
    "L_DECISIONS",
    "L_EVERYTHING",
    "L_EXTERNAL",
    "L_NOTHING",
    "L_OPS",
    "STRUCTLOG",
    "LogLevel",
    "LoggerFn",
    "format_log_args",
    "log_args_mapper",
]


class LogLevel(enum.IntEnum):
    """How much a machine logs; a line is emitted iff its level <= the machine's."""

    NOTHING = 0
    EXTERNAL = 1
    CHANGES = 2
    OPS = 3
    DECISIONS = 4
    EVERYTHING = 5

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: object) -> LogLevel:
        """A level from an int, a numeric string or a level name (``AM_LOG``)."""
        if isinstance(value, LogLevel):
            return value
        if isinstance(value, int):
            return cls(max(0, min(5, value)))
        text = str(value).strip().lower()
        if text.isdigit():
            return cls(max(0, min(5, int(text))))
        try:
            return cls[text.upper()]
        except KeyError:
            return cls.NOTHING


# The members as plain module constants, for the hot paths: on CPython 3.11
# ``LogLevel.OPS`` costs ~100-150 ns per access (EnumType defines __getattr__,
# which slows every class attribute lookup), ``L_OPS`` ~20 ns.
L_NOTHING = LogLevel.NOTHING
L_EXTERNAL = LogLevel.EXTERNAL
L_CHANGES = LogLevel.CHANGES
L_OPS = LogLevel.OPS
L_DECISIONS = LogLevel.DECISIONS
L_EVERYTHING = LogLevel.EVERYTHING

LoggerFn = Callable[[LogLevel, str], Any]

# the reference's default list of arg names shown in log lines (Go LogArgs)
LOG_ARGS: tuple[str, ...] = ("name", "id", "port", "addr", "err", "path", "url", "uri")


def log_args_mapper(
    max_len: int = 20, names: Sequence[str] = LOG_ARGS
) -> Callable[[Mapping[str, Any]], dict[str, str]]:
    """Pick ``names`` from mutation args as text, truncated to ``max_len``.

    Longer values keep ``max_len - 3`` chars plus ``...``; below 5 they are cut
    hard (semantics §11.1, Go NewLogArgsMapper).
    """
    wanted = tuple(names)

    def mapper(args: Mapping[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in wanted:
            if name not in args:
                continue
            text = str(args[name])
            if len(text) > max_len:
                text = text[:max_len] if max_len < 5 else text[: max_len - 3] + "..."
            out[name] = text
        return out

    return mapper


def format_log_args(mapped: Mapping[str, str]) -> str:
    """`` (k1=v1 k2=v2)`` sorted by key, or ``""`` when empty."""
    if not mapped:
        return ""
    return " (" + " ".join(f"{k}={mapped[k]}" for k in sorted(mapped)) + ")"


class _LazyStructlog:
    """The package's structlog logger, imported at the first line logged to it.

    Importing structlog costs tens of milliseconds (its dev renderer loads rich
    when installed); machines that log nowhere, or to their own logger, never pay it.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        import structlog

        return getattr(structlog.get_logger("asyncmachine_trio"), name)


#: ``STRUCTLOG.info(...)`` etc.: structlog's ``get_logger("asyncmachine_trio")``, lazily
STRUCTLOG: Any = _LazyStructlog()


def report_warning(fmt: str, *args: object) -> None:
    """Log a report that must not depend on a machine's log level, to the stdlib logger
    ``asyncmachine_trio`` (silenced or redirected with the usual logging configuration).

    :mod:`logging` is imported on first use: it keeps ``import asyncmachine_trio`` cheap.
    """
    import logging

    logging.getLogger("asyncmachine_trio").warning(fmt, *args)
