"""What servers, clients and muxes share: traffic counters and listening."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .engine import Endpoint
from .transport import Transport, serve

__all__ = ["Listening", "Traffic"]


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
    serve_transport: Callable[[Transport], Awaitable[None]]

    async def _listen(
        self, on_bound: Callable[[str], Any], task_status: trio.TaskStatus[str]
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
            task_status=_Started(started),
        )
