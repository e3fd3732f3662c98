"""The worker side of a node: a machine in its own process, served over two aRPC servers.

A :class:`Worker` runs one machine (a schema built on
:class:`~asyncmachine_trio.node.states.WorkerStates`) with a **local** server
for its supervisor and a **public** server for exactly one client at a time:
the public server refuses every client until the supervisor assigns one
(``ServeClient``), and it never accepts any other client id. On start it reports
its addresses to the supervisor's bootstrap server, then serves until its
supervisor goes away (end of standard input, see :func:`run_worker`) or it is
cancelled.

Work: a client adds ``WorkRequested`` with args ``{"input": ..., "req": ...}``
on its network machine; the worker runs ``work(input)`` (sync or async) in the
``WorkRequested`` → ``Working`` → ``WorkReady`` → ``Idle`` cycle and sends the
result to the client as a payload named ``WorkReady`` with data
``{"req": ..., "result": ...}`` (``{"req": ..., "error": "<repr>"}`` when the
work raised, which also adds ``ErrWork``).
"""

from __future__ import annotations

import argparse
import inspect
import os
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import trio

import asyncmachine_trio as am

from .. import rpc
from .errors import NodeError
from .states import BootstrapStates, WorkerStates

__all__ = ["TOKEN_ENV", "WorkFn", "Worker", "run_worker"]

#: the environment variable that carries the node's token to worker processes
TOKEN_ENV = "AM_NODE_TOKEN"

WorkFn = Callable[[Any], "Awaitable[Any] | Any"]

W = WorkerStates


def _host() -> str:
    return socket.gethostname()[:15] or "host"


class _ServerPipes:
    """Handlers on the worker's rpc server machines, mirrored into the worker machine."""

    def __init__(self, worker: Worker, *, public: bool) -> None:
        self.worker = worker
        self.public = public

    def handshake_done_state(self, e: am.Event) -> None:
        w = self.worker.mach
        if not w.is_disposed:
            w.add1(W.ClientConnected if self.public else W.SuperConnected)

    def client_connected_end(self, e: am.Event) -> None:
        worker = self.worker
        if worker.mach.is_disposed:
            return
        if self.public:
            worker.mach.remove1(W.ClientConnected)
            worker._client_left()
        else:
            worker.mach.remove1(W.SuperConnected)


class _WorkerHandlers:
    """The built-in handlers of every worker machine."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def rpc_ready_state(self, e: am.Event) -> None:
        e.machine.add1(W.Ready)

    def healthcheck_state(self, e: am.Event) -> None:
        # each ping advances the tick by two: the supervisor checks it grew
        e.machine.remove1(W.Healthcheck)

    def serve_client_enter(self, e: am.Event) -> bool:
        return isinstance(e.args.get("id"), str) and bool(e.args["id"])

    def serve_client_state(self, e: am.Event) -> None:
        self.worker._assign(str(e.args["id"]))
        e.machine.remove1(W.ServeClient)

    def work_requested_enter(self, e: am.Event) -> bool:
        return "input" in e.args

    def work_requested_state(self, e: am.Event) -> None:
        e.machine.fork(W.Start, self.worker._do_work, e.args["input"], e.args.get("req"))


class Worker:
    """A node worker (see the module doc); :meth:`run` serves until cancelled."""

    def __init__(
        self,
        kind: str,
        schema: type[am.States] | Mapping[str, am.State] = WorkerStates,
        *,
        work: WorkFn | None = None,
        handlers: object | None = None,
        token: str | None = None,
        public_host: str = "127.0.0.1",
        log_level: am.LogLevel | int | None = None,
    ) -> None:
        names = schema.schema() if isinstance(schema, type) else dict(schema)
        missing = [s for s in WorkerStates.schema() if s not in names]
        if missing:
            raise NodeError(f"a worker schema must include WorkerStates; missing {missing}")
        self.kind = kind
        self.id: str = f"nw-{kind}-{_host()}-{secrets.token_hex(3)}"
        self.work = work
        self.token: str = os.environ.get(TOKEN_ENV, "") if token is None else token
        self.public_host = public_host
        kw: dict[str, Any] = {} if log_level is None else {"log_level": log_level}
        self.mach: am.Machine = am.Machine(
            schema, id=self.id, tags=["node-worker", f"kind:{kind}"], **kw
        )
        self.mach.bind_handlers(_WorkerHandlers(self))
        if handlers is not None:
            self.mach.bind_handlers(handlers)
        self.local: rpc.Server | None = None
        self.public: rpc.Server | None = None
        #: the rpc id of the client the supervisor assigned ("" = none)
        self.client_id: str = ""
        self._nobody = f"nobody-{secrets.token_hex(16)}"

    def __repr__(self) -> str:
        return f"<node.Worker {self.id}>"

    @property
    def local_addr(self) -> str:
        """The local server's URL (for the supervisor)."""
        return self.local.addr if self.local is not None else ""

    @property
    def public_addr(self) -> str:
        """The public server's URL (for the assigned client)."""
        return self.public.addr if self.public is not None else ""

    # ----- client assignment (handlers only)

    def _assign(self, client_id: str) -> None:
        assert self.public is not None
        self.client_id = client_id
        self.public.allow_id = client_id

    def _client_left(self) -> None:
        if self.public is not None:
            self.public.allow_id = self._nobody
        self.client_id = ""

    # ----- work

    async def _do_work(self, data: Any, req: Any) -> None:
        m = self.mach
        m.add1(W.Working)
        body: dict[str, Any] = {"req": req}
        try:
            if self.work is None:
                raise NodeError(f"{self.id} has no work function")
            out = self.work(data)
            if inspect.isawaitable(out):
                out = await out
            body["result"] = out
        except Exception as err:  # the error goes to the client and to ErrWork
            body["error"] = repr(err)
            m.add_err_state(W.ErrWork, err)
        m.add1(W.WorkReady)
        server = self.public
        if server is not None and self.client_id:
            try:
                await server.send_payload("WorkReady", body, destination=self.client_id)
            except rpc.RpcError as err:
                m.add_err_state(W.ErrClient, err)
        m.add1(W.Idle)

    # ----- lifecycle

    async def run(
        self, boot_addr: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start both servers, report to ``boot_addr``, then serve until cancelled."""
        m = self.mach
        async with trio.open_nursery() as n:
            m.start(n)  # type: ignore[arg-type]
            m.add1(W.Start)
            self.local = rpc.Server(
                m, "ws://127.0.0.1:0", name=f"nw-loc-{self.id}", token=self.token
            )
            self.public = rpc.Server(
                m,
                f"ws://{self.public_host}:0",
                name=f"nw-pub-{self.id}",
                token=self.token,
                allow_id=self._nobody,
            )
            self.local.mach.bind_handlers(_ServerPipes(self, public=False))
            self.public.mach.bind_handlers(_ServerPipes(self, public=True))
            try:
                await n.start(self.local.serve)
                m.add1(W.LocalRpcReady)
                await n.start(self.public.serve)
                m.add1(W.PublicRpcReady)
                await self._report(boot_addr)
                task_status.started()
                await trio.sleep_forever()
            finally:
                self.local.close()
                self.public.close()
                if not m.is_disposed:
                    m.remove1(W.Start)
                    m.dispose()

    async def _report(self, boot_addr: str) -> None:
        """Tell the supervisor's bootstrap machine our addresses (``WorkerAddr``)."""
        args = {"id": self.id, "local_addr": self.local_addr, "public_addr": self.public_addr}
        async with rpc.open_client(
            boot_addr,
            BootstrapStates,
            name=f"boot-{self.id}",
            token=self.token,
            conn_retries=3,
            reconnect=False,
        ) as client:
            res = await client.netmach.call_add1("WorkerAddr", args)
            if res is am.Result.CANCELED:
                raise NodeError(f"the bootstrap at {boot_addr} refused {self.id}")


async def _until_stdin_closes() -> None:
    """Return when standard input reaches its end: the supervisor is gone."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    try:
        while await stream.receive_some(4096):
            pass
    finally:
        await stream.aclose()


def run_worker(worker: Worker, argv: Sequence[str] | None = None) -> None:
    """The main function of a worker process: ``python -m mymodule -a BOOTSTRAP_ADDR``.

    Serves ``worker`` until the supervisor closes the process's standard input
    (on shutdown, or when it dies: the kernel closes the pipe, so a supervisor
    killed with SIGKILL takes its workers with it), or SIGTERM / Ctrl+C.
    """
    parser = argparse.ArgumentParser(description=f"asyncmachine-trio node worker ({worker.kind})")
    parser.add_argument("-a", "--addr", required=True, help="the supervisor's bootstrap address")
    opts = parser.parse_args(argv)

    async def main() -> None:
        async with trio.open_nursery() as n:
            n.start_soon(worker.run, opts.addr)
            await _until_stdin_closes()
            n.cancel_scope.cancel()

    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
