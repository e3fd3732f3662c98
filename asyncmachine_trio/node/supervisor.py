"""The supervisor: forks worker processes, keeps the pool, checks health, hands out workers.

One supervisor manages workers of one kind. It exposes its machine on a
**public** aRPC mux (many node clients) and a **local** aRPC server (one
peer, e.g. another supervisor). Each worker is an OS process started as
``[*worker_cmd, "-a", <bootstrap address>]`` with the supervisor's environment
(plus the node token in ``AM_NODE_TOKEN``) and a pipe on its standard input:
when the supervisor process ends in any way, SIGKILL included, the kernel
closes the pipe and :func:`~asyncmachine_trio.node.run_worker` ends the worker.

Bootstrap: per fork, a throw-away machine (``BootstrapStates``) is served on
an ephemeral loopback port; the new process connects to it and adds
``WorkerAddr`` with its id and both addresses; the supervisor then connects an
aRPC client to the worker's local server and the worker joins the pool.

Pool policy (the reference's Min / Max / Warm / MaxClientWorkers): the pool
holds ``min(max_workers, max(min_workers, assigned) + warm_workers)`` workers,
so ``warm_workers`` idle workers stand ready on top of those serving clients;
``PoolReady`` is active while at least ``min(min_workers, max_workers)``
workers are ready; ``WorkersAvailable`` while one is idle. A client gets at
most ``max_client_workers`` workers at once.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import attrs
import trio

import asyncmachine_trio as am

from .. import rpc
from ..machine.excgroup import unwrap_single
from .errors import PoolError, WorkerError, WorkerHealthError
from .states import BootstrapStates, SupervisorStates
from .worker import TOKEN_ENV

__all__ = ["Supervisor", "WorkerClass", "WorkerInfo", "open_supervisor"]

S = SupervisorStates

WorkerClass = Literal["initing", "rpc", "idle", "busy", "ready"]


@attrs.frozen
class WorkerInfo:
    """What the supervisor knows about one worker (a snapshot)."""

    id: str
    pid: int
    local_addr: str
    public_addr: str
    client_id: str
    classes: frozenset[str]
    errors: int


@attrs.define(eq=False)
class _Rec:
    """A worker record (mutated only by the supervisor's own tasks and handlers)."""

    key: str
    process: trio.Process | None = None
    id: str = ""
    local_addr: str = ""
    public_addr: str = ""
    client: rpc.Client | None = None
    client_id: str = ""
    assigned_at: float = 0.0
    errors: list[float] = attrs.Factory(list)
    stderr: bytearray = attrs.Factory(bytearray)
    scope: trio.CancelScope | None = None
    killed: bool = False

    @property
    def netmach(self) -> rpc.NetworkMachine | None:
        return self.client.netmach if self.client is not None else None


class _BootHandlers:
    def __init__(self) -> None:
        self.addrs: dict[str, str] = {}
        self.got = trio.Event()

    def worker_addr_enter(self, e: am.Event) -> bool:
        return all(isinstance(e.args.get(k), str) and e.args[k] for k in _ADDR_KEYS)

    def worker_addr_state(self, e: am.Event) -> None:
        self.addrs = {k: str(e.args[k]) for k in _ADDR_KEYS}
        self.got.set()


_ADDR_KEYS = ("id", "local_addr", "public_addr")


class _WorkerWatch:
    """Handlers on a worker's network machine (they run as its clock arrives)."""

    def __init__(self, sup: Supervisor, rec: _Rec) -> None:
        self.sup = sup
        self.rec = rec

    def client_connected_end(self, e: am.Event) -> None:
        self.sup._free(self.rec)

    def exception_state(self, e: am.Event) -> None:
        self.sup._worker_error(self.rec, WorkerError(f"{self.rec.id} reported an error"))

    def any_state(self, e: am.Event) -> None:
        self.sup._update_pool()


class _SupervisorHandlers:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    def provide_worker_enter(self, e: am.Event) -> bool:
        return all(isinstance(e.args.get(k), str) and e.args[k] for k in ("client_id", "rpc_id"))

    def provide_worker_state(self, e: am.Event) -> None:
        sup = self.sup
        client_id, rpc_id = str(e.args["client_id"]), str(e.args["rpc_id"])
        mine = sum(1 for r in sup._recs.values() if r.client_id == client_id)
        rec = None if mine >= sup.max_client_workers else sup._pick_idle()
        if rec is not None:
            rec.client_id = client_id  # reserved before any await
            rec.assigned_at = time.monotonic()
        e.machine.fork(S.Start, sup._provide, rec, client_id, rpc_id, mine)
        e.machine.remove1(S.ProvideWorker)


class Supervisor:
    """Supervises a pool of worker processes of one ``kind`` (see the module doc)."""

    def __init__(
        self,
        kind: str,
        worker_cmd: Sequence[str],
        *,
        public_addr: str = "ws://127.0.0.1:0",
        local_addr: str = "ws://127.0.0.1:0",
        min_workers: int = 2,
        max_workers: int = 10,
        warm_workers: int = 5,
        max_client_workers: int = 0,
        heartbeat: float = 60.0,
        conn_timeout: float = 5.0,
        start_timeout: float = 30.0,
        health_retries: int = 3,
        healthcheck_pause: float = 0.5,
        worker_err_ttl: float = 600.0,
        worker_err_recent: float = 60.0,
        worker_err_kill: int = 3,
        token: str = "",
        env: Mapping[str, str] | None = None,
        name: str = "",
        log_level: am.LogLevel | int | None = None,
    ) -> None:
        if not worker_cmd or not all(isinstance(a, str) for a in worker_cmd):
            raise TypeError("worker_cmd must be a non-empty sequence of str")
        for label, value in (
            ("heartbeat", heartbeat),
            ("conn_timeout", conn_timeout),
            ("start_timeout", start_timeout),
            ("healthcheck_pause", healthcheck_pause),
        ):
            if not value >= 0:
                raise ValueError(f"{label} must be >= 0, got {value!r}")
        if health_retries < 1:
            raise ValueError(f"health_retries must be >= 1, got {health_retries!r}")
        self.kind = kind
        self.worker_cmd: list[str] = list(worker_cmd)
        #: the public mux's URL (the bound one once running)
        self.public_addr: str = public_addr
        #: the local server's URL (the bound one once running)
        self.local_addr: str = local_addr
        self.min_workers: int = 0
        self.max_workers: int = 0
        self.warm_workers: int = 0
        self.max_client_workers: int = 0
        self._wake = trio.Event()
        self.set_pool(min_workers, max_workers, warm_workers, max_client_workers)
        self.heartbeat = heartbeat
        self.conn_timeout = conn_timeout
        self.start_timeout = start_timeout
        self.health_retries = health_retries
        self.healthcheck_pause = healthcheck_pause
        self.worker_err_ttl = worker_err_ttl
        self.worker_err_recent = worker_err_recent
        self.worker_err_kill = worker_err_kill
        self.token = token
        self.env: dict[str, str] = dict(os.environ if env is None else env)
        host = socket.gethostname()[:15] or "host"
        self.name: str = name or f"{kind}-{host}-{time.strftime('%H%M%S')}-{secrets.token_hex(2)}"
        kw: dict[str, Any] = {} if log_level is None else {"log_level": log_level}
        self.mach: am.Machine = am.Machine(
            S,
            id=f"ns-{self.name}",
            tags=["node-supervisor", f"kind:{kind}", f"host:{host}"],
            **kw,
        )
        self.mach.bind_handlers(_SupervisorHandlers(self))
        self.mux: rpc.Mux | None = None
        self.local: rpc.Server | None = None
        self._recs: dict[str, _Rec] = {}
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()
        self._start_failures = 0
        self._seq = 0
        #: the last errors of workers (newest last, at most 20)
        self.errors: list[WorkerError] = []

    def __repr__(self) -> str:
        return f"<node.Supervisor {self.mach.id} {len(self._recs)} workers>"

    # ----- policy

    def set_pool(
        self, min_workers: int, max_workers: int, warm_workers: int = 0, max_client_workers: int = 0
    ) -> None:
        """Change the pool policy (``min`` is clipped to ``max``; ``max_client_workers`` 0 =
        ``max``) and re-normalize the pool."""
        for label, v in (
            ("min_workers", min_workers),
            ("max_workers", max_workers),
            ("warm_workers", warm_workers),
            ("max_client_workers", max_client_workers),
        ):
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{label} must be an int >= 0, got {v!r}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self.min_workers = min(min_workers, max_workers)
        self.warm_workers = warm_workers
        self.max_client_workers = max_client_workers or max_workers
        self._wake.set()

    def target_size(self) -> int:
        """How many workers the pool should hold now."""
        assigned = sum(1 for r in self._recs.values() if r.client_id)
        return min(self.max_workers, max(self.min_workers, assigned) + self.warm_workers)

    # ----- getters

    def _classes(self, rec: _Rec) -> frozenset[str]:
        nm = rec.netmach
        if nm is None or rec.killed:
            return frozenset({"initing"})
        out = {"rpc"}
        cutoff = time.monotonic() - self.worker_err_recent
        healthy = not any(t > cutoff for t in rec.errors) and rec.client is not None
        if healthy and rec.client is not None and rec.client.mach.is1("Ready") and nm.is1("Ready"):
            out.add("ready")
            if nm.is1("Idle") and not rec.client_id:
                out.add("idle")
            else:
                out.add("busy")
        return frozenset(out)

    def workers(self, cls: WorkerClass | None = None) -> list[WorkerInfo]:
        """The workers (of one class: ``initing``, ``rpc``, ``idle``, ``busy``, ``ready``)."""
        out = []
        for rec in self._recs.values():
            classes = self._classes(rec)
            if cls is not None and cls not in classes:
                continue
            out.append(
                WorkerInfo(
                    id=rec.id,
                    pid=rec.process.pid if rec.process is not None else 0,
                    local_addr=rec.local_addr,
                    public_addr=rec.public_addr,
                    client_id=rec.client_id,
                    classes=classes,
                    errors=len(rec.errors),
                )
            )
        return out

    def _pick_idle(self) -> _Rec | None:
        for rec in self._recs.values():
            if "idle" in self._classes(rec):
                return rec
        return None

    # ----- pool state

    def _update_pool(self) -> None:
        m = self.mach
        if m.is_disposed or not m.is1(S.Start):
            return
        ready = len(self.workers("ready"))
        if ready >= self.min_workers and ready > 0:
            if not m.is1(S.PoolReady):
                m.add1(S.PoolReady)
        elif m.is1(S.PoolReady):
            m.remove1(S.PoolReady)
        if self._pick_idle() is not None:
            if not m.is1(S.WorkersAvailable):
                m.add1(S.WorkersAvailable)
        elif m.is1(S.WorkersAvailable):
            m.remove1(S.WorkersAvailable)

    async def wait_pool_ready(self, timeout: float | None = None) -> None:
        """Wait for ``PoolReady``; ``PoolError`` after ``timeout`` (default: start_timeout +
        2 * conn_timeout)."""
        limit = self.start_timeout + 2 * self.conn_timeout if timeout is None else timeout
        with trio.move_on_after(limit):
            await self.mach.when1(S.PoolReady)
            return
        raise PoolError(
            f"{self.mach.id}: pool not ready within {limit}s "
            f"({len(self.workers('ready'))} of {self.min_workers} ready; last errors "
            f"{[str(e) for e in self.errors[-3:]]})"
        )

    # ----- errors

    def _worker_error(self, rec: _Rec, err: WorkerError) -> None:
        now = time.monotonic()
        rec.errors = [t for t in rec.errors if t > now - self.worker_err_ttl]
        rec.errors.append(now)
        self.errors = [*self.errors[-19:], err]
        m = self.mach
        if not m.is_disposed:
            m.log_at(am.LogLevel.CHANGES, f"[node] worker error: {err}")
            m.add_err_state(S.ErrWorker, err)
            m.remove1(am.EXCEPTION)  # the error stays in ErrWorker's tick and the log
        if len(rec.errors) > self.worker_err_kill:
            self.kill_worker(rec.id or rec.key)
        self._update_pool()

    # ----- lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, fill the pool and supervise it until cancelled; workers end with it."""
        m = self.mach
        try:
            async with trio.open_nursery() as n:
                self._nursery = n
                m.start(n)  # type: ignore[arg-type]
                m.add1(S.Start)
                self.mux = rpc.Mux(m, self.public_addr, name=f"{self.name}-pub", token=self.token)
                self.local = rpc.Server(
                    m, self.local_addr, name=f"{self.name}-loc", token=self.token
                )
                self.public_addr = await n.start(self.mux.serve)
                m.add1(S.PublicRpcReady)
                self.local_addr = await n.start(self.local.serve)
                m.add1(S.LocalRpcReady)
                n.start_soon(self._normalizer)
                if self.heartbeat > 0:
                    n.start_soon(self._heartbeat_loop)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self._shutdown()

    async def _shutdown(self) -> None:
        for rec in list(self._recs.values()):
            proc = rec.process
            if proc is not None and proc.returncode is None:
                proc.kill()
                with trio.move_on_after(2):
                    await proc.wait()
        self._recs.clear()
        if self.mux is not None:
            self.mux.close()
        if self.local is not None:
            self.local.close()
        if not self.mach.is_disposed:
            self.mach.dispose()

    # ----- normalizing

    async def _normalizer(self) -> None:
        m = self.mach
        while True:
            self._wake = trio.Event()
            missing = self.target_size() - len(self._recs)
            if missing > 0:
                m.add1(S.NormalizingPool)
                if self._start_failures:
                    # workers failed to start: back off before the next try
                    delay = min(5.0, 0.1 * 2 ** min(self._start_failures, 10))
                    await trio.sleep(delay)
                    missing = self.target_size() - len(self._recs)
                assert self._nursery is not None
                for _ in range(missing):
                    self._seq += 1
                    rec = _Rec(key=f"boot-{self._seq}")
                    self._recs[rec.key] = rec
                    m.add1(S.ForkWorker, {"key": rec.key})
                    self._nursery.start_soon(self._worker_task, rec)
            else:
                m.add1(S.PoolNormalized)
            self._update_pool()
            await self._wake.wait()

    async def _worker_task(self, rec: _Rec) -> None:
        m = self.mach
        started = False
        failure: WorkerError | None = None
        try:
            with trio.CancelScope() as scope:
                rec.scope = scope
                async with trio.open_nursery() as wn:
                    # errors are taken here: raised in the nursery they would leave as a group
                    try:
                        await self._fork(rec, wn)
                        started = True
                        self._start_failures = 0
                        assert rec.process is not None
                        code = await rec.process.wait()
                        # killed by us (a health check, a lost connection): not news, unless
                        # the process had already ended by itself with its own exit code
                        if not rec.killed or code not in _KILLED:
                            failure = WorkerError(
                                f"worker {rec.id} exited with {code}: {_tail(rec.stderr)}"
                            )
                    except WorkerError as err:
                        failure = err
                    except (rpc.RpcError, TimeoutError, trio.TooSlowError) as err:
                        failure = WorkerError(f"worker {rec.id or rec.key}: {err!r}")
                    wn.cancel_scope.cancel()
            if failure is not None:
                if not started:
                    self._start_failures += 1
                self._worker_error(rec, failure)
        finally:
            proc = rec.process
            if proc is not None and proc.returncode is None:
                proc.kill()
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await proc.wait()
            if rec.client is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await rec.client.stop(dispose=True)
            self._recs.pop(rec.key, None)
            if not m.is_disposed and m.is1(S.Start):
                m.add1(S.WorkerGone, {"id": rec.id})
                if rec.killed:
                    m.add1(S.WorkerKilled, {"id": rec.id})
                self._update_pool()
            self._wake.set()

    async def _fork(self, rec: _Rec, wn: trio.Nursery) -> None:
        """Start the process, take its bootstrap report, connect to its local server."""
        m = self.mach
        boot = am.Machine(BootstrapStates, id=f"nb-{self.name}{secrets.token_hex(3)}", parent=m)
        boot_h = _BootHandlers()
        boot.bind_handlers(boot_h)
        server = rpc.Server(boot, "ws://127.0.0.1:0", name=boot.id, token=self.token)
        spawn_err: OSError | None = None
        try:
            async with trio.open_nursery() as bn:
                boot_addr = await bn.start(server.serve)
                m.add1(S.ForkingWorker, {"key": rec.key, "boot_addr": boot_addr})
                env = {**self.env, TOKEN_ENV: self.token}
                try:
                    rec.process = await trio.lowlevel.open_process(
                        [*self.worker_cmd, "-a", boot_addr],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        env=env,
                    )
                except OSError as err:
                    spawn_err = err
                else:
                    wn.start_soon(self._read_stderr, rec)
                    await self._wait_report(rec, boot_h)
                bn.cancel_scope.cancel()
        finally:
            server.close()
            boot.dispose()
        if spawn_err is not None:
            raise WorkerError(f"cannot start {self.worker_cmd!r}: {spawn_err}") from spawn_err
        if not boot_h.got.is_set():
            proc = rec.process
            if proc is not None and proc.returncode is not None:
                raise WorkerError(
                    f"worker {' '.join(self.worker_cmd)!r} exited with {proc.returncode} "
                    f"at start-up: {_tail(rec.stderr)}"
                )
            raise WorkerError(f"worker {rec.key}: no WorkerAddr within {self.start_timeout}s")
        rec.id = boot_h.addrs["id"]
        rec.local_addr = boot_h.addrs["local_addr"]
        rec.public_addr = boot_h.addrs["public_addr"]
        m.add1(S.WorkerConnected, dict(boot_h.addrs))
        client = rpc.Client(
            rec.local_addr,
            None,
            name=f"{self.name}-{rec.id}",
            token=self.token,
            conn_timeout=self.conn_timeout,
            conn_retries=3,
            call_timeout=self.conn_timeout,
            call_retries=0,
            reconnect=False,
            parent=m,
        )
        client.start(wn)
        await client.wait_ready(self.conn_timeout)
        client.netmach.bind_handlers(_WorkerWatch(self, rec))
        rec.client = client

        # the worker's connection to us ending = the worker is gone
        async def watch_conn() -> None:
            await client.mach.when1("Disconnected")
            if not rec.killed and rec.scope is not None:
                self._worker_error(rec, WorkerError(f"lost the connection to worker {rec.id}"))
                self.kill_worker(rec.id)

        wn.start_soon(watch_conn)
        m.add1(S.WorkerForked, {"id": rec.id})
        m.add1(S.WorkerReady, {"id": rec.id})
        self._update_pool()
        self._wake.set()

    async def _wait_report(self, rec: _Rec, boot_h: _BootHandlers) -> None:
        """Until the worker reports its addresses, exits, or ``start_timeout`` passes."""
        proc = rec.process
        assert proc is not None
        with trio.move_on_after(self.start_timeout):
            async with trio.open_nursery() as race:

                async def exited() -> None:
                    await proc.wait()
                    await trio.sleep(0.05)  # let the stderr reader catch up
                    race.cancel_scope.cancel()

                async def reported() -> None:
                    await boot_h.got.wait()
                    race.cancel_scope.cancel()

                race.start_soon(exited)
                race.start_soon(reported)

    async def _read_stderr(self, rec: _Rec) -> None:
        proc = rec.process
        if proc is None or proc.stderr is None:
            return
        try:
            while chunk := await proc.stderr.receive_some(4096):
                rec.stderr += chunk
                del rec.stderr[:-4096]
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def kill_worker(self, worker_id: str) -> bool:
        """Kill a worker's process (by id); it is replaced as the policy says."""
        for rec in self._recs.values():
            if worker_id in (rec.id, rec.key):
                if rec.killed:
                    return True
                rec.killed = True
                m = self.mach
                if not m.is_disposed:
                    m.add1(S.KillingWorker, {"id": rec.id})
                if rec.process is not None and rec.process.returncode is None:
                    rec.process.kill()
                elif rec.scope is not None:
                    rec.scope.cancel()
                self._update_pool()
                return True
        return False

    # ----- health

    async def _heartbeat_loop(self) -> None:
        while True:
            await trio.sleep(self.heartbeat)
            await self.check_health()

    async def check_health(self) -> None:
        """One heartbeat round now: ping every ready worker, kill those that fail."""
        m = self.mach
        m.add1(S.Heartbeat)
        try:
            with trio.move_on_after(self.conn_timeout) as cs:
                async with trio.open_nursery() as hn:
                    for rec in list(self._recs.values()):
                        if rec.client is not None and not rec.killed:
                            hn.start_soon(self._ping, rec)
            if cs.cancelled_caught:
                m.add_err_state(S.ErrPool, PoolError("heartbeat round exceeded conn_timeout"))
                m.remove1(am.EXCEPTION)
        finally:
            if not m.is_disposed:
                m.remove1(S.Heartbeat)
                self._update_pool()

    async def _ping(self, rec: _Rec) -> None:
        nm = rec.netmach
        assert nm is not None
        per_try = max(self.conn_timeout / (self.health_retries + 1), 0.05)
        for attempt in range(self.health_retries):
            before = nm.tick("Healthcheck")
            with trio.move_on_after(per_try):
                try:
                    await nm.call_add1("Healthcheck")
                    if nm.tick("Healthcheck") > before:
                        return
                except rpc.RpcError:
                    pass
            if attempt + 1 < self.health_retries:
                await trio.sleep(self.healthcheck_pause)
        self._worker_error(
            rec, WorkerHealthError(f"worker {rec.id} failed {self.health_retries} health checks")
        )
        self.kill_worker(rec.id)

    # ----- clients

    def _free(self, rec: _Rec) -> None:
        if rec.client_id:
            rec.client_id = ""
            self._update_pool()
            self._wake.set()

    async def _provide(self, rec: _Rec | None, client_id: str, rpc_id: str, mine: int) -> None:
        mux = self.mux
        assert mux is not None
        if rec is None:
            reason = (
                f"client {client_id} has {mine} workers (max_client_workers "
                f"{self.max_client_workers})"
                if mine >= self.max_client_workers
                else "no idle worker"
            )
            body: dict[str, Any] = {"error": reason}
        else:
            nm = rec.netmach
            assert nm is not None
            try:
                with trio.fail_after(self.conn_timeout):
                    res = await nm.call_add1("ServeClient", {"id": rpc_id})
                if res is am.Result.CANCELED:
                    raise WorkerError(f"worker {rec.id} refused ServeClient")
            except (rpc.RpcError, WorkerError, trio.TooSlowError) as err:
                rec.client_id = ""
                self._worker_error(rec, WorkerError(f"assigning {rec.id}: {err}"))
                body = {"error": f"worker {rec.id} could not be assigned"}
            else:
                body = {"worker_id": rec.id, "addr": rec.public_addr, "rpc_id": rpc_id}
                self._nursery_soon(self._claim_deadline, rec, client_id)
        self._update_pool()
        self._wake.set()
        try:
            await mux.send_payload("ProvideWorker", body, destination=client_id)
        except rpc.RpcError:
            if rec is not None and rec.client_id == client_id:
                self._free(rec)

    def _nursery_soon(self, fn: Any, *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    async def _claim_deadline(self, rec: _Rec, client_id: str) -> None:
        """Free a worker whose client never connected to it."""
        await trio.sleep(self.conn_timeout * 2)
        nm = rec.netmach
        if rec.client_id == client_id and nm is not None and not nm.is1("ClientConnected"):
            self._free(rec)


#: exit codes of a process we killed (trio's kill() sends SIGKILL)
_KILLED = (-signal.SIGKILL, -signal.SIGTERM)


def _tail(buf: bytearray, n: int = 400) -> str:
    text = bytes(buf[-n:]).decode("utf-8", "replace").strip()
    return text or "(no output)"


@asynccontextmanager
async def open_supervisor(
    kind: str, worker_cmd: Sequence[str], *, wait_ready: bool = True, **kwargs: Any
) -> AsyncIterator[Supervisor]:
    """A running supervisor (pool ready unless ``wait_ready=False``); its workers end on exit."""
    sup = Supervisor(kind, worker_cmd, **kwargs)  # options checked before any task starts
    with unwrap_single():
        async with trio.open_nursery() as n:
            await n.start(sup.run)
            try:
                if wait_ready:
                    await sup.wait_pool_ready()
                yield sup
            finally:
                n.cancel_scope.cancel()
