"""A machine the ``arpc`` REPL can reach: opt in with AM_REPL_ADDR / AM_REPL_DIR.

    AM_REPL_DIR=tmp/repl python examples/repl.py     # writes tmp/repl/worker-repl.addr
    arpc -d tmp/repl                                 # in another terminal
    arpc -d tmp/repl -- add worker Foo               # or one command

Without either variable the machine listens on any free port of 127.0.0.1 and
prints the address. Stops on Ctrl+C (SIGINT) or SIGTERM.

Run: python examples/repl.py [MACHINE_ID]
"""

from __future__ import annotations

import signal
import sys

import trio

import asyncmachine_trio as am
from asyncmachine_trio import rpc
from asyncmachine_trio.rpc import repl


class WorkerStates(rpc.StateSourceStates):
    """A small worker: Foo and Bar exclude each other, Baz needs Foo."""

    Foo = am.State(remove=("Bar",))
    Bar = am.State(remove=("Foo",))
    Baz = am.State(require=("Foo",))
    Tick = am.State(multi=True)


S = WorkerStates


async def main(mach_id: str = "worker") -> None:
    async with am.open_machine(S, id=mach_id) as mach:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                if not repl.mach_repl_env(mach, nursery):
                    url = await nursery.start(repl.mach_repl, mach)
                    print(f"{mach.id} listening on {url}", flush=True)
                else:
                    print(f"{mach.id} started (AM_REPL_ADDR / AM_REPL_DIR)", flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:2])
