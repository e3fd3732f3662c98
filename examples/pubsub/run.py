"""The pubsub example in one command: three peers in three processes.

Run: python examples/pubsub/run.py [--duration SECONDS]

Starts alice, waits for her address, then starts bob and carol bootstrapped to
her; once all three run, tells them when to stop changing their machines
(``--duration`` seconds later); prints every peer's output, prefixed. Each
peer exposes one machine and prints the others' states as they change.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import trio

PEER = [sys.executable, str(Path(__file__).with_name("peer.py"))]


async def run_peer(
    name: str,
    bootstrap: list[str],
    duration: float,
    go: trio.Event,
    stop_at: list[float],
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one peer process; report its address once it prints it, then send it
    the moment to stop changing its machine once every peer has started."""
    args = [*PEER, "--name", name, "--duration", str(duration), "--go-stdin", "--peers", "2"]
    for b in bootstrap:
        args += ["--bootstrap", b]
    proc = await trio.lowlevel.open_process(args, stdout=subprocess.PIPE, stdin=subprocess.PIPE)

    async def send_stop() -> None:
        await go.wait()
        assert proc.stdin is not None
        await proc.stdin.send_all(f"STOP {stop_at[0]}\n".encode())

    try:
        assert proc.stdout is not None
        buf = b""
        started = False
        async with trio.open_nursery() as n:
            n.start_soon(send_stop)
            async for chunk in proc.stdout:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    line = raw.decode()
                    if line.startswith("ADDR ") and not started:
                        started = True
                        task_status.started(line.split(" ", 1)[1])
                    else:
                        print(f"{name:>5} | {line}", flush=True)
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
    if proc.returncode:
        raise RuntimeError(f"peer {name} exited with {proc.returncode}")


async def main(duration: float) -> None:
    # every peer stops changing its machine at the same moment (counted from when
    # all three have started), waits for the others' last changes, then reports
    go = trio.Event()
    stop_at = [0.0]
    with trio.fail_after(duration + 90):
        async with trio.open_nursery() as n:
            addr = await n.start(run_peer, "alice", [], duration, go, stop_at)
            await n.start(run_peer, "bob", [addr], duration, go, stop_at)
            await n.start(run_peer, "carol", [addr], duration, go, stop_at)
            stop_at[0] = time.time() + duration
            go.set()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=15.0, help="seconds each peer runs")
    trio.run(main, p.parse_args().duration)
