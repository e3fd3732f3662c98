"""Pubsub: machines shared between peers over a libp2p gossipsub topic (extra ``[pubsub]``).

Each peer runs a :class:`Topic`, exposes some of its machines and sees the
machines other peers expose as read-only :class:`Mirror` machines, updated as
their sources change. No server, no leader: see the manual page (Pubsub).

Needs py-libp2p (``pip install 'asyncmachine-trio[pubsub]'``; building it needs
a C compiler and libgmp). libp2p is imported when a topic starts, not here.
"""

from __future__ import annotations

from .errors import PubsubDecodeError, PubsubError, PubsubReadOnlyError
from .mirror import MIRROR_TAG, Mirror
from .states import TopicGroups, TopicStates
from .topic import LOOPBACK_TCP, Topic, TopicConfig, open_topic
from .wire import (
    ByeMsg,
    GossipMsg,
    InfoMsg,
    Limits,
    MachInfo,
    Message,
    ReqInfoMsg,
    ReqUpdatesMsg,
    SchemaCache,
    UpdatesMsg,
    decode,
    encode,
)

__all__ = [
    "LOOPBACK_TCP",
    "MIRROR_TAG",
    "ByeMsg",
    "GossipMsg",
    "InfoMsg",
    "Limits",
    "MachInfo",
    "Message",
    "Mirror",
    "PubsubDecodeError",
    "PubsubError",
    "PubsubReadOnlyError",
    "ReqInfoMsg",
    "ReqUpdatesMsg",
    "SchemaCache",
    "Topic",
    "TopicConfig",
    "TopicGroups",
    "TopicStates",
    "UpdatesMsg",
    "decode",
    "encode",
    "open_topic",
]
