"""Hypothesis: machine invariants over random schemas and random mutations.

Besides invariants (ticks match activity, Require holds, queue ticks strictly
increase, the machine never wedges), a literal reading of the relation
resolution (targets and their order) and of the auto rule is checked against
every transition: schemas without Remove relations, several bindings, auto
states whose handlers raise, and handlers raising a ``BaseException``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import asyncmachine_trio as am

NAMES = [f"S{i}" for i in range(6)]
# "queue:<state>": the handler queues add1(<state>) (a queue tick handed out)
BEHAVIOURS = ("accept", "accept", "reject", "raise", "base", "queue:S0", "queue:S1")


class Interrupt(BaseException):
    """What a handler raises for the "base" behaviour."""


# ----- a literal reading of relation resolution and ordering (the oracle)


def _unique(xs: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(xs))


def _topology(schema: Mapping[str, am.State], names: Sequence[str]) -> dict[str, int]:
    """Require DFS post-order in state order; a cycle leaves it empty."""
    order: list[str] = []
    done: set[str] = set()
    path: set[str] = set()

    def visit(n: str) -> bool:
        if n in path:
            return False
        if n in done:
            return True
        path.add(n)
        for r in schema[n].require or ():
            if not visit(r):
                return False
        path.discard(n)
        done.add(n)
        order.append(n)
        return True

    for n in names:
        if schema[n].require and n not in done and not visit(n):
            return {}
    return {n: i for i, n in enumerate(order)}


def spec_sort(schema: Mapping[str, am.State], topo: dict[str, int], states: list[str]) -> None:
    states.sort(key=lambda s: topo.get(s, -1))

    def after(s: str) -> Sequence[str]:
        return schema[s].after or ()

    # Go's stable sort is an insertion sort up to 20 items
    for i in range(1, len(states)):
        j = i
        while j > 0:
            x, y = states[j], states[j - 1]
            if not (x in after(y) and y not in after(x)):
                break
            states[j], states[j - 1] = y, x
            j -= 1


def spec_targets(
    schema: Mapping[str, am.State],
    topo: dict[str, int],
    mtype: str,
    called: list[str],
    before: list[str],
) -> list[str]:
    active = set(before)
    if mtype == "add":
        to_set = called + before
    elif mtype == "remove":
        to_set = [p for p in before if p not in called]
    else:
        to_set = list(called)

    def parse_add(states: list[str]) -> list[str]:
        out = list(states)
        visited: list[str] = []
        for x in states:
            if x in active and not schema[x].multi:
                continue
            if x in visited:
                continue
            adds = [a for a in schema[x].add or () if not (mtype == "remove" and a in called)]
            if not adds:
                continue
            out += adds
            visited.append(x)
        return out

    def parse_require(states: list[str]) -> list[str]:
        while True:
            kept = [x for x in states if all(r in states for r in schema[x].require or ())]
            if len(kept) == len(states):
                return kept
            states = kept

    s4 = parse_require(_unique(parse_add(_unique(to_set))))
    blocked: set[str] = set()
    kept: list[str] = []
    for x in reversed(s4):
        blockers = [b for b in s4 if x in (schema[b].remove or ()) and b not in blocked]
        if blockers:
            blocked.add(x)
        else:
            kept.append(x)
    to_remove = [r for k in kept for r in schema[k].remove or ()]
    r2 = _unique([x for x in parse_add(kept) if x not in to_remove])
    targets = parse_require(list(reversed(r2)))
    spec_sort(schema, topo, targets)
    return targets


def spec_auto(m: am.Machine) -> list[str]:
    """Auto states to try after a transition (inactive, not removed by an active one)."""
    schema = m.schema
    active = m.active_states()
    return [
        s
        for s in m.state_names
        if schema[s].auto
        and s not in active
        and not any(s in (schema[a].remove or ()) for a in active)
    ]


# ----- strategies


@st.composite
def schemas(draw: st.DrawFn) -> dict[str, am.State]:
    n = draw(st.integers(2, len(NAMES)))
    names = NAMES[:n]
    # often no Remove relation at all (a path of its own in the resolver)
    no_remove = draw(st.booleans())
    rel = st.one_of(st.none(), st.lists(st.sampled_from(names), max_size=3, unique=True))
    schema: dict[str, am.State] = {}
    for name in names:
        schema[name] = am.State(
            auto=draw(st.booleans()),
            multi=draw(st.booleans()),
            require=draw(rel),
            add=draw(rel),
            remove=None if no_remove else draw(rel),
            after=draw(rel),
        )
    return schema


def handler_names(states: Sequence[str]) -> list[str]:
    """Every handler method name for ``states``: state, self, pair and Any handlers."""
    out = ["any_enter", "any_state"]
    for s in states:
        sn = am.snake(s)
        out += [f"{sn}_{k}" for k in ("enter", "exit", "state", "end")]
        out += [f"{sn}_{am.snake(t)}" for t in states]
    return out


# ----- checks made while transitions run


class Checker(am.Tracer):
    """Checks per-transition invariants and the oracle as transitions run."""

    def __init__(self) -> None:
        self.failed_handler = False
        self.failures = 0
        self.errors: list[str] = []
        self.schema: dict[str, am.State] = {}
        self.topo: dict[str, int] = {}
        # the auto mutation the last transition must be followed by
        self.expect_auto: list[str] | None = None
        self.livelock = False
        self.current: am.Transition | None = None
        # per transition: the tx whose handler raised, the events rejected
        self.raised_in: am.Transition | None = None
        self.rejected: set[str] = set()
        self.handed_out: list[int] = []
        # handlers that queue could loop forever (S{multi}: s_state adds S):
        # a budget per rule
        self.queue_budget = 0

    def machine_init(self, machine: am.Machine) -> None:
        self.schema = machine.schema
        self.topo = _topology(self.schema, machine.state_names)

    def transition_init(self, tx: am.Transition) -> None:
        mut = tx.mutation
        expect, self.expect_auto = self.expect_auto, None
        if expect is not None:
            if not mut.is_auto or tx.called_states != expect:
                self.errors.append(f"auto {expect} expected, got {mut!r}")
        elif mut.is_auto:
            self.errors.append(f"unexpected auto mutation {mut!r}")
        want = spec_targets(
            self.schema, self.topo, str(mut.type), tx.called_states, tx.states_before
        )
        if tx.target_states != want:
            self.errors.append(
                f"{mut!r} from {tx.states_before}: targets {tx.target_states}, literal {want}"
            )

    def transition_start(self, transition: am.Transition) -> None:
        self.failed_handler = False
        self.current = transition
        self.rejected.clear()

    def internal_error(self, machine: am.Machine, err: Exception) -> None:
        if isinstance(err, am.AutoLivelockError):
            self.livelock = True

    def transition_end(self, tx: am.Transition) -> None:
        m = tx.machine
        now = m.time()
        mut = tx.mutation
        if mut.is_check and list(now) != list(tx.time_before):
            self.errors.append(f"check ticked: {tx}")
        # a canceled transition changes no tick unless a final handler failed
        canceled = not tx.is_accepted and not self.failed_handler
        if canceled and list(now) != list(tx.time_before):
            self.errors.append(f"canceled transition ticked: {tx}")
        if tx.is_accepted and not mut.is_check and not self.failed_handler:
            schema = m.schema
            for s in m.active_states():
                for r in schema[s].require or ():
                    if not m.is1(r):
                        self.errors.append(f"{s} active without its Require {r}: {tx}")
        # the auto rule: after every accepted, clock-changing, non-auto
        # transition -- the Exception mutation of a failed auto one included
        livelock, self.livelock = self.livelock, False
        if (
            tx.is_accepted
            and not mut.is_check
            and not mut.is_auto
            and list(now) != list(tx.time_before)
            and not livelock
        ):
            auto = spec_auto(m)
            if auto:
                self.expect_auto = auto
        self.current = None


def make_handlers(behaviour: dict[str, str], checker: Checker, mach: am.Machine, index: int) -> Any:
    attrs: dict[str, Any] = {}
    for method, kind in behaviour.items():

        def handler(self: Any, e: am.Event, kind: str = kind) -> bool | None:
            tx = e.machine.transition
            if checker.raised_in is not None and checker.raised_in is tx:
                checker.errors.append(f"{e.name} of binding {index} called after a raise")
            if e.name in checker.rejected:
                checker.errors.append(f"{e.name} of binding {index} called after a rejection")
            if kind == "raise":
                checker.failed_handler = True
                checker.failures += 1
                checker.raised_in = tx
                raise RuntimeError(f"boom in {e.name}")
            if kind == "base":
                raise Interrupt(e.name)
            if kind == "reject":
                if not e.name.endswith(("State", "End")):
                    checker.rejected.add(e.name)
                return False
            if kind.startswith("queue:"):
                target = kind.split(":")[1]
                if checker.queue_budget <= 0 or target not in mach.state_names:
                    return None
                checker.queue_budget -= 1
                if mach.add1(target) is am.Result.QUEUED:
                    q = mach.queue()
                    if q and q[-1].queue_tick:
                        checker.handed_out.append(q[-1].queue_tick)
            return None

        attrs[method] = handler
    return type(f"RandomHandlers{index}", (), attrs)()


class MachineInvariants(RuleBasedStateMachine):
    mach: am.Machine
    checker: Checker

    @initialize(
        schema=schemas(),
        bindings=st.lists(
            st.dictionaries(
                # handlers every transition meets, often: several bindings
                # defining the same one matter
                st.one_of(
                    st.sampled_from(["exception_state", "exception_enter", "any_enter"]),
                    st.sampled_from(handler_names([*NAMES, "Exception"])),
                ),
                st.sampled_from(BEHAVIOURS),
                max_size=5,
            ),
            min_size=1,
            max_size=3,
        ),
    )
    def setup(self, schema: dict[str, am.State], bindings: list[dict[str, str]]) -> None:
        self.checker = Checker()
        self.mach = am.Machine(
            schema, tracers=[self.checker], handler_timeout=None, strict_schema=False
        )
        # a small bound keeps livelocks short; the rule is checked at any bound
        self.mach.auto_retry_limit = 3
        self.aborts = 0
        known = set(handler_names([*schema, "Exception"]))
        for i, behaviour in enumerate(bindings):
            mine = {k: v for k, v in behaviour.items() if k in known}
            # the first binding re-adds a schema error (semantics §5.1): handlers run
            self._call(self.mach.bind_handlers, make_handlers(mine, self.checker, self.mach, i))
        self.last_queue_tick = self.mach.queue_tick()
        self.names = list(schema)

    def _states(self, data: st.DataObject) -> list[str]:
        return data.draw(st.lists(st.sampled_from(self.names), min_size=1, max_size=3))

    def _call(self, fn: Any, *args: Any, budget: int = 4) -> Any:
        self.checker.queue_budget = budget
        try:
            return fn(*args)
        except Interrupt:
            # the queue was dropped with the transition in progress
            self.aborts += 1
            self.checker.expect_auto = None
            self.checker.current = None
            return None

    @rule(data=st.data())
    def add(self, data: st.DataObject) -> None:
        self._call(self.mach.add, self._states(data))

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        self._call(self.mach.remove, self._states(data))

    @rule(data=st.data())
    def set(self, data: st.DataObject) -> None:
        self._call(self.mach.set, self._states(data))

    @rule(data=st.data())
    def toggle(self, data: st.DataObject) -> None:
        self._call(self.mach.toggle, self._states(data))

    @rule(data=st.data())
    def dry_run(self, data: st.DataObject) -> None:
        before = self.mach.clock()
        failures = self.checker.failures
        aborts = self.aborts
        self._call(self.mach.can_add, self._states(data), budget=0)
        after = self.mach.clock()
        # a raising handler adds Exception right after the check (semantics §5.6): that
        # is a real transition (with its auto states), so only a clean check counts
        if self.checker.failures == failures and self.aborts == aborts:
            assert after == before

    @rule()
    def add_err(self) -> None:
        self._call(self.mach.add_err, ValueError("random"))

    @invariant()
    def ticks_match_activity(self) -> None:
        if not hasattr(self, "mach"):
            return
        m = self.mach
        active = set(m.active_states())
        for name, tick in m.clock().items():
            assert (tick % 2 == 1) == (name in active), (name, tick, m.string_all())

    @invariant()
    def per_transition_checks(self) -> None:
        if hasattr(self, "checker"):
            assert not self.checker.errors, self.checker.errors
            assert self.checker.expect_auto is None

    @invariant()
    def queue_ticks_strictly_increase(self) -> None:
        if not hasattr(self, "mach"):
            return
        qt = self.mach.queue_tick()
        assert qt >= self.last_queue_tick
        self.last_queue_tick = qt
        handed = self.checker.handed_out
        # no queue tick is handed out twice, even across a dropped queue
        assert handed == sorted(set(handed)), handed
        assert not handed or handed[-1] <= qt
        assert self.mach.queue_len() == 0
        assert self.mach.transition is None

    def teardown(self) -> None:
        if not hasattr(self, "mach"):
            return
        # never wedged: a later mutation is still processed
        before = self.mach.queue_tick()
        res = self._call(self.mach.add1, "Exception")
        assert self.mach.queue_tick() >= before + 1
        # the add itself can be canceled: re-resolving the active states may
        # remove one whose exit handler rejects, or imply one whose state
        # handler raises (recovered with partial final states: Exception is
        # active, the result CANCELED) -- both found by hypothesis
        if res is am.Result.EXECUTED:
            assert self.mach.is1("Exception")
        assert self.mach.queue_len() == 0
        assert self.mach.transition is None


MachineInvariants.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMachineInvariants = MachineInvariants.TestCase
