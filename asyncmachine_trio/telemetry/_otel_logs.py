"""A machine's log lines as OpenTelemetry log records (``AM_OTEL_LOG``)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import _logs as otel_logs
from opentelemetry._logs import SeverityNumber

from ..machine.logging import LogLevel

if TYPE_CHECKING:
    from ..machine.machine import Machine

__all__ = ["SEVERITY", "bind_env_logger", "bind_logger"]

#: machine log level → OTel severity (the reference's mapping)
SEVERITY: dict[LogLevel, SeverityNumber] = {
    LogLevel.EXTERNAL: SeverityNumber.INFO4,
    LogLevel.CHANGES: SeverityNumber.INFO3,
    LogLevel.OPS: SeverityNumber.INFO,
    LogLevel.DECISIONS: SeverityNumber.TRACE4,
    LogLevel.EVERYTHING: SeverityNumber.TRACE,
}


def bind_logger(mach: Machine, logger_provider: Any = None, service: str = "") -> None:
    """Also emit every log line of ``mach`` as an OTel log record.

    ``logger_provider`` defaults to the global one; lines starting with
    ``[error`` get the ERROR severity. The machine's previous logger (or the
    default structlog output) keeps receiving the lines.
    """
    provider = logger_provider or otel_logs.get_logger_provider()
    logger = provider.get_logger("asyncmachine_trio")
    previous = mach.logger
    mid = mach.id
    attrs = {"asyncmachine.id": mid, "service.name": service or os.environ.get("AM_SERVICE", "")}
    prefix = f"[{mid[:5]}] "

    def log(level: LogLevel, line: str) -> None:
        text = line[len(prefix) :] if line.startswith(prefix) else line
        sev = SeverityNumber.ERROR if text.startswith("[error") else SEVERITY.get(level)
        logger.emit(
            timestamp=time.time_ns(),
            severity_number=sev,
            severity_text=str(level),
            body=text,
            attributes=attrs,
        )
        if previous is not None:
            previous(level, line)
        else:
            _structlog_line(level, line, mid)

    mach.set_logger(log)


def _structlog_line(level: LogLevel, line: str, mid: str) -> None:
    import structlog

    structlog.get_logger().info(line, machine=mid, level=str(level))


def bind_env_logger(mach: Machine) -> None:
    """``AM_OTEL_LOG``: bind with the global logger provider (once per machine)."""
    if getattr(mach, "_otel_log_bound", False):
        return
    mach._otel_log_bound = True  # type: ignore[attr-defined]
    bind_logger(mach)
