"""Dependency graphs (DAGs) from Require and Auto: dependencies resolve in order.

The graph: A depends on B and C, B depends on D.

- Sync: every node is an Auto state requiring its dependencies, so a single
  mutation activates the whole graph in one transition, dependencies first.
- Async: each node ``X`` has an Auto ``XInit`` state that requires X's
  dependencies and starts the (slow) work for ``X`` as a task; ``X`` is added
  when that task finishes. Independent nodes (C and D) run concurrently and A
  starts only once B and C are done.

Run: python examples/dag_dependency_graph.py
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import trio

import asyncmachine_trio as am

DELAY = 0.01  # fake work per node, in seconds
DEPS = {"A": ("B", "C"), "B": ("D",), "C": (), "D": ()}


def sync_schema() -> dict[str, am.State]:
    schema = {node: am.State(auto=True, require=deps) for node, deps in DEPS.items()}
    return {**schema, "Start": am.State()}


def async_schema() -> dict[str, am.State]:
    schema: dict[str, am.State] = {}
    for node, deps in DEPS.items():
        schema[node + "Init"] = am.State(auto=True, require=deps)
        schema[node] = am.State(require=deps)
    return {**schema, "Start": am.State()}


class NodeHandlers:
    """``a_state`` .. ``d_state`` report each resolved node."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say

    def a_state(self, e: am.Event) -> None:
        self.say("A ok")

    def b_state(self, e: am.Event) -> None:
        self.say("B ok")

    def c_state(self, e: am.Event) -> None:
        self.say("C ok")

    def d_state(self, e: am.Event) -> None:
        self.say("D ok")


class AsyncNodeHandlers(NodeHandlers):
    """``x_init_state`` starts the work for node X, scoped to XInit."""

    async def a_init_state(self, e: am.Event) -> None:
        await self.work(e.machine, "A")

    async def b_init_state(self, e: am.Event) -> None:
        await self.work(e.machine, "B")

    async def c_init_state(self, e: am.Event) -> None:
        await self.work(e.machine, "C")

    async def d_init_state(self, e: am.Event) -> None:
        await self.work(e.machine, "D")

    async def work(self, mach: am.Machine, node: str) -> None:
        await anyio.sleep(DELAY)
        mach.add1(node)


async def main() -> list[str]:
    """Resolve the graph synchronously, then asynchronously; return the log lines."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line)

    def logger(_level: am.LogLevel, line: str) -> None:
        say(line)

    # sync: a plain machine, no event loop needed
    mach = am.Machine(
        sync_schema(),
        id="sync",
        handlers=NodeHandlers(say),
        log_level=am.LogLevel.CHANGES,
        logger=logger,
    )
    mach.add1("Start")  # any change of the clock lets the Auto states try to activate
    say(f"sync done: {mach}")

    # async: the Init handlers are tasks, so the machine needs a task group
    async with am.open_machine(
        async_schema(),
        id="async",
        handlers=AsyncNodeHandlers(say),
        log_level=am.LogLevel.CHANGES,
        logger=logger,
    ) as amach:
        amach.add1("Start")
        with anyio.fail_after(1):
            await amach.when1("A")
        say(f"async done: {amach.string()}")
    return lines


if __name__ == "__main__":
    trio.run(main)
