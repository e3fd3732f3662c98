"""Node: a supervisor forking real worker processes on loopback, and node clients.

Every test starts real OS processes (``examples/node/worker.py``) and talks to
them over real aRPC sockets on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

import asyncmachine_trio as am
from asyncmachine_trio import node, rpc

ROOT = Path(__file__).resolve().parent.parent
WORKER = [sys.executable, str(ROOT / "examples" / "node" / "worker.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
LIMIT = 40  # seconds per test: a hang fails instead of blocking the suite
FAST = {"conn_timeout": 10.0, "heartbeat": 0, "env": ENV}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def _until(pred: Callable[[], bool], limit: float = 15.0) -> None:
    """Poll ``pred`` (process and pool facts have no event to wait on), bounded."""
    with trio.fail_after(limit):
        while not pred():  # noqa: ASYNC110
            await trio.sleep(0.05)


@pytest.mark.trio
async def test_pool_normalizes_min_warm_max_and_serves_distinct_workers() -> None:
    with trio.fail_after(LIMIT * 2):
        async with node.open_supervisor(
            "wc", WORKER, min_workers=2, warm_workers=1, max_workers=4, **FAST
        ) as sup:
            # min 2 + warm 1 = 3 workers
            await _until(lambda: len(sup.workers("ready")) == 3)
            assert sup.mach.is_(["PoolReady", "WorkersAvailable", "Ready"])
            pids = {w.pid for w in sup.workers()}
            assert len(pids) == 3 and all(_alive(p) for p in pids)

            async with trio.open_nursery() as n:
                clients: list[node.NodeClient] = []
                for i in range(4):
                    c = node.NodeClient("wc", [sup.public_addr], name=f"c{i}", conn_timeout=10)
                    await c.connect(n)
                    clients.append(c)

                got: list[str] = []

                async def take(c: node.NodeClient) -> None:
                    await c.req_worker(timeout=30)
                    got.append(c.worker_id)

                async with trio.open_nursery() as reqs:
                    for c in clients:
                        reqs.start_soon(take, c)
                # 4 clients, 4 distinct workers (the pool grew to its max)
                assert len(set(got)) == 4
                assert len(sup.workers()) == 4
                assert {w.client_id for w in sup.workers()} == {
                    c._super_client.mach.id for c in clients if c._super_client
                }
                for c in clients:
                    assert c.mach.is_(["WorkerReady", "Ready"])
                    out = await c.work("one two three", timeout=10)
                    assert out["words"] == 3 and out["pid"] in {w.pid for w in sup.workers()}

                # a fifth client: the pool is at its max, no idle worker -> refused in time
                fifth = node.NodeClient("wc", [sup.public_addr], name="c5", conn_timeout=10)
                await fifth.connect(n)
                with pytest.raises(node.NoWorkerError, match="no worker within"):
                    await fifth.req_worker(timeout=1.0)
                assert fifth.mach.is1("ErrWorker")

                # a client that leaves frees its worker; the fifth one gets it
                freed = clients[0].worker_id
                await clients[0].close()
                await fifth.req_worker(timeout=20)
                assert fifth.worker_id == freed
                for c in [*clients[1:], fifth]:
                    await c.close()
                n.cancel_scope.cancel()


@pytest.mark.trio
async def test_client_flow_result_payload_and_work_errors() -> None:
    with trio.fail_after(LIMIT):
        async with node.open_supervisor("wc", WORKER, min_workers=1, warm_workers=0, **FAST) as sup:
            async with node.open_node_client("wc", [sup.public_addr], conn_timeout=10) as c:
                assert c.mach.is1("SuperReady")
                nm = await c.req_worker()
                assert nm.is1("Ready") and c.mach.is1("Ready")
                assert await c.work("a b") == {"words": 2, "pid": sup.workers()[0].pid}
                # the work raising reaches the caller typed, and the worker keeps serving
                with pytest.raises(node.WorkerError, match="TypeError"):
                    await c.work(123)
                assert (await c.work("x"))["words"] == 1
                await _until(lambda: nm.is1("Idle"))


@pytest.mark.trio
async def test_max_client_workers_is_enforced() -> None:
    with trio.fail_after(LIMIT):
        async with node.open_supervisor(
            "wc", WORKER, min_workers=2, warm_workers=0, max_client_workers=1, **FAST
        ) as sup:
            await _until(lambda: len(sup.workers("idle")) == 2)
            # the supervisor's protocol, spoken by hand: ProvideWorker answered by a payload
            consumer = am.Machine(rpc.ConsumerStates, id="consumer")
            got: list[dict[str, object]] = []

            class H:
                def server_payload_state(self, e: am.Event) -> None:
                    got.append(e.args[rpc.AServerPayload.args_key()].data)

            consumer.bind_handlers(H())
            async with rpc.open_client(
                sup.public_addr, node.SupervisorStates, name="raw", consumer=consumer
            ) as client:
                nm = client.netmach
                for n in (1, 2):
                    args = {"client_id": client.mach.id, "rpc_id": f"rc-w{n}"}
                    assert await nm.call_add1("ProvideWorker", args) is am.Result.EXECUTED
                    await _until(lambda n=n: len(got) == n)  # type: ignore[misc]
            assert set(got[0]) == {"worker_id", "addr", "rpc_id"}
            assert got[1] == {"error": "client rc-raw has 1 workers (max_client_workers 1)"}
            assert len(sup.workers("idle")) == 1
            # bad args are refused by the supervisor's negotiation
            async with rpc.open_client(sup.public_addr, node.SupervisorStates) as client:
                res = await client.netmach.call_add1("ProvideWorker", {"client_id": 1})
                assert res is am.Result.CANCELED


@pytest.mark.trio
async def test_sigkill_worker_mid_work_is_replaced_and_client_recovers() -> None:
    with trio.fail_after(LIMIT * 2):
        async with node.open_supervisor("wc", WORKER, min_workers=1, warm_workers=1, **FAST) as sup:
            await _until(lambda: len(sup.workers("ready")) == 2)
            async with node.open_node_client("wc", [sup.public_addr], conn_timeout=10) as c:
                await c.req_worker()
                victim = next(w for w in sup.workers() if w.id == c.worker_id)
                # the worker dies during the work (the example's fault hook exits the process)
                with pytest.raises(node.WorkerLostError):
                    await c.work("please CRASH now", timeout=20)
                assert c.mach.is1("ErrWorker") and not c.mach.is1("WorkerReady")
                await _until(lambda: not _alive(victim.pid))
                # detected and replaced: 2 ready workers again, none of them the victim
                await _until(
                    lambda: (
                        victim.id not in {w.id for w in sup.workers()}
                        and len(sup.workers("ready")) == 2
                    ),
                    30,
                )
                assert any("exited with 3" in str(e) for e in sup.errors)
                assert sup.mach.tick("ErrWorker") >= 1
                # the client asks again and gets another worker
                await c.req_worker(timeout=20)
                assert c.worker_id != victim.id
                assert (await c.work("still working"))["words"] == 2


@pytest.mark.trio
async def test_hung_worker_fails_health_check_and_is_killed() -> None:
    with trio.fail_after(LIMIT * 2):
        async with node.open_supervisor(
            "wc",
            WORKER,
            min_workers=1,
            warm_workers=0,
            health_retries=2,
            healthcheck_pause=0.1,
            **{**FAST, "conn_timeout": 6.0},
        ) as sup:
            await _until(lambda: len(sup.workers("ready")) == 1)
            await sup.check_health()  # a healthy worker passes
            assert not sup.errors
            (w,) = sup.workers()
            os.kill(w.pid, signal.SIGSTOP)
            try:
                await sup.check_health()
                assert any(isinstance(e, node.WorkerHealthError) for e in sup.errors)
                await _until(lambda: not _alive(w.pid))
                # replaced by a new process
                await _until(lambda: len(sup.workers("ready")) == 1, 30)
                assert sup.workers()[0].pid != w.pid
            finally:
                if _alive(w.pid):
                    os.kill(w.pid, signal.SIGKILL)


@pytest.mark.trio
async def test_worker_crashing_at_startup_is_retried_with_backoff_and_reported() -> None:
    cmd = [sys.executable, "-c", "import sys; print('boom at start', file=sys.stderr); sys.exit(3)"]
    with trio.fail_after(LIMIT):
        sup = node.Supervisor("bad", cmd, min_workers=1, warm_workers=0, **FAST)
        async with trio.open_nursery() as n:
            await n.start(sup.run)
            await _until(lambda: len(sup.errors) >= 3, 30)
            n.cancel_scope.cancel()
        assert "exited with 3 at start-up: boom at start" in str(sup.errors[0])
        assert sup.mach.is_disposed
    with pytest.raises(node.PoolError, match="pool not ready"):
        async with node.open_supervisor(
            "bad",
            cmd,
            min_workers=1,
            warm_workers=0,
            **{**FAST, "start_timeout": 0.5, "conn_timeout": 0.5},
        ):
            pass


SUPERVISOR_SCRIPT = textwrap.dedent(
    """
    import sys, trio
    from asyncmachine_trio import node

    async def main():
        async with node.open_supervisor(
            "wc", sys.argv[1:], min_workers=2, warm_workers=0, heartbeat=0, conn_timeout=10
        ) as sup:
            print(" ".join(str(w.pid) for w in sup.workers()), flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)


def test_sigkill_supervisor_takes_its_workers_with_it(tmp_path: Path) -> None:
    script = tmp_path / "sup.py"
    script.write_text(SUPERVISOR_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), *WORKER], stdout=subprocess.PIPE, env=ENV, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded by the supervisor's own conn_timeout
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    for _ in range(100):
        if not any(_alive(p) for p in pids):
            break
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "a worker outlived its supervisor"


@pytest.mark.trio
async def test_workers_refuse_other_clients_and_tokens_work_end_to_end() -> None:
    with trio.fail_after(LIMIT):
        async with node.open_supervisor(
            "wc", WORKER, min_workers=1, warm_workers=0, token="s3cret", **FAST
        ) as sup:
            (w,) = sup.workers()
            # nobody assigned: the worker's public server refuses any client
            with pytest.raises(rpc.RpcAccessError):
                async with rpc.open_client(w.public_addr, None, name="intruder", token="s3cret"):
                    pass
            # a client without the token cannot reach the supervisor
            with pytest.raises(node.NodeError, match="no supervisor answered"):
                async with node.open_node_client("wc", [sup.public_addr], conn_timeout=2):
                    pass
            async with node.open_node_client(
                "wc", [sup.public_addr], token="s3cret", conn_timeout=10
            ) as c:
                await c.req_worker()
                assert (await c.work("a"))["words"] == 1
                # assigned to c: another client id is still refused
                with pytest.raises(rpc.RpcAccessError):
                    async with rpc.open_client(
                        w.public_addr, None, name="intruder", token="s3cret"
                    ):
                        pass


@pytest.mark.trio
async def test_client_tries_supervisors_in_order() -> None:
    with trio.fail_after(LIMIT):
        async with node.open_supervisor("wc", WORKER, min_workers=1, warm_workers=0, **FAST) as sup:
            dead = "ws://127.0.0.1:9"  # discard port: nothing listens
            async with node.open_node_client(
                "wc", [dead, sup.public_addr], conn_timeout=1, conn_retries=1
            ) as c:
                assert c.mach.is1("SuperReady")
                await c.req_worker()
                assert (await c.work("x y z"))["words"] == 3


def test_options_are_checked() -> None:
    with pytest.raises(TypeError, match="non-empty sequence of str"):
        node.Supervisor("x", [])
    with pytest.raises(ValueError, match="max_workers must be >= 1"):
        node.Supervisor("x", ["w"], max_workers=0)
    with pytest.raises(ValueError, match="min_workers must be an int"):
        node.Supervisor("x", ["w"], min_workers=-1)
    sup = node.Supervisor("x", ["w"], min_workers=5, max_workers=3, warm_workers=2)
    assert (sup.min_workers, sup.max_workers, sup.max_client_workers) == (3, 3, 3)
    assert sup.target_size() == 3
    with pytest.raises(TypeError, match="not a str"):
        node.NodeClient("x", "ws://127.0.0.1:1")  # type: ignore[arg-type]
    with pytest.raises(node.NodeError, match="must include WorkerStates"):
        node.Worker("x", {"Foo": am.State()})


def test_example_demo_runs_to_completion() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "node" / "demo.py")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=LIMIT * 2,
    )
    assert out.returncode == 0, out.stderr
    assert "[demo] totals {" in out.stdout
    assert "'alice': 6" in out.stdout and "'bob': 6" in out.stdout
    assert out.stdout.count("got worker nw-wordcount-") == 2


def test_example_supervisor_and_client_processes(tmp_path: Path) -> None:
    sup = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "node" / "supervisor.py"), "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert sup.stdout is not None
        line = sup.stdout.readline()
        assert line.startswith("[supervisor] listening on ws://127.0.0.1:"), line
        addr = line.split()[-1]
        out = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "node" / "client.py"), addr, "a b c"],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=LIMIT,
        )
        assert out.returncode == 0, out.stderr
        assert "'a b c': 3 words" in out.stdout
    finally:
        sup.send_signal(signal.SIGINT)
        try:
            sup.wait(10)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait(10)
        if sup.stdout is not None:
            sup.stdout.close()
