"""CLI: command-line flags that drive a state machine (click).

``--foo-1`` and ``--bar-2`` add the states ``Foo1`` / ``Bar2``; both add
``Start`` and remove each other, so passing both leaves only the last one
added — the schema, not ``if`` statements, decides what a combination of flags
means. ``Start`` is an async state: it "works" for ``--duration`` seconds,
then removes itself, and the program exits when ``Start`` ends (or at once on
Ctrl+C, which cancels ``Start``'s task).

Needs the ``examples`` extra (click).

Run: python examples/cli.py --foo-1 --duration 0.5
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import click
import trio

import asyncmachine_trio as am

Say = Callable[[str], None]


class CliStates(am.States):
    Start = am.State()
    Foo1 = am.State(add=(am.START,), remove=("Bar2",))
    Bar2 = am.State(add=(am.START,), remove=("Foo1",))


S = CliStates


class Handlers:
    def __init__(self, duration: float, say: Say) -> None:
        self.duration = duration
        self.say = say

    async def start_state(self, e: am.Event) -> None:
        called = " ".join(e.mutation.called)
        self.say(f"starting for {called}, {self.duration}s")
        await anyio.sleep(self.duration)
        self.say("start done")
        e.machine.remove1(S.Start)


async def run(flags: list[str], duration: float, say: Say = print) -> str:
    """Add the states of ``flags`` in order; return the machine once Start ended."""
    async with am.open_machine(S, id="cli", handlers=Handlers(duration, say)) as mach:
        for state in flags:
            mach.add1(state)
        with anyio.fail_after(duration + 10):
            await mach.when_not1(S.Start)
        return mach.string()


@click.command()
@click.option("--foo-1", "foo1", is_flag=True, help="Run the Foo1 operation.")
@click.option("--bar-2", "bar2", is_flag=True, help="Run the Bar2 operation.")
@click.option("-d", "--duration", default=3.0, show_default=True, help="Seconds of work.")
def main(foo1: bool, bar2: bool, duration: float) -> None:
    """Drive a state machine from flags (asyncmachine-trio example)."""
    flags = [s for s, on in ((S.Foo1, foo1), (S.Bar2, bar2)) if on]
    if not flags:
        raise click.UsageError("pass --foo-1 or --bar-2")
    final = trio.run(run, flags, duration)
    click.echo(f"exit with {final}")


if __name__ == "__main__":
    main()
