"""Transitions and events: the lifecycle of one mutation (semantics §5, 6.2-6.3).

A transition resolves its targets, runs the negotiation handlers, applies the
new states, runs the final handlers and reports what changed. The phase order
and every cancel / revert rule follow semantics §5.2 and 5.6 to the letter.
"""

from __future__ import annotations

import enum
import os
import time as _time
import types
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from ._mypyc import mypyc_attr
from .clock import Time, TimeIndex
from .handlers import UNTIMED
from .logging import L_CHANGES, L_DECISIONS, L_EVERYTHING, L_OPS
from .mutation import ADD as _ADD
from .mutation import CANCELED, EXECUTED, Mutation, MutationType, Result
from .mutation import REMOVE as _REMOVE
from .schema import ANY, HEALTHCHECK, HEARTBEAT

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["Event", "Step", "StepType", "Transition"]


# successor links per plan and mutation type (see Plan; the bound per schema is
# resolver.SUCC_TOTAL_MAX)
SUCC_MAX = 32


class Plan:
    """A memoised transition plan: what ``_setup`` decided for one key (schema,
    type, check, auto, called, active list), plus what ``run_plain`` precomputes.
    Shared by the machines of a schema, never mutated but for the ``neg_*`` memo
    and the successor links.

    ``target_list`` / ``target_set`` become the machine's active list and set
    after a transition applied from the plan (shared, never mutated in place).
    ``succ_add`` / ``succ_remove`` / ``succ_set`` link to the plans of the next
    plain mutations (keyed by the called state, or the tuple of called states)
    made while the active list *is* ``target_list``: the next plan is found
    without a key over all active states. Links are bounded (``SUCC_MAX`` per
    dict, ``resolver.SUCC_TOTAL_MAX`` per schema) and dropped with the plan store
    (``dead``: no new links).
    """

    __slots__ = (
        "accepted",
        "dead",
        "deltas",
        "dsum",
        "enters",
        "exits",
        "neg_firsts",
        "neg_hn",
        "neg_needed",
        "result_ok",
        "succ_add",
        "succ_remove",
        "succ_set",
        "target_list",
        "target_set",
    )

    def __init__(
        self,
        targets: list[str],
        accepted: bool,
        exits: tuple[str, ...],
        enters: tuple[str, ...],
        deltas: tuple[tuple[str, int], ...],
        result_ok: bool,
    ) -> None:
        self.accepted: bool = accepted
        self.exits: tuple[str, ...] = exits
        self.enters: tuple[str, ...] = enters
        # the targets, in order; shared with transitions and machines (read only)
        self.target_list: list[str] = targets
        # the new active set, shared (active sets are replaced, never mutated)
        self.target_set: frozenset[str] = frozenset(targets)
        # the clock changes of apply(), in its order: (state, +1 or +2); their sum
        self.deltas: tuple[tuple[str, int], ...] = deltas
        self.dsum: int = sum(d for _, d in deltas)
        # the result check when the machine's active set is target_set (a
        # Remove whose called states stay active is canceled)
        self.result_ok: bool = result_ok
        # whether any negotiation event has a handler, for one (handler names,
        # pair firsts): both are interned, so identity checks suffice
        self.neg_hn: frozenset[str] | None = None
        self.neg_firsts: frozenset[str] | None = None
        self.neg_needed: bool = True
        self.succ_add: dict[object, Plan] | None = None
        self.succ_remove: dict[object, Plan] | None = None
        self.succ_set: dict[object, Plan] | None = None
        self.dead: bool = False


class StepType(enum.Enum):
    """Kinds of recorded transition steps; ``str()`` gives the reference's form."""

    RELATION = "rel"
    HANDLER = "handler"
    SET = "activate"
    REMOVE = "deactivate"
    REMOVE_NOT_ACTIVE = "deactivate-passive"
    REQUESTED = "called"
    CANCEL = "cancel"
    UNKNOWN = ""

    def __str__(self) -> str:
        return self.value


class Step:
    """One recorded step (only while ``Machine.log_steps``)."""

    __slots__ = (
        "from_state",
        "is_enter",
        "is_final",
        "is_self",
        "relation",
        "to_state",
        "type",
    )

    def __init__(
        self,
        type: StepType,
        from_state: str = "",
        to_state: str = "",
        relation: str = "",
        *,
        is_final: bool = False,
        is_enter: bool = False,
        is_self: bool = False,
    ) -> None:
        self.type: StepType = type
        self.from_state: str = from_state
        self.to_state: str = to_state
        self.relation: str = relation
        self.is_final: bool = is_final
        self.is_enter: bool = is_enter
        self.is_self: bool = is_self

    def __str__(self) -> str:
        from_ = f"**{self.from_state}**" if self.from_state else ""
        to = self.to_state
        if not self.from_state and not to:
            to = ANY
        to = f"**{to}**" if to else ""
        if from_ and to:
            line = f"{from_} {self.relation} {to}"
        else:
            line = from_ or to
        if self.type is StepType.RELATION:
            return line
        suffix = ""
        if self.type is StepType.HANDLER:
            if self.is_self:
                suffix = line
            elif self.is_final:
                suffix = "State" if self.is_enter else "End"
            else:
                suffix = "Enter" if self.is_enter else "Exit"
        return f"{self.type} {line}{suffix}"

    def __repr__(self) -> str:
        return f"<Step {self}>"


class Event:
    """What a handler receives: its name, the args and the transition (semantics §5.7).

    ``args`` is the same mapping for every handler of a transition, so handlers
    can pass data forward.
    """

    __slots__ = ("_tx", "args", "ctx", "machine", "name", "state")

    def __init__(
        self, name: str, machine: Machine, tx: Transition, args: dict[str, Any], state: str = ""
    ) -> None:
        # the pure build's final handlers set these same fields without this
        # call (Transition, see _PURE): a field added here is added there too
        self.name: str = name
        #: the state this handler is about ("" for AnyEnter / AnyState)
        self.state: str = state
        self.machine: Machine = machine
        self._tx = tx
        self.args: dict[str, Any] = args
        self.ctx: Any = None

    @property
    def id(self) -> str:
        """The transition id this event belongs to."""
        return self._tx.id

    @property
    def transition_id(self) -> str:
        """Same as :attr:`id`."""
        return self._tx.id

    @property
    def machine_id(self) -> str:
        """The id of the machine."""
        return self.machine.id

    @property
    def transition(self) -> Transition | None:
        """The machine's *current* transition (None when idle)."""
        return self.machine.transition

    @property
    def mutation(self) -> Mutation:
        """The mutation of this event's transition."""
        return self._tx.mutation

    def is_valid(self) -> bool:
        """True while this event's transition is current, unfinished and accepted."""
        tx = self.machine._tx
        if tx is None or tx is not self._tx:
            return False
        ctx = self.ctx
        if ctx is not None and getattr(ctx, "cancelled", False):
            return False
        return not tx.is_completed and tx.is_accepted

    def fork(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Run ``fn(*args)`` as a task scoped to this event's state (see Machine.fork)."""
        return self.machine._fork_from_event(self, fn, args)

    def __repr__(self) -> str:
        return f"<Event {self.name} tx#{self._tx.id}>"


# The pure build makes the final handlers' events with ``object.__new__`` and the
# stores of ``Event.__init__``: a class call runs ``__init__`` through C (an args
# tuple, a new frame of the eval loop), ~2 % of a toggle on CPython 3.12. Compiled,
# Event is a native class: its class call is the native constructor, and
# ``object.__new__`` refuses it.
_PURE: Final = isinstance(Event.is_valid, types.FunctionType)
_new = object.__new__


@mypyc_attr(allow_interpreted_subclasses=True)
class Transition:
    """The processing of one mutation (semantics §5.8)."""

    __slots__ = (
        "_activated",
        "_applied",
        "_apply_changes",
        "_b",
        "_before_set",
        "_called_set",
        "_deactivated",
        "_escaped",
        "_id",
        "_latest_is_enter",
        "_latest_is_final",
        "_latest_to",
        "_log_entries",
        "_old",
        "_plan",
        "_pre_log_entries",
        "_states_before",
        "_steps",
        "_sum0",
        "_t0",
        "_t1",
        "_targets",
        "enters",
        "exits",
        "is_accepted",
        "is_completed",
        "log_levels",
        "machine",
        "mutation",
        "pre_log_levels",
        "queue_len",
    )

    def __init__(self, m: Machine, mut: Mutation) -> None:
        self._id = ""
        self.machine: Machine = m
        self.mutation: Mutation = mut
        # the machine replaces (never mutates) its active list and set, so the
        # transition keeps references instead of copies
        self._states_before: list[str] = m._active
        self._before_set: frozenset[str] | set[str] = m._active_set
        # the clock: the machine's tick list at the start (``_t0``) and after
        # apply (``_t1``); apply updates the list in place unless a transition
        # that escaped (``_escape``) still reads it, recording the ticks it
        # overwrote in ``_old`` (index -> tick before). Views are made on read
        # (``_before``, ``time_before``, ``time_after``); ``_b`` caches one.
        self._t0: list[int] = m._ticks
        self._t1: list[int] | None = None
        self._old: dict[int, int] | None = None
        # the plan whose clock changes were applied to ``_t0`` in place, before
        # ``_old`` is made from them (on read, or before another apply)
        self._applied: Plan | None = None
        self._b: list[int] | None = None
        self._sum0: int = m._tick_sum
        self._escaped = False
        self.is_accepted: bool = True
        self.is_completed: bool = False
        self.enters: list[str] = []
        self.exits: list[str] = []
        # activated, deactivated, log_entries, pre_log_entries: lists made on
        # first read (most transitions never need one; the plain path sets the
        # first two to its enters / exits)
        self._activated: list[str] | None = None
        self._deactivated: list[str] | None = None
        self._apply_changes: dict[int, int] = {}
        self._latest_to = ""
        self._latest_is_enter = False
        self._latest_is_final = False
        self._steps: list[Step] | None = [] if m.log_steps and (not mut.is_check) else None
        self._log_entries: list[str] | None = None
        self._pre_log_entries: list[str] | None = None
        #: the level of each line of log_entries / pre_log_entries (None: no lines)
        self.log_levels: bytearray | None = None
        self.pre_log_levels: bytearray | None = None
        self.queue_len: int = 0
        self._called_set: frozenset[str] | None = None
        # the target states; while ``_plan`` is set and this is its target
        # list, shared with the plan (read-only): ``target_states`` hands out
        # a private copy on first read
        self._targets: list[str] = []
        self._plan: Plan | None = None

    # ----- the clock (see __init__)

    def _escape(self) -> None:
        """This transition is handed out (a tracer, a hook, ``Machine.transition``):
        its clock views must stay valid after it ends, so the tick lists it
        reads are never updated in place again (the next apply copies first)."""
        self._escaped = True
        self.machine._ticks_pinned = True

    @property
    def _before(self) -> list[int]:
        """The ticks before the transition (valid while the transition is current
        or escaped; copy it to keep it)."""
        b = self._b
        if b is not None:
            return b
        old = self._old_ticks()
        if not old:
            return self._t0
        b = self._t0.copy()
        for i, t in old.items():
            b[i] = t
        self._b = b
        return b

    def _old_ticks(self) -> dict[int, int] | None:
        """The ticks ``_t0`` had before this transition changed them in place."""
        plan = self._applied
        if plan is not None:
            self._applied = None
            index = self.machine._index
            t0 = self._t0
            self._old = {index[s]: t0[index[s]] - d for s, d in plan.deltas}
        return self._old

    @property
    def _after(self) -> list[int] | None:
        """The ticks after apply, None before (same validity as ``_before``)."""
        return self._t1

    @_after.setter
    def _after(self, ticks: list[int] | None) -> None:
        self._t1 = ticks

    @property
    def target_states(self) -> list[str]:
        """The states active after the transition (resolved; mutable by handlers)."""
        t = self._targets
        p = self._plan
        if p is not None and t is p.target_list:
            t = self._targets = list(t)
        return t

    @target_states.setter
    def target_states(self, states: list[str]) -> None:
        self._targets = states

    @property
    def activated(self) -> list[str]:
        """The states this transition activated (empty until it applied)."""
        a = self._activated
        if a is None:
            a = self._activated = []
        return a

    @activated.setter
    def activated(self, states: list[str]) -> None:
        self._activated = states

    @property
    def deactivated(self) -> list[str]:
        """The states this transition deactivated (empty until it applied)."""
        d = self._deactivated
        if d is None:
            d = self._deactivated = []
        return d

    @deactivated.setter
    def deactivated(self, states: list[str]) -> None:
        self._deactivated = states

    @property
    def log_entries(self) -> list[str]:
        """The lines the machine logged during this transition."""
        lines = self._log_entries
        if lines is None:
            lines = self._log_entries = []
        return lines

    @log_entries.setter
    def log_entries(self, lines: list[str]) -> None:
        self._log_entries = lines

    @property
    def pre_log_entries(self) -> list[str]:
        """The lines the machine logged while idle, before this transition."""
        lines = self._pre_log_entries
        if lines is None:
            lines = self._pre_log_entries = []
        return lines

    @pre_log_entries.setter
    def pre_log_entries(self, lines: list[str]) -> None:
        self._pre_log_entries = lines

    # ----- read-only views

    @property
    def id(self) -> str:
        """Random 16 hex chars, made on first use (most transitions never need one)."""
        if not self._id:
            self._id = os.urandom(8).hex()
        return self._id

    @property
    def called_set(self) -> frozenset[str]:
        """The called states as a set (made on first use)."""
        cs = self._called_set
        if cs is None:
            cs = self._called_set = frozenset(self.mutation.called)
        return cs

    @property
    def called_states(self) -> list[str]:
        """The states the mutation named."""
        return list(self.mutation.called)

    @property
    def type(self) -> MutationType:
        """The mutation type."""
        return self.mutation.type

    @property
    def args(self) -> dict[str, Any]:
        """The mutation's args (the mapping handlers receive)."""
        return self.mutation.args

    @property
    def is_auto(self) -> bool:
        """True for the automatic mutation of Auto states."""
        return self.mutation.is_auto

    @property
    def is_health(self) -> bool:
        """Add of exactly ``Healthcheck`` or ``Heartbeat`` (semantics §6.1)."""
        c = self.mutation.called
        return self.mutation.type is _ADD and len(c) == 1 and c[0] in (HEALTHCHECK, HEARTBEAT)

    @property
    def states_before(self) -> list[str]:
        """The active states at the start, in the machine's active-list order (a copy)."""
        return list(self._states_before)

    @property
    def time_before(self) -> Time:
        """Machine time before the transition."""
        return Time(self._before)

    @property
    def time_after(self) -> Time:
        """Machine time after: predicted during negotiation, real afterwards (4.4)."""
        if self._t1 is not None:
            return Time(self._t1)
        if self.mutation.is_check or not self.is_accepted:
            return Time(self._before)
        return self._predict_time_after()

    def _predict_time_after(self) -> Time:
        m = self.machine
        t = Time(self._before)
        index = m._index
        multi = m._resolver.multi
        before = self._before_set
        targets = set(self._targets)
        for s in self._targets:
            if s not in before:
                t[index[s]] += 1
            elif s in self.called_set and s in multi:
                t[index[s]] += 2
        for s in self._states_before:
            if s not in targets:
                t[index[s]] += 1
        return t

    @property
    def clock_before(self) -> dict[str, int]:
        """Ticks before the transition, by state name."""
        return dict(zip(self.machine._names, self.time_before, strict=False))

    @property
    def clock_after(self) -> dict[str, int]:
        """Ticks after the transition, by state name."""
        return dict(zip(self.machine._names, self.time_after, strict=False))

    @property
    def steps(self) -> list[Step]:
        """Recorded steps (empty unless ``log_steps`` was on)."""
        return list(self._steps or ())

    def time_index_before(self) -> TimeIndex:
        """``time_before`` bound to the state names."""
        return TimeIndex(self.time_before, self.machine._names)

    def time_index_after(self) -> TimeIndex:
        """``time_after`` bound to the state names."""
        return TimeIndex(self.time_after, self.machine._names)

    def time_index_called(self) -> TimeIndex:
        """The called states as active states of a TimeIndex."""
        names = self.machine._names
        return TimeIndex.from_active(names, [names.index(s) for s in self.mutation.called])

    def time_index_time_diff(self) -> TimeIndex:
        """States whose tick changed, marked active."""
        names = self.machine._names
        diff = self.time_after.diff_since(self.time_before).non_zero_states()
        return TimeIndex.from_active(names, diff)

    def time_index_diff(self) -> tuple[TimeIndex, TimeIndex]:
        """(added, removed) by this transition; re-entered Multi states count as added."""
        names = self.machine._names
        before, after = self.time_before, self.time_after
        added: list[int] = []
        removed: list[int] = []
        for i in range(len(names)):
            b = before.tick(i)
            a = after.tick(i)
            if b % 2 and not a % 2:
                removed.append(i)
            elif (not b % 2 and a % 2) or b != a:
                added.append(i)
        return TimeIndex.from_active(names, added), TimeIndex.from_active(names, removed)

    def time_index_touched(self) -> TimeIndex:
        """States named by the recorded steps, marked active (needs ``log_steps``)."""
        names = self.machine._names
        idx = {n: i for i, n in enumerate(names)}
        touched: list[int] = []
        for step in self._steps or ():
            for s in (step.from_state, step.to_state):
                if s in idx:
                    touched.append(idx[s])
        return TimeIndex.from_active(names, touched)

    def string(self) -> str:
        """``tx#<id>\\n[<type>] <called>`` + source + steps (semantics §5.8, 11.3)."""
        m = self.machine
        called = self.called_set
        names = " ".join(n for n in m._names if n in called)
        out = f"tx#{self.id}\n[{self.mutation.type}] {names}"
        src = self.mutation.source
        if src is not None:
            out += f"\nsource: [{src.tx_id}]({src.mach_id}/{src.tx_id}/t{src.mach_time})"
        if self._steps:
            out += "".join(f"\n- {s}" for s in self._steps)
        return out

    def __str__(self) -> str:
        return self.string()

    def __repr__(self) -> str:
        return f"<Transition {self.id} {self.mutation!r}>"

    # ----- steps

    def _add_step(
        self, kind: str, from_state: str, to_state: str, relation: str = "", **kw: bool
    ) -> None:
        if self._steps is not None:
            self._steps.append(Step(StepType(kind), from_state, to_state, relation, **kw))

    def _add_step_once(self, kind: str, from_state: str, to_state: str, relation: str = "") -> None:
        """``_add_step`` unless the same step is recorded already (the resolver
        passes over the same relations more than once)."""
        steps = self._steps
        if steps is None:
            return
        type_ = StepType(kind)
        for st in steps:
            if (
                st.type is type_
                and st.from_state == from_state
                and st.to_state == to_state
                and st.relation == relation
            ):
                return
        steps.append(Step(type_, from_state, to_state, relation))

    # ----- lifecycle

    def setup(self) -> None:
        """Resolve relations, acceptance, exits and enters (newTransition).

        With nothing to log (below OPS) and no steps recorded, the whole plan
        (targets, acceptance, exits, enters) is a pure function of the schema and
        (type, check, auto, called, active list): it is memoised per schema.
        """
        m = self.machine
        mut = self.mutation
        if m._tracers:
            self._escape()
        if m._log_level < L_OPS and self._steps is None:
            key = (mut.type, mut.is_check, mut.is_auto, *mut.called, None, *self._states_before)
            plan: Plan | None = m._resolver.plans.get(key)
            if plan is None:
                self._setup()
                self._store_plan(key)
                return
            self.target_states = list(plan.target_list)
            self.is_accepted = plan.accepted
            self.exits = list(plan.exits)
            self.enters = list(plan.enters)
            for tracer in m._tracers:
                tracer.transition_init(self)
            return
        self._setup()

    def _store_plan(self, key: tuple[object, ...]) -> Plan:
        """Memoise what ``_setup`` decided, plus what ``run_plain`` precomputes."""
        m = self.machine
        targets = list(self._targets)
        before = self._before_set
        multi = m._resolver.multi
        mut = self.mutation
        called = mut.called
        # the clock deltas of apply(), in its order (targets, then removed states)
        deltas: list[tuple[str, int]] = []
        for s in targets:
            if s not in before:
                deltas.append((s, 1))
            elif s in multi and s in called:
                deltas.append((s, 2))
        tset = set(targets)
        deltas.extend((s, 1) for s in self._states_before if s not in tset)
        plan = Plan(
            targets,
            self.is_accepted,
            tuple(self.exits),
            tuple(self.enters),
            tuple(deltas),
            mut.type is not _REMOVE or tset.isdisjoint(called),
        )
        m._resolver.store_plan(key, plan)
        return plan

    def _link_plan(self, prev: Plan, plan: Plan) -> None:
        """Record ``plan`` as ``prev``'s successor for this mutation (bounded)."""
        if prev.dead:
            return
        mut = self.mutation
        t = mut.type
        if t is _ADD:
            succ = prev.succ_add
            if succ is None:
                succ = prev.succ_add = {}
        elif t is _REMOVE:
            succ = prev.succ_remove
            if succ is None:
                succ = prev.succ_remove = {}
        else:
            succ = prev.succ_set
            if succ is None:
                succ = prev.succ_set = {}
        if len(succ) >= SUCC_MAX:
            return
        called = mut.called
        succ[called[0] if len(called) == 1 else tuple(called)] = plan
        self.machine._resolver.count_link()

    def _setup(self) -> None:
        m = self.machine
        mut = self.mutation
        called = mut.called
        if mut.type is _ADD:
            states_to_set = called + self._states_before
        elif mut.type is _REMOVE:
            cs = self.called_set
            states_to_set = [s for s in self._states_before if s not in cs]
        else:
            states_to_set = called
        level = m._log_level
        if level >= L_OPS or (level >= L_DECISIONS and mut.is_auto):
            args = m._log_args(mut.args)
            if mut.is_auto:
                m._log(L_DECISIONS, f"[{mut.type}:auto] {' '.join(called)}{args}")
            else:
                m._log(L_OPS, f"[{mut.type}] {' '.join(called)}{args}")
            src = mut.source
            if src is not None:
                m._log(L_OPS, f"[source] {src.mach_id}/{src.tx_id}/{src.mach_time}")
        if self._steps is not None:
            for s in called:
                self._add_step("called", "", s)
            before = self._before_set
            if mut.type is _REMOVE:
                for s in called:
                    self._add_step("deactivate", "", s)
            else:
                for s in states_to_set:
                    if s not in before:
                        self._add_step("activate", "", s)
                if mut.type is MutationType.SET:
                    to_set = set(states_to_set)
                    for s in self._states_before:
                        if s not in to_set:
                            self._add_step("deactivate", "", s)
        targets = m._resolver.target_states(
            mut.type,
            called,
            mut.is_auto,
            self._states_before,
            self._before_set,
            states_to_set,
            self,
        )
        self.target_states = targets
        if level >= L_OPS:
            to_set_ = set(states_to_set)
            implied = [s for s in targets if s not in to_set_]
            if implied:
                m._log(L_OPS, f"[implied] {' '.join(implied)}")
        self._setup_accepted()
        if self.is_accepted:
            self._setup_exit_enter()
        for tracer in m._tracers:
            tracer.transition_init(self)

    def _setup_accepted(self) -> None:
        mut = self.mutation
        if mut.type is _REMOVE:
            return
        targets = set(self.target_states)
        not_accepted = [s for s in mut.called if s not in targets]
        if mut.is_auto:
            if len(not_accepted) < len(mut.called):
                return
            self.is_accepted = False
        if not not_accepted:
            return
        if mut.is_check and not self.machine._resolver.multi.isdisjoint(mut.called):
            return
        self.is_accepted = False
        m = self.machine
        m._log(L_OPS, f"[cancel:reject] {' '.join(not_accepted)}")
        for s in not_accepted:
            self._add_step("cancel", "", s)

    def _setup_exit_enter(self) -> None:
        m = self.machine
        active = m._active_set
        targets = self.target_states
        tset = set(targets)
        exits = [s for s in m._active if s not in tset]
        m._resolver.sort_states(exits)
        multi = m._resolver.multi
        called = self.called_set
        self.exits = exits
        self.enters = [s for s in targets if s not in active or (s in multi and s in called)]

    def _drop_target(self, state: str) -> None:
        try:
            self.target_states.remove(state)
        except ValueError:
            pass

    def _negotiate(self) -> Result:
        """Steps 1-6 of semantics §5.2; partial acceptance for auto mutations (6.2).

        Only a handler returning False drops an Auto state; one that raised or
        timed out marked the transition not accepted, which cancels it.
        """
        m = self.machine
        handle = m._handle
        # most events have no handler in any binding: skip the dispatch call for
        # them unless something needs every event (EVERYTHING log, when_args, steps)
        hn = m._handler_names
        full = self._dispatch_all()
        is_auto = self.mutation.is_auto
        auto_states = m._resolver.auto_states
        # 1. exits
        for s in self.exits:
            self._latest_to = ""
            name = s + "Exit"
            res = (
                handle(name, False, False, False)
                if full or name in hn or m._disposing
                else EXECUTED
            )
            if self._steps is not None:
                self._step_handler(s, "", False, False)
            if res is CANCELED:
                # semantics §6.2: an Auto state's Exit rejecting cancels (port rule)
                return CANCELED
        # 2. enters
        for s in self.enters:
            self._latest_to = s
            name = s + "Enter"
            res = (
                handle(name, False, True, False) if full or name in hn or m._disposing else EXECUTED
            )
            if self._steps is not None:
                self._step_handler("", s, False, True)
            if res is CANCELED:
                if is_auto and s in auto_states and self.is_accepted:
                    self._drop_target(s)
                else:
                    return CANCELED
        # 3. self handlers: the result of the last dispatch counts (Go quirk)
        if self.mutation.type is not _REMOVE:
            res = EXECUTED
            targets = self.target_states
            active = m._active_set
            i = 0
            while i < len(targets):
                s = targets[i]
                i += 1
                if s not in active:
                    continue
                self._latest_to = s
                name = s + s
                res = (
                    handle(name, False, False, True)
                    if full or name in hn or m._disposing
                    else EXECUTED
                )
                if self._steps is not None and m._handler_called:
                    self._add_step("handler", "", s, is_self=True)
                if res is CANCELED:
                    if is_auto and s in auto_states and self.is_accepted:
                        # drop while iterating: the next target is skipped (quirk)
                        targets.remove(s)
                    else:
                        return CANCELED
            if res is CANCELED:
                return CANCELED
        # 4. state-state handlers over a snapshot of the targets
        after = list(self.target_states)
        firsts = m._pair_firsts
        for b in self._states_before:
            if not full and b not in firsts:
                continue  # no binding defines a handler starting with b
            for a in after:
                if a == b:
                    continue
                self._latest_to = ""
                name = b + a
                res = (
                    handle(name, False, False, False)
                    if full or name in hn or m._disposing
                    else EXECUTED
                )
                if self._steps is not None and m._handler_called:
                    self._add_step("handler", b, a)
                if res is CANCELED:
                    if is_auto and a in auto_states and self.is_accepted:
                        self._drop_target(a)
                    else:
                        return CANCELED
        # 5. nothing left of an auto mutation
        if is_auto and not self.target_states:
            return CANCELED
        # 6. AnyEnter
        self._latest_to = ANY
        res = (
            handle("AnyEnter", False, True, False)
            if full or "AnyEnter" in hn or m._disposing
            else EXECUTED
        )
        if self._steps is not None and m._handler_called:
            self._add_step("handler", ANY, ANY, is_enter=True)
        return res

    def _dispatch_all(self) -> bool:
        m = self.machine
        subs = m._subs
        return bool(
            m._log_level >= L_EVERYTHING
            or subs.when_args
            or subs._expired_args
            or self._steps is not None
            or m._disposing
        )

    def _step_handler(self, from_: str, to: str, is_final: bool, is_enter: bool) -> None:
        if self._steps is not None and self.machine._handler_called:
            self._add_step("handler", from_, to, is_final=is_final, is_enter=is_enter)

    def _finals(self) -> Result:
        """Exit ``End`` then enter ``State`` handlers; stop at the first failure."""
        m = self.machine
        handle = m._handle
        hn = m._handler_names
        full = self._dispatch_all()
        for s in self.exits:
            self._latest_to = ""
            name = s + "End"
            res = handle(name, True, False, False) if full or name in hn else EXECUTED
            if self._steps is not None:
                self._step_handler("", s, True, False)
            if res is CANCELED:
                return CANCELED
        for s in self.enters:
            self._latest_to = s
            name = s + "State"
            res = handle(name, True, True, False) if full or name in hn else EXECUTED
            if self._steps is not None:
                self._step_handler("", s, True, True)
            if res is CANCELED:
                return CANCELED
        return EXECUTED

    def run_plain(self) -> Result:
        """``setup()`` + ``run()`` of a plain mutation, flattened (the hot path).

        The caller (``queue.run_tx``) guarantees at the start: not a check, not
        auto, log level below OPS, no steps, no tracers, no ``when_args``
        waiters and not disposing. So the plan is memoised, ``_dispatch_all()``
        is False and every auto / check / log branch of ``run()`` is dead.
        Everything a handler can change mid-transition (disposal, log level,
        waiters, bindings, tracers, the lists of this transition) is re-checked
        where ``run()`` / ``_negotiate()`` / ``_finals()`` check it, so the
        behaviour is the same. Why it looks like this: every call, generator and
        temporary list removed here is ~2-5% of a toggle (issue 6).
        """
        m = self.machine
        mut = self.mutation
        before = self._states_before
        # the plan: a successor link of the plan the active list came from
        # (O(called)), else the memo keyed by the whole active list
        prev = m._plan
        plan: Plan | None = None
        if prev is not None and before is prev.target_list:
            t = mut.type
            succ = (
                prev.succ_add if t is _ADD else prev.succ_remove if t is _REMOVE else prev.succ_set
            )
            if succ is not None:
                called = mut.called
                plan = succ.get(called[0] if len(called) == 1 else tuple(called))
        else:
            prev = None
        if plan is None:
            key = (mut.type, False, False, *mut.called, None, *before)
            plan = m._resolver.plans.get(key)
            if plan is None:
                self._setup()
                plan = self._store_plan(key)
            else:
                self.is_accepted = plan.accepted
                self.exits = list(plan.exits)
                self.enters = list(plan.enters)
            if prev is not None:
                self._link_plan(prev, plan)
        else:
            self.is_accepted = plan.accepted
            self.exits = list(plan.exits)
            self.enters = list(plan.enters)
        # shared with the plan (target_states copies it on first read)
        self._targets = plan.target_list
        self._plan = plan
        handle = m._handle
        has_handlers = m._handlers_ever_bound
        if not self.is_accepted:
            result = CANCELED
        elif has_handlers:
            hn = m._handler_names
            firsts = m._pair_firsts
            if plan.neg_hn is not hn or plan.neg_firsts is not firsts:
                plan.neg_needed = self._negotiation_needed(hn, firsts)
                plan.neg_hn = hn
                plan.neg_firsts = firsts
            # no negotiation handler at all: nothing can run, so nothing can
            # change before apply (not even disposal): skip the walk
            result = self._negotiate_plain() if plan.neg_needed else EXECUTED
        else:
            result = EXECUTED
        has_changed = False
        if result is EXECUTED:
            targets = self._targets
            if (
                m._active is before
                and not m._disposing
                and m._log_level < L_CHANGES
                and (targets is plan.target_list or targets == plan.target_list)
            ):
                # apply() with its decisions taken from the plan, O(touched)
                ticks = m._ticks
                index = m._index
                changes = self._apply_changes
                if m._ticks_pinned or ticks is not self._t0:
                    # an escaped transition reads this list: copy-on-write
                    ticks = ticks.copy()
                    m._ticks = ticks
                    m._ticks_pinned = self._escaped
                    for s, delta in plan.deltas:
                        i = index[s]
                        tick = ticks[i] + delta
                        ticks[i] = tick
                        changes[i] = tick
                else:
                    # in place (time_before subtracts the plan's deltas again)
                    self._applied = plan
                    for s, delta in plan.deltas:
                        i = index[s]
                        tick = ticks[i] + delta
                        ticks[i] = tick
                        changes[i] = tick
                m._tick_sum += plan.dsum
                m._active = plan.target_list
                m._active_set = plan.target_set
                m._plan = plan
            else:
                m._apply(self, mut.called, targets)
            self._activated = self.enters
            self._deactivated = self.exits
            subs = m._subs
            if subs.state_ctx:
                subs.process_state_ctx(self.enters, self.exits)
            # (the ``_after`` setter inlined: a property call costs a frame)
            self._t1 = m._ticks
            for tracer in m._tracers:
                tracer.transition_finals(self)
            if has_handlers or subs.when_args:
                if (
                    m._log_level >= L_EVERYTHING
                    or subs.when_args
                    or subs._expired_args
                    or m._disposing
                ):
                    result = self._finals()
                else:
                    # _finals() with full False (no steps here); ``s + "End" in
                    # hn`` looked up in the tables of the same handler names
                    # (no string built and hashed per state)
                    ends, states = m._finals
                    for s in self.exits:
                        self._latest_to = ""
                        if s in ends and self._final1(ends[s], False) is CANCELED:
                            result = CANCELED
                            break
                    else:
                        for s in self.enters:
                            self._latest_to = s
                            if s in states and self._final1(states[s], True) is CANCELED:
                                result = CANCELED
                                break
            # _settle() inlined
            if result is CANCELED:
                m._revert(self)
                self._t1 = m._ticks
            has_changed = bool(self._apply_changes)
        else:
            self._t1 = self._before

        if result is EXECUTED and has_handlers:
            self._latest_to = ANY
            subs = m._subs
            if (
                "AnyState" in m._handler_names
                or m._log_level >= L_EVERYTHING
                or subs.when_args
                or subs._expired_args
                or m._disposing
            ):
                result = handle("AnyState", True, True, False)

        if m._on_change is not None:
            m._on_change(m, self.time_before, self.time_after)

        if result is CANCELED:
            self.is_accepted = False
        elif has_changed and m._resolver.auto_states and not m._disposing and not self.is_health:
            self._auto()

        self.queue_len = len(m._queue)
        self.is_completed = True
        if m._tracers or m._end_hooks:
            self._escape()
            for tracer in m._tracers:
                tracer.transition_end(self)
            for hook in m._end_hooks:
                hook(self)

        if result is CANCELED:
            return CANCELED
        active = m._active_set
        if active is plan.target_set and self._targets is plan.target_list:
            # the machine's states are the plan's targets, untouched: O(1)
            return EXECUTED if plan.result_ok else CANCELED
        if mut.type is _REMOVE:
            for s in mut.called:
                if s in active:
                    return CANCELED
            return EXECUTED
        for s in self._targets:
            if s not in active:
                return CANCELED
        return EXECUTED

    def _final1(self, name: str, is_enter: bool) -> Result:
        """``handle(name, True, is_enter, False)`` for a final handler of a plain
        transition; the common case (one binding, a sync handler, nothing logged
        or traced; timed as handle() times it) without handle()'s generality.
        Anything else, checked before any effect, goes to handle() itself."""
        m = self.machine
        bindings = m._bindings
        if (
            len(bindings) != 1
            or m._log_level >= L_OPS
            or m._tracers
            or m._disposing
            or m._tx is not self
            or self.is_completed
            or not self.is_accepted
        ):
            return m._handle(name, True, is_enter, False)
        b = bindings[0]
        fn = b.table.get(name)
        if fn is None or name in b.async_names:
            return m._handle(name, True, is_enter, False)
        # what handle() does for it, in its order
        m._handler_called = True
        self._latest_is_enter = is_enter
        self._latest_is_final = True
        args = self.mutation.args
        if _PURE:
            event = _new(Event)  # what Event.__init__ sets (see _PURE)
            event.name = name
            event.state = b.event_state.get(name, "")
            event.machine = m
            event._tx = self
            event.args = args
            event.ctx = None
        else:
            event = Event(name, m, self, args, b.event_state.get(name, ""))
        timeout = m.handler_timeout
        started = _time.perf_counter() if timeout is not None else 0.0
        panicked = False
        m._current_handler = name
        try:
            fn(event)
        except Exception as err:
            m._current_handler = ""
            if not m.panic_to_exception:
                raise
            panicked = True
            m._recover(err, event)
        finally:
            m._current_handler = ""
        timed_out = (
            timeout is not None
            and not panicked
            and _time.perf_counter() - started > timeout
            and not getattr(fn, UNTIMED, False)
        )
        if m._tracers:
            for t in m._tracers:
                t.handler_end(self, b.id, name)
        if timed_out:
            m._handler_timeout(self, b, name, _time.perf_counter() - started)
            m._panic_caught = False
            return CANCELED
        subs = m._subs
        if subs.when_args or subs._expired_args:
            subs.process_args(name, args)
        if m._panic_caught:
            m._panic_caught = False
            return CANCELED
        return EXECUTED

    def _negotiation_needed(self, hn: frozenset[str], firsts: frozenset[str]) -> bool:
        """Would ``_negotiate_plain`` dispatch any event, right after setup?"""
        if "AnyEnter" in hn:
            return True
        if any(s + "Exit" in hn for s in self.exits):
            return True
        if any(s + "Enter" in hn for s in self.enters):
            return True
        before = self._before_set
        targets = self._targets
        if self.mutation.type is not _REMOVE and any(s + s in hn for s in targets if s in before):
            return True
        return any(
            b + a in hn for b in self._states_before if b in firsts for a in targets if a != b
        )

    def _negotiate_plain(self) -> Result:
        """``_negotiate()`` of a plain (not auto) mutation with ``full`` False."""
        m = self.machine
        handle = m._handle
        hn = m._handler_names
        # 1. exits
        for s in self.exits:
            self._latest_to = ""
            name = s + "Exit"
            if (name in hn or m._disposing) and handle(name, False, False, False) is CANCELED:
                return CANCELED
        # 2. enters
        for s in self.enters:
            self._latest_to = s
            name = s + "Enter"
            if (name in hn or m._disposing) and handle(name, False, True, False) is CANCELED:
                return CANCELED
        # 3. self handlers (over the transition's own list: a handler may change it)
        # (iterated by index, as a list iterator does, so a handler's change
        # of target_states is seen; the list is made private before one runs)
        if self.mutation.type is not _REMOVE:
            active = m._active_set
            targets = self._targets
            i = 0
            while i < len(targets):
                s = targets[i]
                i += 1
                if s not in active:
                    continue
                self._latest_to = s
                name = s + s
                if name in hn or m._disposing:
                    plan = self._plan
                    if plan is not None and targets is plan.target_list:
                        targets = self.target_states
                    if handle(name, False, False, True) is CANCELED:
                        return CANCELED
        # 4. state-state handlers over a snapshot of the targets (taken lazily:
        # before the first handler of this step could run)
        after: list[str] | None = None
        firsts = m._pair_firsts
        for b in self._states_before:
            if b not in firsts:
                continue
            if after is None:
                after = list(self._targets)
            for a in after:
                if a == b:
                    continue
                self._latest_to = ""
                name = b + a
                if (name in hn or m._disposing) and handle(name, False, False, False) is CANCELED:
                    return CANCELED
        # 6. AnyEnter
        self._latest_to = ANY
        if "AnyEnter" in hn or m._disposing:
            return handle("AnyEnter", False, True, False)
        return EXECUTED

    def _auto(self) -> None:
        """Prepend the auto mutation after an accepted, clock-changing transition.

        Also after the ``Exception`` mutation of a failed auto transition, as
        the reference does. When the same auto attempt keeps failing the same
        way from the same active states (a livelock in the reference), the
        guard stops after ``Machine.auto_retry_limit`` failures in a row and
        reports it (``AutoLivelockError``).
        """
        m = self.machine
        auto = m._resolver.new_auto_mutation_states(m._active_set, m._active)
        if not auto:
            return
        chain = self.mutation.auto_chain
        if chain is not None and chain[1] >= m.auto_retry_limit:
            m._auto_livelock(self, auto, chain[1])
            return
        m._log(L_OPS, f"[auto] {' '.join(auto)}")
        mut = Mutation(_ADD, auto, {}, is_auto=True)
        mut.auto_chain = chain
        m._prepend(mut)

    def _settle(self, result: Result) -> bool:
        """After the final handlers: revert a canceled transition; did ticks change?"""
        m = self.machine
        if result is CANCELED:
            m._revert(self)
            has_changed = bool(self._apply_changes)
            self._after = m._ticks
            return has_changed
        return bool(self._apply_changes)

    def run(self) -> Result:
        """Negotiate, apply, run final handlers, report (semantics §5.2)."""
        m = self.machine
        mut = self.mutation
        result = EXECUTED if self.is_accepted else CANCELED
        has_changed = False
        has_handlers = m._handlers_ever_bound or m._log_level >= L_EVERYTHING
        if m._tracers:
            self._escape()
            for tracer in m._tracers:
                tracer.transition_start(self)

        if has_handlers and result is EXECUTED:
            result = self._negotiate()

        if not mut.is_check:
            if mut.is_auto:
                # semantics §6.3: recompute from the called states that survived
                targets = set(self.target_states)
                called_clean = [s for s in mut.called if s in targets]
                self.target_states = m._resolver.target_states(
                    _ADD,
                    called_clean,
                    True,
                    self._states_before,
                    self._before_set,
                    called_clean + m._active,
                )
                self._setup_exit_enter()

            if result is EXECUTED:
                m._apply(self, mut.called, self.target_states)
                if mut.is_auto:
                    before = self._before_set
                    now = m._active_set
                    activated = [s for s in m._active if s not in before]
                    deactivated = [s for s in self._states_before if s not in now]
                else:
                    activated = self.enters
                    deactivated = self.exits
                self._activated = activated
                self._deactivated = deactivated
                if m._subs.state_ctx:
                    m._subs.process_state_ctx(activated, deactivated)
                self._after = m._ticks
                for tracer in m._tracers:
                    tracer.transition_finals(self)
                if has_handlers or m._subs.when_args:
                    result = self._finals()
                has_changed = self._settle(result)
            else:
                self._after = self._before

            if result is EXECUTED and has_handlers:
                self._latest_to = ANY
                if "AnyState" in m._handler_names or self._dispatch_all():
                    result = m._handle("AnyState", True, True, False)

            if m._on_change is not None:
                m._on_change(m, self.time_before, self.time_after)

            if result is CANCELED:
                self.is_accepted = False
            elif (
                not m._disposing
                and has_changed
                and not mut.is_auto
                and m._resolver.auto_states
                and not self.is_health
            ):
                self._auto()
        elif result is CANCELED:
            self.is_accepted = False

        self.queue_len = len(m._queue)
        self.is_completed = True
        if m._tracers or m._end_hooks:
            self._escape()
            for tracer in m._tracers:
                tracer.transition_end(self)
            for hook in m._end_hooks:
                hook(self)

        if result is CANCELED:
            return CANCELED
        if mut.is_check:
            return result
        if mut.type is _REMOVE:
            active = m._active_set
            return CANCELED if any(s in active for s in mut.called) else EXECUTED
        if mut.is_auto:
            return EXECUTED if len(self.target_states) > len(self._states_before) else CANCELED
        active = m._active_set
        return EXECUTED if all(s in active for s in self.target_states) else CANCELED
