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
            node = app._state_nodes["Working"]
            tree.move_cursor(node)
            await pilot.press("enter")
            assert node.is_expanded
            kids = [str(c.label) for c in node.children]
            assert kids == ["Require", "Remove", "Auto"]
            assert [str(c.label) for c in node.children[0].children] == ["Start"]
            assert app.dbg.selected_state == "Working" and app.dbg.mach.is1("StateSelected")
            # a relation's target jumps to its state
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
        "am-dbg-help.svg",
    ]
    main = files[0].read_text()
    for word in ("worker", "worker-net", "Working", "Transition"):
        assert word in main
    assert "require" in files[2].read_text()


def test_docs_key_table_matches_bindings() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "am-dbg.md").read_text()
    for keys, desc in key_table():
        assert f"| `{keys}` | {desc} |" in page, keys
