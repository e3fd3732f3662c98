"""Files am-dbg writes into its output directory (``--dir``), and their diagrams.

:class:`Outputs` watches the cursor of a :class:`~.logic.Debugger` (machine,
transition, step, selected state, filters) and the store, and rewrites:

* ``tx.md`` — the transition at the cursor as Markdown, with its resolution
  steps and log lines (``--output-tx``, on by default);
* ``log.md`` — the log of the selected machine up to the cursor, at most
  :attr:`OutputOptions.log_window` transitions (``--output-log``);
* ``clients.txt`` — every machine: status, parent, tags, counts, active states
  (``--output-clients``);
* ``graph.md`` — the network graph of the machines (parents, pipes, aRPC
  links) as a Mermaid flowchart (``--output-graph``);
* ``diagrams/`` (``--output-diagrams LEVEL``, 1-3, or while a browser watches
  the diagrams web server): ``steps.mermaid`` / ``steps.mermaid.txt`` (ASCII)
  / ``steps.d2`` / ``steps.svg``, the sequence diagram of the transition at the
  cursor (level 1 and up); ``mach.*`` (the selected machine with its active
  states) and ``state.*`` (the selected state and its neighbours two relations
  out), level 2 and up; ``graph.*`` (all machines; level 3 draws their states
  too). SVGs need the ``d2`` binary (extra ``vis``); without it only the text
  files are written.

Nothing is written per incoming message: :meth:`Outputs.run` looks at the
cursor every ``interval`` seconds (0.5 by default) and writes only when it or
the store changed since the last round, and only the files whose text changed
(atomically: a temporary file renamed over the old one). File writes and
``d2`` run in a worker thread; the texts are made in the event loop, so the
store is never read from two threads. It runs on trio (headless) and on
asyncio (the TUI).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs

from .logic import Debugger
from .store import F_AUTO, F_CANCELED, F_CHECK, F_QUEUED, MachineData, Store, Tx

__all__ = [
    "DIAGRAM_TYPES",
    "OutputError",
    "OutputOptions",
    "Outputs",
    "clients_text",
    "d2_sequence",
    "graph_of",
    "log_markdown",
    "tx_markdown",
]

#: the diagrams the web server shows (``diagrams/<type>.svg`` / ``.mermaid``)
DIAGRAM_TYPES = ("mach", "graph", "state", "steps")
_MUTATIONS = {0: "add", 1: "remove", 2: "set", 3: "eval"}
#: states the ``state`` diagram does not walk through (everything relates to them)
_SKIP_NEIGHBOURS = frozenset({"Start", "Ready", "Exception"})


class OutputError(Exception):
    """A file of the output directory could not be written (the message names it)."""


@attrs.frozen
class OutputOptions:
    """Which files :class:`Outputs` writes, and where."""

    dir: Path = attrs.field(default=Path("."), converter=Path)
    tx: bool = True
    log: bool = False
    clients: bool = False
    graph: bool = False
    #: diagram detail: 0 off, 1 steps, 2 + machine and state, 3 + states in the graph
    diagrams: int = attrs.field(default=0)
    #: seconds between two looks at the cursor (the debounce)
    interval: float = 0.5
    #: transitions ``log.md`` holds at most (the newest ones up to the cursor)
    log_window: int = 1000

    @diagrams.validator
    def _check_level(self, _a: Any, value: int) -> None:
        if not 0 <= value <= 3:
            raise ValueError(f"--output-diagrams must be 0-3, got {value}")


def _names(md: MachineData, idx: Iterable[int]) -> list[str]:
    n = md.names
    return [n[i] if i < len(n) else f"#{i}" for i in idx]


def _iso(ns: int) -> str:
    if not ns:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="microseconds")


def _kind(tx: Tx) -> str:
    if tx.flags & F_QUEUED:
        return "queue"
    if tx.flags & F_CANCELED:
        return "cancl"
    if tx.flags & F_AUTO:
        return "auto_"
    return "state"


def _flags(tx: Tx) -> list[str]:
    out = []
    if tx.flags & F_CANCELED:
        out.append("canceled")
    else:
        out.append("accepted")
    if tx.flags & F_AUTO:
        out.append("auto")
    if tx.flags & F_QUEUED:
        out.append("queued")
    if tx.flags & F_CHECK:
        out.append("check")
    return out


def _sequence(md: MachineData, pos: int) -> Any:
    from ...vis.seq import sequence_of

    return sequence_of(md.record(pos), md.names)


def tx_markdown(dbg: Debugger) -> str:
    """The transition at ``dbg``'s cursor as Markdown: facts, steps, log lines, active states."""
    md = dbg.md
    if md is None:
        return "# am-dbg\n\nNo machine selected yet.\n"
    tx = dbg.tx
    lines = [f"# {md.id}: transition {md.offset + dbg.pos} of {md.total}", ""]
    lines.append(f"- address: `{dbg.address()}`")
    if tx is None:
        lines.append("- before the first transition (the initial clocks)")
    else:
        before = md.before_of(dbg.pos)
        lines += [
            f"- id: `{tx.id}`",
            f"- mutation: {_MUTATIONS.get(tx.type, str(tx.type))}"
            f" {' '.join(_names(md, tx.called)) or '-'}",
            f"- result: {', '.join(_flags(tx))}",
            f"- machine time: {sum(before)} -> {tx.time_sum()}",
            f"- added: {' '.join(_names(md, tx.added)) or '-'}",
            f"- removed: {' '.join(_names(md, tx.removed)) or '-'}",
            f"- touched: {' '.join(_names(md, tx.touched)) or '-'}",
            f"- queue tick: {tx.queue_tick}, machine tick: {tx.machine_tick},"
            f" queue length: {tx.queue_len}",
            f"- human time: {_iso(tx.time_ns)}",
        ]
        if tx.args:
            lines.append("- args: " + ", ".join(f"`{k}={v}`" for k, v in tx.args.items()))
        if tx.source:
            lines.append(f"- source: `{tx.source[0]}/{tx.source[1]}` at t{tx.source[2]}")
        lines += ["", f"## Steps ({len(tx.steps)})", ""]
        if tx.steps:
            seq = _sequence(md, dbg.pos)
            for i, st in enumerate(seq.steps, 1):
                arrow = st.source if st.source == st.target else f"{st.source} -> {st.target}"
                lines.append(f"{i}. {arrow}: {st.label}")
        else:
            lines.append("(the machine sent no resolution steps)")
        logs = [*tx.pre_logs, *tx.logs]
        lines += ["", f"## Log ({len(logs)})", ""]
        if logs:
            lines += ["```", *logs, "```"]
        else:
            lines.append("(no log lines)")
    t = md.time_at(dbg.pos)
    active = [n for i, n in enumerate(md.names) if i < len(t) and t[i] % 2]
    lines += ["", "## Active states", ""]
    lines.append(" ".join(f"{n}:{t[md.index[n]]}" for n in active) or "(none)")
    return "\n".join(lines) + "\n"


def log_markdown(dbg: Debugger, window: int = 1000) -> str:
    """The log of the selected machine: the last ``window`` visible transitions up to
    the cursor, each headed ``#N [kind] +added -removed``."""
    md = dbg.md
    if md is None:
        return "# am-dbg log\n\nNo machine selected yet.\n"
    import bisect

    view = dbg.view()
    end = bisect.bisect_right(view, dbg.pos)
    start = max(0, end - window)
    lines = [f"# {md.id}: log up to transition {md.offset + dbg.pos}", ""]
    if start:
        lines += [f"({start} earlier transitions not shown)", ""]
    for k in range(start, end):
        pos = view[k]
        tx = md.txs[pos - 1]
        head = f"#{md.offset + pos} [{_kind(tx)}]"
        changes = [
            *("+" + n for n in _names(md, tx.added)),
            *("-" + n for n in _names(md, tx.removed)),
        ]
        if not changes:
            changes = _names(md, tx.called)
        lines.append(f"{head} {' '.join(changes)}".rstrip())
        for ln in (*tx.pre_logs, *tx.logs):
            lines.append(f"    {ln}")
    return "\n".join(lines) + "\n"


def clients_text(store: Store) -> str:
    """Every machine, nested by parent: status, parent, tags, counts and active states."""
    lines = [f"{len(store.machines)} machines, {store.clients} clients connected", ""]
    for depth, md in store.tree():
        status = "gone" if md.gone else "connected" if md.connected else "disconnected"
        t = md.time_at(len(md.txs))
        active = [n for i, n in enumerate(md.names) if i < len(t) and t[i] % 2]
        ind = "  " * depth
        lines.append(f"{ind}{md.id}")
        lines.append(f"{ind}  status: {status}")
        lines.append(f"{ind}  parent: {md.parent_id or '-'}")
        lines.append(f"{ind}  tags: {', '.join(md.tags) or '-'}")
        lines.append(
            f"{ind}  transitions: {md.total} ({len(md.txs)} stored), dropped: {md.dropped},"
            f" states: {len(md.names)}, time: {sum(t)}"
        )
        lines.append(f"{ind}  active: {' '.join(active) or '-'}")
        lines.append(f"{ind}  last activity: {_iso(md.last_ns)}")
    return "\n".join(lines) + "\n"


def _schema_of(md: MachineData) -> dict[str, Any]:
    return {r.name: r.state() for r in md.schema.states}


def _node(md: MachineData, time_: Sequence[int]) -> Any:
    from ...graph import MachineNode

    names = md.names
    s = md.schema
    groups = {
        g: tuple(names[i] for i in s.groups.get(g, ()) if i < len(names)) for g in s.groups_order
    }
    return MachineNode(
        md.id,
        _schema_of(md),
        parent_id=md.parent_id,
        tags=tuple(md.tags),
        active=[n for n, t in zip(names, time_, strict=False) if t % 2],
        ticks=dict(zip(names, time_, strict=False)),
        groups=groups,
    )


class _PipeScan:
    """The ``[pipe...]`` log lines of every machine, scanned incrementally."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, list[str]]] = {}

    def lines(self, md: MachineData) -> list[str]:
        upto, found = self._seen.get(md.id, (0, []))
        if upto > md.total:  # the session was wiped and the id reused
            upto, found = 0, []
        start = max(0, upto - md.offset)
        for tx in md.txs[start:]:
            for ln in (*tx.pre_logs, *tx.logs):
                if ln.startswith("[pipe"):
                    found.append(ln)
        self._seen[md.id] = (md.total, found)
        return found


def graph_of(store: Store, *, at_ns: int | None = None, pipes: Any = None) -> Any:
    """The :class:`~asyncmachine_trio.graph.Graph` of the store's machines.

    Active states are each machine's at human time ``at_ns`` (None: its newest
    transition); pipes come from the ``[pipe-...]`` log lines, aRPC links from
    the ``src-id:`` tags.
    """
    from ...graph import Graph

    scan: _PipeScan = pipes if pipes is not None else _PipeScan()
    g = Graph()
    for md in store.machines.values():
        pos = len(md.txs) if at_ns is None else md.pos_at_ns(at_ns)
        lines = scan.lines(md)
        g.add(_node(md, md.time_at(pos)), pipe_lines=[ln for ln in lines if "[pipe:gc]" not in ln])
        for ln in lines:
            if ln.startswith("[pipe:gc] "):
                with contextlib.suppress(Exception):
                    g.remove_pipes_of(ln.split(" ", 1)[1].strip())
    return g


def _map_mermaid(graph: Any) -> str:
    """Machines only (no states) as a Mermaid flowchart; also for 0 or 1 machine
    (``vis`` draws a lone machine as its states)."""
    from ... import vis

    if len(graph) > 1:
        return vis.mermaid(graph, states=False)
    out = ["flowchart LR"]
    for i, m in enumerate(graph):
        label = m.id.replace('"', "#quot;")
        out.append(f'    m{i}["{label}"]')
    return "\n".join(out) + "\n"


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def d2_sequence(seq: Any) -> str:
    """D2 text of a :class:`~asyncmachine_trio.vis.TxSequence` (a ``sequence_diagram``)."""
    out = [f"tx: {_quote(seq.title)} {{", "  shape: sequence_diagram"]
    for p in seq.participants:
        out.append(f"  {_quote(p)}")
    if seq.notes and seq.participants:
        out.append(f"  {_quote(seq.participants[0])}.note: {_quote(' | '.join(seq.notes))}")
    for st in seq.steps:
        out.append(f"  {_quote(st.source)} -> {_quote(st.target)}: {_quote(st.label)}")
    out.append("}")
    return "\n".join(out) + "\n"


def _neighbours(md: MachineData, state: str, hops: int = 2) -> list[str]:
    """``state`` and the states at most ``hops`` relations away (either direction)."""
    edges: dict[str, set[str]] = {n: set() for n in md.names}
    for r in md.schema.states:
        for rel in (r.require, r.add, r.remove, r.after):
            for t in rel or ():
                if t in edges:
                    edges[r.name].add(t)
                    edges[t].add(r.name)
    seen = {state: 0}
    todo = [state]
    while todo:
        cur = todo.pop(0)
        if seen[cur] >= hops or (cur != state and cur in _SKIP_NEIGHBOURS):
            continue
        for nxt in sorted(edges.get(cur, ())):
            if nxt not in seen:
                seen[nxt] = seen[cur] + 1
                todo.append(nxt)
    return [n for n in md.names if n in seen]


class Outputs:
    """Writes the files of :class:`OutputOptions` for a debugger's cursor (see the module doc).

    ``listeners`` are called (in the event loop) with the relative paths that
    changed after every round that changed something; the diagrams web server
    uses them to refresh its viewers. :meth:`demand` asks for the diagrams for
    a minute even at ``diagrams=0`` (what an open viewer does).
    """

    def __init__(self, store: Store, dbg: Debugger, options: OutputOptions | None = None) -> None:
        self.store = store
        self.dbg = dbg
        self.options = options if options is not None else OutputOptions()
        self.dir = self.options.dir
        self.listeners: list[Callable[[set[str]], None]] = []
        #: called (in the event loop) with each write / render error
        self.on_error: Callable[[Exception], None] | None = None
        #: write rounds that changed at least one file
        self.rounds = 0
        #: files written (each time one changed)
        self.writes = 0
        #: write and render errors, newest last (at most 20 kept)
        self.errors: list[Exception] = []
        #: whether the ``d2`` binary was found (None: not looked for yet)
        self.d2: bool | None = None
        self._written: dict[str, str | None] = {}
        self._last_key: object = None
        self._demand_until = 0.0
        self._wake = anyio.Event()
        self._round = anyio.Event()
        self._pipes = _PipeScan()

    # ----- what to write

    def level(self) -> int:
        """The diagram level in effect: the option, or 2 while diagrams are demanded."""
        lvl = self.options.diagrams
        if time.monotonic() < self._demand_until:
            lvl = max(lvl, 2)
        return lvl

    def demand(self, seconds: float = 60.0) -> None:
        """Produce the diagrams for the next ``seconds`` (a viewer is watching); wakes the loop."""
        was = time.monotonic() < self._demand_until
        self._demand_until = max(self._demand_until, time.monotonic() + seconds)
        if not was:
            self._wake.set()

    def key(self) -> tuple[object, ...]:
        """What the files depend on; a round writes only when it changed."""
        d = self.dbg
        return (
            self.store.version,
            d.machine_id,
            d.pos,
            d.step,
            d.selected_state,
            d.filters.key(),
            self.level(),
        )

    def files(self) -> dict[str, str | None]:
        """Relative path -> text for the cursor now (None: the file should not exist)."""
        o = self.options
        dbg = self.dbg
        out: dict[str, str | None] = {}
        if o.tx:
            out["tx.md"] = tx_markdown(dbg)
        if o.log:
            out["log.md"] = log_markdown(dbg, o.log_window)
        if o.clients:
            out["clients.txt"] = clients_text(self.store)
        lvl = self.level()
        graph = None
        if o.graph or lvl >= 2:
            at = dbg.human_time() if dbg.md is not None else None
            graph = graph_of(self.store, at_ns=at, pipes=self._pipes)
            if o.graph:
                mm = _map_mermaid(graph)
                out["graph.md"] = f"# Machines ({len(graph)})\n\n```mermaid\n{mm}```\n"
        if lvl >= 1:
            out.update(self._diagrams(lvl, graph))
        return out

    def _diagrams(self, lvl: int, graph: Any) -> dict[str, str | None]:
        from ... import vis

        dbg = self.dbg
        md = dbg.md
        out: dict[str, str | None] = {}
        tx = dbg.tx
        if md is not None and tx is not None:
            seq = _sequence(md, dbg.pos)
            out["diagrams/steps.mermaid"] = vis.sequence(seq)
            out["diagrams/steps.mermaid.txt"] = vis.sequence(seq, "ascii")
            out["diagrams/steps.d2"] = d2_sequence(seq)
        else:
            for ext in (".mermaid", ".mermaid.txt", ".d2"):
                out["diagrams/steps" + ext] = None
        if lvl < 2:
            return out
        if md is not None:
            node = _node(md, md.time_at(dbg.pos))
            out["diagrams/mach.mermaid"] = vis.mermaid(node)
            out["diagrams/mach.d2"] = vis.d2(node)
            if dbg.selected_state and dbg.selected_state in md.index:
                only = tuple(_neighbours(md, dbg.selected_state))
                out["diagrams/state.mermaid"] = vis.mermaid(node, only_states=only, labels=True)
                out["diagrams/state.d2"] = vis.d2(node, only_states=only, labels=True)
            else:
                out["diagrams/state.mermaid"] = out["diagrams/state.d2"] = None
        if graph is not None and len(graph):
            # (vis draws a lone machine as its states in any case)
            states = lvl >= 3 or len(graph) == 1
            out["diagrams/graph.mermaid"] = vis.mermaid(graph, states=states)
            out["diagrams/graph.d2"] = vis.d2(graph, states=states)
        return out

    # ----- writing

    def _changes(self) -> dict[str, str | None]:
        try:
            files = self.files()
        except Exception as err:  # a bug or odd data must not stop the debugger
            self._report([OutputError(f"cannot make the output files: {err!r}")])
            return {}
        changed = {p: t for p, t in files.items() if self._written.get(p, None) != t}
        # diagrams no longer produced (the level went down) stay as they are
        return changed

    def _write_files(self, changed: dict[str, str | None], errs: list[Exception]) -> list[str]:
        """Write (or remove) files; runs in a worker thread (errors go to ``errs``, for
        the event loop to report). Returns the paths written."""
        done: list[str] = []
        for rel, text in changed.items():
            path = self.dir / rel
            try:
                if text is None:
                    path.unlink(missing_ok=True)
                    if rel.endswith(".d2"):
                        path.with_suffix(".svg").unlink(missing_ok=True)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f".{path.name}.tmp")
                    tmp.write_text(text, encoding="utf-8")
                    os.replace(tmp, path)
            except OSError as err:
                errs.append(OutputError(f"cannot write {path}: {err.strerror or err}"))
                continue
            done.append(rel)
        return done

    def _render_svgs(self, d2_files: list[str], errs: list[Exception]) -> list[str]:
        """``d2`` each file to its ``.svg`` (worker thread); returns the SVGs written."""
        from ...vis.render import D2Error, D2NotFoundError, d2_svg

        done: list[str] = []
        for rel in d2_files:
            src = self.dir / rel
            dst = src.with_suffix(".svg")
            try:
                svg = d2_svg(src.read_text(encoding="utf-8"), layout="elk", timeout=30.0)
                tmp = dst.with_name(f".{dst.name}.tmp")
                tmp.write_text(svg, encoding="utf-8")
                os.replace(tmp, dst)
            except D2NotFoundError:
                self.d2 = False
                return done
            except (D2Error, OSError) as err:
                errs.append(OutputError(f"cannot render {dst}: {err}"))
                continue
            done.append(str(Path(rel).with_suffix(".svg")))
        return done

    def _report(self, errs: list[Exception]) -> None:
        for err in errs:
            self.errors.append(err)
            self.dbg.message = str(err)
            if self.on_error is not None:
                self.on_error(err)
        del self.errors[:-20]
        errs.clear()

    def write_now(self) -> set[str]:
        """One round, synchronously (no thread): what the exit of a headless run calls."""
        changed = self._changes()
        errs: list[Exception] = []
        written = self._write_files(changed, errs)
        for rel in written:
            self._written[rel] = changed[rel]
        d2s = [r for r in written if r.endswith(".d2") and changed[r] is not None]
        if d2s and self._want_svg():
            written += self._render_svgs(d2s, errs)
        self._report(errs)
        return self._done(set(written))

    def _want_svg(self) -> bool:
        if self.d2 is None:
            from ...vis import D2NotFoundError, d2_binary

            try:
                d2_binary()
                self.d2 = True
            except D2NotFoundError:
                self.d2 = False
        return self.d2

    def _done(self, written: set[str]) -> set[str]:
        if written:
            self.rounds += 1
            self.writes += len(written)
            for fn in list(self.listeners):
                fn(written)
        ev, self._round = self._round, anyio.Event()
        ev.set()
        return written

    async def write_round(self) -> set[str]:
        """One round: texts made here, files and SVGs written in a worker thread."""
        self._last_key = self.key()
        changed = self._changes()
        if not changed:
            return self._done(set())
        errs: list[Exception] = []
        written = await anyio.to_thread.run_sync(self._write_files, changed, errs)
        self._report(errs)
        for rel in written:
            self._written[rel] = changed[rel]
        d2s = [r for r in written if r.endswith(".d2") and changed[r] is not None]
        if d2s and self._want_svg():
            # the text files are there already: tell the viewers, then render
            self._done(set(written))
            svgs = await anyio.to_thread.run_sync(
                self._render_svgs, d2s, errs, abandon_on_cancel=True
            )
            self._report(errs)
            return self._done(set(svgs))
        return self._done(set(written))

    async def wait_round(self) -> None:
        """Wait for the end of the next round (wrap it in ``anyio.fail_after``)."""
        await self._round.wait()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Look at the cursor every ``interval`` s and write what changed, until cancelled."""
        task_status.started()
        while True:
            with anyio.move_on_after(self.options.interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            if self.key() != self._last_key:
                await self.write_round()
