"""One peer of the pubsub example: exposes one machine, prints the others' states as they change.

Run three (see run.py, which does it in one command):

    python examples/pubsub/peer.py --name alice
    python examples/pubsub/peer.py --name bob --bootstrap <alice's address>
    python examples/pubsub/peer.py --name carol --bootstrap <alice's address>

The first line a peer prints is ``ADDR <multiaddr>``: give it to the others.
Every second the peer moves its machine to the next of Idle / Working / Done;
whenever a mirror of another peer's machine changes, it prints
``[<name>] <machine> <states>``. It stops changing 2 seconds before
``--duration`` ends (or at ``--stop-at``, the same wall-clock moment for
every peer, then runs 2.5 s more), and prints the final clocks it holds.
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


async def main(name: str, bootstrap: list[str], duration: float, stop_at: float = 0.0) -> None:
    mach = am.Machine(Job, id=name)
    mach.add1(Job.Idle)
    config = pubsub.TopicConfig(multiplayer=0.5, connections_to_ready=1)
    async with pubsub.open_topic(
        "example", expose=[mach], bootstrap=bootstrap, config=config
    ) as topic:
        print("ADDR", topic.addrs[0], flush=True)
        seen: dict[str, str] = {}
        # change the machine until stop_at (wall clock; default: 2 s before the
        # end), then let the others catch up for 2.5 s and print what we hold
        stop = stop_at or time.time() + max(duration - 2.0, duration * 2 / 3)
        end = max(stop + 2.5, time.time() + 2.5) if stop_at else time.time() + duration
        step = 0
        while time.time() < end:
            for m in topic.list_machines():
                now = m.string()
                if seen.get(m.remote_id) != now:
                    seen[m.remote_id] = now
                    print(f"[{name}] {m.remote_id} {now}", flush=True)
            await trio.sleep(0.1)
            step += 1
            if step % 10 == 0 and time.time() < stop:
                mach.add1(CYCLE[(step // 10) % 3])
        # the final clocks: mine and my mirrors of the others
        print(f"[{name}] final {name} {list(mach.time())}", flush=True)
        for m in topic.list_machines():
            print(f"[{name}] final {m.remote_id} {list(m.time())}", flush=True)


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--bootstrap", action="append", default=[], help="a peer's address")
    p.add_argument("--duration", type=float, default=30.0, help="seconds to run")
    p.add_argument("--stop-at", type=float, default=0.0, help="stop changing at (epoch s)")
    args = p.parse_args(argv)
    trio.run(main, args.name, args.bootstrap, args.duration, args.stop_at)


if __name__ == "__main__":
    cli(sys.argv[1:])
