"""Basic: relations, an async state, a sync state, negotiation, waiting for the end.

- ``Start`` adds ``Foo``; ``Foo`` and ``Bar`` require ``Start``.
- ``Foo`` is an async state: its ``async def foo_state`` handler is a task
  scoped to ``Foo`` (cancelled if ``Foo`` ends first); it "works" and then adds
  ``Bar`` with a result.
- ``Bar`` is a sync state; its negotiation handler ``bar_enter`` refuses a
  ``Bar`` without a result, and ``Bar`` removes ``Foo``.
- ``Done`` is Auto: it activates as soon as ``Bar`` is active.
- ``main`` waits for ``Done`` with a timeout.

Run: python examples/basic.py
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import trio

import asyncmachine_trio as am

WORK = 1.0  # seconds of fake work in Foo

Say = Callable[[str], None]


class BasicStates(am.States):
    Start = am.State(add=("Foo",))
    Foo = am.State(require=("Start",))
    Bar = am.State(require=("Start",), remove=("Foo",))
    Done = am.State(auto=True, require=("Bar",))


S = BasicStates


class Handlers:
    def __init__(self, say: Say, work: float = WORK) -> None:
        self.say = say
        self.work = work

    async def foo_state(self, e: am.Event) -> None:
        """Async state: the work runs as a task scoped to Foo."""
        self.say("Foo: working")
        await anyio.sleep(self.work)
        e.machine.add1(S.Bar, {"result": 42})

    def bar_enter(self, e: am.Event) -> bool:
        """Negotiation: no result, no Bar."""
        return "result" in e.args

    def bar_state(self, e: am.Event) -> None:
        """Sync state: runs inside the transition."""
        self.say(f"Bar: result {e.args['result']}")


async def main(say: Say = print, work: float = WORK) -> list[str]:
    """Run the machine to Done; return what it said."""
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        say(line)

    async with am.open_machine(S, id="basic", handlers=Handlers(log, work)) as mach:
        log(f"add Bar without a result: {mach.add1(S.Bar)}")
        mach.add1(S.Start)
        with anyio.fail_after(10 * work + 1):
            await mach.when1(S.Done)
        log(f"done: {mach}")
    return lines


if __name__ == "__main__":
    trio.run(main)
