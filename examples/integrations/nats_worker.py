"""A machine exposed on NATS: run it, then drive it from another process.

    python examples/integrations/nats_worker.py nats://127.0.0.1:4222 demo --id worker1

It serves ``demo`` and ``demo.worker1`` (``--queue pool`` joins a queue group
so several workers share requests sent to ``demo``) and exits once ``Stop``
is added, remotely. Try it with the ``nats`` CLI:

    nats req demo.worker1 '{"kind":"am_req_mutation","add":["Job"],"args":{"n":1}}'
    nats req demo.worker1 '{"kind":"am_req_getter","clocks":["Job"]}'
    nats req demo.worker1 '{"kind":"am_req_mutation","add":["Stop"]}'

Runs on trio (nats-py inside trio-asyncio) or, with ``--asyncio``, on asyncio.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator

import anyio

import asyncmachine_trio as am
from asyncmachine_trio.integrations import nats as amnats
from asyncmachine_trio.states import BasicStates


class WorkerStates(BasicStates):
    Job = am.State(multi=True)
    Stop = am.State()


class Handlers:
    def job_state(self, e: am.Event) -> None:
        print(f"[{e.machine.id}] job {e.args.get('n')}", flush=True)


@contextlib.asynccontextmanager
async def nats_loop() -> AsyncIterator[None]:
    """On trio, nats-py (asyncio) runs in a trio-asyncio loop."""
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio_asyncio

        async with trio_asyncio.open_loop():
            yield
    else:
        yield


async def main(url: str, topic: str, mach_id: str, queue: str | None) -> None:
    async with nats_loop(), am.open_machine(WorkerStates, id=mach_id, handlers=Handlers()) as mach:
        nc = await amnats.connect(url, machines=[mach], reconnect_time_wait=0.2)
        try:
            async with amnats.expose(mach, nc, topic, queue=queue):
                print(f"[{mach.id}] ready on {topic} and {topic}.{mach.id}", flush=True)
                await mach.when1(WorkerStates.Stop)
                print(f"[{mach.id}] stopping after {(mach.tick('Job') + 1) // 2} jobs", flush=True)
        finally:
            await amnats._aio(nc.drain)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("topic")
    parser.add_argument("--id", default="worker1")
    parser.add_argument("--queue", default=None)
    parser.add_argument("--asyncio", action="store_true", help="run on asyncio, not trio")
    opts = parser.parse_args()
    anyio.run(
        main,
        opts.url,
        opts.topic,
        opts.id,
        opts.queue,
        backend="asyncio" if opts.asyncio else "trio",
    )
    sys.exit(0)
