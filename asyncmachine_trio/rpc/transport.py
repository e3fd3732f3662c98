"""Transports: one frame = one websocket binary message, or a length-prefixed chunk.

A :class:`Transport` moves whole frames (bytes) and counts the bytes in both
directions (the reference's ``TrafficMeter``). Three kinds, on trio and on
asyncio alike (anyio streams):

- :class:`WebSocketTransport`: RFC 6455 over any byte stream, driven by
  ``wsproto`` (``ws://`` and ``wss://`` URLs, TLS through an
  :class:`ssl.SSLContext`);
- :class:`StreamTransport` over any byte stream (anyio, or trio's) with a
  4-byte big-endian length prefix (``tcp://`` URLs);
- :func:`memory_transport_pair` for tests: two connected in-memory transports.

Oversized frames raise :class:`RpcFrameTooLargeError` from :meth:`Transport.receive`
after being discarded, so the connection stays usable (before a handshake,
``limit(strict=True)`` makes them close the connection instead).
"""

from __future__ import annotations

import errno
import ssl
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import anyio
import anyio.abc
import anyio.lowlevel
import trio

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
_CHUNK = 65536

# what a broken or closed stream raises, on either backend
_IO_ERRORS: tuple[type[BaseException], ...] = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


class locked:
    """``async with locked(lock)``: as ``async with lock``, but an uncontended lock is
    taken without a scheduling round (the I/O that follows is the checkpoint), which
    saves one batch per frame sent or call made."""

    __slots__ = ("lock",)

    def __init__(self, lock: anyio.Lock) -> None:
        self.lock: anyio.Lock = lock

    async def __aenter__(self) -> None:
        try:
            self.lock.acquire_nowait()
        except anyio.WouldBlock:
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


class _IO:
    """Bytes in and out of an anyio byte stream or a trio stream."""

    __slots__ = ("_recv", "_send", "stream")

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        if hasattr(stream, "receive_some"):  # a trio stream
            self._recv = stream.receive_some
            self._send = stream.send_all
        else:
            self._recv = self._anyio_receive
            self._send = stream.send

    async def _anyio_receive(self, max_bytes: int) -> bytes:
        try:
            return bytes(await self.stream.receive(max_bytes))
        except anyio.EndOfStream:
            return b""

    async def recv(self) -> bytes:
        """Some bytes; ``b""`` at the end of the stream."""
        try:
            return bytes(await self._recv(_CHUNK))
        except _IO_ERRORS as err:
            raise RpcConnectionError(f"connection lost: {err!r}") from err

    async def send(self, data: bytes) -> None:
        try:
            await self._send(data)
        except _IO_ERRORS as err:
            raise RpcConnectionError(f"connection lost: {err!r}") from err

    async def aclose(self) -> None:
        with anyio.move_on_after(1, shield=True):
            try:
                await self.stream.aclose()
            except Exception:
                pass


class StreamTransport:
    """Frames on a byte stream: a 4-byte big-endian length, then the frame.

    ``frame_timeout``: once a frame's first byte arrived, the whole frame must
    arrive within it, else the connection is closed (a peer cannot hold a
    half-sent frame open). ``strict`` (set before a handshake): an oversized
    frame closes the connection instead of being discarded.
    """

    def __init__(
        self,
        stream: Any,
        max_frame: int = DEFAULT_MAX_FRAME,
        *,
        frame_timeout: float | None = None,
    ) -> None:
        self.stream = stream
        self._io = _IO(stream)
        self.max_frame = max_frame
        #: the limit of received frames (``limit()``; sends use ``max_frame``)
        self.max_receive: int = max_frame
        self.frame_timeout = frame_timeout
        self.strict: bool = False
        self.bytes_sent: int = 0
        self.bytes_received: int = 0
        self._buf = bytearray()
        self._send_lock = anyio.Lock()
        self._closed = False

    async def _fill(self, n: int) -> None:
        while len(self._buf) < n:
            chunk = await self._io.recv()
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
            with anyio.fail_after(self.frame_timeout):
                return await self._receive()
        except TimeoutError:
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
                await self._io.send(_LEN.pack(len(data)) + data)
            except anyio.get_cancelled_exc_class():
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
        await self._io.aclose()


# ----- websockets (wsproto)


def _ws_limit(max_frame: int) -> int:
    # the size at which a message being received closes the connection (1009);
    # well above ours, so an oversized frame is answered, not fatal
    return max(max_frame * 4, 1 << 20)


class WebSocketTransport:
    """Frames as binary websocket messages (RFC 6455 by ``wsproto``, on any byte stream).

    The reader (:meth:`receive`) drives the protocol: it answers pings and the
    peer's close. A message larger than the hard limit (``_ws_limit``, or the
    limit itself when ``strict``) closes the connection (code 1009) as soon as
    its size is known to be too large; its parts are never kept beyond it.
    """

    def __init__(
        self, stream: Any, ws: Any, max_frame: int = DEFAULT_MAX_FRAME, *, pending: bytes = b""
    ) -> None:
        self._io = _IO(stream)
        self._ws = ws
        self.max_frame = max_frame
        #: the limit of received frames (``limit()``; sends use ``max_frame``)
        self.max_receive: int = max_frame
        self._hard = _ws_limit(max_frame)
        self.bytes_sent: int = 0
        self.bytes_received: int = 0
        self._send_lock = anyio.Lock()
        self._parts: list[bytes] = []
        self._size = 0
        self._text = False
        self._closed = False
        if pending:
            ws.receive_data(pending)

    def limit(self, max_receive: int, *, strict: bool) -> None:
        """Limit received frames (``strict``: a larger message closes the connection)."""
        self.max_receive = max_receive
        self._hard = max_receive if strict else _ws_limit(max_receive)

    async def _raw(self, data: bytes) -> None:
        async with locked(self._send_lock):
            await self._io.send(data)

    async def receive(self) -> bytes:
        """The next binary message; answers pings and the peer's close on the way."""
        from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
        from wsproto.utilities import LocalProtocolError, RemoteProtocolError

        while True:
            out: list[bytes] = []
            try:
                for ev in self._ws.events():
                    if isinstance(ev, BytesMessage | TextMessage):
                        data = ev.data.encode() if isinstance(ev.data, str) else bytes(ev.data)
                        self._size += len(data)
                        if self._size > self._hard:
                            await self._fail(1009, f"message above {self._hard} bytes")
                        self._parts.append(data)
                        self._text = isinstance(ev, TextMessage)
                        if ev.message_finished:
                            msg = b"".join(self._parts)
                            self._parts, self._size = [], 0
                            self.bytes_received += len(msg)  # frames, not ws framing
                            for o in out:
                                await self._raw(o)
                            if self._text:
                                raise RpcDecodeError("text websocket message (frames are binary)")
                            if len(msg) > self.max_receive:
                                raise RpcFrameTooLargeError(
                                    f"frame of {len(msg)} bytes (limit {self.max_receive})"
                                )
                            return msg
                    elif isinstance(ev, Ping):
                        out.append(self._ws.send(ev.response()))
                    elif isinstance(ev, CloseConnection):
                        try:
                            out.append(self._ws.send(ev.response()))
                        except LocalProtocolError:
                            pass
                        for o in out:
                            await self._raw(o)
                        await self._shut()
                        raise RpcConnectionError(f"connection closed: {ev.code} {ev.reason}")
            except RemoteProtocolError as err:
                await self._fail(1002, f"protocol error: {err}")
            for o in out:
                await self._raw(o)
            chunk = await self._io.recv()
            if not chunk:
                await self._shut()
                raise RpcConnectionError("connection closed")
            self._ws.receive_data(chunk)

    async def _fail(self, code: int, reason: str) -> None:
        """Close with ``code`` and raise (the peer broke the protocol or a limit)."""
        from wsproto.events import CloseConnection

        self._parts, self._size = [], 0
        try:
            with anyio.move_on_after(1):
                await self._raw(self._ws.send(CloseConnection(code=code, reason=reason[:100])))
        except Exception:
            pass
        await self._shut()
        raise RpcConnectionError(f"connection closed ({code}): {reason}")

    async def send(self, data: bytes) -> None:
        """Send one binary message (``RpcFrameTooLargeError`` above ``max_frame``)."""
        from wsproto.events import Message

        if len(data) > self.max_frame:
            raise RpcFrameTooLargeError(f"frame of {len(data)} bytes (limit {self.max_frame})")
        async with locked(self._send_lock):
            if self._closed:
                raise RpcConnectionError("connection closed")
            try:
                raw = self._ws.send(Message(data=data))
            except Exception as err:  # wsproto: the connection is closing
                raise RpcConnectionError(f"connection closed: {err}") from err
            try:
                await self._io.send(raw)
            except anyio.get_cancelled_exc_class():
                # a message cut in the middle breaks the websocket stream
                await self._shut()
                raise
        self.bytes_sent += len(data)

    async def _shut(self) -> None:
        if not self._closed:
            self._closed = True
            await self._io.aclose()

    async def aclose(self) -> None:
        """Say goodbye (close frame, best effort) and close the stream."""
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection

        if self._closed:
            return
        if self._ws.state is ConnectionState.OPEN:
            with anyio.move_on_after(1, shield=True):
                try:
                    await self._raw(self._ws.send(CloseConnection(code=1000)))
                except Exception:
                    pass
        await self._shut()


async def _ws_client(
    stream: Any, host: str, port: int, path: str, max_frame: int
) -> WebSocketTransport:
    """The opening handshake, client side (RFC 6455 4.1)."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request

    ws = WSConnection(ConnectionType.CLIENT)
    io = _IO(stream)
    hostname = host if port in (80, 443) else f"{host}:{port}"
    await io.send(ws.send(Request(host=hostname, target=path)))
    while True:
        chunk = await io.recv()
        if not chunk:
            raise RpcConnectionError("connection closed during the websocket handshake")
        ws.receive_data(chunk)
        for ev in ws.events():
            if isinstance(ev, AcceptConnection):
                return WebSocketTransport(stream, ws, max_frame)
            if isinstance(ev, RejectConnection | RejectData):
                status = getattr(ev, "status_code", "")
                raise RpcConnectionError(f"websocket handshake refused {status}".strip())


async def _ws_server(stream: Any, max_frame: int) -> WebSocketTransport | None:
    """The opening handshake, server side; None when the peer is not a websocket client."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request
    from wsproto.utilities import RemoteProtocolError

    ws = WSConnection(ConnectionType.SERVER)
    io = _IO(stream)
    while True:
        chunk = await io.recv()
        if not chunk:
            return None
        try:
            ws.receive_data(chunk)
            for ev in ws.events():
                if isinstance(ev, Request):
                    await io.send(ws.send(AcceptConnection()))
                    return WebSocketTransport(stream, ws, max_frame)
        except RemoteProtocolError as err:
            hint = err.event_hint
            if hint is not None:
                try:
                    await io.send(ws.send(hint))
                except Exception:
                    pass
            return None


# ----- in memory


class _Pipe:
    """One direction of an in-memory byte pipe (unbounded, like trio's memory streams)."""

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.closed = False
        self.wake = anyio.Event()

    def put(self, data: bytes) -> None:
        self.chunks.append(data)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class _MemoryStream(anyio.abc.ByteStream):
    """One end of an in-memory byte pipe."""

    def __init__(self, tx: _Pipe, rx: _Pipe) -> None:
        self._tx = tx
        self._rx = rx

    async def send(self, item: bytes) -> None:
        if self._tx.closed:
            raise anyio.BrokenResourceError("the pipe is closed")
        self._tx.put(bytes(item))
        await anyio.lowlevel.checkpoint()

    async def receive(self, max_bytes: int = _CHUNK) -> bytes:
        rx = self._rx
        while not rx.chunks:
            if rx.closed:
                raise anyio.EndOfStream
            rx.wake = anyio.Event()
            await rx.wake.wait()
        data = rx.chunks.popleft()
        if len(data) > max_bytes:
            rx.chunks.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        return data

    async def send_eof(self) -> None:
        self._tx.close()

    async def aclose(self) -> None:
        self._tx.close()
        self._rx.close()
        await anyio.lowlevel.checkpoint()


def memory_stream_pair() -> tuple[_MemoryStream, _MemoryStream]:
    """Two connected in-memory byte streams (anyio; any backend)."""
    ab, ba = _Pipe(), _Pipe()
    return _MemoryStream(ab, ba), _MemoryStream(ba, ab)


def memory_transport_pair(
    max_frame: int = DEFAULT_MAX_FRAME,
) -> tuple[StreamTransport, StreamTransport]:
    """Two connected in-memory transports (any backend)."""
    a, b = memory_stream_pair()
    return StreamTransport(a, max_frame), StreamTransport(b, max_frame)


# ----- dialling and serving


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


async def connect(
    url: str,
    *,
    nursery: Any = None,
    ssl_context: ssl.SSLContext | None = None,
    max_frame: int = DEFAULT_MAX_FRAME,
    timeout: float = 3.0,
) -> Transport:
    """Dial ``url`` and return a transport; :class:`RpcConnectionError` on failure.

    ``timeout`` bounds the whole dial: TCP, TLS and the websocket upgrade.
    (``nursery`` is accepted for compatibility; no task is started.)
    """
    scheme, host, port, path = parse_url(url)
    if scheme == "ws" and ssl_context is not None:
        raise ValueError(f"an ssl_context with {url!r}: use wss:// (ws:// is cleartext)")
    if scheme == "wss" and ssl_context is None:
        ssl_context = ssl.create_default_context()
    stream: Any = None
    done = False
    try:
        with anyio.fail_after(timeout):
            stream = await anyio.connect_tcp(host, port)
            if ssl_context is not None:
                from anyio.streams.tls import TLSStream

                # a refused certificate fails here, at once (not at the first read)
                stream = await TLSStream.wrap(
                    stream,
                    hostname=host,
                    ssl_context=ssl_context,
                    standard_compatible=scheme == "wss",
                )
            if scheme == "tcp":
                transport: Transport = StreamTransport(stream, max_frame)
            else:
                transport = await _ws_client(stream, host, port, path, max_frame)
            done = True
            return transport
    except TimeoutError as err:
        raise RpcConnectionError(f"connecting to {url} timed out after {timeout}s") from err
    except _IO_ERRORS as err:
        raise RpcConnectionError(f"cannot connect to {url}: {err.__cause__ or err!r}") from err
    finally:
        if not done and stream is not None:
            await anyio.aclose_forcefully(stream)


ConnHandler = Callable[[Transport], Awaitable[None]]


class _StatusIgnored:
    """``task_status`` when not started by ``start()`` (named in signatures)."""

    def started(self, value: object = None) -> None:
        pass

    def __repr__(self) -> str:
        return "TASK_STATUS_IGNORED"


#: the default ``task_status`` of ``serve()`` methods (a named anyio.TASK_STATUS_IGNORED)
TASK_STATUS_IGNORED: anyio.abc.TaskStatus[Any] = cast(Any, _StatusIgnored())

# accept() failing for lack of resources: wait and try again (the peer may leave)
_ACCEPT_RETRY = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


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
    task_status: anyio.abc.TaskStatus[str] = TASK_STATUS_IGNORED,
) -> None:
    """Serve ``url`` (port 0 = any free port), calling ``handler`` per connection.

    ``task_status.started`` receives the bound URL. ``max_connections`` caps the
    connections open at once (more are closed as they are accepted, before any
    TLS or websocket work); ``connect_timeout`` bounds TLS and the websocket
    opening handshake; ``frame_timeout`` the time a ``tcp://`` frame may take
    once started.
    """
    scheme, host, port, path = parse_url(url)
    if scheme == "ws" and ssl_context is not None:
        raise ValueError(f"an ssl_context with {url!r}: use wss:// (ws:// is cleartext)")
    say = log or (lambda _m: None)
    multi = await anyio.create_tcp_listener(local_host=host, local_port=port)
    listeners: list[Any] = list(multi.listeners)
    bound = listeners[0].extra(anyio.abc.SocketAttribute.local_port)
    state = {"open": 0, "refused": 0, "starved": 0}

    async def on_stream(stream: Any) -> None:
        transport: Transport | None = None
        try:
            with anyio.move_on_after(connect_timeout):
                if ssl_context is not None:
                    from anyio.streams.tls import TLSStream

                    stream = await TLSStream.wrap(
                        stream,
                        server_side=True,
                        ssl_context=ssl_context,
                        standard_compatible=scheme == "wss",
                    )
                if scheme == "tcp":
                    transport = StreamTransport(stream, max_frame, frame_timeout=frame_timeout)
                else:
                    transport = await _ws_server(stream, max_frame)
            if transport is not None:
                await handler(transport)
        except Exception as err:  # one connection's failure never ends the server
            say(f"[rpc] connection failed: {type(err).__name__}: {err}"[:300])
        finally:
            state["open"] -= 1
            with anyio.CancelScope(shield=True):
                if transport is not None:
                    await transport.aclose()
                else:
                    await anyio.aclose_forcefully(stream)

    async def accept_loop(listener: Any, tg: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (OSError, anyio.BrokenResourceError) as err:
                # (anyio on trio wraps the OSError)
                cause = err if isinstance(err, OSError) else err.__cause__
                if not isinstance(cause, OSError) or cause.errno not in _ACCEPT_RETRY:
                    raise
                state["starved"] += 1
                if state["starved"] == 1 or state["starved"] % 100 == 0:
                    say(f"[rpc] accept failed ({cause.strerror}), retrying")
                await anyio.sleep(0.1)
                continue
            if max_connections is not None and state["open"] >= max_connections:
                state["refused"] += 1
                if state["refused"] == 1 or state["refused"] % 1000 == 0:
                    say(f"[rpc] {state['refused']} connection(s) refused: {max_connections} open")
                await anyio.aclose_forcefully(stream)
                continue
            state["open"] += 1
            tg.start_soon(on_stream, stream)

    async with multi, anyio.create_task_group() as tg:
        for ln in listeners:
            tg.start_soon(accept_loop, ln, tg)
        shown = f"{path if path != '/' else ''}" if scheme != "tcp" else ""
        task_status.started(f"{scheme}://{host}:{bound}{shown}")
