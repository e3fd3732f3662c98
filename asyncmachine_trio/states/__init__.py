"""Reusable state schemas (mixins) and pipes between machines.

Port of the reference's ``pkg/states`` (docs/states.md):

- :class:`BasicStates`: Exception, ErrNetwork, ErrHandlerTimeout, Start, Ready,
  Healthcheck, Heartbeat;
- :class:`ConnectedStates` / :class:`ConnectedGroups`: one connection's status;
- :class:`ConnPoolStates` / :class:`ConnPoolGroups`: a pool of connections;
- :class:`DisposedStates` + :class:`DisposedHandlers`: disposal as states;
- :mod:`asyncmachine_trio.states.pipes`: pipe states from machine to machine.

Compose by inheritance (``class MyStates(BasicStates, ConnectedStates)``,
parents' states first) and inject relations into an inherited state with
:func:`state_add` / :func:`state_set`::

    class ClientStates(BasicStates, ConnectedStates):
        Connected = state_add(ConnectedStates, "Connected", am.State(add=("Handshaking",)))
        Handshaking = am.State(require=("Connected",))

Plain dict schemas combine with ``am.schema_merge`` (later wins per state).
"""

from __future__ import annotations

from typing import Any

import asyncmachine_trio as am

from . import pipes as pipes
from .basic import BasicStates as BasicStates
from .conn_pool import ConnPoolGroups as ConnPoolGroups
from .conn_pool import ConnPoolStates as ConnPoolStates
from .connected import ConnectedGroups as ConnectedGroups
from .connected import ConnectedStates as ConnectedStates
from .connected import ConnectingError as ConnectingError
from .connected import add_err_connecting as add_err_connecting
from .disposed import DISPOSED_ARG_HANDLER as DISPOSED_ARG_HANDLER
from .disposed import DisposalFn as DisposalFn
from .disposed import DisposedHandlers as DisposedHandlers
from .disposed import DisposedStates as DisposedStates

__all__ = [
    "DISPOSED_ARG_HANDLER",
    "BasicStates",
    "ConnPoolGroups",
    "ConnPoolStates",
    "ConnectedGroups",
    "ConnectedStates",
    "ConnectingError",
    "DisposalFn",
    "DisposedHandlers",
    "DisposedStates",
    "add_err_connecting",
    "pipes",
    "state_add",
    "state_set",
]


def _inherited(schema: Any, name: str) -> am.State:
    states = am.schema_merge(schema)
    try:
        return states[name]
    except KeyError:
        raise am.StateUnknownError(f"state {name} is not in the schema") from None


def state_add(schema: Any, name: str, overlay: am.State) -> am.State:
    """``name``'s definition in ``schema`` (a States class or a mapping) with
    ``overlay``'s relations appended and its Auto / Multi turned on (Go ``StateAdd``)."""
    return _inherited(schema, name).extend(overlay)


def state_set(
    schema: Any,
    name: str,
    overlay: am.State,
    *,
    auto: bool | None = None,
    multi: bool | None = None,
) -> am.State:
    """``name``'s definition in ``schema`` with the relations ``overlay`` gives
    replaced (Go ``StateSet``); Auto / Multi kept unless passed."""
    base = _inherited(schema, name)
    return base.set(
        overlay,
        auto=base.auto if auto is None else auto,
        multi=base.multi if multi is None else multi,
    )
