"""A bidirectional RPC endpoint on one connection (the reference's rpc2, 1.3).

Both ends are caller and callee at once. A reader task reads frames: responses
complete pending calls at once; requests and notifications go, in arrival
order, to one worker task that runs their handlers sequentially (the
reference's "blocking mode"), so a handler may itself call the peer without
deadlocking the reader. Plain (non-async) handlers run inline in the reader,
in the exact order of the frames: the network machine applies clock updates
this way, so a push and a response can never be applied out of order; a
call's ``inline`` callback runs there too, when its response arrives. A
malformed, unknown or oversized frame is answered with an error frame (or
logged, for a notification) and never ends the connection or its other work.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio
import anyio.abc
import attrs

from .errors import (
    RpcAccessError,
    RpcConnectionError,
    RpcDecodeError,
    RpcDestinationError,
    RpcEncodeError,
    RpcError,
    RpcFrameTooLargeError,
    RpcHandshakeError,
    RpcInvalidParamsError,
    RpcRemoteError,
    RpcTimeoutError,
)
from .transport import Transport
from .wire import (
    ErrorInfo,
    Frame,
    decode_frame,
    encode_frame,
    err_text,
    short_repr,
    structure,
)

__all__ = ["Endpoint", "Handler", "error_from", "error_kind"]

T = TypeVar("T")

#: a handler: the body class it takes and a function returning the response
#: (``async def``: run by the worker task; plain: run inline by the reader)
Handler = tuple[type[Any], Callable[[Any], Any]]

_KINDS: dict[str, type[RpcError]] = {
    "access": RpcAccessError,
    "handshake": RpcHandshakeError,
    "invalid_params": RpcInvalidParamsError,
    "destination": RpcDestinationError,
    "decode": RpcDecodeError,
    "too_large": RpcFrameTooLargeError,
    "encode": RpcEncodeError,
}


def error_kind(err: BaseException) -> str:
    """The wire ``kind`` of an exception raised by a handler."""
    for kind, cls in _KINDS.items():
        if type(err) is cls:
            return kind
    for kind, cls in _KINDS.items():
        if isinstance(err, cls):
            return kind
    if isinstance(err, RpcRemoteError):
        return err.kind
    return "internal"


def error_from(info: ErrorInfo) -> RpcError:
    """The local exception for a remote error frame."""
    cls = _KINDS.get(info.kind)
    if cls is None or cls is RpcRemoteError:
        return RpcRemoteError(info.kind, info.message)
    return cls(info.message)


@attrs.define(slots=True, eq=False)
class _Pending:
    resp_cls: type[Any]
    inline: Callable[[Any], Any] | None = None
    event: anyio.Event = attrs.Factory(anyio.Event)
    body: Any = None
    error: BaseException | None = None


class Endpoint:
    """One side of a connection: :meth:`call`, :meth:`notify`, handlers for the peer.

    ``calls`` counts the requests this side sent (notifications included), like
    the reference's ``CallCount``; the transport counts bytes.
    """

    def __init__(
        self,
        transport: Transport,
        handlers: Mapping[str, Handler],
        *,
        name: str = "",
        log: Callable[[str], Any] | None = None,
        on_error: Callable[[RpcError], Any] | None = None,
        queue: int = 256,
    ) -> None:
        self.transport = transport
        self.handlers: dict[str, Handler] = dict(handlers)
        self._async = {
            m for m, (_c, fn) in self.handlers.items() if inspect.iscoroutinefunction(fn)
        }
        self.name = name
        self.calls: int = 0
        self.errors_received: int = 0
        self._log = log or (lambda _msg: None)
        self._on_error = on_error
        self._seq = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._queue = queue
        self._closed = anyio.Event()
        self._close_soon = False
        self.close_reason: BaseException | None = None
        #: when the last frame arrived (``anyio.current_time()``; liveness checks)
        self.last_received: float = anyio.current_time()

    @property
    def closed(self) -> bool:
        """True once the connection is closed."""
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        await self._closed.wait()

    # ----- running

    async def run(self) -> None:
        """Read and serve until the connection closes (then fail pending calls)."""
        send_ch, recv_ch = anyio.create_memory_object_stream[Frame](self._queue)
        self._send_ch = send_ch
        try:
            with send_ch, recv_ch:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._worker, recv_ch)
                    try:
                        await self._reader()
                    finally:
                        tg.cancel_scope.cancel()
        finally:
            self._finish(self.close_reason or RpcConnectionError("connection closed"))
            with anyio.CancelScope(shield=True):
                await self.transport.aclose()

    def _finish(self, reason: BaseException) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self._closed.set()
        err = reason if isinstance(reason, RpcError) else RpcConnectionError(str(reason))
        for p in self._pending.values():
            p.error = err
            p.event.set()
        self._pending.clear()

    def close_soon(self) -> None:
        """Close after the frame being served (for handlers: a peer's bye)."""
        self._close_soon = True

    async def aclose(self) -> None:
        """Close the connection; pending calls fail with :class:`RpcConnectionError`."""
        self._finish(RpcConnectionError("connection closed locally"))
        await self.transport.aclose()

    async def _reader(self) -> None:
        while True:
            try:
                data = await self.transport.receive()
            except RpcConnectionError as err:
                self.close_reason = err
                return
            except RpcError as err:  # too large, text message: answer, keep reading
                self.last_received = anyio.current_time()
                self._report(err)
                await self._send_error(0, err)
                continue
            self.last_received = anyio.current_time()
            try:
                frame = decode_frame(data)
            except Exception as err:  # decode_frame is total; this is a safety net
                derr = err if isinstance(err, RpcDecodeError) else RpcDecodeError(err_text(err))
                self._report(derr)
                await self._send_error(0, derr)
                continue
            if frame.method is None:
                p = self._pending.pop(frame.seq, None)
                if p is None:
                    if frame.seq == 0 and frame.error is not None:
                        self.errors_received += 1
                        self._report(error_from(frame.error))
                    else:
                        self._log(f"[rpc] response to an unknown call {frame.seq}")
                    continue
                self._complete(p, frame)
                continue
            if frame.method in self._async:
                await self._send_ch.send(frame)
            else:
                await self._serve(frame)
            if self._close_soon:
                self.close_reason = RpcConnectionError("connection closed by request")
                return

    def _complete(self, p: _Pending, frame: Frame) -> None:
        try:
            if frame.error is not None:
                raise error_from(frame.error)
            p.body = structure(frame.body, p.resp_cls)
            if p.inline is not None:
                p.inline(p.body)
        except Exception as err:
            p.error = err
        p.event.set()

    async def _worker(self, recv_ch: Any) -> None:
        async for frame in recv_ch:
            await self._serve(frame)

    async def _serve(self, frame: Frame) -> None:
        assert frame.method is not None
        handler = self.handlers.get(frame.method)
        try:
            if handler is None:
                raise RpcRemoteError("unknown_method", f"unknown method {short_repr(frame.method)}")
            cls, fn = handler
            body = structure(frame.body, cls)
            resp = fn(body)
            if frame.method in self._async:
                resp = await resp
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as err:
            rpc_err = (
                err if isinstance(err, RpcError) else RpcRemoteError("internal", err_text(err))
            )
            if not isinstance(err, RpcError):
                self._log(f"[rpc] handler {short_repr(frame.method)} failed: {err_text(err)}")
            if frame.seq:
                await self._send_error(frame.seq, rpc_err)
            else:
                self._report(rpc_err)
                if self._close_soon:
                    # a refusal that closes the connection: the peer learns why
                    await self._send_error(0, rpc_err)
            return
        if frame.seq:
            await self._send(Frame(frame.seq, None, None, resp))

    def _report(self, err: RpcError) -> None:
        self._log(f"[rpc:error] {err}")
        if self._on_error is not None:
            self._on_error(err)

    async def _send_error(self, seq: int, err: BaseException) -> None:
        msg = err.message if isinstance(err, RpcRemoteError) else err_text(err, 1000, typed=False)
        await self._send(Frame(seq, None, ErrorInfo(error_kind(err), msg), None))

    async def _send(self, frame: Frame) -> None:
        if self.closed:
            return
        try:
            data = encode_frame(frame)
        except RpcEncodeError as err:
            if frame.seq and frame.method is None and frame.error is None:
                data = encode_frame(Frame(frame.seq, None, ErrorInfo("encode", str(err))))
            else:
                raise
        try:
            await self.transport.send(data)
        except RpcConnectionError as err:
            self._finish(err)

    # ----- calling

    async def call(
        self,
        method: str,
        body: Any,
        resp_cls: type[T],
        timeout: float | None = None,
        *,
        inline: Callable[[T], Any] | None = None,
    ) -> T:
        """Call ``method`` on the peer; cancelled for real after ``timeout`` seconds.

        ``inline`` runs in the reader as soon as the response arrives (before
        any later frame is read). Raises :class:`RpcTimeoutError`,
        :class:`RpcConnectionError`, or the typed error the peer answered with.
        """
        if self.closed:
            raise RpcConnectionError("connection closed")
        seq = next(self._seq)
        p = _Pending(resp_cls, inline)
        self._pending[seq] = p
        self.calls += 1
        try:
            with anyio.fail_after(math.inf if timeout is None else timeout):
                await self._send_request(Frame(seq, method, None, body))
                await p.event.wait()
        except TimeoutError:
            raise RpcTimeoutError(f"{method} timed out after {timeout}s") from None
        finally:
            self._pending.pop(seq, None)
        if p.error is not None:
            raise p.error
        return p.body  # type: ignore[no-any-return]

    async def notify(self, method: str, body: Any, timeout: float | None = None) -> None:
        """Send a notification (seq 0, no response)."""
        if self.closed:
            raise RpcConnectionError("connection closed")
        self.calls += 1
        try:
            with anyio.fail_after(math.inf if timeout is None else timeout):
                await self._send_request(Frame(0, method, None, body))
        except TimeoutError:
            raise RpcTimeoutError(f"{method} timed out after {timeout}s") from None

    async def _send_request(self, frame: Frame) -> None:
        data = encode_frame(frame)
        try:
            await self.transport.send(data)
        except RpcConnectionError as err:
            self._finish(err)
            raise
