"""The Connected schema mixin: one connection in four mutually exclusive statuses.

Port of the reference's ``pkg/states/ss_connected.go`` (docs/states.md).
The host schema must have ``Start`` (inherit :class:`~.basic.BasicStates`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncmachine_trio as am

__all__ = ["ConnectedGroups", "ConnectedStates", "ConnectingError", "add_err_connecting"]

# the group "Connected": every status state removes all of them (itself excluded
# by the schema sanitizer), so exactly one status is active at a time
_STATUSES = ("Connecting", "Connected", "Disconnecting", "Disconnected")


class ConnectedStates(am.States):
    """Connection status; needs ``Start`` in the host schema.

    ``Connecting`` and ``Connected`` require Start; ``Disconnected`` is Auto, so
    a machine settles in it. ``ErrConnecting`` is a detailed connection error
    (requires ``Exception``; add it with :func:`add_err_connecting`).
    """

    ErrConnecting: am.State = am.State(require=(am.EXCEPTION,))

    Connecting: am.State = am.State(require=(am.START,), remove=_STATUSES)
    Connected: am.State = am.State(require=(am.START,), remove=_STATUSES)
    Disconnecting: am.State = am.State(remove=_STATUSES)
    Disconnected: am.State = am.State(auto=True, remove=_STATUSES)


class ConnectedGroups(am.StateGroups):
    """State groups of :class:`ConnectedStates`."""

    Connected: list[str] = list(_STATUSES)


class ConnectingError(am.AsyncMachineError):
    """Sentinel for connection errors (Go ``ErrConnecting``); the cause is chained."""


def add_err_connecting(
    mach: am.Machine,
    err: Exception,
    args: Mapping[str, Any] | None = None,
    *,
    event: am.Event | None = None,
) -> am.Result:
    """Wrap ``err`` in :class:`ConnectingError` and add ``ErrConnecting`` (+ Exception).

    The wrapper's ``__cause__`` is ``err``; ``mach.err`` is the wrapper.
    """
    wrapped = ConnectingError(f"error connecting: {err}")
    wrapped.__cause__ = err
    return mach.add_err_state(ConnectedStates.ErrConnecting, wrapped, args, event=event)
