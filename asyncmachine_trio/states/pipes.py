"""Pipes: final handlers on a source machine that mutate a target machine.

Port of the reference's ``pkg/states/pipes`` (docs/states.md). A pipe
is a ``<state>_state`` (activation) or ``<state>_end`` (deactivation) handler
bound on the *source*; its body adds or removes a mapped state on the
*target*. Only final handlers pipe, so the source transition is never
blocked or canceled by a pipe: the target mutation is handed to the target's
*outbox* and runs later, where the target may still reject it in its own
negotiation.

The outbox, one per target machine, keeps the order of piped mutations (an
Add followed by a Remove of the same state arrives in that order; the
reference's goroutines can swap them). It is drained by a task started in
the target's task group (or, failing that, the source's); a machine pair
without any task group (plain synchronous use) gets the mutation right away,
which for an idle target runs its handlers inside the source's handler.

Every pipe logs ``[pipe-out:add|remove] <state> to <target id>`` on the source
and ``[pipe-in:add|remove] <state> from <source id>`` on the target (level
OPS); :func:`pipes_of` returns the lines of the pipes still in place. When
either machine is disposed the other logs ``[pipe:gc] <id>``, its records of
the pair are dropped, bindings piping into the disposed machine are detached
from their source and pending outbox entries for it are discarded.

Fixed on purpose (the reference has these as bugs or TODOs): ``bind_any``
records its inbound pipes on the target (not the source) and mirrors removals
too; bindings are detached when their target is disposed; states are checked
when a pipe is made; flat pipes decide whether to skip when the mutation is
delivered, not when the source transition ran; ``sync`` accepts an omitted
target list; ``bind_err`` always adds ``Exception`` along with a custom error
state; a forwarded error keeps its exception (``target.err``).
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

import anyio.abc

import asyncmachine_trio as am
from asyncmachine_trio.helpers import MachineApi
from asyncmachine_trio.machine.dispatch import UNTIMED
from asyncmachine_trio.machine.names import StateNames

from .connected import ConnectedStates

__all__ = [
    "PipeError",
    "PipeHandler",
    "PipeMachine",
    "add",
    "add_flat",
    "bind",
    "bind_any",
    "bind_connected",
    "bind_err",
    "bind_many",
    "bind_ready",
    "bind_start",
    "pipes_of",
    "remove",
    "remove_flat",
    "sync",
]

#: A pipe: a final handler bound on the source machine.
PipeHandler: TypeAlias = Callable[[am.Event], None]

#: Prefix of error state names: piping into one also adds ``Exception``.
ERR_PREFIX = "Err"


class PipeMachine(MachineApi, Protocol):
    """What a pipe needs from a machine: the machine API, raw log lines and the
    task group that runs deferred mutations (``am.Machine`` has all of it)."""

    def log_at(self, level: am.LogLevel | int, line: str) -> None: ...

    @property
    def task_group(self) -> anyio.abc.TaskGroup | None: ...


class PipeError(am.AsyncMachineError, ValueError):
    """A pipe cannot be made: empty state name, lists of different lengths, a
    source state piped twice in one binding."""


# ----- bookkeeping: pipe records, bindings into a machine, the outbox


class _Record:
    """One pipe end as logged: the other machine (weakly) and the log line."""

    __slots__ = ("line", "peer")

    def __init__(self, peer: PipeMachine, line: str) -> None:
        self.peer: weakref.ref[PipeMachine] = weakref.ref(peer)
        self.line = line


class _Book:
    """Per-machine pipe state, kept outside the machine (public API only)."""

    __slots__ = ("flushing", "inbound", "outbox", "records", "scheduled")

    def __init__(self) -> None:
        self.records: list[_Record] = []
        # (source, binding id) of bindings piping into this machine
        self.inbound: list[tuple[weakref.ref[PipeMachine], str]] = []
        self.outbox: deque[Callable[[], None]] = deque()
        self.flushing = False
        # a drain task is started and has not run yet: at most one per target
        self.scheduled = False


_books: weakref.WeakKeyDictionary[PipeMachine, _Book] = weakref.WeakKeyDictionary()


def _book(mach: PipeMachine) -> _Book:
    book = _books.get(mach)
    if book is None:
        book = _Book()
        _books[mach] = book
        ref = weakref.ref(mach)
        mach.on_dispose(lambda mach_id: _gc(ref, mach_id))
    return book


def _gc(ref: weakref.ref[PipeMachine], mach_id: str) -> None:
    """``mach`` is being disposed: drop its pipes on every peer."""
    mach = ref()
    if mach is None:
        return
    book = _books.pop(mach, None)
    if book is None:
        return
    book.outbox.clear()
    # bindings on other machines that pipe into this one
    for src_ref, bid in book.inbound:
        src = src_ref()
        if src is not None and not src.is_disposed and bid in src.handlers:
            src.detach_handlers(bid)
    peers: dict[int, PipeMachine] = {}
    for rec in book.records:
        peer = rec.peer()
        if peer is not None:
            peers[id(peer)] = peer
    for peer in peers.values():
        pbook = _books.get(peer)
        if pbook is None:
            continue
        pbook.records = [r for r in pbook.records if r.peer() is not mach]
        pbook.inbound = [(s, b) for s, b in pbook.inbound if s() is not mach]
        peer.log_at(am.LogLevel.OPS, f"[pipe:gc] {mach_id}")


def _record_pipe(
    is_add: bool, source: PipeMachine, source_state: str, target: PipeMachine, target_state: str
) -> None:
    """Log and remember both ends (Go ``AddPipeOut`` / ``AddPipeIn``)."""
    kind = "add" if is_add else "remove"
    out_line = f"[pipe-out:{kind}] {source_state} to {target.id}"
    in_line = f"[pipe-in:{kind}] {target_state} from {source.id}"
    _book(source).records.append(_Record(target, out_line))
    _book(target).records.append(_Record(source, in_line))
    source.log_at(am.LogLevel.OPS, out_line)
    target.log_at(am.LogLevel.OPS, in_line)


def pipes_of(mach: PipeMachine) -> list[str]:
    """The log lines of the pipes in place on ``mach``, in creation order
    (Go ``SemLogger().Pipes()``): for late log subscribers and graphs."""
    book = _books.get(mach)
    if book is None:
        return []
    return [r.line for r in book.records if r.peer() is not None]


def _deliver(source: PipeMachine, target: PipeMachine, fn: Callable[[], None]) -> None:
    """Queue ``fn`` (a mutation of ``target``) in the target's outbox and make sure
    it is drained, by a task when either machine has a task group."""
    book = _books.get(target)
    if book is None or target.is_disposed:
        return
    book.outbox.append(fn)
    if book.flushing or book.scheduled:
        return  # the running (or started) drain picks it up, in order
    for tg in (target.task_group, source.task_group):
        if tg is None:
            continue
        try:
            tg.start_soon(_drain_task, target, book, name=f"am-pipe-{target.id[:5]}")
            book.scheduled = True
            return
        except RuntimeError:  # the task group is closed
            continue
    _drain(target, book)


async def _drain_task(target: PipeMachine, book: _Book) -> None:
    # no checkpoint: runs even when started in a task group being cancelled
    book.scheduled = False
    _drain(target, book)


def _drain(target: PipeMachine, book: _Book) -> None:
    if book.flushing:
        return
    book.flushing = True
    try:
        while book.outbox:
            fn = book.outbox.popleft()
            try:
                fn()
            except Exception as err:
                # never let a pipe crash the task group: report on the target
                target.log_at(am.LogLevel.OPS, f"[pipe:err] {type(err).__name__}: {err}")
                try:
                    target.add_err(err)
                except Exception:
                    pass
    finally:
        book.flushing = False


def _flush(target: PipeMachine) -> None:
    book = _books.get(target)
    if book is not None:
        _drain(target, book)


def _untimed(pipe: PipeHandler) -> PipeHandler:
    """Pipes queue a mutation and return: ``handler_timeout`` never reverts the
    source for them (a pause of the loop or the OS would lose deliveries)."""
    setattr(pipe, UNTIMED, True)
    return pipe


# ----- validation


def _check_alive(*machs: PipeMachine) -> None:
    for m in machs:
        if m.is_disposed:
            raise am.DisposedError(f"cannot pipe: machine {m.id} is disposed")


def _check_has(mach: PipeMachine, states: StateNames, role: str) -> None:
    for s in states:
        if not mach.has1(s):
            raise am.StateUnknownError(f"pipe {role} {mach.id} has no state {s}")


def _check_name(name: str | None, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise PipeError(f"{what} must be a non-empty state name, got {name!r}")
    return name


# ----- Add / Remove pipes


def add(
    source: PipeMachine, target: PipeMachine, source_state: str, target_state: str | None = None
) -> PipeHandler:
    """A ``<source_state>_state`` handler adding ``target_state`` (default: the same
    name) to ``target``, with the source mutation's args.

    A target state named ``Err...`` is added together with ``Exception``; an
    error in the args (``am.AException``) becomes the target's ``err``.
    """
    return _add(False, source, target, source_state, target_state)


def add_flat(
    source: PipeMachine, target: PipeMachine, source_state: str, target_state: str | None = None
) -> PipeHandler:
    """Like :func:`add` without args, skipped when the target already has the states."""
    return _add(True, source, target, source_state, target_state)


def _add(
    flat: bool,
    source: PipeMachine,
    target: PipeMachine,
    source_state: str,
    target_state: str | None,
    *,
    with_exception: bool = False,
) -> PipeHandler:
    source_state = _check_name(source_state, "source_state")
    target_state = _check_name(target_state or source_state, "target_state")
    names = [target_state]
    is_err = with_exception or target_state.startswith(ERR_PREFIX)
    if is_err and target_state != am.EXCEPTION:
        names = [target_state, am.EXCEPTION]
    _check_alive(source, target)
    _check_has(source, [source_state], "source")
    _check_has(target, names, "target")
    _record_pipe(True, source, source_state, target, target_state)

    def pipe(e: am.Event) -> None:
        if target.is_disposed:
            return
        if flat:

            def mutate() -> None:
                if not target.is_(names):
                    target.add(names, event=e)

        else:
            args = dict(e.args)
            err = None
            if am.EXCEPTION in names:
                exc = am.parse_args(args, am.AException)
                err = exc.err if exc is not None else None

            def mutate() -> None:
                if isinstance(err, Exception):
                    target.add_err_state(target_state, err, args, event=e)
                else:
                    target.add(names, args, event=e)

        _deliver(source, target, mutate)

    return _untimed(pipe)


def remove(
    source: PipeMachine, target: PipeMachine, source_state: str, target_state: str | None = None
) -> PipeHandler:
    """A ``<source_state>_end`` handler removing ``target_state`` (default: the same
    name) from ``target``, with the source mutation's args."""
    return _remove(False, source, target, source_state, target_state)


def remove_flat(
    source: PipeMachine, target: PipeMachine, source_state: str, target_state: str | None = None
) -> PipeHandler:
    """Like :func:`remove` without args, skipped when the target state is inactive."""
    return _remove(True, source, target, source_state, target_state)


def _remove(
    flat: bool,
    source: PipeMachine,
    target: PipeMachine,
    source_state: str,
    target_state: str | None,
) -> PipeHandler:
    source_state = _check_name(source_state, "source_state")
    state = _check_name(target_state or source_state, "target_state")
    _check_alive(source, target)
    _check_has(source, [source_state], "source")
    _check_has(target, [state], "target")
    _record_pipe(False, source, source_state, target, state)

    def pipe(e: am.Event) -> None:
        if target.is_disposed:
            return
        if flat:

            def mutate() -> None:
                if target.is1(state):
                    target.remove1(state, event=e)

        else:
            args = dict(e.args)

            def mutate() -> None:
                target.remove1(state, args, event=e)

        _deliver(source, target, mutate)

    return _untimed(pipe)


# ----- binds: handler groups bound on the source, detached when the target goes


def _bind(
    source: PipeMachine, target: PipeMachine, handlers: Mapping[str, PipeHandler], bid: str
) -> str:
    bound = source.bind_handlers(dict(handlers), id=bid)
    if bound:
        _book(target).inbound.append((weakref.ref(source), bound))
    return bound


def _pair(
    source: PipeMachine,
    target: PipeMachine,
    state: str,
    active: str,
    inactive: str,
    handlers: dict[str, PipeHandler],
) -> None:
    prefix = am.snake(state)
    handlers[prefix + "_state"] = add(source, target, state, active)
    handlers[prefix + "_end"] = remove(source, target, state, inactive)


def bind_any(source: PipeMachine, target: PipeMachine) -> str:
    """Mirror every transition of ``source`` on ``target`` with ``set`` (an
    ``any_state`` handler); returns the binding id ``BindAny-<target id>``.

    The target must have every source state. A transition is skipped when the
    target already has exactly its target states among the source's states (and
    no Multi state was re-entered).
    """
    _check_alive(source, target)
    names = list(source.state_names)
    missing = [s for s in names if not target.has1(s)]
    if missing:
        raise am.StateUnknownError(
            f"BindAny: missing states in target {target.id}: {' '.join(missing)}"
        )
    multi = frozenset(n for n, s in source.schema.items() if s.multi)

    def pipe(e: am.Event) -> None:
        tx = e.transition
        if tx is None or target.is_disposed:
            return
        states = list(tx.target_states)
        reentered = any(s in multi and s in tx.called_set for s in states)
        args = dict(e.args)

        def mutate() -> None:
            have = [s for s in target.active_states() if source.has1(s)]
            if not reentered and set(have) == set(states):
                return
            target.set([s for s in states if target.has1(s)], args, event=e)

        _deliver(source, target, mutate)

    for state in names:
        _record_pipe(True, source, state, target, state)
    return _bind(source, target, {"any_state": _untimed(pipe)}, "BindAny-" + target.id)


def bind_connected(
    source: PipeMachine,
    target: PipeMachine,
    disconnected: str | None = None,
    connecting: str | None = None,
    connected: str | None = None,
    disconnecting: str | None = None,
) -> str:
    """Pipe the four :class:`~.connected.ConnectedStates` statuses to custom target
    states (each optional): added on activation, removed on deactivation.
    Returns ``BindConnected-<target id>``."""
    ss = ConnectedStates
    handlers: dict[str, PipeHandler] = {}
    for state, to in (
        (ss.Disconnected, disconnected),
        (ss.Connecting, connecting),
        (ss.Connected, connected),
        (ss.Disconnecting, disconnecting),
    ):
        if to:
            _pair(source, target, state, to, to, handlers)
    return _bind(source, target, handlers, "BindConnected-" + target.id)


def bind_err(source: PipeMachine, target: PipeMachine, target_err: str | None = None) -> str:
    """Add ``target_err`` (default ``Exception``, always with ``Exception``) to the
    target when the source's ``Exception`` activates. Returns ``BindErr-<target id>``."""
    handler = _add(
        False, source, target, am.EXCEPTION, target_err or am.EXCEPTION, with_exception=True
    )
    return _bind(source, target, {"exception_state": handler}, "BindErr-" + target.id)


def bind_start(
    source: PipeMachine,
    target: PipeMachine,
    active: str | None = None,
    inactive: str | None = None,
) -> str:
    """``Start`` activation adds ``active`` (default ``Start``), deactivation removes
    ``inactive`` (default ``active``). Returns ``BindStart-<target id>``."""
    active = active or am.START
    handlers: dict[str, PipeHandler] = {}
    _pair(source, target, am.START, active, inactive or active, handlers)
    return _bind(source, target, handlers, "BindStart-" + target.id)


def bind_ready(
    source: PipeMachine,
    target: PipeMachine,
    active: str | None = None,
    inactive: str | None = None,
) -> str:
    """``Ready`` activation adds ``active`` (default ``Ready``), deactivation removes
    ``inactive`` (default ``active``). Returns ``BindReady-<target id>``."""
    active = active or am.READY
    handlers: dict[str, PipeHandler] = {}
    _pair(source, target, am.READY, active, inactive or active, handlers)
    return _bind(source, target, handlers, "BindReady-" + target.id)


def bind(
    source: PipeMachine,
    target: PipeMachine,
    state: str,
    active: str | None = None,
    inactive: str | None = None,
) -> str:
    """Pipe any ``state``: activation adds ``active`` (default ``state``),
    deactivation removes ``inactive`` (default ``active``). One binding per
    call, id ``Bind-<state>-<target id>``."""
    state = _check_name(state, "state")
    active = active or state
    handlers: dict[str, PipeHandler] = {}
    _pair(source, target, state, active, inactive or active, handlers)
    return _bind(source, target, handlers, f"Bind-{state}-{target.id}")


def bind_many(
    source: PipeMachine,
    target: PipeMachine,
    states: StateNames,
    target_states: Sequence[str] | None = None,
) -> str:
    """Pipe each of ``states`` to the state at the same position of
    ``target_states`` (default: the same names), added and removed, in one
    binding with id ``BindMany-<len(states)>-<target id>``."""
    states = list(states)
    targets = list(target_states) if target_states is not None else states
    if len(states) != len(targets):
        raise PipeError(f"bind_many: {len(states)} source states but {len(targets)} target states")
    if len(set(states)) != len(states):
        raise PipeError(f"bind_many: a source state is listed twice: {' '.join(states)}")
    handlers: dict[str, PipeHandler] = {}
    for state, to in zip(states, targets, strict=True):
        _pair(source, target, _check_name(state, "state"), to, to, handlers)
    return _bind(source, target, handlers, f"BindMany-{len(states)}-{target.id}")


def sync(
    source: PipeMachine,
    target: PipeMachine,
    states: StateNames,
    target_states: Sequence[str] | None = None,
) -> int:
    """Copy ``states`` once: add the active ones and remove the inactive ones, as
    ``target_states`` (default: the same names), on ``target``.

    For (re)connecting pipes: pending piped mutations of the target are
    delivered first, so this wins over older pipe traffic. Returns the number
    of synced states.
    """
    states = list(states)
    targets = list(target_states) if target_states is not None else states
    if len(states) != len(targets):
        raise PipeError(f"sync: {len(states)} source states but {len(targets)} target states")
    _check_has(source, states, "source")
    _check_has(target, targets, "target")
    to_add: list[str] = []
    to_remove: list[str] = []
    for state, to in zip(states, targets, strict=True):
        (to_add if source.is1(state) else to_remove).append(to)
    _flush(target)
    if to_add:
        target.add(to_add)
    if to_remove:
        target.remove(to_remove)
    return len(to_add) + len(to_remove)


if TYPE_CHECKING:  # mypy proves the local machine is a pipe machine

    def _machine_is_pipe_machine(m: am.Machine) -> PipeMachine:
        return m
