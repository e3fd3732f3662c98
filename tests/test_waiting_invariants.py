"""Hypothesis: a waiter is set exactly when semantics §8 says, never before.

A model re-evaluates every registered condition after each accepted transition
(a tracer sees them) and at registration; the machine resolves waiters from its
per-state index. Both must agree after every step -- also after a handler
raised a ``BaseException``: then every waiter of what the interrupted
transition applied resolves, and the ``when_queue`` waiters of the dropped
mutations do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import asyncmachine_trio as am

NAMES = ["A", "B", "C", "D", "E"]


@st.composite
def schemas(draw: st.DrawFn) -> dict[str, am.State]:
    rel = st.one_of(st.none(), st.lists(st.sampled_from(NAMES), max_size=2, unique=True))
    return {
        n: am.State(
            auto=draw(st.booleans()),
            multi=draw(st.booleans()),
            require=draw(rel),
            add=draw(rel),
            remove=draw(rel),
        )
        for n in NAMES
    }


class Interrupt(BaseException):
    """What an interrupting handler raises."""


class Entry:
    def __init__(
        self,
        waiter: am.Waiter,
        cond: Callable[[], bool],
        ctx: am.Ctx | None,
        at_reg: bool,
        is_queue: bool = False,
    ) -> None:
        self.waiter = waiter
        self.cond = cond
        self.ctx = ctx
        self.expected = at_reg or (ctx is not None and ctx.cancelled)
        self.is_queue = is_queue


class Model(am.Tracer):
    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.current: am.Transition | None = None

    def transition_start(self, tx: am.Transition) -> None:
        self.current = tx

    def transition_end(self, tx: am.Transition) -> None:
        self.current = None
        if not tx.is_accepted or tx.mutation.is_check:
            return
        self.evaluate()

    def evaluate(self, queue_only: bool = False) -> None:
        for e in self.entries:
            if e.expected or (queue_only and not e.is_queue):
                continue
            if e.cond() or (e.ctx is not None and e.ctx.cancelled):
                e.expected = True

    def interrupted(self, m: am.Machine) -> None:
        """A BaseException escaped: what the transition applied counts."""
        tx, self.current = self.current, None
        applied = tx is not None and list(m.time()) != list(tx.time_before)
        self.evaluate(queue_only=not applied)


class WaitingInvariants(RuleBasedStateMachine):
    mach: am.Machine
    model: Model

    @initialize(
        schema=schemas(),
        rejects=st.sets(st.sampled_from(NAMES), max_size=2),
        interrupts=st.dictionaries(
            st.sampled_from(NAMES), st.sampled_from(["enter", "state", "end"]), max_size=2
        ),
    )
    def setup(
        self, schema: dict[str, am.State], rejects: set[str], interrupts: dict[str, str]
    ) -> None:
        self.model = Model()
        self.mach = am.Machine(
            schema, tracers=[self.model], handler_timeout=None, strict_schema=False
        )
        # negotiation rejections, and handlers interrupting every other call
        # with a BaseException (no handler raises an Exception: no revert)
        attrs: dict[str, Any] = {f"{am.snake(s)}_enter": (lambda self, e: False) for s in rejects}
        calls = [0]

        def interrupt(self: Any, e: am.Event) -> None:
            calls[0] += 1
            if calls[0] % 2:
                e.machine.add1(NAMES[calls[0] % len(NAMES)])  # dropped with the queue
                raise Interrupt(e.name)

        for s, kind in interrupts.items():
            attrs[f"{am.snake(s)}_{kind}"] = interrupt
        # binding the first handlers re-adds a schema error (strict_schema=False):
        # that transition runs handlers too, and one may interrupt it
        self._mutate(lambda _: self.mach.bind_handlers(type("H", (), attrs)()), [])
        self.ctxs = [am.Ctx(), am.Ctx()]

    def _mutate(self, fn: Callable[[list[str]], Any], states: list[str]) -> None:
        try:
            fn(states)
        except Interrupt:
            self.model.interrupted(self.mach)

    def _register(self, waiter: am.Waiter, cond: Callable[[], bool], ctx: Any, now: bool) -> None:
        self.model.entries.append(Entry(waiter, cond, ctx, now))

    def _ctx(self, data: st.DataObject) -> am.Ctx | None:
        i = data.draw(st.sampled_from([None, 0, 1]))
        return None if i is None else self.ctxs[i]

    @rule(data=st.data(), states=st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))
    def when(self, data: st.DataObject, states: list[str]) -> None:
        m, ctx = self.mach, self._ctx(data)
        cond = lambda: m.is_(states)  # noqa: E731
        self._register(m.when(states, ctx), cond, ctx, cond())

    @rule(data=st.data(), states=st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))
    def when_not(self, data: st.DataObject, states: list[str]) -> None:
        m, ctx = self.mach, self._ctx(data)
        cond = lambda: not m.any1(*states)  # noqa: E731
        self._register(m.when_not(states, ctx), cond, ctx, cond())

    @rule(data=st.data(), state=st.sampled_from(NAMES), n=st.integers(0, 4))
    def when_ticks(self, data: st.DataObject, state: str, n: int) -> None:
        m, ctx = self.mach, self._ctx(data)
        target = m.tick(state) + n
        cond = lambda: m.tick(state) >= target  # noqa: E731
        self._register(m.when_ticks(state, n, ctx), cond, ctx, cond())

    @rule(
        data=st.data(),
        pairs=st.lists(
            st.tuples(st.sampled_from(NAMES), st.integers(0, 6)),
            min_size=1,
            max_size=3,
            unique_by=lambda p: p[0],
        ),
    )
    def when_time(self, data: st.DataObject, pairs: list[tuple[str, int]]) -> None:
        m, ctx = self.mach, self._ctx(data)
        states = [p[0] for p in pairs]
        ticks = [p[1] for p in pairs]
        cond = lambda: all(m.tick(s) >= t for s, t in pairs)  # noqa: E731
        self._register(m.when_time(states, ticks, ctx), cond, ctx, cond())

    @rule(data=st.data(), state=st.sampled_from(NAMES))
    def when_next_active(self, data: st.DataObject, state: str) -> None:
        m, ctx = self.mach, self._ctx(data)
        tick = m.tick(state)
        target = tick + (2 if tick % 2 else 1)
        cond = lambda: m.tick(state) >= target  # noqa: E731
        self._register(m.when_next_active(state, ctx), cond, ctx, False)

    @rule(data=st.data(), state=st.sampled_from(NAMES), k=st.integers(1, 3))
    def when_query(self, data: st.DataObject, state: str, k: int) -> None:
        m, ctx = self.mach, self._ctx(data)
        cond = lambda: m.tick(state) >= k  # noqa: E731
        w = m.when_query(lambda clock: clock[state] >= k, ctx)
        self._register(w, cond, ctx, bool(ctx is not None and ctx.cancelled))

    @rule(ahead=st.integers(0, 3))
    def when_queue(self, ahead: int) -> None:
        m = self.mach
        target = m.queue_tick() + ahead
        cond = lambda: m.queue_tick() >= target  # noqa: E731
        self.model.entries.append(Entry(m.when_queue(target), cond, None, cond(), True))

    @rule(i=st.sampled_from([0, 1]))
    def cancel_ctx(self, i: int) -> None:
        self.ctxs[i].cancel()
        self.ctxs[i] = am.Ctx()

    @rule(states=st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))
    def add(self, states: list[str]) -> None:
        self._mutate(self.mach.add, states)

    @rule(states=st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))
    def remove(self, states: list[str]) -> None:
        self._mutate(self.mach.remove, states)

    @rule(states=st.lists(st.sampled_from(NAMES), max_size=3))
    def set(self, states: list[str]) -> None:
        self._mutate(self.mach.set, states)

    @invariant()
    def waiters_match_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        for e in self.model.entries:
            assert e.waiter.is_set() == e.expected, (e.waiter, e.expected, self.mach.string_all())


WaitingInvariants.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestWaitingInvariants = WaitingInvariants.TestCase
