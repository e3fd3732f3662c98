"""Transports: one frame = one websocket binary message, or a length-prefixed chunk.

A :class:`Transport` moves whole frames (bytes) and counts the bytes in both
directions (the reference's ``TrafficMeter``). Three kinds:

- :class:`WebSocketTransport` over trio-websocket (the default; ``ws://`` and
  ``wss://`` URLs, TLS through an :class:`ssl.SSLContext`);
- :class:`StreamTransport` over any trio stream with a 4-byte big-endian length
  prefix (``tcp://`` URLs);
- :func:`memory_transport_pair` for tests: two connected in-memory transports.

Oversized frames raise :class:`RpcFrameTooLargeError` from :meth:`Transport.receive`
after being discarded, so the connection stays usable.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import trio
import trio.testing

from .errors import RpcConnectionError, RpcDecodeError, RpcFrameTooLargeError
from .wire import DEFAULT_MAX_FRAME

__all__ = [
    "StreamTransport",
    "Transport",
    "WebSocketTransport",
    "connect",
    "memory_transport_pair",
    "parse_url",
    "serve",
]

_LEN = struct.Struct(">I")


class locked:
    """``async with locked(lock)``: as ``async with lock``, but an uncontended lock is
    taken without a scheduling round (the I/O that follows is the checkpoint), which
    saves one trio batch per frame sent or call made."""

    __slots__ = ("lock",)

    def __init__(self, lock: trio.Lock) -> None:
        self.lock = lock

    async def __aenter__(self) -> None:
        try:
            self.lock.acquire_nowait()
        except trio.WouldBlock:
            await self.lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.lock.release()


class Transport(Protocol):
    """What the RPC engine needs from a connection."""

    bytes_sent: int
    bytes_received: int
    max_frame: int

    async def send(self, data: bytes) -> None:
        """Send one frame; :class:`RpcConnectionError` when the connection is gone."""

    async def receive(self) -> bytes:
        """The next frame; :class:`RpcConnectionError` when closed."""

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""


class StreamTransport:
    """Frames on a byte stream: a 4-byte big-endian length, then the frame.

    ``frame_timeout``: once a frame's first byte arrived, the whole frame must
    arrive within it, else the connection is closed (a peer cannot hold a
    half-sent frame open). ``strict`` (set before a handshake): an oversized
    frame closes the connection instead of being discarded.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        max_frame: int = DEFAULT_MAX_FRAME,
        *,
        frame_timeout: float | None = None,
    ) -> None:
        self.stream = stream
        self.max_frame = max_frame
        #: the limit of received frames (``limit()``; sends use ``max_frame``)
        self.max_receive = max_frame
        self.frame_timeout = frame_timeout
        self.strict = False
        self.bytes_sent = 0
        self.bytes_received = 0
        self._buf = bytearray()
        self._send_lock = trio.Lock()
        self._closed = False

    async def _fill(self, n: int) -> None:
        while len(self._buf) < n:
            try:
                chunk = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as err:
                raise RpcConnectionError(f"connection lost: {err}") from err
            if not chunk:
                if self._buf:
                    raise RpcConnectionError("connection closed inside a frame (truncated)")
                raise RpcConnectionError("connection closed")
            self.bytes_received += len(chunk)
            self._buf += chunk

    def limit(self, max_receive: int, *, strict: bool) -> None:
        """Limit received frames (``strict``: an oversized frame closes the connection)."""
        self.max_receive = max_receive
        self.strict = strict

    async def receive(self) -> bytes:
        """The next frame; :class:`RpcConnectionError` when closed."""
        if self.frame_timeout is None:
            return await self._receive()
        await self._fill(1)  # idle: no deadline until a frame starts
        try:
            with trio.fail_after(self.frame_timeout):
                return await self._receive()
        except trio.TooSlowError:
            raise RpcConnectionError(
                f"a frame did not complete within {self.frame_timeout}s"
            ) from None

    async def _receive(self) -> bytes:
        await self._fill(4)
        (size,) = _LEN.unpack_from(self._buf)
        del self._buf[:4]
        limit = self.max_receive
        if size > limit and self.strict:
            raise RpcConnectionError(f"frame of {size} bytes before the handshake (limit {limit})")
        if size > limit:
            # discard the frame chunk by chunk: the connection stays in sync
            left = size
            while left:
                if not self._buf:
                    await self._fill(1)
                n = min(left, len(self._buf))
                del self._buf[:n]
                left -= n
            raise RpcFrameTooLargeError(f"frame of {size} bytes (limit {limit})")
        await self._fill(size)
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    async def send(self, data: bytes) -> None:
        """Send one frame; :class:`RpcConnectionError` when the connection is gone."""
        if len(data) > self.max_frame:
            raise RpcFrameTooLargeError(f"frame of {len(data)} bytes (limit {self.max_frame})")
        async with locked(self._send_lock):
            if self._closed:
                raise RpcConnectionError("connection closed")
            try:
                await self.stream.send_all(_LEN.pack(len(data)) + data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as err:
                raise RpcConnectionError(f"connection lost: {err}") from err
            except trio.Cancelled:
                # a frame cut in the middle desynchronises the stream: the
                # connection cannot be used any more (a timeout while the
                # peer does not read)
                await self.aclose()
                raise
        self.bytes_sent += len(data) + 4

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with trio.move_on_after(1) as scope:
            scope.shield = True
            try:
                await self.stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass


class WebSocketTransport:
    """Frames as binary websocket messages (trio-websocket)."""

    def __init__(self, conn: Any, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.conn = conn
        self.max_frame = max_frame
        #: the limit of received frames (``limit()``; sends use ``max_frame``)
        self.max_receive = max_frame
        self.bytes_sent = 0
        self.bytes_received = 0
        self._send_lock = trio.Lock()

    def limit(self, max_receive: int, *, strict: bool) -> None:
        """Limit received frames (``strict``: a larger message closes the connection)."""
        self.max_receive = max_receive
        # trio-websocket closes the connection (1009) past its message size, and
        # buffers a partial message up to it: before a handshake it is the limit
        # itself (no attribute for it in its public API)
        if hasattr(self.conn, "_max_message_size"):
            self.conn._max_message_size = max_receive if strict else _ws_limit(max_receive)

    async def receive(self) -> bytes:
        """The next frame; :class:`RpcConnectionError` when closed."""
        from trio_websocket import ConnectionClosed

        try:
            msg = await self.conn.get_message()
        except ConnectionClosed as err:
            raise RpcConnectionError(f"connection closed: {err.reason}") from err
        if isinstance(msg, str):
            self.bytes_received += len(msg.encode())
            raise RpcDecodeError("text websocket message (frames are binary)")
        self.bytes_received += len(msg)
        if len(msg) > self.max_receive:
            raise RpcFrameTooLargeError(f"frame of {len(msg)} bytes (limit {self.max_receive})")
        return bytes(msg)

    async def send(self, data: bytes) -> None:
        """Send one frame; :class:`RpcConnectionError` when the connection is gone."""
        from trio_websocket import ConnectionClosed

        if len(data) > self.max_frame:
            raise RpcFrameTooLargeError(f"frame of {len(data)} bytes (limit {self.max_frame})")
        async with locked(self._send_lock):
            try:
                await self.conn.send_message(data)
            except ConnectionClosed as err:
                raise RpcConnectionError(f"connection closed: {err.reason}") from err
            except trio.Cancelled:
                # a message cut in the middle breaks the websocket stream
                await self.aclose()
                raise
        self.bytes_sent += len(data)

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        with trio.move_on_after(1) as scope:
            scope.shield = True
            try:
                await self.conn.aclose()
            except Exception:
                pass
            # trio-websocket leaves a client's TCP stream open when the server
            # closed first (its aclose returns early): close it here
            stream = getattr(self.conn, "_stream", None)
            if stream is not None:
                try:
                    await stream.aclose()
                except Exception:
                    pass


def memory_transport_pair(
    max_frame: int = DEFAULT_MAX_FRAME,
) -> tuple[StreamTransport, StreamTransport]:
    """Two connected in-memory transports (``trio.testing.memory_stream_pair``)."""
    a, b = trio.testing.memory_stream_pair()
    return StreamTransport(a, max_frame), StreamTransport(b, max_frame)


def parse_url(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path)`` of ``ws://h:p/path``, ``wss://...`` or ``tcp://h:p``."""
    if "://" not in url:
        url = "ws://" + url
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in ("ws", "wss", "tcp"):
        raise ValueError(f"unsupported scheme {scheme!r} in {url!r} (ws, wss or tcp)")
    host = parts.hostname or "127.0.0.1"
    try:
        port = parts.port
    except ValueError as err:
        raise ValueError(f"bad port in {url!r}") from err
    if port is None:
        raise ValueError(f"no port in {url!r}")
    return scheme, host, port, parts.path or "/"


def _ws_limit(max_frame: int) -> int:
    # trio-websocket closes the connection above its own limit (code 1009); keep
    # it well above ours so an oversized frame is answered, not fatal
    return max(max_frame * 4, 1 << 20)


async def connect(
    url: str,
    *,
    nursery: trio.Nursery | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_frame: int = DEFAULT_MAX_FRAME,
    timeout: float = 3.0,
) -> Transport:
    """Dial ``url`` and return a transport; :class:`RpcConnectionError` on failure.

    Websocket connections run a reader task in ``nursery`` (required for
    ``ws://`` / ``wss://``); the connection lives until closed or until the
    nursery ends.
    """
    scheme, host, port, path = parse_url(url)
    if scheme == "ws" and ssl_context is not None:
        raise ValueError(f"an ssl_context with {url!r}: use wss:// (ws:// is cleartext)")
    if scheme != "tcp" and nursery is None:
        raise ValueError("a websocket connection needs a nursery")
    if scheme == "wss" and ssl_context is None:
        ssl_context = ssl.create_default_context()
    stream: trio.abc.Stream | None = None
    done = False
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(host, port)
            if ssl_context is not None:
                tls = trio.SSLStream(
                    stream, ssl_context, server_hostname=host, https_compatible=scheme == "wss"
                )
                # a refused certificate fails here, at once (not at the first read)
                await tls.do_handshake()
                stream = tls
            if scheme == "tcp":
                transport: Transport = StreamTransport(stream, max_frame)
            else:
                assert nursery is not None
                conn = await _ws_handshake(nursery, stream, host, port, path, max_frame)
                transport = WebSocketTransport(conn, max_frame)
            done = True
            return transport
    except trio.TooSlowError as err:
        raise RpcConnectionError(f"connecting to {url} timed out after {timeout}s") from err
    except (OSError, trio.BrokenResourceError) as err:
        # BrokenResourceError: a failed TLS handshake (the ssl error is its cause)
        raise RpcConnectionError(f"cannot connect to {url}: {err.__cause__ or err!r}") from err
    finally:
        if not done and stream is not None:
            await trio.aclose_forcefully(stream)


async def _ws_handshake(
    nursery: trio.Nursery, stream: trio.abc.Stream, host: str, port: int, path: str, max_frame: int
) -> Any:
    """The websocket upgrade on ``stream``; fails at once if the peer closes during it.

    (trio-websocket would wait for its opening handshake until the timeout: its
    reader task ends without signalling it.)
    """
    from trio_websocket import HandshakeError, wrap_client_stream

    reader_done = trio.Event()

    class _Spawner:
        # runs the connection's reader task in ``nursery`` and tells when it ends
        def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> None:
            async def run() -> None:
                try:
                    await fn(*args)
                finally:
                    reader_done.set()

            nursery.start_soon(run)

    out: list[Any] = []
    errors: list[BaseException] = []
    async with trio.open_nursery() as race:

        async def handshake() -> None:
            try:
                out.append(
                    await wrap_client_stream(
                        cast(Any, _Spawner()),
                        cast(Any, stream),
                        host if port in (80, 443) else f"{host}:{port}",
                        path,
                        max_message_size=_ws_limit(max_frame),
                    )
                )
            except (HandshakeError, OSError, trio.BrokenResourceError) as err:
                errors.append(err)
            race.cancel_scope.cancel()

        async def closed() -> None:
            await reader_done.wait()
            race.cancel_scope.cancel()

        race.start_soon(handshake)
        race.start_soon(closed)
    if out:
        return out[0]
    reason = f": {errors[0]!r}" if errors else ""
    raise RpcConnectionError(f"connection closed during the websocket handshake{reason}")


ConnHandler = Callable[[Transport], Awaitable[None]]


class _Capped(trio.abc.Listener[trio.abc.Stream]):
    """A listener that holds at most ``cap`` connections open (more: closed at accept)."""

    def __init__(self, inner: trio.abc.Listener[Any], cap: int, log: Callable[[str], Any]) -> None:
        self.inner = inner
        self.cap = cap
        self.open = 0
        self.refused = 0
        self._log = log

    async def accept(self) -> trio.abc.Stream:
        while True:
            stream = await self.inner.accept()
            if self.open < self.cap:
                self.open += 1
                return _Counted(stream, self)
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                self._log(f"[rpc] {self.refused} connection(s) refused: {self.cap} open")
            await trio.aclose_forcefully(stream)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Counted(trio.abc.HalfCloseableStream):
    """A stream counted by its listener until closed."""

    def __init__(self, stream: trio.abc.Stream, owner: _Capped) -> None:
        self._s: Any = stream
        self._owner: _Capped | None = owner

    def __getattr__(self, name: str) -> Any:  # .socket and the like
        return getattr(self._s, name)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._s.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._s.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._s.receive_some(max_bytes)  # type: ignore[no-any-return]

    async def send_eof(self) -> None:
        await self._s.send_eof()

    async def aclose(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            owner.open -= 1
        await self._s.aclose()


async def serve(
    url: str,
    handler: ConnHandler,
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_frame: int = DEFAULT_MAX_FRAME,
    max_connections: int | None = None,
    connect_timeout: float = 5.0,
    frame_timeout: float | None = 10.0,
    log: Callable[[str], Any] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``url`` (port 0 = any free port), calling ``handler`` per connection.

    ``task_status.started`` receives the bound URL. ``max_connections`` caps the
    connections open at once (more are closed when accepted); ``connect_timeout``
    bounds a websocket's opening handshake (and TLS's); ``frame_timeout`` the
    time a ``tcp://`` frame may take once started.
    """
    scheme, host, port, path = parse_url(url)
    if scheme == "ws" and ssl_context is not None:
        raise ValueError(f"an ssl_context with {url!r}: use wss:// (ws:// is cleartext)")
    listeners: list[trio.abc.Listener[Any]] = list(await trio.open_tcp_listeners(port, host=host))
    bound = listeners[0].socket.getsockname()[1]  # type: ignore[attr-defined]
    if ssl_context is not None:
        listeners = [
            trio.SSLListener(ln, ssl_context, https_compatible=scheme == "wss") for ln in listeners
        ]
    if max_connections is not None:
        listeners = [_Capped(ln, max_connections, log or (lambda _m: None)) for ln in listeners]
    if scheme == "tcp":

        async def on_stream(stream: trio.abc.Stream) -> None:
            t = StreamTransport(stream, max_frame, frame_timeout=frame_timeout)
            try:
                await handler(t)
            finally:
                await t.aclose()

        async with trio.open_nursery() as nursery:
            task_status.started(f"tcp://{host}:{bound}")
            await trio.serve_listeners(on_stream, listeners, handler_nursery=nursery)
        return

    from trio_websocket import WebSocketServer

    async def on_request(request: Any) -> None:
        try:
            conn = await request.accept()
        except Exception:
            return
        t = WebSocketTransport(conn, max_frame)
        try:
            await handler(t)
        finally:
            await t.aclose()

    class _Started:
        def started(self, _server: Any = None) -> None:
            task_status.started(f"{scheme}://{host}:{bound}{path if path != '/' else ''}")

    async with trio.open_nursery() as nursery:
        server = WebSocketServer(
            on_request,
            cast(Any, listeners),
            handler_nursery=nursery,
            max_message_size=_ws_limit(max_frame),
            connect_timeout=connect_timeout,
            disconnect_timeout=min(connect_timeout, 5.0),
        )
        await server.run(task_status=cast(Any, _Started()))
