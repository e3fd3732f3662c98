"""State schemas of the aRPC machines (upper-layers.md 1.20), as typed ``am.States``.

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

    ErrOnClient = am.State(require=_EXC)


class SharedStates(BasicStates, StateSourceStates):
    """States of both ends: the network errors and the handshake."""

    ErrNetwork = am.State(require=_EXC)
    ErrNetworkTimeout = am.State(require=_EXC)
    ErrRpc = am.State(require=_EXC)
    ErrDelivery = am.State(require=_EXC)
    Handshaking = am.State(require=(am.START,), remove=_HANDSHAKE)
    HandshakeDone = am.State(require=(am.START,), remove=_HANDSHAKE)


class SharedGroups(am.StateGroups):
    Handshake = list(_HANDSHAKE)


class ServerStates(SharedStates):
    """The server machine: Start → RpcStarting → RpcAccepting → RpcReady →
    ClientConnected → Handshaking → HandshakeDone → Ready (auto)."""

    ErrNetwork = am.State(require=_EXC, remove=("ClientConnected",))
    HandshakeDone = am.State(
        require=(am.START, "ClientConnected"), remove=(*_HANDSHAKE, am.EXCEPTION)
    )
    Start = am.State(add=("RpcStarting",))
    Ready = am.State(auto=True, require=("HandshakeDone", "RpcReady"))
    RpcStarting = am.State(require=(am.START,), remove=_RPC)
    RpcAccepting = am.State(require=(am.START,), remove=_RPC)
    RpcReady = am.State(require=(am.START,), remove=_RPC)
    ClientConnected = am.State(require=("RpcReady",))
    MetricSync = am.State(multi=True)
    WebSocketTunnel = am.State()


class ServerGroups(SharedGroups):
    Rpc = list(_RPC)


class ClientStates(SharedStates, ConnectedStates):
    """The client machine (connection statuses, handshake, retries, payloads)."""

    ErrNetwork = am.State(require=_EXC, remove=("Connecting",))
    Start = am.State(add=("Connecting",), remove=("ConnRetryFailed",))
    Ready = am.State(auto=True, require=("HandshakeDone",))
    Connected = am.State(require=(am.START,), remove=(*_CONN, "RetryingConn"), add=("Handshaking",))
    Handshaking = am.State(require=(am.START, "Connected"), remove=_HANDSHAKE)
    HandshakeDone = am.State(require=(am.START, "Connected"), remove=_HANDSHAKE)
    RetryingCall = am.State(require=(am.START,))
    CallRetryFailed = am.State(remove=("RetryingCall",), add=("ErrNetwork", am.EXCEPTION))
    RetryingConn = am.State(require=(am.START,))
    ConnRetryFailed = am.State(remove=(am.START,))
    ServerDelivering = am.State(multi=True, require=("Connected",))
    ServerPayload = am.State(multi=True, require=("Connected",))
    MetricSync = am.State(multi=True)


class ClientGroups(SharedGroups):
    Connected = list(_CONN)


class MuxStates(BasicStates):
    """The mux machine: one server per accepted connection."""

    Exception = am.State(multi=True, remove=(am.READY,))
    Ready = am.State(require=(am.START,))
    ClientConnected = am.State(multi=True, require=(am.START,))
    HasClients = am.State(require=(am.START,))
    NewServerErr = am.State()


class ConsumerStates(am.States):
    """A machine receiving payloads: handle ``server_payload_state`` (Multi)."""

    ServerPayload = am.State(multi=True)
