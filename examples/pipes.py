"""Pipes: states of a "source" machine mirrored on a "destination" machine.

A pipe is a final handler bound on the source (``foo_state`` / ``foo_end``)
that adds or removes a state on the destination. The source transition never
waits for it: the destination's mutation runs a moment later, in a task, and
the destination could still reject it. Piped here:

- ``Ready`` with ``bind_ready`` (added and removed),
- ``Exception`` with ``bind_err`` (the error itself travels along),
- ``Custom`` with ``bind``, and ``Foo`` + ``Bar`` with ``bind_many``.

Both machines log their state changes and the pipes they take part in
(``[pipe-out:add] Foo to destination`` / ``[pipe-in:add] Foo from source``).

Run: python examples/pipes.py
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.abc
import trio

import asyncmachine_trio as am
from asyncmachine_trio import helpers as amhelp
from asyncmachine_trio.states import pipes


class PipedStates(am.States):
    """The schema of both machines."""

    Ready = am.State()
    Foo = am.State()
    Bar = am.State()
    Custom = am.State()
    Healthcheck = am.State(multi=True)


S = PipedStates


async def main() -> list[str]:
    """Pipe states from "source" to "destination"; return the log lines."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line)

    def logger_for(name: str) -> Callable[[am.LogLevel, str], None]:
        def logger(level: am.LogLevel, line: str) -> None:
            # state changes, errors and pipes; not the queue's bookkeeping
            if level <= am.LogLevel.CHANGES or line.startswith("[pipe"):
                say(f"{name:>11} {line}")

        return logger

    def machine(name: str, tg: anyio.abc.TaskGroup) -> am.Machine:
        mach = am.Machine(
            S,
            id=name,
            log_level=am.LogLevel.OPS,
            logger=logger_for(name),
            dont_log_id=True,
            log_stack_trace=False,
            handlers=am.ExceptionHandler(),
        )
        mach.start(tg)
        return mach

    async with anyio.create_task_group() as tg:
        source = machine("source", tg)
        destination = machine("destination", tg)

        # pipe the conventional states, one custom state and two more at once
        pipes.bind_ready(source, destination)
        pipes.bind_err(source, destination)
        pipes.bind(source, destination, S.Custom)
        pipes.bind_many(source, destination, [S.Foo, S.Bar])

        source.add1(S.Ready)
        source.add([S.Foo, S.Bar])
        source.add1(S.Custom)
        # pipes are asynchronous: wait for the destination
        await amhelp.wait_for_all(destination.when([S.Foo, S.Bar, S.Ready, S.Custom]), timeout=1)

        source.remove1(S.Foo)
        source.add_err(ValueError("disk full"))
        await amhelp.wait_for_all(destination.when_not1(S.Foo), destination.when_err(), timeout=1)
        say(f"destination error: {destination.err!r}")
        say(f"done: source {source} destination {destination}")

        source.dispose()
        destination.dispose()
    return lines


if __name__ == "__main__":
    trio.run(main)
