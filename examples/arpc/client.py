"""aRPC client: mutates the server's machine through a network machine.

``rpc.open_client`` connects to ``examples/arpc/server.py``; the handshake
brings the source's schema and clock, so ``client.netmach`` (a network
machine) has the source's states and reads them locally (``nm.string()``,
``nm.is1("Foo")``, ``nm.when1(...)``). Mutations travel: ``await
nm.call_add1("Foo")`` returns the source's result with the new clock already
mirrored here. The client then adds ``Payload``; the source answers with
``server.send_payload`` and the data arrives on the consumer machine (schema
``rpc.ConsumerStates``) as ``ServerPayload``.

Start the server first (``python examples/arpc/server.py``), then

Run: python examples/arpc/client.py [PORT|URL]   (default 7531, or $ARPC_PORT)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import trio

import asyncmachine_trio as am
from asyncmachine_trio import rpc

DEFAULT_PORT = 7531
TIMEOUT = 10.0  # seconds to connect, and for the rest

Say = Callable[[str], None]


class ConsumerHandlers:
    """Handlers of the consumer machine: payloads from the server arrive here."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.received = trio.Event()

    def server_payload_state(self, e: am.Event) -> None:
        payload = am.parse_args(e.args, rpc.AServerPayload)
        assert payload is not None
        self.say(f"[client] payload {payload.name!r}: {payload.data}")
        e.machine.remove1(rpc.ConsumerStates.ServerPayload)
        self.received.set()


async def run(addr: str, say: Say = print) -> None:
    """Connect to ``addr``, mutate Foo -> Bar -> Baz, ask for a payload and wait for it."""
    consumer_handlers = ConsumerHandlers(say)
    consumer = am.Machine(rpc.ConsumerStates, id="example-consumer", handlers=consumer_handlers)
    # no schema given: the server sends it in the handshake
    async with rpc.open_client(
        addr,
        name="example",
        consumer=consumer,
        conn_retries=2,
        conn_retry_delay=0.25,
        ready_timeout=TIMEOUT,
    ) as client:
        nm = client.netmach
        say(f"[client] connected: {nm.id} mirrors {nm.remote_id} {nm.string()}")
        with trio.fail_after(TIMEOUT):
            for state in ("Foo", "Bar", "Baz"):
                result = await nm.call_add1(state)
                say(f"[client] add {state}: {result}, remote machine now {nm.string()}")
            active = nm.switch(["Foo", "Bar", "Baz"])
            say(f"[client] read locally: {active} is active")

            say("[client] requesting a payload")
            await nm.call_add1("Payload", {"name": "greeting"})
            await consumer_handlers.received.wait()
    consumer.dispose()
    say("[client] done")


def addr_from(argv: list[str]) -> str:
    """The server's URL: first argument (a port or a URL), else $ARPC_PORT, else 7531."""
    text = argv[1] if len(argv) > 1 else os.environ.get("ARPC_PORT", str(DEFAULT_PORT))
    return f"ws://127.0.0.1:{int(text)}" if text.isdigit() else text


def main(argv: list[str] | None = None) -> int:
    addr = addr_from(sys.argv if argv is None else argv)

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        trio.run(run, addr, say)
    except rpc.RpcConnectionError as err:
        say(f"[client] {err}")
        say("[client] is the server running? python examples/arpc/server.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
