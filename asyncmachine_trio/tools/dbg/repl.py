"""``--dbg-repl``: the debugger's own machine over aRPC, for the ``arpc`` REPL.

:func:`serve_repl` serves a :class:`~.logic.Debugger`'s machine (id
``am-dbg``) through an aRPC mux on a loopback port and writes its URL to
``<dir>/am-dbg-repl.addr``, so ``arpc -d DIR`` (or ``arpc $(cat FILE)``)
connects and drives the debugger by its states: ``add am-dbg Tail``,
``add am-dbg FilterCanceled``, ``mach am-dbg``. Runs on trio (headless) and
asyncio (the TUI); the address file is removed on exit.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import anyio
import anyio.abc

from ...machine.machine import Machine

__all__ = ["serve_repl"]


async def serve_repl(
    mach: Machine,
    addr_dir: str | os.PathLike[str],
    addr: str = "127.0.0.1:0",
    *,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``mach`` to aRPC clients until cancelled; ``task_status`` gets the URL.

    The URL is written to ``<addr_dir>/<machine id>-repl.addr`` (atomically).
    """
    from ...rpc.mux import Mux
    from ...rpc.repl import addr_file, normalize_addr

    mux = Mux(mach, normalize_addr(addr), name=f"repl-{mach.id}")
    path: Path = addr_file(addr_dir, mach.id)
    async with anyio.create_task_group() as tg:
        url: str = await tg.start(mux.serve)
        try:
            await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            await anyio.Path(tmp).write_text(url + "\n", encoding="utf-8")
            os.replace(tmp, path)
            task_status.started(url)
            await anyio.sleep_forever()
        finally:
            mux.close()
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            tg.cancel_scope.cancel()
