"""State schemas of the aRPC machines (docs/rpc.md), as typed ``am.States``.

Built from :mod:`asyncmachine_trio.states`: ``BasicStates`` (Start, Ready,
Exception, ErrNetwork...) and ``ConnectedStates`` (the four connection statuses).
Every schema exposed through a server should include :class:`StateSourceStates`
(``ErrOnClient``: errors added through a network machine).
"""

from __future__ import annotations

import asyncmachine_trio as am

from ..states.basic import BasicStates
from ..states.connected import ConnectedStates

__all__ = [
    "ClientGroups",
    "ClientStates",
    "ConsumerStates",
    "MuxStates",
    "ServerGroups",
    "ServerStates",
    "SharedGroups",
    "SharedStates",
    "StateSourceStates",
]

_EXC = (am.EXCEPTION,)
_HANDSHAKE = ("Handshaking", "HandshakeDone")
_RPC = ("RpcStarting", "RpcAccepting", "RpcReady")
_CONN = ("Connecting", "Connected", "Disconnecting", "Disconnected")


class StateSourceStates(am.States):
    """Merge into any machine exposed through a server: ``ErrOnClient`` (requires Exception)."""

    ErrOnClient: am.State = am.State(require=_EXC)


class SharedStates(BasicStates, StateSourceStates):
    """States of both ends: the network errors and the handshake."""

    ErrNetwork: am.State = am.State(require=_EXC)
    ErrNetworkTimeout: am.State = am.State(require=_EXC)
    ErrRpc: am.State = am.State(require=_EXC)
    ErrDelivery: am.State = am.State(require=_EXC)
    Handshaking: am.State = am.State(require=(am.START,), remove=_HANDSHAKE)
    HandshakeDone: am.State = am.State(require=(am.START,), remove=_HANDSHAKE)


class SharedGroups(am.StateGroups):
    Handshake: list[str] = list(_HANDSHAKE)


class ServerStates(SharedStates):
    """The server machine: Start → RpcStarting → RpcAccepting → RpcReady →
    ClientConnected → Handshaking → HandshakeDone → Ready (auto)."""

    ErrNetwork: am.State = am.State(require=_EXC, remove=("ClientConnected",))
    HandshakeDone: am.State = am.State(
        require=(am.START, "ClientConnected"), remove=(*_HANDSHAKE, am.EXCEPTION)
    )
    Start: am.State = am.State(add=("RpcStarting",))
    Ready: am.State = am.State(auto=True, require=("HandshakeDone", "RpcReady"))
    RpcStarting: am.State = am.State(require=(am.START,), remove=_RPC)
    RpcAccepting: am.State = am.State(require=(am.START,), remove=_RPC)
    RpcReady: am.State = am.State(require=(am.START,), remove=_RPC)
    ClientConnected: am.State = am.State(require=("RpcReady",))
    MetricSync: am.State = am.State(multi=True)
    WebSocketTunnel: am.State = am.State()


class ServerGroups(SharedGroups):
    Rpc: list[str] = list(_RPC)


class ClientStates(SharedStates, ConnectedStates):
    """The client machine (connection statuses, handshake, retries, payloads)."""

    ErrNetwork: am.State = am.State(require=_EXC, remove=("Connecting",))
    Start: am.State = am.State(add=("Connecting",), remove=("ConnRetryFailed",))
    Ready: am.State = am.State(auto=True, require=("HandshakeDone",))
    Connected: am.State = am.State(
        require=(am.START,), remove=(*_CONN, "RetryingConn"), add=("Handshaking",)
    )
    Handshaking: am.State = am.State(require=(am.START, "Connected"), remove=_HANDSHAKE)
    HandshakeDone: am.State = am.State(require=(am.START, "Connected"), remove=_HANDSHAKE)
    RetryingCall: am.State = am.State(require=(am.START,))
    CallRetryFailed: am.State = am.State(remove=("RetryingCall",), add=("ErrNetwork", am.EXCEPTION))
    RetryingConn: am.State = am.State(require=(am.START,))
    ConnRetryFailed: am.State = am.State(remove=(am.START,))
    ServerDelivering: am.State = am.State(multi=True, require=("Connected",))
    ServerPayload: am.State = am.State(multi=True, require=("Connected",))
    MetricSync: am.State = am.State(multi=True)


class ClientGroups(SharedGroups):
    Connected: list[str] = list(_CONN)


class MuxStates(BasicStates):
    """The mux machine: one server per accepted connection."""

    Exception: am.State = am.State(multi=True, remove=(am.READY,))
    Ready: am.State = am.State(require=(am.START,))
    ClientConnected: am.State = am.State(multi=True, require=(am.START,))
    HasClients: am.State = am.State(require=(am.START,))
    NewServerErr: am.State = am.State()


class ConsumerStates(am.States):
    """A machine receiving payloads: handle ``server_payload_state`` (Multi)."""

    ServerPayload: am.State = am.State(multi=True)
