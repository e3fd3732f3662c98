"""CLI + daemon, the daemon: a singleton machine that runs operations for CLI calls.

The daemon's machine (schema: ``BasicStates`` + ``DisposedStates`` +
``rpc.StateSourceStates`` + the op states ``OpFoo1`` / ``OpBar2``) is exposed
by an aRPC server on 127.0.0.1. A CLI process (``cli.py``) connects as a
client and adds an op state with a ``duration`` argument through its network
machine. The daemon:

1. refuses an op without a valid duration (negotiation, ``op_*_enter``);
2. runs the op as a task scoped to the op state (``async def op_*_state``),
   so it is cancelled if the op state is removed or the CLI disconnects;
3. answers with ``server.send_payload("opdone", ...)``, delivered to the CLI's
   consumer machine, then removes the op state.

One client at a time (``rpc.Server``); the next CLI call connects after the
previous one left.

Run: python examples/cli_daemon/daemon.py [PORT]   (default 7532; 0 = any free port)
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import trio

import asyncmachine_trio as am
from asyncmachine_trio import rpc
from asyncmachine_trio.states import BasicStates, DisposedHandlers, DisposedStates

DEFAULT_PORT = 7532
MAX_DURATION = 60.0
OPS = ("OpFoo1", "OpBar2")

Say = Callable[[str], None]


class DaemonStates(BasicStates, DisposedStates, rpc.StateSourceStates):
    OpFoo1 = am.State(require=(am.START,))
    OpBar2 = am.State(require=(am.START,))


S = DaemonStates


class DaemonHandlers(DisposedHandlers):
    def __init__(self, say: Say) -> None:
        super().__init__()
        self.say = say
        self.server: rpc.Server | None = None

    def _valid(self, e: am.Event) -> bool:
        duration = e.args.get("duration")
        return isinstance(duration, int | float) and 0 <= duration <= MAX_DURATION

    async def _op(self, e: am.Event, op: str) -> None:
        assert self.server is not None
        duration = float(e.args["duration"])
        self.say(f"[daemon] starting {op} for {duration}s")
        await trio.sleep(duration)
        self.say(f"[daemon] {op} done")
        await self.server.send_payload("opdone", f"done for {op}", event=e)
        e.machine.remove1(op)  # last: it cancels this task

    def op_foo1_enter(self, e: am.Event) -> bool:
        return self._valid(e)

    def op_bar2_enter(self, e: am.Event) -> bool:
        return self._valid(e)

    async def op_foo1_state(self, e: am.Event) -> None:
        await self._op(e, S.OpFoo1)

    async def op_bar2_state(self, e: am.Event) -> None:
        await self._op(e, S.OpBar2)


class ServerHandlers:
    """The server's own machine: a client that leaves takes its ops with it."""

    def __init__(self, daemon: am.Machine, say: Say) -> None:
        self.daemon = daemon
        self.say = say

    def handshake_done_state(self, e: am.Event) -> None:
        self.say("[daemon] cli connected")

    def client_connected_end(self, e: am.Event) -> None:
        self.say("[daemon] cli left")
        self.daemon.remove(list(OPS))


async def serve(
    port: int = DEFAULT_PORT,
    say: Say = print,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon on ``ws://127.0.0.1:<port>`` until cancelled (``started`` gets the URL)."""
    handlers = DaemonHandlers(say)
    async with am.open_machine(S, id="daemon", handlers=handlers) as daemon:
        daemon.add1(S.Start)
        server = rpc.Server(daemon, f"ws://127.0.0.1:{port}", name="daemon")
        handlers.server = server
        server.mach.bind_handlers(ServerHandlers(daemon, say))
        try:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(server.serve)
                say(f"[daemon] listening on {url}")
                task_status.started(url)
        finally:
            server.close()


def main(argv: list[str]) -> int:
    port = int(argv[1]) if len(argv) > 1 else DEFAULT_PORT
    try:
        trio.run(serve, port)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
