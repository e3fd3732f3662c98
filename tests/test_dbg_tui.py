"""am-dbg's Textual UI driven by Pilot (asyncio): stepping, time travel, relations,
filters, search, breakpoints, tail mode on live traffic, help, export, import, screenshots.

Assertions read the debugger's own machine (states) and cursor, plus the rendered text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from textual.widgets import OptionList, Static, Tree

from asyncmachine_trio.telemetry import protocol as p
from asyncmachine_trio.tools.dbg.app import DbgApp, HelpScreen, key_table
from asyncmachine_trio.tools.dbg.logic import Debugger
from asyncmachine_trio.tools.dbg.store import F_CANCELED, Store
from tests.dbg_screens import SIZE, demo_store, shoot
from tests.dbg_util import schema, txs


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 60))  # type: ignore[arg-type]


def text(app: DbgApp, sel: str) -> str:
    return str(app.query_one(sel, Static).render())


def paused_app(store: Store | None = None) -> DbgApp:
    store = store or demo_store()
    return DbgApp(store, debugger=Debugger(store, tail=False))


def test_step_first_last() -> None:
    async def main() -> None:
        app = paused_app()
        async with app.run_test(size=SIZE) as pilot:
            dbg = app.dbg
            assert dbg.machine_id == "worker" and dbg.pos == 60
            assert dbg.mach.is1("Paused") and not dbg.mach.is1("Tail")
            await pilot.press("left", "left", "left")
            assert dbg.pos == 57
            assert "tx #57" in text(app, "#tx-bar")
            assert "Transition 57 / 60" in text(app, "#timeline1")
            await pilot.press("right")
            assert dbg.pos == 58
            await pilot.press("home")
            assert dbg.pos == 0 and "no transition" in text(app, "#tx-bar")
            await pilot.press("left")
            assert dbg.pos == 0
            await pilot.press("end")
            assert dbg.pos == 60
            await pilot.press("right")
            assert dbg.pos == 60
            # the tree shows the ticks at the cursor
            await pilot.press("home", "right")
            md = dbg.md
            assert md is not None
            label = str(app._state_nodes["Ready"].label)
            assert label.endswith(f"|{md.txs[0].time[md.index['Ready']]}")

    run(main)


def test_steps_timeline() -> None:
    async def main() -> None:
        app = paused_app()
        async with app.run_test(size=SIZE) as pilot:
            dbg = app.dbg
            dbg.goto("mach://worker/%2314")  # the next one (#15) has 5 steps
            app.render_all()
            assert "step 0 / 5" in text(app, "#timeline2")
            await pilot.press("alt+k", "alt+k", "alt+k")
            assert dbg.step == 3 and "step 3 / 5" in text(app, "#timeline2")
            assert str(app._state_nodes["Working"].label).startswith("+")
            await pilot.press("alt+k", "alt+k", "alt+k")  # past the last step: next tx
            assert dbg.pos == 15 and dbg.step == 0
            await pilot.press("alt+j")
            assert dbg.pos == 14 and dbg.step == 5

    run(main)


def test_switch_machine_keeps_time() -> None:
    async def main() -> None:
        store = Store()
        from asyncmachine_trio.telemetry.receiver import Connection

        conn = Connection(1, "t")
        for mid, t0, step in (("a", 0, 10), ("b", 5, 20)):
            store.on_schema(conn, schema(mid))
            store.add_txs(txs(mid, 100, t0=1_700_000_000_000_000_000 + t0, step_ns=step))
        app = paused_app(store)
        async with app.run_test(size=SIZE) as pilot:
            dbg = app.dbg
            dbg.goto("mach://a/%2340")
            app.render_all()
            t = dbg.human_time()
            ol = app.query_one("#machines", OptionList)
            ol.focus()
            await pilot.press("down", "enter")
            assert dbg.machine_id == "b"
            b = store.get("b")
            assert b.txs[dbg.pos - 1].time_ns <= t < b.txs[dbg.pos].time_ns
            assert dbg.pos == 20  # (40 * 10 - 5) // 20 + 1
            # the list shows each machine's count at that time and "+" for later ones
            prompts = [str(ol.get_option_at_index(i).prompt) for i in range(2)]
            # (relative to b's viewed time now: a's 40th came 5 ns after it)
            assert prompts[0].startswith("a |39+") and prompts[1].startswith("b |20+")

    run(main)


def test_expand_relations_and_select() -> None:
    async def main() -> None:
        app = paused_app()
        async with app.run_test(size=SIZE) as pilot:
            tree = app.query_one("#tree", Tree)
            tree.focus()
            await pilot.pause()  # the tree's lines are laid out before moving in it
            node = app._state_nodes["Working"]
            tree.move_cursor(node)
            await pilot.press("enter")
            assert node.is_expanded
            kids = [str(c.label) for c in node.children]
            assert kids == ["Require", "Remove", "Auto"]
            assert [str(c.label) for c in node.children[0].children] == ["Start"]
            assert app.dbg.selected_state == "Working" and app.dbg.mach.is1("StateSelected")
            # a relation's target jumps to its state
            await pilot.pause()
            tree.move_cursor(node.children[0].children[0])
            await pilot.press("enter")
            assert app.dbg.selected_state == "Start"
            assert tree.cursor_node is app._state_nodes["Start"]
            await pilot.press("alt+e")
            assert all(n.is_expanded for n in app._state_nodes.values())
            assert "M|" in str(app._state_nodes["Busy"].label)

    run(main)


def test_filter_canceled() -> None:
    async def main() -> None:
        app = paused_app()
        async with app.run_test(size=SIZE) as pilot:
            dbg = app.dbg
            md = dbg.md
            assert md is not None
            canceled = [i + 1 for i, t in enumerate(md.txs) if t.flags & F_CANCELED]
            assert canceled
            dbg.goto_pos(canceled[0])
            await pilot.press("c")
            assert dbg.mach.is1("FilterCanceled") and dbg.filters.canceled
            assert dbg.pos not in canceled
            seen = set()
            await pilot.press("home")
            for _ in range(25):
                await pilot.press("right")
                seen.add(dbg.pos)
            assert len(seen) > 20 and not seen & set(canceled)
            assert f"/ {60 - len(canceled)} (" in text(app, "#timeline1")
            assert "filters: canceled" in text(app, "#status")
            await pilot.press("c")
            assert not dbg.mach.is1("FilterCanceled")

    run(main)


def test_search() -> None:
    async def main() -> None:
        app = paused_app()
        async with app.run_test(size=SIZE) as pilot:
            dbg = app.dbg
            await pilot.press("home", "slash")
            await pilot.press(*"line 22", "enter")
            assert dbg.pos == 23 and dbg.mach.is1("Searching")
            assert "line 22" in " ".join(dbg.tx.logs if dbg.tx else ())
            assert "line 22" in text(app, "#log-text")
            await pilot.press("escape")
            await pilot.press("n")  # next match of "line 22": wraps around to itself
            assert dbg.pos == 23
            dbg.find("ErrNet")
            assert dbg.tx is not None and "ErrNet" in [
                dbg.md.names[i]
                for i in (*dbg.tx.called, *dbg.tx.added)  # type: ignore[union-attr]
            ]
            assert not dbg.find("no such text anywhere")

    run(main)


async def send_live(port: int, frames: list[bytes]) -> anyio.abc.SocketStream:
    s = await anyio.connect_tcp("127.0.0.1", port)
    await s.send(p.PREAMBLE + p.encode_frame(p.Hello(agent="test")))
    dec = p.Decoder()
    got: list[Any] = []
    with anyio.fail_after(5):
        while not got:
            got = dec.feed(await s.receive())
    for f in frames:
        await s.send(f)
    return s


async def until(pilot: Any, cond: Callable[[], bool], limit: float = 10) -> None:
    with anyio.fail_after(limit):
        while not cond():
            await pilot.pause(0.02)


def test_tail_follows_live_traffic() -> None:
    async def main() -> None:
        app = DbgApp(Store(), listen=("127.0.0.1", 0), refresh_interval=0.02)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.port != 0)
            dbg = app.dbg
            assert dbg.mach.is1("Tail") and not dbg.mach.is1("ClientConnected")
            recs = txs("live", 200)
            s = await send_live(
                app.port, [p.encode_frame(schema("live")), p.encode_txs(recs[:100])]
            )
            await until(pilot, lambda: dbg.pos == 100)
            assert dbg.machine_id == "live" and dbg.mach.is1("ClientConnected")
            await s.send(p.encode_txs(recs[100:150]))
            await until(pilot, lambda: dbg.pos == 150)
            assert "Transition 150 / 150" in text(app, "#timeline1")
            # stepping back leaves tail mode; new traffic no longer moves the cursor
            await pilot.press("left")
            assert dbg.mach.is1("Paused") and dbg.pos == 149
            await s.send(p.encode_txs(recs[150:]))
            await until(pilot, lambda: len(app.store.get("live")) == 200)
            await pilot.pause(0.05)
            assert dbg.pos == 149
            await pilot.press("alt+v")
            assert dbg.mach.is1("Tail") and dbg.pos == 200
            await s.aclose()
            await until(pilot, lambda: not dbg.mach.is1("ClientConnected"))

    run(main)


def test_breakpoint_pauses_live() -> None:
    async def main() -> None:
        app = DbgApp(Store(), listen=("127.0.0.1", 0), refresh_interval=0.02)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.port != 0)
            dbg = app.dbg
            recs = txs("bp", 100)
            s = await send_live(app.port, [p.encode_frame(schema("bp")), p.encode_txs(recs[:3])])
            await until(pilot, lambda: dbg.pos == 3)
            # select "Done" in the tree, press b
            tree = app.query_one("#tree", Tree)
            tree.focus()
            await pilot.pause()
            tree.move_cursor(app._state_nodes["Done"])
            await pilot.press("enter", "b")
            assert dbg.breakpoints == {"Done"} and "●" in str(app._state_nodes["Done"].label)
            assert dbg.mach.is1("Tail")
            await s.send(p.encode_txs(recs[3:]))
            await until(pilot, lambda: dbg.mach.is1("BreakpointHit"))
            md = store_md = app.store.get("bp")
            first_done = next(
                i + 1 for i, t in enumerate(store_md.txs) if i >= 3 and md.index["Done"] in t.added
            )
            assert dbg.pos == first_done and dbg.mach.is1("Paused")
            assert "breakpoint: Done" in text(app, "#status")
            await s.aclose()

    run(main)


def test_help_from_bindings_and_export(tmp_path: Path) -> None:
    async def main() -> None:
        store = demo_store()
        app = DbgApp(store, debugger=Debugger(store, tail=False), output_dir=tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            help_txt = str(app.screen.query_one("#help-text", Static).render())
            for keys, desc in key_table():
                assert f"{keys:<22} {desc}" in help_txt
            assert "Differences from the reference" in help_txt
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)
            await pilot.press("alt+s")
            await pilot.press("enter")
            await pilot.pause()
            assert (tmp_path / "am-dbg-dump.amdbg.gz").exists()
            assert "exported to" in text(app, "#status")

    run(main)


def test_import_opens_on_last(tmp_path: Path) -> None:
    from asyncmachine_trio.tools.dbg.cli import _load, make_tui
    from asyncmachine_trio.tools.dbg.session import export_session

    export_session(demo_store(), tmp_path / "s.amdbg.gz")

    async def main() -> None:
        store = Store()
        _load(str(tmp_path / "s.amdbg.gz"), store)
        app = make_tui(store, select_machine="worker-net", tail=False)
        async with app.run_test(size=SIZE):
            assert app.dbg.machine_id == "worker-net" and app.dbg.pos == 60
            assert app.dbg.mach.is1("Paused")

    run(main)


def test_screenshots(tmp_path: Path) -> None:
    files = asyncio.run(shoot(tmp_path))
    assert [f.name for f in files] == [
        "am-dbg-main.svg",
        "am-dbg-steps.svg",
        "am-dbg-matrix.svg",
        "am-dbg-rain.svg",
        "am-dbg-rain-all.svg",
        "am-dbg-search.svg",
        "am-dbg-help.svg",
    ]
    main = files[0].read_text()
    for word in ("worker", "worker-net", "Working", "Transition"):
        assert word in main
    assert "require" in files[2].read_text()
    assert "Reader" in main and "Forks" in main
    assert "SRHWDEEB" in files[3].read_text()
    assert "worker-net" in files[4].read_text()


def test_docs_key_table_matches_bindings() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "am-dbg.md").read_text()
    for keys, desc in key_table():
        assert f"| `{keys}` | {desc} |" in page, keys


# ----- log reader, address bar, groups, relations, toolbar, rain, log levels


def _pos_of(app: DbgApp, mid: str, tx_id: str) -> int:
    return app.store.get(mid).find_id(tx_id)


def _reader(app: DbgApp) -> dict[str, list[str]]:
    tree = app.query_one("#reader", Tree)
    return {
        str(n.data[1]): [str(c.label) for c in n.children]
        for n in tree.root.children
        if n.data and n.data[0] == "section"
    }


def test_reader_sections_and_links() -> None:
    async def main() -> None:
        app = paused_app()
        async with app.run_test(size=SIZE) as pilot:
            dbg = app.dbg
            assert dbg.mach.is1("LogReader") and app.query_one("#reader").display
            # worker-net's 13th transition names worker's worker-12 as its source
            dbg.goto("mach://worker-net/worker-net-12")
            app.render_all()
            sec = _reader(app)
            assert sec["source"][0].startswith("worker/worker-12 t=")
            assert sec["trace"] == ["worker #13 ErrNet"]
            assert sec["pipes-in"] == ["add Ready from worker"]
            assert "queue tick 12" in sec["queue"]
            # the source tx lists both children as forks; enter on a link follows it
            dbg.goto("mach://worker/worker-12")
            app.render_all()
            sec = _reader(app)
            assert sec["forks"] == ["worker-net/worker-net-12", "worker-db/worker-db-12"]
            assert sec["pipes-out"] == ["add Ready to worker-net"]
            reader = app.query_one("#reader", Tree)
            reader.focus()
            await pilot.pause()
            forks = next(n for n in reader.root.children if n.data == ("section", "forks"))
            reader.move_cursor(forks.children[1])
            await pilot.press("enter")
            assert dbg.machine_id == "worker-db" and dbg.tx is not None
            assert dbg.tx.id == "worker-db-12"
            # the history goes back to where the link was followed
            await pilot.press("escape", "left_square_bracket")
            assert dbg.machine_id == "worker" and dbg.tx is not None and dbg.tx.id == "worker-12"
            # a collapsed section stays collapsed while stepping
            queue = next(n for n in reader.root.children if n.data == ("section", "queue"))
            queue.collapse()
            await pilot.pause()
            await pilot.press("right")
            queue = next(n for n in reader.root.children if n.data == ("section", "queue"))
            assert not queue.is_expanded
            # alt+o hides the reader (a state of the debugger's machine)
            await pilot.press("alt+o")
            assert not dbg.mach.is1("LogReader") and not app.query_one("#reader").display

    run(main)


def test_reader_subscriptions_and_handlers() -> None:
    app = paused_app()
    dbg = app.dbg
    dbg.select_machine("worker", keep_time=False)
    # "[when:new] Ready Done" at transitions 2, 12, 22 ..., matched at 6, 16, 26, 36
    for pos, is_open in ((1, False), (2, True), (5, True), (6, False), (44, True), (60, True)):
        dbg.goto_pos(pos)
        if pos == 60:  # opened at 42 and 52, never matched: two alike
            subs = next(s for s in app.reader_sections() if s.key == "subscriptions")
            assert [i.text for i in subs.items] == ["open: when Ready Done x2"]
        subs = next((s for s in app.reader_sections() if s.key == "subscriptions"), None)
        opened = subs is not None and any(
            i.text.startswith("open: when Ready Done") for i in subs.items
        )
        assert opened is is_open, pos
    dbg.goto_pos(3)  # backwards: replayed from the start
    assert any(s.key == "subscriptions" for s in app.reader_sections())
    dbg.goto_pos(15)  # its steps ran the WorkingEnter handler
    handlers = next(s for s in app.reader_sections() if s.key == "handlers")
    assert [i.text for i in handlers.items] == ["WorkingEnter"]
    assert handlers.items[0].address.endswith("?state=Working")
    ctx = next(s for s in (dbg.goto_pos(12), app.reader_sections())[1] if s.key == "contexts")
    assert ctx.items[0].text.startswith("new Working (t=")


class Extra:
    """A stored transition with extra attributes (as a newer collector would keep)."""

    def __init__(self, tx: Any, **extra: Any) -> None:
        self._tx = tx
        self.__dict__.update(extra)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


class ExtraDebugger(Debugger):
    """Serves ``extra[pos]`` attributes on top of the stored transition at ``pos``."""

    extra: dict[int, dict[str, Any]] = {}

    def tx_at(self, pos: int) -> Any:
        tx = super().tx_at(pos)
        more = self.extra.get(pos) if self.machine_id == "worker" else None
        return Extra(tx, **more) if more else tx


def test_reader_shows_fields_a_collector_adds() -> None:
    from types import SimpleNamespace

    from asyncmachine_trio.tools.dbg.reader import OPTIONAL_FIELDS

    store = demo_store()
    dbg = ExtraDebugger(store, tail=False)
    dbg.extra = {
        10: {
            "handlers": ["ReadyEnter", "ReadyState"],
            "stack": ["main.py:3", "worker.py:12"],
            "mut_queue_tick": 7,
            # what is open after it, kept by the store (replaces the replay)
            "reader": SimpleNamespace(
                contexts=("Working",),
                subscriptions=("whenNot Busy x2",),
                pipes=("[pipe-out:add] Ready to worker-db",),
            ),
        }
    }
    app = DbgApp(store, debugger=dbg)
    dbg.select_machine("worker", keep_time=False)
    dbg.goto_pos(10)
    secs = {s.key: s for s in app.reader_sections()}
    assert [i.text for i in secs["handlers"].items] == ["ReadyEnter", "ReadyState"]
    assert secs["handlers"].title == f"{OPTIONAL_FIELDS['handlers']} (2)"
    assert [i.text for i in secs["stack"].items] == ["main.py:3", "worker.py:12"]
    assert secs["queue"].items[0].text == "queued as queue tick 7"
    assert [i.text for i in secs["contexts"].items] == ["open: Working"]
    assert [i.text for i in secs["subscriptions"].items] == ["open: whenNot Busy x2"]
    out = secs["pipes-out"].items
    assert out[-1].text == "open: add Ready to worker-db"
    assert out[-1].address.startswith("mach://worker-db?ht=")
    dbg.goto_pos(13)  # no extras: the waiters are replayed from the log lines
    secs = {s.key: s for s in app.reader_sections()}
    assert "stack" not in secs
    assert [i.text for i in secs["subscriptions"].items] == ["open: when Ready Done"]


def test_levelled_reads_levels_in_every_form() -> None:
    from types import SimpleNamespace

    from asyncmachine_trio.tools.dbg.widgets import levelled

    a = SimpleNamespace(pre_logs=("p",), logs=("x", "y"), pre_levels=b"\x03", levels=b"")
    assert list(levelled(a)) == [(3, "p"), (None, "x"), (None, "y")]
    b = SimpleNamespace(pre_logs=(), logs=("x", "y"), log_levels=[4])
    assert list(levelled(b)) == [(4, "x"), (None, "y")]
    c = SimpleNamespace(pre_logs=(), logs=((2, "x"), SimpleNamespace(level=5, text="y")))
    assert list(levelled(c)) == [(2, "x"), (5, "y")]


def test_search_as_you_type_filters_the_tree() -> None:
    async def main() -> None:
        app = paused_app()
        async with app.run_test(size=SIZE) as pilot:
            dbg = app.dbg
            await pilot.press("home", "slash", "e", "r", "r")
            # the tree narrows to the states containing "err" as they are typed
            assert list(app._state_nodes) == ["ErrNet"]
            assert "Schema:1/8" in str(app.query_one("#tree", Tree).border_title)
            # and the cursor is on the first transition mentioning it
            first = next(p for p in range(1, 61) if dbg.matches(p, "err"))
            assert dbg.pos == first
            await pilot.press("backspace", "backspace", "backspace", *"zzz")
            assert len(app._state_nodes) == 8  # nothing matches: every state again
            assert dbg.pos == 0  # no transition matches: back where the search started
            await pilot.press("escape")
            assert dbg.tree_filter == "" and len(app._state_nodes) == 8

    run(main)


def test_address_bar_history_copy_paste() -> None:
    async def main() -> None:
        app = paused_app()
        async with app.run_test(size=SIZE) as pilot:
            dbg = app.dbg
            addr = app.query_one("#address")
            dbg.goto("mach://worker/%2310")
            app.render_all()
            assert addr.value == "mach://worker/worker-9"  # type: ignore[attr-defined]
            assert text(app, "#tags") == "#t1 #supervisor"
            dbg.goto("mach://worker-net/%2320")
            app.render_all()  # the tags bar: own tags, then the parents'
            assert text(app, "#tags") == "#t1 (inherited: #supervisor)"
            dbg.goto("mach://worker-db/%2330")
            await pilot.press("left_square_bracket")
            assert dbg.machine_id == "worker-net" and dbg.pos == 20
            await pilot.press("left_square_bracket")
            assert dbg.machine_id == "worker" and dbg.pos == 10
            await pilot.press("right_square_bracket", "right_square_bracket")
            assert dbg.machine_id == "worker-db" and dbg.pos == 30
            await pilot.press("right_square_bracket")
            assert "newest entry" in text(app, "#status")
            # copy, move away, paste: back at the copied address
            await pilot.press("y")
            assert app.clipboard == "mach://worker-db/worker-db-29"
            await pilot.press("home")
            assert dbg.pos == 0
            await pilot.press("p")
            assert dbg.machine_id == "worker-db" and dbg.pos == 30
            # typing an address into the bar opens it; a bad one says why
            await pilot.press("ctrl+l", *"mach://worker/%235", "enter")
            assert dbg.machine_id == "worker" and dbg.pos == 5
            await pilot.press("ctrl+l", *"mach://nope", "enter")
            assert "no machine 'nope'" in text(app, "#status") and dbg.pos == 5
            # the back / forward buttons
            await pilot.click("#hist-links", offset=(1, 0))
            assert dbg.machine_id == "worker-db"

    run(main)


def test_history_is_bounded() -> None:
    from asyncmachine_trio.tools.dbg.logic import HISTORY_MAX

    dbg = Debugger(demo_store(), tail=False)
    dbg.select_machine("worker", keep_time=False)
    for pos in range(1, 60):
        dbg.goto_pos(pos)
    for pos in range(1, 60):
        dbg.goto_pos(pos)
    assert len(dbg.history) == HISTORY_MAX and dbg.hist_i == HISTORY_MAX - 1
    assert dbg.history_back() and dbg.pos == 58
    dbg.goto_pos(3)  # a new entry drops the forward ones
    assert not dbg.history_fwd()


def test_group_selector_and_filter() -> None:
    async def main() -> None:
        app = paused_app()
        async with app.run_test(size=SIZE) as pilot:
            dbg = app.dbg
            assert dbg.groups() == ["main", "work"]
            await pilot.press("g")
            assert dbg.group == "main" and dbg.mach.is1("GroupSelected")
            assert list(app._state_nodes) == ["Start", "Ready"]
            sel = app.query_one("#group", Select)
            assert sel.value == "main"
            # FilterGroup: only transitions calling Start or Ready
            await pilot.press("G")
            assert dbg.mach.is1("FilterGroup")
            md = dbg.md
            assert md is not None
            v = list(dbg.view())
            assert v == [p for p in range(1, 61) if {0, 1} & set(md.txs[p - 1].called)]
            assert "(60/60)" in text(app, "#timeline1") or dbg.pos in v
            # the drop-down selects a group too
            sel.value = "work"
            await pilot.pause()
            assert dbg.group == "work" and list(app._state_nodes) == ["Working", "Done", "Busy"]
            await pilot.press("alt+m")  # the matrix shows the group's states only
            rows = text(app, "#matrix-text").splitlines()
            assert [r.split()[0] for r in rows[3:6]] == ["Working", "Done", "Busy"]
            assert rows[6] == "" and rows[0].split() == ["3", "4", "7"]
            await pilot.press("alt+m", "alt+m")
            await pilot.press("g")  # after the last group: all states
            assert dbg.group == "" and not dbg.mach.is1("GroupSelected")
            assert len(app._state_nodes) == 8
            try:
                dbg.select_group("nope")
            except KeyError as err:
                assert "known: main, work" in str(err)
            else:
                raise AssertionError("no KeyError")

    from textual.widgets import Select

    run(main)


def test_relations_of_the_selected_state_are_marked() -> None:
    async def main() -> None:
        app = paused_app()
        async with app.run_test(size=SIZE) as pilot:
            tree = app.query_one("#tree", Tree)
            tree.focus()
            await pilot.pause()
            tree.move_cursor(app._state_nodes["Working"])
            await pilot.press("enter")
            labels = {n: str(node.label) for n, node in app._state_nodes.items()}
            assert labels["Start"].endswith("->require")
            assert labels["Done"].endswith("->remove")
            assert "->" not in labels["Ready"] and "<-" not in labels["Ready"]
            app.dbg.select_state("Start")
            app.render_all()
            assert str(app._state_nodes["Working"].label).endswith("<-require")
            assert app.dbg.related() == {"Working": ["<require"]}

    run(main)


def test_toolbar_mirrors_states() -> None:
    async def main() -> None:
        app = paused_app()
        async with app.run_test(size=SIZE) as pilot:
            dbg = app.dbg
            bar = app.query_one("#toolbar", Toolbar)
            assert not bar.tool("FilterCanceled").on and bar.tool("LogReader").on
            await pilot.press("alt+f")
            assert bar.has_focus and dbg.mach.is1("ToolbarFocused")
            idx = [t.id for t in bar.tools].index("FilterCanceled")
            pos = dbg.pos
            await pilot.press(*["right"] * idx)
            assert dbg.pos == pos  # arrows move in the toolbar, not the cursor
            await pilot.press("enter")
            assert dbg.mach.is1("FilterCanceled") and bar.tool("FilterCanceled").on
            await pilot.press("alt+f")
            assert not bar.has_focus and not dbg.mach.is1("ToolbarFocused")
            # the state follows the focus however it moves
            # (focus events bubble through a few message rounds: wait, bounded)
            bar.focus()
            await until(pilot, lambda: dbg.mach.is1("ToolbarFocused"))
            app.query_one("#machines").focus()
            await until(pilot, lambda: dbg.mach.not1("ToolbarFocused"))
            # a click on a button runs it: "tail" is the first one
            await pilot.click("#toolbar", offset=(1, 0))
            assert dbg.mach.is1("Tail") and bar.tool("tail").on
            try:
                bar.tool("nope")
            except KeyError as err:
                assert "known: tail" in str(err)

    from asyncmachine_trio.tools.dbg.widgets import Toolbar

    run(main)


def test_rain_view() -> None:
    async def main() -> None:
        app = paused_app()
        async with app.run_test(size=SIZE) as pilot:
            dbg = app.dbg
            dbg.goto("mach://worker/%2314")
            await pilot.press("alt+r")
            assert dbg.mach.is1("RainView") and app.query_one("#rain").display
            assert not app.query_one("#log").display
            rain = text(app, "#rain-text")
            assert rain.splitlines()[0].strip() == "SRHWDEEB"
            line = next(x for x in rain.splitlines() if x.startswith("#14 "))
            assert line.rstrip().endswith("!")  # Busy called in a canceled transition
            app.action_rain_click(20, "Done")
            assert dbg.pos == 20 and dbg.selected_state == "Done"
            # R: the rain of every machine, merged by human time around the cursor
            await pilot.press("R")
            assert dbg.mach.is1("RainAll") and dbg.mach.is1("RainView")
            rows = dbg.rain_all(30)
            assert len(rows) == 30 and ("worker", 20) in [(m.id, p) for m, p in rows]
            times = [m.txs[p - 1].time_ns for m, p in rows]
            assert times == sorted(times) and {m.id for m, _ in rows} == {
                "worker",
                "worker-net",
                "worker-db",
            }
            lines = text(app, "#rain-text").splitlines()
            assert lines[0].startswith(("worker ", "worker-db ", "worker-net "))
            assert any(x.startswith("worker-net   #") for x in lines)
            app.action_rain_open("worker-net", 18, "Ready")
            assert dbg.machine_id == "worker-net" and dbg.pos == 18
            assert dbg.selected_state == "Ready"
            await pilot.press("R")
            assert not dbg.mach.is1("RainAll") and dbg.mach.is1("RainView")
            # alt+m cycles log -> matrix -> rain -> log
            await pilot.press("alt+m")
            assert dbg.view_mode() == "" and app.query_one("#log").display
            await pilot.press("alt+m")
            assert dbg.mach.is1("MatrixView")
            await pilot.press("alt+m")
            assert dbg.mach.is1("RainView") and not dbg.mach.is1("MatrixView")

    run(main)


def test_log_levels() -> None:
    async def main() -> None:
        store = demo_store()
        dbg = ExtraDebugger(store, tail=False)
        dbg.extra = {
            1: {"logs": ("[add] Ready", "[handler] ready_enter", "no level"), "levels": b"\x03\x04"}
        }
        app = DbgApp(store, debugger=dbg)
        async with app.run_test(size=SIZE) as pilot:
            dbg.goto("mach://worker/%231")
            assert dbg.log_level == 2
            app.render_all()
            log = text(app, "#log-text")
            assert "[add] Ready" not in log and "no level" in log
            await pilot.press("l")
            assert dbg.log_level == 3
            log = text(app, "#log-text")
            assert "[add] Ready" in log and "ready_enter" not in log
            await pilot.press("l", "l")
            assert dbg.log_level == 5 and "ready_enter" in text(app, "#log-text")
            await pilot.press("l")
            log = text(app, "#log-text")
            assert dbg.log_level == 0 and "no level" in log and "[add] Ready" not in log
            assert "Log (level 0)" in str(app.query_one("#log").border_title)
            assert app.query_one("#toolbar", Toolbar).tool("log").label == "log:0"

    from asyncmachine_trio.tools.dbg.widgets import Toolbar

    run(main)


def test_cli_view_flags(tmp_path: Path) -> None:
    from asyncmachine_trio.tools.dbg.cli import _load, make_tui
    from asyncmachine_trio.tools.dbg.session import export_session

    export_session(demo_store(), tmp_path / "s.amdbg.gz")
    store = Store()
    _load(str(tmp_path / "s.amdbg.gz"), store)
    app = make_tui(
        store,
        select_machine="worker",
        tail=False,
        view="tree-rain",
        reader=False,
        log_level=4,
        group="work",
    )
    dbg = app.dbg
    assert dbg.mach.is1("RainView") and not dbg.mach.is1("LogReader")
    assert dbg.log_level == 4 and dbg.group == "work" and dbg.mach.is1("FilterGroup")
    md = store.get("worker")
    assert all({3, 4, 7} & set(md.txs[p - 1].called) for p in dbg.view())
    import pytest
    import typer

    with pytest.raises(typer.Exit):
        make_tui(store, select_machine="worker", group="nope")
    with pytest.raises(typer.Exit):
        make_tui(store, view="matrix-only")
