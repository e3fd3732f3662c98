"""The in-process backend: a bounded deque of records, queried in plain Python."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Final, cast

from .. import Machine
from .base import ErrorHandler, History
from .errors import ConfigError
from .records import (
    SCALAR_FIELDS,
    TIME_INDEX,
    Config,
    MachineRecord,
    MemoryRecord,
    Query,
    RawTime,
    RawTx,
    to_us,
)

__all__ = ["MemoryHistory", "compile_query"]


_H_TIME: Final = 7
_TICKS: Final = 8
_DIFFS: Final = 9
assert (TIME_INDEX["h_time"], TIME_INDEX["m_time_tracked"], TIME_INDEX["m_time_tracked_diff"]) == (
    _H_TIME,
    _TICKS,
    _DIFFS,
)


def compile_query(query: Query, pos: Mapping[str, int]) -> Callable[[RawTime], bool]:
    """A predicate on raw time records for one validated query; ``pos`` maps
    tracked states to positions.

    The same rules as the SQL backend's flags: active = odd tick; activated =
    odd tick and a positive diff; deactivated = odd before, even after.
    """
    active = [pos[s] for s in query.active]
    inactive = [pos[s] for s in query.inactive]
    activated = [pos[s] for s in query.activated]
    deactivated = [pos[s] for s in query.deactivated]
    mt_lo = [(pos[s], v) for s, v in query.start.mtime.items()]
    mt_hi = [(pos[s], v) for s, v in query.end.mtime.items()]
    h_lo = None if query.start.h_time is None else to_us(query.start.h_time)
    h_hi = None if query.end.h_time is None else to_us(query.end.h_time)
    ranges: list[tuple[int, int | None, int | None]] = []
    for cond_field, rec_field in SCALAR_FIELDS:
        lo: int | None = getattr(query.start, cond_field)
        hi: int | None = getattr(query.end, cond_field)
        if lo is not None or hi is not None:
            ranges.append((TIME_INDEX[rec_field], lo, hi))

    def match(t: RawTime) -> bool:
        ticks = t[_TICKS]
        diffs = t[_DIFFS]
        for i in active:
            if not ticks[i] % 2:
                return False
        for i in inactive:
            if ticks[i] % 2:
                return False
        for i in activated:
            if not (ticks[i] % 2 and diffs[i] > 0):
                return False
        for i in deactivated:
            if ticks[i] % 2 or not (ticks[i] - diffs[i]) % 2:
                return False
        for i, bound in mt_lo:
            if ticks[i] < bound:
                return False
        for i, bound in mt_hi:
            if ticks[i] > bound:
                return False
        if h_lo is not None and t[_H_TIME] < h_lo:
            return False
        if h_hi is not None and t[_H_TIME] > h_hi:
            return False
        for at, lo, hi in ranges:
            value = cast(int, t[at])
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                return False
        return True

    return match


class MemoryHistory(History):
    """History kept in the process: the newest ``max_records`` records in a deque
    (Go ``history.NewMemory``).

    ``machine_record`` continues an earlier history of the same machine (its
    ``next_id`` and ``first_tracking``). Records stay queryable after
    :meth:`close`; nothing is persisted.
    """

    _kind = "memory"

    def __init__(
        self,
        mach: Machine,
        config: Config | None = None,
        *,
        machine_record: MachineRecord | None = None,
        on_error: ErrorHandler | None = None,
    ) -> None:
        if machine_record is not None and machine_record.mach_id != mach.id:
            raise ConfigError(
                f"machine record of {machine_record.mach_id} given for machine {mach.id}"
            )
        super().__init__(
            mach,
            config if config is not None else Config(),
            previous=machine_record,
            last_sum=None,
            on_error=on_error,
        )
        self._db: deque[tuple[RawTime, RawTx | None]] = deque(maxlen=self._config.max_records)
        self._bind()

    def records(self) -> list[MemoryRecord]:
        """Every kept record, oldest first, transitions included (Go ``Export``)."""
        return [MemoryRecord.from_raw(t, x) for t, x in self._db]

    def sync(self) -> None:
        """Nothing to write: records are queryable at once."""

    def close(self) -> None:
        """Stop tracking; the records stay queryable."""
        if self._closed:
            return
        self._closed = True
        self._detach()

    def _find(self, query: Query, limit: int, with_tx: bool) -> list[MemoryRecord]:
        match = compile_query(query, self._tracked_pos)
        out: list[MemoryRecord] = []
        for t, x in reversed(self._db):
            if match(t):
                out.append(MemoryRecord.from_raw(t, x if with_tx else None))
                if len(out) == limit:
                    break
        return out

    def _store(self, time: RawTime, tx: RawTx | None, now_us: int) -> None:
        self._db.append((time, tx))
        self._last_sync_us = now_us

    def _touched(self) -> None:
        pass
