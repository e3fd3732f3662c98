"""A node client: get a worker from a supervisor and count the words of some texts.

Run: python examples/node/client.py ws://127.0.0.1:7541 "first text" "second text" ...
"""

from __future__ import annotations

import sys

import trio

from asyncmachine_trio import node


async def main(addr: str, texts: list[str]) -> None:
    async with node.open_node_client("wordcount", [addr]) as client:
        await client.req_worker()
        print(f"[client] got worker {client.worker_id}", flush=True)
        for text in texts:
            out = await client.work(text, timeout=10)
            print(f"[client] {text!r}: {out['words']} words (pid {out['pid']})", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2:] or ["hello node world"])
