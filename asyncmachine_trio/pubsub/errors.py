"""Errors of the pubsub layer."""

from __future__ import annotations

import asyncmachine_trio as am

__all__ = ["PubsubDecodeError", "PubsubError", "PubsubReadOnlyError"]


class PubsubError(am.AsyncMachineError):
    """Base class of the pubsub layer's errors."""


class PubsubDecodeError(PubsubError):
    """A received message is not a valid pubsub message (``peer`` sent it).

    The topic ignores the message and counts it (``topic.malformed[peer]``);
    it never stops the topic.
    """

    def __init__(self, msg: str, *, peer: str = "") -> None:
        super().__init__(f"{msg} (from peer {peer})" if peer else msg)
        #: the id of the peer that sent the message ("" when unknown)
        self.peer = peer


class PubsubReadOnlyError(PubsubError):
    """A mutation was called on a mirror of a machine of another peer."""

    def __init__(self, mach_id: str, remote_id: str, peer: str) -> None:
        super().__init__(
            f"{mach_id} is a read-only mirror of machine {remote_id!r} of peer {peer}:"
            " mutate it on that peer"
        )
        #: the peer exposing the machine
        self.peer = peer
        #: the machine's id on that peer
        self.remote_id = remote_id
