"""The am-dbg terminal UI (Textual).

Everything it shows comes from a :class:`~.store.Store`; everything it does is
a call on a :class:`~.logic.Debugger` (whose mode is an asyncmachine). The
telemetry receiver runs in Textual's own asyncio loop through anyio. The
screen is redrawn from a timer when the store changed (10 times a second at
most), never per received message; a key press redraws at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import anyio
from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.events import Click
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, OptionList, Static, Tree
from textual.widgets.option_list import Option
from textual.widgets.tree import TreeNode

from ...telemetry.receiver import Receiver
from .logic import FILTER_STATES, DbgStates, Debugger
from .store import F_AUTO, F_CANCELED, F_CHECK, F_QUEUED, MachineData, Store, Tx

__all__ = ["DbgApp", "HelpScreen", "key_table"]

S = DbgStates
MUTATIONS = {0: "add", 1: "remove", 2: "set", 3: "eval"}
#: how many transitions around the cursor the log pane shows
LOG_WINDOW = 12
#: deviations from the reference's keys (shown in the help screen and the docs)
DEVIATIONS = [
    "Letters do not search-as-you-type in the tree and the machine list: they are bound to"
    " filters and actions here; use / for a free-text search in the transitions and log.",
    "Filters are keys (c q a A e h k d) instead of toolbar buttons; there are no toolbars"
    " (alt+f is not bound).",
    "Alt+n / Alt+p (page down / up) are not bound: PageUp / PageDown scroll the focused pane.",
    "Alt+m cycles tree+log and tree+matrix only; there is no rain view (alt+r).",
    "Alt+o (log reader) is not bound: the reader's source / args / queue facts are part of"
    " the transition bars.",
    "Left / Right are not throttled to one per 200 ms (Textual batches redraws instead).",
]


def _fmt_time(ns: int) -> str:
    if not ns:
        return "-"
    return datetime.fromtimestamp(ns / 1e9).strftime("%H:%M:%S.%f")


def _names(md: MachineData, idx: Sequence[int]) -> list[str]:
    n = md.names
    return [n[i] if i < len(n) else f"#{i}" for i in idx]


class Timeline(Static):
    """A seekable progress bar: ``value`` of ``total``; a click seeks."""

    DEFAULT_CSS = "Timeline { height: 1; }"

    def __init__(self, kind: str, **kw: Any) -> None:
        super().__init__("", **kw)
        self.kind = kind
        self.value = 0
        self.total = 0
        self.title = ""
        self.grey = False

    def show(self, title: str, value: int, total: int, *, grey: bool = False) -> None:
        """Draw ``title`` and the bar at ``value`` / ``total``."""
        self.value, self.total, self.title, self.grey = value, total, title, grey
        width = max(10, self.size.width - len(title) - 2) if self.size.width else 40
        filled = round(width * value / total) if total else 0
        colour = "grey50" if grey else "green"
        bar = f"[{colour}]{'━' * filled}[/][grey30]{'━' * (width - filled)}[/]"
        self.update(Content.from_markup(f"{escape(title)} {bar}"))

    def on_click(self, event: Click) -> None:
        width = max(10, self.size.width - len(self.title) - 2)
        x = event.x - len(self.title) - 1
        if self.total and x >= 0:
            frac = min(1.0, x / width)
            app = self.app
            if isinstance(app, DbgApp):
                app.seek(self.kind, frac)


class HelpScreen(ModalScreen[None]):
    """Keys (generated from the app's bindings), legends and what deviates from the reference."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; height: 90%; border: thick $accent; padding: 0 1;
        background: $surface; }
    """

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.text, id="help-text", markup=False)


class ExportScreen(ModalScreen[str | None]):
    """The export dialog: a file name; Save writes the session to the output directory."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]
    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    ExportScreen > Vertical { width: 60; height: auto; border: thick $accent; padding: 1;
        background: $surface; }
    ExportScreen Horizontal { height: auto; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Export the session to (in the output directory):")
            yield Input("am-dbg-dump", id="export-name")
            with Horizontal():
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed, "#save")
    @on(Input.Submitted)
    def _save(self) -> None:
        self.dismiss(self.query_one(Input).value.strip() or "am-dbg-dump")

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class DbgApp(App[None]):
    """am-dbg: machines on the left, the schema tree, the log; bars and timelines below."""

    TITLE = "am-dbg"
    CSS = """
    #address { height: 1; background: $boost; }
    #main { height: 1fr; }
    #machines { width: 32; border: round $primary-darken-2; }
    #tree { width: 1fr; min-width: 30; border: round $primary-darken-2; }
    #log { width: 1fr; border: round $primary-darken-2; }
    #matrix { width: 1fr; display: none; border: round $primary-darken-2; }
    #machines:focus, #tree:focus { border: round $accent; }
    #log-text { link-style: none; link-style-hover: reverse; }
    .bar { height: 1; }
    #status { height: 1; background: $boost; }
    #search { dock: bottom; display: none; }
    DbgApp.-matrix #log { display: none; }
    DbgApp.-matrix #matrix { display: block; }
    """

    #: the key table; the help screen and docs/am-dbg.md are generated from it
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_play", "Play/pause", priority=True),
        Binding("right", "fwd", "Next tx", priority=True),
        Binding("left", "prev", "Prev tx", priority=True),
        Binding(
            "alt+right,alt+l", "jump_fwd", "Next tx of the selected state / +50", priority=True
        ),
        Binding(
            "alt+left,alt+h", "jump_back", "Prev tx of the selected state / -50", priority=True
        ),
        Binding("alt+k", "step_fwd", "Next step", priority=True),
        Binding("alt+j", "step_back", "Prev step", priority=True),
        Binding("home", "first", "First tx", priority=True),
        Binding("end", "last", "Last tx", priority=True),
        Binding("alt+v", "toggle_tail", "Tail mode", priority=True),
        Binding("alt+e", "expand_all", "Expand/collapse the tree", priority=True),
        Binding("alt+m", "toggle_matrix", "Matrix view", priority=True),
        Binding("alt+s", "export", "Export", priority=True),
        Binding("slash", "search", "Search", priority=True),
        Binding("n", "search_next", "Next match", show=False),
        Binding("N", "search_prev", "Prev match", show=False),
        Binding("b", "breakpoint", "Breakpoint on the selected state"),
        Binding("c", "filter('FilterCanceled')", "Filter canceled", show=False),
        Binding("q", "filter('FilterQueued')", "Filter queued", show=False),
        Binding("a", "filter('FilterAuto')", "Filter auto", show=False),
        Binding("A", "filter('FilterAutoCanceled')", "Filter canceled auto", show=False),
        Binding("e", "filter('FilterEmpty')", "Filter empty", show=False),
        Binding("h", "filter('FilterHealth')", "Filter health", show=False),
        Binding("k", "filter('FilterChecks')", "Filter checks", show=False),
        Binding("d", "filter('FilterDisconnected')", "Hide disconnected", show=False),
        Binding("backspace,alt+d", "remove_machine", "Remove the machine", show=False),
        Binding("question_mark", "help", "Help", priority=True),
        Binding("escape", "escape", "Close / focus", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        store: Store | None = None,
        *,
        debugger: Debugger | None = None,
        listen: tuple[str, int] | None = None,
        output_dir: str | Path = ".",
        select_machine: str = "",
        address: str = "",
        refresh_interval: float = 0.1,
        play_interval: float = 0.5,
        extras: Any = None,
    ) -> None:
        super().__init__()
        #: output files, diagrams web server, forwarding, REPL (an ``extras.Extras``)
        self.extras = extras
        self.store = store if store is not None else Store()
        self.dbg = debugger if debugger is not None else Debugger(self.store)
        self.listen = listen
        self.output_dir = Path(output_dir)
        self.receiver: Receiver | None = None
        self.port = 0
        self._initial_machine = select_machine
        self._initial_address = address
        self._seen = -1
        self._refresh_interval = refresh_interval
        self._play_interval = play_interval
        self._tree_machine = ""
        self._tree_schema: object = None
        self._state_nodes: dict[str, TreeNode[Any]] = {}
        self._list_ids: list[str] = []
        self._expanded = False
        self._widgets: dict[str, Any] = {}
        self._label_keys: dict[str, tuple[object, ...]] = {}
        self._shown: dict[str, object] = {}
        self._main_screen: Any = None
        self._machine_labels: list[tuple[str, str]] = []
        #: redraws done (tests and the benchmark read it)
        self.renders = 0
        self.last_render_s = 0.0

    # ----- layout

    def compose(self) -> ComposeResult:
        yield Static("", id="address")
        with Horizontal(id="main"):
            yield OptionList(id="machines")
            tree: Tree[Any] = Tree("Schema", id="tree")
            tree.show_root = False
            tree.auto_expand = True
            yield tree
            with VerticalScroll(id="log"):
                yield Static("", id="log-text")
            with VerticalScroll(id="matrix"):
                yield Static("", id="matrix-text")
        yield Static("", id="tx-bar", classes="bar")
        yield Timeline("tx", id="timeline1")
        yield Static("", id="next-bar", classes="bar")
        yield Timeline("step", id="timeline2")
        yield Static("", id="status")
        yield Input(placeholder="search transitions and log (enter: find, esc: close)", id="search")
        yield Footer()

    def _w(self, wid: str) -> Any:
        """A widget of the main screen by id (cached; works while a dialog is open)."""
        w = self._widgets.get(wid)
        if w is None:
            w = self._widgets[wid] = self._main_screen.query_one(f"#{wid}")
        return w

    def _set(self, wid: str, content: Any) -> None:
        """Update a Static only when its content changed (no needless repaint)."""
        key = (
            content
            if isinstance(content, str)
            else content.markup
            if isinstance(content, Content)
            else content
        )
        if self._shown.get(wid) == key:
            return
        self._shown[wid] = key
        self._w(wid).update(content)

    async def on_mount(self) -> None:
        self._main_screen = self.screen
        self._w("machines").border_title = "Machines"
        self._w("tree").border_title = "Schema"
        self._w("log").border_title = "Log"
        if self.listen is not None:
            handler = self.extras.handler(self.store) if self.extras is not None else self.store
            self.receiver = Receiver(handler, agent="am-dbg")
            self.run_worker(self._serve(), exclusive=False, group="receiver")
        if self.extras is not None:
            note = lambda line: setattr(self.dbg, "message", line)  # noqa: E731
            self.run_worker(
                self.extras.run(self.store, self.dbg, note=note, redraw=self.render_all)
            )
        self._open_initial()
        self.set_interval(self._refresh_interval, self._poll)
        self.set_interval(self._play_interval, self._play)
        self._poll(force=True)
        self._w("tree").focus()

    def _open_initial(self) -> None:
        """Open ``select_machine`` / the address once their machine is known (a live
        session: when it connects)."""
        addr = self._initial_address
        mid = self._initial_machine
        if addr:
            from .address import Address

            mid = Address.parse(addr).machine_id
        if not mid or mid not in self.store.machines:
            return
        self._initial_machine = self._initial_address = ""
        self.dbg.refresh()
        if addr:
            try:
                self.dbg.goto(addr)
            except (KeyError, ValueError) as err:
                self.dbg.message = str(err).strip("'\"")
        else:
            self.dbg.select_machine(mid, keep_time=False)

    async def _serve(self) -> None:
        assert self.receiver is not None and self.listen is not None
        host, port = self.listen
        async with anyio.create_task_group() as tg:
            self.port = await tg.start(self.receiver.serve, host, port)
            self.dbg.message = f"listening on {host}:{self.port}"

    # ----- refresh

    def _poll(self, force: bool = False) -> None:
        if not self.is_running or self._main_screen is None:
            return
        if not force and self.store.version == self._seen:
            return
        self._seen = self.store.version
        self.store.take_dirty()
        if self._initial_machine or self._initial_address:
            self._open_initial()
        self.dbg.refresh()
        self.render_all()

    def _play(self) -> None:
        if self.dbg.mach.is1(S.Playing):
            self.dbg.play_tick()
            self.render_all()

    def render_all(self) -> None:
        """Redraw every pane from the store and the cursor."""
        t0 = time.perf_counter()
        self._render_machines()
        self._render_tree()
        self._render_bars()
        if self.has_class("-matrix"):
            self._render_matrix()
        else:
            self._render_log()
        self._render_status()
        self.renders += 1
        self.last_render_s = time.perf_counter() - t0

    def _render_machines(self) -> None:
        ol = self._w("machines")
        dbg = self.dbg
        t = dbg.human_time()
        opts: list[Option] = []
        ids: list[str] = []
        for depth, md in self.store.tree(dbg.filters):
            n = md.pos_at_ns(t) if t else len(md.txs)
            later = "+" if n < len(md.txs) else " "
            letters = ""
            now = md.time_at(n)
            for letter, state in (("E", "Exception"), ("S", "Start"), ("R", "Ready")):
                i = md.index.get(state)
                if i is not None and i < len(now) and now[i] % 2:
                    letters += letter
            err = md.is_err_at(n)
            recent_err = not err and any(md.txs[k].flags & 64 for k in range(max(0, n - 100), n))
            style = "red" if err else "#ff87d7" if recent_err else "" if md.connected else "grey50"
            if md.id == dbg.machine_id:
                style = (style + " bold underline").strip()
            label = f"{'-' * depth}{md.id} |{md.offset + n}{later}{letters}"
            text = f"[{style}]{escape(label)}[/]" if style else escape(label)
            opts.append(Option(Content.from_markup(text), id=md.id))
            ids.append(md.id)
        ol.border_title = f"Machines:{len(ids)}"
        labels = [(i, str(o.prompt)) for i, o in zip(ids, opts, strict=True)]
        if [i for i, _ in labels] != [i for i, _ in self._machine_labels]:
            highlighted = ol.highlighted
            ol.set_options(opts)
            if highlighted is not None and highlighted < len(ids):
                ol.highlighted = highlighted
        else:
            for k, ((_, new), (_, old)) in enumerate(
                zip(labels, self._machine_labels, strict=True)
            ):
                if new != old:
                    ol.replace_option_prompt_at_index(k, opts[k].prompt)
        self._machine_labels = labels
        self._list_ids = ids
        if dbg.machine_id in ids and ol.highlighted != ids.index(dbg.machine_id):
            ol.highlighted = ids.index(dbg.machine_id)

    def _build_tree(self, md: MachineData) -> None:
        tree = self._w("tree")
        tree.clear()
        self._state_nodes = {}
        for rec in md.schema.states:
            node = tree.root.add(rec.name, data=("state", rec.name), expand=self._expanded)
            self._state_nodes[rec.name] = node
            for rel in ("require", "add", "remove", "after"):
                targets = getattr(rec, rel)
                if targets:
                    rn = node.add(rel.capitalize(), data=("rel", rel), expand=True)
                    for tname in targets:
                        rn.add_leaf(tname, data=("ref", tname))
            if rec.auto:
                node.add_leaf("Auto", data=("prop", "auto"))
            if rec.multi:
                node.add_leaf("Multi", data=("prop", "multi"))
            if rec.tags:
                tn = node.add("Tags", data=("tags", ""), expand=False)
                for tag in rec.tags:
                    tn.add_leaf(tag, data=("tag", tag))
        self._tree_machine = md.id
        self._tree_schema = md.schema
        self._label_keys = {}

    def _render_tree(self) -> None:
        md = self.dbg.md
        tree = self._w("tree")
        if md is None:
            tree.border_title = "Schema"
            return
        if self._tree_machine != md.id or self._tree_schema is not md.schema:
            self._build_tree(md)
        now = self.dbg.time()
        marks = self._step_marks(md)
        width = max((len(n) for n in md.names), default=4)
        tx = self.dbg.tx
        touched = set(tx.touched) if tx else set()
        called = set(tx.called) if tx else set()
        for rec in md.schema.states:
            name = rec.name
            i = md.index.get(name, -1)
            tick = now[i] if 0 <= i < len(now) else 0
            active = tick % 2 == 1
            err = active and (name == "Exception" or name.startswith("Err"))
            colour = "red" if err else ("#5fd7ff" if rec.multi else "green") if active else "grey62"
            mark = marks.get(name, " ")
            style = colour
            if i in touched:
                style += " bold"
            if i in called:
                style += " underline"
            if name == self.dbg.selected_state:
                style += " reverse"
            multi = "M|" if rec.multi else "  "
            auto = "A" if rec.auto else " "
            bp = "●" if name in self.dbg.breakpoints else " "
            key = (mark, bp, style, multi, auto, tick, width)
            if self._label_keys.get(name) == key:
                continue
            self._label_keys[name] = key
            label = Text(f"{mark}{bp}")
            label.append(name.ljust(width), style=style)
            label.append(f" {multi}{auto} |{tick}")
            self._state_nodes[name].set_label(label)
        tree.border_title = f"Schema:{len(md.names)}"

    def _step_marks(self, md: MachineData) -> dict[str, str]:
        """Per state: the decoration of the next transition's steps walked so far."""
        dbg = self.dbg
        nxt = dbg.next_tx
        out: dict[str, str] = {}
        if nxt is None or not dbg.step:
            return out
        for s in nxt.steps[: dbg.step]:
            name = s.to_state or s.from_state
            if s.type & 64:
                out[s.from_state or name] = "!"
            elif s.type & 4:
                out[name] = "+"
            elif s.type & (8 | 16):
                out[name] = "-"
            elif s.type & 2:
                out[name] = "*"
            elif s.type & 32 and name not in out:
                out[name] = ">"
        return out

    def _tx_line(self, md: MachineData, tx: Tx | None, pos: int, prev: Tx | None) -> str:
        if tx is None:
            return "[grey50]no transition[/]"
        kind = MUTATIONS.get(tx.type, str(tx.type))
        called = " ".join(_names(md, tx.called))
        called_s = f"[grey50]{escape(called)}[/]" if not tx.accepted else f"[b]{escape(called)}[/]"
        dt = ""
        if prev is not None:
            dt = f" Time: +{tx.time_sum() - prev.time_sum()}"
        flags = []
        if tx.flags & F_QUEUED:
            flags.append("[yellow]queued[/]")
        if tx.flags & F_AUTO:
            flags.append("auto")
        if tx.flags & F_CHECK:
            flags.append("check")
        if tx.flags & F_CANCELED:
            flags.append("[red]canceled[/]")
        if len(tx.called) > 1:
            flags.append("multi")
        add = " ".join("+" + n for n in _names(md, tx.added))
        rem = " ".join("-" + n for n in _names(md, tx.removed))
        extra = ""
        if tx.args:
            extra += " (" + " ".join(f"{k}={v}" for k, v in tx.args.items()) + ")"
        if tx.source:
            extra += f" src: {tx.source[0]}/{tx.source[1]}"
        extra += f" qt:{tx.queue_tick}"
        return (
            f"tx #{md.offset + pos} {escape(tx.id)} {kind} {called_s}{dt} {' '.join(flags)}"
            f" [green]{escape(add)}[/] [red]{escape(rem)}[/]{escape(extra)}"
            f"  {_fmt_time(tx.time_ns)}"
        )

    def _render_bars(self) -> None:
        dbg = self.dbg
        md = dbg.md
        mode = (
            "Tail" if dbg.mach.is1(S.Tail) else "Playing" if dbg.mach.is1(S.Playing) else "Paused"
        )
        addr = str(dbg.address())
        self._set("address", Content(addr))
        if md is None:
            self._set("tx-bar", f"{mode} | no machines yet")
            return
        tx = dbg.tx
        prev = md.txs[dbg.pos - 2] if dbg.pos >= 2 else None
        cur = self._tx_line(md, tx, dbg.pos, prev)
        self._set("tx-bar", Content.from_markup(f"[b]{mode}[/] | {cur}"))
        idx, total = dbg.number()
        unf = f" ({md.offset + dbg.pos}/{md.total})" if dbg.filters.key() != (0, False) else ""
        self._w("timeline1").show(f"Transition {idx} / {total}{unf}", idx, total)
        nxt = dbg.next_tx
        nxt_pos = 0
        if nxt is not None:
            v = dbg.view()
            import bisect

            nxt_pos = v[bisect.bisect_right(v, dbg.pos)]
        nline = self._tx_line(md, nxt, nxt_pos, tx) if nxt else "[grey50]no next transition[/]"
        self._set("next-bar", Content.from_markup(f"Next | {nline}"))
        nsteps = len(nxt.steps) if nxt else 0
        self._w("timeline2").show(
            f"Next mutation step {dbg.step} / {nsteps}",
            dbg.step,
            nsteps,
            grey=bool(nxt and not nxt.accepted),
        )

    def _render_log(self) -> None:
        dbg = self.dbg
        md = dbg.md
        out: list[str] = []
        if md is not None:
            v = dbg.view()
            import bisect

            i = bisect.bisect_right(v, dbg.pos)
            lo = max(0, i - LOG_WINDOW)
            hi = min(len(v), i + LOG_WINDOW)
            needle = dbg.search.lower()
            for k in range(lo, hi):
                pos = v[k]
                tx = md.txs[pos - 1]
                cur = pos == dbg.pos
                tag = (
                    "[red]cancl[/]"
                    if not tx.accepted
                    else "[yellow]queue[/]"
                    if tx.flags & F_QUEUED
                    else "auto_"
                    if tx.flags & F_AUTO
                    else "state"
                )
                diff = " ".join(
                    ["+" + n for n in _names(md, tx.added)]
                    + ["-" + n for n in _names(md, tx.removed)]
                ) or " ".join(_names(md, tx.called))
                head = f"#{md.offset + pos} \\[{tag}] {escape(diff)}"
                lines = [head] + [escape(x) for x in (*tx.pre_logs, *tx.logs)]
                style = "reverse" if cur else ""
                for line in lines:
                    text = line
                    if needle and needle in line.lower():
                        text = f"[on dark_goldenrod]{line}[/]"
                    if style:
                        text = f"[{style}]{text}[/]"
                    out.append(f"[@click=app.goto_pos({pos})]{text}[/]")
        body = "\n".join(out) if out else "[grey50](no log)[/]"
        self._set("log-text", Content.from_markup(body))

    def _render_matrix(self) -> None:
        """Relations x states of the selected machine, and this transition's called / ticks."""
        md = self.dbg.md
        if md is None:
            return
        names = md.names
        tx = self.dbg.tx
        width = max((len(n) for n in names), default=4)
        head = " " * (width + 1) + " ".join(f"{i % 100:>2}" for i in range(len(names)))
        rows = [head]
        called = set(tx.called) if tx else set()
        rows.append(
            "called".ljust(width + 1)
            + " ".join(" X" if i in called else " ." for i in range(len(names)))
        )
        before = md.before_of(self.dbg.pos) if tx else md.time_at(0)
        now = self.dbg.time()
        rows.append(
            "ticks".ljust(width + 1)
            + " ".join(
                f"{now[i] - before[i]:>2}" if i < len(now) and i < len(before) else " ."
                for i in range(len(names))
            )
        )
        codes = {"require": "R", "add": "A", "remove": "X", "after": "F"}
        for rec in md.schema.states:
            cells = []
            for target in names:
                c = "".join(
                    code for rel, code in codes.items() if target in (getattr(rec, rel) or ())
                )
                cells.append(f"{c:>2}" if c else " .")
            rows.append(rec.name.ljust(width + 1) + " ".join(cells))
        legend = "R require, A add, X remove, F after; rows: source state, columns: target"
        self._set("matrix-text", Content("\n".join([*rows, "", legend])))

    def _render_status(self) -> None:
        dbg = self.dbg
        st = self.store
        filters = ",".join(dbg.filters.active_names()) or "none"
        bps = ",".join(sorted(dbg.breakpoints)) or "none"
        conn = sum(1 for m in st.machines.values() if m.connected)
        text = (
            f"filters: {filters} | breakpoints: {bps} | machines: {len(st.machines)}"
            f" ({conn} connected) | txs: {st.tx_count} | mem: {st.mem / 1e6:.1f} MB"
        )
        if dbg.message:
            text += f" | {dbg.message}"
        self._set("status", Content(text))

    # ----- events

    @on(OptionList.OptionSelected, "#machines")
    def _machine_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id and event.option.id != self.dbg.machine_id:
            self.dbg.select_machine(event.option.id)
            self.render_all()

    @on(Tree.NodeSelected, "#tree")
    def _node_selected(self, event: Tree.NodeSelected[Any]) -> None:
        data = event.node.data
        if not data:
            return
        kind, name = data
        if kind == "state":
            self.dbg.select_state(name if name != self.dbg.selected_state else "")
            self.render_all()
        elif kind == "ref" and name in self._state_nodes:
            tree = self._w("tree")
            tree.move_cursor(self._state_nodes[name])
            self.dbg.select_state(name)
            self.render_all()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        self.dbg.find(event.value)
        self.render_all()

    # ----- actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # typing in an input (search, export name) keeps its keys
        if isinstance(self.focused, Input) and action not in ("quit", "escape"):
            return False
        return not (isinstance(self.screen, ModalScreen) and action != "quit")

    def _after(self) -> None:
        self.render_all()

    def action_toggle_play(self) -> None:
        self.dbg.toggle_play()
        self._after()

    def action_fwd(self) -> None:
        self.dbg.fwd()
        self._after()

    def action_prev(self) -> None:
        self.dbg.back()
        self._after()

    def action_jump_fwd(self) -> None:
        self.dbg.jump_state(True)
        self._after()

    def action_jump_back(self) -> None:
        self.dbg.jump_state(False)
        self._after()

    def action_step_fwd(self) -> None:
        self.dbg.step_fwd()
        self._after()

    def action_step_back(self) -> None:
        self.dbg.step_back()
        self._after()

    def action_first(self) -> None:
        self.dbg.first()
        self._after()

    def action_last(self) -> None:
        self.dbg.mach.add1(S.Paused)
        self.dbg.last()
        self._after()

    def action_toggle_tail(self) -> None:
        self.dbg.toggle_tail()
        self._after()

    def action_goto_pos(self, pos: int) -> None:
        """Jump to 1-based position ``pos`` of the selected machine (log clicks)."""
        self.dbg.goto_pos(pos)
        self._after()

    def seek(self, kind: str, frac: float) -> None:
        """A click on a timeline: ``frac`` of the transitions (or of the steps)."""
        dbg = self.dbg
        if kind == "tx":
            v = dbg.view()
            if v:
                dbg.goto_pos(v[min(len(v) - 1, int(frac * len(v)))])
        else:
            nxt = dbg.next_tx
            if nxt is not None:
                dbg.step = round(frac * len(nxt.steps))
        self._after()

    def action_filter(self, state: str) -> None:
        self.dbg.toggle_filter(state)
        self._after()

    def action_expand_all(self) -> None:
        self._expanded = not self._expanded
        for node in self._state_nodes.values():
            if self._expanded:
                node.expand_all()
            else:
                node.collapse_all()

    def action_toggle_matrix(self) -> None:
        self.toggle_class("-matrix")
        self._after()

    def action_breakpoint(self) -> None:
        st = self.dbg.selected_state
        if not st:
            self.dbg.message = "select a state (enter in the tree) to set a breakpoint"
        else:
            on_ = self.dbg.toggle_breakpoint(st)
            self.dbg.message = f"breakpoint {'set' if on_ else 'removed'}: {st}"
        self._after()

    def action_search(self) -> None:
        inp = self._w("search")
        inp.display = True
        inp.focus()

    def action_search_next(self) -> None:
        self.dbg.find(self.dbg.search, True)
        self._after()

    def action_search_prev(self) -> None:
        self.dbg.find(self.dbg.search, False)
        self._after()

    def action_escape(self) -> None:
        inp = self._w("search")
        if inp.display:
            inp.display = False
            self.dbg.mach.remove1(S.Searching)
        self._w("tree").focus()

    def action_remove_machine(self) -> None:
        if self.focused is self._w("machines") and self.dbg.machine_id:
            mid = self.dbg.machine_id
            self.store.remove(mid)
            self.dbg.machine_id = ""
            self.dbg.refresh()
            self._after()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(help_text(self)))

    def action_export(self) -> None:
        def done(name: str | None) -> None:
            if name:
                path = self.export(name)
                self.dbg.message = f"exported to {path}"
                self._after()

        self.push_screen(ExportScreen(), done)

    def export(self, name: str) -> Path:
        """Write the session to ``output_dir / name`` (``.amdbg.gz`` added)."""
        from .session import SUFFIX, export_session

        path = self.output_dir / (name if name.endswith(SUFFIX) else name + SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        export_session(self.store, path)
        return path


def key_table(app_cls: type[App[Any]] = DbgApp) -> list[tuple[str, str]]:
    """``(keys, action)`` rows of the bindings (help screen, docs)."""
    rows = []
    for b in app_cls.BINDINGS:
        if isinstance(b, Binding):
            keys = ", ".join(
                k.replace("question_mark", "?").replace("slash", "/") for k in b.key.split(",")
            )
            rows.append((keys, b.description))
    return rows


def help_text(app: DbgApp | None = None) -> str:
    """The help screen: keys from the bindings, legends, deviations, addresses."""
    from ... import __version__

    lines = [f"am-dbg {__version__} - keys (from the bindings)", ""]
    for keys, desc in key_table():
        lines.append(f"  {keys:<22} {desc}")
    lines += [
        "",
        "Legend",
        "  tree: +/- to be activated / deactivated at this step, * handler ran, ! canceled,",
        "       > called; bold = touched, underlined = called, M| multi, A auto, |N tick,",
        "       ● breakpoint; green active, blue active multi, red error, grey inactive",
        "  machines: |N transitions up to the viewed time, + later ones exist,",
        "            R Ready, S Start, E Exception active; red error now, pink error in",
        "            the last 100 transitions, grey disconnected",
        "",
        "Differences from the reference's keys",
        *(f"  - {d}" for d in DEVIATIONS),
    ]
    if app is not None:
        lines += ["", f"Output dir: {app.output_dir}"]
        if app.listen is not None:
            lines.append(f"Listening on {app.listen[0]}:{app.port or app.listen[1]}")
        lines.append(f"Memory (estimate): {app.store.mem / 1e6:.1f} MB")
    lines.append(f"Filter states: {', '.join(FILTER_STATES)}")
    return "\n".join(lines)
