"""Clock snapshots, diffs and checksums (docs/rpc.md).

A :class:`Snapshot` is what the server last sent to a client: the ticks in the
client's index space, the queue tick and the machine tick. A deep diff lists
``(index, delta)`` for every tracked state whose tick changed; the client adds
the deltas and checks the 8-bit checksum (sum of tracked ticks + queue tick +
machine tick). Only deltas travel, so traffic does not depend on how large the
ticks are. Unlike the reference, tick deltas are not truncated to 16 / 8 bits
(msgpack sizes integers by value anyway).

Shallow clocks reduce every tick to 0 / 1 (active); the server and the client
compute the checksum over the same binary vector (a gap in the reference).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from .errors import RpcDriftError
from .wire import Update

__all__ = ["Snapshot", "apply_update", "checksum", "make_update", "shallow"]


def checksum(ticks_sum: int, queue_tick: int, machine_tick: int) -> int:
    """Low 8 bits of (sum of tracked ticks + queue tick + machine tick)."""
    return (ticks_sum + queue_tick + machine_tick) & 0xFF


def shallow(ticks: Sequence[int]) -> list[int]:
    """0 / 1 per state (1 = active)."""
    return [t & 1 for t in ticks]


@attrs.frozen
class Snapshot:
    """Ticks in the client's index space (untracked ones 0) and the two counters."""

    ticks: tuple[int, ...]
    queue_tick: int
    machine_tick: int

    def checksum(self, tracked: Sequence[int]) -> int:
        """The checksum of this snapshot over the ``tracked`` state indexes."""
        return checksum(sum(self.ticks[i] for i in tracked), self.queue_tick, self.machine_tick)


def make_update(prev: Snapshot | None, cur: Snapshot, tracked: Sequence[int]) -> Update:
    """The deep diff from ``prev`` to ``cur`` (``prev`` None: absolute non-zero ticks)."""
    indexes: list[int] = []
    deltas: list[int] = []
    if prev is None or len(prev.ticks) != len(cur.ticks):
        base: Sequence[int] = [0] * len(cur.ticks)
        if prev is not None:
            base = list(prev.ticks[: len(cur.ticks)]) + [0] * max(
                0, len(cur.ticks) - len(prev.ticks)
            )
        qt0, mt0 = (0, 0) if prev is None else (prev.queue_tick, prev.machine_tick)
    else:
        base = prev.ticks
        qt0, mt0 = prev.queue_tick, prev.machine_tick
    ticks = cur.ticks
    for i in tracked:
        d = ticks[i] - base[i]
        if d:
            indexes.append(i)
            deltas.append(d)
    return Update(
        indexes,
        deltas,
        cur.queue_tick - qt0,
        cur.machine_tick - mt0,
        cur.checksum(tracked),
    )


def apply_update(
    ticks: Sequence[int],
    queue_tick: int,
    machine_tick: int,
    update: Update,
    tracked: Sequence[int],
) -> tuple[list[int], int, int]:
    """Apply ``update``; :class:`RpcDriftError` when the result fails the checksum.

    Indexes outside ``ticks`` are ignored (a schema that grew, like the reference).
    """
    if len(update.indexes) != len(update.ticks):
        raise RpcDriftError("malformed update: indexes and ticks differ in length")
    out = list(ticks)
    n = len(out)
    for i, d in zip(update.indexes, update.ticks, strict=True):
        if 0 <= i < n:
            out[i] += d
    qt = queue_tick + update.queue_tick
    mt = machine_tick + update.machine_tick
    total = sum(out[i] for i in tracked if i < n)
    if checksum(total, qt, mt) != update.checksum or any(t < 0 for t in out):
        raise RpcDriftError(f"clock drift: checksum {checksum(total, qt, mt)} != {update.checksum}")
    return out, qt, mt
