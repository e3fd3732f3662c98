"""The tracer interface: synchronous hooks called in bind order (semantics §11.2)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._mypyc import mypyc_attr

if TYPE_CHECKING:
    from .machine import Machine
    from .mutation import Mutation
    from .schema import State
    from .transition import Transition

__all__ = ["LastTxTracer", "MachineHook", "Tracer", "add_machine_hook", "remove_machine_hook"]

#: ``hook(machine, parent)``: called at the end of every ``Machine()`` constructor
#: (``parent`` is the parent machine when one was given as an object)
MachineHook = Callable[["Machine", "Machine | None"], object]
_machine_hooks: list[MachineHook] = []


def add_machine_hook(hook: MachineHook) -> None:
    """Call ``hook(machine, parent)`` for every machine constructed from now on.

    Used by telemetry to attach exporters without code changes (``AM_DBG_ADDR``,
    ``AM_OTEL_TRACE``...). Hooks run in the constructor, in the order added; an
    exception propagates to the constructor.
    """
    if hook not in _machine_hooks:
        _machine_hooks.append(hook)


def remove_machine_hook(hook: MachineHook) -> None:
    """Undo :func:`add_machine_hook` (no error when not added)."""
    if hook in _machine_hooks:
        _machine_hooks.remove(hook)


#: set by ``telemetry.otel``: ``hook(event, args) -> args`` adds trace context to
#: the args of a mutation an rpc client sends on behalf of ``event``'s transition
rpc_args_hook: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None

_ENV_SWITCHES = ("AM_DBG_ADDR", "AM_OTEL_TRACE", "AM_OTEL_LOG", "AM_PROM_PUSH_URL")


def _env_machine_hook(machine: Machine, parent: Machine | None) -> None:
    from ..telemetry.env import machine_created

    machine_created(machine, parent)


def env_boot() -> None:
    """Register the telemetry environment opt-in when one of its variables is set.

    Called once at ``import asyncmachine_trio``: with none of ``AM_DBG_ADDR``,
    ``AM_OTEL_TRACE``, ``AM_OTEL_LOG``, ``AM_PROM_PUSH_URL`` set (or with
    ``AM_TEST_RUNNER`` set) nothing is registered and nothing is imported.
    """
    if os.environ.get("AM_TEST_RUNNER"):
        return
    if any(os.environ.get(k) for k in _ENV_SWITCHES):
        add_machine_hook(_env_machine_hook)


@mypyc_attr(allow_interpreted_subclasses=True)
class Tracer:
    """Base tracer: every hook is a no-op; override what you need.

    Hooks run synchronously on the machine's loop, so they must be quick; an
    exception raised by a hook propagates to the mutation call.
    """

    def tracer_id(self) -> str:
        """Identity used by ``Machine.tracer_detach``."""
        return f"{type(self).__name__}-{id(self):x}"

    def inheritable(self) -> bool:
        """Whether submachines should copy this tracer (used by upper layers)."""
        return False

    def machine_init(self, machine: Machine) -> None:
        """The machine was constructed with this tracer in ``tracers=``."""

    def new_submachine(self, parent: Machine, machine: Machine) -> None:
        """``machine`` was constructed with ``parent=`` a machine having this tracer."""

    def mutation_queued(self, machine: Machine, mutation: Mutation) -> None:
        """A mutation was appended or prepended (not evals, not de-duplicated)."""

    def transition_init(self, transition: Transition) -> None:
        """Relations resolved, before any handler."""

    def transition_start(self, transition: Transition) -> None:
        """Before the negotiation phase."""

    def handler_start(self, transition: Transition, binding_id: str, name: str) -> None:
        """Before a handler call."""

    def handler_end(self, transition: Transition, binding_id: str, name: str) -> None:
        """After a handler call (also after an exception or a timeout)."""

    def transition_finals(self, transition: Transition) -> None:
        """New states applied, before final handlers (accepted non-checks only)."""

    def transition_end(self, transition: Transition) -> None:
        """Every transition, canceled ones and checks included."""

    def queue_end(self, machine: Machine) -> None:
        """A drain of the queue finished."""

    def schema_change(self, machine: Machine, old_schema: dict[str, State]) -> None:
        """After ``set_schema``."""

    def verify_states(self, machine: Machine) -> None:
        """After a successful ``verify_states``."""

    def machine_dispose(self, machine_id: str) -> None:
        """During disposal."""

    def internal_error(self, machine: Machine, err: Exception) -> None:
        """An internal error (a handler timeout) was recorded."""


@mypyc_attr(allow_interpreted_subclasses=True)
class LastTxTracer(Tracer):
    """Keeps the last ended transition in ``last``."""

    def __init__(self) -> None:
        self.last: Transition | None = None

    def transition_end(self, transition: Transition) -> None:
        self.last = transition

    def __repr__(self) -> str:
        return f"<LastTxTracer {self.last!r}>"
