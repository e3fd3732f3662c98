"""Handler bindings: snake_case method lookup compiled into per-binding tables (semantics §5.1).

Each binding maps the reference's event names (``FooEnter``, ``FooBar``,
``AnyState``) to the bound methods once, at bind time, so dispatch is one dict
lookup per binding and no name is built or reflected on the hot path.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .args import AException, parse_args
from .errors import SchemaError
from .logging import L_CHANGES
from .schema import ANY

if TYPE_CHECKING:
    from .transition import Event

__all__ = ["Binding", "ExceptionHandler", "HandlerFn", "snake"]

HandlerFn = Callable[["Event"], Any]

_SNAKE_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_ID_RE = re.compile(r"[^a-zA-Z0-9\-_.]+")

SUFFIXES = (
    ("_enter", "Enter"),
    ("_exit", "Exit"),
    ("_state", "State"),
    ("_end", "End"),
)
FINAL_SUFFIXES = ("State", "End")


def snake(name: str) -> str:
    """``DownloadingFile`` -> ``downloading_file``, ``RPCReady`` -> ``rpc_ready``."""
    return _SNAKE_RE.sub("_", name).lower()


def sanitize_binding_id(bid: str) -> str:
    """Drop characters outside ``[a-zA-Z0-9-_.]`` (semantics §5.1)."""
    return _ID_RE.sub("", bid)


def _interpretations(method: str, by_snake: dict[str, str]) -> list[tuple[str, bool, str, str]]:
    """Every (event name, is final, its state, pair's first state) ``method`` could mean."""
    out: list[tuple[str, bool, str, str]] = []
    for suffix, go_suffix in SUFFIXES:
        if method.endswith(suffix):
            head = method[: -len(suffix)]
            final = go_suffix in FINAL_SUFFIXES
            if head in by_snake:
                out.append((by_snake[head] + go_suffix, final, by_snake[head], ""))
            elif head == "any" and go_suffix in ("Enter", "State"):
                out.append((ANY + go_suffix, final, "", ""))
    # state-state and self handlers: split at each underscore
    start = 0
    while True:
        i = method.find("_", start)
        if i < 0:
            break
        left, right = method[:i], method[i + 1 :]
        if left in by_snake and right in by_snake:
            out.append((by_snake[left] + by_snake[right], False, by_snake[right], by_snake[left]))
        start = i + 1
    return out


class Binding:
    """One bound handler object and its compiled event table."""

    __slots__ = ("async_names", "event_state", "id", "num", "obj", "pairs", "table")

    def __init__(self, obj: object, bid: str, num: int) -> None:
        self.obj: object = obj
        self.id: str = bid
        self.num: int = num
        self.table: dict[str, HandlerFn] = {}
        self.async_names: frozenset[str] = frozenset()
        self.event_state: dict[str, str] = {}
        # (before, after) of the state-state handlers this binding defines
        self.pairs: frozenset[tuple[str, str]] = frozenset()

    def compile(self, state_names: Iterable[str]) -> None:
        """Build the event table for the schema; ambiguity is a SchemaError.

        The scan (names -> events, checks) depends only on the class and the
        state names, so it is cached per class; instances with their own
        callables (or mappings) are scanned every time.
        """
        names = tuple(state_names)
        obj = self.obj
        cacheable = not isinstance(obj, Mapping) and not _own_callables(obj)
        key = (type(obj), names)
        scan = _SCANS.get(key) if cacheable else None
        if scan is None:
            scan = _Scan(_scan(obj, names))
            if cacheable:
                if len(_SCANS) >= 1024:
                    _SCANS.clear()
                _SCANS[key] = scan
        if isinstance(obj, Mapping):
            self.table = {event: obj[attr] for attr, event in scan.attr_events}
        else:
            self.table = {event: getattr(obj, attr) for attr, event in scan.attr_events}
        # shared by every binding of the class (read only): memory per machine
        self.event_state = scan.event_state
        self.async_names = scan.async_names
        self.pairs = scan.pairs


class _Scan:
    """What a scan of a handler class yields, shared by its bindings."""

    __slots__ = ("async_names", "attr_events", "event_state", "pairs")

    def __init__(self, entries: tuple[_Entry, ...]) -> None:
        self.attr_events = tuple((attr, event) for attr, event, _, _, _ in entries)
        self.event_state = {event: state for _, event, state, _, _ in entries}
        self.pairs = frozenset(
            (first, state) for _, _, state, first, _ in entries if first and first != state
        )
        self.async_names = frozenset(event for _, event, _, _, is_async in entries if is_async)


# (attr, event, state, pair's first state, is async) per bindable attribute
_Entry = tuple[str, str, str, str, bool]
_SCANS: dict[tuple[type, tuple[str, ...]], _Scan] = {}


def _own_callables(obj: object) -> bool:
    own: dict[str, Any] | None = getattr(obj, "__dict__", None)
    return own is not None and any(callable(v) for v in own.values())


def _scan(obj: object, state_names: tuple[str, ...]) -> tuple[_Entry, ...]:
    """Resolve every handler-like attribute of ``obj`` against the state names."""
    by_snake: dict[str, str] = {}
    for name in state_names:
        sn = snake(name)
        if sn in by_snake and by_snake[sn] != name:
            raise SchemaError(
                f"states {by_snake[sn]} and {name} have the same handler prefix {sn!r}"
            )
        by_snake[sn] = name
    out: list[_Entry] = []
    # a mapping binds {method name: callable} (Go HandlersBindMaps); any other
    # object binds its attributes; unknown mapping keys are errors, not skipped
    mapping: Mapping[str, Any] | None = obj if isinstance(obj, Mapping) else None
    is_map = mapping is not None
    for attr in list(mapping) if mapping is not None else dir(obj):
        if not is_map and (attr.startswith("__") or "_" not in attr):
            continue
        events = _interpretations(attr, by_snake)
        if not events:
            if is_map:
                raise SchemaError(f"{attr!r} is not a handler name for this schema")
            continue
        if len(events) > 1:
            raise SchemaError(
                f"handler {attr} of {type(obj).__name__} is ambiguous for this"
                f" schema: it could mean {' or '.join(e[0] for e in events)}"
            )
        fn = mapping[attr] if mapping is not None else getattr(obj, attr, None)
        if not callable(fn):
            if is_map:
                raise SchemaError(f"handler {attr!r} is not callable: {fn!r}")
            continue
        event, is_final, state, first = events[0]
        is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        if is_async and not is_final:
            raise SchemaError(
                f"negotiation handler {attr} of {type(obj).__name__} must be a"
                " plain function, not async"
            )
        out.append((attr, event, state, first, is_async))
    return tuple(out)


class ExceptionHandler:
    """Bindable default handler: ``exception_state`` logs the error (semantics §9)."""

    def exception_state(self, e: Event) -> None:
        """Log ``[error] <msg>`` or ``[error:<type>] <called> (<err>)`` + trace."""
        mach = e.machine
        args = parse_args(e.args, AException)
        err: BaseException | None = args.err if args else None
        trace = args.err_trace if args else ""
        if err is None:
            err = ValueError("missing error in args to ExceptionState")
        with_trace = mach.log_stack_trace and trace
        if args is None or args.panic is None:
            msg = str(err).strip()
            line = f"[error] {msg}\n{trace}" if with_trace else f"[error] {msg}"
        else:
            tx = args.panic.transition
            mtype = tx.mutation.type if tx is not None else "add"
            called = " ".join(args.panic.called_states)
            line = f"[error:{mtype}] {called} ({err})"
            if with_trace:
                line += "\n" + trace
        mach._log(L_CHANGES, line)
