"""The ConnPool schema mixin: statuses aggregating a pool of connections.

Port of ``ConnPoolStatesDef`` in the reference's ``pkg/states/ss_connected.go``
(docs/states.md). The host schema must have ``Start``.
"""

from __future__ import annotations

import asyncmachine_trio as am

__all__ = ["ConnPoolGroups", "ConnPoolStates"]


class ConnPoolStates(am.States):
    """Statuses of many connections at once; needs ``Start`` in the host schema.

    ``Connected`` means at least one connection, ``ConnectedFully`` all of them.
    Unlike :class:`~.connected.ConnectedStates`, ``Connecting`` and ``Connected``
    may be active together (some connections are still being made).
    """

    ErrConnecting: am.State = am.State(require=(am.EXCEPTION,))

    Disconnected: am.State = am.State(remove=("Connecting", "ConnectedFully", "Disconnecting"))
    Connecting: am.State = am.State(require=(am.START,), remove=("Disconnecting",))
    Connected: am.State = am.State(require=(am.START,), remove=("Disconnected",))
    ConnectedFully: am.State = am.State(require=("Connected",), remove=("Disconnected",))
    Disconnecting: am.State = am.State(remove=("ConnectedFully", "Connected", "Connecting"))


class ConnPoolGroups(am.StateGroups):
    """State groups of :class:`ConnPoolStates`."""

    Connected: list[str] = [ConnPoolStates.Connected, ConnPoolStates.Disconnected]
