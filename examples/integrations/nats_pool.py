"""A pool of 3 worker processes sharing requests through a NATS queue group.

    python examples/integrations/nats_pool.py

Each worker (``nats_worker.py --queue pool``) subscribes ``jobs`` in the queue
group ``pool``: NATS hands each request sent to ``jobs`` to one of them. The
same layout spans hosts: point every worker at the same NATS cluster.
"""

from __future__ import annotations

import asyncio
import subprocess

from nats_remote import spawn_worker, wait_ready

from asyncmachine_trio.integrations import nats as amnats
from asyncmachine_trio.integrations.nats_server import NatsServer

WORKERS = ("w1", "w2", "w3")
JOBS = 30


async def drive(url: str, say: list[str]) -> dict[str, int]:
    nc = await amnats.connect(url)
    try:
        for n in range(JOBS):
            # "" = any machine of the topic: the queue group picks one
            await amnats.add(nc, "jobs", "", ["Job"], {"n": n})
        counts = {}
        for w in WORKERS:
            got = await amnats.get(nc, "jobs", w, time=["Job"])
            counts[w] = (got.time[0] + 1) // 2  # an active Multi state: 2 ticks per re-add
            await amnats.add(nc, "jobs", w, ["Stop"])
        say.append(f"{JOBS} jobs spread over the pool: {counts}")
        return counts
    finally:
        await nc.drain()


def main() -> list[str]:
    say: list[str] = []
    with NatsServer() as srv:
        procs: list[subprocess.Popen[str]] = []
        counts: dict[str, int] = {}
        try:
            # two workers on trio, one on asyncio: the wire does not care
            procs = [
                spawn_worker(srv.url, "jobs", w, queue="pool", on_asyncio=w == "w3")
                for w in WORKERS
            ]
            for proc in procs:
                wait_ready(proc)
            counts = asyncio.run(drive(srv.url, say))
            for proc in procs:
                proc.communicate(timeout=10)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    say.append(f"total {sum(counts.values())}, every worker busy: {all(counts.values())}")
    for line in say:
        print(line)
    return say


if __name__ == "__main__":
    main()
