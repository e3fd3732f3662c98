"""Typed errors of the aRPC layer (the reference's sentinel errors)."""

from __future__ import annotations

from ..machine.errors import AsyncMachineError

__all__ = [
    "RpcAccessError",
    "RpcCallError",
    "RpcConnectionError",
    "RpcDecodeError",
    "RpcDestinationError",
    "RpcDriftError",
    "RpcEncodeError",
    "RpcError",
    "RpcFrameTooLargeError",
    "RpcHandshakeError",
    "RpcInvalidParamsError",
    "RpcNotConnectedError",
    "RpcOutcomeUnknownError",
    "RpcRemoteError",
    "RpcTimeoutError",
]


class RpcError(AsyncMachineError):
    """Base of every aRPC error (Go ``ErrRpc``)."""


class RpcEncodeError(RpcError, TypeError):
    """A value cannot be encoded (an args value or payload of an unregistered type)."""


class RpcDecodeError(RpcError, ValueError):
    """A frame or a message body is malformed: bad msgpack, wrong shape, unknown type tag."""


class RpcFrameTooLargeError(RpcError, ValueError):
    """A frame is larger than the connection's ``max_frame`` limit."""


class RpcConnectionError(RpcError, ConnectionError):
    """The connection is closed or broken (Go ``ErrNetwork``)."""


class RpcNotConnectedError(RpcConnectionError):
    """No connection (Go ``ErrNoConn``)."""


class RpcTimeoutError(RpcError, TimeoutError):
    """A call did not complete within its timeout (Go ``ErrNetworkTimeout``)."""


class RpcRemoteError(RpcError):
    """The peer answered a call with an error frame; ``kind`` names the remote error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind = kind
        self.message = message


class RpcCallError(RpcError):
    """A call failed after all its retries (Go ``CallRetryFailed``)."""


class RpcOutcomeUnknownError(RpcCallError):
    """A mutation was sent, its response was lost, and it cannot be retried safely.

    The server that received it restarted (its instance changed) or every
    retry failed: the mutation was applied once or not at all, and only the
    source can tell. Never raised for a mutation that was not sent.
    """


class RpcHandshakeError(RpcError):
    """The handshake was refused or returned invalid data."""


class RpcAccessError(RpcHandshakeError):
    """Wrong token, wrong client id, or a mutation outside the allowlist (``ErrNoAccess``)."""


class RpcInvalidParamsError(RpcError, ValueError):
    """A request's parameters are invalid (``ErrInvalidParams``): bad state index, no states."""


class RpcDestinationError(RpcError):
    """A payload's destination is not the connected client (``ErrDestination``)."""


class RpcDriftError(RpcError):
    """A clock diff does not verify against the checksum; a full sync is needed."""
