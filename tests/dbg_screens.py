"""Screenshots of am-dbg's main views, from synthetic data (deterministic).

``python -m tests.dbg_screens docs/images`` writes the SVGs the manual page
shows; tests/test_dbg_tui.py renders the same views into a temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import anyio

from asyncmachine_trio.telemetry import StepRecord
from asyncmachine_trio.telemetry.receiver import Connection
from asyncmachine_trio.tools.dbg.app import DbgApp
from asyncmachine_trio.tools.dbg.logic import Debugger
from asyncmachine_trio.tools.dbg.store import Store
from tests.dbg_util import schema, txs

SIZE = (150, 40)


def demo_store() -> Store:
    """Three machines (a parent with two children) with steps and log lines."""
    store = Store()
    conn = Connection(1, "demo")
    for mid, parent in (("worker", ""), ("worker-net", "worker"), ("worker-db", "worker")):
        s = schema(mid, parent)
        if not parent:
            s.tags = [*s.tags, "supervisor"]
        s.groups["work"] = [3, 4, 7]
        s.groups_order.append("work")
        conn.machines[mid] = s
        store.on_schema(conn, s)
        recs = txs(mid, 60)
        for i, r in enumerate(recs):
            # semantic log lines the reader extracts: contexts, waiters, pipes, sources
            if i % 10 == 1:
                r.log_entries = [*r.log_entries, "[ctx:new] Working", "[when:new] Ready Done"]
            if i % 10 == 5 and i < 40:
                r.log_entries = [*r.log_entries, "[when:match] Ready Done"]
            if parent and i % 4 == 0 and i:
                r.source_machine, r.source_tx = parent, f"{parent}-{i}"
                r.source_time = sum(r.time_before)
                r.pre_log_entries = [f"[pipe-in:add] Ready from {parent}"]
            if not parent and i % 4 == 0 and i:
                r.pre_log_entries = ["[pipe-out:add] Ready to worker-net"]
        for r in recs[::7]:
            r.steps = [
                StepRecord(32, "", "Working"),
                StepRecord(1, "Working", "Start", "require"),
                StepRecord(4, "", "Working"),
                StepRecord(8, "", "Done"),
                StepRecord(2, "", "Working", is_enter=True),
            ]
        store.add_txs(recs)
    store.get("worker-db").connected = False
    return store


async def shoot(out: Path) -> list[Path]:
    """Render the main views of :func:`demo_store` into ``out``; returns the files."""
    os.environ["TZ"] = "UTC"
    time.tzset()
    await anyio.Path(out).mkdir(parents=True, exist_ok=True)
    store = demo_store()
    dbg = Debugger(store, tail=False)
    app = DbgApp(store, debugger=dbg)
    files: list[Path] = []

    def save(name: str) -> None:
        path = out / f"am-dbg-{name}.svg"
        path.write_text(app.export_screenshot(title=f"am-dbg: {name}"))
        files.append(path)

    async with app.run_test(size=SIZE) as pilot:
        dbg.goto("mach://worker/%2313")
        dbg.select_state("Working")
        app.action_expand_all()
        app.render_all()
        await pilot.pause()
        save("main")
        await pilot.press("alt+k", "alt+k", "alt+k")
        await pilot.pause()
        save("steps")
        await pilot.press("alt+m")
        await pilot.pause()
        save("matrix")
        await pilot.press("alt+m")
        await pilot.pause()
        save("rain")
        await pilot.press("R")
        await pilot.pause()
        save("rain-all")
        await pilot.press("R")
        await pilot.press("alt+m", "slash", *"work")
        await pilot.pause()
        save("search")
        await pilot.press("escape", "question_mark")
        await pilot.pause()
        save("help")
    return files


if __name__ == "__main__":
    for f in asyncio.run(shoot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images"))):
        print(f)
