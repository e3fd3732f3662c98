"""``am-relay``: record the debugger stream to rotated files, optionally forwarding it.

    am-relay rotate-dbg -l localhost:6831 -d recordings --interval-tx 10000 --interval-duration 24h
    am-relay rotate-dbg -f localhost:6832      # also to a live debugger on 6832

Point machines at it as at a debugger (``AM_DBG_ADDR=localhost:6831``).
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import trio
import typer

from ..telemetry.protocol import DEFAULT_ADDR, parse_addr
from ..telemetry.receiver import Receiver
from ._cli import console, fail, version_callback
from .relay import Forwarder, RotatedFile, Rotator, parse_duration

app: typer.Typer = typer.Typer(
    name="am-relay",
    help="Relay the asyncmachine debugger stream: rotated recordings, forwarding.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _main(
    version: Annotated[bool, version_callback("am-relay")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Log connections and errors.")] = False,
) -> None:
    """Relay the asyncmachine debugger stream: rotated recordings, forwarding."""
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")


async def serve(
    rotator: Rotator,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Receive on ``host:port`` and rotate until cancelled (``task_status`` gets the port)."""
    receiver = Receiver(rotator, agent="am-relay")
    async with trio.open_nursery() as nursery:
        for f in rotator.forwarders:
            nursery.start_soon(f.run)
        nursery.start_soon(rotator.run)
        bound: int = await nursery.start(receiver.serve, host, port)
        task_status.started(bound)


def _find_os_error(err: BaseException) -> OSError | None:
    if isinstance(err, OSError):
        return err
    for sub in getattr(err, "exceptions", ()):
        found = _find_os_error(sub)
        if found is not None:
            return found
    return None


@app.command("rotate-dbg")
def rotate_dbg(
    listen_addr: Annotated[
        str, typer.Option("-l", "--listen-addr", help="Where machines send to (host:port).")
    ] = DEFAULT_ADDR,
    out_dir: Annotated[Path, typer.Option("-d", "--dir", help="Directory of the files.")] = Path(
        "."
    ),
    output: Annotated[str, typer.Option("-o", "--output", help="File name prefix.")] = "am-relay",
    interval_tx: Annotated[
        int, typer.Option("--interval-tx", help="A new file after this many transitions.")
    ] = 10_000,
    interval_duration: Annotated[
        str, typer.Option("--interval-duration", help="A new file after this long (30s, 5m, 24h).")
    ] = "24h",
    fwd_addr: Annotated[
        list[str] | None,
        typer.Option("-f", "--fwd-addr", help="Forward to a live debugger (repeatable)."),
    ] = None,
) -> None:
    """Record every machine's schema and transitions into rotated .amdbg.gz files."""
    try:
        host, port = parse_addr(listen_addr)
        interval = parse_duration(interval_duration)
        if interval_tx < 1:
            raise ValueError(f"--interval-tx must be at least 1, got {interval_tx}")
    except Exception as err:
        fail(str(err))

    def wrote(rf: RotatedFile) -> None:
        console.print(
            f"[green]wrote[/] {rf.path} ({rf.txs} transitions, {rf.machines} machines)",
            highlight=False,
            soft_wrap=True,
        )

    holder: list[Rotator] = []

    async def main() -> None:
        fwds: list[Forwarder] = []
        rotator = Rotator(
            out_dir, output, interval_tx=interval_tx, interval=interval, on_file=wrote
        )
        for a in fwd_addr or ():
            fwds.append(Forwarder(a, rotator.current_schemas))
        rotator.forwarders = fwds
        holder.append(rotator)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(serve, rotator, host, port)
                console.print(
                    f"am-relay listening on {host}:{bound}, writing to {out_dir}/", soft_wrap=True
                )
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    except Exception as err:  # an OSError, maybe inside an exception group
        os_err = _find_os_error(err)
        if os_err is None:
            raise
        fail(f"cannot listen on {listen_addr}: {os_err}")
    r = holder[0] if holder else None
    if r is not None:
        console.print(
            f"bye: {r.total_txs} transitions from {_n(len(r.machines_seen), 'machine')},"
            f" {_n(len(r.files), 'file')}",
            soft_wrap=True,
        )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()


def _n(count: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
