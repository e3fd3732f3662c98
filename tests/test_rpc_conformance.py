"""The conformance vectors replayed through aRPC: a network machine must act as its source.

Each ``kind: machine`` vector whose top-level ops can be expressed on a network
machine is built exactly as ``test_conformance.py`` builds it (the replay engine
``conformance.py``: schema, ``verify_states``, ``initial`` injected, setup ops,
handler bindings, all on the source machine ``v``), then a client is connected
to it over the in-memory transport (``rpc_pair``) and the engine's *target* is
pointed at ``client.netmach``:

* mutations go over the wire through the awaitable forms (``call_add``,
  ``call_set``, ``call_toggle1``, ``call_add_err_state``...) and their result is
  the source's (``QUEUED`` carries the source's queue tick in
  ``netmach.last_queue_tick``);
* reads, waiters and state contexts run on the network machine, answered from
  the mirrored clock; a side-effect-free read is also run on the source and
  must give the same value;
* every ``expect`` and ``observed`` value is checked on the network machine as
  the local engine checks it on a local machine, with two rules of the mirror:
  a network machine lists active states in state order (as the reference's
  network machine: ``observed`` active lists are compared in that order), and
  ``err`` is the network machine's when an ``add_err*`` sent through it stored
  one there (as the reference's network machine does), else the source's (a
  handler's panic happens there): errors are not synchronised;
* after the handshake and after every op the mirror must equal the source
  (names, schema, ticks, queue tick, machine tick, active set).

Every vector runs twice: ``call`` as above, and ``push``, where the mutations
run on the source itself and the network machine must catch up from the
server's clock pushes alone (no mutation call, no full sync) before the op's
checks.

Handlers stay on the source, so the ops a handler runs are executed and checked
there, inside the remote mutation that triggered them.

Which vectors are replayed is decided by op kind only (:data:`LOCAL_ONLY_OPS`,
each with its reason): a vector is replayed when none of its top-level ops is
local-only. Every op kind of the engine is classified
(``test_every_op_kind_is_classified``) and the numbers of replayed vectors and
ops are pinned (``test_replayed_counts``), so nothing is dropped silently.

The last tests cover what the replay leaves out on purpose: the source's
schema changing (``verify_states`` / ``set_schema``) under a connected client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import pytest
from conformance import (
    OP_FIELDS,
    OPS,
    WAITER_OPS,
    Outcome,
    Replay,
    assert_match,
    check_keys,
    load_vectors,
    same,
)
from rpc_util import rpc_pair

import asyncmachine_trio as am
from asyncmachine_trio import rpc


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every replay on trio and on asyncio (real clocks: the transports are real)."""
    return str(request.param)


Mutate = Callable[[rpc.NetworkMachine, Mapping[str, Any], Any], Awaitable[am.Result]]


def _err(op: Mapping[str, Any]) -> Exception:
    return RuntimeError(op["err"])


#: mutations sent over the wire, each through the network machine's awaitable form
REMOTE_MUTATIONS: dict[str, Mutate] = {
    "add": lambda nm, op, args: nm.call_add(op["states"], args),
    "remove": lambda nm, op, args: nm.call_remove(op["states"], args),
    "set": lambda nm, op, args: nm.call_set(op["states"], args),
    "toggle": lambda nm, op, args: nm.call_toggle(op["states"], args),
    "add1": lambda nm, op, args: nm.call_add1(op["state"], args),
    "remove1": lambda nm, op, args: nm.call_remove1(op["state"], args),
    "toggle1": lambda nm, op, args: nm.call_toggle1(op["state"], args),
    "add_err": lambda nm, op, args: nm.call_add_err(_err(op), args),
    "add_err_state": lambda nm, op, args: nm.call_add_err_state(op["state"], _err(op), args),
}

#: op kinds a network machine cannot answer like its source (a vector using one
#: at the top level is not replayed remotely), with the reason
LOCAL_ONLY_OPS: dict[str, str] = {
    "can_add": "dry run: always EXECUTED on a network machine (by design, as the reference)",
    "can_remove": "dry run: always EXECUTED on a network machine (by design, as the reference)",
    "ev_add1": "traced mutation: its source is a handler event, which exists on the source only",
    "ev_remove1": "traced mutation: its source is a handler event, which exists on the source only",
    "eval": "runs code inside the machine's queue: the source's, not reachable over the wire",
    "panic_to_err": "catches an exception raised by local code: local by definition",
    "panic_to_err_state": "catches an exception raised by local code: local by definition",
    "queue_len": "queue inspection: a network machine has no queue",
    "is_queued": "queue inspection: a network machine has no queue",
    "will_be1": "queue inspection: a network machine has no queue",
    "will_be_removed1": "queue inspection: a network machine has no queue",
    "when_queue_ends": "queue inspection: a network machine has no queue",
    "when_args": "args are not synchronised: raises on a network machine (by design)",
    "verify_states": "schema change (state order) of one machine",
    "set_schema": "schema change of one machine",
    "schema_ver": "a per-machine schema counter, not synchronised",
    "export_import": "export / import of one machine's state",
    "dispose": "disposes one machine",
}

#: everything else reads the mirrored clock / schema or waits on it
MIRROR_READ_OPS = frozenset(OPS) - set(REMOTE_MUTATIONS) - set(LOCAL_ONLY_OPS)

#: reads without side effects: also run on the source, the two values must agree
#: (waiters, state contexts and snapshots register something: checked via expect)
PURE_READ_OPS = (
    MIRROR_READ_OPS
    - WAITER_OPS
    - {
        "cancel_ctx",
        "state_ctx",
        "snapshot_clock",
        "snapshot_time",
    }
)

MACHINE_VECTORS = load_vectors("machine")


def local_only_ops(vector: Mapping[str, Any]) -> list[str]:
    """The top-level ops of ``vector`` a network machine cannot replay."""
    return [op["op"] for op in vector["ops"] if op["op"] in LOCAL_ONLY_OPS]


REMOTE_VECTORS = [v for v in MACHINE_VECTORS if not local_only_ops(v)]
LOCAL_VECTORS = [v for v in MACHINE_VECTORS if local_only_ops(v)]


class RemoteReplay(Replay):
    """The engine's replay with ``target`` = a network machine mirroring ``mach``.

    ``mode="call"``: mutations are sent through the network machine and their
    clock comes back in the response. ``mode="push"``: mutations run on the
    source itself (their results are local) and the network machine must catch
    up from the server's clock pushes alone before the op is checked.
    """

    nm: rpc.NetworkMachine

    def __init__(self, vector: Mapping[str, Any], mode: str = "call") -> None:
        super().__init__(vector)
        assert mode in ("call", "push"), mode
        self.mode = mode

    async def arun(self) -> int:
        """Replay the vector remotely; returns how many mutations were sent / pushed."""
        self.prepare()
        self.check_initial()  # the source, as the local replay
        sent = 0
        async with rpc_pair(self.mach, name="conf") as (server, client):
            self.nm = client.netmach
            self.target = self.nm
            self.check_mirror(f"{self.vid} handshake")
            self.check_initial()  # the same values on the network machine
            ops = self.vector["ops"]
            observed = self.vector["observed"]
            assert len(ops) == len(observed), f"{self.vid}: ops and observed differ"
            for i, (op, obs) in enumerate(zip(ops, observed, strict=True)):
                where = f"{self.vid} op #{i} {op['op']} (remote, {self.mode})"
                if op["op"] in REMOTE_MUTATIONS and self.mode == "push":
                    self.target = self.mach
                    try:
                        out = self.step(op, obs, where)
                    finally:
                        self.target = self.nm
                    await self.wait_mirrored(where)
                    sent += out.raised is None
                elif op["op"] in REMOTE_MUTATIONS:
                    out = await self.remote_step(op, obs, where)
                    sent += out.raised is None  # an unknown state raises before sending
                else:
                    assert op["op"] in MIRROR_READ_OPS, f"{where}: local-only op replayed"
                    out = self.step(op, obs, where)
                    if op["op"] in PURE_READ_OPS:
                        self.check_same_as_source(op, out, where)
                self.check_expect(op, out, where)
                self.check_observed(i, op, obs, out, where)
                self.check_mirror(where)
            assert server.mach.tick(am.EXCEPTION) == 0, f"{self.vid}: server error"
            assert client.mach.tick(am.EXCEPTION) == 0, f"{self.vid}: client error"
            # Hello + Handshake (+ one call per mutation): no retry, no full re-sync
            calls = 2 + sent if self.mode == "call" else 2
            assert client.calls == calls, f"{self.vid}: {client.calls} calls, not {calls}"
            if self.mode == "push" and sent:
                assert server.pushes >= 1, f"{self.vid}: no push"
        return sent

    async def remote_step(
        self, op: Mapping[str, Any], obs: Mapping[str, Any], where: str
    ) -> Outcome:
        """``Replay.step`` for a mutation sent through the network machine."""
        self.execute_check(op)
        calls_from, nested_from = len(self.calls), len(self.nested)
        obs_ret = obs.get("ret")
        may_raise = bool(op.get("expect", {}).get("raises")) or (
            isinstance(obs_ret, Mapping) and "raised" in obs_ret
        )
        raised: BaseException | None = None
        try:
            with anyio.fail_after(5):
                res = await REMOTE_MUTATIONS[op["op"]](self.nm, op, self.args(op, None))
        except am.AsyncMachineError as exc:
            if not may_raise:
                raise
            raised = exc
            ret: Any = {"raised": self.error_text(exc)}
        else:
            ret = self.remote_result(res)
        self.raise_failures(where)
        return Outcome(ret, raised, self.calls[calls_from:], self.nested[nested_from:])

    def step(self, op: Mapping[str, Any], obs: Mapping[str, Any], where: str) -> Outcome:
        out = super().step(op, obs, where)
        if out.raised is not None:
            out.ret = {"raised": self.error_text(out.raised)}
        return out

    def error_text(self, exc: BaseException) -> str:
        """An error's text as the source would word it: the network machine names
        itself (``... for rnm-conf``) where the source names ``v``."""
        return str(exc).replace(f"for {self.nm.id}", f"for {self.mach.id}")

    def execute_check(self, op: Mapping[str, Any]) -> None:
        """The op-level checks ``Replay.execute`` does before running an op."""
        check_keys(f"{self.vid} op {op['op']}", op, OP_FIELDS)
        assert op.get("note") is None, f"{self.vid}: a top-level op with a note: {op}"

    def remote_result(self, res: Any) -> str | int:
        """A remote mutation's result: ``executed`` / ``canceled`` or the queue tick."""
        assert isinstance(res, am.Result), f"a remote mutation returned {res!r}"
        if res is am.Result.QUEUED:
            tick = self.nm.last_queue_tick
            assert tick >= 2, f"queue tick {tick!r}"
            return tick
        return str(res)

    def observed_active_order(self, want: list[str]) -> list[str]:
        """A network machine lists active states in state order (the reference's does)."""
        order = {name: i for i, name in enumerate(self.target.state_names)}
        return sorted(want, key=lambda name: order.get(name, len(order)))

    def scenario_err(self) -> Exception | None:
        """An ``add_err*`` sent through a network machine stores the error there (as
        the reference's); a handler's panic is stored on the source: errors are not
        synchronised, so the network machine's error counts first."""
        nm_err = self.nm.err if self.target is self.nm else None
        return nm_err if nm_err is not None else self.mach.err

    def check_same_as_source(self, op: Mapping[str, Any], out: Outcome, where: str) -> None:
        """Run a side-effect-free read on the source too: the same value."""
        self.target = self.mach
        try:
            try:
                local: Any = self.execute(op, None)
            except am.AsyncMachineError as exc:
                local = {"raised": str(exc)}
        finally:
            self.target = self.nm
        if op["op"] == "active_states" and "states" not in op:
            local = self.observed_active_order(local)
        assert_match(same(local, out.ret), f"{where}: source vs network machine", local, out.ret)

    async def wait_mirrored(self, where: str) -> None:
        """Let the server push and the client apply (``check_mirror`` follows)."""
        with anyio.fail_after(2):
            await anyio.wait_all_tasks_blocked()
        self.check_mirror(f"{where}: after the pushes")

    def check_mirror(self, where: str) -> None:
        """The network machine equals its source."""
        src, nm = self.mach, self.nm
        got: dict[str, Any] = {
            "names": list(nm.state_names),
            "schema": dict(nm.schema),
            "time": list(nm.time()),
            "queue_tick": nm.queue_tick(),
            "machine_tick": nm.machine_tick(),
            "active": list(nm.active_states()),
        }
        want: dict[str, Any] = {
            "names": list(src.state_names),
            "schema": dict(src.schema),
            "time": list(src.time()),
            "queue_tick": src.queue_tick(),
            "machine_tick": src.machine_tick(),
            "active": self.observed_active_order(list(src.active_states())),
        }
        for key, value in want.items():
            assert_match(got[key] == value, f"{where}: mirror {key}", value, got[key])


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["call", "push"])
@pytest.mark.parametrize("vector", REMOTE_VECTORS, ids=[v["id"] for v in REMOTE_VECTORS])
async def test_vector_remote(vector: dict[str, Any], mode: str) -> None:
    sent = await RemoteReplay(vector, mode).arun()
    # every remote mutation is sent, except those naming an unknown state
    want = 0
    for op, obs in zip(vector["ops"], vector["observed"], strict=True):
        ret = obs.get("ret")
        raises = op.get("expect", {}).get("raises") or (isinstance(ret, dict) and "raised" in ret)
        want += op["op"] in REMOTE_MUTATIONS and not raises
    assert sent == want


def test_every_op_kind_is_classified() -> None:
    """Each op kind of the engine is remote, a mirror read or local-only (one of them)."""
    kinds = [set(REMOTE_MUTATIONS), set(MIRROR_READ_OPS), set(LOCAL_ONLY_OPS)]
    assert set().union(*kinds) == set(OPS)
    assert sum(len(k) for k in kinds) == len(OPS)
    # the mutations of the engine are all remote or local-only (traced ones)
    assert {"add", "set", "remove", "toggle1", "add_err_state"} <= set(REMOTE_MUTATIONS)


# the numbers of replayed vectors and ops (a change must be deliberate)
REPLAYED_VECTORS = 84  # of 98 machine vectors
REPLAYED_OPS = 172  # top-level ops of the replayed vectors
REPLAYED_MUTATIONS = 112  # of which sent over the wire
SKIPPED_VECTORS = 14  # with a local-only op


def test_replayed_counts() -> None:
    ops = [op for v in REMOTE_VECTORS for op in v["ops"]]
    mutations = [op for op in ops if op["op"] in REMOTE_MUTATIONS]
    assert (len(REMOTE_VECTORS), len(ops), len(mutations), len(LOCAL_VECTORS)) == (
        REPLAYED_VECTORS,
        REPLAYED_OPS,
        REPLAYED_MUTATIONS,
        SKIPPED_VECTORS,
    )
    assert len(REMOTE_VECTORS) + len(LOCAL_VECTORS) == len(MACHINE_VECTORS)


# --- schema changes on the source (local-only for the replay) -----------------


def by_name(m: am.Machine) -> dict[str, Any]:
    return {"clock": m.clock(), "active": sorted(m.active_states()), "qt": m.queue_tick()}


@pytest.mark.anyio
async def test_source_reorder_keeps_the_client_index_space() -> None:
    """The source's ``verify_states`` reorders its states after the client
    connected: a mutation the client sends at once (before anything was pushed)
    still names the same states, and the mirror stays equal by name (its order
    is the one of its handshake)."""
    src = am.Machine({"A": am.State(), "B": am.State(), "C": am.State()}, id="v")
    src.add1("B")
    async with rpc_pair(src, name="reorder") as (_server, client):
        nm = client.netmach
        src.verify_states(["C", "B", "A", am.EXCEPTION])
        assert await nm.call_add1("A") is am.Result.EXECUTED
        assert sorted(src.active_states()) == ["A", "B"]
        assert by_name(nm) == by_name(src)
        src.add1("C")  # a local mutation, pushed
        with anyio.fail_after(2):
            await nm.when1("C")
        await anyio.wait_all_tasks_blocked()
        assert by_name(nm) == by_name(src)
        assert list(nm.state_names) == ["A", "B", "C", am.EXCEPTION]
        assert await nm.call_remove1("B") is am.Result.EXECUTED
        assert by_name(nm) == by_name(src) and src.not1("B")
        assert client.mach.tick(am.EXCEPTION) == 0


@pytest.mark.anyio
async def test_source_schema_growth_keeps_the_client_index_space() -> None:
    """``set_schema`` on the source inserts a state before others: known states
    keep their index for the client, the new one is appended."""
    src = am.Machine({"A": am.State(), "B": am.State()}, id="v")
    async with rpc_pair(src, name="grow") as (_server, client):
        nm = client.netmach
        grown = {"A": am.State(), "D": am.State(require=("A",)), "B": am.State()}
        src.set_schema({**grown, am.EXCEPTION: am.State(multi=True)}, ["D", "A", "B", am.EXCEPTION])
        assert await nm.call_add1("B") is am.Result.EXECUTED  # before the push
        assert src.active_states() == ["B"]
        await anyio.wait_all_tasks_blocked()
        assert list(nm.state_names) == ["A", "B", am.EXCEPTION, "D"]
        assert nm.schema["D"].require == ("A",)
        assert await nm.call_add(["A", "D"]) is am.Result.EXECUTED
        assert sorted(src.active_states()) == ["A", "B", "D"]
        assert by_name(nm) == by_name(src)
        assert client.mach.tick(am.EXCEPTION) == 0
