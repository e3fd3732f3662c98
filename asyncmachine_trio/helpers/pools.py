"""Pools and fan-out / fan-in (help.go Pool, x_help.go FanOutIn)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import anyio
import anyio.abc
import attrs

from .. import Ctx, Event, Machine, State, StateUnknownError
from ..machine.excgroup import unwrap_single

T = TypeVar("T")
R = TypeVar("R")


class TaskPool:
    """A task group running at most ``limit`` tasks at once (help.go ``Pool``, alitto/pond)."""

    def __init__(self, task_group: anyio.abc.TaskGroup, limit: int, ctx: Ctx | None = None) -> None:
        if limit < 1:
            raise ValueError(f"pool limit must be >= 1, got {limit}")
        self.task_group = task_group
        self.limiter: anyio.CapacityLimiter = anyio.CapacityLimiter(limit)
        self.ctx = ctx

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Queue ``fn(*args)``; it starts when a slot is free (skipped once ``ctx`` ended)."""
        self.task_group.start_soon(self._run, fn, args)

    async def _run(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        scope: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if self.ctx is None else self.ctx.cancel_scope()
        )
        with scope:
            async with self.limiter:
                await fn(*args)


@contextlib.asynccontextmanager
async def open_pool(limit: int, ctx: Ctx | None = None) -> AsyncIterator[TaskPool]:
    """``async with open_pool(n) as pool:``; the block waits for every task on exit."""
    if limit < 1:
        raise ValueError(f"pool limit must be >= 1, got {limit}")
    with unwrap_single():  # one failure leaves as itself (semantics §9.3)
        async with anyio.create_task_group() as tg:
            yield TaskPool(tg, limit, ctx)


async def fan_out(fn: Callable[[T], Awaitable[R]], items: Iterable[T], *, limit: int) -> list[R]:
    """Run ``fn(item)`` for every item, at most ``limit`` at once; results in item order."""
    todo = list(items)
    results: list[Any] = [None] * len(todo)

    async def one(i: int, item: T) -> None:
        results[i] = await fn(item)

    async with open_pool(limit) as pool:
        for i, item in enumerate(todo):
            pool.start_soon(one, i, item)
    return results


@attrs.define
class FanHandlers:
    """What :func:`fan_out_in` created; change ``concurrency`` at any time."""

    concurrency: int
    group_tasks: list[str]
    group_done: list[str]
    binding_id: str = ""


class _FanBinding:
    """The bound handler object: only ``any_state`` (no other attribute parses as a handler)."""

    def __init__(
        self,
        mach: Machine,
        name: str,
        fan: FanHandlers,
        fn: Callable[[int, str, str], Any],
        rng: random.Random,
    ) -> None:
        self.mach = mach
        self.name = name
        self.fan = fan
        self.fn = fn
        self.rng = rng
        self.tasks = {s: i for i, s in enumerate(fan.group_tasks)}
        self.dones = set(fan.group_done)

    def any_state(self, e: Event) -> None:
        mach, fan = self.mach, self.fan
        for state in e.mutation.called:
            i = self.tasks.get(state)
            if i is not None:
                self.fn(i, state, fan.group_done[i])
            elif state in self.dones:
                mach.add1(self.name)
            elif state == self.name:
                remaining = [
                    t
                    for t, d in zip(fan.group_tasks, fan.group_done, strict=True)
                    if not mach.any1(t, d)
                ]
                running = len(mach.active_states(fan.group_tasks))
                while running < fan.concurrency and remaining:
                    mach.add1(remaining.pop(self.rng.randrange(len(remaining))))
                    running += 1


def fan_out_in(
    mach: Machine,
    name: str,
    total: int,
    concurrency: int,
    fn: Callable[[int, str, str], Any],
    *,
    rng: random.Random | None = None,
) -> FanHandlers:
    """Fan out ``total`` task states and fan in to ``<name>Done`` (x_help.go ``FanOutIn``).

    Adds states ``<name>0..N-1`` (copies of ``<name>``) and ``<name><i>Done``
    (removing its task), makes ``<name>Done`` Auto, requiring every task's
    Done and removing ``<name>``. Adding ``<name>`` starts up to
    ``concurrency`` random remaining tasks, calling ``fn(i, task, task_done)``
    from the handler as each starts (``fn`` typically forks the work and adds
    ``task_done``); each finished task starts the next. Unlike the reference,
    the fan-in state's own activation does not re-add ``<name>``.
    """
    done_name = name + "Done"
    if not mach.has([name, done_name]):
        raise StateUnknownError(f"missing states: {name} or {done_name}")
    schema = mach.schema
    base = schema[name]
    tasks = [f"{name}{i}" for i in range(total)]
    dones = [f"{t}Done" for t in tasks]
    for t, d in zip(tasks, dones, strict=True):
        schema[t] = base
        schema[d] = State(remove=(t,))
    fan_in = schema[done_name].extend(State(require=tuple(dones), remove=(name,)))
    schema[done_name] = attrs.evolve(fan_in, auto=True)
    mach.set_schema(schema, [*mach.state_names, *tasks, *dones])
    fan = FanHandlers(concurrency, tasks, dones)
    binding = _FanBinding(mach, name, fan, fn, rng or random.Random())
    fan.binding_id = mach.bind_handlers(binding, id=f"fan-{name}")
    return fan
