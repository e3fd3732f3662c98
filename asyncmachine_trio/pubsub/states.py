"""The topic machine's schema: :class:`TopicStates` (a port of the reference's ``TopicSchema``).

Built from :mod:`asyncmachine_trio.states`: ``BasicStates`` (Start, Ready,
Heartbeat, Exception...), ``ConnectedStates`` (Connecting, Connected,
Disconnecting, Disconnected, ErrConnecting) and ``DisposedStates``.
"""

from __future__ import annotations

import asyncmachine_trio as am

from ..states.basic import BasicStates
from ..states.connected import ConnectedStates
from ..states.disposed import DisposedStates

__all__ = ["TopicGroups", "TopicStates"]

_EXC = (am.EXCEPTION,)
_JOINED = ("Joined",)


def _work() -> am.State:
    return am.State(require=_JOINED)


def _multi() -> am.State:
    return am.State(multi=True, require=_JOINED)


class TopicStates(BasicStates, ConnectedStates, DisposedStates):
    """States of a topic (one peer's membership of one gossipsub topic).

    Lifecycle: ``Start`` → ``Started`` (the libp2p host listens) →
    ``Connecting`` → ``Connected`` (a bootstrap peer answered, or there is none)
    → ``Joining`` → ``Joined`` (subscribed) → ``Ready`` (Auto; accepted once the
    topic has ``connections_to_ready`` peers).

    Work states (require ``Joined``): ``Heartbeat`` (periodic), ``SendInfo`` →
    ``DoSendInfo``, ``SendUpdates``, ``SendGossips``, ``ReqMissingPeers``,
    ``ReqMissingUpdates``.

    Multi states (require ``Joined``), one per event: ``PeerJoined``,
    ``PeerLeft``, ``ProcessMsgs`` (a batch of received messages), ``MsgInfo``,
    ``MsgUpdates``, ``MsgBye``, ``MsgReqInfo``, ``MsgReqUpdates``,
    ``MsgReceived`` (a message that is not one of ours), ``MissPeersByUpdates``,
    ``MissPeersByGossip``, ``MissUpdatesByGossip``, ``ListMachines``,
    ``SendMsg``.

    Errors: ``ErrJoining``, ``ErrListening`` (require ``Exception``).
    """

    ErrJoining: am.State = am.State(require=_EXC)
    ErrListening: am.State = am.State(require=_EXC)

    Start: am.State = am.State(add=("Started",))
    Started: am.State = am.State(require=(am.START,))
    Ready: am.State = am.State(auto=True, require=(am.START, "Joined"))
    Joining: am.State = am.State(require=("Connected",), remove=("Joined",))
    Joined: am.State = am.State(require=("Connected",), remove=("Joining",))

    Heartbeat: am.State = _work()
    SendGossips: am.State = _work()
    SendUpdates: am.State = _work()
    ReqMissingPeers: am.State = _work()
    ReqMissingUpdates: am.State = _work()
    DoSendInfo: am.State = _work()
    SendInfo: am.State = _work()

    PeerJoined: am.State = _multi()
    PeerLeft: am.State = _multi()
    MsgInfo: am.State = _multi()
    MsgBye: am.State = _multi()
    MsgUpdates: am.State = _multi()
    MsgReqInfo: am.State = _multi()
    MsgReqUpdates: am.State = _multi()
    MsgReceived: am.State = _multi()
    MissPeersByUpdates: am.State = _multi()
    MissPeersByGossip: am.State = _multi()
    MissUpdatesByGossip: am.State = _multi()
    ListMachines: am.State = _multi()
    SendMsg: am.State = _multi()
    ProcessMsgs: am.State = _multi()


class TopicGroups(am.StateGroups):
    """State groups of :class:`TopicStates`."""

    Connected: list[str] = ["Connecting", "Connected", "Disconnecting", "Disconnected"]
    Joined: list[str] = ["Joining", "Joined"]
