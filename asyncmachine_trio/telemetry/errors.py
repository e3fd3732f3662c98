"""Errors of the telemetry layer."""

from __future__ import annotations

from ..machine.errors import AsyncMachineError

__all__ = ["ClientLimitError", "ProtocolError", "TelemetryError", "VersionError"]


class TelemetryError(AsyncMachineError):
    """Base of the telemetry errors (bad configuration, bad addresses)."""


class ProtocolError(TelemetryError):
    """A malformed, oversized or out-of-order frame of the debugger protocol."""


class VersionError(ProtocolError):
    """The peer speaks another protocol version (or another protocol)."""


class ClientLimitError(ProtocolError):
    """A receiver refused a client: it serves its ``max_clients`` already."""
