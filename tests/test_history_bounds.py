"""The SQLite history writer's bounds: a bounded inbox, a crash's loss window, one writer.

A tracker that gets ahead of the writer blocks at ``max_pending`` records not
yet committed; a failing writer makes it drop and count instead; a SIGKILL
loses at most ``max_pending`` records; a second writer of one machine's
records is refused when it opens (in this process or another).
"""

from __future__ import annotations

import mmap
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import asyncmachine_trio as am
from asyncmachine_trio import history as amhist
from asyncmachine_trio.history import sqlite as amsqlite


class Toggle(am.States):
    A = am.State()
    B = am.State()


def count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM times").fetchone()[0])
    finally:
        conn.close()


def test_a_tight_loop_is_held_at_max_pending(tmp_path: Path) -> None:
    mach = am.Machine(Toggle, id="tight")
    path = tmp_path / "h.sqlite"
    cfg = amhist.SqliteConfig(batch_size=10, max_pending=20, max_records=10**6)
    h = amhist.SqliteHistory(path, mach, cfg)
    for _ in range(1500):
        mach.toggle1("A")
    assert h._writer.peak_pending <= 20
    h.sync()
    assert count(path) == 1500 and h.dropped == 0
    h.close()


def test_a_failing_writer_drops_and_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mach = am.Machine(Toggle, id="failing")
    path = tmp_path / "h.sqlite"
    errors: list[amhist.HistoryError] = []
    cfg = amhist.SqliteConfig(batch_size=10, max_pending=30, max_records=10**6)
    h = amhist.SqliteHistory(path, mach, cfg, on_error=errors.append)
    real = amsqlite._Writer._write

    def broken(self: Any, *args: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(amsqlite._Writer, "_write", broken)
    for _ in range(2000):
        mach.toggle1("A")
    # never more than the bound in memory, the rest counted, the error reported
    assert len(h._writer.inbox) + len(h._writer._retry) <= 30
    assert h.dropped > 0
    assert any("dropped" in str(e) for e in errors)
    monkeypatch.setattr(amsqlite._Writer, "_write", real)
    h.sync()  # the disk is back: what was kept is written
    assert count(path) == 2000 - h.dropped
    h.close()


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    mach = am.Machine(Toggle, id="one")
    h = amhist.SqliteHistory(path, mach)
    twin = am.Machine(Toggle, id="one")
    with pytest.raises(amhist.WriterExistsError, match="already open"):
        amhist.SqliteHistory(path, twin)
    assert twin.tracers == []
    # another machine id in the same file is fine
    other = amhist.SqliteHistory(path, am.Machine(Toggle, id="two"))
    other.close()
    # another process is refused too
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import asyncmachine_trio as am; from asyncmachine_trio import history as h\n"
        "class T(am.States):\n    A = am.State()\n    B = am.State()\n"
        "try:\n    h.SqliteHistory(sys.argv[2], am.Machine(T, id='one'))\n"
        "except h.WriterExistsError:\n    sys.exit(7)\n"
    )
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.run([sys.executable, "-c", code, root, str(path)], timeout=60)
    assert proc.returncode == 7
    h.close()
    amhist.SqliteHistory(path, twin).close()  # the first one closed: free again


CHILD = """
import mmap, os, sys
sys.path.insert(0, sys.argv[1])
import asyncmachine_trio as am
from asyncmachine_trio import history as h

class T(am.States):
    A = am.State()
    B = am.State()

fd = os.open(sys.argv[3], os.O_RDWR)
done = mmap.mmap(fd, 8)
mach = am.Machine(T, id="killed")
cfg = h.SqliteConfig(batch_size=int(sys.argv[4]), flush_interval=1.0, max_records=10**6)
h.SqliteHistory(sys.argv[2], mach, cfg)
n = 0
while True:
    mach.toggle1("A")
    n += 1
    done[:8] = n.to_bytes(8, "little")
"""


def test_sigkill_loses_at_most_max_pending(tmp_path: Path) -> None:
    batch = 100  # max_pending defaults to 2 x batch_size
    path = tmp_path / "h.sqlite"
    counter = tmp_path / "done"
    counter.write_bytes(b"\0" * 8)
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, root, str(path), str(counter), str(batch)]
    )
    try:
        with open(counter, "r+b") as f:
            done = mmap.mmap(f.fileno(), 8)
            deadline = time.monotonic() + 30
            while int.from_bytes(done[:8], "little") < 5000:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            made = int.from_bytes(done[:8], "little")
            done.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    stored = count(path)
    print(f"history SIGKILL: {made} made, {stored} stored, {made - stored} lost")
    assert 0 <= made - stored <= 2 * batch
