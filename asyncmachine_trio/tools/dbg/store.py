"""The debugger's collector and store: every machine's schema and transitions, no UI.

:class:`Store` is a :class:`~asyncmachine_trio.telemetry.receiver.ReceiverHandler`:
hand it to a :class:`~asyncmachine_trio.telemetry.receiver.Receiver` and it
keeps what protocol v2 brings, for many machines at once, in compact form:

* one :class:`MachineData` per machine id (parent link, tags, schema,
  connected / disconnected / gone, dropped records, transitions);
* one :class:`Tx` per transition: the clock vector after it as an
  ``array('Q')`` (the one before it only when it differs from the previous
  transition's), called / added / removed / touched states as index tuples,
  flag bits for the filters, the log lines and steps as received;
* a per-machine ``array('q')`` of the transitions' wall-clock times, for
  binary search by human time (time travel across machines).

**Memory cap** (``max_mem`` bytes, estimated per transition as it arrives):
when the estimate goes above the cap, every machine holding more than
``min_keep`` transitions drops its oldest half; rounds repeat while the total
stays above the cap. When no machine can be halved any more, disconnected
machines are removed, least recently active first. Transitions keep their
numbers (:attr:`MachineData.offset` counts the dropped ones).

**Clean on connect** (``clean_on_connect``): when a machine connects and every
known machine is disconnected, the old session is wiped first, so rerunning a
program starts from a clean slate.
"""

from __future__ import annotations

import bisect
import math
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import anyio
import attrs

from ...telemetry.model import SchemaRecord, StepRecord, TxRecord
from ...telemetry.protocol import Dropped, Gone
from ...telemetry.receiver import Connection, ReceiverHandler

__all__ = [
    "F_AUTO",
    "F_CANCELED",
    "F_CHECK",
    "F_EMPTY",
    "F_ERR",
    "F_HEALTH",
    "F_QUEUED",
    "HEALTH_STATES",
    "Filters",
    "MachineData",
    "Store",
    "Tx",
]

# flag bits of a Tx
F_CANCELED = 1
F_AUTO = 2
F_CHECK = 4
F_QUEUED = 8
F_EMPTY = 16
F_HEALTH = 32
#: an error state (``Exception`` or an ``Err*`` state) is active after the transition
F_ERR = 64

#: a transition calling only these is a health check (the ``health`` filter)
HEALTH_STATES = frozenset({"Healthcheck", "Heartbeat"})

#: transitions a machine keeps at least when the memory cap halves histories
MIN_KEEP = 300
_EMPTY: tuple[int, ...] = ()
_NO_ARGS: dict[str, str] = {}


class Tx:
    """One stored transition (compact). ``time`` is the clock vector after it."""

    __slots__ = (
        "added",
        "args",
        "before",
        "called",
        "flags",
        "id",
        "logs",
        "machine_tick",
        "pre_logs",
        "queue_len",
        "queue_tick",
        "removed",
        "seq",
        "source",
        "steps",
        "time",
        "time_ns",
        "touched",
        "type",
    )

    seq: int
    id: str
    type: int
    flags: int
    called: tuple[int, ...]
    added: tuple[int, ...]
    removed: tuple[int, ...]
    touched: tuple[int, ...]
    time: array[int]
    #: the clocks before it, only when they differ from the previous transition's ``time``
    before: array[int] | None
    time_ns: int
    queue_tick: int
    machine_tick: int
    queue_len: int
    args: dict[str, str]
    steps: list[StepRecord]
    logs: tuple[str, ...]
    pre_logs: tuple[str, ...]
    #: (machine id, transition id, machine time) of the mutation's source, or None
    source: tuple[str, str, int] | None

    @property
    def accepted(self) -> bool:
        """False for a canceled transition."""
        return not self.flags & F_CANCELED

    def is_(self, flag: int) -> bool:
        """Whether the flag bit ``flag`` (``F_*``) is set."""
        return bool(self.flags & flag)

    def time_sum(self) -> int:
        """Machine time after it (sum of the ticks)."""
        return sum(self.time)

    def active(self, index: int) -> bool:
        """Whether state ``index`` is active after it."""
        return index < len(self.time) and bool(self.time[index] % 2)


@attrs.frozen
class Filters:
    """Which transitions to skip; ``disconnected`` hides machines instead.

    ``auto`` skips every auto transition, ``auto_canceled`` only canceled ones.
    """

    canceled: bool = False
    queued: bool = False
    auto: bool = False
    auto_canceled: bool = False
    empty: bool = False
    health: bool = False
    checks: bool = False
    disconnected: bool = False

    @property
    def mask(self) -> int:
        """Flag bits that make a transition skipped."""
        m = 0
        if self.canceled:
            m |= F_CANCELED
        if self.queued:
            m |= F_QUEUED
        if self.auto:
            m |= F_AUTO
        if self.empty:
            m |= F_EMPTY
        if self.health:
            m |= F_HEALTH
        if self.checks:
            m |= F_CHECK
        return m

    def key(self) -> tuple[int, bool]:
        """A hashable summary of the transition filters (cache key)."""
        return (self.mask, self.auto_canceled and not self.auto)

    def skips(self, tx: Tx) -> bool:
        """Whether ``tx`` is filtered out."""
        f = tx.flags
        if f & self.mask:
            return True
        both = F_AUTO | F_CANCELED
        return self.auto_canceled and f & both == both

    def active_names(self) -> list[str]:
        """Names of the filters that are on."""
        return [a.name for a in attrs.fields(Filters) if getattr(self, a.name)]


NO_FILTERS = Filters()


class MachineData:
    """Everything known about one machine."""

    def __init__(self, schema: SchemaRecord, conn_id: int = 0) -> None:
        self.id = schema.machine_id
        self.txs: list[Tx] = []
        #: wall-clock time (ns) of each stored transition, for bisect
        self.times_ns: array[int] = array("q")
        #: estimated bytes of each stored transition
        self.sizes: array[int] = array("I")
        self.mem = 0
        #: transitions dropped from the front by the memory cap (numbers stay stable)
        self.offset = 0
        self.connected = True
        self.gone = False
        #: the machine's time of disposal (``gone`` frame)
        self.gone_ns = 0
        #: records the exporter reported as dropped (``dropped`` frames)
        self.dropped_reported = 0
        #: records missing between received ones (gaps in ``seq``)
        self.gaps = 0
        self.conn_id = conn_id
        self.connects = 1
        self.last_seq = 0
        self.first_ns = schema.time_ns or time.time_ns()
        self.last_ns = self.first_ns
        self._views: dict[tuple[int, bool], tuple[array[int], int]] = {}
        self._last_after: list[int] | None = None
        self.set_schema(schema)

    def set_schema(self, schema: SchemaRecord) -> None:
        """Take a (new) schema; state indexes follow its ``state_names``."""
        self.schema = schema
        self.names: list[str] = list(schema.state_names)
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        self.err_idx = tuple(
            i for i, n in enumerate(self.names) if n == "Exception" or n.startswith("Err")
        )
        self.health_idx = frozenset(self.index[n] for n in HEALTH_STATES if n in self.index)
        if self._last_after is None and schema.time:
            self._last_after = list(schema.time)

    @property
    def parent_id(self) -> str:
        """The parent machine's id (``""``: a root)."""
        return self.schema.parent_id

    @property
    def tags(self) -> list[str]:
        """The machine's tags."""
        return self.schema.tags

    def __len__(self) -> int:
        return len(self.txs)

    @property
    def dropped(self) -> int:
        """Records lost on the way: reported by the exporter plus gaps in ``seq``."""
        return self.dropped_reported + self.gaps

    @property
    def total(self) -> int:
        """Transitions ever stored (dropped ones included)."""
        return self.offset + len(self.txs)

    def time_at(self, pos: int) -> Sequence[int]:
        """The clocks at cursor ``pos`` (0: before the first stored transition)."""
        if pos <= 0:
            if self.txs:
                first = self.txs[0]
                return first.before if first.before is not None else self._initial()
            return self.schema.time or [0] * len(self.names)
        return self.txs[min(pos, len(self.txs)) - 1].time

    def _initial(self) -> Sequence[int]:
        return self.schema.time or [0] * len(self.names)

    def before_of(self, pos: int) -> Sequence[int]:
        """The clocks before the transition at 1-based ``pos``."""
        tx = self.txs[pos - 1]
        if tx.before is not None:
            return tx.before
        return self.time_at(pos - 1)

    def is_err_at(self, pos: int) -> bool:
        """Whether an error state is active at cursor ``pos``."""
        if pos <= 0:
            t = self.time_at(0)
            return any(i < len(t) and t[i] % 2 for i in self.err_idx)
        return bool(self.txs[pos - 1].flags & F_ERR)

    def pos_at_ns(self, t_ns: int) -> int:
        """The cursor of the last transition at or before ``t_ns`` (0: none)."""
        return bisect.bisect_right(self.times_ns, t_ns)

    def find_id(self, tx_id: str) -> int:
        """The 1-based position of the transition ``tx_id`` (0: not stored)."""
        for i in range(len(self.txs) - 1, -1, -1):
            if self.txs[i].id == tx_id:
                return i + 1
        return 0

    def view(self, filters: Filters) -> array[int]:
        """1-based positions of the transitions ``filters`` keep (cached, incremental)."""
        key = filters.key()
        cached = self._views.get(key)
        pos_arr, upto = cached if cached is not None else (array("I"), 0)
        n = len(self.txs)
        if upto < n:
            txs = self.txs
            if key == (0, False):
                pos_arr.extend(range(upto + 1, n + 1))
            else:
                skips = filters.skips
                pos_arr.extend(i + 1 for i in range(upto, n) if not skips(txs[i]))
            self._views[key] = (pos_arr, n)
        elif cached is None:
            self._views[key] = (pos_arr, n)
        return pos_arr

    # ----- ingest

    def append(self, rec: TxRecord, now_ns: int) -> int:
        """Store ``rec``; returns its estimated size in bytes."""
        tx = Tx.__new__(Tx)
        after_l = rec.time_after
        before_l = rec.time_before
        after = array("Q", after_l)
        last = self._last_after
        tx.before = None if last is not None and before_l == last else array("Q", before_l)
        self._last_after = after_l
        tx.time = after
        tx.seq = rec.seq
        tx.id = rec.id
        tx.type = rec.type
        called = tuple(rec.called)
        tx.called = called
        flags = 0
        if not rec.accepted:
            flags |= F_CANCELED
        if rec.is_auto:
            flags |= F_AUTO
        if rec.is_check:
            flags |= F_CHECK
        if rec.is_queued:
            flags |= F_QUEUED
        if before_l == after_l:
            tx.added = tx.removed = _EMPTY
            if not flags & (F_CANCELED | F_QUEUED):
                flags |= F_EMPTY
        else:
            diff = [i for i, (b, a) in enumerate(zip(before_l, after_l, strict=False)) if a != b]
            tx.added = tuple([i for i in diff if after_l[i] % 2])
            tx.removed = tuple([i for i in diff if not after_l[i] % 2 and before_l[i] % 2])
        health = self.health_idx
        if health and called and health.issuperset(called):
            flags |= F_HEALTH
        for i in self.err_idx:
            if i < len(after_l) and after_l[i] % 2:
                flags |= F_ERR
                break
        steps = rec.steps
        if steps:
            idx = self.index
            touched = set(called)
            touched.update(tx.added)
            touched.update(tx.removed)
            for s in steps:
                if s.from_state in idx:
                    touched.add(idx[s.from_state])
                if s.to_state in idx:
                    touched.add(idx[s.to_state])
            tx.touched = tuple(sorted(touched))
        elif tx.added or tx.removed:
            tx.touched = tuple(sorted({*called, *tx.added, *tx.removed}))
        else:
            tx.touched = called
        tx.flags = flags
        t_ns = rec.time_ns or now_ns
        tx.time_ns = t_ns
        tx.queue_tick = rec.queue_tick
        tx.machine_tick = rec.machine_tick
        tx.queue_len = rec.queue_len
        tx.args = rec.args or _NO_ARGS
        tx.steps = steps
        logs = rec.log_entries
        pre = rec.pre_log_entries
        tx.logs = tuple(logs) if logs else _EMPTY  # type: ignore[assignment]
        tx.pre_logs = tuple(pre) if pre else _EMPTY  # type: ignore[assignment]
        tx.source = (
            (rec.source_machine, rec.source_tx, rec.source_time) if rec.source_machine else None
        )
        size = 240 + 16 * len(after_l) + (0 if tx.before is None else 8 * len(after_l))
        if logs:
            size += sum(len(s) + 56 for s in logs)
        if pre:
            size += sum(len(s) + 56 for s in pre)
        if steps:
            size += 120 * len(steps)
        if rec.args:
            size += 100 * len(rec.args)
        self.txs.append(tx)
        # human time only moves forward in the index (bisect needs order)
        times = self.times_ns
        if times and t_ns < times[-1]:
            t_ns = times[-1]
        times.append(t_ns)
        self.sizes.append(size)
        self.mem += size
        seq = rec.seq
        if self.last_seq and seq > self.last_seq + 1:
            self.gaps += seq - self.last_seq - 1
        self.last_seq = seq
        self.last_ns = now_ns
        return size

    def drop_front(self, n: int) -> int:
        """Drop the ``n`` oldest transitions; returns the bytes freed."""
        n = min(n, len(self.txs))
        if n <= 0:
            return 0
        keep_first = self.txs[n] if n < len(self.txs) else None
        if keep_first is not None and keep_first.before is None:
            keep_first.before = self.txs[n - 1].time
        freed = sum(self.sizes[:n])
        del self.txs[:n]
        del self.times_ns[:n]
        del self.sizes[:n]
        self.offset += n
        self.mem -= freed
        self._views.clear()
        return freed

    def record(self, pos: int) -> TxRecord:
        """The transition at 1-based ``pos`` as a protocol :class:`TxRecord`."""
        tx = self.txs[pos - 1]
        src = tx.source or ("", "", 0)
        return TxRecord(
            self.id,
            tx.seq,
            tx.id,
            tx.type,
            list(tx.called),
            dict(tx.args),
            tx.accepted,
            bool(tx.flags & F_AUTO),
            bool(tx.flags & F_CHECK),
            bool(tx.flags & F_QUEUED),
            list(self.before_of(pos)),
            list(tx.time),
            tx.queue_tick,
            tx.machine_tick,
            tx.queue_len,
            list(tx.steps),
            list(tx.logs),
            list(tx.pre_logs),
            tx.time_ns,
            src[0],
            src[1],
            src[2],
        )

    def records(self) -> Iterator[TxRecord]:
        """Every stored transition as a :class:`TxRecord`, oldest first."""
        for pos in range(1, len(self.txs) + 1):
            yield self.record(pos)


class Store(ReceiverHandler):
    """Many machines' schemas and transitions (a receiver handler, no UI).

    ``max_mem``: the memory cap in bytes (``None``: none; see the module doc
    for the clean-up policy). Every change bumps :attr:`version` and adds the
    machine id to :attr:`dirty`, which a UI drains in batches
    (:meth:`take_dirty`) instead of redrawing per message. ``listeners`` are
    called with the store after every handled frame (keep them cheap).
    """

    def __init__(
        self,
        *,
        max_mem: int | None = None,
        clean_on_connect: bool = False,
        min_keep: int = MIN_KEEP,
    ) -> None:
        self.machines: dict[str, MachineData] = {}
        self.max_mem = max_mem
        self.clean_on_connect = clean_on_connect
        self.min_keep = min_keep
        self.mem = 0
        self.version = 0
        self.dirty: set[str] = set()
        self.clients = 0
        self.connects = 0
        self.errors: list[Exception] = []
        #: transitions dropped by the memory cap, machines removed by it
        self.gc_dropped = 0
        self.gc_removed: list[str] = []
        self.gc_runs = 0
        self.listeners: list[Callable[[Store], None]] = []
        self._event: anyio.Event | None = None

    # ----- queries

    def __len__(self) -> int:
        return len(self.machines)

    @property
    def tx_count(self) -> int:
        """Transitions stored, all machines."""
        return sum(len(m.txs) for m in self.machines.values())

    def get(self, machine_id: str) -> MachineData:
        """The machine ``machine_id``, or ``KeyError`` naming the closest known id."""
        try:
            return self.machines[machine_id]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(machine_id, list(self.machines), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"no machine {machine_id!r}{hint}") from None

    def children(self, machine_id: str) -> list[str]:
        """Ids of the machines whose parent is ``machine_id``, sorted."""
        return sorted(m.id for m in self.machines.values() if m.parent_id == machine_id)

    def tree(self, filters: Filters = NO_FILTERS) -> list[tuple[int, MachineData]]:
        """Machines as ``(depth, machine)`` nested under their parents, sorted by id.

        A machine whose parent is unknown is a root. ``filters.disconnected``
        hides disconnected machines (and keeps their connected children as roots).
        """
        ms = self.machines
        shown = {k: m for k, m in ms.items() if not (filters.disconnected and not m.connected)}
        kids: dict[str, list[str]] = {}
        roots: list[str] = []
        for k, m in shown.items():
            if m.parent_id and m.parent_id in shown and m.parent_id != k:
                kids.setdefault(m.parent_id, []).append(k)
            else:
                roots.append(k)
        out: list[tuple[int, MachineData]] = []
        seen: set[str] = set()

        def walk(k: str, depth: int) -> None:
            if k in seen:
                return
            seen.add(k)
            out.append((depth, shown[k]))
            for c in sorted(kids.get(k, ())):
                walk(c, depth + 1)

        for r in sorted(roots):
            walk(r, 0)
        for k in sorted(shown):  # parent cycles: still listed
            walk(k, 0)
        return out

    def take_dirty(self) -> set[str]:
        """The machine ids changed since the last call (and forget them)."""
        d = self.dirty
        self.dirty = set()
        return d

    def _changed(self, mid: str) -> None:
        self.version += 1
        self.dirty.add(mid)
        self._notify()

    def _notify(self) -> None:
        for fn in self.listeners:
            fn(self)
        ev = self._event
        if ev is not None:
            self._event = None
            ev.set()

    async def wait(self, predicate: Callable[[Store], bool], timeout: float = math.inf) -> None:
        """Return once ``predicate(self)`` holds; ``TimeoutError`` after ``timeout`` s."""
        with anyio.fail_after(timeout):
            while not predicate(self):
                if self._event is None:
                    self._event = anyio.Event()
                await self._event.wait()

    # ----- receiver handler

    def on_connect(self, conn: Connection) -> None:
        self.clients += 1
        self.connects += 1

    def on_schema(self, conn: Connection, schema: SchemaRecord) -> None:
        mid = schema.machine_id
        md = self.machines.get(mid)
        if (
            md is None
            and self.clean_on_connect
            and self.machines
            and not any(m.connected for m in self.machines.values())
        ):
            self.clear()
        if md is None:
            self.machines[mid] = MachineData(schema, conn.conn_id)
        else:
            if not md.connected or md.conn_id != conn.conn_id:
                md.connects += 1
            md.set_schema(schema)
            md.connected = True
            md.gone = False
            md.conn_id = conn.conn_id
        self._changed(mid)

    def on_txs(self, conn: Connection, txs: list[TxRecord]) -> None:
        self.add_txs(txs)

    def add_txs(self, txs: Sequence[TxRecord], now_ns: int | None = None) -> None:
        """Store transitions of known machines (``KeyError`` for an unknown one)."""
        now = time.time_ns() if now_ns is None else now_ns
        machines = self.machines
        md: MachineData | None = None
        added = 0
        for rec in txs:
            if md is None or md.id != rec.machine_id:
                md = machines.get(rec.machine_id)
                if md is None:
                    raise KeyError(f"transition of unknown machine {rec.machine_id!r}")
                self.dirty.add(md.id)
            added += md.append(rec, now)
        self.mem += added
        self.version += 1
        if self.max_mem is not None and self.mem > self.max_mem:
            self.gc()
        self._notify()

    def on_dropped(self, conn: Connection, dropped: Dropped) -> None:
        md = self.machines.get(dropped.machine_id)
        if md is not None:
            md.dropped_reported += dropped.count
            self._changed(md.id)

    def on_gone(self, conn: Connection, gone: Gone) -> None:
        md = self.machines.get(gone.machine_id)
        if md is not None:
            md.gone = True
            md.gone_ns = gone.time_ns
            md.connected = False
            self._changed(md.id)

    def on_disconnect(self, conn: Connection, error: Exception | None) -> None:
        self.clients = max(0, self.clients - 1)
        if error is not None:
            self.errors.append(error)
        for mid in conn.machines:
            md = self.machines.get(mid)
            if md is not None and md.conn_id == conn.conn_id:
                md.connected = False
                self._changed(mid)
        self._notify()

    # ----- memory

    def clear(self) -> None:
        """Forget every machine."""
        self.machines.clear()
        self.mem = 0
        self.version += 1

    def remove(self, machine_id: str) -> None:
        """Forget one machine."""
        md = self.machines.pop(machine_id, None)
        if md is not None:
            self.mem -= md.mem
            self._changed(machine_id)

    def gc(self) -> int:
        """Apply the memory cap now; returns the bytes freed (see the module doc)."""
        cap = self.max_mem
        if cap is None:
            return 0
        self.gc_runs += 1
        freed = 0
        for _round in range(64):
            if self.mem <= cap:
                break
            progress = False
            for md in self.machines.values():
                n = len(md.txs)
                if n > self.min_keep:
                    drop = min(n // 2, n - self.min_keep)
                    f = md.drop_front(drop)
                    self.gc_dropped += drop
                    self.mem -= f
                    freed += f
                    progress = True
                    self.dirty.add(md.id)
            if progress:
                continue
            gone = sorted(
                (m for m in self.machines.values() if not m.connected), key=lambda m: m.last_ns
            )
            if not gone:
                break
            victim = gone[0]
            self.machines.pop(victim.id)
            self.mem -= victim.mem
            freed += victim.mem
            self.gc_removed.append(victim.id)
            self.dirty.add(victim.id)
        self.version += 1
        return freed

    def summary(self) -> dict[str, Any]:
        """Counts for an exit summary: machines, transitions, memory estimate."""
        return {
            "machines": len(self.machines),
            "connected": sum(1 for m in self.machines.values() if m.connected),
            "transitions": self.tx_count,
            "dropped": sum(m.dropped for m in self.machines.values()),
            "mem_bytes": self.mem,
            "gc_dropped": self.gc_dropped,
        }
