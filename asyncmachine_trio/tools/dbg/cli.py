"""``am-dbg``: the multi-machine debugger, from the shell.

    am-dbg                                  # TUI, listening on localhost:6831
    am-dbg --headless --output-dir rec      # record to rec/am-dbg-dump.amdbg.gz (CI)
    am-dbg --import rec/am-dbg-dump.amdbg.gz --select-machine expense
    am-dbg --web 8080                       # the same TUI in a browser (loopback)
    am-dbg mach://expense/#5                # open at an address

Machines opt in with ``AM_DBG_ADDR=1`` (or ``host:port``). See ``docs/am-dbg.md``.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..._install import install_hint
from .._cli import console, err_console, fail, version_callback

app = typer.Typer(
    name="am-dbg",
    help="The multi-machine debugger for asyncmachine-trio: record, step through and "
    "time-travel across the transitions of many machines.",
    add_completion=False,
)

DUMP = "am-dbg-dump"
#: imports larger than this (bytes) show a progress bar
PROGRESS_MIN = 1 << 20


def _listen(addr: str) -> tuple[str, int] | None:
    from ...telemetry.errors import TelemetryError
    from ...telemetry.protocol import parse_addr

    if addr.strip() in ("-1", "", "0"):
        return None
    try:
        host, port = parse_addr(addr)
    except TelemetryError as err:
        fail(str(err))
    return (host, port)


def _load(path: str, store: Any) -> None:
    """Import ``path`` into ``store`` with a progress bar (stderr) for large files."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from .session import SessionError, import_session

    size = os.path.getsize(path) if os.path.exists(path) else 0
    try:
        if size < PROGRESS_MIN:
            import_session(path, store)
            return
        with Progress(
            TextColumn("importing {task.description}"),
            BarColumn(),
            DownloadColumn(),
            console=err_console,
            transient=True,
        ) as bar:
            task = bar.add_task(os.path.basename(path), total=size)
            import_session(path, store, progress=lambda d, t: bar.update(task, completed=d))
    except SessionError as err:
        fail(str(err))


def _summary(store: Any, started: float) -> str:
    s = store.summary()
    refused = f"{s['refused']} clients refused (--max-clients), " if s.get("refused") else ""
    return (
        f"am-dbg: {s['machines']} machines, {store.connects} clients connected in total, "
        f"{refused}{s['transitions']} transitions, {s['mem_bytes'] / 1e6:.1f} MB (estimate), "
        f"{time.monotonic() - started:.0f} s"
    )


@app.command()
def am_dbg(
    machurl: Annotated[
        str, typer.Argument(help="Open at this mach:// address (turns tail mode off).")
    ] = "",
    listen_addr: Annotated[
        str,
        typer.Option(
            "--listen-addr", "-l", help="Telemetry address host:port; -1 disables listening."
        ),
    ] = "localhost:6831",
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "--dir", "-d", help="Where exports are written.")
    ] = Path("."),
    import_data: Annotated[
        str,
        typer.Option("--import", "--import-data", "-i", help="Open a recorded session file."),
    ] = "",
    select_machine: Annotated[
        str, typer.Option("--select-machine", "-m", help="Machine id to show first.")
    ] = "",
    select_transition: Annotated[
        str,
        typer.Option(
            "--select-transition", "-t", help="Transition id (or #N) of the selected machine."
        ),
    ] = "",
    filter_canceled: Annotated[bool, typer.Option(help="Skip canceled transitions.")] = False,
    filter_queued: Annotated[bool, typer.Option(help="Skip queued entries.")] = False,
    filter_auto: Annotated[bool, typer.Option(help="Skip auto transitions.")] = False,
    filter_auto_canceled: Annotated[
        bool, typer.Option(help="Skip canceled auto transitions.")
    ] = False,
    filter_empty: Annotated[bool, typer.Option(help="Skip transitions without changes.")] = False,
    filter_health: Annotated[
        bool, typer.Option(help="Skip Healthcheck / Heartbeat transitions.")
    ] = False,
    filter_checks: Annotated[bool, typer.Option(help="Skip Can* checks (dry runs).")] = False,
    filter_disconn: Annotated[bool, typer.Option(help="Hide disconnected machines.")] = False,
    filter_group: Annotated[
        bool,
        typer.Option(help="With --select-group: skip transitions calling no state of the group."),
    ] = True,
    filter_log_level: Annotated[
        int,
        typer.Option(
            "--filter-log-level",
            min=0,
            max=5,
            help="Log level shown (0-5); lines without a level always show.",
        ),
    ] = 2,
    select_group: Annotated[
        str, typer.Option("--select-group", help="Schema group of the selected machine to show.")
    ] = "",
    view: Annotated[
        str,
        typer.Option("--view", "-v", help="tree-log, tree-matrix or tree-rain."),
    ] = "tree-log",
    view_reader: Annotated[
        bool, typer.Option("--view-reader/--no-view-reader", "-r", help="Show the log reader.")
    ] = True,
    breakpoint: Annotated[
        list[str] | None,
        typer.Option("--breakpoint", "-b", help="Pause when this state activates (repeatable)."),
    ] = None,
    max_mem: Annotated[
        int, typer.Option("--max-mem", help="Memory cap in MB before old transitions go.")
    ] = 1000,
    max_clients: Annotated[
        int,
        typer.Option(
            "--max-clients", help="Clients served at once; more are refused (and counted)."
        ),
    ] = 5000,
    clean_on_connect: Annotated[
        bool,
        typer.Option(help="Wipe a fully disconnected session when a new machine connects."),
    ] = True,
    view_tail: Annotated[bool, typer.Option(help="Start in tail mode.")] = True,
    headless: Annotated[
        bool, typer.Option("--headless", help="No UI: record, export to --output-dir on exit.")
    ] = False,
    web: Annotated[int, typer.Option("--web", help="Serve the TUI in a browser on this port.")] = 0,
    web_host: Annotated[
        str, typer.Option("--web-host", help="Address of the browser view (loopback by default).")
    ] = "127.0.0.1",
    output_name: Annotated[
        str, typer.Option("--output-name", help="File name of the headless recording.")
    ] = DUMP,
    # --- outputs, diagrams web server, forwarding, REPL (wiring: extras.py)
    output_tx: Annotated[
        bool, typer.Option(help="Write tx.md: the transition at the cursor.")
    ] = True,
    output_log: Annotated[
        bool, typer.Option(help="Write log.md: the selected machine's log.")
    ] = False,
    output_clients: Annotated[bool, typer.Option(help="Write clients.txt: every machine.")] = False,
    output_graph: Annotated[
        bool, typer.Option(help="Write graph.md: the machines' graph.")
    ] = False,
    output_diagrams: Annotated[
        int, typer.Option(min=0, max=3, help="Diagrams in --dir/diagrams: 0 off, 1-3 detail.")
    ] = 0,
    ui_web: Annotated[
        bool, typer.Option(help="Diagrams web server on the listen port + 1.")
    ] = True,
    ui_web_addr: Annotated[
        str, typer.Option(help="Address of the diagrams web server (default: loopback, port + 1).")
    ] = "",
    fwd_data: Annotated[
        list[str] | None,
        typer.Option("--fwd-data", "-f", help="Forward all data to this am-dbg (repeatable)."),
    ] = None,
    dbg_repl: Annotated[
        bool, typer.Option("--dbg-repl", help="Serve am-dbg's own machine over aRPC (arpc).")
    ] = False,
    version: Annotated[bool, version_callback("am-dbg")] = False,
) -> None:
    """Run the debugger (TUI, headless recorder or browser view)."""
    from .store import Filters, Store

    listen = _listen(listen_addr)
    filters = Filters(
        canceled=filter_canceled,
        queued=filter_queued,
        auto=filter_auto,
        auto_canceled=filter_auto_canceled,
        empty=filter_empty,
        health=filter_health,
        checks=filter_checks,
        disconnected=filter_disconn,
    )
    if web:
        _serve_web(web, web_host)
        return
    extras = _extras(
        listen,
        output_dir,
        (output_tx, output_log, output_clients, output_graph),
        output_diagrams,
        ui_web_addr if ui_web else None,
        fwd_data or [],
        dbg_repl,
    )
    store = Store(
        max_mem=max_mem * 1024 * 1024, clean_on_connect=clean_on_connect, max_clients=max_clients
    )
    if import_data:
        _load(import_data, store)
    started = time.monotonic()
    if headless:
        if listen is None:
            fail("--headless needs a --listen-addr")
        _headless(store, listen, output_dir / _suffixed(output_name), extras, filters)
        console.print(_summary(store, started), highlight=False, soft_wrap=True)
        return
    if listen is not None:
        console.print(
            f"am-dbg: listening on {listen[0]}:{listen[1]}", highlight=False, soft_wrap=True
        )
    tui = make_tui(
        store,
        machurl=machurl,
        select_machine=select_machine,
        select_transition=select_transition,
        filters=filters,
        breakpoints=breakpoint or [],
        tail=view_tail and not import_data,
        view=view,
        reader=view_reader,
        log_level=filter_log_level,
        group=select_group,
        filter_group=filter_group,
        listen=listen,
        output_dir=output_dir,
        extras=extras,
    )
    tui.run()
    console.print(_summary(store, started), highlight=False, soft_wrap=True)


def make_tui(
    store: Any,
    *,
    machurl: str = "",
    select_machine: str = "",
    select_transition: str = "",
    filters: Any = None,
    breakpoints: list[str] | tuple[str, ...] = (),
    tail: bool = True,
    listen: tuple[str, int] | None = None,
    output_dir: Path = Path("."),
    view: str = "tree-log",
    reader: bool = True,
    log_level: int = 2,
    group: str = "",
    filter_group: bool = True,
    extras: Any = None,
) -> Any:
    """The :class:`~.app.DbgApp` the flags describe (not running yet).

    Without an address the UI opens on the newest transition (of the first
    machine, or of ``select_machine``); bad ids and addresses exit with an error.
    In a live session the selected machine / address opens when it connects.
    """
    from .app import DbgApp
    from .logic import Debugger

    tail = tail and not machurl and not select_transition
    views = {"tree-log": "", "tree-matrix": "MatrixView", "tree-rain": "RainView"}
    if view not in views:
        fail(f"--view {view!r}: expected one of {', '.join(views)}")
    dbg = Debugger(store, filters=filters, tail=tail, reader=reader, log_level=log_level)
    dbg.set_view(views[view])
    if filter_group:
        dbg.mach.add1("FilterGroup")
    dbg.breakpoints.update(breakpoints)
    address = machurl
    if select_transition:
        if not select_machine:
            fail("--select-transition needs --select-machine")
        address = f"mach://{select_machine}/{select_transition.replace('#', '%23')}"
    try:
        if select_machine and store.machines:  # an import: the machine must be in it
            store.get(select_machine)
        if address:
            from .address import Address

            Address.parse(address)
    except (KeyError, ValueError) as err:
        fail(str(err).strip("'\""))
    if not address and not select_machine:
        dbg.refresh()
        dbg.last()
    if group:
        if not store.machines:
            fail("--select-group needs an imported session (the group of which machine?)")
        if not dbg.machine_id:
            dbg.refresh()
        if select_machine and select_machine in store.machines:
            dbg.select_machine(select_machine, keep_time=False)
        try:
            dbg.select_group(group)
        except KeyError as err:
            fail(str(err.args[0]))
    return DbgApp(
        store,
        debugger=dbg,
        listen=listen,
        output_dir=output_dir,
        select_machine=select_machine,
        address=address,
        extras=extras,
    )


def _extras(
    listen: tuple[str, int] | None,
    out: Path,
    files: tuple[bool, bool, bool, bool],
    diagrams: int,
    web_addr: str | None,
    fwd: list[str],
    repl: bool,
) -> Any:
    """The :class:`~.extras.Extras` of the output / web / forwarding / REPL flags."""
    from ...telemetry.errors import TelemetryError
    from . import extras as ex
    from .outputs import OutputOptions

    try:
        web = ex.web_addr(listen, web_addr) if web_addr is not None else None
        opts = OutputOptions(out, *files, diagrams=diagrams)
        return ex.Extras(ex.ExtrasConfig(opts, web, tuple(fwd), repl))
    except (TelemetryError, ValueError) as err:
        fail(str(err))


def _suffixed(name: str) -> str:
    from .session import SUFFIX

    return name if name.endswith(SUFFIX) else name + SUFFIX


def _headless(
    store: Any, listen: tuple[str, int], out: Path, extras: Any = None, filters: Any = None
) -> None:
    """Record until SIGINT / SIGTERM, then write the session to ``out``."""
    import functools

    import trio

    from ...telemetry.receiver import Receiver
    from .logic import Debugger
    from .session import export_session

    async def run() -> None:
        handler = extras.handler(store) if extras is not None else store
        receiver = Receiver(handler, agent="am-dbg headless")
        # signals first: a SIGINT right after the banner still ends the run cleanly
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(receiver.serve, listen[0], listen[1])
                console.print(
                    f"am-dbg: listening on {listen[0]}:{port}", highlight=False, soft_wrap=True
                )
                console.print(f"am-dbg: recording to {out}", highlight=False, soft_wrap=True)
                if extras is not None:
                    say = functools.partial(console.print, highlight=False, soft_wrap=True)
                    dbg = Debugger(store, filters=filters, tail=True)
                    await nursery.start(
                        functools.partial(extras.run, store, dbg, note=say, follow=True)
                    )
                sys.stdout.flush()
                async for _sig in signals:
                    break
                if extras is not None:
                    extras.close()  # the files for the last transition
                nursery.cancel_scope.cancel()

    try:
        trio.run(run)
    except OSError as err:
        fail(f"cannot listen on {listen[0]}:{listen[1]}: {err.strerror or err}")
    out.parent.mkdir(parents=True, exist_ok=True)
    n = export_session(store, out)
    console.print(f"am-dbg: wrote {n} transitions to {out}", highlight=False, soft_wrap=True)


def _serve_web(port: int, host: str) -> None:
    """Serve the TUI (same arguments, minus the web ones) through textual-serve."""
    try:
        from textual_serve.server import Server
    except ImportError:
        fail(f"--web needs textual-serve: {install_hint('dbg')}")
    args = _strip_web(sys.argv[1:])
    command = shlex.join([sys.executable, "-m", "asyncmachine_trio.tools.dbg", *args])
    console.print(
        f"am-dbg: serving the UI on http://{host}:{port}", highlight=False, soft_wrap=True
    )
    sys.stdout.flush()
    Server(command, host=host, port=port, title="am-dbg").serve()


def _strip_web(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--web", "--web-host"):
            skip = True
            continue
        if a.startswith(("--web=", "--web-host=")):
            continue
        out.append(a)
    return out


def main() -> None:
    """Console-script entry point (``am-dbg``)."""
    app()


run = main

if __name__ == "__main__":
    main()
