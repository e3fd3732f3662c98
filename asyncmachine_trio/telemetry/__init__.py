"""Telemetry: the observation model, the debugger protocol and the exporters.

``from asyncmachine_trio import telemetry`` loads only the records (attrs);
the submodules load on first use and need their extras:

* :mod:`~asyncmachine_trio.telemetry.protocol` / ``receiver`` - protocol v2
  codec and the receiving side (extra ``dbg``);
* :mod:`~asyncmachine_trio.telemetry.dbg` - the debugger exporter (``dbg``);
* :mod:`~asyncmachine_trio.telemetry.otel` - OpenTelemetry traces and logs (``otel``);
* :mod:`~asyncmachine_trio.telemetry.prometheus` - Prometheus metrics (``prometheus``);
* :mod:`~asyncmachine_trio.telemetry.env` - the ``AM_*`` environment opt-in.

See ``docs/telemetry.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import ClientLimitError as ClientLimitError
from .errors import ProtocolError as ProtocolError
from .errors import TelemetryError as TelemetryError
from .errors import VersionError as VersionError
from .model import MUTATION_TYPES as MUTATION_TYPES
from .model import STEP_FLAGS as STEP_FLAGS
from .model import SchemaRecord as SchemaRecord
from .model import StateRecord as StateRecord
from .model import StepRecord as StepRecord
from .model import TxRecord as TxRecord
from .model import schema_record as schema_record
from .model import tx_record as tx_record

__all__ = [
    "MUTATION_TYPES",
    "STEP_FLAGS",
    "ClientLimitError",
    "ProtocolError",
    "SchemaRecord",
    "StateRecord",
    "StepRecord",
    "TelemetryError",
    "TxRecord",
    "VersionError",
    "schema_record",
    "tx_record",
]

_SUBMODULES = ("dbg", "env", "logs", "otel", "prometheus", "protocol", "receiver")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
