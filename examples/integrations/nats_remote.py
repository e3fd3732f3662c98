"""Drive a machine in another process over NATS: a local nats-server, one worker.

    python examples/integrations/nats_remote.py

Starts nats-server on loopback and ``nats_worker.py`` as a child process, then,
as a plain asyncio client, adds jobs, waits for a state, reads the clock and
stops the worker with a remote ``Stop``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from asyncmachine_trio.integrations import nats as amnats
from asyncmachine_trio.integrations.nats_server import NatsServer

HERE = Path(__file__).resolve().parent


def spawn_worker(
    url: str, topic: str, mach_id: str, queue: str | None = None, *, on_asyncio: bool = False
) -> subprocess.Popen[str]:
    """Start ``nats_worker.py`` (then :func:`wait_ready`)."""
    cmd = [sys.executable, str(HERE / "nats_worker.py"), url, topic, "--id", mach_id]
    if queue:
        cmd += ["--queue", queue]
    if on_asyncio:
        cmd.append("--asyncio")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen[str]) -> None:
    """Block until the worker printed its "ready" line (it is subscribed)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ready" not in line:
        proc.kill()
        raise RuntimeError(f"worker did not start: {line!r}")


async def drive(url: str, say: list[str]) -> None:
    nc = await amnats.connect(url)
    try:
        for n in range(3):
            res = await amnats.add(nc, "demo", "worker1", ["Job"], {"n": n})
            say.append(f"add Job n={n}: {res}")
        await amnats.add(nc, "demo", "worker1", ["Start"])
        resp = await amnats.wait(nc, "demo", "worker1", ["Start"], timeout=5)
        say.append(f"waited for {resp.states} on {resp.mach_id}")
        got = await amnats.get(nc, "demo", "worker1", clocks=["Job", "Start"], id=True)
        say.append(f"clock of {got.id}: {got.clocks}")
        res = await amnats.add(nc, "demo", "worker1", ["Stop"])
        say.append(f"add Stop: {res}")
    finally:
        await nc.drain()


def main() -> list[str]:
    say: list[str] = []
    with NatsServer() as srv:
        worker = spawn_worker(srv.url, "demo", "worker1")
        try:
            wait_ready(worker)
            asyncio.run(drive(srv.url, say))
            out, _ = worker.communicate(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    lines = [*say, *out.splitlines()]
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main()
