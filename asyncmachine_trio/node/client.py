"""The node client: connects to a supervisor, gets a worker, sends it work.

A :class:`NodeClient` tries the supervisors' public addresses in order (each
``conn_retries`` times) until one answers, then :meth:`~NodeClient.req_worker`
adds ``ProvideWorker`` on the supervisor's network machine. The supervisor
assigns an idle worker to this client only (the worker's public server refuses
every other client id) and sends its public address back as a payload named
``ProvideWorker``; the client connects to the worker directly, and
:meth:`~NodeClient.work` round-trips ``WorkRequested`` → the ``WorkReady``
payload. Losing the worker adds ``ErrWorker``, removes ``WorkerReady`` and fails
the pending work with :class:`~asyncmachine_trio.node.WorkerLostError`; call
``req_worker`` again for another one.
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

import asyncmachine_trio as am

from .. import rpc
from ..machine.excgroup import unwrap_single
from .errors import NodeError, NoWorkerError, WorkerError, WorkerLostError
from .states import ClientStates, SupervisorStates

__all__ = ["NodeClient", "open_node_client"]

C = ClientStates
_PAYLOAD_KEY = rpc.AServerPayload.args_key()


class _ClientHandlers:
    def __init__(self, client: NodeClient) -> None:
        self.client = client

    def server_payload_state(self, e: am.Event) -> None:
        p = e.args.get(_PAYLOAD_KEY)
        if isinstance(p, rpc.AServerPayload):
            self.client._on_payload(p.name, p.data)
        e.machine.remove1(C.ServerPayload)


class NodeClient:
    """A client of a node: one supervisor connection, at most one worker at a time."""

    def __init__(
        self,
        kind: str,
        supervisors: Sequence[str],
        *,
        name: str = "",
        worker_schema: type[am.States] | Mapping[str, am.State] | None = None,
        token: str = "",
        conn_timeout: float = 5.0,
        conn_retries: int = 3,
        handlers: object | None = None,
        log_level: am.LogLevel | int | None = None,
    ) -> None:
        if isinstance(supervisors, str) or not supervisors:
            raise TypeError("supervisors must be a non-empty list of addresses, not a str")
        self.kind = kind
        self.supervisors: list[str] = list(supervisors)
        self.name: str = name or secrets.token_hex(3)
        self.worker_schema = worker_schema
        self.token = token
        self.conn_timeout = conn_timeout
        self.conn_retries = conn_retries
        kw: dict[str, Any] = {} if log_level is None else {"log_level": log_level}
        self.mach: am.Machine = am.Machine(
            C,
            id=f"nc-{kind}-{self.name}-{time.strftime('%H%M%S')}",
            tags=["node-client", f"kind:{kind}"],
            **kw,
        )
        self.mach.bind_handlers(_ClientHandlers(self))
        if handlers is not None:
            self.mach.bind_handlers(handlers)
        #: the supervisor's network machine (after :meth:`connect`)
        self.supervisor: rpc.NetworkMachine | None = None
        #: the assigned worker's network machine (after :meth:`req_worker`)
        self.worker: rpc.NetworkMachine | None = None
        #: the assigned worker's id
        self.worker_id: str = ""
        self._super_client: rpc.Client | None = None
        self._worker_client: rpc.Client | None = None
        self._worker_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._provided: trio.MemorySendChannel[dict[str, Any]]
        self._provided_rx: trio.MemoryReceiveChannel[dict[str, Any]]
        self._provided, self._provided_rx = trio.open_memory_channel(math.inf)
        self._pending: dict[int, tuple[trio.Event, list[dict[str, Any]]]] = {}
        self._req = itertools.count(1)
        self._seq = itertools.count(1)

    def __repr__(self) -> str:
        return f"<node.NodeClient {self.mach.id}>"

    # ----- payloads (handler)

    def _on_payload(self, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if name == "ProvideWorker":
            self._provided.send_nowait(data)
        elif name == "WorkReady":
            slot = self._pending.get(data.get("req", -1))
            if slot is not None:
                slot[1].append(data)
                slot[0].set()

    # ----- connections

    def _rpc_client(self, addr: str, schema: Any, name: str, **kwargs: Any) -> rpc.Client:
        """An aRPC client whose payloads go to this client's machine."""
        return rpc.Client(
            addr,
            schema,
            name=name,
            consumer=self.mach,
            token=self.token,
            conn_timeout=self.conn_timeout,
            conn_retries=self.conn_retries,
            conn_retry_delay=0.1,
            call_timeout=self.conn_timeout,
            parent=self.mach,
            **kwargs,
        )

    async def _start_rpc(self, client: rpc.Client, nursery: trio.Nursery) -> None:
        client.start(nursery)
        await client.wait_ready(self.conn_timeout * (self.conn_retries + 1))

    # ----- supervisor

    async def connect(self, nursery: trio.Nursery) -> None:
        """Connect to the first supervisor that answers (``SuperReady``), in ``nursery``."""
        self._nursery = nursery
        m = self.mach
        m.start(nursery)  # type: ignore[arg-type]
        m.add1(am.START)
        errors: list[str] = []
        for addr in self.supervisors:
            m.add1(C.SuperConnecting, {"addr": addr})
            client = self._rpc_client(addr, SupervisorStates, f"nc-super-{self.name}")
            try:
                await self._start_rpc(client, nursery)
            except (rpc.RpcError, TimeoutError, trio.TooSlowError) as err:
                errors.append(f"{addr}: {err or type(err).__name__}")
                await client.stop(dispose=True)
                continue
            self._super_client = client
            self.supervisor = client.netmach
            m.remove1(C.SuperConnecting)
            m.add1(C.SuperReady, {"addr": addr})
            return
        m.remove1(C.SuperConnecting)
        failed = NodeError(f"no supervisor answered: {'; '.join(errors)}")
        m.add_err_state(C.ErrSupervisor, failed)
        raise failed

    # ----- workers

    async def req_worker(self, timeout: float | None = None) -> rpc.NetworkMachine:
        """Get a worker and connect to it; waits for one up to ``timeout`` (default twice
        conn_timeout), then raises :class:`NoWorkerError`."""
        sup, client, nursery = self.supervisor, self._super_client, self._nursery
        if sup is None or client is None or nursery is None:
            raise NodeError(f"{self.mach.id}: not connected to a supervisor (call connect)")
        if self.worker is not None:
            return self.worker
        limit = 2 * self.conn_timeout if timeout is None else timeout
        m = self.mach
        m.add1(C.WorkerRequested)
        rpc_name = f"nc-worker-{self.name}-{next(self._seq)}"
        reason = "no worker available"
        with trio.move_on_after(limit):
            while True:
                res = await sup.call_add1(
                    "ProvideWorker", {"client_id": client.mach.id, "rpc_id": f"rc-{rpc_name}"}
                )
                if res is am.Result.CANCELED:
                    await sup.when1("WorkersAvailable")
                    continue
                got = await self._provided_rx.receive()
                if "error" in got:
                    reason = str(got["error"])
                    if "max_client_workers" in reason:
                        break
                    await trio.sleep(0.05)
                    continue
                return await self._connect_worker(got, rpc_name, nursery)
        m.remove1(C.WorkerRequested)
        err = NoWorkerError(f"{self.mach.id}: no worker within {limit}s ({reason})")
        m.add_err_state(C.ErrWorker, err)
        raise err

    async def _connect_worker(
        self, got: dict[str, Any], rpc_name: str, nursery: trio.Nursery
    ) -> rpc.NetworkMachine:
        m = self.mach
        m.add1(C.WorkerConnecting, {"addr": got["addr"]})
        # one worker, one connection: no reconnects, no call retries (a lost
        # worker is reported, and the client asks the supervisor for another)
        client = self._rpc_client(
            str(got["addr"]), self.worker_schema, rpc_name, call_retries=0, reconnect=False
        )
        try:
            await self._start_rpc(client, nursery)
        except (rpc.RpcError, TimeoutError, trio.TooSlowError) as err:
            await client.stop(dispose=True)
            m.remove([C.WorkerConnecting, C.WorkerRequested])
            e = WorkerError(f"cannot connect to worker {got.get('worker_id')}: {err}")
            m.add_err_state(C.ErrWorker, e)
            raise e from err
        self._worker_client = client
        self.worker = client.netmach
        self.worker_id = str(got.get("worker_id", ""))
        m.remove1(C.WorkerConnecting)
        m.add1(C.WorkerReady, {"id": self.worker_id})
        nursery.start_soon(self._watch_worker, client)
        return client.netmach

    async def _watch_worker(self, client: rpc.Client) -> None:
        await client.mach.when1("Disconnected")
        self._lost(client, "the worker went away")

    def _lost(self, client: rpc.Client | None, reason: str) -> WorkerLostError:
        """The worker is gone: ``ErrWorker``, no ``WorkerReady``, pending work fails."""
        err = WorkerLostError(f"{self.mach.id}: {reason}")
        if client is None or self._worker_client is not client:
            return err
        self._drop_worker()
        m = self.mach
        if not m.is_disposed:
            m.add_err_state(C.ErrWorker, err)
        return err

    def _drop_worker(self) -> None:
        self._worker_client = None
        self.worker = None
        self.worker_id = ""
        if not self.mach.is_disposed:
            self.mach.remove1(C.WorkerReady)
        for ev, _ in self._pending.values():
            ev.set()  # no result: the waiter raises WorkerLostError

    async def release_worker(self) -> None:
        """Disconnect from the worker; the supervisor puts it back in the pool."""
        client = self._worker_client
        self._drop_worker()
        if client is not None:
            await client.stop(dispose=True)

    async def work(self, data: Any, timeout: float | None = None) -> Any:
        """Send ``data`` to the worker and return its result (``WorkerError`` if it raised)."""
        nm, client = self.worker, self._worker_client
        if nm is None:
            raise NodeError(f"{self.mach.id}: no worker (call req_worker)")
        req = next(self._req)
        ev = trio.Event()
        out: list[dict[str, Any]] = []
        self._pending[req] = (ev, out)
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                res = await nm.call_add1("WorkRequested", {"input": data, "req": req})
                if res is am.Result.CANCELED:
                    raise WorkerError(f"worker {self.worker_id} refused the work")
                await ev.wait()
        except rpc.RpcError as err:
            raise self._lost(client, f"worker {self.worker_id}: {err}") from err
        finally:
            self._pending.pop(req, None)
        if not out:
            raise self._lost(client, "the worker went away during the work")
        body = out[0]
        if "error" in body:
            raise WorkerError(f"worker {self.worker_id}: {body['error']}")
        return body.get("result")

    async def close(self) -> None:
        """Disconnect from the worker and the supervisor."""
        await self.release_worker()
        if self._super_client is not None:
            await self._super_client.stop(dispose=True)
            self._super_client = None
            self.supervisor = None
        if not self.mach.is_disposed:
            self.mach.dispose()


@asynccontextmanager
async def open_node_client(
    kind: str, supervisors: Sequence[str], **kwargs: Any
) -> AsyncIterator[NodeClient]:
    """A node client connected to a supervisor (no worker yet); closed on exit."""
    client = NodeClient(kind, supervisors, **kwargs)  # options checked before any task starts
    with unwrap_single():
        async with trio.open_nursery() as n:
            await client.connect(n)
            try:
                yield client
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await client.close()
                n.cancel_scope.cancel()
