"""aRPC: transparent remote machines (docs/rpc.md; extra ``[rpc]``; trio or asyncio).

A :class:`Server` exposes a source machine; a :class:`Client` mirrors it into a
:class:`NetworkMachine` with the same API as ``am.Machine``: reads and waiting
are local, mutations travel, clock diffs come back. A :class:`Mux` serves many
clients on one port. See ``docs/rpc.md``.

    async with am.rpc.open_server(source, "ws://127.0.0.1:0") as server:
        async with am.rpc.open_client(server.addr, MySchema) as client:
            await client.netmach.call_add(["Foo"])
"""

from __future__ import annotations

try:
    import msgpack as _msgpack  # noqa: F401
except ImportError as _err:  # pragma: no cover - depends on the install
    from .._install import install_hint

    raise ImportError(f"asyncmachine_trio.rpc needs the rpc extra: {install_hint('rpc')}") from _err

from .client import ARpc as ARpc
from .client import AServerPayload as AServerPayload
from .client import Client as Client
from .client import open_client as open_client
from .engine import Endpoint as Endpoint
from .errors import RpcAccessError as RpcAccessError
from .errors import RpcCallError as RpcCallError
from .errors import RpcConnectionError as RpcConnectionError
from .errors import RpcDecodeError as RpcDecodeError
from .errors import RpcDestinationError as RpcDestinationError
from .errors import RpcDriftError as RpcDriftError
from .errors import RpcEncodeError as RpcEncodeError
from .errors import RpcError as RpcError
from .errors import RpcFrameTooLargeError as RpcFrameTooLargeError
from .errors import RpcHandshakeError as RpcHandshakeError
from .errors import RpcInvalidParamsError as RpcInvalidParamsError
from .errors import RpcNotConnectedError as RpcNotConnectedError
from .errors import RpcOutcomeUnknownError as RpcOutcomeUnknownError
from .errors import RpcRemoteError as RpcRemoteError
from .errors import RpcTimeoutError as RpcTimeoutError
from .mux import Mux as Mux
from .mux import open_mux as open_mux
from .netmach import NetworkMachine as NetworkMachine
from .server import Server as Server
from .server import open_server as open_server
from .states import ClientStates as ClientStates
from .states import ConsumerStates as ConsumerStates
from .states import MuxStates as MuxStates
from .states import ServerStates as ServerStates
from .states import SharedStates as SharedStates
from .states import StateSourceStates as StateSourceStates
from .sync import Snapshot as Snapshot
from .sync import apply_update as apply_update
from .sync import checksum as checksum
from .sync import make_update as make_update
from .transport import StreamTransport as StreamTransport
from .transport import Transport as Transport
from .transport import WebSocketTransport as WebSocketTransport
from .transport import connect as connect
from .transport import memory_transport_pair as memory_transport_pair
from .wire import RemoteException as RemoteException
from .wire import register_type as register_type
