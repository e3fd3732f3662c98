"""The tracer interface: synchronous hooks called in bind order (semantics §11.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .machine import Machine
    from .mutation import Mutation
    from .schema import State
    from .transition import Transition

__all__ = ["LastTxTracer", "Tracer"]


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


class LastTxTracer(Tracer):
    """Keeps the last ended transition in ``last``."""

    def __init__(self) -> None:
        self.last: Transition | None = None

    def transition_end(self, transition: Transition) -> None:
        self.last = transition

    def __repr__(self) -> str:
        return f"<LastTxTracer {self.last!r}>"
