"""The Machine: state, queue, handler dispatch and the public API (semantics §2, 3, 5, 9-13).

Everything here runs synchronously on the caller's thread; a mutation made
while the machine is idle drains the queue before it returns (semantics §3.3).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from typing import Any

import anyio.abc
import attrs

from . import dispatch as _dispatch
from . import queue as _queue
from . import report as _report
from . import tasks as _tasks
from . import tracing as _tracing
from . import when as _when
from ._mypyc import mypyc_attr
from .args import (
    AException,
    args_merge,
    pass_args,
)
from .clock import Time, is_active_tick
from .errors import (
    ArgumentError,
    AsyncMachineError,
    SchemaError,
    StateUnknownError,
    TracerError,
    WrongThreadError,
    format_trace,
)
from .handlers import Binding, Finals
from .logging import (
    L_CHANGES,
    L_EXTERNAL,
    L_NOTHING,
    L_OPS,
    LOG_ARGS,
    STRUCTLOG,
    LoggerFn,
    LogLevel,
    format_log_args,
    log_args_mapper,
)
from .mutation import ADD as _ADD
from .mutation import CANCELED, EXECUTED, Mutation, MutationType, Position, Result
from .mutation import REMOVE as _REMOVE
from .mutation import SET as _SET
from .names import StateNames
from .resolver import Relation, Resolver
from .schema import EXCEPTION, MACHINE_RESTORED, State, States, check_schema, parse_schema
from .tracing import Tracer
from .transition import Event, Plan, Transition
from .waiting import Ctx, StateCtx, Subscriptions, Waiter

__all__ = ["Machine", "Serialized"]


class _EnvDefault:
    """An option left to its default, which ``AM_*`` environment variables change."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<default>"


# the options' defaults are listed in Machine's docstring (help() shows "<default>")
_UNSET = _EnvDefault()
_INTERNAL_ERRORS_MAX = 10

_structlog = STRUCTLOG  # structlog, imported at the first line logged

# Machine._finals with no handler bound (read-only, shared)
_NO_FINALS: Finals = ({}, {})

# the fast paths make plain mutations without running Mutation.__init__ (see Mutation)
_new = object.__new__


def _env_on(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


@attrs.frozen
class Serialized:
    """A machine's exported state (semantics §1.7)."""

    id: str
    state_names: tuple[str, ...]
    time: tuple[int, ...]
    queue_tick: int = 0
    machine_tick: int = 0


# (sanitized schema, its sanitization error, the strict checks' error)
_Compiled = tuple[dict[str, State], SchemaError | None, SchemaError | None]
_PARSED: dict[object, _Compiled] = {}
_PARSED_BY_ID: dict[int, tuple[object, tuple[object, ...], _Compiled]] = {}


def _compile_schema(schema: Any) -> _Compiled:
    """Sanitize (semantics §1.4) and add the implicit Exception, cached per schema.

    The result is shared by machines of the same schema and never mutated
    (``set_schema`` replaces it). States classes are keys themselves; a dict of
    ``State`` values is keyed by its items (a dict of dicts is not cached).
    """
    # a schema dict seen before: its items compare equal without hashing a
    # State (hashing a key of 50 States is most of a machine's construction)
    if type(schema) is dict:
        seen = _PARSED_BY_ID.get(id(schema))
        if seen is not None and seen[0] is schema and seen[1] == tuple(schema.items()):
            return seen[2]
    key: object = None
    if isinstance(schema, type) and issubclass(schema, States):
        key = schema
    elif isinstance(schema, Mapping):
        try:
            key = tuple(schema.items())
            hash(key)
        except TypeError:
            key = None
    hit = _PARSED.get(key) if key is not None else None
    if hit is None:
        parsed, err = parse_schema(schema)
        strict_err = check_schema(schema)
        if EXCEPTION not in parsed:
            parsed[EXCEPTION] = State(multi=True)
        hit = (parsed, err, strict_err)
        if key is not None:
            if len(_PARSED) >= 256:
                _PARSED.clear()
            _PARSED[key] = hit
    if key is not None and type(schema) is dict:
        if len(_PARSED_BY_ID) >= 256:
            _PARSED_BY_ID.clear()
        # holds the dict, so its id is not reused while cached
        _PARSED_BY_ID[id(schema)] = (schema, tuple(schema.items()), hit)
    return hit


_ORDERS: dict[int, tuple[dict[str, State], list[str], dict[str, int]]] = {}


def _order_of(parsed: dict[str, State]) -> tuple[list[str], dict[str, int]]:
    """The default state order and its index, shared per compiled schema."""
    hit = _ORDERS.get(id(parsed))
    if hit is not None and hit[0] is parsed:
        return hit[1], hit[2]
    names = list(parsed)
    index = {n: i for i, n in enumerate(names)}
    if len(_ORDERS) >= 256:
        _ORDERS.clear()
    _ORDERS[id(parsed)] = (parsed, names, index)
    return names, index


@mypyc_attr(allow_interpreted_subclasses=True)
class Machine:
    """A clock-based, relational, multi-state machine.

    ``schema`` is a mapping of names to :class:`State` or an :class:`States`
    subclass. A schema error raises :class:`SchemaError` here: a relation to a
    state the schema lacks (with the closest name) or a Require / Remove
    conflict. ``strict_schema=False`` keeps the reference's lenient handling
    for schemas assembled in steps: unknown Add / Remove / After targets are
    dropped, an unknown Require target makes its state impossible to activate,
    and a conflict starts the machine in ``Exception`` with ``err`` set.

    Options shown as ``<default>`` depend on the environment: ``log_level`` is
    ``AM_LOG`` (a level name or number) or ``LogLevel.NOTHING``;
    ``handler_timeout`` 0.1 s (600 s with ``AM_DEBUG``, 1 s with
    ``AM_TEST_RUNNER``, ``None`` for no limit); ``panic_to_exception`` True
    (False with ``AM_DEBUG``); ``detect_eval`` False (True with
    ``AM_DETECT_EVAL`` or ``AM_DEBUG``). The rules are in docs/semantics.md.
    """

    #: The livelock guard of the auto states: when an auto transition fails
    #: (a handler raised) and its ``Exception`` mutation tries the same auto
    #: states again from the same active states, failing the same way, this
    #: many failures in a row stop the retries (reported as
    #: :class:`AutoLivelockError`). Settable per machine; at least 1.
    auto_retry_limit: int = 100

    def __init__(
        self,
        schema: Any,
        *,
        id: str | None = None,
        names: Sequence[str] | None = None,
        handlers: object | None = None,
        parent: Machine | str | None = None,
        tags: Iterable[str] = (),
        log_level: LogLevel | int | _EnvDefault = _UNSET,
        logger: LoggerFn | None = None,
        tracers: Iterable[Tracer] = (),
        queue_limit: int = 1000,
        handler_timeout: float | _EnvDefault | None = _UNSET,
        panic_to_exception: bool | _EnvDefault = _UNSET,
        detect_eval: bool | _EnvDefault = _UNSET,
        dispose_timeout: float = 1.0,
        log_steps: bool = False,
        log_args_max: int = 20,
        log_args_names: Sequence[str] | None = None,
        dont_log_id: bool = False,
        log_stack_trace: bool = True,
        strict_schema: bool = True,
        report_errors: bool | _EnvDefault = _UNSET,
    ) -> None:
        parsed, schema_err, strict_err = _compile_schema(schema)
        if strict_schema and (strict_err is not None or schema_err is not None):
            lines = [str(e) for e in (strict_err, schema_err) if e is not None]
            raise SchemaError("\n".join(lines))
        debug = _env_on("AM_DEBUG")
        if isinstance(handler_timeout, _EnvDefault):
            if debug:
                handler_timeout = 600.0
            elif _env_on("AM_TEST_RUNNER"):
                handler_timeout = 1.0
            else:
                handler_timeout = 0.1
        if isinstance(panic_to_exception, _EnvDefault):
            panic_to_exception = not debug
        if isinstance(detect_eval, _EnvDefault):
            detect_eval = _env_on("AM_DETECT_EVAL") or debug
        if isinstance(log_level, _EnvDefault):
            env = os.environ.get("AM_LOG", "")
            log_level = LogLevel.parse(env) if env else L_NOTHING
        if handler_timeout is not None and (
            not isinstance(handler_timeout, int | float) or handler_timeout < 0
        ):
            raise ArgumentError(
                f"handler_timeout must be seconds >= 0 or None: {handler_timeout!r}"
            )
        if not isinstance(queue_limit, int) or queue_limit < 1:
            raise ArgumentError(f"queue_limit must be a positive int: {queue_limit!r}")

        self._id: str = id if id else os.urandom(8).hex()
        self._parent_id = ""
        parent_mach: Machine | None = None
        if isinstance(parent, Machine):
            parent_mach = parent
            self._parent_id = parent.id
        elif isinstance(parent, str):
            self._parent_id = parent
        if isinstance(tags, str):
            raise ArgumentError(f"tags must be a list of str, got the str {tags!r}")
        self._tags: list[str] = list(dict.fromkeys(tags))
        self._log_level = LogLevel.parse(log_level)
        self._logger = logger
        self._log_id = not dont_log_id
        self._args_mapper = (
            log_args_mapper(log_args_max, log_args_names) if log_args_names is not None else None
        )
        self.log_steps = log_steps
        self.log_stack_trace = log_stack_trace
        self.queue_limit = queue_limit
        self.handler_timeout: float | None = handler_timeout
        self.panic_to_exception: bool = bool(panic_to_exception)
        self.detect_eval: bool = bool(detect_eval)
        self.dispose_timeout = dispose_timeout
        self.strict_schema: bool = bool(strict_schema)
        # report errors nobody handles (and handler timeouts) via structlog
        self.report_errors: bool = (
            _report.reporting_default()
            if isinstance(report_errors, _EnvDefault)
            else bool(report_errors)
        )
        self._report_pending: list[tuple[AException, str, str]] = []
        # values of companion modules (rpc, pipes, telemetry): machine.attached.PerMachine
        self._attached: dict[object, Any] = {}
        self._report_hook: Callable[[Transition], Any] = lambda tx: _report.end_hook(self, tx)
        self._last_reported: BaseException | None = None
        # the last unhandled-error report: (what it was about, when, repeats since)
        self._report_repeat: tuple[tuple[str, str, str, str], float, int] | None = None

        self._schema: dict[str, State] = parsed
        # shared with other machines of this schema: replaced, never mutated
        self._names: list[str]
        self._index: dict[str, int]
        self._names, self._index = _order_of(parsed)
        # the clock: updated in place unless pinned (a transition that escaped
        # reads this list; see Transition._escape), then copied first
        self._ticks: list[int] = [0] * len(self._names)
        self._ticks_pinned = False
        self._tick_sum = 0
        # replaced, never mutated (transitions keep a reference; plans share them)
        self._active: list[str] = []
        self._active_set: frozenset[str] | set[str] = frozenset()
        # the plan the active list came from (if it still is its target list)
        self._plan: Plan | None = None
        self._verified = False
        self._queue: deque[Mutation] = deque()
        self._queue_tick = 1
        self._queue_pending = 0
        self._machine_tick = 0
        self._draining = False
        self._tx: Transition | None = None
        self._bindings: list[Binding] = []
        self._handler_names: frozenset[str] = frozenset()
        self._pair_firsts: frozenset[str] = frozenset()
        # derived from _handler_names, assigned with it (dispatch.final_names)
        self._finals: Finals = _NO_FINALS
        self._binding_num = 0
        self._handlers_ever_bound = False
        self._handler_called = False
        self._panic_caught = False
        self._current_handler = ""
        self._current_eval = ""
        self._err: Exception | None = None
        self._internal_errors: list[AsyncMachineError] = []
        self._tracers: list[Tracer] = []
        # internal observers for upper layers (an rpc server watching its
        # source): unlike a tracer they do not take the transition off the
        # fast path; called after the tracers' transition_end / schema hooks
        self._end_hooks: list[Callable[[Transition], Any]] = []
        self._schema_hooks: list[Callable[[Machine], Any]] = []
        self._on_error: Callable[[Machine, Exception], Any] | None = None
        self._on_change: Callable[[Machine, Time, Time], Any] | None = None
        self._on_dispose: list[Callable[[str], Any]] = []
        self._disposing = False
        self._disposed = False
        self._groups: dict[str, list[int]] = {}
        self._groups_order: list[str] = []
        self._pre_logs: list[str] = []
        self._pre_log_levels = bytearray()  # the level of each line of _pre_logs
        self._ctx = Ctx()
        self._subs = Subscriptions(self)
        self._disposed_waiter = Waiter("whenDisposed")
        self._task_group: Any = None
        # set by start(): how state-scoped tasks are started (tasks._workers_for)
        self._workers: Any = None  # tasks._Workers on trio and asyncio
        self._spawn: Any = None  # else a task per job (tasks.run_scoped)
        self._scope_cls: Any = None
        self._host: Any = None  # tasks._AsyncioHost on asyncio
        self._loop_thread: int | None = None

        self._resolver = Resolver(self)
        self._resolver.new_schema(self._schema, self._names)

        if parent_mach is not None:
            for t in parent_mach._tracers:
                t.new_submachine(parent_mach, self)
        # each item as `object`: a non-tracer raises TracerError, not the compiled
        # build's TypeError for an item of the wrong type
        items: Iterable[object] = tracers
        for item in items:
            t = self._check_tracer(item)
            self._tracers.append(t)
            t.machine_init(self)
        if names is not None:
            self.verify_states(names)
        if handlers is not None:
            self.bind_handlers(handlers, id=f"comm-{self._id[:1].upper()}{self._id[1:]}")
        if schema_err is not None:
            self.add_err(schema_err)
        if _tracing._machine_hooks:
            for hook in tuple(_tracing._machine_hooks):
                hook(self, parent_mach)

    # ----- identity and settings

    @property
    def id(self) -> str:
        """The machine id (random 16 hex chars unless given)."""
        return self._id

    @property
    def parent_id(self) -> str:
        """The parent machine's id, or ``""``."""
        return self._parent_id

    @property
    def tags(self) -> list[str]:
        """A copy of the tags."""
        return list(self._tags)

    def set_tags(self, tags: Iterable[str]) -> None:
        """Replace the tags (deduplicated)."""
        if isinstance(tags, str):
            raise ArgumentError(f"tags must be a list of str, got the str {tags!r}")
        self._tags = list(dict.fromkeys(tags))

    @property
    def log_level(self) -> LogLevel:
        """The current log level (settable)."""
        return self._log_level

    @log_level.setter
    def log_level(self, level: LogLevel | int) -> None:
        self._log_level = LogLevel.parse(level)

    @property
    def logger(self) -> LoggerFn | None:
        """The ``logger(level, line)`` callable, or None (structlog)."""
        return self._logger

    def set_logger(self, logger: LoggerFn | None) -> None:
        """Send log lines to ``logger(level, line)`` (None: structlog)."""
        self._logger = logger

    def set_log_args(self, max_len: int = 20, names: Sequence[str] | None = LOG_ARGS) -> None:
        """Choose which mutation args appear in log lines (None: none)."""
        self._args_mapper = log_args_mapper(max_len, names) if names is not None else None

    @property
    def state_names(self) -> tuple[str, ...]:
        """The state names in state order (semantics §1.5)."""
        return tuple(self._names)

    @property
    def schema(self) -> dict[str, State]:
        """A copy of the sanitized schema."""
        return dict(self._schema)

    @property
    def schema_ver(self) -> int:
        """Number of state names (semantics §1.6)."""
        return len(self._names)

    @property
    def states_verified(self) -> bool:
        """True once ``verify_states`` (or ``names=``) succeeded."""
        return self._verified

    @property
    def transition(self) -> Transition | None:
        """The transition being processed, or None when idle."""
        tx = self._tx
        if tx is not None and not tx._escaped:
            tx._escape()
        return tx

    @property
    def err(self) -> Exception | None:
        """The last error (never cleared by removing ``Exception``)."""
        return self._err

    def is_err(self) -> bool:
        """True if ``Exception`` is active."""
        return EXCEPTION in self._active_set

    @property
    def internal_errors(self) -> list[AsyncMachineError]:
        """Handler timeouts, oldest first, the last 10 kept (Go ``ErrInternal``)."""
        return list(self._internal_errors)

    @property
    def is_disposed(self) -> bool:
        """True once disposal completed."""
        return self._disposed

    @property
    def tracers(self) -> list[Tracer]:
        """A copy of the bound tracers."""
        return list(self._tracers)

    @property
    def resolver(self) -> Resolver:
        """The relations resolver."""
        return self._resolver

    def __repr__(self) -> str:
        if getattr(self, "_subs", None) is None:  # the constructor raised
            return f"<Machine {getattr(self, '_id', '?')} (not constructed)>"
        if self._disposing:
            return f"<Machine {self._id} disposed>"
        return f"<Machine {self._id} {self.string()}>"

    # ----- logging

    def _log(self, level: LogLevel, line: str) -> None:
        if level > self._log_level or self._disposing:
            return
        if self._log_id:
            line = f"[{self._id[:5]}] {line}"
        if self._logger is not None:
            self._logger(level, line)
        else:
            _structlog.info(line, machine=self._id, level=str(level))
        tx = self._tx
        if tx is not None and not tx.is_completed:
            tx.log_entries.append(line)
            levels = tx.log_levels
            if levels is None:
                levels = tx.log_levels = bytearray()
            levels.append(level)
        elif not self._pre_logs or self._pre_logs[-1] != line:
            self._pre_logs.append(line)
            self._pre_log_levels.append(level)
            if len(self._pre_logs) > 1000:
                del self._pre_logs[:500]
                del self._pre_log_levels[:500]

    def _log_args(self, args: Mapping[str, Any]) -> str:
        mapper = self._args_mapper
        if mapper is None or not args:
            return ""
        return format_log_args(mapper(args))

    def log_at(self, level: LogLevel | int, line: str) -> None:
        """Emit ``line`` at ``level`` as the machine's own lines are (upper layers:
        ``[pipe-out:add] Foo to m2`` and the like); newlines become spaces."""
        lvl = LogLevel.parse(level)
        if lvl <= self._log_level:
            self._log(lvl, line.replace("\n", " "))

    def log(self, msg: str, *args: Any) -> None:
        """An external log line: ``[exter] <msg>`` (``%`` formatting with args)."""
        if self._disposing or self._log_level < L_EXTERNAL:
            return
        text = (msg % args) if args else msg
        self._log(L_EXTERNAL, "[exter] " + text.replace("\n", " "))

    # ----- input validation

    def _unknown(self, name: object) -> StateUnknownError:
        if not isinstance(name, str):
            raise ArgumentError(f"a state name must be a str, got {name!r}")
        import difflib  # cold: an error message

        close = difflib.get_close_matches(name, self._names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return StateUnknownError(
            f"missing states: {name} not defined in schema for {self._id}{hint}"
        )

    def _parse(self, states: Iterable[str]) -> list[str]:
        """Validate state names; dedupe keeping first occurrences (semantics §3.1)."""
        if isinstance(states, str):
            raise ArgumentError(
                f"states must be a list of state names, got the str {states!r};"
                " use the *1 method (e.g. add1) for one state"
            )
        schema = self._schema
        try:
            for s in states:
                if s not in schema:
                    raise self._unknown(s)
        except TypeError:
            raise ArgumentError(
                f"states must be a list of state names, got {type(states).__name__}"
            ) from None
        out = list(states)
        if len(out) > 1 and len(set(out)) != len(out):
            out = list(dict.fromkeys(out))
        return out

    def _parse_list(self, states: Iterable[str]) -> list[str]:
        """``_parse`` of any iterable of names but a bare str."""
        if isinstance(states, str):
            return self._parse(states)
        return self._parse(list(states))

    def _known(self, states: Iterable[str], fn: str) -> Sequence[str]:
        """Reads: ``states`` as given when every name is known (a str raises
        :class:`ArgumentError`, an unknown name :class:`StateUnknownError`)."""
        if isinstance(states, str):
            raise ArgumentError(
                f"{fn}() takes a list of state names, got the str {states!r}"
                f" (did you mean [{states!r}]?)"
            )
        names = states if isinstance(states, list | tuple) else list(states)
        schema = self._schema
        try:
            for s in names:
                if s not in schema:
                    raise self._unknown(s)
        except TypeError:
            raise ArgumentError(
                f"{fn}() takes a list of state names, got {type(states).__name__}"
            ) from None
        return names

    def _parse1(self, state: str) -> list[str]:
        if state not in self._schema:
            if not isinstance(state, str):
                raise ArgumentError(f"a state name must be a str, got {state!r}")
            raise self._unknown(state)
        return [state]

    def _check_args(self, args: Mapping[str, Any] | None) -> dict[str, Any]:
        if args is None:
            return {}
        if type(args) is dict:
            return args
        if isinstance(args, Mapping):
            return dict(args)
        raise ArgumentError(f"args must be a dict[str, Any] or None, got {type(args).__name__}")

    def _check_thread(self) -> None:
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            raise WrongThreadError(
                f"machine {self._id} was called from a thread other than its loop's;"
                " use trio.from_thread.run_sync (or anyio.from_thread.run_sync)"
            )

    # ----- mutations (semantics §3)

    def add(
        self,
        states: StateNames,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Activate ``states`` (subject to relations)."""
        if self._disposing:
            return CANCELED
        called = self._parse(states)
        if self._idle_plain():
            if args is None and event is None:
                mut = _new(Mutation)
                mut.type = _ADD
                mut.called = called
                mut.args = {}
                return _queue.run_idle(self, mut)
            return _queue.run_idle(self, self._idle_mut(_ADD, called, args, event))
        return self._add(called, args, event)

    def add1(
        self,
        state: str,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Activate one state."""
        if self._disposing:
            return CANCELED
        # the fast paths inlined: add1 is the hottest call there is
        if (
            not self._queue
            and not self._tracers
            and self._log_level < L_OPS
            and state in self._schema
        ):
            if not self._draining and self._tx is None:
                if args is None and event is None:
                    mut = _new(Mutation)
                    mut.type = _ADD
                    mut.called = [state]
                    mut.args = {}
                    return _queue.run_idle(self, mut)
                return _queue.run_idle(self, self._idle_mut(_ADD, [state], args, event))
            if self._draining and args is None and event is None:
                mut = _new(Mutation)
                mut.type = _ADD
                mut.called = [state]
                mut.args = {}
                return _queue.enqueue(self, mut)
        return self._add(self._parse1(state), args, event)

    def _idle_plain(self) -> bool:
        """Idle with nothing to log or trace: a mutation can take ``run_idle``."""
        return (
            not self._queue
            and not self._draining
            and self._tx is None
            and not self._tracers
            and self._log_level < L_OPS
        )

    def _idle_mut(
        self,
        mtype: MutationType,
        called: list[str],
        args: Mapping[str, Any] | None,
        event: Event | None,
    ) -> Mutation:
        """The mutation ``run_idle`` takes, with what ``mutate()`` would give it
        (args checked, the source of ``event``)."""
        return Mutation(
            mtype,
            called,
            self._check_args(args),
            source=None if event is None else _queue.source_of(event),
        )

    def _add(
        self, called: list[str], args: Mapping[str, Any] | None, event: Event | None
    ) -> Result:
        return _queue.add(self, called, args, event)

    def remove(
        self,
        states: StateNames,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Deactivate ``states``."""
        if self._disposing:
            return CANCELED
        called = self._parse(states)
        if self._idle_plain():
            if args is None and event is None:
                mut = _new(Mutation)
                mut.type = _REMOVE
                mut.called = called
                mut.args = {}
                return _queue.run_idle(self, mut)
            return _queue.run_idle(self, self._idle_mut(_REMOVE, called, args, event))
        return self._remove(called, args, event)

    def remove1(
        self,
        state: str,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Deactivate one state."""
        if self._disposing:
            return CANCELED
        if state in self._schema and self._idle_plain():
            if args is None and event is None:
                mut = _new(Mutation)
                mut.type = _REMOVE
                mut.called = [state]
                mut.args = {}
                return _queue.run_idle(self, mut)
            return _queue.run_idle(self, self._idle_mut(_REMOVE, [state], args, event))
        if (
            self._draining
            and args is None
            and event is None
            and not self._queue
            and self._tx is not None
            and not self._tracers
            and self._log_level < L_OPS
            and state in self._schema
        ):
            # semantics §3.3 step 2: removing an inactive state is a no-op here
            if state not in self._active_set:
                return EXECUTED
            mut = _new(Mutation)
            mut.type = _REMOVE
            mut.called = [state]
            mut.args = {}
            return _queue.enqueue(self, mut)
        return self._remove(self._parse1(state), args, event)

    def _remove(
        self, called: list[str], args: Mapping[str, Any] | None, event: Event | None
    ) -> Result:
        return _queue.remove(self, called, args, event)

    def set(
        self,
        states: StateNames,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Make ``states`` the active ones (subject to relations)."""
        if self._disposing:
            return CANCELED
        called = self._parse(states)
        if self._idle_plain():
            if args is None and event is None:
                mut = _new(Mutation)
                mut.type = _SET
                mut.called = called
                mut.args = {}
                return _queue.run_idle(self, mut)
            return _queue.run_idle(self, self._idle_mut(_SET, called, args, event))
        if len(self._queue) >= self.queue_limit:
            return self._queue_full(called)
        return self._mutate(_SET, called, self._check_args(args), event)

    def toggle(
        self,
        states: StateNames,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Remove ``states`` if all are active, else add them."""
        if self._disposing:
            return CANCELED
        called = self._parse(states)
        active = self._active_set
        mtype = _REMOVE if all(s in active for s in called) else _ADD
        if self._idle_plain():
            return _queue.run_idle(self, self._idle_mut(mtype, called, args, event))
        if mtype is _REMOVE:
            return self._remove(called, args, event)
        return self._add(called, args, event)

    def toggle1(
        self,
        state: str,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Remove ``state`` if active, else add it."""
        if self._disposing:
            return CANCELED
        called = self._parse1(state)
        mtype = _REMOVE if state in self._active_set else _ADD
        if self._idle_plain():
            return _queue.run_idle(self, self._idle_mut(mtype, called, args, event))
        if mtype is _REMOVE:
            return self._remove(called, args, event)
        return self._add(called, args, event)

    def add_err(
        self,
        err: Exception,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Store ``err`` and add ``Exception`` (semantics §9)."""
        return self.add_err_state(EXCEPTION, err, args, event=event)

    def add_err_state(
        self,
        state: str,
        err: Exception,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Store ``err`` and add ``[state, Exception]`` with the error in the args.

        Errors are never refused by a full queue: unlike other mutations,
        error mutations are queued beyond ``queue_limit``.
        """
        return self._add_err_from(state, err, args, event, "")

    def _add_err_from(
        self,
        state: str,
        err: Exception,
        args: Mapping[str, Any] | None,
        event: Event | None,
        source: str,
    ) -> Result:
        """``add_err_state``; ``source`` names the code that raised (reports)."""
        if self._disposing or err is None:
            return CANCELED
        if not isinstance(err, BaseException):
            raise ArgumentError(f"err must be an exception, got {type(err).__name__}")
        called = self._parse([state, EXCEPTION])
        self._err = err
        trace = format_trace(err) if self.log_stack_trace else ""
        exc = AException(err=err, err_trace=trace, fn=source)
        exc_args = pass_args(exc)
        if self._on_error is not None:
            self._on_error(self, err)
        if self.report_errors:
            _report.watch(self, exc, source, "" if state == EXCEPTION else state)
        return self._mutate(_ADD, called, args_merge(args, exc_args), event)

    def _queue_full(self, called: list[str]) -> Result:
        return _queue.queue_full(self, called)

    def _mutate(
        self, mtype: MutationType, called: list[str], args: dict[str, Any], event: Event | None
    ) -> Result:
        return _queue.mutate(self, mtype, called, args, event)

    def _prepend(self, mut: Mutation) -> Result:
        return _queue.prepend(self, mut)

    def _drain(self) -> Result:
        return _queue.drain(self)

    # ----- dry runs and eval

    def can_add(self, states: StateNames, args: Mapping[str, Any] | None = None) -> Result:
        """Dry run of ``add``: EXECUTED if it would be accepted (semantics §3.6)."""
        return _queue.can_add(self, states, args)

    def can_add1(self, state: str, args: Mapping[str, Any] | None = None) -> Result:
        """Dry run of ``add1``."""
        return self.can_add([state], args)

    def can_remove(self, states: StateNames, args: Mapping[str, Any] | None = None) -> Result:
        """Dry run of ``remove``."""
        return _queue.can_remove(self, states, args)

    def can_remove1(self, state: str, args: Mapping[str, Any] | None = None) -> Result:
        """Dry run of ``remove1`` (args are passed, unlike Go: semantics §14 #19)."""
        return self.can_remove([state], args)

    def eval(self, source: str, fn: Callable[[], Any]) -> bool:
        """Run ``fn`` serialized with handlers; False when it cannot run (semantics §3.7)."""
        return _queue.eval(self, source, fn)

    # ----- applying states (semantics §2.1, 5.6)

    def _apply(self, tx: Transition, called: Sequence[str], targets: Sequence[str]) -> None:
        _dispatch.apply(self, tx, called, targets)

    def _revert(self, tx: Transition) -> None:
        _dispatch.revert(self, tx)

    # ----- handler dispatch (semantics §5.1, 5.6)

    def _handle(self, name: str, is_final: bool, is_enter: bool, is_self: bool) -> Result:
        return _dispatch.handle(self, name, is_final, is_enter, is_self)

    def _handler_timeout(self, tx: Transition, b: Binding, name: str, elapsed: float) -> None:
        _dispatch.handler_timeout(self, tx, b, name, elapsed)

    def _recover(self, err: Exception, event: Event) -> None:
        _dispatch.recover(self, err, event)

    def _auto_livelock(self, tx: Transition, auto: list[str], fails: int) -> None:
        _dispatch.auto_livelock(self, tx, auto, fails)

    # ----- handlers and tracers

    def bind_handlers(self, handlers: object, *, id: str | None = None) -> str:
        """Bind a handler object, or a ``{method name: callable}`` mapping; returns its id."""
        return _dispatch.bind_handlers(self, handlers, id=id)

    def detach_handlers(self, binding_id: str) -> None:
        """Detach a binding by id; unknown ids raise :class:`ArgumentError`."""
        _dispatch.detach_handlers(self, binding_id)

    def _index_handler_names(self) -> None:
        _dispatch.index_handler_names(self)

    @property
    def handlers(self) -> list[str]:
        """Ids of the bound handler objects, in bind order."""
        return [b.id for b in self._bindings]

    @staticmethod
    def _check_tracer(tracer: object) -> Tracer:
        if not isinstance(tracer, Tracer):
            raise TracerError(f"tracers must be am.Tracer instances, got {type(tracer).__name__}")
        return tracer

    # `object`: TracerError, not the compiled build's TypeError, for a non-tracer
    def tracer_bind(self, tracer: object) -> str:
        """Bind a :class:`Tracer` instance; returns its id (anything else: :class:`TracerError`)."""
        return _dispatch.tracer_bind(self, self._check_tracer(tracer))

    def tracer_detach(self, tracer_id: str) -> None:
        """Detach a tracer by id (``TracerError`` if not bound)."""
        _dispatch.tracer_detach(self, tracer_id)

    def on_error(self, fn: Callable[[Machine, Exception], Any] | None) -> None:
        """Call ``fn(machine, err)`` from every ``add_err*``."""
        self._on_error = fn

    def on_change(self, fn: Callable[[Machine, Time, Time], Any] | None) -> None:
        """Call ``fn(machine, time_before, time_after)`` after every transition."""
        self._on_change = fn

    @contextlib.contextmanager
    def panic_to_err(self, args: Mapping[str, Any] | None = None) -> Generator[None, None, None]:
        """An ``Exception`` raised in the block becomes ``add_err`` (semantics §9)."""
        try:
            yield
        except Exception as err:
            if not self.panic_to_exception or self._disposing:
                raise
            self.add_err(err, args)

    @contextlib.contextmanager
    def panic_to_err_state(
        self, state: str, args: Mapping[str, Any] | None = None
    ) -> Generator[None, None, None]:
        """An ``Exception`` raised in the block becomes ``add_err_state``."""
        self._parse1(state)
        try:
            yield
        except Exception as err:
            if not self.panic_to_exception or self._disposing:
                raise
            self.add_err_state(state, err, args)

    # ----- checking (semantics §13)

    def is_(self, states: StateNames) -> bool:
        """All ``states`` active (unknown names raise; False after dispose)."""
        if isinstance(states, str):
            raise ArgumentError(f"is_() takes a list of states, got the str {states!r}; use is1()")
        active = self._active_set
        ok = True
        for s in states:
            if s not in active:
                if s not in self._schema and not self._disposing:
                    raise self._unknown(s)
                ok = False
        return ok

    def is1(self, state: str) -> bool:
        """``state`` is active (unknown names raise; False after dispose)."""
        if state in self._active_set:
            return True
        if state not in self._schema and not self._disposing:
            raise self._unknown(state)
        return False

    def __contains__(self, state: str) -> bool:
        """``state in mach``: :meth:`is1`."""
        return self.is1(state)

    def not_(self, states: StateNames) -> bool:
        """None of ``states`` active (unknown names raise; False after dispose)."""
        if self._disposing:
            return False
        called = self._parse(states)
        active = self._active_set
        return not any(s in active for s in called)

    def not1(self, state: str) -> bool:
        """``state`` is inactive (unknown names raise; False after dispose)."""
        if self._disposing:
            return False
        self._parse1(state)
        return state not in self._active_set

    def any(self, *groups: StateNames) -> bool:
        """Some group fully active (every name is checked)."""
        found = False
        for g in groups:
            if self.is_(g):
                found = True
        return found

    def any1(self, *states: str) -> bool:
        """Some state active (every name is checked)."""
        found = False
        for s in states:
            if self.is1(s):
                found = True
        return found

    def has(self, states: StateNames) -> bool:
        """All ``states`` defined in the schema."""
        if isinstance(states, str):
            raise ArgumentError(f"has() takes a list of states, got the str {states!r}; use has1()")
        if self._disposing:
            return False
        schema = self._schema
        return all(s in schema for s in states)

    def has1(self, state: str) -> bool:
        """``state`` is defined in the schema."""
        return not self._disposing and state in self._schema

    def active_states(self, states: StateNames | None = None) -> list[str]:
        """The active list (machine order) or the given states that are active."""
        if self._disposing:
            return []
        if states is None:
            return list(self._active)
        active = self._active_set
        return [s for s in self._known(states, "active_states") if s in active]

    def switch(self, *groups: StateNames) -> str:
        """The first active state scanning the groups in order, else ``""``."""
        active = self._active_set
        for g in groups:
            for s in self._known(g, "switch"):
                if s in active:
                    return s
        return ""

    # ----- clocks and time (semantics §2)

    def tick(self, state: str) -> int:
        """The tick of ``state`` (0 after dispose; unknown names raise)."""
        if self._disposing:
            return 0
        i = self._index.get(state)
        if i is None:
            raise self._unknown(state)
        return self._ticks[i]

    def time(self, states: StateNames | None = None) -> Time:
        """Ticks in state order, or of the given states (unknown names raise)."""
        if self._disposing:
            return Time()
        if states is None:
            return Time(self._ticks)
        index, ticks = self._index, self._ticks
        return Time(ticks[index[s]] for s in self._known(states, "time"))

    def clock(self, states: StateNames | None = None) -> dict[str, int]:
        """``{state: tick}`` for all (state order) or the given states."""
        if self._disposing:
            return {}
        if states is None:
            return dict(zip(self._names, self._ticks, strict=True))
        return {s: self.tick(s) for s in self._known(states, "clock")}

    def is_time(self, t: Sequence[int], states: StateNames | None = None) -> bool:
        """Every ``t[i]`` equals the tick of ``states[i]`` (semantics §2.2)."""
        if self._disposing:
            return False
        names = self._names if states is None else self._known(states, "is_time")
        if len(t) > len(names):
            return False
        return all(v == self.tick(names[i]) for i, v in enumerate(t))

    def was_time(self, t: Sequence[int], states: StateNames | None = None) -> bool:
        """Every tick of ``states[i]`` is at least ``t[i]``."""
        if self._disposing:
            return False
        names = self._names if states is None else self._known(states, "was_time")
        if len(t) > len(names):
            return False
        return all(self.tick(names[i]) >= v for i, v in enumerate(t))

    def is_clock(self, clock: Mapping[str, int]) -> bool:
        """Every entry equals the current tick."""
        if self._disposing:
            return False
        self._known(clock, "is_clock")
        return all(self.tick(s) == v for s, v in clock.items())

    def was_clock(self, clock: Mapping[str, int]) -> bool:
        """Every current tick is at least the entry."""
        if self._disposing:
            return False
        self._known(clock, "was_clock")
        return all(self.tick(s) >= v for s, v in clock.items())

    def queue_tick(self) -> int:
        """Starts at 1, +1 per appended mutation taken off the queue (semantics §2.3)."""
        return self._queue_tick

    def machine_tick(self) -> int:
        """Starts at 0; changed only by ``import_`` (semantics §2.3)."""
        return self._machine_tick

    # ----- queue inspection (semantics §3.8)

    def queue_len(self) -> int:
        """Pending mutations, prepended ones included."""
        return len(self._queue)

    def queue(self) -> list[Mutation]:
        """A copy of the pending mutations."""
        return list(self._queue)

    def is_queued(
        self,
        mut_type: MutationType,
        states: StateNames,
        *,
        without_args_only: bool = False,
        strict_equal: bool = False,
        min_queue_tick: int = 0,
        is_check: bool = False,
        position: Position = Position.ANY,
    ) -> tuple[bool, int, int]:
        """``(found, index, queue_tick)`` of the first matching pending mutation,
        ``(False, 0, 0)`` if none (unknown names raise)."""
        if not self._disposing:
            self._known(states, "is_queued")
        return _queue.is_queued(
            self,
            mut_type,
            states,
            without_args_only=without_args_only,
            strict_equal=strict_equal,
            min_queue_tick=min_queue_tick,
            is_check=is_check,
            position=position,
        )

    def is_queued_above(
        self,
        threshold: int,
        mut_type: MutationType,
        states: StateNames,
        *,
        without_args_only: bool = False,
        strict_equal: bool = False,
        is_check: bool = False,
    ) -> bool:
        """True if more than ``threshold`` pending mutations match (see :meth:`is_queued`)."""
        if not self._disposing:
            self._known(states, "is_queued_above")
        return _queue.is_queued_above(
            self,
            threshold,
            mut_type,
            states,
            without_args_only=without_args_only,
            strict_equal=strict_equal,
            is_check=is_check,
        )

    def will_be(self, states: StateNames, position: Position = Position.ANY) -> bool:
        """An Add with these called states is pending."""
        return self.is_queued(_ADD, states, position=position)[0]

    def will_be1(self, state: str, position: Position = Position.ANY) -> bool:
        """An Add calling ``state`` is pending."""
        return self.will_be([state], position)

    def will_be_removed(self, states: StateNames, position: Position = Position.ANY) -> bool:
        """A Remove with these called states is pending."""
        return self.is_queued(_REMOVE, states, position=position)[0]

    def will_be_removed1(self, state: str, position: Position = Position.ANY) -> bool:
        """A Remove calling ``state`` is pending."""
        return self.will_be_removed([state], position)

    def will_be_any(self, states: StateNames) -> bool:
        """Some pending Add calls any of ``states`` (unknown names raise)."""
        if not self._disposing:
            self._known(states, "will_be_any")
        return _queue.will_be_any(self, states)

    # ----- schema, order and relations (semantics §1.5-1.7, 4.6)

    def index(self, states: StateNames) -> list[int]:
        """Positions in ``state_names`` (-1 unknown)."""
        if isinstance(states, str):
            raise ArgumentError(f"index() takes a list of states, got the str {states!r}")
        if self._disposing:
            return []
        index = self._index
        return [index.get(s, -1) for s in states]

    def index1(self, state: str) -> int:
        """Position in ``state_names`` (-1 unknown or disposed)."""
        if self._disposing:
            return -1
        return self._index.get(state, -1)

    def sort_states(self, states: StateNames) -> list[str]:
        """A copy sorted by Require topology then After (semantics §4.5)."""
        out = list(self._known(states, "sort_states"))
        self._resolver.sort_states(out)
        return out

    def relations_of(self, state: str) -> list[Relation]:
        """Relation kinds present on ``state`` (add require remove after)."""
        return self._resolver.relations_of(state)

    def relations_between(self, from_: str, to: str) -> list[Relation]:
        """Relation kinds from ``from_`` listing ``to``."""
        return self._resolver.relations_between(from_, to)

    def inbound_relations_of(self, to: str) -> list[str]:
        """States with any relation to ``to``."""
        return self._resolver.inbound_relations_of(to)

    def parse_states(self, states: StateNames) -> list[str]:
        """Known states only, deduplicated, first-occurrence order (semantics §14 #16)."""
        if isinstance(states, str):
            raise ArgumentError(f"parse_states() takes a list of states, got the str {states!r}")
        return [s for s in dict.fromkeys(states) if s in self._schema]

    def verify_states(self, names: Sequence[str]) -> None:
        """Adopt ``names`` as the state order; raises :class:`SchemaError` (1.5)."""
        if self._disposing:
            return
        if isinstance(names, str):
            raise ArgumentError("verify_states takes a list of state names")
        errs = [
            f"state {s} not defined in schema for {self._id}"
            for s in names
            if s not in self._schema
        ]
        if errs:
            raise SchemaError("\n".join(errs))
        unique = list(dict.fromkeys(names))
        # port: the deduplicated list must cover every state (semantics §14 #25)
        if len(unique) < len(self._schema):
            given = set(unique)
            missing = [s for s in self._schema if s not in given]
            raise SchemaError(
                f"error: trying to verify less states than registered for {self._id};"
                f" missing: {' '.join(missing)}"
            )
        self._reorder(unique)
        self._verified = True
        for t in self._tracers:
            t.verify_states(self)
        for hook in self._schema_hooks:
            hook(self)

    def _reorder(self, names: list[str]) -> None:
        old = dict(zip(self._names, self._ticks, strict=True))
        # the auto collection follows the state order (semantics §6.1); the Require
        # topology is not recomputed by verify_states (semantics §1.5)
        schema = self._schema
        self._resolver.auto_states = tuple(n for n in names if n in schema and schema[n].auto)
        self._names = names
        self._index = {n: i for i, n in enumerate(names)}
        self._ticks = [old.get(n, 0) for n in names]
        self._tick_sum = sum(self._ticks)
        for b in self._bindings:
            b.compile(names)
        self._index_handler_names()

    def set_schema(self, schema: Any, names: Sequence[str]) -> None:
        """Grow the schema; new relations apply at once (semantics §1.6)."""
        if self._tx is not None or self._draining:
            raise SchemaError("schema error: cannot set schema during a transition")
        parsed, err = parse_schema(schema)
        if self.strict_schema:
            strict_err = check_schema(schema)
            if strict_err is not None:
                raise strict_err
        if len(parsed) <= len(self._schema):
            raise SchemaError(f"schema error: new schema too short (> {len(self._schema)} states)")
        if len(parsed) != len(names):
            raise SchemaError("schema error: new schema has to be the same length as state names")
        if err is not None:
            raise err
        old = self._schema
        old_names = self._names
        self._schema = parsed
        try:
            self.verify_states(names)
        except BaseException:
            self._schema = old
            self._reorder(old_names)
            raise
        self._resolver.new_schema(self._schema, self._names)
        for t in self._tracers:
            t.schema_change(self, old)
        for hook in self._schema_hooks:
            hook(self)

    def export(self) -> Serialized:
        """Ids, state order and ticks (needs verified states, semantics §1.7)."""
        if not self._verified:
            raise SchemaError("schema error: call verify_states first")
        self._log(L_OPS, f"[import] exported at {sum(self._ticks)} ticks")
        return Serialized(
            id=self._id,
            state_names=tuple(self._names),
            time=tuple(self._ticks),
            queue_tick=self._queue_tick,
            machine_tick=self._machine_tick,
        )

    def import_(self, data: Serialized) -> None:
        """Restore ticks and active states; adds ``MachineRestored`` (semantics §1.7)."""
        if self._tx is not None or self._draining:
            raise SchemaError("schema error: cannot import during a transition")
        if data.id != self._id:
            raise SchemaError(f"import ID mismatch: {data.id} != {self._id}")
        if len(data.state_names) != len(self._schema) or len(data.time) != len(data.state_names):
            raise SchemaError("schema error: importing diff state len")
        for s in data.state_names:
            if s not in self._schema:
                raise self._unknown(s)
        self._names = list(data.state_names)
        schema = self._schema
        self._resolver.auto_states = tuple(n for n in self._names if schema[n].auto)
        self._index = {n: i for i, n in enumerate(self._names)}
        self._ticks = list(data.time)
        self._tick_sum = sum(self._ticks)
        self._active = [s for s, t in zip(self._names, self._ticks, strict=True) if t % 2]
        self._active_set = set(self._active)
        for b in self._bindings:
            b.compile(self._names)
        self._index_handler_names()
        self._verified = True
        self._machine_tick = data.machine_tick + 1
        if MACHINE_RESTORED in self._schema:
            self.add1(MACHINE_RESTORED)
        self._log(
            L_CHANGES,
            f"[import] imported {self._machine_tick} times, now at {sum(self._ticks)} ticks",
        )

    # ----- groups (semantics §12.1)

    def set_groups(self, groups: Any, states: type[States] | None = None) -> None:
        """Store ``{group: indexes}`` from a mapping / StateGroups, then typed groups."""
        from .schema import StateGroups

        if isinstance(groups, type) and issubclass(groups, StateGroups):
            mapping = groups.groups(inherited=False)
        elif isinstance(groups, Mapping):
            mapping = {k: list(v) for k, v in groups.items()}
        elif groups is None:
            mapping = {}
        else:
            raise ArgumentError("groups must be a mapping or an am.StateGroups subclass")
        out: dict[str, list[int]] = {}
        order: list[str] = []
        for name, lst in mapping.items():
            out[name] = self.index(lst)
            order.append(name)
        if states is not None:
            typed, typed_order = states.state_groups()
            snames = states.names()
            for g in typed_order:
                out[g] = self.index([snames[i] for i in typed[g]])
                order.append(g)
        self._groups = out
        self._groups_order = order

    def groups(self) -> tuple[dict[str, list[int]], list[str]]:
        """``(group -> state indexes, order)``."""
        return {k: list(v) for k, v in self._groups.items()}, list(self._groups_order)

    # ----- string forms (semantics §11.3)

    def string(self) -> str:
        """``(A:1 B:1)``: active states with ticks, in state order."""
        if self._disposing:
            return ""
        active = self._active_set
        ticks = self._ticks
        parts = [f"{n}:{ticks[i]}" for i, n in enumerate(self._names) if n in active]
        return "(" + " ".join(parts) + ")"

    def __str__(self) -> str:
        """``string()``; ``(disposed)`` once disposed (``string()`` is then empty)."""
        if self._disposing:
            return "(disposed)"
        return self.string()

    def string_all(self) -> str:
        """``(A:1) [B:0 Exception:0]``: active then inactive, in state order."""
        if self._disposing:
            return ""
        active = self._active_set
        on: list[str] = []
        off: list[str] = []
        for i, n in enumerate(self._names):
            (on if n in active else off).append(f"{n}:{self._ticks[i]}")
        return "(" + " ".join(on) + ") [" + " ".join(off) + "]"

    def inspect(self, states: StateNames | None = None) -> str:
        """The multi-line dump of semantics §11.3."""
        if self._disposing:
            return ""
        out: list[str] = []
        active = self._active_set
        for name in self._names if states is None else self._known(states, "inspect"):
            s = self._schema[name]
            out.append(f"{'1' if name in active else '0'} {name}\n")
            out.append(f"    |Tick     {self.tick(name)}\n")
            if s.auto:
                out.append("    |Auto     true\n")
            if s.multi:
                out.append("    |Multi    true\n")
            for label, rel in (
                ("Add", s.add),
                ("Require", s.require),
                ("Remove", s.remove),
                ("After", s.after),
            ):
                if rel is not None:
                    out.append(f"    |{label:<9}{' '.join(rel)}\n")
        return "".join(out)

    # ----- contexts and waiting (semantics §2.4, 8)

    def _disposed_waiter_or(self, kind: str) -> Waiter | None:
        return _when.disposed_waiter_or(self, kind)

    def when(self, states: StateNames, ctx: Ctx | None = None) -> Waiter:
        """Resolves when all ``states`` are active (semantics §8)."""
        return _when.when(self, states, ctx)

    def when1(self, state: str, ctx: Ctx | None = None) -> Waiter:
        """Resolves when ``state`` is active."""
        return self.when([state], ctx)

    def when_not(self, states: StateNames, ctx: Ctx | None = None) -> Waiter:
        """Resolves when all ``states`` are inactive."""
        return _when.when_not(self, states, ctx)

    def when_not1(self, state: str, ctx: Ctx | None = None) -> Waiter:
        """Resolves when ``state`` is inactive."""
        return self.when_not([state], ctx)

    def when_err(self, ctx: Ctx | None = None) -> Waiter:
        """Resolves when ``Exception`` is active."""
        return self.when([EXCEPTION], ctx)

    def when_time(self, states: StateNames, ticks: Sequence[int], ctx: Ctx | None = None) -> Waiter:
        """Resolves when each ``states[i]`` reached tick ``ticks[i]``."""
        return _when.when_time(self, states, ticks, ctx)

    def when_time1(self, state: str, tick: int, ctx: Ctx | None = None) -> Waiter:
        """Resolves when ``state`` reached ``tick``."""
        return self.when_time([state], [tick], ctx)

    def when_ticks(self, state: str, n: int, ctx: Ctx | None = None) -> Waiter:
        """Resolves after ``n`` more ticks of ``state``."""
        return self.when_time1(state, self.tick(state) + n, ctx)

    def when_next_active(self, state: str, ctx: Ctx | None = None) -> Waiter:
        """Resolves on the next activation of ``state`` (Multi re-entry included)."""
        return self.when_ticks(state, 2 if state in self._active_set else 1, ctx)

    def when_args(self, state: str, args: Mapping[str, Any], ctx: Ctx | None = None) -> Waiter:
        """Resolves when a ``<state>State`` event carries matching args."""
        return _when.when_args(self, state, args, ctx)

    def when_query(self, fn: Callable[[dict[str, int]], bool], ctx: Ctx | None = None) -> Waiter:
        """Resolves when ``fn(clock)`` is true after an accepted transition."""
        return _when.when_query(self, fn, ctx)

    def when_queue(self, tick: int) -> Waiter:
        """Resolves once the queue tick reached ``tick``."""
        return _when.when_queue(self, tick)

    def when_queue_ends(self) -> Waiter:
        """Resolves when the current drain finishes (at once when idle)."""
        return _when.when_queue_ends(self)

    # ----- task group, forks and disposal (_tasks.py)

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Run the machine's tasks in ``task_group`` (a trio nursery works too).

        The machine then belongs to the loop's thread; cancelling the task group
        adds ``Disposing`` if the schema has it, else disposes (semantics §10).
        """
        _tasks.start(self, task_group)

    @property
    def task_group(self) -> anyio.abc.TaskGroup | None:
        """The task group given to ``start`` / ``open_machine``, if any."""
        tg: anyio.abc.TaskGroup | None = self._task_group
        return tg

    def fork(self, state: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Run ``fn(*args)`` in the task group inside ``state``'s current cancel scope.

        ``state`` must be active: otherwise nothing starts and the result is
        False (as after disposal). ``fn`` must be an ``async def`` function
        (``TypeError``). An exception in the task becomes ``add_err``;
        cancellation when the state ends is silent.
        """
        return _tasks.fork(self, state, fn, args)

    def _fork_from_event(
        self, event: Event, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> bool:
        return _tasks.fork_from_event(self, event, fn, args)

    def _start_async_handler(self, event: Event, fn: Callable[..., Awaitable[Any]]) -> None:
        _tasks.start_async_handler(self, event, fn)

    def new_state_ctx(self, state: str) -> StateCtx:
        """A context valid while ``state`` keeps its current tick (shared, semantics §2.4)."""
        return _tasks.new_state_ctx(self, state)

    def dispose(self) -> None:
        """Dispose now (Go ``DisposeForce``); allowed inside a handler (semantics §10)."""
        _tasks.dispose(self)

    async def dispose_async(self) -> None:
        """Dispose gracefully (Go ``Dispose``): remove ``Start``, settle, dispose."""
        await _tasks.dispose_async(self)

    def on_dispose(self, fn: Callable[[str], Any]) -> None:
        """Call ``fn(machine_id)`` during disposal, before ``when_disposed`` resolves."""
        self._on_dispose.append(fn)

    def when_disposed(self) -> Waiter:
        """Resolves when disposal completed."""
        self._disposed_waiter._holders += 1
        return self._disposed_waiter

    # ----- testing seam

    def _inject(
        self, active: Sequence[str], clock: Mapping[str, int], queue_tick: int | None
    ) -> None:
        self._parse(list(active))
        self._parse(list(clock))
        self._active = list(active)
        self._active_set = set(active)
        self._ticks = [clock.get(n, 0) for n in self._names]
        for s in active:
            if not is_active_tick(self._ticks[self._index[s]]):
                self._ticks[self._index[s]] = 1
        self._tick_sum = sum(self._ticks)
        if queue_tick is not None:
            self._queue_tick = queue_tick
