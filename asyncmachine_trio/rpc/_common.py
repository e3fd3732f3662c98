"""What servers, clients and muxes share: traffic counters and listening."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import anyio
import anyio.abc

from ..helpers.env import env_on
from ..machine.excgroup import unwrap_single
from ..machine.logging import LogLevel
from .engine import Endpoint
from .transport import Transport, serve

__all__ = ["Listening", "Traffic", "machine_kwargs", "serving"]


class Traffic:
    """Calls and bytes of every connection so far (the current one counted live)."""

    _ep: Endpoint | None = None
    _calls_done = 0
    _bytes_sent_done = 0
    _bytes_received_done = 0

    @property
    def calls(self) -> int:
        """Requests this end sent (the reference's ``CallCount``), notifications included."""
        return self._calls_done + (self._ep.calls if self._ep else 0)

    @property
    def bytes_sent(self) -> int:
        return self._bytes_sent_done + (self._ep.transport.bytes_sent if self._ep else 0)

    @property
    def bytes_received(self) -> int:
        return self._bytes_received_done + (self._ep.transport.bytes_received if self._ep else 0)

    def _retire(self, ep: Endpoint) -> None:
        """Add a finished connection's counters to the totals."""
        self._calls_done += ep.calls
        self._bytes_sent_done += ep.transport.bytes_sent
        self._bytes_received_done += ep.transport.bytes_received


class _Started:
    def __init__(self, fn: Callable[[str], None]) -> None:
        self.fn = fn

    def started(self, url: str = "") -> None:
        self.fn(url)


class Listening:
    """``serve()`` for servers and muxes: listen on ``addr``, one handler per connection."""

    addr: str
    ssl_context: ssl.SSLContext | None
    max_frame: int
    max_connections: int | None
    connect_timeout: float
    frame_timeout: float | None
    serve_transport: Callable[[Transport], Awaitable[None]]
    _log: Callable[[str], Any]

    async def _listen(
        self, on_bound: Callable[[str], Any], task_status: anyio.abc.TaskStatus[str]
    ) -> None:
        def started(url: str) -> None:
            self.addr = url
            on_bound(url)
            task_status.started(url)

        await serve(
            self.addr,
            self.serve_transport,
            ssl_context=self.ssl_context,
            max_frame=self.max_frame,
            max_connections=self.max_connections,
            connect_timeout=self.connect_timeout,
            frame_timeout=self.frame_timeout,
            log=self._log,
            task_status=_Started(started),
        )


def machine_kwargs(log_level: LogLevel | int | None, logger: Any, env: str) -> dict[str, Any]:
    """Logging settings of an rpc machine; ``env`` (e.g. ``AM_RPC_LOG_CLIENT``) turns OPS on.

    The layer's own machines do not report unhandled errors: their errors reach
    the user as exceptions (``open_client``, ``wait_ready``...) and Err* states.
    """
    kw: dict[str, Any] = {"report_errors": False}
    if log_level is None and env_on(env):
        log_level = LogLevel.OPS
    if log_level is not None:
        kw["log_level"] = log_level
    if logger is not None:
        kw["logger"] = logger
    return kw


class _Serving(Protocol):
    async def serve(self, *, task_status: anyio.abc.TaskStatus[str] = ...) -> None: ...

    def close(self) -> None: ...


L = TypeVar("L", bound=_Serving)


@asynccontextmanager
async def serving(listener: L) -> AsyncIterator[L]:
    """Run ``listener.serve()`` in a nursery until the block exits, then close it.

    A lone exception (a busy port, an error in the block) leaves as itself.
    """
    with unwrap_single():
        async with anyio.create_task_group() as nursery:
            await nursery.start(listener.serve)
            try:
                yield listener
            finally:
                listener.close()
                nursery.cancel_scope.cancel()
