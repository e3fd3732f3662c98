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
import struct
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from itertools import compress, count, groupby
from operator import itemgetter, ne
from typing import Any, overload

import anyio
import attrs

from ...telemetry.errors import ClientLimitError
from ...telemetry.model import SchemaRecord, StepRecord, TxRecord
from ...telemetry.protocol import (
    Dropped,
    Gone,
    WireTx,
    _check_tx,
    tx_from_wire,
    tx_to_wire,
)
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
    "KEEP_ERRORS",
    "MAX_CLIENTS",
    "Filters",
    "MachineData",
    "Reader",
    "ReaderState",
    "Store",
    "Tx",
    "TxList",
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
#: clients a receiver serving a store takes at once by default (as the reference)
MAX_CLIENTS = 5000
#: connection errors (and ids of machines removed by the memory cap) a store keeps
KEEP_ERRORS = 100
_EMPTY: tuple[int, ...] = ()
_NO_STEPS: list[StepRecord] = []  # shared by transitions without steps, never mutated
_NO_ARGS: dict[str, str] = {}
_new_tx = object.__new__
#: distinct index tuples a machine shares between its transitions at most
_INTERN_MAX = 4096
_PACKERS: dict[int, Callable[..., bytes]] = {}


def _packer(n: int) -> Callable[..., bytes]:
    """``pack(*ticks)``: ``n`` clock ticks as native uint64 bytes."""
    fn = _PACKERS.get(n)
    if fn is None:
        fn = struct.Struct(f"={n}Q").pack
        if n <= 1024:
            _PACKERS[n] = fn
    return fn


# the fields of a stored transition row (a plain tuple: once the GC has seen it
# holds only atomic values, it stops tracking it, so 100,000s of stored
# transitions cost the cyclic GC nothing)
_ROW_FIELDS = (
    "seq",
    "id",
    "type",
    "flags",
    "called",
    "added",
    "removed",
    "touched",
    "_time",
    "_before",
    "time_ns",
    "queue_tick",
    "machine_tick",
    "queue_len",
    "mut_queue_tick",
    "_args",
    "_steps",
    "logs",
    "pre_logs",
    "levels",
    "pre_levels",
    "source",
    "_reader",
)
_R = {name: i for i, name in enumerate(_ROW_FIELDS)}
_R_TIME = _R["_time"]
_R_BEFORE = _R["_before"]
_R_FLAGS = _R["flags"]
_R_ID = _R["id"]
_R_NS = _R["time_ns"]
_R_TOUCHED = _R["touched"]
_R_CALLED = _R["called"]
_R_ADDED = _R["added"]
_R_REMOVED = _R["removed"]
_MID = itemgetter(0)
_SOURCE = itemgetter(19)


def _col(name: str, doc: str) -> Any:
    return property(itemgetter(_R[name]), doc=doc)


class Tx(tuple):  # type: ignore[type-arg]
    """One stored transition (compact, read-only), a view of its row in the store.

    ``time`` is the clock vector after it; states are indexes into the
    machine's ``names``.
    """

    __slots__ = ()

    seq: int = _col("seq", "The exporter's sequence number (from 1, per machine).")
    id: str = _col("id", "The transition id.")
    type: int = _col("type", "The mutation type (``MUTATION_TYPES``).")
    flags: int = _col("flags", "``F_*`` bits (canceled, auto, ...).")
    called: tuple[int, ...] = _col("called", "Indexes of the called states.")
    added: tuple[int, ...] = _col("added", "Indexes of the states it activated.")
    removed: tuple[int, ...] = _col("removed", "Indexes of the states it deactivated.")
    time_ns: int = _col("time_ns", "The machine's wall clock at its end (Unix ns).")
    queue_tick: int = _col("queue_tick", "The machine's queue tick when it ended.")
    machine_tick: int = _col("machine_tick", "The machine's tick when it ended.")
    queue_len: int = _col("queue_len", "The queue length when it ended.")
    mut_queue_tick: int = _col(
        "mut_queue_tick", "The queue tick the mutation got when queued (0: prepended / unknown)."
    )
    logs: tuple[str, ...] = _col("logs", "The lines logged during it.")
    pre_logs: tuple[str, ...] = _col("pre_logs", "The lines logged since the previous one.")
    levels: bytes = _col("levels", "The level of each line of ``logs`` (``b''``: unknown).")
    pre_levels: bytes = _col("pre_levels", "The level of each line of ``pre_logs``.")
    source: tuple[str, str, int] | None = _col(
        "source", "(machine id, transition id, machine time) of the mutation's source, or None."
    )

    @property
    def touched(self) -> tuple[int, ...]:
        """Indexes of the called, added, removed and stepped states, sorted."""
        t: tuple[int, ...] | None = self[_R_TOUCHED]
        if t is None:  # made on first use: called + added + removed
            return tuple(sorted({*self[_R_CALLED], *self[_R_ADDED], *self[_R_REMOVED]}))
        return t

    @property
    def time(self) -> Sequence[int]:
        """The clock vector after it (a read-only view)."""
        return memoryview(self[_R_TIME]).cast("Q")

    @property
    def before(self) -> Sequence[int] | None:
        """The clocks before it, only when they differ from the previous transition's."""
        b = self[_R_BEFORE]
        return None if b is None else memoryview(b).cast("Q")

    @property
    def args(self) -> dict[str, str]:
        """The mutation args as the machine's args mapper rendered them (a copy)."""
        return dict(self[_R["_args"]])

    @property
    def steps(self) -> list[StepRecord]:
        """The resolution steps (when the machine logs them)."""
        return [StepRecord(*s) for s in self[_R["_steps"]]]

    @property
    def reader(self) -> ReaderState:
        """Contexts, waiters and pipes open after it."""
        return ReaderState(*self[_R["_reader"]])

    @property
    def accepted(self) -> bool:
        """False for a canceled transition."""
        return not self[_R_FLAGS] & F_CANCELED

    def is_(self, flag: int) -> bool:
        """Whether the flag bit ``flag`` (``F_*``) is set."""
        return bool(self[_R_FLAGS] & flag)

    def time_sum(self) -> int:
        """Machine time after it (sum of the ticks)."""
        return sum(self.time)

    def active(self, index: int) -> bool:
        """Whether state ``index`` is active after it."""
        t = self.time
        return index < len(t) and bool(t[index] % 2)


_as_tx = partial(tuple.__new__, Tx)


class TxList(Sequence[Tx]):
    """A machine's stored transitions, oldest first, as :class:`Tx` views of their rows."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, i: int) -> Tx: ...

    @overload
    def __getitem__(self, i: slice) -> list[Tx]: ...

    def __getitem__(self, i: int | slice) -> Tx | list[Tx]:
        if isinstance(i, slice):
            return list(map(_as_tx, self._rows[i]))
        return _as_tx(self._rows[i])

    def __iter__(self) -> Iterator[Tx]:
        return map(_as_tx, self._rows)


@attrs.frozen
class ReaderState:
    """What is open on a machine after a transition, from its semantic log lines.

    ``contexts``: states with a live state context (``[ctx:new]`` until
    ``[ctx:match]``); ``subscriptions``: waiters not resolved yet (``[when:new]``
    and the other ``when*`` kinds until their ``:match``, ``xN`` when N alike);
    ``pipes``: the pipe lines in place (``[pipe-out:add] A to m2``, until
    ``[pipe:gc] m2``). Needs the machine's log level ``ops`` (3) or higher.
    """

    contexts: tuple[str, ...] = ()
    subscriptions: tuple[str, ...] = ()
    pipes: tuple[str, ...] = ()

    @classmethod
    def of(cls, ctx: dict[str, None], subs: dict[str, int], pipes: dict[str, None]) -> ReaderState:
        """The state of the running sets a :class:`MachineData` keeps."""
        return cls(
            tuple(ctx),
            tuple(k if n == 1 else f"{k} x{n}" for k, n in subs.items()),
            tuple(pipes),
        )


NO_READER = ReaderState()
_READER_PREFIXES = ("[ctx:", "[when", "[pipe")


def _reader_apply(
    ctx: dict[str, None], subs: dict[str, int], pipes: dict[str, None], line: str
) -> bool:
    """Apply one semantic log line to the open sets; True when one changed."""
    head, _, rest = line.partition("] ")
    kind = head[1:]
    if kind == "ctx:new":
        if rest in ctx:
            return False
        ctx[rest] = None
        return True
    if kind == "ctx:match":
        return ctx.pop(rest, True) is None
    if kind.startswith(("pipe-out:", "pipe-in:")):
        if line in pipes:
            return False
        pipes[line] = None
        return True
    if kind == "pipe:gc":
        gone = [p for p in pipes if p.rsplit(" ", 1)[-1] == rest]
        for p in gone:
            del pipes[p]
        return bool(gone)
    name, _, event = kind.partition(":")
    if event not in ("new", "match"):
        return False
    if name == "whenQuery":
        key = name  # new logs the count, match the index: only the number is known
    elif name == "whenTime" and event == "new":
        states, _, ticks = rest.partition(" ")  # "A,B 1 2"; the match says "A B [1 2]"
        key = f"whenTime {states.replace(',', ' ')} [{ticks}]"
    else:
        key = f"{name} {rest}"
    n = subs.get(key, 0)
    if event == "new":
        subs[key] = n + 1
    elif n == 0:
        return False
    elif n == 1:
        del subs[key]
    else:
        subs[key] = n - 1
    return True


@attrs.frozen
class Reader:
    """The log reader's data for one transition (:meth:`Store.reader`).

    ``source``: (machine id, transition id, machine time) of the transition
    that caused this one, or None; ``forks``: (machine id, transition id) of
    the transitions that name this one as their source; ``queue_tick`` /
    ``queue_len``: the machine's queue when it ended; ``mut_queue_tick``: the
    tick the mutation got when queued (0: prepended / unknown); ``args``: as
    the machine's args mapper rendered them; ``handlers``: the handlers that
    ran (``[handler:N]`` lines); ``contexts`` / ``subscriptions`` / ``pipes_in``
    / ``pipes_out``: what was open after it (:class:`ReaderState`).
    """

    source: tuple[str, str, int] | None
    queue_tick: int
    mut_queue_tick: int
    queue_len: int
    args: dict[str, str]
    handlers: tuple[str, ...]
    contexts: tuple[str, ...]
    subscriptions: tuple[str, ...]
    pipes_in: tuple[str, ...]
    pipes_out: tuple[str, ...]
    forks: tuple[tuple[str, str], ...] = ()


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
        return self.skips_flags(tx.flags)

    def skips_flags(self, f: int) -> bool:
        """Whether a transition with the flag bits ``f`` is filtered out."""
        if f & self.mask:
            return True
        both = F_AUTO | F_CANCELED
        return self.auto_canceled and f & both == both

    def active_names(self) -> list[str]:
        """Names of the filters that are on."""
        return [a.name for a in attrs.fields(Filters) if getattr(self, a.name)]


NO_FILTERS = Filters()


def _wire_of(rec: TxRecord) -> WireTx:
    """``rec`` as a checked, normalized wire record (typed errors for bad fields)."""
    return _check_tx(tx_to_wire(rec))


def _schema_size(s: SchemaRecord) -> int:
    """Estimated bytes a machine of schema ``s`` holds before any transition."""
    rels = sum(
        len(r.require or ()) + len(r.add or ()) + len(r.remove or ()) + len(r.after or ())
        for r in s.states
    )
    names = sum(map(len, s.state_names)) + len(s.machine_id) + len(s.parent_id)
    return 4000 + 400 * len(s.states) + 150 * len(s.state_names) + 60 * rels + names


class MachineData:
    """Everything known about one machine."""

    def __init__(self, schema: SchemaRecord, conn_id: int = 0) -> None:
        self.id = schema.machine_id
        self._rows: list[tuple[Any, ...]] = []
        #: the stored transitions, oldest first
        self.txs = TxList(self._rows)
        #: wall-clock time (ns) of each stored transition, for bisect
        self.times_ns: array[int] = array("Q")
        #: estimated bytes of each stored transition
        self.sizes: array[int] = array("I")
        #: estimated bytes of the transitions and the schema
        self.mem = 0
        #: estimated bytes of the schema (part of :attr:`mem`)
        self.schema_mem = 0
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
        self._last_after: Sequence[int] | None = None
        # index tuples (called / added / removed / touched) shared between transitions
        self._interned: dict[tuple[int, ...], tuple[int, ...]] = {}
        #: contexts, waiters and pipes open now (from the semantic log lines)
        self.reader_state = NO_READER
        self._reader_row: tuple[tuple[str, ...], ...] = ((), (), ())
        self._ctx: dict[str, None] = {}
        self._subs: dict[str, int] = {}
        self._pipes: dict[str, None] = {}
        self.set_schema(schema)

    def set_schema(self, schema: SchemaRecord) -> None:
        """Take a (new) schema; state indexes follow its ``state_names``."""
        self.schema = schema
        size = _schema_size(schema)
        self.mem += size - self.schema_mem
        self.schema_mem = size
        self.names: list[str] = list(schema.state_names)
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        self.err_idx = tuple(
            i for i, n in enumerate(self.names) if n == "Exception" or n.startswith("Err")
        )
        self.health_idx = frozenset(self.index[n] for n in HEALTH_STATES if n in self.index)
        if self._last_after is None and schema.time:
            self._last_after = tuple(schema.time)

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
        rows = self._rows
        for i in range(len(rows) - 1, -1, -1):
            if rows[i][_R_ID] == tx_id:
                return i + 1
        return 0

    def view(self, filters: Filters) -> array[int]:
        """1-based positions of the transitions ``filters`` keep (cached, incremental)."""
        key = filters.key()
        cached = self._views.get(key)
        pos_arr, upto = cached if cached is not None else (array("I"), 0)
        n = len(self.txs)
        if upto < n:
            rows = self._rows
            if key == (0, False):
                pos_arr.extend(range(upto + 1, n + 1))
            else:
                skips = filters.skips_flags
                pos_arr.extend(i + 1 for i in range(upto, n) if not skips(rows[i][_R_FLAGS]))
            self._views[key] = (pos_arr, n)
        elif cached is None:
            self._views[key] = (pos_arr, n)
        return pos_arr

    # ----- ingest

    def append(self, rec: TxRecord, now_ns: int) -> int:
        """Store ``rec``; returns its estimated size in bytes."""
        return self.append_wire(_wire_of(rec), now_ns)

    def append_wire(self, r: WireTx, now_ns: int) -> int:
        """Store a normalized wire record (see :func:`check_wire_txs`); returns its size."""
        return self.append_wires((r,), now_ns)

    def append_wires(self, recs: Iterable[WireTx], now_ns: int) -> int:
        """Store normalized wire records of this machine; returns their estimated size.

        The hot loop of the ingest: everything it reads per record is a local.
        """
        interned = self._interned
        if len(interned) > _INTERN_MAX:
            interned.clear()
        intern = interned.setdefault
        health = self.health_idx
        err_idx = self.err_idx
        idx = self.index
        rows_append = self._rows.append
        times = self.times_ns
        times_append = times.append
        sizes_append = self.sizes.append
        last_after = self._last_after
        last_t = times[-1] if times else 0
        last_seq = self.last_seq
        gaps = 0
        total = 0
        n_pack = -1
        pack = _packer(0)
        reader_row = self._reader_row
        for r in recs:
            (_, seq, tid, typ, called, args, acc, auto, check, queued, before_l, after_l,
             qt, mt, qlen, steps, logs, pre, tns, smach, stx, stime, lv, plv, mqt) = r  # fmt: skip
            n_after = len(after_l)
            if n_after != n_pack:
                n_pack = n_after
                pack = _packer(n_after)
            size = 200 + 8 * n_after
            time_b = pack(*after_l)
            if before_l == last_after:
                before_b = None
            else:
                before_b = _packer(len(before_l))(*before_l)
                size += 8 * n_after
            last_after = after_l
            flags = (0 if acc else F_CANCELED) | (F_AUTO if auto else 0)
            if check:
                flags |= F_CHECK
            if queued:
                flags |= F_QUEUED
            called = intern(called, called)
            if before_l == after_l:
                added = removed = _EMPTY
                if not flags & (F_CANCELED | F_QUEUED):
                    flags |= F_EMPTY
            else:
                added_l = []
                removed_l = []
                for i in compress(count(), map(ne, before_l, after_l)):
                    if after_l[i] & 1:
                        added_l.append(i)
                    elif before_l[i] & 1:
                        removed_l.append(i)
                added = tuple(added_l)
                added = intern(added, added)
                removed = tuple(removed_l)
                removed = intern(removed, removed)
            if health and called and health.issuperset(called):
                flags |= F_HEALTH
            for i in err_idx:
                if i < n_after and after_l[i] & 1:
                    flags |= F_ERR
                    break
            touched: tuple[int, ...] | None
            if steps:
                ts = {*called, *added, *removed}
                for s in steps:
                    if s[1] in idx:
                        ts.add(idx[s[1]])
                    if s[2] in idx:
                        ts.add(idx[s[2]])
                touched = tuple(sorted(ts))
                touched = intern(touched, touched)
                size += 120 * len(steps)
            elif added or removed:
                touched = None  # the Tx view makes it on first use
            else:
                touched = called
            if logs or pre:
                size += sum(map(len, logs)) + sum(map(len, pre)) + 57 * (len(logs) + len(pre))
                if self._reader_lines(pre) | self._reader_lines(logs):
                    st = ReaderState.of(self._ctx, self._subs, self._pipes)
                    self.reader_state = st
                    reader_row = (st.contexts, st.subscriptions, st.pipes)
            if args:
                size += 100 * len(args)
                args = tuple(args.items())  # no dict in a row: the GC can untrack it
            else:
                args = ()
            t_ns = tns or now_ns
            rows_append(
                (
                    seq,
                    tid,
                    typ,
                    flags,
                    called,
                    added,
                    removed,
                    touched,
                    time_b,
                    before_b,
                    t_ns,
                    qt,
                    mt,
                    qlen,
                    mqt,
                    args,
                    steps,
                    logs,
                    pre,
                    lv,
                    plv,
                    (smach, stx, stime) if smach else None,
                    reader_row,
                )
            )
            # human time only moves forward in the index (bisect needs order)
            if t_ns < last_t:
                t_ns = last_t
            times_append(t_ns)
            last_t = t_ns
            sizes_append(size)
            total += size
            if last_seq and seq > last_seq + 1:
                gaps += seq - last_seq - 1
            last_seq = seq
        self._last_after = last_after
        self._reader_row = reader_row
        self.last_seq = last_seq
        self.gaps += gaps
        self.mem += total
        self.last_ns = now_ns
        return total

    def _reader_lines(self, lines: tuple[str, ...]) -> bool:
        """Apply the semantic lines about contexts, waiters and pipes; True if one changed."""
        changed = False
        for line in lines:
            if line.startswith(_READER_PREFIXES):
                changed = _reader_apply(self._ctx, self._subs, self._pipes, line) or changed
        return changed

    def drop_front(self, n: int) -> int:
        """Drop the ``n`` oldest transitions; returns the bytes freed."""
        rows = self._rows
        n = min(n, len(rows))
        if n <= 0:
            return 0
        if n < len(rows) and rows[n][_R_BEFORE] is None:
            # the new first one keeps its clocks before (the previous one goes)
            row = list(rows[n])
            row[_R_BEFORE] = rows[n - 1][_R_TIME]
            rows[n] = tuple(row)
        freed = sum(self.sizes[:n])
        del rows[:n]
        del self.times_ns[:n]
        del self.sizes[:n]
        self.offset += n
        self.mem -= freed
        self._views.clear()
        return freed

    def wire(self, pos: int) -> WireTx:
        """The transition at 1-based ``pos`` in its normalized wire form."""
        tx = self.txs[pos - 1]
        src = tx.source or ("", "", 0)
        return (
            self.id,
            tx.seq,
            tx.id,
            tx.type,
            tx.called,
            tx.args or _NO_ARGS,
            tx.accepted,
            bool(tx.flags & F_AUTO),
            bool(tx.flags & F_CHECK),
            bool(tx.flags & F_QUEUED),
            tuple(self.before_of(pos)),
            tuple(tx.time),
            tx.queue_tick,
            tx.machine_tick,
            tx.queue_len,
            tx[_R["_steps"]],
            tx.logs,
            tx.pre_logs,
            tx.time_ns,
            *src,
            tx.levels,
            tx.pre_levels,
            tx.mut_queue_tick,
        )

    def record(self, pos: int) -> TxRecord:
        """The transition at 1-based ``pos`` as a protocol :class:`TxRecord`."""
        return tx_from_wire(self.wire(pos))

    def records(self) -> Iterator[TxRecord]:
        """Every stored transition as a :class:`TxRecord`, oldest first."""
        for pos in range(1, len(self.txs) + 1):
            yield self.record(pos)

    def log_lines(self, pos: int, max_level: int | None = None) -> list[tuple[int, str]]:
        """``(level, line)`` of the transition at 1-based ``pos``: the lines logged
        before it, then during it. ``max_level`` keeps lines at or below it and
        every line of unknown level (0, from older clients)."""
        tx = self.txs[pos - 1]
        out: list[tuple[int, str]] = []
        for lines, levels in ((tx.pre_logs, tx.pre_levels), (tx.logs, tx.levels)):
            n = len(levels)
            for i, line in enumerate(lines):
                lv = levels[i] if i < n else 0
                if max_level is None or lv <= max_level:
                    out.append((lv, line))
        return out

    def reader(self, pos: int, forks: Sequence[tuple[str, str]] = ()) -> Reader:
        """The log reader's data of the transition at 1-based ``pos`` (see :class:`Reader`)."""
        tx = self.txs[pos - 1]
        handlers = tuple(
            line.partition("] ")[2]
            for line in tx.logs
            if line.startswith("[handler:") and line[9:10].isdigit()
        )
        st = tx.reader
        return Reader(
            tx.source,
            tx.queue_tick,
            tx.mut_queue_tick,
            tx.queue_len,
            dict(tx.args),
            handlers,
            st.contexts,
            st.subscriptions,
            tuple(p for p in st.pipes if p.startswith("[pipe-in:")),
            tuple(p for p in st.pipes if p.startswith("[pipe-out:")),
            tuple(forks),
        )


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
        max_clients: int | None = MAX_CLIENTS,
    ) -> None:
        self.machines: dict[str, MachineData] = {}
        #: the cap on concurrent clients a receiver serving this store applies
        self.max_clients = max_clients
        #: clients refused because of that cap
        self.refused = 0
        self.max_mem = max_mem
        self.clean_on_connect = clean_on_connect
        self.min_keep = min_keep
        self.mem = 0
        self.version = 0
        self.dirty: set[str] = set()
        self.clients = 0
        self.connects = 0
        #: why connections ended in an error (the last :data:`KEEP_ERRORS`)
        self.errors: list[Exception] = []
        #: transitions dropped by the memory cap, machines removed by it (the last
        #: :data:`KEEP_ERRORS` ids)
        self.gc_dropped = 0
        self.gc_removed: list[str] = []
        self.gc_runs = 0
        self.listeners: list[Callable[[Store], None]] = []
        self._event: anyio.Event | None = None
        #: (source machine, source transition) -> [(machine id, transition id)]
        self._forks: dict[tuple[str, str], list[tuple[str, str]]] = {}

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

    def forks(self, machine_id: str, tx_id: str) -> list[tuple[str, str]]:
        """``(machine id, transition id)`` of the stored transitions whose source is
        the transition ``tx_id`` of ``machine_id`` (the reader's "forks")."""
        return [
            (m, t)
            for m, t in self._forks.get((machine_id, tx_id), ())
            if m in self.machines and self.machines[m].find_id(t)
        ]

    def reader(self, machine_id: str, pos: int) -> Reader:
        """The log reader's data of the transition at 1-based ``pos`` of ``machine_id``."""
        md = self.get(machine_id)
        tx = md.txs[pos - 1]
        return md.reader(pos, self.forks(machine_id, tx.id))

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
            md = self.machines[mid] = MachineData(schema, conn.conn_id)
            self.mem += md.mem
        else:
            if not md.connected or md.conn_id != conn.conn_id:
                md.connects += 1
            before = md.mem
            md.set_schema(schema)
            self.mem += md.mem - before
            md.connected = True
            md.gone = False
            md.conn_id = conn.conn_id
        self._changed(mid)
        if self.max_mem is not None and self.mem > self.max_mem:
            self.gc()

    def on_txs(self, conn: Connection, txs: list[TxRecord]) -> None:
        self.add_txs(txs)

    def on_wire_txs(self, conn: Connection, txs: list[WireTx]) -> None:
        self.add_wire_txs(txs)

    def add_txs(self, txs: Sequence[TxRecord], now_ns: int | None = None) -> None:
        """Store transitions of known machines (``KeyError`` for an unknown one).

        Bad field values raise ``ValueError`` naming the field (nothing of the
        batch is stored then).
        """
        self.add_wire_txs([_wire_of(r) for r in txs], now_ns)

    def add_wire_txs(self, txs: Sequence[WireTx], now_ns: int | None = None) -> None:
        """Store normalized wire records (:func:`check_wire_txs`) of known machines.

        What the receiver calls, without building a :class:`TxRecord` per
        transition. ``KeyError`` for an unknown machine.
        """
        now = time.time_ns() if now_ns is None else now_ns
        machines = self.machines
        forks = self._forks
        added = 0
        for mid, run in groupby(txs, _MID):  # runs of one machine's records
            md = machines.get(mid)
            if md is None:
                raise KeyError(f"transition of unknown machine {mid!r}")
            self.dirty.add(mid)
            recs = list(run)
            added += md.append_wires(recs, now)
            for rec in filter(_SOURCE, recs):  # a source: index the fork
                forks.setdefault((rec[19], rec[20]), []).append((mid, rec[2]))
        self.mem += added
        self.version += 1
        if self.max_mem is not None and self.mem > self.max_mem:
            self.gc()
        self._notify()

    def on_refused(self, conn: Connection, error: ClientLimitError) -> None:
        self.refused += 1
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
            self.errors.append(error.with_traceback(None))
            del self.errors[:-KEEP_ERRORS]
        for mid in conn.machines:
            md = self.machines.get(mid)
            if md is not None and md.conn_id == conn.conn_id:
                md.connected = False
                self._changed(mid)
        if self.max_mem is not None and self.mem > self.max_mem:
            self.gc()  # its machines may go now
        self._notify()

    # ----- memory

    def clear(self) -> None:
        """Forget every machine."""
        self.machines.clear()
        self._forks.clear()
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
            if not progress:
                break
        if self.mem > cap:
            # no machine can be halved any more: the least recently active
            # disconnected ones go (one sort, however many go)
            gone = sorted(
                (m for m in self.machines.values() if not m.connected), key=lambda m: m.last_ns
            )
            for victim in gone:
                if self.mem <= cap:
                    break
                self.machines.pop(victim.id)
                self.mem -= victim.mem
                freed += victim.mem
                self.gc_removed.append(victim.id)
                self.dirty.add(victim.id)
            del self.gc_removed[:-KEEP_ERRORS]
        if freed:
            self._gc_forks()
        self.version += 1
        return freed

    def _gc_forks(self) -> None:
        """Forget the fork links of transitions no longer stored."""
        keep: dict[tuple[str, str], list[tuple[str, str]]] = {}
        ids: dict[str, set[str]] = {}
        for key, links in self._forks.items():
            live = []
            for m, t in links:
                md = self.machines.get(m)
                if md is None:
                    continue
                have = ids.get(m)
                if have is None:
                    have = ids[m] = {tx.id for tx in md.txs}
                if t in have:
                    live.append((m, t))
            if live:
                keep[key] = live
        self._forks = keep

    def summary(self) -> dict[str, Any]:
        """Counts for an exit summary: machines, transitions, memory estimate."""
        return {
            "machines": len(self.machines),
            "connected": sum(1 for m in self.machines.values() if m.connected),
            "transitions": self.tx_count,
            "dropped": sum(m.dropped for m in self.machines.values()),
            "mem_bytes": self.mem,
            "gc_dropped": self.gc_dropped,
            "refused": self.refused,
        }
