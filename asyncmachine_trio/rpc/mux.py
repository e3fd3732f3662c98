"""The mux: many clients on one port, one :class:`~.server.Server` each (1.17)."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from ..machine.args import pass_args
from ..machine.logging import LogLevel
from ..machine.machine import Machine
from ..machine.sigs import params_of
from ..machine.transition import Event
from ._common import Listening, serving
from .client import ARpc
from .errors import RpcDestinationError
from .server import Server
from .states import MuxStates
from .transport import TASK_STATUS_IGNORED, Transport
from .wire import DEFAULT_MAX_FRAME

__all__ = ["Mux", "open_mux"]

S = MuxStates


class Mux(Listening):
    """Accepts many connections on one address; each gets its own server of ``source``.

    ``new_server(mux, n)`` may build the server (default: ``Server(source,
    name=f"{name}-{n}", **server_kwargs)``). ``mux.servers`` holds the live ones.
    """

    def __init__(
        self,
        source: Machine | None,
        addr: str = "ws://127.0.0.1:0",
        *,
        name: str = "",
        new_server: Callable[[Mux, int], Server] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_connections: int | None = 256,
        connect_timeout: float = 5.0,
        frame_timeout: float | None = 10.0,
        parent: Machine | str | None = None,
        **server_kwargs: Any,
    ) -> None:
        if source is None and new_server is None:
            raise TypeError("a Mux needs a source machine or a new_server factory")
        self.source = source
        self.addr = addr
        self.name: str = name or secrets.token_hex(4)
        self.new_server = new_server
        if ssl_context is not None and addr.startswith("ws://"):
            raise ValueError(f"an ssl_context with {addr!r}: use wss:// (ws:// is cleartext)")
        self.ssl_context = ssl_context
        self.max_frame = max_frame
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.frame_timeout = frame_timeout
        self.server_kwargs = server_kwargs
        self.mach: Machine = Machine(
            S, id=f"rm-{self.name}", tags=["rpc-mux"], parent=parent, report_errors=False
        )
        self.servers: list[Server] = []
        self._count = 0

    def __repr__(self) -> str:
        return f"<rpc.Mux {self.mach.id} {self.addr}>"

    def _log(self, line: str) -> None:
        self.mach.log_at(LogLevel.OPS, line)

    def _new_server(self, n: int) -> Server:
        if self.new_server is not None:
            return self.new_server(self, n)
        assert self.source is not None
        return Server(
            self.source,
            name=f"{self.name}-{n}",
            parent=self.mach,
            max_frame=self.max_frame,
            **self.server_kwargs,
        )

    async def serve(self, *, task_status: anyio.abc.TaskStatus[str] = TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started`` gets the bound URL."""
        m = self.mach
        m.add1(S.Start)

        def bound(url: str) -> None:
            m.add1(S.Ready, pass_args(ARpc(addr=url)))

        try:
            await self._listen(bound, task_status)
        finally:
            m.remove1(S.Start)

    async def serve_transport(self, transport: Transport) -> None:
        """Serve one accepted connection with a new server."""
        m = self.mach
        self._count += 1
        try:
            server = self._new_server(self._count)
        except Exception as err:
            m.add1(S.NewServerErr)
            m.add_err(err)
            await transport.aclose()
            return
        m.add1(S.ClientConnected)
        self.servers.append(server)
        m.add1(S.HasClients)
        try:
            await server.serve_transport(transport)
        finally:
            self.servers.remove(server)
            server.close()
            if not self.servers and not m.is_disposed:
                m.remove1(S.HasClients)
            m.log_at(LogLevel.OPS, f"[mux] {server.mach.id} closed")

    async def send_payload(
        self,
        name: str,
        data: Any = None,
        *,
        destination: str,
        event: Event | None = None,
        timeout: float | None = 5.0,
    ) -> None:
        """Send a payload to the client with id ``destination`` (``rc-<name>``)."""
        for server in self.servers:
            if server.client_id == destination:
                await server.send_payload(
                    name, data, destination=destination, event=event, timeout=timeout
                )
                return
        raise RpcDestinationError(f"no client {destination!r} on {self.mach.id}")

    def close(self) -> None:
        """Close every server of the mux and dispose the mux's machine."""
        for server in list(self.servers):
            server.close()
        self.mach.dispose()


@params_of(Mux)  # typed options: those of Mux
@asynccontextmanager
async def open_mux(*args: Any, **kwargs: Any) -> AsyncIterator[Mux]:
    """A listening mux (``mux.addr`` is the bound URL); closed on exit.

    Takes the parameters of :class:`Mux`; a lone error leaves as itself.
    """
    async with serving(Mux(*args, **kwargs)) as mux:
        yield mux
