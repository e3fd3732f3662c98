"""A machine on NATS subjects: JSON requests in, responses out (extra ``nats``).

``expose(mach, nc, topic, queue=None)`` subscribes the machine to ``topic``
(optionally in a queue group, so one member of the group gets each request)
and to ``topic.<mach id>``; it answers mutation and getter requests on their
reply subject and waiting requests once they hold (on the reply subject if the
request had one, else published on the request's subject, as the reference
does). :func:`add`, :func:`remove`, :func:`wait` and :func:`get` are the
client side.

nats-py is an asyncio library. In an asyncio program everything runs on the
one loop. In a trio program, run nats-py inside ``trio_asyncio.open_loop()``
(create the connection with :func:`connect`); messages cross to trio through a
memory channel and the machine is only touched from trio tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

import anyio
import anyio.abc
import attrs
import sniffio
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

import asyncmachine_trio as am

from .errors import (
    IntegrationError,
    MalformedMessageError,
    MessageTooLargeError,
    UnknownKindError,
)
from .handlers import error_response, handle_waiting, mutate
from .handlers import get as get_sync
from .messages import (
    ErrorInfo,
    ErrorResp,
    GetterReq,
    GetterResp,
    MutationReq,
    MutationResp,
    Response,
    WaitingReq,
    WaitingResp,
    decode,
    decode_response,
    encode,
)

__all__ = [
    "BusyError",
    "Exposure",
    "NatsDisconnectedError",
    "add",
    "connect",
    "connection_callbacks",
    "expose",
    "get",
    "remove",
    "request",
    "wait",
]

ERR_NETWORK = "ErrNetwork"
_log = structlog.get_logger("asyncmachine_trio.integrations.nats")
T = TypeVar("T")


class BusyError(IntegrationError):
    """The exposure has too many requests in flight; try again later."""

    code = "busy"


class NatsDisconnectedError(am.AsyncMachineError):
    """The NATS connection was lost (reported as ``ErrNetwork``)."""


def _on_trio() -> bool:
    return sniffio.current_async_library() == "trio"


async def _aio(fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
    """Await an asyncio coroutine function from trio (via trio-asyncio) or asyncio."""
    if _on_trio():
        import trio_asyncio

        if trio_asyncio.current_loop.get() is None:
            raise RuntimeError(
                "nats-py is an asyncio library: under trio, run it inside"
                " `async with trio_asyncio.open_loop():`"
            )
        result: T = await trio_asyncio.aio_as_trio(fn)(*args, **kw)
        return result
    return await fn(*args, **kw)


def report_error(mach: am.Machine, err: Exception, state: str = ERR_NETWORK) -> None:
    """Add ``err`` as ``state`` if the schema has it, else as ``Exception``."""
    if mach.has1(state):
        mach.add_err_state(state, err)
    else:
        mach.add_err(err)


# ----- server side


@attrs.define(eq=False)
class Exposure:
    """A machine exposed on NATS (what :func:`expose` yields)."""

    mach: am.Machine
    subjects: list[str]
    queue: str | None
    handled: int = 0
    """Requests answered (including error answers)."""
    refused: int = 0
    """Requests answered with an error."""
    waiting: int = 0
    """Waiting requests in flight."""


class _Exposer:
    """The dispatcher behind :func:`expose`; the same on both backends."""

    def __init__(
        self,
        mach: am.Machine,
        exposure: Exposure,
        tg: anyio.abc.TaskGroup,
        publish: Callable[[str, bytes], Awaitable[None]],
        *,
        wait_timeout: float | None,
        allow: Callable[[str], bool] | None,
        max_waiting: int,
        max_size: int,
    ) -> None:
        self.mach = mach
        self.exposure = exposure
        self.tg = tg
        self.publish = publish
        self.wait_timeout = wait_timeout
        self.allow = allow
        self.max_waiting = max_waiting
        self.max_size = max_size

    def answer(self, data: bytes) -> tuple[bytes | None, WaitingReq | None, str]:
        """(reply, waiting request to run, kind); runs mutations and getters at once."""
        mach = self.mach
        try:
            if len(data) > self.max_size:
                raise MessageTooLargeError(
                    f"payload of {len(data)} bytes exceeds the limit of {self.max_size}"
                )
            msg = decode(data)
        except UnknownKindError as err:
            return self._refused(ErrorResp(error=ErrorInfo.from_exc(err))), None, ""
        except MalformedMessageError as err:
            return self._refused(error_response(err.kind, err, mach.id)), None, err.kind
        try:
            if isinstance(msg, MutationReq):
                resp: Response = mutate(mach, msg, allow=self.allow)
            elif isinstance(msg, GetterReq):
                resp = get_sync(mach, msg)
            elif isinstance(msg, WaitingReq):
                return None, msg, msg.kind
            else:
                return None, None, msg.kind  # a response (maybe our own): not for us
        except Exception as err:
            internal = IntegrationError(f"{type(err).__name__}: {err}")
            internal.code = "internal"
            resp = error_response(msg.kind, internal, mach.id)
        if getattr(resp, "error", None) is not None:
            return self._refused(resp), None, msg.kind
        self.exposure.handled += 1
        return encode(resp), None, msg.kind

    def _refused(self, resp: Response) -> bytes:
        self.exposure.handled += 1
        self.exposure.refused += 1
        return encode(resp)

    async def on_message(self, subject: str, reply: str, data: bytes) -> None:
        out, waiting, kind = self.answer(data)
        if waiting is not None:
            if self.exposure.waiting >= self.max_waiting:
                busy = BusyError(f"more than {self.max_waiting} waiting requests in flight")
                await self.send(reply or subject, self._refused(error_response(kind, busy)))
                return
            self.exposure.waiting += 1
            self.tg.start_soon(self.run_waiting, waiting, reply or subject)
        elif out is not None:
            if reply:
                await self.send(reply, out)
            elif kind == WaitingReq.KIND.value:
                await self.send(subject, out)  # a malformed waiting request, published
            else:
                _log.warning("nats request without a reply subject refused", subject=subject)

    async def run_waiting(self, req: WaitingReq, subject: str) -> None:
        try:
            resp = await handle_waiting(self.mach, req, timeout=self.wait_timeout)
        finally:
            self.exposure.waiting -= 1
        if resp.error is not None:
            self.exposure.refused += 1
        self.exposure.handled += 1
        await self.send(subject, encode(resp))

    async def send(self, subject: str, data: bytes) -> None:
        try:
            await self.publish(subject, data)
        except Exception as err:
            report_error(self.mach, err)


@contextlib.asynccontextmanager
async def expose(
    mach: am.Machine,
    nc: Client,
    topic: str,
    queue: str | None = None,
    *,
    wait_timeout: float | None = 60.0,
    allow: Callable[[str], bool] | Collection[str] | None = None,
    max_waiting: int = 1000,
    max_pending: int = 10_000,
    max_size: int = 64 * 1024,
) -> AsyncIterator[Exposure]:
    """Serve ``mach`` on ``topic`` and ``topic.<mach.id>`` until the block exits.

    - ``queue``: subscribe ``topic`` in this queue group (load balancing);
      ``topic.<mach.id>`` is always a plain subscription.
    - ``wait_timeout``: the longest a waiting request waits (then an error answer).
    - ``allow``: the states peers may mutate (a collection or a predicate).
    - ``max_waiting`` / ``max_pending``: bounds; past them requests get a ``busy`` error.
    - ``max_size``: larger payloads are refused with a ``too_large`` error.

    Call it from the loop the machine runs on: asyncio, or trio with nats-py in
    ``trio_asyncio.open_loop()``.
    """
    if allow is not None and not callable(allow):
        allowed = frozenset(allow)
        allow_fn: Callable[[str], bool] | None = allowed.__contains__
    else:
        allow_fn = allow
    subjects = [topic, f"{topic}.{mach.id}"]
    exposure = Exposure(mach=mach, subjects=subjects, queue=queue)
    on_trio = _on_trio()
    async with anyio.create_task_group() as tg:
        if on_trio:
            ctx = _trio_side(nc, max_pending)
        else:
            ctx = _asyncio_side(nc)
        async with ctx as (publish, subscribe_cb, start_pump):
            exposer = _Exposer(
                mach,
                exposure,
                tg,
                publish,
                wait_timeout=wait_timeout,
                allow=allow_fn,
                max_waiting=max_waiting,
                max_size=max_size,
            )
            cb = subscribe_cb(exposer)
            subs: list[Subscription] = []
            try:
                subs.append(await _aio(nc.subscribe, topic, queue=queue or "", cb=cb))
                subs.append(await _aio(nc.subscribe, subjects[1], cb=cb))
                await _aio(nc.flush)
                start_pump(tg, exposer)
                yield exposure
            finally:
                with anyio.CancelScope(shield=True):
                    for sub in subs:
                        with contextlib.suppress(Exception):
                            await _aio(sub.unsubscribe)
                tg.cancel_scope.cancel()


_Side = Any  # (publish, make_callback, start_pump)


@contextlib.asynccontextmanager
async def _asyncio_side(nc: Client) -> AsyncIterator[_Side]:
    async def publish(subject: str, data: bytes) -> None:
        await nc.publish(subject, data)

    def make_cb(exposer: _Exposer) -> Callable[[Msg], Awaitable[None]]:
        async def cb(msg: Msg) -> None:
            await exposer.on_message(msg.subject, msg.reply, msg.data)

        return cb

    def start_pump(_tg: anyio.abc.TaskGroup, _exposer: _Exposer) -> None:
        pass

    yield publish, make_cb, start_pump


@contextlib.asynccontextmanager
async def _trio_side(nc: Client, max_pending: int) -> AsyncIterator[_Side]:
    """Messages cross from asyncio callbacks to one trio task; replies cross back."""
    import trio
    import trio_asyncio

    send, receive = trio.open_memory_channel[tuple[str, str, bytes]](max_pending)
    outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def publish(subject: str, data: bytes) -> None:
        outbox.put_nowait((subject, data))

    async def pump_out() -> None:
        while True:
            subject, data = await outbox.get()
            try:
                await nc.publish(subject, data)
            except Exception as err:
                _log.warning("nats publish failed", subject=subject, error=str(err))

    def make_cb(exposer: _Exposer) -> Callable[[Msg], Awaitable[None]]:
        async def cb(msg: Msg) -> None:
            try:
                send.send_nowait((msg.subject, msg.reply, msg.data))
            except trio.WouldBlock:
                busy = BusyError(f"more than {max_pending} requests pending")
                if msg.reply:
                    await nc.publish(
                        msg.reply, exposer._refused(ErrorResp(error=ErrorInfo.from_exc(busy)))
                    )

        return cb

    async def pump_in(exposer: _Exposer) -> None:
        async for subject, reply, data in receive:
            await exposer.on_message(subject, reply, data)

    def start_pump(tg: anyio.abc.TaskGroup, exposer: _Exposer) -> None:
        tg.start_soon(trio_asyncio.aio_as_trio(pump_out))
        tg.start_soon(pump_in, exposer)

    async with send, receive:
        yield publish, make_cb, start_pump


# ----- connection


def connection_callbacks(
    *machs: am.Machine,
    state: str = ERR_NETWORK,
    disconnected_cb: Callable[[], Awaitable[None]] | None = None,
    reconnected_cb: Callable[[], Awaitable[None]] | None = None,
    closing: Callable[[], bool] | None = None,
) -> dict[str, Callable[[], Awaitable[None]]]:
    """nats-py ``connect`` callbacks reporting connection loss to ``machs``.

    A disconnect adds ``state`` (``ErrNetwork``) with a
    :class:`NatsDisconnectedError` (``Exception`` if the schema has no such
    state); a reconnect removes ``state``. Your own callbacks run after ours.
    ``closing()`` true means the client is being closed on purpose (``close()``,
    ``drain()``): that disconnect is not an error (:func:`connect` passes it).
    Call it from the loop the machines run on.
    """
    on_trio = _on_trio()

    def lost() -> None:
        if closing is not None and closing():
            return
        for mach in machs:
            report_error(mach, NatsDisconnectedError("NATS connection lost"), state)

    def back() -> None:
        for mach in machs:
            if mach.has1(state):
                mach.remove1(state)

    def bridged(fn: Callable[[], None], user: Callable[[], Awaitable[None]] | None) -> Any:
        async def run_sync() -> None:
            fn()

        async def cb() -> None:
            if on_trio:
                import trio_asyncio

                await trio_asyncio.trio_as_aio(run_sync)()
            else:
                fn()
            if user is not None:
                await user()

        return cb

    return {
        "disconnected_cb": bridged(lost, disconnected_cb),
        "reconnected_cb": bridged(back, reconnected_cb),
    }


async def connect(
    servers: str | Sequence[str],
    *,
    machines: Sequence[am.Machine] = (),
    **options: Any,
) -> Client:
    """``nats.connect`` from asyncio or trio, with :func:`connection_callbacks` for ``machines``.

    Reconnects are nats-py's own (``reconnect_time_wait``, ``max_reconnect_attempts``...).
    A ``close()`` or ``drain()`` of the returned client is not reported to the
    machines as a lost connection.
    """
    nc: Client = _closing_client_class()()
    if machines:
        options.update(
            connection_callbacks(
                *machines,
                disconnected_cb=options.pop("disconnected_cb", None),
                reconnected_cb=options.pop("reconnected_cb", None),
                closing=lambda: bool(getattr(nc, "am_closing", False)),
            )
        )
    servers = [servers] if isinstance(servers, str) else list(servers)
    await _aio(nc.connect, servers, **options)
    return nc


def _closing_client_class() -> type[Client]:
    """A nats-py ``Client`` that knows when a close was asked for (not a lost connection)."""
    from nats.aio.client import Client as NatsClient

    class _Client(NatsClient):
        am_closing = False

        async def close(self) -> None:
            self.am_closing = True
            await super().close()

        async def drain(self) -> None:
            self.am_closing = True
            await super().drain()

    return _Client


# ----- client side


def _subject(topic: str, mach_id: str) -> str:
    return f"{topic}.{mach_id}" if mach_id else topic


async def request(
    nc: Client,
    subject: str,
    req: MutationReq | WaitingReq | GetterReq,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - passed to nats-py
) -> Response:
    """Send ``req`` to ``subject`` and decode the answer (errors raised typed)."""
    msg = await _aio(nc.request, subject, encode(req), timeout=timeout)
    resp = decode_response(msg.data)
    error = getattr(resp, "error", None)
    if error is not None:
        raise error.to_exc()
    return resp


def _result(resp: Response) -> am.Result:
    if not isinstance(resp, MutationResp):
        raise MalformedMessageError(f"expected am_resp_mutation, got {resp.kind}")
    return am.Result(min(resp.result, int(am.Result.QUEUED)))


async def add(
    nc: Client,
    topic: str,
    mach_id: str,
    states: Sequence[str],
    args: dict[str, Any] | None = None,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109
) -> am.Result:
    """Add ``states`` to machine ``mach_id`` under ``topic`` (``""``: any machine of it)."""
    req = MutationReq(add=list(states), args=dict(args or {}))
    return _result(await request(nc, _subject(topic, mach_id), req, timeout=timeout))


async def remove(
    nc: Client,
    topic: str,
    mach_id: str,
    states: Sequence[str],
    args: dict[str, Any] | None = None,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109
) -> am.Result:
    """Remove ``states`` from machine ``mach_id`` (same argument order as :func:`add`)."""
    req = MutationReq(remove=list(states), args=dict(args or {}))
    return _result(await request(nc, _subject(topic, mach_id), req, timeout=timeout))


async def wait(
    nc: Client,
    topic: str,
    mach_id: str,
    states: Sequence[str] = (),
    *,
    states_not: Sequence[str] = (),
    time: Sequence[int] = (),
    timeout: float = 60.0,  # noqa: ASYNC109
) -> WaitingResp:
    """Wait (request/reply) until the machine's states hold; see :class:`WaitingReq`."""
    req = WaitingReq(states=list(states), states_not=list(states_not), time=list(time))
    resp = await request(nc, _subject(topic, mach_id), req, timeout=timeout)
    if not isinstance(resp, WaitingResp):
        raise MalformedMessageError(f"expected am_resp_waiting, got {resp.kind}")
    return resp


async def get(
    nc: Client,
    topic: str,
    mach_id: str,
    req: GetterReq | None = None,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109
    **fields: Any,
) -> GetterResp:
    """Ask for data: ``get(nc, topic, id, id=True, time=["A"])`` or a :class:`GetterReq`."""
    req = req if req is not None else GetterReq(**fields)
    resp = await request(nc, _subject(topic, mach_id), req, timeout=timeout)
    if not isinstance(resp, GetterResp):
        raise MalformedMessageError(f"expected am_resp_getter, got {resp.kind}")
    return resp
