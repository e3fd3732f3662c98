"""Machine template: a copy-paste starting point for a new machine.

Copy this file and rename things. It has the parts most machines need:

- **A schema** composed from the reusable ``am.states.BasicStates`` (``Start``,
  ``Ready``, error states) plus your own states; a typed ``am.States`` class
  gives editors completion and catches typos.
- **Configuration from the environment** (``TEMPLATE_*`` variables, parsed
  once into a frozen attrs class), plus the library's own switches:
  ``AM_LOG=2`` logs every state change, ``AM_DEBUG=1`` turns off handler
  timeouts for stepping through handlers in a debugger.
- **Negotiation**: ``process_enter`` refuses a request without an id.
- **An async state** (``Loop``) whose work is a task scoped to the state,
  guarded by ``helpers.StateLoop`` against running away, and a **Multi
  state** (``Process``) for requests that can arrive while one is active.
- **Errors as a state**: a request that fails adds ``Exception`` (with the
  error in ``mach.err``), and the loop keeps going.
- **Shutdown**: removing ``Start`` removes ``Ready`` and ``Loop`` (they
  require it), which cancels the loop's task.

Run: python examples/mach_template.py    (TEMPLATE_ROUNDS=5 AM_LOG=2 python ...)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import anyio
import attrs
import trio

import asyncmachine_trio as am
from asyncmachine_trio import helpers
from asyncmachine_trio.states import BasicStates

Say = Callable[[str], None]

# ----- schema


class TemplateStates(BasicStates):
    """Start -> Ready (Auto) -> Loop (Auto); Loop adds Process once per round."""

    Ready = am.State(auto=True, require=(am.START,))
    Loop = am.State(auto=True, require=(am.READY,))
    Process = am.State(multi=True, require=(am.READY,))
    Done = am.State(remove=("Loop",))


S = TemplateStates

# ----- config


@attrs.frozen
class Config:
    """What the environment configures (``TEMPLATE_*`` variables)."""

    name: str = "template"
    rounds: int = 3
    interval: float = 0.5
    fail_on: int = 2  # a round whose request fails (0: none)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read ``TEMPLATE_NAME``, ``_ROUNDS``, ``_INTERVAL`` and ``_FAIL_ON``."""
        env = os.environ if env is None else env
        default = cls()
        try:
            return cls(
                name=env.get("TEMPLATE_NAME", default.name),
                rounds=int(env.get("TEMPLATE_ROUNDS", default.rounds)),
                interval=float(env.get("TEMPLATE_INTERVAL", default.interval)),
                fail_on=int(env.get("TEMPLATE_FAIL_ON", default.fail_on)),
            )
        except ValueError as err:
            raise ValueError(f"bad TEMPLATE_* setting: {err}") from None


# ----- handlers


class Handlers:
    def __init__(self, config: Config, say: Say) -> None:
        self.config = config
        self.say = say
        self.processed: list[int] = []

    def ready_state(self, e: am.Event) -> None:
        self.say(f"{self.config.name}: ready")

    async def loop_state(self, e: am.Event) -> None:
        """The main loop: one request per round; cancelled when Loop ends."""
        mach = e.machine
        guard = helpers.StateLoop(mach, S.Loop, threshold=100, clock=anyio.current_time)
        for i in range(1, self.config.rounds + 1):
            if not guard.ok():
                return  # the guard added an error
            await anyio.sleep(self.config.interval)
            mach.add1(S.Process, {"id": i})
        mach.add1(S.Done)

    def process_enter(self, e: am.Event) -> bool:
        """Negotiation: a request needs an id."""
        return isinstance(e.args.get("id"), int)

    def process_state(self, e: am.Event) -> None:
        request = e.args["id"]
        if request == self.config.fail_on:
            raise RuntimeError(f"request {request} failed")  # becomes the Exception state
        self.processed.append(request)
        self.say(f"{self.config.name}: processed request {request}")

    def exception_state(self, e: am.Event) -> None:
        self.say(f"{self.config.name}: error: {e.machine.err}")
        e.machine.remove1(am.EXCEPTION)  # recover: the loop goes on

    def done_state(self, e: am.Event) -> None:
        self.say(f"{self.config.name}: done, processed {self.processed}")


# ----- main


async def main(config: Config | None = None, say: Say = print) -> list[str]:
    """Start the machine, wait for Done (or an error that stops it), shut down."""
    config = config or Config.from_env()
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        say(line)

    handlers = Handlers(config, log)
    async with am.open_machine(S, id=config.name, handlers=handlers) as mach:
        mach.add1(S.Start)
        with anyio.fail_after(config.rounds * config.interval * 10 + 1):
            await mach.when1(S.Ready)
            log(f"request without an id: {mach.add1(S.Process)}")
            await mach.when1(S.Done)
        mach.remove1(am.START)  # shutdown: Ready and Loop go too
        log(f"stopped: {mach}")
    return lines


if __name__ == "__main__":
    trio.run(main)
