"""Tree state source: one root machine replicated to L1 and L2 replicas, each serving HTTP.

The root holds flight statuses: for each of 5 flights, a status
(``OnTime`` / ``Delayed`` / ``Boarding`` / ``Departed``) and a gate (``A`` /
``B`` / ``C``), each group mutually exclusive (``remove=``), 35 states generated
from two lists. Every ``interval`` the root changes one flight at random.

- The root is exposed by an aRPC ``Mux`` (many clients on one port).
- Each **L1 replica** is a client of the root: its network machine mirrors the
  root's clock, and is exposed again by its own ``Mux``.
- Each **L2 replica** is a client of an L1 replica. Changes flow down the tree
  as clock diffs; the root only pushes to its L1 replicas, however many L2
  replicas read.
- Every node (root and replicas) answers ``GET /`` over HTTP with its active
  states as JSON, from its local clock — a real ASGI server (hypercorn, on
  trio) on 127.0.0.1. Reads scale with the number of replicas.

Needs the ``rpc`` and ``examples`` extras.

Run: python examples/tree_state_source.py [ROUNDS]   (prints the nodes' URLs, then each change)
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import httpx
import trio
from hypercorn.config import Config as HttpConfig
from hypercorn.trio import serve as serve_http

import asyncmachine_trio as am
from asyncmachine_trio import rpc

FLIGHTS = 5
STATUSES = ("OnTime", "Delayed", "Boarding", "Departed")
GATES = ("GateA", "GateB", "GateC")

Say = Callable[[str], None]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def flight_schema() -> dict[str, am.State]:
    """``Flight<n><Status>`` and ``Flight<n><Gate>`` states; each group excludes itself."""
    schema: dict[str, am.State] = {}
    for n in range(1, FLIGHTS + 1):
        for group in (STATUSES, GATES):
            names = [f"Flight{n}{s}" for s in group]
            for name in names:
                schema[name] = am.State(remove=tuple(x for x in names if x != name))
    return am.schema_merge(rpc.StateSourceStates, schema)


def http_app(mach: am.Machine) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app: ``GET /`` -> ``{"id": ..., "active": [...]}`` read from ``mach``'s clock."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        if scope["path"] != "/" or scope["method"] != "GET":
            status, body = 404, {"error": f"no route {scope['method']} {scope['path']}"}
        else:
            # in state order (active_states() lists them in activation order)
            active = [s for s in mach.state_names if mach.is1(s)]
            status, body = 200, {"id": mach.id, "active": active}
        data = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    return app


async def start_http(nursery: trio.Nursery, mach: am.Machine, stop: trio.Event) -> str:
    """Serve ``mach``'s active states over HTTP on 127.0.0.1 (a free port) until ``stop``."""
    config = HttpConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    binds: list[str] = await nursery.start(
        functools.partial(serve_http, http_app(mach), config, shutdown_trigger=stop.wait)
    )
    return binds[0]


@attrs.define
class Node:
    """One node of the tree: its machine, the mux serving its replicas, its HTTP URL."""

    name: str
    mach: am.Machine
    mux: rpc.Mux | None = None
    http: str = ""


@attrs.define
class Tree:
    """The root and its replicas; ``nodes`` lists them root first."""

    root: Node
    l1: list[Node] = attrs.field(factory=list)
    l2: list[Node] = attrs.field(factory=list)

    @property
    def nodes(self) -> list[Node]:
        return [self.root, *self.l1, *self.l2]


@contextlib.asynccontextmanager
async def open_tree(
    l1: int = 2, l2: int = 4, *, push_interval: float = 0.05
) -> AsyncIterator[Tree]:
    """Start the root, ``l1`` replicas of it and ``l2`` replicas of those (spread evenly)."""
    stop = trio.Event()
    async with contextlib.AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(stop.set)  # runs before the nursery waits for the HTTP servers
        root_mach = await stack.enter_async_context(am.open_machine(flight_schema(), id="root"))
        tree = Tree(Node("root", root_mach))

        async def expose(node: Node) -> None:
            node.mux = await stack.enter_async_context(
                rpc.open_mux(node.mach, name=node.name, push_interval=push_interval)
            )
            node.http = await start_http(nursery, node.mach, stop)

        await expose(tree.root)
        for i in range(l1):
            assert tree.root.mux is not None
            client = await stack.enter_async_context(
                rpc.open_client(tree.root.mux.addr, name=f"l1-{i}")
            )
            node = Node(f"l1-{i}", client.netmach)
            await expose(node)
            tree.l1.append(node)
        for j in range(l2):
            parent = tree.l1[j % l1].mux
            assert parent is not None
            client = await stack.enter_async_context(rpc.open_client(parent.addr, name=f"l2-{j}"))
            node = Node(f"l2-{j}", client.netmach)
            node.http = await start_http(nursery, node.mach, stop)
            tree.l2.append(node)
        yield tree


def mutate(mach: am.Machine, rng: random.Random) -> str:
    """Change one random flight's status or gate; return the state added."""
    n = rng.randrange(1, FLIGHTS + 1)
    group = STATUSES if rng.random() < 0.6 else GATES
    state = f"Flight{n}{rng.choice(group)}"
    mach.add1(state)
    return state


async def main(
    rounds: int = 5, interval: float = 1.0, say: Say = print, seed: int | None = None
) -> list[str]:
    """Build the tree, change the root ``rounds`` times, read every node over HTTP after each."""
    rng = random.Random(seed)
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        say(line)

    async with open_tree() as tree, httpx.AsyncClient() as http:
        for node in tree.nodes:
            log(f"{node.name}: {node.http}  (aRPC {node.mux.addr if node.mux else '-'})")
        for _ in range(rounds):
            await trio.sleep(interval)
            state = mutate(tree.root.mach, rng)
            with trio.fail_after(10):
                for node in tree.nodes:
                    await node.mach.when1(state)
            answers = [(await http.get(node.http)).json()["active"] for node in tree.nodes]
            same = all(a == answers[0] for a in answers)
            log(f"+{state}: {len(answers[0])} active, {len(answers)} nodes agree: {same}")
    return lines


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 5)
