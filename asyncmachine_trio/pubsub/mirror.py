"""Mirrors: read-only machines following machines exposed by other peers.

A :class:`Mirror` *is* an :class:`am.Machine`: checking (``is1``, ``tick``,
``clock``, ``time``, ``string``...), ``when*`` waiters, state contexts and final
handlers (``foo_state``, ``foo_end``) work as on a local machine and follow the
clocks received from the topic. Every mutation raises
:class:`~asyncmachine_trio.pubsub.PubsubReadOnlyError` naming the peer.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import trio

import asyncmachine_trio as am

from ..machine.mirror import mirror_schema, mirror_update
from ..machine.names import StateNames
from .errors import PubsubReadOnlyError
from .wire import MachInfo

__all__ = ["MIRROR_TAG", "Mirror"]

#: the tag of every mirror
MIRROR_TAG = "pubsub-worker"


class Mirror(am.Machine):
    """A read-only mirror of machine ``index`` of peer ``peer_id`` (see the module doc).

    Made by the topic from an ``info`` message; id ``ps-<remote id>-<suffix>``,
    tags ``pubsub-worker``, ``src-id:<remote id>``, ``peer:<peer id>`` and the
    remote machine's own tags; the parent id is the remote machine's parent id.
    """

    def __init__(self, peer_id: str, index: int, info: MachInfo) -> None:
        super().__init__(
            dict(info.schema),
            id=f"ps-{info.id}-{secrets.token_hex(3)}",
            parent=info.parent or None,
            tags=[MIRROR_TAG, f"src-id:{info.id}", f"peer:{peer_id}", *info.tags],
        )
        if list(info.states) != list(self._names):
            mirror_schema(self, dict(info.schema), info.states)
        #: the id of the peer exposing the machine
        self.peer_id = peer_id
        #: the machine's position in that peer's exposed list
        self.mach_index = index
        #: the machine's id on that peer
        self.remote_id = info.id
        #: the machine's tags on that peer
        self.remote_tags = list(info.tags)
        #: the id of the machine's parent on that peer ("" for none)
        self.remote_parent = info.parent
        self._left = trio.Event()

    @property
    def time_sum(self) -> int:
        """The sum of all ticks: grows with every change of the source."""
        return sum(self._ticks)

    @property
    def peer_left(self) -> bool:
        """True once the peer said ``bye`` (the clock will not change any more)."""
        return self._left.is_set()

    async def wait_peer_left(self) -> None:
        """Wait until the peer says ``bye``."""
        await self._left.wait()

    # ----- updates from the topic (internal)

    def _apply_clock(self, ticks: Sequence[int]) -> bool:
        """Install ``ticks`` if their sum is higher than ours (monotonic); True if it was."""
        if self._disposing or len(ticks) != len(self._names):
            return False
        if sum(ticks) <= sum(self._ticks):
            return False
        mirror_update(self, ticks, self._queue_tick, self._machine_tick + 1)
        return True

    def _mark_left(self) -> None:
        self._left.set()
        if "peer-left" not in self._tags:
            self._tags = [*self._tags, "peer-left"]

    # ----- mutations: refused

    def _refuse(self) -> PubsubReadOnlyError:
        return PubsubReadOnlyError(self._id, self.remote_id, self.peer_id)

    def add(
        self,
        states: StateNames,
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> am.Result:
        """Raises :class:`PubsubReadOnlyError`: a mirror is read-only."""
        raise self._refuse()

    def add1(
        self, state: str, args: Mapping[str, Any] | None = None, *, event: am.Event | None = None
    ) -> am.Result:
        """Raises :class:`PubsubReadOnlyError`: a mirror is read-only."""
        raise self._refuse()

    def remove(
        self,
        states: StateNames,
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> am.Result:
        """Raises :class:`PubsubReadOnlyError`: a mirror is read-only."""
        raise self._refuse()

    def remove1(
        self, state: str, args: Mapping[str, Any] | None = None, *, event: am.Event | None = None
    ) -> am.Result:
        """Raises :class:`PubsubReadOnlyError`: a mirror is read-only."""
        raise self._refuse()

    def set(
        self,
        states: StateNames,
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> am.Result:
        """Raises :class:`PubsubReadOnlyError`: a mirror is read-only."""
        raise self._refuse()

    def toggle(
        self,
        states: StateNames,
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> am.Result:
        """Raises :class:`PubsubReadOnlyError`: a mirror is read-only."""
        raise self._refuse()

    def toggle1(
        self, state: str, args: Mapping[str, Any] | None = None, *, event: am.Event | None = None
    ) -> am.Result:
        """Raises :class:`PubsubReadOnlyError`: a mirror is read-only."""
        raise self._refuse()

    def add_err_state(
        self,
        state: str,
        err: Exception,
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> am.Result:
        """Raises :class:`PubsubReadOnlyError`: a mirror is read-only."""
        raise self._refuse()

    def can_add(self, states: StateNames, args: Mapping[str, Any] | None = None) -> am.Result:
        """Raises :class:`PubsubReadOnlyError`: a mirror is read-only."""
        raise self._refuse()

    def can_remove(self, states: StateNames, args: Mapping[str, Any] | None = None) -> am.Result:
        """Raises :class:`PubsubReadOnlyError`: a mirror is read-only."""
        raise self._refuse()

    def __repr__(self) -> str:
        return f"<Mirror {self._id} of {self.remote_id} on {self.peer_id}>"
