"""The reference's ``pkg/rpc/netmach_test.go`` on a network machine.

Each test builds the reference's source fixture (``NoRels``, ``Rels`` or a
custom schema, always with ``ErrOnClient`` from ``StateSourceStates`` and the
reference's state order ``Exception A B C D ErrOnClient``), connects a client
over the in-memory transport and asserts on ``client.netmach``. The reference's
blocking mutations (``w.Add(...)`` returns the result) are the awaitable forms
here (``await nm.call_add(...)``); ``TestWhen2`` and ``TestWhenQueue`` use the
synchronous forms (``nm.add(...)`` returns ``QUEUED`` and sends in order).
As the reference's ``disposeTest``, every test ends by asserting that neither
the client's nor the server's machine ever had ``Exception`` active.

Not here: ``TestPipes`` and ``TestNestedMutation`` (covered elsewhere).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from textwrap import dedent
from typing import Any

import anyio
import anyio.abc
import pytest
from rpc_util import rpc_pair

import asyncmachine_trio as am
from asyncmachine_trio import rpc


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """On trio and on asyncio (real clocks: some transports are real sockets)."""
    return str(request.param)


pytestmark = pytest.mark.anyio

#: the reference fixtures' state order: SAdd(ss.Names, StateSourceStates.Names())
NAMES = ["Exception", "A", "B", "C", "D", "ErrOnClient"]
ERR_ON_CLIENT = am.State(require=(am.EXCEPTION,))


class NoRels(rpc.StateSourceStates):
    """``utils.NewNoRelsNetSrc``: A, B, C, D without relations."""

    A = am.State()
    B = am.State()
    C = am.State()
    D = am.State()


class Rels(rpc.StateSourceStates):
    """``utils.NewRelsNetSrc``: the core suite's relations between A, B, C, D."""

    A = am.State(auto=True, require=("C",))
    B = am.State(multi=True, add=("C",))
    C = am.State(after=("D",))
    D = am.State(add=("C", "B"))


def no_rels(initial: Sequence[str] | None = None) -> am.Machine:
    src = am.Machine(NoRels, id="ns-test")
    src.verify_states(NAMES)
    if initial is not None:
        src.set(initial)
    return src


def rels(initial: Sequence[str] | None = None) -> am.Machine:
    src = am.Machine(Rels, id="ns-test")
    src.verify_states(NAMES)
    if initial is not None:
        src.set(initial)
    return src


def custom(schema: Mapping[str, am.State]) -> am.Machine:
    """``utils.NewCustomNetSrc``: the schema plus ``ErrOnClient``."""
    return am.Machine({**schema, "ErrOnClient": ERR_ON_CLIENT}, id="t-test")


@asynccontextmanager
async def net(src: am.Machine) -> AsyncIterator[rpc.NetworkMachine]:
    """``NewTest`` + ``disposeTest``: a ready network machine of ``src``; on exit
    no error was ever raised on the client or the server."""
    async with rpc_pair(src, name="t") as (server, client):
        nm = client.netmach
        assert nm.remote_id == src.id
        yield nm
        assert client.mach.tick(am.EXCEPTION) == 0, client.mach.err
        assert server.mach.tick(am.EXCEPTION) == 0, server.mach.err


def assert_states(nm: am.Machine, want: Sequence[str]) -> None:
    """The reference's ``assertStates`` (ElementsMatch of the active states)."""
    got = nm.active_states()
    assert sorted(got) == sorted(want), got


def assert_time(nm: am.Machine, states: Sequence[str], ticks: Sequence[int]) -> None:
    got = list(nm.time(states))
    assert got == list(ticks), got


async def resolved(*waiters: am.Waiter) -> None:
    """Await resolved waiters (a hang fails after 2 s)."""
    with anyio.fail_after(2):
        for w in waiters:
            await w


EXECUTED, CANCELED, QUEUED = am.Result.EXECUTED, am.Result.CANCELED, am.Result.QUEUED


async def test_single_state_active() -> None:
    async with net(no_rels()) as nm:
        assert await nm.call_add1("A") is EXECUTED
        assert_states(nm, ["A"])


async def test_multiple_states_active() -> None:
    async with net(no_rels()) as nm:
        await nm.call_add(["A"])
        await nm.call_add(["B"])
        assert_states(nm, ["A", "B"])


async def test_expose_all_state_names() -> None:
    src = no_rels(["A"])
    async with net(src) as nm:
        assert {"A", "B", "C", "D"} <= set(nm.state_names)
        assert list(nm.state_names) == NAMES == list(src.state_names)


async def test_state_set() -> None:
    async with net(no_rels(["A"])) as nm:
        assert_states(nm, ["A"])
        await nm.call_set(["B"])
        assert_states(nm, ["B"])


async def test_state_add() -> None:
    async with net(no_rels(["A"])) as nm:
        await nm.call_add(["B"])
        assert_states(nm, ["A", "B"])


async def test_state_remove() -> None:
    async with net(no_rels(["B", "C"])) as nm:
        assert_states(nm, ["B", "C"])
        await nm.call_remove(["C"])
        assert_states(nm, ["B"])


async def test_remove_relation() -> None:
    src = custom({"A": am.State(), "B": am.State(), "C": am.State(remove=("D",)), "D": am.State()})
    src.add1("D")
    async with net(src) as nm:
        assert_states(nm, ["D"])
        # C deactivates D
        await nm.call_add(["C"])
        assert_states(nm, ["C"])


async def test_remove_relation_simultaneous() -> None:
    src = custom({"A": am.State(), "B": am.State(), "C": am.State(remove=("D",)), "D": am.State()})
    src.add1("D")
    async with net(src) as nm:
        assert await nm.call_set(["C", "D"]) is CANCELED
        assert_states(nm, ["D"])


CROSS_BLOCKING = {
    "set_one_way": [("set", "C", ["C"])],
    "set_both_ways": [("set", "C", ["C"]), ("set", "D", ["D"])],
    "add_one_way": [("add", "C", ["C"])],
    "add_both_ways": [("add", "C", ["C"]), ("add", "D", ["D"])],
}


@pytest.mark.parametrize("steps", CROSS_BLOCKING.values(), ids=list(CROSS_BLOCKING))
async def test_remove_relation_cross_blocking(steps: list[tuple[str, str, list[str]]]) -> None:
    src = custom(
        {
            "A": am.State(),
            "B": am.State(),
            "C": am.State(remove=("D",)),
            "D": am.State(remove=("C",)),
        }
    )
    src.add1("D")
    async with net(src) as nm:
        # (D:1) [A:0 B:0 C:0]
        for kind, state, want in steps:
            assert await nm.call(kind, [state]) is EXECUTED
            assert_states(nm, want)


async def test_add_relation() -> None:
    src = custom(
        {"A": am.State(remove=("D",)), "B": am.State(), "C": am.State(add=("D",)), "D": am.State()}
    )
    async with net(src) as nm:
        await nm.call_set(["C"])
        assert_states(nm, ["C", "D"])  # D activated by C
        await nm.call_set(["A", "C"])
        assert_states(nm, ["A", "C"])  # D skipped: blocked at the same time


async def test_require_relation() -> None:
    src = custom({"A": am.State(require=("D",)), "B": am.State(), "C": am.State(), "D": am.State()})
    async with net(src) as nm:
        await nm.call_set(["C", "D"])
        assert_states(nm, ["C", "D"])


async def test_require_relation_when_required_isnt_active() -> None:
    src = custom({"A": am.State(), "B": am.State(), "C": am.State(require=("D",)), "D": am.State()})
    src.add1("A")
    async with net(src) as nm:
        await nm.call_set(["C", "A"])
        assert_states(nm, ["A"])  # C is not activated


async def test_auto_states() -> None:
    src = custom(
        {
            "A": am.State(),
            "B": am.State(auto=True, require=("A",)),
            "C": am.State(require=("D",)),
            "D": am.State(),
        }
    )
    async with net(src) as nm:
        assert await nm.call_add(["A"]) is EXECUTED
        assert_states(nm, ["A", "B"])  # the dependent auto state is set


async def test_switch() -> None:
    src = custom({"A": am.State(), "B": am.State(), "C": am.State(require=("D",)), "D": am.State()})
    src.add1("A")
    async with net(src) as nm:
        assert nm.switch(["A", "B"]) == "A"
        assert nm.switch(["C", "B"]) == ""
        assert nm.switch(["C"], ["B", "A"]) == "A"


async def test_regression_remove_cross_blocked_by_implied() -> None:
    src = custom(
        {"A": am.State(remove=("B",)), "B": am.State(remove=("A",)), "Z": am.State(add=("B",))}
    )
    async with net(src) as nm:
        await nm.call_set(["Z"])
        assert_states(nm, ["Z", "B"])


async def test_regression_implied_block_by_being_removed() -> None:
    src = custom(
        {
            "Wet": am.State(require=("Water",)),
            "Dry": am.State(remove=("Wet",)),
            "Water": am.State(add=("Wet",), remove=("Dry",)),
        }
    )
    async with net(src) as nm:
        await nm.call_set(["Dry"])
        await nm.call_set(["Water"])
        assert_states(nm, ["Water", "Wet"])


async def test_when2() -> None:
    async with net(no_rels()) as nm:
        w1 = nm.when(["A", "B"])
        w2 = nm.when(["A", "B"])
        assert not w1.is_set() and not w2.is_set()
        # the synchronous form: sent through the client's outbox
        assert nm.add(["A", "B"]) is QUEUED
        await resolved(w1, w2)
        assert_states(nm, ["A", "B"])


async def test_when_active() -> None:
    async with net(no_rels(["A"])) as nm:
        w = nm.when(["A"])
        assert w.is_set()
        await resolved(w)
        assert_states(nm, ["A"])


async def test_when_not2() -> None:
    async with net(no_rels(["A", "B"])) as nm:
        w1 = nm.when_not(["A", "B"])
        w2 = nm.when_not(["A", "B"])
        assert not w1.is_set() and not w2.is_set()
        await nm.call_remove(["A", "B"])
        assert w1.is_set() and w2.is_set()
        await resolved(w1, w2)


async def test_when_not_active() -> None:
    async with net(no_rels(["A"])) as nm:
        w = nm.when_not(["B"])
        assert w.is_set()
        await resolved(w)
        assert_states(nm, ["A"])


async def test_partial_auto() -> None:
    src = custom(
        {
            "A": am.State(),
            "B": am.State(),
            "C": am.State(auto=True, require=("B",)),
            "D": am.State(auto=True, require=("B",)),
        }
    )
    src.add1("A")
    async with net(src) as nm:
        await nm.call_add(["A"])
        assert_states(nm, ["A"])


def multi_b() -> am.Machine:
    return custom({"A": am.State(), "B": am.State(multi=True), "C": am.State(), "D": am.State()})


ABCD = ["A", "B", "C", "D"]
# TestTime / TestClock: (mutation, states, active after, ticks of A B C D after)
TIME_SCRIPT: list[tuple[str, list[str], list[str], list[int]]] = [
    ("add", ["A", "B"], ["A", "B"], [1, 1, 0, 0]),
    ("add", ["A", "B"], ["A", "B"], [1, 3, 0, 0]),
    ("add", ["A", "B", "C"], ["A", "B", "C"], [1, 5, 1, 0]),
    ("set", ["D"], ["D"], [2, 6, 2, 1]),
    ("add", ["D", "C"], ["D", "C"], [2, 6, 3, 1]),
    ("remove", ["B", "C"], ["D"], [2, 6, 4, 1]),
    ("add", ["A", "B"], ["D", "A", "B"], [3, 7, 4, 1]),
]


async def run_time_script(nm: rpc.NetworkMachine) -> None:
    assert_time(nm, ABCD, [0, 0, 0, 0])  # ()[]
    for kind, states, active, ticks in TIME_SCRIPT:
        assert await nm.call(kind, states) is EXECUTED
        assert_states(nm, active)
        assert_time(nm, ABCD, ticks)


async def test_time() -> None:
    src = multi_b()
    async with net(src) as nm:
        await run_time_script(nm)
        before = nm.time(ABCD)
        await nm.call_add(["C"])
        now = nm.time(ABCD)
        assert_states(nm, ["A", "B", "D", "C"])
        assert_time(nm, ABCD, [3, 7, 5, 1])
        assert now.after(True, before)
        assert not before.after(True, now)
        assert list(src.time(ABCD)) == list(now)


async def test_when_time() -> None:
    async with net(no_rels(["A", "B"])) as nm:
        # (A:1 B:1)
        w = nm.when_time(["A", "B"], [5, 2])
        # tick some, but not enough
        await nm.call_remove(["A", "B"])
        await nm.call_add(["A", "B"])
        assert_time(nm, ["A", "B"], [3, 3])
        assert not w.is_set()
        await nm.call_remove1("A")
        assert not w.is_set()
        await nm.call_add1("A")
        # (A:5 B:3)
        assert w.is_set()
        await resolved(w)


def is_fixture() -> am.Machine:
    src = custom(
        {
            "A": am.State(),
            "B": am.State(auto=True, require=("A",)),
            "C": am.State(),
            "D": am.State(),
        }
    )
    src.add(["A", "B"])
    return src


async def test_is() -> None:
    async with net(is_fixture()) as nm:
        assert nm.is_(["A", "B"])
        assert not nm.is_(["A", "B", "C"])


async def test_not() -> None:
    async with net(is_fixture()) as nm:
        assert not nm.not_(["A", "B"])
        assert not nm.not_(["A", "B", "C"])  # partially active
        assert nm.not1("D")


async def test_any() -> None:
    async with net(is_fixture()) as nm:
        assert nm.any(["A", "B"], ["C"])
        assert nm.any(["A", "B", "C"], ["A"])
        assert not nm.any(["A", "C"], ["D"])


async def test_clock() -> None:
    async with net(multi_b()) as nm:
        await run_time_script(nm)
        clock = nm.clock()
        want = {"A": 3, "B": 7, "C": 4, "D": 1, "Exception": 0}
        assert {k: clock[k] for k in want} == want
        assert nm.clock(["A", "B"]) == {"A": 3, "B": 7}
        assert nm.tick("A") == 3


INSPECT_START = """
    1 A
        |Tick     1
        |Auto     true
        |Require  C
    0 B
        |Tick     0
        |Multi    true
        |Add      C
    1 C
        |Tick     1
        |After    D
    0 D
        |Tick     0
        |Add      C B
    0 Exception
        |Tick     0
        |Multi    true
"""

INSPECT_END = """
    0 Exception
        |Tick     0
        |Multi    true
    1 A
        |Tick     3
        |Auto     true
        |Require  C
    1 B
        |Tick     1
        |Multi    true
        |Add      C
    1 C
        |Tick     3
        |After    D
    1 D
        |Tick     1
        |Add      C B
    0 ErrOnClient
        |Tick     0
        |Require  Exception
"""


def assert_inspect(nm: am.Machine, expected: str, states: Sequence[str] | None) -> None:
    """The reference's ``assertString``: dedented, newlines trimmed."""
    assert nm.inspect(states).strip("\n") == dedent(expected).strip("\n")


async def test_inspect() -> None:
    async with net(rels(["A", "C"])) as nm:
        # (A:1 C:1) [B:0 D:0 Exception:0]
        assert_inspect(nm, INSPECT_START, ["A", "B", "C", "D", "Exception"])
        await nm.call_remove(["C"])
        # () [A:2 B:0 C:2 D:0 Exception:0]
        await nm.call_add(["B"])
        # (A:3 B:1 C:3) [D:0 Exception:0]
        await nm.call_add(["D"])
        # (A:3 B:1 C:3 D:1) [Exception:0]
        assert_inspect(nm, INSPECT_END, None)


async def test_string() -> None:
    async with net(no_rels(["A", "B"])) as nm:
        assert nm.string() == "(A:1 B:1)"
        assert nm.string_all() == "(A:1 B:1) [Exception:0 C:0 D:0 ErrOnClient:0]"
        assert str(nm) == "(A:1 B:1)"


async def test_is_clock() -> None:
    async with net(no_rels()) as nm:
        c_a = nm.clock(["A"])
        c_all = nm.clock()
        assert nm.is_clock(c_all) and nm.is_clock(c_a)
        await nm.call_add(["A", "B"])
        assert not nm.is_clock(c_all)
        assert not nm.is_clock(c_a)


async def test_is_time() -> None:
    async with net(no_rels()) as nm:
        t_a = nm.time(["A"])
        t_all = nm.time()
        assert nm.is_time(t_a, ["A"]) and nm.is_time(t_all)
        await nm.call_add(["A", "B"])
        assert not nm.is_time(t_a, ["A"])
        assert not nm.is_time(t_all, None)


class WhenQueueTracer(am.Tracer):
    """``TestWhenQueueTracer``: on the transition activating A, mutate from a task
    (a tracer must not mutate synchronously) and wait for the queue tick 5."""

    def __init__(self, nursery: anyio.abc.TaskGroup) -> None:
        self.nursery = nursery
        self.done = anyio.Event()
        self.results: list[am.Result] = []
        self.active: list[str] = []

    def tracer_id(self) -> str:
        return "TestWhenQueue"

    def transition_end(self, transition: am.Transition) -> None:
        nm = transition.machine
        # only when setting A
        if transition.time_before.is1(nm.index1("A")):
            return
        self.nursery.start_soon(self.mutate, nm)

    async def mutate(self, nm: am.Machine) -> None:
        assert isinstance(nm, rpc.NetworkMachine)
        self.results = [nm.add1("B"), nm.add1("C"), nm.add1("D")]
        # the source's queue tick after A (2), B (3), C (4) and D (5)
        await nm.when_queue(5)
        self.active = nm.active_states()
        self.done.set()


async def test_when_queue() -> None:
    async with net(no_rels()) as nm, anyio.create_task_group() as nursery:
        tracer = WhenQueueTracer(nursery)
        nm.tracer_bind(tracer)
        assert nm.add1("A") is QUEUED
        with anyio.fail_after(2):
            await tracer.done.wait()
        assert tracer.results == [QUEUED] * 3
        assert sorted(tracer.active) == ["A", "B", "C", "D"]
        assert nm.queue_tick() == 5


async def test_when_query() -> None:
    async with net(no_rels(["A"])) as nm:
        when1 = nm.when_query(lambda c: c["A"] > c["B"] * 4)
        when2 = nm.when_query(lambda c: c["A"] < c["B"])
        await nm.call_add1("B")  # 1, 1
        await nm.call_remove1("A")  # 2, 1
        await nm.call_add1("A")  # 3, 1
        await nm.call_remove1("A")  # 4, 1
        assert not when1.is_set()
        assert not when2.is_set()
        await nm.call_add1("A")  # 5, 1 = match
        assert when1.is_set()
        assert not when2.is_set()
        await resolved(when1)


async def state_ctx_basic(m: am.Machine, add1: Any, remove1: Any) -> None:
    await add1("A")
    ctx1 = m.new_state_ctx("A")
    assert not ctx1.expired
    await remove1("A")
    assert ctx1.expired
    # an inactive state's context
    ctx2 = m.new_state_ctx("B")
    assert not ctx2.expired
    await add1("B")
    assert ctx2.expired


async def test_state_ctx_basic() -> None:
    # the reference runs it on the local source machine; here also on the mirror
    local = no_rels()

    async def local_add1(state: str) -> None:
        local.add1(state)

    async def local_remove1(state: str) -> None:
        local.remove1(state)

    await state_ctx_basic(local, local_add1, local_remove1)
    async with net(no_rels()) as nm:
        await state_ctx_basic(nm, nm.call_add1, nm.call_remove1)
