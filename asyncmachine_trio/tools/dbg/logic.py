"""The debugger's own logic, as an asyncmachine (no UI).

:class:`Debugger` holds the cursor (machine, transition, resolution step),
the play mode, the filters, the selected state, the search and the
breakpoints. Its mode lives in a machine with the states of
:class:`DbgStates` (``Tail``, ``Playing``, ``Paused``, ``ClientConnected``,
the ``Filter*`` states, ``StateSelected``, ``BreakpointHit`` ...), so tests
and scripts drive and check it by states::

    dbg = Debugger(store)
    dbg.mach.add1("FilterCanceled")   # same as pressing the key
    assert dbg.mach.is1("Tail")

The machine is a plain asyncmachine-trio machine: the library runs on asyncio
through anyio, so it lives in Textual's event loop as it is (no trio guest
mode, no second thread). Every handler here is synchronous.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Sequence

from ... import Machine, State, States
from .address import Address, AddressError
from .store import Filters, MachineData, Store, Tx

__all__ = ["FILTER_STATES", "HISTORY_MAX", "LOG_LEVELS", "VIEWS", "DbgStates", "Debugger"]


class DbgStates(States):
    """States of the debugger's own machine."""

    #: at least one client is connected
    ClientConnected = State()
    #: follow the newest transition of the selected machine
    Tail = State(remove=("Playing", "Paused"))
    #: step forward by itself (the UI's timer calls :meth:`Debugger.play_tick`)
    Playing = State(remove=("Tail", "Paused"))
    Paused = State(remove=("Tail", "Playing"))
    MachineSelected = State()
    #: a state of the selected machine is selected (state jumps, highlights)
    StateSelected = State(require=("MachineSelected",))
    #: a breakpoint matched: the cursor stopped at the transition that activated the state
    BreakpointHit = State(add=("Paused",))
    Searching = State()
    FilterCanceled = State()
    FilterQueued = State()
    FilterAuto = State()
    FilterAutoCanceled = State()
    FilterEmpty = State()
    FilterHealth = State()
    FilterChecks = State()
    FilterDisconnected = State()
    #: a schema group restricts the tree (:attr:`Debugger.group`)
    GroupSelected = State(require=("MachineSelected",))
    #: with a group selected: skip transitions calling no state of the group
    FilterGroup = State()
    #: the log reader pane is shown
    LogReader = State()
    #: the matrix view replaces the log
    MatrixView = State(remove=("RainView",))
    #: the rain view replaces the log
    RainView = State(remove=("MatrixView",))
    #: the rain shows every machine's transitions, merged by human time
    RainAll = State()
    #: the toolbar has the focus (keys move between its buttons)
    ToolbarFocused = State()


S = DbgStates

#: the views ``alt+m`` cycles through (``""``: tree and log)
VIEWS: tuple[str, ...] = ("", S.MatrixView, S.RainView)
#: log levels: a line with a level shows when its level is at most the chosen one
#: (0 hides every levelled line); lines without a level show at every level
LOG_LEVELS = range(6)
#: entries the address history keeps at most
HISTORY_MAX = 100


#: filter state -> :class:`Filters` field
FILTER_STATES: dict[str, str] = {
    S.FilterCanceled: "canceled",
    S.FilterQueued: "queued",
    S.FilterAuto: "auto",
    S.FilterAutoCanceled: "auto_canceled",
    S.FilterEmpty: "empty",
    S.FilterHealth: "health",
    S.FilterChecks: "checks",
    S.FilterDisconnected: "disconnected",
}


class _Handlers:
    """The debugger machine's handlers (all synchronous)."""

    def __init__(self, dbg: Debugger) -> None:
        self._dbg = dbg

    def tail_state(self, _e: object) -> None:
        """Entering ``Tail``: jump to the newest transition."""
        self._dbg.last()


class Debugger:
    """Cursor, modes and queries over a :class:`Store` (what the UI renders).

    Positions are 1-based indexes into the selected machine's stored
    transitions (0: before the first one); ``step`` counts the resolution
    steps of the *next* transition already walked (0: none).
    """

    def __init__(
        self,
        store: Store,
        *,
        filters: Filters | None = None,
        tail: bool = True,
        reader: bool = True,
        log_level: int = 2,
    ) -> None:
        self.store = store
        self.mach = Machine(DbgStates, id="am-dbg", handlers=_Handlers(self), tags=["am-dbg"])
        self.machine_id = ""
        self.pos = 0
        self.step = 0
        self.selected_state = ""
        #: state names: reaching a transition that activates one pauses (any machine)
        self.breakpoints: set[str] = set()
        #: where the last breakpoint matched: (machine id, position, state)
        self.hit: tuple[str, int, str] | None = None
        self.search = ""
        self.message = ""
        self._bp_scanned: dict[str, int] = {}
        #: the selected schema group (``""``: all states)
        self.group = ""
        #: log lines above this level are hidden (lines without a level always show)
        self.log_level = log_level
        #: text typed into the search line: filters the schema tree as you type
        self.tree_filter = ""
        #: visited ``mach://`` addresses (back / forward) and the index of the current one
        self.history: list[str] = []
        self.hist_i = -1
        self._group_views: dict[tuple[object, ...], tuple[array[int], int]] = {}
        if filters is not None:
            self.set_filters(filters)
        self.mach.add1(S.Tail if tail else S.Paused)
        if reader:
            self.mach.add1(S.LogReader)

    # ----- properties

    @property
    def filters(self) -> Filters:
        """The filters, as the ``Filter*`` states say."""
        is1 = self.mach.is1
        return Filters(**{f: is1(s) for s, f in FILTER_STATES.items()})

    def set_filters(self, filters: Filters) -> None:
        """Switch the ``Filter*`` states to ``filters``."""
        on = [s for s, f in FILTER_STATES.items() if getattr(filters, f)]
        off = [s for s in FILTER_STATES if s not in on]
        if off:
            self.mach.remove(off)
        if on:
            self.mach.add(on)
        self._snap()

    def toggle_filter(self, state: str) -> None:
        """Toggle one ``Filter*`` state and keep the cursor on a visible transition."""
        if state not in FILTER_STATES:
            raise KeyError(f"not a filter state: {state!r}; known: {', '.join(FILTER_STATES)}")
        self.mach.toggle1(state)
        self._snap()

    @property
    def md(self) -> MachineData | None:
        """The selected machine."""
        return self.store.machines.get(self.machine_id)

    def view(self) -> Sequence[int]:
        """Positions of the selected machine's transitions the filters keep."""
        md = self.md
        if md is None:
            return ()
        v = md.view(self.filters)
        if self.group and self.mach.is1(S.FilterGroup):
            return self._group_view(md, v)
        return v

    def filtered(self) -> bool:
        """Whether any filter hides transitions of the selected machine."""
        return self.filters.key() != (0, False) or bool(self.group and self.mach.is1(S.FilterGroup))

    def _group_view(self, md: MachineData, v: Sequence[int]) -> Sequence[int]:
        """``v`` minus the transitions calling no state of the selected group
        (cached per machine, filters and group; extended incrementally)."""
        members = frozenset(self.group_states(md))
        key = (md.id, md.offset, self.filters.key(), self.group)
        cached = self._group_views.get(key)
        out, upto = cached if cached is not None else (array("I"), 0)
        if upto > len(v):
            out, upto = array("I"), 0
        txs = md.txs
        out.extend(p for p in v[upto:] if not members.isdisjoint(txs[p - 1].called))
        if cached is None and len(self._group_views) > 64:
            self._group_views.clear()
        self._group_views[key] = (out, len(v))
        return out

    # ----- groups

    def groups(self) -> list[str]:
        """The selected machine's schema groups, in order."""
        md = self.md
        if md is None:
            return []
        order = list(md.schema.groups_order)
        return order + [g for g in md.schema.groups if g not in order]

    def group_states(self, md: MachineData | None = None) -> list[int]:
        """Indexes of the selected group's states (every state without a group)."""
        md = md or self.md
        if md is None:
            return []
        if not self.group or self.group not in md.schema.groups:
            return list(range(len(md.names)))
        return [i for i in md.schema.groups[self.group] if i < len(md.names)]

    def select_group(self, group: str) -> None:
        """Restrict the tree (and with ``FilterGroup`` the transitions) to ``group``
        (``""``: all states); ``KeyError`` for a group the machine does not have."""
        if group and group not in self.groups():
            raise KeyError(
                f"no group {group!r} in machine {self.machine_id!r};"
                f" known: {', '.join(self.groups()) or 'none'}"
            )
        self.group = group
        if group:
            self.mach.add1(S.GroupSelected)
        else:
            self.mach.remove1(S.GroupSelected)
        self._snap()

    def cycle_group(self) -> str:
        """Select the next group (after the last: all states); returns it."""
        gs = ["", *self.groups()]
        i = gs.index(self.group) if self.group in gs else 0
        self.select_group(gs[(i + 1) % len(gs)])
        return self.group

    def toggle_group_filter(self) -> None:
        """Toggle ``FilterGroup`` and keep the cursor on a visible transition."""
        self.mach.toggle1(S.FilterGroup)
        self._snap()

    def tree_states(self) -> list[str]:
        """The states the schema tree shows: the selected group's, narrowed to those
        containing :attr:`tree_filter` when any does."""
        md = self.md
        if md is None:
            return []
        names = md.names
        shown = [names[i] for i in self.group_states(md)]
        t = self.tree_filter.lower()
        if t:
            hit = [n for n in shown if t in n.lower()]
            if hit:
                return hit
        return shown

    def related(self) -> dict[str, list[str]]:
        """Relations of the selected state, both ways: state -> labels such as
        ``"require"`` (the selected state requires it) or ``"<add"`` (it adds the
        selected state)."""
        md = self.md
        sel = self.selected_state
        out: dict[str, list[str]] = {}
        if md is None or not sel:
            return out
        for rec in md.schema.states:
            for rel in ("require", "add", "remove", "after"):
                targets = getattr(rec, rel) or ()
                if rec.name == sel:
                    for t in targets:
                        out.setdefault(t, []).append(rel)
                elif sel in targets:
                    out.setdefault(rec.name, []).append("<" + rel)
        return out

    # ----- views, reader, log level

    def view_mode(self) -> str:
        """The view replacing the log (``MatrixView`` / ``RainView``) or ``""``."""
        for v in VIEWS[1:]:
            if self.mach.is1(v):
                return v
        return ""

    def cycle_view(self) -> str:
        """Log -> matrix -> rain -> log; returns the view state (``""``: log)."""
        i = VIEWS.index(self.view_mode())
        nxt = VIEWS[(i + 1) % len(VIEWS)]
        self.set_view(nxt)
        return nxt

    def set_view(self, view: str) -> None:
        """Show ``view`` (a :data:`VIEWS` state, ``""``: the log)."""
        if view not in VIEWS:
            raise KeyError(f"not a view: {view!r}; known: {', '.join(v for v in VIEWS if v)}")
        if view:
            self.mach.add1(view)
        else:
            self.mach.remove([v for v in VIEWS if v])

    def rain_all(self, rows: int) -> list[tuple[MachineData, int]]:
        """``rows`` transitions of every shown machine around the cursor's human time,
        oldest first, as ``(machine, 1-based position)``; the cursor's transition
        is about a third from the top. Each machine's own filters are applied; a
        machine only looks at ``rows`` transitions either side (binary search)."""
        t = self.human_time()
        filters = self.filters
        cand: list[tuple[int, str, int, MachineData]] = []
        for _depth, md in self.store.tree(filters):
            v = md.view(filters)
            if not v:
                continue
            p = md.pos_at_ns(t)
            i = bisect.bisect_right(v, p)
            times = md.times_ns
            for k in range(max(0, i - rows), min(len(v), i + rows)):
                pos = v[k]
                cand.append((times[pos - 1], md.id, pos, md))
        cand.sort(key=lambda c: (c[0], c[1], c[2]))
        md0 = self.md
        at = 0
        for k, c in enumerate(cand):
            if md0 is not None and c[1] == md0.id and c[2] <= self.pos:
                at = k
        lo = max(0, min(at - rows // 3, len(cand) - rows))
        return [(c[3], c[2]) for c in cand[lo : lo + rows]]

    def cycle_log_level(self) -> int:
        """The next log level (0..5, wrapping); returns it."""
        self.log_level = (self.log_level + 1) % len(LOG_LEVELS)
        return self.log_level

    # ----- address history

    def remember(self) -> None:
        """Record the cursor's address in the history (unless it is the current entry);
        forward entries are dropped, as in a browser."""
        addr = str(self.address())
        if addr == "mach://-":
            return
        if 0 <= self.hist_i < len(self.history) and self.history[self.hist_i] == addr:
            return
        del self.history[self.hist_i + 1 :]
        self.history.append(addr)
        if len(self.history) > HISTORY_MAX:
            del self.history[: len(self.history) - HISTORY_MAX]
        self.hist_i = len(self.history) - 1

    def history_back(self) -> bool:
        """Go to the previous address of the history; False at its start."""
        self.remember()
        if self.hist_i <= 0:
            return False
        self.hist_i -= 1
        self.goto(self.history[self.hist_i], remember=False)
        return True

    def history_fwd(self) -> bool:
        """Go to the next address of the history; False at its end."""
        if self.hist_i >= len(self.history) - 1:
            return False
        self.hist_i += 1
        self.goto(self.history[self.hist_i], remember=False)
        return True

    @property
    def tx(self) -> Tx | None:
        """The transition at the cursor (None before the first)."""
        md = self.md
        if md is None or self.pos <= 0 or self.pos > len(md.txs):
            return None
        return self.tx_at(self.pos)

    def tx_at(self, pos: int) -> Tx:
        """The selected machine's transition at 1-based ``pos`` (what the log, the
        reader and the bars show; one place to read transitions from)."""
        md = self.md
        if md is None:
            raise KeyError("no machine selected")
        return md.txs[pos - 1]

    @property
    def next_tx(self) -> Tx | None:
        """The transition after the cursor (the one whose steps timeline 2 walks)."""
        md = self.md
        if md is None:
            return None
        v = self.view()
        i = bisect.bisect_right(v, self.pos)
        if i < len(v):
            return md.txs[v[i] - 1]
        return None

    def time(self) -> Sequence[int]:
        """Clocks of the selected machine at the cursor."""
        md = self.md
        return md.time_at(self.pos) if md is not None else ()

    def human_time(self) -> int:
        """Wall-clock time (ns) at the cursor (time travel keeps it across machines)."""
        md = self.md
        if md is None:
            return 0
        if self.pos <= 0 or not md.txs:
            return md.first_ns
        return md.txs[self.pos - 1].time_ns

    def number(self) -> tuple[int, int]:
        """``(filtered index, filtered count)`` of the cursor (1-based, 0: before the first)."""
        v = self.view()
        return bisect.bisect_right(v, self.pos), len(v)

    def address(self) -> Address:
        """The ``mach://`` address of the cursor."""
        md = self.md
        tx = self.tx
        if md is None:
            return Address("-")
        return Address(md.id, tx.id if tx else "", self.step, self.selected_state)

    # ----- selection and navigation

    def select_machine(self, machine_id: str, *, keep_time: bool = True) -> None:
        """Show ``machine_id``; with ``keep_time`` at the transition nearest the current
        human time (time travel), else at its newest transition."""
        md = self.store.get(machine_id)
        t = self.human_time() if keep_time and self.md is not None else None
        self.machine_id = machine_id
        self.step = 0
        if self.selected_state and self.selected_state not in md.index:
            self.selected_state = ""
            self.mach.remove1(S.StateSelected)
        if self.group and self.group not in md.schema.groups:
            self.group = ""
            self.mach.remove1(S.GroupSelected)
        self.mach.add1(S.MachineSelected)
        if t is None or self.mach.is1(S.Tail):
            self.pos = len(md.txs)
        else:
            self.pos = md.pos_at_ns(t)
        self._snap()

    def select_state(self, name: str) -> None:
        """Select a state of the selected machine (``""``: none)."""
        md = self.md
        if not name:
            self.selected_state = ""
            self.mach.remove1(S.StateSelected)
            return
        if md is None or name not in md.index:
            raise KeyError(f"no state {name!r} in machine {self.machine_id!r}")
        self.selected_state = name
        self.mach.add1(S.StateSelected)

    def _user_move(self) -> None:
        if self.mach.any1(S.Tail, S.Playing):
            self.mach.add1(S.Paused)

    def _go(self, pos: int) -> None:
        md = self.md
        n = len(md.txs) if md is not None else 0
        self.pos = max(0, min(pos, n))
        self.step = 0

    def _snap(self) -> None:
        """Keep the cursor on a visible transition (or 0)."""
        v = self.view()
        if self.pos == 0 or not v:
            self.pos = 0 if not v else self.pos
            return
        i = bisect.bisect_right(v, self.pos)
        self.pos = v[i - 1] if i else 0

    def fwd(self, n: int = 1, *, user: bool = True) -> bool:
        """Move ``n`` visible transitions forward; False when already at the end."""
        if user:
            self._user_move()
        v = self.view()
        i = bisect.bisect_right(v, self.pos)
        if i >= len(v):
            return False
        self._go(v[min(i + n - 1, len(v) - 1)])
        return True

    def back(self, n: int = 1) -> bool:
        """Move ``n`` visible transitions back (to 0 before the first)."""
        self._user_move()
        v = self.view()
        i = bisect.bisect_left(v, self.pos)
        if self.pos == 0:
            return False
        j = i - n
        self._go(v[j] if j >= 0 else 0)
        return True

    def first(self) -> None:
        """Before the first transition (initial clocks)."""
        self._user_move()
        self.remember()
        self._go(0)
        self.remember()

    def last(self) -> None:
        """The newest visible transition."""
        v = self.view()
        self._go(v[-1] if v else 0)

    def goto_pos(self, pos: int) -> None:
        """Jump to 1-based position ``pos`` (pausing play / tail), remembered in the history."""
        self._user_move()
        self.remember()
        self._go(pos)
        self.remember()

    def step_fwd(self) -> bool:
        """Walk one resolution step of the next transition; past the last one: next tx."""
        nxt = self.next_tx
        if nxt is None:
            return False
        self._user_move()
        if self.step < len(nxt.steps):
            self.step += 1
            return True
        return self.fwd(user=False)

    def step_back(self) -> bool:
        """One resolution step back (or to the last step of the previous transition)."""
        self._user_move()
        if self.step > 0:
            self.step -= 1
            return True
        if not self.back():
            return False
        nxt = self.next_tx
        self.step = len(nxt.steps) if nxt is not None else 0
        return True

    def jump_state(self, forward: bool) -> bool:
        """To the next / previous transition that added, removed or called the selected
        state (or 50 transitions without a selected state)."""
        md = self.md
        if md is None:
            return False
        if not self.selected_state:
            return self.fwd(50) if forward else self.back(50)
        idx = md.index[self.selected_state]
        v = self.view()
        txs = md.txs
        if forward:
            i = bisect.bisect_right(v, self.pos)
            rng = range(i, len(v))
        else:
            i = bisect.bisect_left(v, self.pos)
            rng = range(i - 1, -1, -1)
        for k in rng:
            tx = txs[v[k] - 1]
            if idx in tx.added or idx in tx.removed or idx in tx.called:
                self._user_move()
                self.remember()
                self._go(v[k])
                self.remember()
                return True
        return False

    def goto(self, addr: Address | str, *, remember: bool = True) -> None:
        """Open a ``mach://`` address (machine, transition, step, state); with
        ``remember`` the history records where the cursor was and where it went."""
        a = Address.parse(addr) if isinstance(addr, str) else addr
        md = self.store.get(a.machine_id)
        if remember:
            self.remember()
        self._goto(a, md)
        if remember:
            self.remember()

    def _goto(self, a: Address, md: MachineData) -> None:
        self.mach.add1(S.Paused)
        self.select_machine(a.machine_id, keep_time=False)
        pos = len(md.txs)
        num = a.tx_number()
        if num is not None:
            pos = num - md.offset
            if not 0 <= pos <= len(md.txs):
                raise AddressError(f"transition #{num} of {md.id!r} is not stored")
        elif a.tx:
            pos = md.find_id(a.tx)
            if not pos:
                raise AddressError(f"no transition {a.tx!r} in machine {md.id!r}")
        elif a.machine_time is not None:
            sums = [t.time_sum() for t in md.txs]
            pos = min(bisect.bisect_left(sums, a.machine_time) + 1, len(md.txs))
        elif a.human_time_ns is not None:
            pos = md.pos_at_ns(a.human_time_ns)
        self._go(pos)
        self.step = a.step
        self.select_state(a.state)

    # ----- play, tail, new data

    def play_tick(self) -> bool:
        """One tick of ``Playing`` (the UI calls it every 500 ms): one transition forward."""
        if not self.mach.is1(S.Playing):
            return False
        moved = self.fwd(user=False)
        if moved:
            self._check_bp_at(self.machine_id, self.pos)
        else:
            self.mach.add1(S.Paused)
        return moved

    def toggle_play(self) -> None:
        """Space: play / pause."""
        if self.mach.is1(S.Playing):
            self.mach.add1(S.Paused)
        else:
            self.mach.remove1(S.BreakpointHit)
            self.mach.add1(S.Playing)

    def toggle_tail(self) -> None:
        """Follow the newest transition, or stop following."""
        if self.mach.is1(S.Tail):
            self.mach.add1(S.Paused)
        else:
            self.mach.remove1(S.BreakpointHit)
            self.mach.add1(S.Tail)

    def refresh(self) -> None:
        """New data arrived (the UI calls it once per batch): connection state,
        breakpoints, tail mode, the first machine."""
        store = self.store
        if any(m.connected for m in store.machines.values()):
            self.mach.add1(S.ClientConnected)
        else:
            self.mach.remove1(S.ClientConnected)
        if not self.machine_id or self.machine_id not in store.machines:
            tree = store.tree(self.filters)
            if tree:
                self.select_machine(tree[0][1].id, keep_time=False)
        if self.breakpoints and self.mach.is1(S.Tail):
            for mid, md in store.machines.items():
                start = self._bp_scanned.get(mid, 0)
                if start > len(md.txs):  # memory cap dropped some
                    start = 0
                for pos in range(start + 1, len(md.txs) + 1):
                    if self._check_bp_at(mid, pos):
                        self._bp_scanned[mid] = pos
                        return
                self._bp_scanned[mid] = len(md.txs)
        if self.mach.is1(S.Tail):
            self.last()

    def _check_bp_at(self, mid: str, pos: int) -> bool:
        md = self.store.machines[mid]
        tx = md.txs[pos - 1]
        if not tx.added:
            return False
        names = md.names
        for i in tx.added:
            if i < len(names) and names[i] in self.breakpoints:
                self.hit = (mid, pos, names[i])
                self.mach.add1(S.Paused)
                self.machine_id = mid
                self._go(pos)
                self.mach.add1(S.BreakpointHit)
                self.message = f"breakpoint: {names[i]} activated in {mid}"
                return True
        return False

    def toggle_breakpoint(self, state: str) -> bool:
        """Add or remove a "pause when ``state`` activates" breakpoint; True when set."""
        if state in self.breakpoints:
            self.breakpoints.discard(state)
            return False
        self.breakpoints.add(state)
        # only new transitions count
        self._bp_scanned = {mid: len(md.txs) for mid, md in self.store.machines.items()}
        return True

    # ----- search

    def matches(self, pos: int, text: str) -> bool:
        """Whether the transition at ``pos`` mentions ``text`` (case-insensitive): its id,
        called / added / removed state names, args and log lines."""
        md = self.md
        if md is None:
            return False
        tx = md.txs[pos - 1]
        t = text.lower()
        if t in tx.id.lower():
            return True
        names = md.names
        for group in (tx.called, tx.added, tx.removed):
            for i in group:
                if i < len(names) and t in names[i].lower():
                    return True
        for k, v in tx.args.items():
            if t in k.lower() or t in v.lower():
                return True
        return any(t in line.lower() for line in tx.logs) or any(
            t in line.lower() for line in tx.pre_logs
        )

    def find(self, text: str, forward: bool = True, *, remember: bool = True) -> bool:
        """Move to the next (previous) visible transition matching ``text``, wrapping
        (with ``remember``, recorded in the address history)."""
        self.search = text
        if not text:
            return False
        self.mach.add1(S.Searching)
        v = list(self.view())
        if not v:
            return False
        i = bisect.bisect_right(v, self.pos) if forward else bisect.bisect_left(v, self.pos) - 1
        n = len(v)
        for k in range(n):
            j = (i + k) % n if forward else (i - k) % n
            if self.matches(v[j], text):
                self._user_move()
                if remember:
                    self.remember()
                self._go(v[j])
                if remember:
                    self.remember()
                self.message = f"/{text}: transition {j + 1} of {n}"
                return True
        self.message = f"/{text}: no match"
        return False
