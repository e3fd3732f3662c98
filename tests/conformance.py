"""Replay engine for the conformance vectors in ``tests/vectors.json``.

A helper module, not collected by pytest: ``test_conformance.py`` calls
:func:`replay` once per ``kind: machine`` vector. The vectors were recorded
from asyncmachine-go; every operation, ``expect`` key and ``observed`` key they
use is mapped here onto the public API of ``asyncmachine_trio`` (docs/api.md).
Anything this module does not know (a scenario field, op, op field, handler
behaviour, machine option, ``expect`` or ``observed`` key) fails the test:
nothing is skipped silently.

How a scenario runs (:meth:`Replay.run`): build the machine (id ``v``), call
``verify_states`` with ``state_names``, inject ``initial``, run ``setup_ops``,
bind the handler bindings, compare ``observed_initial``, then for every op: run
it, check its ``expect``, check its ``observed`` entry.

Observed values and state-name order. The reference sorts state names byte-wise;
the port keeps schema order with an implicit ``Exception`` last (semantics §1.5), so a
value whose *order* comes only from the state names is compared without order:

* ``observed_initial.state_names``: as a set;
* ret of ``state_names``; ``string``, ``string_all`` and ``inspect`` without
  ``states``; ``names`` of ``export_import``: exact while the reference's names
  order (``observed_initial.state_names``, later the list given to a successful
  ``verify_states`` / ``set_schema``) equals ``mach.state_names``, otherwise
  per state ignoring order (a set of names; the sets of ``Name:tick`` tokens
  inside ``()`` and ``[]``; the set of per-state ``inspect`` blocks);
* ``time`` / ``snapshot_time`` without ``states``, ``time`` of
  ``export_import``: zipped with the names of each side, compared as
  name -> tick maps;
* capture ``diff_added`` / ``diff_removed`` (``TimeIndex.active_states()``,
  state-name order): as sets.

Everything else is compared in order: active lists (their order comes from the
resolver, semantics §4.5), handler calls, nested results, ``target`` / ``called`` /
``before`` lists, ``sort_states``, ``relations_*``, ``clock`` maps (compared as
maps).

Other observed-value rules:

* timing-dependent values (``observed_note``) are skipped only as listed in
  :data:`OBSERVED_TIMING`;
* an ``err`` of ``"<nil>"`` after ``panic_to_err*`` is the reference's quirk for
  non-error panic values (semantics §14 #13): the port stores the value's text, which
  is expected instead;
* waiter rets ``{closed_now, same_as}``: ``closed_now`` always; ``same_as``
  (``""`` = none) only for waiters that were not resolved at once -- the
  reference hands out one shared closed channel for some already-resolved
  waiters, an identity the port need not copy;
* a missing ``calls`` / ``nested`` means none happened; when the entry records
  the machine's state (it has ``active``), a missing ``err`` means ``mach.err is
  None`` and a missing ``subs_resolved`` / ``state_ctx_expired`` means none was
  registered yet. After ``dispose`` the reference records only ``ret``.

The target hook. ``Replay.mach`` is the machine the scenario is built on (its
handlers are bound there and ops inside handlers run on it); ``Replay.target``
is the machine the top-level ops run on and every state check (``expect``
``active`` / ``time`` / ``clock`` / ``is_err``, ``observed`` ``active`` /
``clock_nonzero`` / ``queue_tick``, ``observed_initial``) reads. Both are the
same machine here; ``test_rpc_conformance.py`` points ``target`` at a network
machine mirroring ``mach`` and overrides :meth:`Replay.observed_active_order`
(a network machine lists active states in state order) and
:meth:`Replay.scenario_err` (errors are not synchronised). Ops only a local
machine has (schema changes, eval, panic_to_err*, export, dispose) run on
``mach``.
"""

from __future__ import annotations

import json
import re
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import asyncmachine_trio as am
from asyncmachine_trio.testing import inject_state

VECTORS_FILE = Path(__file__).with_name("vectors.json")

# observed values that depend on wall-clock timing in the reference, per vector id
# and op index; every vector with an ``observed_note`` must be listed (an empty
# mapping = the note was read and everything is compared)
OBSERVED_TIMING: dict[str, dict[int, frozenset[str]]] = {
    # Go: the nested Eval waits for EvalTimeout (1 s), longer than the handler
    # timeout, so AState times out and A is reverted (ret canceled, A:2). The port's
    # nested eval returns False at once (semantics §3.7), so A stays active: ret, active
    # and clock differ by design. calls, nested, queue_tick and err are compared.
    "eval.in_handler": {0: frozenset({"ret", "active", "clock_nonzero"})},
    # Go's inner Eval returns false only after EvalTimeout; the port's returns False
    # at once (semantics §3.7): the value is the same, so everything is compared.
    "eval.nested": {},
    # AState sleeps 500 ms with a 450 ms handler timeout; the port measures sync
    # handlers after they return (semantics §5.6), so the timeout is deterministic.
    "timeout.final_handler": {},
}

SCENARIO_KEYS = frozenset(
    {
        "id",
        "source",
        "what",
        "kind",
        "notes",
        "schema",
        "state_names",
        "initial",
        "setup_ops",
        "machine_opts",
        "capture_log",
        "bindings",
        "ops",
        "observed_initial",
        "observed",
        "observed_note",
    }
)
STATE_FIELDS = frozenset({"auto", "multi", "require", "add", "remove", "after", "tags"})
MACHINE_OPTS = frozenset(
    {
        "handler_timeout_ms",
        "handler_deadline_ms",  # no Python meaning (the port has no deadline)
        "detect_eval",
        "queue_limit",
        "steps",
        "log_args_max",
        "log_args_names",
    }
)
OP_FIELDS = frozenset(
    {
        "op",
        "states",
        "state",
        "args",
        "err",
        "groups",
        "id",
        "ticks",
        "n",
        "ctx",
        "clock",
        "schema",
        "names",
        "ops",
        "note",
        "expect",
    }
)
BEHAVIOUR_KEYS = frozenset({"return", "panic", "sleep_ms", "ops", "capture", "builtin"})
BUILTIN_EXCEPTION_STATE = "ExceptionHandler.ExceptionState"
# the Go test suite's History recorder: the handlers it binds
HISTORY_HANDLERS = frozenset(
    [
        "AnyEnter",
        "AnyState",
        "AD",
        "AC",
        "AExit",
        "AEnd",
        "AA",
        "AState",
        "AB",
        "BEnter",
        "BEnd",
        "BState",
        "BB",
        "BExit",
        "BD",
        "BAny",
        "BC",
        "CEnter",
        "CState",
        "DEnter",
        "DState",
    ]
)
HANDLER_SUFFIXES = ("Enter", "Exit", "State", "End")
WAITER_OPS = frozenset(
    {
        "when",
        "when1",
        "when_not",
        "when_not1",
        "when_next_active",
        "when_time",
        "when_time1",
        "when_ticks",
        "when_args",
        "when_err",
        "when_queue",
        "when_queue_ends",
        "when_query_a_gt_4b",
        "when_query_a_lt_b",
    }
)
# ops whose (string) ret lists the states in state-name order when given no states
NAMES_ORDERED_TEXT_OPS = frozenset({"string", "string_all", "inspect"})
TIME_OPS = frozenset({"time", "snapshot_time"})


def load_vectors(kind: str) -> list[dict[str, Any]]:
    """The vectors of one ``kind`` (``machine`` or ``api``), in file order."""
    with VECTORS_FILE.open(encoding="utf-8") as file:
        vectors: list[dict[str, Any]] = json.load(file)
    return [v for v in vectors if v["kind"] == kind]


def replay(vector: Mapping[str, Any]) -> None:
    """Run one ``kind: machine`` vector, failing on the first mismatch."""
    Replay(vector).run()


def check_keys(what: str, given: Mapping[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(given) - known)
    if unknown:
        pytest.fail(f"{what}: unknown keys {unknown} (the engine must learn them)")


# --- schema and handler names ------------------------------------------------

_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake(name: str) -> str:
    """The handler-name snake_case of a state name (``RPCReady`` -> ``rpc_ready``)."""
    return _SNAKE.sub("_", name).lower()


def to_state(name: str, spec: Mapping[str, Any]) -> am.State:
    """A vector state (lower-case keys, missing relation = None) as ``am.State``."""
    check_keys(f"state {name}", spec, STATE_FIELDS)
    kwargs: dict[str, Any] = {}
    for key in ("auto", "multi"):
        if key in spec:
            kwargs[key] = bool(spec[key])
    for key in ("require", "add", "remove", "after", "tags"):
        if key in spec:
            kwargs[key] = tuple(spec[key])
    return am.State(**kwargs)


def to_schema(spec: Mapping[str, Mapping[str, Any]]) -> dict[str, am.State]:
    return {name: to_state(name, state) for name, state in spec.items()}


def handler_method(go_name: str, state_names: Sequence[str]) -> str:
    """The Python method name of a Go handler name, e.g. ``AExit`` -> ``a_exit``.

    The Go name is split into a state (or ``Any``) and a suffix or second state,
    using this scenario's state names; exactly one split must exist.
    """
    known = [*state_names, "Any"]
    found = set()
    for state in known:
        if not go_name.startswith(state):
            continue
        rest = go_name[len(state) :]
        if rest in HANDLER_SUFFIXES:
            found.add(f"{snake(state)}_{rest.lower()}")
        elif rest in known:
            found.add(f"{snake(state)}_{snake(rest)}")
    if len(found) != 1:
        pytest.fail(f"handler {go_name!r}: cannot split it uniquely ({found})")
    return found.pop()


# --- comparisons -------------------------------------------------------------


def same(want: Any, got: Any) -> bool:
    """Exact equality of JSON-like values; bools never equal ints, lists == tuples."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(want) is type(got) and want == got
    if isinstance(want, Mapping):
        return (
            isinstance(got, Mapping)
            and set(want) == set(got)
            and all(same(want[k], got[k]) for k in want)
        )
    if isinstance(want, list | tuple):
        return (
            isinstance(got, list | tuple)
            and len(want) == len(got)
            and all(same(w, g) for w, g in zip(want, got, strict=True))
        )
    return bool(want == got)


def subset(want: Any, got: Any) -> bool:
    """README's match for ``expect``: objects by subset, lists by position."""
    if isinstance(want, Mapping):
        return isinstance(got, Mapping) and all(
            k in got and subset(v, got[k]) for k, v in want.items()
        )
    if isinstance(want, list | tuple):
        return (
            isinstance(got, list | tuple)
            and len(want) == len(got)
            and all(subset(w, g) for w, g in zip(want, got, strict=True))
        )
    return same(want, got)


def assert_match(ok: bool, where: str, want: Any, got: Any) -> None:
    assert ok, f"{where}: expected {want!r}, got {got!r}"


def unordered_text(op: str, text: str) -> Any:
    """``string`` / ``string_all`` / ``inspect`` output with the state order removed."""
    if op == "inspect":
        return sorted(re.split(r"(?m)^(?=[01] )", text))
    match = re.fullmatch(r"\((.*?)\)(?: \[(.*)\])?", text)
    if match is None:
        return text
    return sorted(match[1].split()), sorted((match[2] or "").split())


# --- the replay ----------------------------------------------------------------


@dataclass
class Nested:
    """A result recorded inside a handler: a nested op's ``{in, op, ret}`` or a
    capture record (``op`` is then None)."""

    op: Mapping[str, Any] | None
    data: dict[str, Any]


@dataclass
class Outcome:
    """What one op did: its normalised ret and what happened while it ran."""

    ret: Any
    raised: BaseException | None
    calls: list[str]
    nested: list[Nested]


OpFn = Callable[["Replay", Mapping[str, Any], Any], Any]
CheckFn = Callable[["Replay", Mapping[str, Any], Any, Outcome, str], None]


class Replay:
    """The state of one scenario replay: the machine and every registry."""

    def __init__(self, vector: Mapping[str, Any]) -> None:
        check_keys(f"vector {vector.get('id')}", vector, SCENARIO_KEYS)
        assert vector["kind"] == "machine", vector["kind"]
        self.vector = vector
        self.vid: str = vector["id"]
        self.opts: Mapping[str, Any] = vector.get("machine_opts", {})
        check_keys(f"{self.vid} machine_opts", self.opts, MACHINE_OPTS)
        self.schema = to_schema(vector["schema"])
        self.log_lines: list[str] = []
        self.calls: list[str] = []  # every handler call, "Name" or "tag:Name"
        self.nested: list[Nested] = []
        self.failures: list[str] = []  # raised inside handlers / eval functions
        self.waiters: dict[str, Any] = {}
        self.named_ctxs: dict[str, Any] = {}
        self.state_ctxs: dict[str, Any] = {}
        self.snapshots: dict[str, Any] = {}
        # the reference's state names order (observed_initial gives the one
        # before the first op; verify_states / set_schema replace it)
        self.go_names: list[str] = list(vector["observed_initial"]["state_names"])
        self.panic_err_text: str | None = None  # see the "<nil>" rule above
        self.mach = am.Machine(self.schema, **self.machine_kwargs())
        # where top-level ops run and state checks read (see the module doc)
        self.target: am.Machine = self.mach

    # machine construction

    def machine_kwargs(self, mach_id: str = "v", log: bool = True) -> dict[str, Any]:
        opts = self.opts
        timeout_ms = opts.get("handler_timeout_ms")
        kwargs: dict[str, Any] = {
            "id": mach_id,
            # explicit, so AM_DEBUG / AM_TEST_RUNNER cannot change it
            "handler_timeout": 0.1 if timeout_ms is None else timeout_ms / 1000,
        }
        for key in ("detect_eval", "queue_limit", "log_args_max"):
            if key in opts:
                kwargs[key] = opts[key]
        if "log_args_names" in opts:
            kwargs["log_args_names"] = list(opts["log_args_names"])
        if opts.get("steps"):
            kwargs["log_steps"] = True
        if log and self.vector.get("capture_log"):
            kwargs["log_level"] = am.LogLevel.EVERYTHING
            kwargs["logger"] = self.log
        return kwargs

    def log(self, level: Any, line: str) -> None:
        self.log_lines.append(line)

    # the scenario

    def run(self) -> None:
        self.prepare()
        self.check_initial()
        ops = self.vector["ops"]
        observed = self.vector["observed"]
        assert len(ops) == len(observed), f"{self.vid}: ops and observed differ"
        for i, (op, obs) in enumerate(zip(ops, observed, strict=True)):
            where = f"{self.vid} op #{i} {op['op']}"
            out = self.step(op, obs, where)
            self.check_expect(op, out, where)
            self.check_observed(i, op, obs, out, where)

    def prepare(self) -> None:
        vector = self.vector
        if "state_names" in vector:
            self.mach.verify_states(list(vector["state_names"]))
        if "initial" in vector:
            initial = vector["initial"]
            check_keys(f"{self.vid} initial", initial, frozenset({"active", "clock", "queue_tick"}))
            inject_state(
                self.mach,
                list(initial["active"]),
                dict(initial["clock"]),
                initial["queue_tick"],
            )
        for op in vector.get("setup_ops", ()):
            if "expect" in op:
                pytest.fail(f"{self.vid}: setup ops are not asserted, got {op}")
            self.execute(op, None)
        for binding in vector.get("bindings", ()):
            self.bind(binding)
        self.raise_failures(f"{self.vid} setup")

    def check_initial(self) -> None:
        """Compare ``observed_initial`` (on the target)."""
        where = f"{self.vid} observed_initial"
        initial = self.vector["observed_initial"]
        check_keys(where, initial, frozenset({"active", "queue_tick", "state_names"}))
        active = list(self.target.active_states())
        want = self.observed_active_order(initial["active"])
        assert_match(active == want, f"{where}.active", initial, active)
        tick = self.target.queue_tick()
        assert_match(tick == initial["queue_tick"], f"{where}.queue_tick", initial, tick)
        names = list(self.target.state_names)
        assert_match(
            sorted(names) == sorted(initial["state_names"]),
            f"{where}.state_names (as a set)",
            initial["state_names"],
            names,
        )

    def step(self, op: Mapping[str, Any], obs: Mapping[str, Any], where: str) -> Outcome:
        """Run a top-level op, collecting its calls and nested results."""
        calls_from, nested_from = len(self.calls), len(self.nested)
        obs_ret = obs.get("ret")
        may_raise = bool(op.get("expect", {}).get("raises")) or (
            isinstance(obs_ret, Mapping) and "raised" in obs_ret
        )
        raised: BaseException | None = None
        try:
            ret = self.execute(op, None)
        except am.AsyncMachineError as exc:
            if not may_raise:
                raise
            raised = exc
            ret = {"raised": str(exc)}
        self.raise_failures(where)
        return Outcome(ret, raised, self.calls[calls_from:], self.nested[nested_from:])

    def execute(self, op: Mapping[str, Any], event: Any) -> Any:
        """Run one op (``event``: the handler's event inside a handler, else None)
        and return its ret in the vectors' vocabulary."""
        check_keys(f"{self.vid} op {op.get('op')}", op, OP_FIELDS)
        if op.get("note", "pass_event_args") != "pass_event_args":
            pytest.fail(f"{self.vid}: unknown op note {op['note']!r}")
        fn = OPS.get(op["op"])
        if fn is None:
            pytest.fail(f"{self.vid}: unknown op {op['op']!r}")
        return fn(self, op, event)

    def execute_checked(self, op: Mapping[str, Any], event: Any, where: str) -> Any:
        """Run an op inside an eval function and check its expect."""
        calls_from, nested_from = len(self.calls), len(self.nested)
        ret = self.execute(op, event)
        out = Outcome(ret, None, self.calls[calls_from:], self.nested[nested_from:])
        self.check_expect(op, out, f"{where} > {op['op']}")
        return ret

    @contextmanager
    def guard(self, where: str) -> Iterator[None]:
        """Record errors raised where the machine would swallow them (a handler
        body, an eval function); :meth:`raise_failures` reports them."""
        try:
            yield
        except Exception:
            self.failures.append(f"{where}:\n{traceback.format_exc()}")

    def raise_failures(self, where: str) -> None:
        if self.failures:
            failures, self.failures = self.failures, []
            pytest.fail(f"{where}: failed inside the machine:\n" + "\n".join(failures))

    # handler bindings

    def bind(self, binding: Mapping[str, Any]) -> None:
        check_keys(f"{self.vid} binding", binding, frozenset({"tag", "handlers", "recorder"}))
        tag: str = binding["tag"]
        handlers: Mapping[str, Mapping[str, Any]] = binding["handlers"]
        if "recorder" in binding:
            assert binding["recorder"] == "History", binding["recorder"]
            assert set(handlers) == HISTORY_HANDLERS, sorted(handlers)
            assert not any(handlers.values()), "History handlers only accept"
        names = [*self.schema, am.EXCEPTION]
        methods: dict[str, Callable[..., Any]] = {}
        bases: tuple[type, ...] = (object,)
        for go_name, behaviour in handlers.items():
            check_keys(f"{self.vid} handler {go_name}", behaviour, BEHAVIOUR_KEYS)
            if "builtin" in behaviour:
                assert behaviour == {"builtin": BUILTIN_EXCEPTION_STATE}, behaviour
                assert go_name == "ExceptionState", go_name
                bases = (am.ExceptionHandler,)
            label = f"{tag}:{go_name}" if tag else go_name
            methods[handler_method(go_name, names)] = self.handler(label, behaviour)
        handler_class = type(f"Binding_{tag or 'default'}", bases, methods)
        with warnings.catch_warnings():
            # the recorded handler sets include names the reference never calls
            # either (e.g. BAny): replayed as they are, without the typo warning
            warnings.simplefilter("ignore", am.HandlerWarning)
            self.mach.bind_handlers(handler_class(), id=tag or None)

    def handler(self, label: str, behaviour: Mapping[str, Any]) -> Callable[..., Any]:
        """A handler method: record the call, then act as the behaviour says."""
        if behaviour.get("capture", True) is not True:
            pytest.fail(f"{self.vid} {label}: capture must be true")

        def method(obj: Any, e: Any) -> Any:
            self.calls.append(label)
            if "capture" in behaviour:
                with self.guard(f"{label} capture"):
                    self.capture(label, e)
            for op in behaviour.get("ops", ()):
                with self.guard(f"{label} > {op['op']}"):
                    self.run_nested(op, e, label)
            if "sleep_ms" in behaviour:
                time.sleep(behaviour["sleep_ms"] / 1000)
            if "panic" in behaviour:
                raise RuntimeError(behaviour["panic"])
            if "builtin" in behaviour:
                return am.ExceptionHandler.exception_state(obj, e)
            return behaviour.get("return")

        return method

    def run_nested(self, op: Mapping[str, Any], e: Any, label: str) -> None:
        """Run an op of a handler's ``ops``: record ``{in, op, ret}``, check it."""
        calls_from, nested_from = len(self.calls), len(self.nested)
        ret = self.execute(op, e)
        self.nested.append(Nested(op, {"in": label, "op": op["op"], "ret": ret}))
        out = Outcome(ret, None, self.calls[calls_from:], self.nested[nested_from:-1])
        self.check_expect(op, out, f"{label} > {op['op']}")

    def capture(self, label: str, e: Any) -> None:
        tx = e.transition
        added, removed = tx.time_index_diff()
        record: dict[str, Any] = {
            "in": label,
            "op": "capture",
            "active": list(self.mach.active_states()),
            "target": list(tx.target_states),
            "called": list(tx.called_states),
            "before": list(tx.states_before),
            "args": dict(e.args),
            "name": e.name,
            "mutation_type": str(e.mutation.type),
            "is_valid": e.is_valid(),
            "diff_added": list(added.active_states()),
            "diff_removed": list(removed.active_states()),
        }
        source = e.mutation.source
        if source is not None:
            record["source_mach_id"] = source.mach_id
            record["event_mach_id"] = e.machine.id
        if self.opts.get("steps"):
            record["tx_string"] = str(tx).replace(tx.id, "ID")
        self.nested.append(Nested(None, record))

    # helpers for the ops table

    def args(self, op: Mapping[str, Any], event: Any) -> Any:
        if op.get("note") == "pass_event_args":
            assert event is not None, "pass_event_args outside of a handler"
            return event.args
        return op.get("args")

    def result(self, res: Any) -> str | int:
        """A mutation's result: ``executed`` / ``canceled``, or its queue tick."""
        assert isinstance(res, am.Result), f"a mutation returned {res!r}"
        if res == am.Result.QUEUED:
            queue = self.mach.queue()
            assert queue, "Result.QUEUED but the queue is empty"
            tick = queue[-1].queue_tick
            assert isinstance(tick, int) and tick >= 2, f"queue tick {tick!r}"
            return tick
        return str(res)

    def traced_result(self, res: Any, event: Any) -> str | int:
        """``result`` of an ``ev_*`` mutation; queued from a handler, its queue
        entry must carry the event as source (semantics §3.1)."""
        ret = self.result(res)
        if event is not None and isinstance(ret, int):
            source = self.mach.queue()[-1].source
            tx = event.transition
            want = (event.machine.id, tx.id, sum(tx.time_before))
            got = None if source is None else (source.mach_id, source.tx_id, source.mach_time)
            assert got == want, f"source of the queued mutation: {got} != {want}"
        return ret

    def check_result(self, res: Any) -> str | int:
        """A dry run's result; a queued (prepended) check has no queue tick: Go's
        literal ``Queued`` (2)."""
        assert isinstance(res, am.Result), f"a check returned {res!r}"
        return 2 if res == am.Result.QUEUED else str(res)

    def ctx(self, op: Mapping[str, Any]) -> dict[str, Any]:
        if "ctx" not in op:
            return {}
        name = op["ctx"]
        if name not in self.named_ctxs:
            self.named_ctxs[name] = am.Ctx()
        return {"ctx": self.named_ctxs[name]}

    def wait(self, op: Mapping[str, Any], waiter: Any) -> dict[str, Any]:
        """Register a waiter under ``op["id"]``; ret ``{closed_now, same_as?}``."""
        assert op["id"] not in self.waiters, f"duplicate waiter id {op['id']}"
        same_as = next((k for k, w in self.waiters.items() if w is waiter), None)
        self.waiters[op["id"]] = waiter
        ret: dict[str, Any] = {"closed_now": waiter.is_set()}
        if same_as is not None:
            ret["same_as"] = same_as
        return ret

    def names_agree(self) -> bool:
        return self.go_names == list(self.mach.state_names)

    def on(self, event: Any) -> am.Machine:
        """The machine an op runs on: ``mach`` inside a handler, else ``target``."""
        return self.mach if event is not None else self.target

    def observed_active_order(self, want: list[str]) -> list[str]:
        """The order ``target`` is expected to list ``want`` (observed ``active``) in."""
        return want

    def scenario_err(self) -> Exception | None:
        """The error ``observed.err`` is compared with: ``mach.err``."""
        return self.mach.err

    # expectations

    def check_expect(self, op: Mapping[str, Any], out: Outcome, where: str) -> None:
        for key, want in op.get("expect", {}).items():
            check = EXPECT.get(key)
            if check is None:
                pytest.fail(f"{where}: unknown expect key {key!r}")
            check(self, op, want, out, f"{where}: expect.{key}")

    def check_observed(
        self, i: int, op: Mapping[str, Any], obs: Mapping[str, Any], out: Outcome, where: str
    ) -> None:
        skip = OBSERVED_TIMING.get(self.vid, {}).get(i, frozenset())
        for key, want in obs.items():
            check = OBSERVED.get(key)
            if check is None:
                pytest.fail(f"{where}: unknown observed key {key!r}")
            if key not in skip:
                check(self, op, want, out, f"{where}: observed.{key}")
        # absent = none / nil (see the module docstring)
        if "calls" not in obs:
            assert_match(out.calls == [], f"{where}: observed.calls (none)", [], out.calls)
        if "nested" not in obs:
            got = [n.data for n in out.nested]
            assert_match(got == [], f"{where}: observed.nested (none)", [], got)
        if "active" in obs:
            err = self.scenario_err()
            if "err" not in obs:
                assert_match(err is None, f"{where}: observed.err (nil)", None, err)
            if "subs_resolved" not in obs:
                assert_match(not self.waiters, f"{where}: subs (none)", {}, list(self.waiters))
            if "state_ctx_expired" not in obs:
                assert_match(
                    not self.state_ctxs,
                    f"{where}: state ctxs (none)",
                    {},
                    list(self.state_ctxs),
                )

    def check_ret(
        self, op: Mapping[str, Any], want: Any, got: Any, where: str, observed: bool
    ) -> None:
        """Compare a ret: ``observed`` exactly, ``expect`` by subset (README)."""
        name = op["op"]
        match = same if observed else subset
        if isinstance(want, Mapping) and "raised" in want:
            # the message as a substring: the port's text may carry more context
            ok = (
                isinstance(got, Mapping)
                and (not observed or set(want) == {"raised"})
                and want["raised"] in got.get("raised", "")
            )
        elif isinstance(got, Mapping) and "raised" in got:
            ok = False
        elif name in WAITER_OPS:
            ok = self.waiter_ret_matches(want, got, observed)
        elif name == "state_names" and not self.names_agree():
            want, got = sorted(want), sorted(got)
            ok = want == got
        elif name in TIME_OPS and "states" not in op:
            # ticks in each side's names order: compare name -> tick maps
            assert_match(
                isinstance(want, list) and len(want) == len(self.go_names) == len(got),
                f"{where} (length)",
                want,
                got,
            )
            want = dict(zip(self.go_names, want, strict=True))
            got = dict(zip(self.target.state_names, got, strict=True))
            ok = want == got
        elif name in NAMES_ORDERED_TEXT_OPS and "states" not in op and not self.names_agree():
            assert isinstance(want, str), f"{where}: expected a str, got {want!r}"
            want, got = unordered_text(name, want), unordered_text(name, got)
            ok = want == got
        elif name == "export_import" and observed:
            ok = self.export_ret_matches(want, got)
        else:
            ok = match(want, got)
        assert_match(ok, where, want, got)

    def waiter_ret_matches(self, want: Any, got: Any, observed: bool) -> bool:
        if not observed:
            return subset(want, got)
        check_keys("waiter ret", want, frozenset({"closed_now", "same_as"}))
        if not same(want["closed_now"], got["closed_now"]):
            return False
        if want["closed_now"]:
            return True  # identity of already-resolved waiters: see the docstring
        return (want.get("same_as") or None) == got.get("same_as")

    def export_ret_matches(self, want: Any, got: Any) -> bool:
        want, got = dict(want), dict(got)
        names_want, names_got = want.pop("names"), got.pop("names")
        time_want, time_got = want.pop("time"), got.pop("time")
        if self.names_agree():
            names_ok = same(names_want, names_got)
        else:
            names_ok = sorted(names_want) == sorted(names_got)
        return (
            names_ok
            and len(time_want) == len(names_want)
            and len(time_got) == len(names_got)
            and dict(zip(names_want, time_want, strict=True))
            == dict(zip(names_got, time_got, strict=True))
            and same(want, got)
        )

    def check_nested(self, want: Any, got: list[Nested], where: str, observed: bool) -> None:
        data = [n.data for n in got]
        assert_match(
            isinstance(want, list) and len(want) == len(got),
            f"{where} (length)",
            want,
            data,
        )
        for i, (entry, rec) in enumerate(zip(want, got, strict=True)):
            at = f"{where}[{i}]"
            if rec.op is None:
                self.check_capture(entry, rec.data, at, observed)
                continue
            check_keys(at, entry, frozenset({"in", "op", "ret"}))
            for key in ("in", "op"):
                if key in entry:
                    assert_match(entry[key] == rec.data[key], f"{at}.{key}", entry, rec.data)
            if "ret" in entry:
                self.check_ret(rec.op, entry["ret"], rec.data["ret"], f"{at}.ret", observed)

    def check_capture(
        self, want: Mapping[str, Any], got: Mapping[str, Any], where: str, observed: bool
    ) -> None:
        if observed:
            assert_match(set(want) == set(got), f"{where} (fields)", want, got)
        for key, value in want.items():
            assert_match(key in got, f"{where}.{key} (missing)", want, got)
            if key in ("diff_added", "diff_removed"):  # state-name order: a set
                ok = sorted(value) == sorted(got[key])
            else:
                ok = same(value, got[key])
            assert_match(ok, f"{where}.{key}", value, got[key])


# --- ops -------------------------------------------------------------------------


def op_is_queued(r: Replay, op: Mapping[str, Any], event: Any) -> Any:
    found, index, tick = r.on(event).is_queued(am.MutationType.ADD, op["states"])
    return {"found": found, "idx": index, "qtick": tick}


def relation_names(get: Callable[[], Any]) -> Any:
    try:
        relations = get()
    except am.StateUnknownError:
        return "error"
    return [am.Relation(rel).value for rel in relations]


def op_verify_states(r: Replay, op: Mapping[str, Any], event: Any) -> bool:
    """ret = True when verify_states raised (README)."""
    names = list(op["states"])
    try:
        r.mach.verify_states(names)
    except am.SchemaError:
        return True
    r.go_names = list(dict.fromkeys(names))
    return False


def op_set_schema(r: Replay, op: Mapping[str, Any], event: Any) -> str:
    schema = to_schema(op["schema"])
    r.mach.set_schema(schema, list(op["names"]))
    r.schema = schema
    r.go_names = list(op["names"])
    return "ok"


def op_snapshot(kind: str) -> OpFn:
    def snapshot(r: Replay, op: Mapping[str, Any], event: Any) -> Any:
        states = op.get("states")
        if kind == "clock":
            value: Any = dict(r.on(event).clock(states))
        else:
            value = list(r.on(event).time(states))
        r.snapshots[op["id"]] = value
        return value

    return snapshot


def op_eval(r: Replay, op: Mapping[str, Any], event: Any) -> Any:
    """ret ``{ok, inner}``: ``inner`` lists the rets of the ops run inside the
    function, None when it did not run or has no ops."""
    inner: list[Any] | None = None
    where = f"{r.vid} eval {op['id']}"

    def fn() -> None:
        nonlocal inner
        with r.guard(where):
            if op["ops"]:
                inner = [r.execute_checked(o, event, where) for o in op["ops"]]

    ok = r.mach.eval(f"eval-{op['id']}", fn)
    return {"ok": ok, "inner": inner}


def op_panic_to_err(r: Replay, op: Mapping[str, Any], event: Any) -> str:
    r.panic_err_text = op["err"]
    with r.mach.panic_to_err(op.get("args")):
        raise RuntimeError(op["err"])
    return "ok"


def op_panic_to_err_state(r: Replay, op: Mapping[str, Any], event: Any) -> str:
    r.panic_err_text = op["err"]
    with r.mach.panic_to_err_state(op["state"], op.get("args")):
        raise RuntimeError(op["err"])
    return "ok"


def op_export_import(r: Replay, op: Mapping[str, Any], event: Any) -> Any:
    """Export, then import into fresh machines with another id (must fail) and
    with the same id (must work), as Go's TestExportImport."""
    data = r.mach.export()
    other = am.Machine(r.schema, **r.machine_kwargs(mach_id="v-other", log=False))
    try:
        other.import_(data)
    except am.AsyncMachineError:
        err_other_id = True
    else:
        err_other_id = False
    twin = am.Machine(r.schema, **r.machine_kwargs(log=False))
    try:
        twin.import_(data)
    except am.AsyncMachineError:
        err_same_id = True
    else:
        err_same_id = False
    ret = {
        "err_other_id": err_other_id,
        "err_same_id": err_same_id,
        "names": list(data.state_names),
        "time": list(data.time),
        "queue_tick": data.queue_tick,
        "src_string": r.mach.string(),
        "verified": None if err_same_id else twin.states_verified,
        "string": None if err_same_id else twin.string(),
        "machine_tick": None if err_same_id else twin.export().machine_tick,
    }
    other.dispose()
    twin.dispose()
    return ret


def op_dispose(r: Replay, op: Mapping[str, Any], event: Any) -> str:
    r.mach.dispose()
    return "ok"


def op_cancel_ctx(r: Replay, op: Mapping[str, Any], event: Any) -> str:
    r.named_ctxs[op["id"]].cancel()
    return "ok"


def op_state_ctx(r: Replay, op: Mapping[str, Any], event: Any) -> bool:
    """ret = the new state context is already expired."""
    assert op["id"] not in r.state_ctxs, f"duplicate state ctx id {op['id']}"
    ctx = r.on(event).new_state_ctx(op["state"])
    r.state_ctxs[op["id"]] = ctx
    return bool(ctx.expired)


OPS: dict[str, OpFn] = {
    # mutations -> "executed" / "canceled" / queue tick
    "add": lambda r, op, e: r.result(r.on(e).add(op["states"], r.args(op, e))),
    "remove": lambda r, op, e: r.result(r.on(e).remove(op["states"], r.args(op, e))),
    "set": lambda r, op, e: r.result(r.on(e).set(op["states"], r.args(op, e))),
    "toggle": lambda r, op, e: r.result(r.on(e).toggle(op["states"], r.args(op, e))),
    "add1": lambda r, op, e: r.result(r.on(e).add1(op["state"], r.args(op, e))),
    "remove1": lambda r, op, e: r.result(r.on(e).remove1(op["state"], r.args(op, e))),
    "toggle1": lambda r, op, e: r.result(r.on(e).toggle1(op["state"], r.args(op, e))),
    "ev_add1": lambda r, op, e: r.traced_result(
        r.on(e).add1(op["state"], r.args(op, e), event=e), e
    ),
    "ev_remove1": lambda r, op, e: r.traced_result(
        r.on(e).remove1(op["state"], r.args(op, e), event=e), e
    ),
    "add_err": lambda r, op, e: r.result(r.on(e).add_err(RuntimeError(op["err"]), r.args(op, e))),
    "add_err_state": lambda r, op, e: r.result(
        r.on(e).add_err_state(op["state"], RuntimeError(op["err"]), r.args(op, e))
    ),
    "can_add": lambda r, op, e: r.check_result(r.on(e).can_add(op["states"], r.args(op, e))),
    "can_remove": lambda r, op, e: r.check_result(r.on(e).can_remove(op["states"], r.args(op, e))),
    # checks and getters
    "is": lambda r, op, e: r.on(e).is_(op["states"]),
    "not": lambda r, op, e: r.on(e).not_(op["states"]),
    "has": lambda r, op, e: r.on(e).has(op["states"]),
    "any1": lambda r, op, e: r.on(e).any1(*op["states"]),
    "any": lambda r, op, e: r.on(e).any(*op["groups"]),
    "switch": lambda r, op, e: r.on(e).switch(*op["groups"]),
    "tick": lambda r, op, e: r.on(e).tick(op["state"]),
    "time": lambda r, op, e: list(r.on(e).time(op.get("states"))),
    "clock": lambda r, op, e: dict(r.on(e).clock(op.get("states"))),
    "active_states": lambda r, op, e: list(r.on(e).active_states(op.get("states"))),
    "state_names": lambda r, op, e: list(r.on(e).state_names),
    "string": lambda r, op, e: r.on(e).string(),
    "string_all": lambda r, op, e: r.on(e).string_all(),
    "inspect": lambda r, op, e: r.on(e).inspect(op.get("states")),
    "queue_tick": lambda r, op, e: r.on(e).queue_tick(),
    "queue_len": lambda r, op, e: r.on(e).queue_len(),
    "is_queued": op_is_queued,
    "will_be1": lambda r, op, e: r.on(e).will_be1(op["state"]),
    "will_be_removed1": lambda r, op, e: r.on(e).will_be_removed1(op["state"]),
    "index1": lambda r, op, e: r.on(e).index1(op["state"]),
    "relations_of": lambda r, op, e: relation_names(lambda: r.on(e).relations_of(op["state"])),
    "relations_between": lambda r, op, e: relation_names(
        lambda: r.on(e).relations_between(*op["states"])
    ),
    "sort_states": lambda r, op, e: list(r.on(e).sort_states(op["states"])),
    "schema_ver": lambda r, op, e: r.on(e).schema_ver,
    "verify_states": op_verify_states,
    "set_schema": op_set_schema,
    "snapshot_clock": op_snapshot("clock"),
    "snapshot_time": op_snapshot("time"),
    "is_clock": lambda r, op, e: r.on(e).is_clock(r.snapshots[op["id"]]),
    "is_time": lambda r, op, e: r.on(e).is_time(r.snapshots[op["id"]], op.get("states")),
    "is_clock_value": lambda r, op, e: r.on(e).is_clock(op["clock"]),
    "eval": op_eval,
    "panic_to_err": op_panic_to_err,
    "panic_to_err_state": op_panic_to_err_state,
    "export_import": op_export_import,
    "dispose": op_dispose,
    # waiting -> {closed_now, same_as?}
    "when": lambda r, op, e: r.wait(op, r.on(e).when(op["states"], **r.ctx(op))),
    "when1": lambda r, op, e: r.wait(op, r.on(e).when1(op["state"], **r.ctx(op))),
    "when_not": lambda r, op, e: r.wait(op, r.on(e).when_not(op["states"], **r.ctx(op))),
    "when_not1": lambda r, op, e: r.wait(op, r.on(e).when_not1(op["state"], **r.ctx(op))),
    "when_next_active": lambda r, op, e: r.wait(
        op, r.on(e).when_next_active(op["state"], **r.ctx(op))
    ),
    "when_time": lambda r, op, e: r.wait(
        op, r.on(e).when_time(op["states"], op["ticks"], **r.ctx(op))
    ),
    "when_time1": lambda r, op, e: r.wait(
        op, r.on(e).when_time1(op["state"], op["ticks"][0], **r.ctx(op))
    ),
    "when_ticks": lambda r, op, e: r.wait(
        op, r.on(e).when_ticks(op["state"], op["n"], **r.ctx(op))
    ),
    "when_args": lambda r, op, e: r.wait(
        op, r.on(e).when_args(op["state"], op["args"], **r.ctx(op))
    ),
    "when_err": lambda r, op, e: r.wait(op, r.on(e).when_err(**r.ctx(op))),
    "when_queue": lambda r, op, e: r.wait(op, r.on(e).when_queue(op["n"], **r.ctx(op))),
    "when_queue_ends": lambda r, op, e: r.wait(op, r.on(e).when_queue_ends(**r.ctx(op))),
    "when_query_a_gt_4b": lambda r, op, e: r.wait(
        op, r.on(e).when_query(lambda clock: clock["A"] > 4 * clock["B"], **r.ctx(op))
    ),
    "when_query_a_lt_b": lambda r, op, e: r.wait(
        op, r.on(e).when_query(lambda clock: clock["A"] < clock["B"], **r.ctx(op))
    ),
    "cancel_ctx": op_cancel_ctx,
    "state_ctx": op_state_ctx,
}


# --- expect keys -------------------------------------------------------------------


def exp_ret(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    r.check_ret(op, want, out.ret, where, observed=False)


def exp_ret_set(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    ok = isinstance(out.ret, list) and sorted(out.ret) == sorted(want)
    assert_match(ok, where, want, out.ret)


def exp_ret_not(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    assert_match(not same(want, out.ret), where, f"not {want!r}", out.ret)


def exp_raises(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    assert_match((out.raised is not None) is want, where, want, out.raised)
    if want:
        names = [*op.get("states", ()), *([op["state"]] if "state" in op else [])]
        if any(n not in r.target.state_names for n in names):
            assert isinstance(out.raised, am.StateUnknownError), repr(out.raised)


def active_set(r: Replay) -> set[str]:
    return set(r.target.active_states())


def exp_active(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    got = list(r.target.active_states())
    assert_match(set(got) == set(want) and len(got) == len(want), where, want, got)


def exp_active_contains(
    r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str
) -> None:
    got = active_set(r)
    assert_match(set(want) <= got, where, want, got)


def exp_active_excludes(
    r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str
) -> None:
    got = active_set(r)
    assert_match(not set(want) & got, where, want, got)


def exp_time(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    check_keys(where, want, frozenset({"states", "ticks"}))
    got = list(r.target.time(want["states"]))
    assert_match(got == want["ticks"], where, want, got)


def exp_time_sum_all(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    got = sum(r.target.time())
    assert_match(got == want, where, want, got)


def exp_clock(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    clock = r.target.clock()
    got = {name: clock.get(name) for name in want}
    assert_match(got == want, where, want, clock)


def exp_calls(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    assert_match(out.calls == want, where, want, out.calls)


def exp_calls_order(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    missing = [name for name in want if name not in out.calls]
    assert_match(not missing, f"{where} (missing {missing})", want, out.calls)
    firsts = [out.calls.index(name) for name in want]
    assert_match(firsts == sorted(firsts), where, want, out.calls)


def exp_calls_count(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    counts = Counter(out.calls)
    got = {name: counts[name] for name in want}
    assert_match(got == want, where, want, out.calls)


def exp_calls_count_all(
    r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str
) -> None:
    excluded = set(op["expect"].get("calls_count", {}))
    counts = {n: c for n, c in Counter(out.calls).items() if n not in excluded}
    ok = bool(counts) and all(c == want for c in counts.values())
    assert_match(ok, where, f"every call x{want}", out.calls)


def exp_calls_count_cumulative(
    r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str
) -> None:
    counts = Counter(r.calls)
    got = {name: counts[name] for name in want}
    assert_match(got == want, where, want, r.calls)


def exp_subs(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    unknown = set(want) - set(r.waiters)
    assert not unknown, f"{where}: no waiter registered as {sorted(unknown)}"
    got = {sub: r.waiters[sub].is_set() for sub in want}
    assert_match(got == want, where, want, got)


def exp_state_ctx_expired(
    r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str
) -> None:
    unknown = set(want) - set(r.state_ctxs)
    assert not unknown, f"{where}: no state ctx registered as {sorted(unknown)}"
    got = {ctx: bool(r.state_ctxs[ctx].expired) for ctx in want}
    assert_match(got == want, where, want, got)


def exp_is_err(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    got = r.target.is_err()
    assert_match(got is want, where, want, got)


def exp_nested(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    r.check_nested(want, out.nested, where, observed=False)


def captured_log(r: Replay, where: str) -> str:
    assert r.vector.get("capture_log"), f"{where}: the vector does not capture the log"
    return "\n".join(r.log_lines)


def exp_log_contains(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    log = captured_log(r, where)
    missing = [text for text in want if text not in log]
    assert not missing, f"{where}: {missing} not in the log:\n{log}"


def exp_log_regex(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    log = captured_log(r, where)
    missing = [rx for rx in want if not re.search(rx, log)]
    assert not missing, f"{where}: {missing} do not match the log:\n{log}"


EXPECT: dict[str, CheckFn] = {
    "result": exp_ret,
    "ret": exp_ret,
    "ret_set": exp_ret_set,
    "ret_not": exp_ret_not,
    "raises": exp_raises,
    "active": exp_active,
    "active_contains": exp_active_contains,
    "active_excludes": exp_active_excludes,
    "time": exp_time,
    "time_sum_all": exp_time_sum_all,
    "clock": exp_clock,
    "calls": exp_calls,
    "calls_order": exp_calls_order,
    "calls_count": exp_calls_count,
    "calls_count_all": exp_calls_count_all,
    "calls_count_cumulative": exp_calls_count_cumulative,
    "subs": exp_subs,
    "state_ctx_expired": exp_state_ctx_expired,
    "is_err": exp_is_err,
    "nested": exp_nested,
    "log_contains": exp_log_contains,
    "log_regex": exp_log_regex,
}


# --- observed keys -----------------------------------------------------------------


def obs_ret(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    r.check_ret(op, want, out.ret, where, observed=True)


def obs_active(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    want = r.observed_active_order(want)
    got = list(r.target.active_states())  # ordered
    assert_match(got == want, where, want, got)


def obs_clock_nonzero(
    r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str
) -> None:
    got = {name: tick for name, tick in r.target.clock().items() if tick}
    assert_match(got == want, where, want, got)


def obs_queue_tick(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    got = r.target.queue_tick()
    assert_match(got == want, where, want, got)


def obs_nested(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    r.check_nested(want, out.nested, where, observed=True)


def obs_subs_resolved(
    r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str
) -> None:
    got = {sub: waiter.is_set() for sub, waiter in r.waiters.items()}
    assert_match(got == want, where, want, got)


def obs_state_ctx_expired(
    r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str
) -> None:
    got = {name: bool(ctx.expired) for name, ctx in r.state_ctxs.items()}
    assert_match(got == want, where, want, got)


def obs_err(r: Replay, op: Mapping[str, Any], want: Any, out: Outcome, where: str) -> None:
    if want == "<nil>":  # Go's PanicToErr* quirk, semantics §14 #13: the port keeps the text
        assert r.panic_err_text is not None, f"{where}: '<nil>' without panic_to_err"
        want = r.panic_err_text
    err = r.scenario_err()
    got = None if err is None else str(err)
    assert_match(got == want, where, want, got)


OBSERVED: dict[str, CheckFn] = {
    "ret": obs_ret,
    "active": obs_active,
    "clock_nonzero": obs_clock_nonzero,
    "queue_tick": obs_queue_tick,
    "calls": exp_calls,
    "nested": obs_nested,
    "subs_resolved": obs_subs_resolved,
    "state_ctx_expired": obs_state_ctx_expired,
    "err": obs_err,
}
