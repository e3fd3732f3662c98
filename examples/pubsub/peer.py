"""One peer of the pubsub example: exposes one machine, prints the others' states as they change.

Run three (see run.py, which does it in one command):

    python examples/pubsub/peer.py --name alice
    python examples/pubsub/peer.py --name bob --bootstrap <alice's address>
    python examples/pubsub/peer.py --name carol --bootstrap <alice's address>

The first line a peer prints is ``ADDR <multiaddr>``: give it to the others.
Every second the peer moves its machine to the next of Idle / Working / Done;
whenever a mirror of another peer's machine changes, it prints
``[<name>] <machine> <states>``. It stops changing 2 seconds before
``--duration`` ends, and prints the final clocks it holds.

With ``--go-stdin`` (run.py uses it) the peer waits, after printing its
address, for a line ``STOP <epoch seconds>`` on stdin: the moment all peers
stop changing their machines, sent once every peer has started. It then waits
until it holds ``--peers`` mirrors whose clocks stay unchanged for 1.5 s (at
most 30 s) before printing the final clocks.
"""

from __future__ import annotations

import argparse
import sys
import time

import trio

import asyncmachine_trio as am
from asyncmachine_trio import pubsub


class Job(am.States):
    Idle = am.State(remove=("Working", "Done"))
    Working = am.State(remove=("Idle", "Done"))
    Done = am.State(remove=("Idle", "Working"))


CYCLE = [Job.Idle, Job.Working, Job.Done]


async def main(
    name: str, bootstrap: list[str], duration: float, go_stdin: bool = False, peers: int = 0
) -> None:
    mach = am.Machine(Job, id=name)
    mach.add1(Job.Idle)
    config = pubsub.TopicConfig(multiplayer=0.5, connections_to_ready=1)
    async with pubsub.open_topic(
        "example", expose=[mach], bootstrap=bootstrap, config=config
    ) as topic:
        print("ADDR", topic.addrs[0], flush=True)
        seen: dict[str, str] = {}

        def show() -> None:
            for m in topic.list_machines():
                now = m.string()
                if seen.get(m.remote_id) != now:
                    seen[m.remote_id] = now
                    print(f"[{name}] {m.remote_id} {now}", flush=True)

        if go_stdin:
            # the same wall-clock moment for every peer, sent once all have started
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            stop = float(line.split()[1])
            end = stop + 30.0
        else:
            stop = time.time() + max(duration - 2.0, duration * 2 / 3)
            end = time.time() + duration
        step = 0
        quiet_since = 0.0
        last: list[tuple[str, list[int]]] = []
        while time.time() < end:
            show()
            await trio.sleep(0.1)
            step += 1
            if time.time() < stop:
                if step % 10 == 0:
                    mach.add1(CYCLE[(step // 10) % 3])
                continue
            if not go_stdin:
                continue
            # stopped: wait until every peer's mirror holds still for 1.5 s
            now_clocks = sorted((m.remote_id, list(m.time())) for m in topic.list_machines())
            if now_clocks != last or len(now_clocks) < peers:
                last, quiet_since = now_clocks, time.time()
            elif time.time() - quiet_since >= 1.5:
                break
        show()
        # the final clocks: mine and my mirrors of the others
        print(f"[{name}] final {name} {list(mach.time())}", flush=True)
        for m in topic.list_machines():
            print(f"[{name}] final {m.remote_id} {list(m.time())}", flush=True)


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--bootstrap", action="append", default=[], help="a peer's address")
    p.add_argument("--duration", type=float, default=30.0, help="seconds to run")
    p.add_argument(
        "--go-stdin", action="store_true", help="read 'STOP <epoch s>' from stdin (run.py)"
    )
    p.add_argument("--peers", type=int, default=0, help="mirrors to wait for after the stop")
    args = p.parse_args(argv)
    trio.run(main, args.name, args.bootstrap, args.duration, args.go_stdin, args.peers)


if __name__ == "__main__":
    cli(sys.argv[1:])
