"""A node supervisor with a pool of word-counting workers (``examples/node/worker.py``).

Run: python examples/node/supervisor.py [PORT]   (default 7541; 0 = any free port)
Then, in two more terminals: python examples/node/client.py ws://127.0.0.1:7541 "some text"
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from asyncmachine_trio import node

WORKER = [sys.executable, str(Path(__file__).with_name("worker.py"))]


async def main(port: int = 7541) -> None:
    async with node.open_supervisor(
        "wordcount",
        WORKER,
        public_addr=f"ws://127.0.0.1:{port}",
        min_workers=2,
        warm_workers=1,
        max_workers=4,
        heartbeat=5.0,
    ) as sup:
        print(f"[supervisor] listening on {sup.public_addr}", flush=True)
        print(f"[supervisor] {len(sup.workers())} workers: {sup.mach}", flush=True)
        while True:
            await trio.sleep(5)
            busy = len(sup.workers("busy"))
            print(f"[supervisor] {len(sup.workers())} workers, {busy} busy", flush=True)


if __name__ == "__main__":
    try:
        trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 7541)
    except KeyboardInterrupt:
        pass
