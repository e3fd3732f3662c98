"""What runs beside the debugger: output files, the diagrams web server,
forwarding (``--fwd-data``) and the REPL (``--dbg-repl``).

The CLI builds one :class:`Extras` from its flags; the TUI and the headless
recorder both call :meth:`Extras.handler` (what the telemetry receiver feeds:
the store, or the store and the forwarder) and run :meth:`Extras.run` in
their task group. Nothing here depends on Textual.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import attrs

from ...telemetry.receiver import ReceiverHandler
from .logic import Debugger
from .outputs import OutputOptions, Outputs
from .store import Store

if TYPE_CHECKING:
    from .forward import Forwarder
    from .web import DiagramServer

__all__ = ["Extras", "ExtrasConfig", "web_addr"]


def web_addr(listen: tuple[str, int] | None, addr: str = "") -> tuple[str, int]:
    """Where the diagrams web server listens: ``addr`` (``host:port``), else
    loopback on the telemetry port + 1 (``0`` stays ``0``: any free port), else
    ``127.0.0.1:6832``."""
    from ...telemetry.protocol import parse_addr

    if addr:
        return parse_addr(addr, default_port=6832)
    if listen is None:
        return ("127.0.0.1", 6832)
    port = listen[1]
    return ("127.0.0.1", port + 1 if port else 0)


@attrs.frozen
class ExtrasConfig:
    """The flags of the extras (see the CLI)."""

    outputs: OutputOptions = attrs.Factory(OutputOptions)
    #: where the diagrams web server listens (None: off)
    web: tuple[str, int] | None = None
    #: ``host:port`` of other am-dbg instances to forward to
    fwd: tuple[str, ...] = ()
    #: serve the debugger's machine over aRPC and write ``<dir>/am-dbg-repl.addr``
    repl: bool = False
    repl_addr: str = "127.0.0.1:0"


class Extras:
    """Runs the extras of an :class:`ExtrasConfig` for one store and debugger."""

    def __init__(self, config: ExtrasConfig) -> None:
        self.config = config
        self.outputs: Outputs | None = None
        self.web: DiagramServer | None = None
        self.forwarder: Forwarder | None = None
        if config.fwd:  # bad addresses raise TelemetryError here, before anything runs
            from .forward import Forwarder

            self.forwarder = Forwarder(config.fwd)
        self.web_url = ""
        self.repl_url = ""
        #: one line per thing started or failed (the CLI prints them)
        self.notes: list[str] = []
        self._following = False

    def handler(self, store: Store) -> ReceiverHandler:
        """What the receiver feeds: ``store``, plus the forwarder with ``--fwd-data``."""
        if not self.config.fwd:
            return store
        from .forward import Tee

        assert self.forwarder is not None
        return Tee(store, self.forwarder)

    async def run(
        self,
        store: Store,
        dbg: Debugger,
        *,
        note: Callable[[str], None] | None = None,
        redraw: Callable[[], None] | None = None,
        follow: bool = False,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start everything configured, report each with ``note``, run until cancelled.

        ``redraw`` is called when the debugger's machine changed from outside
        (the REPL), at most every half second. ``follow`` (headless: no UI does it)
        calls :meth:`~.logic.Debugger.refresh` when the store changed, every
        ``interval`` of the outputs, so the cursor follows the traffic.
        """
        cfg = self.config
        say = note or self.notes.append

        def tell(line: str) -> None:
            if self.notes and self.notes[-1] == line:
                return  # the same error every round: said once
            if note is not None:
                self.notes.append(line)
            say(line)
            del self.notes[:-50]

        async with anyio.create_task_group() as tg:
            if self.forwarder is not None:
                await tg.start(self.forwarder.run)
                tell(f"am-dbg: forwarding to {', '.join(s.addr for s in self.forwarder.stats)}")
            self.outputs = Outputs(store, dbg, cfg.outputs)
            self.outputs.on_error = lambda err: tell(f"am-dbg: {err}")
            self._following = follow
            if follow:
                tg.start_soon(self._follow, store, dbg, cfg.outputs.interval)
            await tg.start(self.outputs.run)
            if cfg.web is not None:
                from .web import DiagramServer

                self.web = DiagramServer(self.outputs)
                host, port = cfg.web
                try:
                    self.web_url = await tg.start(self.web.serve, host, port)
                    tell(f"am-dbg: diagrams on {self.web_url}")
                except OSError as err:
                    tell(f"am-dbg: no diagrams web server on {host}:{port}: {err.strerror or err}")
            if cfg.repl:
                from .repl import serve_repl

                try:
                    self.repl_url = await tg.start(
                        serve_repl, dbg.mach, Path(cfg.outputs.dir), cfg.repl_addr
                    )
                    tell(f"am-dbg: REPL on {self.repl_url}")
                except OSError as err:
                    tell(f"am-dbg: no REPL on {cfg.repl_addr}: {err.strerror or err}")
                if redraw is not None:
                    tg.start_soon(self._watch, dbg, redraw)
            task_status.started()

    async def _follow(self, store: Store, dbg: Debugger, interval: float) -> None:
        seen = -1
        while True:
            if store.version != seen:
                seen = store.version
                dbg.refresh()
            await anyio.sleep(interval)

    async def _watch(self, dbg: Debugger, redraw: Callable[[], None]) -> None:
        seen = dbg.mach.time()
        while True:
            await anyio.sleep(0.5)
            now = dbg.mach.time()
            if now != seen:
                seen = now
                redraw()

    def close(self) -> None:
        """Write the files one last time, synchronously (the end of a headless run;
        call it in the event loop)."""
        if self.outputs is not None:
            if self._following:
                self.outputs.dbg.refresh()
            self.outputs.write_now()
