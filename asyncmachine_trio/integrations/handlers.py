"""Transport-agnostic handlers: a request in, a response out, errors as responses.

A transport (NATS, HTTP, a queue...) decodes a payload with :func:`handle_payload`
or calls the handler of one kind. Refused requests come back as responses with
``error`` set; nothing a peer sends raises into the transport.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

import asyncmachine_trio as am

from .errors import (
    AddAndRemoveError,
    IntegrationError,
    InternalError,
    MalformedMessageError,
    NoStatesError,
    RequestCanceledError,
    RequestTimeoutError,
    StateNotAllowedError,
    TimeLengthError,
    UnknownKindError,
    UnknownStateError,
)
from .messages import (
    REQUEST_KINDS,
    ErrorInfo,
    ErrorResp,
    GetterReq,
    GetterResp,
    MutationReq,
    MutationResp,
    Request,
    Response,
    WaitingReq,
    WaitingResp,
    decode,
    encode,
)

__all__ = [
    "error_response",
    "get",
    "handle_getter",
    "handle_json",
    "handle_mutation",
    "handle_payload",
    "handle_request",
    "handle_waiting",
    "mutate",
]

StateFilter = Callable[[str], bool]


def _check_states(mach: am.Machine, names: Sequence[str]) -> None:
    missing = [n for n in names if not isinstance(n, str) or not mach.has1(n)]
    if missing:
        raise UnknownStateError.for_names(missing, mach)


def mutate(mach: am.Machine, req: MutationReq, *, allow: StateFilter | None = None) -> MutationResp:
    """Run a mutation request synchronously (the body of :func:`handle_mutation`)."""
    try:
        if req.add and req.remove:
            raise AddAndRemoveError(
                "a mutation can be add or remove, not both "
                f"(add: {' '.join(req.add)}; remove: {' '.join(req.remove)})"
            )
        states = req.add or req.remove
        if not states:
            raise NoStatesError("mutation state names missing: give add or remove")
        _check_states(mach, states)
        if allow is not None:
            refused = [s for s in states if not allow(s)]
            if refused:
                raise StateNotAllowedError(f"states not allowed: ({' '.join(refused)})")
        args = req.args or None
        res = mach.add(states, args) if req.add else mach.remove(states, args)
        return MutationResp(result=int(res))
    except IntegrationError as err:
        return MutationResp(result=int(am.Result.CANCELED), error=ErrorInfo.from_exc(err))


async def handle_mutation(
    mach: am.Machine, req: MutationReq, *, allow: StateFilter | None = None
) -> MutationResp:
    """Add or remove the requested states; ``result`` is the machine's ``am.Result``.

    ``allow`` (optional) refuses states it returns False for. A queued mutation
    answers ``QUEUED`` (2) at once, as the reference does.
    """
    return mutate(mach, req, allow=allow)


def get(mach: am.Machine, req: GetterReq) -> GetterResp:
    """Answer a getter request synchronously (the body of :func:`handle_getter`)."""
    try:
        _check_states(mach, [*req.time, *req.time_sum, *req.clocks])
        resp = GetterResp(mach_id=mach.id)
        if req.id:
            resp.id = mach.id
        if req.parent_id:
            resp.parent_id = mach.parent_id
        if req.tags:
            resp.tags = mach.tags
        if req.export:
            resp.export = mach.export()
        if req.time:
            resp.time = list(mach.time(req.time))
        if req.clocks:
            resp.clocks = mach.clock(req.clocks)
        if req.time_sum:
            resp.time_sum = sum(mach.time(req.time_sum))
        return resp
    except IntegrationError as err:
        return GetterResp(mach_id=mach.id, error=ErrorInfo.from_exc(err))
    except am.AsyncMachineError as err:
        return GetterResp(mach_id=mach.id, error=ErrorInfo.from_exc(_internal(err)))


async def handle_getter(mach: am.Machine, req: GetterReq) -> GetterResp:
    """Fill the fields the request asked for (id, parent id, tags, export, ticks)."""
    return get(mach, req)


def _validate_waiting(mach: am.Machine, req: WaitingReq) -> None:
    if not req.states and not req.states_not:
        raise NoStatesError("waiting states missing: give states or states_not")
    if req.time and len(req.time) != len(req.states):
        raise TimeLengthError(
            f"waiting states and time length mismatch: {len(req.states)} states, "
            f"{len(req.time)} ticks"
        )
    if any(t < 0 for t in req.time):
        raise MalformedMessageError("waiting time: ticks must not be negative")
    _check_states(mach, [*req.states, *req.states_not])


async def handle_waiting(
    mach: am.Machine,
    req: WaitingReq,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - a wire-level bound, answered as an error
    ctx: am.Ctx | None = None,
) -> WaitingResp:
    """Wait until the request holds, then answer; bounded by ``timeout`` or ``ctx``.

    A timeout or a cancelled ``ctx`` answers an error response. Cancelling the
    caller's scope cancels the wait as usual (nothing is answered).
    """
    try:
        _validate_waiting(mach, req)
    except IntegrationError as err:
        return WaitingResp(mach_id=mach.id, error=ErrorInfo.from_exc(err))
    resp = WaitingResp(mach_id=mach.id)
    if req.states_not:
        waiter = mach.when_not(req.states_not, ctx)
        resp.states_not = list(req.states_not)
    elif req.time:
        waiter = mach.when_time(req.states, req.time, ctx)
        resp.states = list(req.states)
    else:
        waiter = mach.when(req.states, ctx)
        resp.states = list(req.states)
    with waiter, anyio.move_on_after(timeout if timeout is not None else float("inf")):
        if ctx is None:
            await waiter
        else:
            # a cancelled ctx drops the subscription without resolving it
            with ctx.cancel_scope():
                await waiter
    if not waiter.is_set():
        failure: IntegrationError
        if ctx is not None and ctx.cancelled:
            failure = RequestCanceledError("waiting cancelled before it was satisfied")
        else:
            failure = RequestTimeoutError(f"waiting not satisfied within {timeout}s")
        return WaitingResp(mach_id=mach.id, error=ErrorInfo.from_exc(failure))
    if req.time and not req.states_not:
        resp.time = list(mach.time(req.states))
    return resp


def error_response(kind: str, err: IntegrationError, mach_id: str = "") -> Response:
    """The response of ``kind``'s family that reports ``err``."""
    info = ErrorInfo.from_exc(err)
    if kind == MutationReq.KIND.value:
        return MutationResp(result=int(am.Result.CANCELED), error=info)
    if kind == WaitingReq.KIND.value:
        return WaitingResp(mach_id=mach_id, error=info)
    if kind == GetterReq.KIND.value:
        return GetterResp(mach_id=mach_id, error=info)
    return ErrorResp(error=info)


def _internal(err: BaseException) -> InternalError:
    return InternalError(f"{type(err).__name__}: {err}")


async def handle_request(
    mach: am.Machine,
    req: Request,
    *,
    wait_timeout: float | None = None,
    allow: StateFilter | None = None,
) -> Response:
    """Dispatch by kind to the matching handler."""
    if isinstance(req, MutationReq):
        return mutate(mach, req, allow=allow)
    if isinstance(req, GetterReq):
        return get(mach, req)
    return await handle_waiting(mach, req, timeout=wait_timeout)


async def handle_payload(
    mach: am.Machine,
    payload: bytes | str,
    *,
    wait_timeout: float | None = None,
    allow: StateFilter | None = None,
) -> Response | None:
    """Decode and handle one payload; ``None`` for a response (nothing to answer).

    Malformed payloads, unknown kinds and refused requests are answered with
    error responses; an unexpected exception is an ``internal`` error response.
    """
    try:
        msg = decode(payload)
    except UnknownKindError as err:
        return ErrorResp(error=ErrorInfo.from_exc(err))
    except MalformedMessageError as err:
        return error_response(err.kind, err, mach.id)
    if msg.kind not in REQUEST_KINDS:
        return None
    try:
        return await handle_request(mach, msg, wait_timeout=wait_timeout, allow=allow)  # type: ignore[arg-type]
    except Exception as err:
        return error_response(msg.kind, _internal(err), mach.id)


async def handle_json(
    mach: am.Machine,
    payload: bytes | str,
    *,
    wait_timeout: float | None = None,
    allow: StateFilter | None = None,
) -> bytes | None:
    """:func:`handle_payload` with the response encoded as JSON bytes."""
    resp = await handle_payload(mach, payload, wait_timeout=wait_timeout, allow=allow)
    return None if resp is None else encode(resp)
