"""The node example in one command: a supervisor, its pool, and two clients sharing it.

Run: python examples/node/demo.py
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import trio

from asyncmachine_trio import node

WORKER = [sys.executable, str(Path(__file__).with_name("worker.py"))]
TEXTS = ["the quick brown fox", "jumps over", "the lazy dog", "asyncmachine on trio"]


async def client(name: str, addr: str, texts: list[str], say: Callable[[str], None]) -> int:
    """One client: a worker of its own, its texts counted there; returns the total."""
    total = 0
    async with node.open_node_client("wordcount", [addr], name=name) as c:
        await c.req_worker()
        say(f"[{name}] got worker {c.worker_id}")
        for text in texts:
            out = await c.work(text, timeout=10)
            total += out["words"]
            say(f"[{name}] {text!r}: {out['words']} words")
    return total


async def main(say: Callable[[str], None] = print) -> dict[str, int]:
    """Start the pool, run two clients at once, and return each client's word total."""
    totals: dict[str, int] = {}
    async with node.open_supervisor(
        "wordcount", WORKER, min_workers=2, warm_workers=1, max_workers=4, heartbeat=0
    ) as sup:
        say(f"[supervisor] pool ready: {len(sup.workers('ready'))} workers at {sup.public_addr}")

        async def run(name: str, texts: list[str]) -> None:
            totals[name] = await client(name, sup.public_addr, texts, say)

        async with trio.open_nursery() as n:
            n.start_soon(run, "alice", TEXTS[:2])
            n.start_soon(run, "bob", TEXTS[2:])
    say(f"[demo] totals {totals}")
    return totals


if __name__ == "__main__":
    trio.run(main)
