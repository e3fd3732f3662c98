"""aRPC server: a source machine exposed over a websocket on 127.0.0.1.

The source has three mutually exclusive states, ``Foo``, ``Bar`` and ``Baz``
(adding one removes the others), ``ErrOnClient`` from
``rpc.StateSourceStates`` (errors a client adds through its network machine),
and ``Payload``: a request state whose handler answers the client with a
payload (``server.send_payload``), delivered to the client's consumer machine.

The server logs the source's state changes, which clients cause remotely
(``python examples/arpc/client.py`` in another terminal), and serves one client
at a time until Ctrl+C.

Run: python examples/arpc/server.py [PORT]   (default 7531, or $ARPC_PORT; 0 = any free port)
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

import trio

import asyncmachine_trio as am
from asyncmachine_trio import rpc

DEFAULT_PORT = 7531

Say = Callable[[str], None]


class ExampleStates(rpc.StateSourceStates):
    """The source machine's schema (``ErrOnClient`` comes from StateSourceStates)."""

    Foo = am.State(remove=("Bar", "Baz"))
    Bar = am.State(remove=("Foo", "Baz"))
    Baz = am.State(remove=("Foo", "Bar"))
    # a client asks for a payload: args {"name": <payload name>}
    Payload = am.State(multi=True)


S = ExampleStates


class SourceHandlers:
    """Handlers of the source machine; they run for remote mutations too."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.server: rpc.Server | None = None

    async def payload_state(self, e: am.Event) -> None:
        """Answer a ``Payload`` request with data for the client's consumer."""
        assert self.server is not None
        name = str(e.args.get("name", "greeting"))
        self.say(f"[server] sending the payload {name!r} to {self.server.client_id}")
        await self.server.send_payload(name, "Hello aRPC", event=e)
        e.machine.remove1(S.Payload)


class ServerHandlers:
    """Handlers of the server's own machine (``rpc.ServerStates``)."""

    def __init__(self, server: rpc.Server, say: Say) -> None:
        self.server = server
        self.say = say

    def handshake_done_state(self, e: am.Event) -> None:
        self.say(f"[server] client {self.server.client_id} connected")

    def client_connected_end(self, e: am.Event) -> None:
        self.say("[server] client disconnected")


async def serve(
    port: int = DEFAULT_PORT,
    say: Say = print,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the source on ``ws://127.0.0.1:<port>`` until cancelled.

    ``task_status.started`` gets the bound address (useful with port 0).
    """

    def logger(level: am.LogLevel, line: str) -> None:
        say(f"[server] {line}")

    handlers = SourceHandlers(say)
    async with am.open_machine(
        S,
        id="example",
        handlers=handlers,
        log_level=am.LogLevel.CHANGES,
        logger=logger,
        dont_log_id=True,
    ) as source:
        server = rpc.Server(source, f"ws://127.0.0.1:{port}", name="example")
        handlers.server = server
        server.mach.bind_handlers(ServerHandlers(server, say))
        try:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(server.serve)
                say(f"[server] listening on {url}")
                task_status.started(url)
        finally:
            server.close()


async def serve_until_signal(port: int, say: Say) -> None:
    """``serve`` until SIGINT (Ctrl+C) or SIGTERM, then stop cleanly."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, port, say)
            async for signum in signals:
                say(f"[server] {signal.Signals(signum).name}: bye")
                nursery.cancel_scope.cancel()
                break


def port_from(argv: list[str]) -> int:
    """The port: first argument, else $ARPC_PORT, else 7531."""
    text = argv[1] if len(argv) > 1 else os.environ.get("ARPC_PORT", str(DEFAULT_PORT))
    return int(text)


def main(argv: list[str] | None = None) -> int:
    port = port_from(sys.argv if argv is None else argv)

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        trio.run(serve_until_signal, port, say)
    except KeyboardInterrupt:  # a second Ctrl+C while shutting down
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
