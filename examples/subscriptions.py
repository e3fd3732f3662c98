"""Subscriptions: waiting for states, ticks, args and errors with the ``when*`` family.

Every ``when*`` call registers its subscription at once and returns an
``am.Waiter``, so nothing is missed between subscribing and awaiting. Here
six waiters are awaited by six tasks while the main task mutates the machine:

1. ``when1("Foo")`` - Foo becomes active
2. ``when_not1("Bar")`` - Bar becomes inactive
3. ``when_args("Bar", {"id": 123})`` - Bar activated with these args
4. ``when_time(["Foo", "Bar"], [1, 3])`` - Foo's tick >= 1 and Bar's >= 3
5. ``when_ticks("Foo", 2)`` - Foo ticked twice more (here: activated, deactivated)
6. ``when_err()`` - the Exception state is active

The machine logs at LogLevel.OPS, so the ``[when:new]`` / ``[when:match]``
lifecycle of each subscription shows up among the state changes.

Run: python examples/subscriptions.py
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import trio

import asyncmachine_trio as am

STEP = 0.001  # a pause between mutations, so the waiting tasks report in order


async def main() -> list[str]:
    """Subscribe, mutate, and return the log lines (messages ``1 - ..`` to ``6 - ..``)."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line)

    def logger(level: am.LogLevel, line: str) -> None:
        # state changes and the subscriptions' lifecycle, not the queue's
        if level <= am.LogLevel.CHANGES or line.startswith("[when"):
            say(line)

    mach = am.Machine(
        {"Foo": am.State(), "Bar": am.State()},
        id="source",
        log_level=am.LogLevel.OPS,
        logger=logger,
        log_args_names=["id"],
        dont_log_id=True,
        report_errors=False,  # the error below is on purpose, and awaited with when_err
    )

    async def report(waiter: am.Waiter, message: str) -> None:
        await waiter
        say(message)

    async with anyio.create_task_group() as tg:
        mach.add1("Bar")  # so that when_not1("Bar") has something to wait for
        tg.start_soon(report, mach.when1("Foo"), "1 - Foo activated")
        tg.start_soon(report, mach.when_not1("Bar"), "2 - Bar deactivated")
        tg.start_soon(report, mach.when_args("Bar", {"id": 123}), "3 - Bar activated with id=123")
        tg.start_soon(
            report, mach.when_time(["Foo", "Bar"], [1, 3]), "4 - Foo tick >= 1 and Bar tick >= 3"
        )
        tg.start_soon(report, mach.when_ticks("Foo", 2), "5 - Foo ticked 2 times since subscribing")
        tg.start_soon(report, mach.when_err(), "6 - Error")

        steps: list[Callable[[], object]] = [
            lambda: mach.add1("Foo"),
            lambda: mach.remove1("Bar"),
            lambda: mach.remove1("Foo"),
            lambda: mach.add1("Bar", {"id": 123}),
            lambda: mach.add_err(ValueError("boom")),
        ]
        for mutate in steps:
            await anyio.sleep(STEP)
            mutate()
    say(f"done: {mach.string_all()}")
    return lines


if __name__ == "__main__":
    trio.run(main)
