"""Shared fixtures of the aRPC tests: a server and a client on one source machine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

import asyncmachine_trio as am
from asyncmachine_trio import rpc


@asynccontextmanager
async def rpc_pair(
    source: am.Machine,
    schema: Any = None,
    *,
    server_kw: dict[str, Any] | None = None,
    transport: str = "memory",
    ready_timeout: float = 5.0,
    **client_kw: Any,
) -> AsyncIterator[tuple[rpc.Server, rpc.Client]]:
    """A ready server + client on ``source``: in-memory (default), ``ws`` or ``tcp``.

    ``schema`` defaults to the source's schema. Both are stopped on exit.
    """
    if schema is None:
        schema = source.schema
    skw = {"push_interval": 0.0, **(server_kw or {})}
    client_kw.setdefault("call_timeout", 3.0)
    async with anyio.create_task_group() as nursery:
        if transport == "memory":
            server = rpc.Server(source, **skw)
            a, b = rpc.memory_transport_pair()
            nursery.start_soon(server.serve_transport, a)
            used = [False]

            async def dial() -> rpc.Transport:
                if used[0]:
                    # an in-memory pair connects once; a re-dial needs a new server
                    raise rpc.RpcConnectionError("in-memory transport already used")
                used[0] = True
                return b

            client = rpc.Client("memory", schema, dial=dial, **client_kw)
        else:
            server = rpc.Server(source, f"{transport}://127.0.0.1:0", **skw)
            await nursery.start(server.serve)
            client = rpc.Client(server.addr, schema, **client_kw)
        client.start(nursery)
        try:
            await client.wait_ready(ready_timeout)
            yield server, client
        finally:
            with anyio.CancelScope(shield=True):
                await client.stop(dispose=True)
            server.close()
            nursery.cancel_scope.cancel()
