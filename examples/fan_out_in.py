"""Fan out, fan in: 15 task states, at most 3 running, an Auto state collects them.

``am.helpers.fan_out_in(mach, "Task", 15, 3, start_task)`` adds the states
``Task0..Task14`` (copies of ``Task``) and ``Task0Done..Task14Done``, and makes
``TaskDone`` an Auto state requiring every ``Task<i>Done``. Adding ``Task``
starts 3 random tasks; each finished task (its ``Done`` state added) starts
the next one, so never more than 3 run at once. When the last one is done,
``TaskDone`` activates by itself (the fan-in) and ``Ready`` follows.

Each task's work is forked for its state, so removing ``Task3`` would cancel
the work of task 3.

Run: python examples/fan_out_in.py
"""

from __future__ import annotations

import random
from collections.abc import Callable

import anyio
import trio

import asyncmachine_trio as am
from asyncmachine_trio import helpers

TASKS = 15
CONCURRENCY = 3
WORK = 0.2  # seconds per task

Say = Callable[[str], None]


class FanStates(am.States):
    Start = am.State()
    Task = am.State(require=("Start",))
    TaskDone = am.State()
    Ready = am.State(auto=True, require=("TaskDone",))


async def main(say: Say = print, seed: int = 1, work: float = WORK) -> list[str]:
    """Run the 15 tasks; return what happened (the peak concurrency last but one)."""
    lines: list[str] = []
    peak = 0

    def log(line: str) -> None:
        lines.append(line)
        say(line)

    async with am.open_machine(FanStates, id="fan") as mach:

        def start_task(i: int, task: str, task_done: str) -> None:
            async def run() -> None:
                nonlocal peak
                running = mach.active_states(fan.group_tasks)
                peak = max(peak, len(running))
                log(f"{task} started, running: {len(running)}")
                await anyio.sleep(work)
                mach.add1(task_done)

            mach.fork(task, run)

        fan = helpers.fan_out_in(
            mach, "Task", TASKS, CONCURRENCY, start_task, rng=random.Random(seed)
        )
        started = anyio.current_time()
        mach.add([FanStates.Start, FanStates.Task])
        # fails early (ExceptionStateError) if a task raises
        await helpers.wait_for_err_all(mach, mach.when1(FanStates.Ready), timeout=TASKS * work * 2)
        elapsed = anyio.current_time() - started
        log(f"peak concurrency: {peak}")
        done = len(mach.active_states(fan.group_done))
        ready = mach.is_([FanStates.TaskDone, FanStates.Ready])
        log(f"done: {done} tasks in {elapsed / work:.0f} rounds of work, fanned in: {ready}")
    return lines


if __name__ == "__main__":
    trio.run(main)
