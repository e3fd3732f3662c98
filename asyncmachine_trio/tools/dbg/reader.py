"""The log reader: what is known about the transition at the cursor (no UI).

:func:`read` turns the transition at a :class:`~.logic.Debugger`'s cursor into
:class:`Section` s of :class:`Item` s, some of them links (``mach://``
addresses the UI follows):

* **Source**: the transition (of this or another machine) that caused this
  one, with ``self`` / ``auto`` markers;
* **State trace**: the chain of sources, one hop per line (a "stack trace"
  of states across machines);
* **Queue**: the queue tick, machine tick and queue length, the
  ``[queue:*]`` lines, and for queued entries the link between the entry and
  the transition that ran it;
* **Forks**: transitions of any machine that name this one as their source;
* **Handlers**: the handlers the resolution steps ran (``*Enter``,
  ``*Exit``, ``*State``, ``*End``);
* **Args** of the mutation;
* **Contexts**: state contexts created (``[ctx:new]``) or matched here;
* **Subscriptions**: ``when*`` waiters open at this point (built from the
  ``[when*:new]`` / ``[when*:match]`` lines of the machine's history), and
  those opened / matched here;
* **Pipes in** / **Pipes out**: the ``[pipe-in:*]`` / ``[pipe-out:*]``
  lines, each with a link to the other machine at the same human time.

Sections come from the stored transition (source, args, queue ticks, steps)
and from the *semantic log lines* the machines write; a transition carrying
more (attributes named in :data:`OPTIONAL_FIELDS`, set by newer collectors)
gets more sections with no change here. Empty sections are left out.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .address import Address
from .store import F_AUTO, F_QUEUED, MachineData, Store, Tx

if TYPE_CHECKING:
    from .logic import Debugger

__all__ = ["OPTIONAL_FIELDS", "Item", "Links", "Section", "Subscriptions", "read"]

#: optional transition attributes (``getattr``) -> section title; each
#: non-empty one becomes a section of its own (a sequence or mapping of values)
OPTIONAL_FIELDS: dict[str, str] = {
    "state_trace": "State trace (sent)",
    "queue_token": "Queue token",
    "handlers": "Handlers (sent)",
    "contexts": "Contexts (sent)",
    "subscriptions": "Subscriptions (sent)",
    "pipes_in": "Pipes in (sent)",
    "pipes_out": "Pipes out (sent)",
    "stack": "Stack trace",
}

#: hops of the state trace at most
TRACE_MAX = 16
#: how far (transitions) to look for the other end of a queued entry
QUEUE_SCAN = 1000

_SEMANTIC = re.compile(r"^\[([A-Za-z-]+):?([A-Za-z]*)\] ?(.*)$")
_SUB_KINDS = frozenset({"when", "whenNot", "whenTime", "whenArgs", "whenQuery", "whenQueue"})


@attrs.frozen
class Item:
    """One line of a section; ``address``: a ``mach://`` link to follow."""

    text: str
    address: str = ""


@attrs.frozen
class Section:
    """A titled group of items; ``key`` is stable (the UI remembers expansion by it)."""

    key: str
    title: str
    items: tuple[Item, ...]


def _lines(tx: Tx) -> Iterable[str]:
    yield from tx.pre_logs
    yield from tx.logs


def _semantic_line(line: str) -> Iterable[tuple[str, str, str]]:
    """``(kind, sub, rest)`` of a ``[kind:sub] rest`` log line (nothing for others)."""
    if isinstance(line, str) and line.startswith("["):
        m = _SEMANTIC.match(line)
        if m is not None:
            yield m.group(1), m.group(2), m.group(3)


def _semantic(tx: Tx) -> Iterable[tuple[str, str, str]]:
    """``(kind, sub, rest)`` of the transition's ``[kind:sub] rest`` log lines."""
    for line in _lines(tx):
        yield from _semantic_line(line)


def find_tx(md: MachineData, tx_id: str, machine_time: int = 0) -> int:
    """1-based position of ``tx_id`` in ``md`` (0: not stored). With ``machine_time``
    (the sum of ticks before it) a binary search finds it without a scan."""
    txs = md.txs
    if machine_time and txs:
        i = bisect.bisect_left(txs, machine_time, key=Tx.time_sum)
        for k in range(max(0, i - 1), min(len(txs), i + 64)):
            if txs[k].id == tx_id:
                return k + 1
    return md.find_id(tx_id)


def _addr(mid: str, tx_id: str, state: str = "") -> str:
    return str(Address(mid, tx_id, 0, state))


class Links:
    """Reverse source links over every machine: ``(machine, tx id)`` -> the
    transitions naming it as their source. Built incrementally (only new
    transitions are scanned); rebuilt for a machine whose oldest ones were dropped."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._seen: dict[str, tuple[int, int]] = {}
        self._by_src: dict[tuple[str, str], list[tuple[str, str]]] = {}

    def _update(self) -> None:
        stale = [m for m in self._seen if m not in self.store.machines]
        for mid, md in self.store.machines.items():
            off, upto = self._seen.get(mid, (md.offset, 0))
            if off != md.offset:
                stale.append(mid)
        if stale:
            self._seen.clear()
            self._by_src.clear()
        by_src = self._by_src
        for mid, md in self.store.machines.items():
            _off, upto = self._seen.get(mid, (md.offset, 0))
            txs = md.txs
            for k in range(upto, len(txs)):
                src = txs[k].source
                if src is not None:
                    by_src.setdefault((src[0], src[1]), []).append((mid, txs[k].id))
            self._seen[mid] = (md.offset, len(txs))

    def forks(self, machine_id: str, tx_id: str) -> list[tuple[str, str]]:
        """``(machine, tx id)`` of the transitions whose source is ``tx_id`` of ``machine_id``."""
        self._update()
        return list(self._by_src.get((machine_id, tx_id), ()))


class Subscriptions:
    """The ``when*`` waiters open at a position of a machine, from its log lines.

    Events are extracted once per transition (incrementally); the open set at
    a position is replayed from the nearest earlier result.
    """

    def __init__(self) -> None:
        self._events: dict[str, tuple[int, int, list[tuple[int, bool, str]]]] = {}
        self._last: dict[str, tuple[int, dict[str, int]]] = {}

    @staticmethod
    def key(kind: str, rest: str, opened: bool) -> str:
        """A waiter's identity from its ``new`` / ``match`` line (formats differ a bit)."""
        if kind == "whenTime":
            if opened:  # "A,B 1 2"
                names, _, times = rest.partition(" ")
                return f"whenTime {' '.join(names.split(','))} [{times}]"
            return f"whenTime {rest}"  # "A B [1 2]"
        return f"{kind} {rest}"

    def _update(self, md: MachineData) -> list[tuple[int, bool, str]]:
        off, upto, ev = self._events.get(md.id, (md.offset, 0, []))
        if off != md.offset:
            off, upto, ev = md.offset, 0, []
            self._last.pop(md.id, None)
        txs = md.txs
        for k in range(upto, len(txs)):
            for kind, sub, rest in _semantic(txs[k]):
                if kind in _SUB_KINDS and sub in ("new", "match"):
                    ev.append((k + 1, sub == "new", self.key(kind, rest, sub == "new")))
        self._events[md.id] = (off, len(txs), ev)
        return ev

    def open_at(self, md: MachineData, pos: int) -> list[str]:
        """Waiters opened at or before ``pos`` and not matched by then (``xN``: N alike)."""
        ev = self._update(md)
        start, counts = 0, {}
        last = self._last.get(md.id)
        if last is not None and last[0] <= pos:
            start = bisect.bisect_right(ev, last[0], key=lambda e: e[0])
            counts = dict(last[1])
        for k in range(start, len(ev)):
            p, opened, key = ev[k]
            if p > pos:
                break
            if opened:
                counts[key] = counts.get(key, 0) + 1
            elif counts.get(key):
                counts[key] -= 1
                if not counts[key]:
                    del counts[key]
        self._last[md.id] = (pos, dict(counts))
        return [k if n == 1 else f"{k} x{n}" for k, n in sorted(counts.items())]


def _trace(store: Store, mid: str, tx: Tx) -> list[Item]:
    out: list[Item] = []
    seen: set[tuple[str, str]] = set()
    src = tx.source
    while src is not None and len(out) < TRACE_MAX:
        smid, stx, stime = src
        if (smid, stx) in seen:
            out.append(Item("(cycle)"))
            break
        seen.add((smid, stx))
        md = store.machines.get(smid)
        if md is None:
            out.append(Item(f"{smid}/{stx} (machine not recorded)"))
            break
        pos = find_tx(md, stx, stime)
        if not pos:
            out.append(Item(f"{smid}/{stx} (not stored)", _addr(smid, "")))
            break
        stx_ = md.txs[pos - 1]
        called = " ".join(md.names[i] for i in stx_.called if i < len(md.names))
        out.append(Item(f"{smid} #{md.offset + pos} {called}", _addr(smid, stx)))
        src = stx_.source
    return out


def _queue(md: MachineData, pos: int, tx: Tx) -> list[Item]:
    items = [
        Item(f"queue tick {tx.queue_tick}"),
        Item(f"machine tick {tx.machine_tick}"),
        Item(f"queue length {tx.queue_len}"),
    ]
    for kind, sub, rest in _semantic(tx):
        if kind == "queue" or kind == "postpone":
            items.append(Item(f"[{kind}{':' + sub if sub else ''}] {rest}"))
    txs = md.txs
    same = (tx.type, tx.called)
    if tx.flags & F_QUEUED:
        for k in range(pos, min(len(txs), pos + QUEUE_SCAN)):
            t = txs[k]
            if not t.flags & F_QUEUED and (t.type, t.called) == same:
                items.append(Item(f"executed in #{md.offset + k + 1}", _addr(md.id, t.id)))
                break
        else:
            items.append(Item("not executed (yet) in the stored history"))
    else:
        for k in range(pos - 2, max(-1, pos - 2 - QUEUE_SCAN), -1):
            t = txs[k]
            if t.flags & F_QUEUED and (t.type, t.called) == same:
                items.append(Item(f"queued at #{md.offset + k + 1}", _addr(md.id, t.id)))
                break
    return items


def _handlers(md: MachineData, tx: Tx) -> list[Item]:
    out = []
    for s in tx.steps:
        if not s.type & 2:
            continue
        state = s.to_state or s.from_state
        if s.is_self:
            name = f"{state}{state}"
        elif s.is_final:
            name = state + ("State" if s.is_enter else "End")
        else:
            name = state + ("Enter" if s.is_enter else "Exit")
        out.append(Item(name, _addr(md.id, tx.id, state) if state in md.index else ""))
    return out


def _values(value: Any) -> list[Item]:
    """Items of an optional field: a mapping, a sequence or one value."""
    if isinstance(value, dict):
        return [Item(f"{k}: {v}") for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [
            Item(str(v) if not isinstance(v, (list, tuple)) else " ".join(map(str, v)))
            for v in value
        ]
    return [Item(str(value))]


def _pipe_item(sub: str, rest: str, time_ns: int, prefix: str = "") -> Item:
    other = rest.rsplit(" ", 1)[-1] if " " in rest else ""
    link = str(Address(other, human_time_ns=time_ns)) if other else ""
    return Item(f"{prefix}{sub} {rest}", link)


def read(
    dbg: Debugger, links: Links | None = None, subs: Subscriptions | None = None
) -> list[Section]:
    """The reader's sections for the transition at ``dbg``'s cursor (``[]``: none).

    When the store keeps reader data of its own (a ``MachineData.reader(pos)``
    or a transition's ``reader``, with the contexts, waiters and pipes open
    after it, handlers, the mutation's queue tick), that is used; otherwise the
    open waiters are replayed from the log lines by ``subs``.
    """
    md = dbg.md
    tx = dbg.tx
    if md is None or tx is None:
        return []
    store = dbg.store
    pos = dbg.pos
    out: list[Section] = []
    fn = getattr(md, "reader", None)
    rd: Any = fn(pos) if callable(fn) else None
    opened: Any = getattr(tx, "reader", None)
    if opened is None:
        opened = rd

    def add(key: str, title: str, items: Sequence[Item]) -> None:
        if items:
            out.append(Section(key, f"{title} ({len(items)})", tuple(items)))

    def open_list(name: str) -> list[str]:
        return [str(x) for x in getattr(opened, name, None) or ()]

    src_items: list[Item] = []
    if tx.source is not None:
        smid, stx, stime = tx.source
        mark = " (self)" if smid == md.id else ""
        src_items.append(Item(f"{smid}/{stx} t={stime}{mark}", _addr(smid, stx)))
    if tx.flags & F_AUTO:
        src_items.append(Item("auto (the machine called it itself)"))
    add("source", "Source", src_items)
    add("trace", "State trace", _trace(store, md.id, tx) if tx.source else [])
    queue = _queue(md, pos, tx)
    mqt = getattr(rd, "mut_queue_tick", 0) or getattr(tx, "mut_queue_tick", 0)
    if mqt:
        queue.insert(0, Item(f"queued as queue tick {mqt}"))
    add("queue", "Queue", queue)
    if links is not None:
        forks = []
        for fmid, ftx in links.forks(md.id, tx.id):
            forks.append(
                Item(f"{fmid}/{ftx}" + (" (self)" if fmid == md.id else ""), _addr(fmid, ftx))
            )
        add("forks", "Forks", forks)
    handlers = _handlers(md, tx)
    names = {h.text for h in handlers}
    handlers += [Item(h) for h in getattr(rd, "handlers", None) or () if h not in names]
    add("handlers", "Handlers", handlers)
    add("args", "Args", [Item(f"{k}={v}") for k, v in tx.args.items()])
    ctx: list[Item] = []
    subs_here: list[Item] = []
    pin: list[Item] = []
    pout: list[Item] = []
    for kind, sub, rest in _semantic(tx):
        if kind == "ctx":
            ctx.append(Item(f"{sub} {rest} (t={tx.time_sum()})"))
        elif kind in _SUB_KINDS:
            subs_here.append(Item(f"{kind}:{sub} {rest}"))
        elif kind in ("pipe-in", "pipe-out"):
            (pin if kind == "pipe-in" else pout).append(_pipe_item(sub, rest, tx.time_ns))
    ctx += [Item(f"open: {c}") for c in open_list("contexts")]
    add("contexts", "Contexts", ctx)
    if opened is not None:
        open_now = open_list("subscriptions")
    else:
        open_now = subs.open_at(md, pos) if subs is not None else []
    add("subscriptions", "Subscriptions", [*subs_here, *(Item(f"open: {k}") for k in open_now)])
    # pipes in place after it: lines "[pipe-in:add] A from m1" (in "pipes" or split)
    here = {i.text for i in (*pin, *pout)}
    for line in [*open_list("pipes"), *open_list("pipes_in"), *open_list("pipes_out")]:
        for kind, sub, rest in _semantic_line(line):
            if kind in ("pipe-in", "pipe-out") and f"{sub} {rest}" not in here:
                item = _pipe_item(sub, rest, tx.time_ns, "open: ")
                (pin if kind == "pipe-in" else pout).append(item)
    add("pipes-in", "Pipes in", pin)
    add("pipes-out", "Pipes out", pout)
    for attr, title in OPTIONAL_FIELDS.items():
        value = getattr(tx, attr, None)
        if value:
            add(attr, title, _values(value))
    return out
