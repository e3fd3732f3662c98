"""Expose a machine to the ``arpc`` REPL: a mux on a local port and an address file.

    async with trio.open_nursery() as nursery:
        mach.start(nursery)
        repl.mach_repl_env(mach, nursery)   # opt-in: AM_REPL_ADDR / AM_REPL_DIR

or explicitly ``await nursery.start(repl.mach_repl, mach, "127.0.0.1:0", "tmp/repl")``.
The mux (id ``rm-repl-<machine id>``) serves any number of ``arpc`` clients;
the file ``<dir>/<machine id>-repl.addr`` holds its URL, so ``arpc -d <dir>``
finds every machine that wrote one. ``AM_REPL_ADDR=1`` means ``127.0.0.1:0``
(any free port); ``AM_TEST_RUNNER`` turns the helper off.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from ..machine.machine import Machine
from .mux import Mux

__all__ = ["ADDR_SUFFIX", "addr_file", "mach_repl", "mach_repl_env", "normalize_addr"]

#: the suffix of address files (``<machine id>-repl.addr``)
ADDR_SUFFIX = "-repl.addr"
DEFAULT_ADDR = "127.0.0.1:0"


def normalize_addr(addr: str) -> str:
    """``host:port`` -> ``ws://host:port``; URLs stay; ``1`` / ``""`` -> any free local port."""
    addr = addr.strip()
    if addr in ("", "1"):
        addr = DEFAULT_ADDR
    if "://" not in addr:
        addr = "ws://" + addr
    return addr


def addr_file(addr_dir: str | os.PathLike[str], mach_id: str) -> Path:
    """Where the address of ``mach_id``'s REPL mux is written."""
    return Path(addr_dir) / f"{mach_id}{ADDR_SUFFIX}"


async def mach_repl(
    mach: Machine,
    addr: str = DEFAULT_ADDR,
    addr_dir: str | os.PathLike[str] | None = None,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``mach`` to REPL clients until cancelled (``task_status`` gets the URL).

    With ``addr_dir`` the URL is written to ``<addr_dir>/<id>-repl.addr``
    (removed again on exit).
    """
    mux = Mux(mach, normalize_addr(addr), name=f"repl-{mach.id}")
    path = addr_file(addr_dir, mach.id) if addr_dir is not None else None
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(mux.serve)
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(url + "\n", encoding="utf-8")
                tmp.replace(path)  # atomic: watchers never read half a file
            task_status.started(url)
            await trio.sleep_forever()
        finally:
            mux.close()
            if path is not None:
                path.unlink(missing_ok=True)
            nursery.cancel_scope.cancel()


def mach_repl_env(mach: Machine, nursery: trio.Nursery) -> bool:
    """Start :func:`mach_repl` in ``nursery`` when ``AM_REPL_ADDR`` or ``AM_REPL_DIR`` is set.

    Returns True if it was started (never under ``AM_TEST_RUNNER``).
    """
    addr = os.environ.get("AM_REPL_ADDR", "")
    addr_dir = os.environ.get("AM_REPL_DIR", "") or None
    if os.environ.get("AM_TEST_RUNNER") or not (addr or addr_dir):
        return False
    nursery.start_soon(mach_repl, mach, addr or DEFAULT_ADDR, addr_dir)
    return True
