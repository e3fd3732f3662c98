"""CLI + daemon, the CLI: one call runs one operation on the daemon over aRPC.

Connects to ``daemon.py`` with ``rpc.open_client`` (the handshake brings the
daemon's schema and clock), adds ``OpFoo1`` or ``OpBar2`` with a ``duration``
through the network machine (``await nm.call_add1(...)`` returns the daemon's
own result: ``canceled`` when its negotiation refused the op), then waits for
the daemon's ``opdone`` payload on its consumer machine
(``rpc.ConsumerStates``) and exits.

Needs the ``rpc`` and ``examples`` extras.

Run: python examples/cli_daemon/cli.py --foo-1 --duration 0.5 [--addr ws://127.0.0.1:7532]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click
import trio

import asyncmachine_trio as am
from asyncmachine_trio import rpc

DEFAULT_ADDR = "ws://127.0.0.1:7532"

Say = Callable[[str], None]


class OpRefusedError(Exception):
    """The daemon refused the operation (its negotiation returned False)."""


class Consumer:
    """Handlers of the consumer machine: the daemon's payloads arrive here."""

    def __init__(self) -> None:
        self.payloads: list[rpc.AServerPayload] = []
        self.received = trio.Event()

    def server_payload_state(self, e: am.Event) -> None:
        payload = am.parse_args(e.args, rpc.AServerPayload)
        assert payload is not None
        self.payloads.append(payload)
        e.machine.remove1(rpc.ConsumerStates.ServerPayload)
        if payload.name == "opdone":
            self.received.set()


async def run_op(addr: str, op: str, duration: float, say: Say = print) -> str:
    """Run ``op`` on the daemon at ``addr``; return the ``opdone`` payload's data."""
    consumer = Consumer()
    consumer_mach = am.Machine(rpc.ConsumerStates, id=f"cli-{os.getpid()}", handlers=consumer)
    try:
        async with rpc.open_client(
            addr, name=f"cli-{os.getpid()}", consumer=consumer_mach, conn_retries=2
        ) as client:
            nm = client.netmach
            with trio.fail_after(duration + 10):
                result = await nm.call_add1(op, {"duration": duration})
                if result is not am.Result.CANCELED:
                    say(f"[cli] {op}: {result.name.lower()}, daemon now {nm.string()}")
                    await consumer.received.wait()
        # raised outside the client's block (a nursery would wrap it in an ExceptionGroup)
        if result is am.Result.CANCELED:
            raise OpRefusedError(f"the daemon refused {op} (duration {duration})")
        data = str(consumer.payloads[-1].data)
        say(f"[cli] opdone: {data}")
        return data
    finally:
        consumer_mach.dispose()


@click.command()
@click.option("--foo-1", "foo1", is_flag=True, help="Run OpFoo1 on the daemon.")
@click.option("--bar-2", "bar2", is_flag=True, help="Run OpBar2 on the daemon.")
@click.option("-d", "--duration", default=1.0, show_default=True, help="Seconds the op takes.")
@click.option("--addr", default=DEFAULT_ADDR, show_default=True, help="The daemon's URL.")
def main(foo1: bool, bar2: bool, duration: float, addr: str) -> None:
    """Run one operation on the daemon and print its result."""
    if foo1 == bar2:
        raise click.UsageError("pass exactly one of --foo-1 / --bar-2")
    op = "OpFoo1" if foo1 else "OpBar2"
    try:
        trio.run(run_op, addr, op, duration)
    except rpc.RpcConnectionError as err:
        hint = "is the daemon running? examples/cli_daemon/daemon.py"
        raise click.ClickException(f"{err} ({hint})") from None
    except OpRefusedError as err:
        raise click.ClickException(str(err)) from None


if __name__ == "__main__":
    sys.exit(main())
