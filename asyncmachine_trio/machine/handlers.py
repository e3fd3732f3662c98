"""Handler bindings: snake_case method lookup compiled into per-binding tables (semantics §5.1).

Each binding maps the reference's event names (``FooEnter``, ``FooBar``,
``AnyState``) to the bound methods once, at bind time, so dispatch is one dict
lookup per binding and no name is built or reflected on the hot path.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from . import report as _report
from ._mypyc import mypyc_attr
from .args import AException, parse_args
from .errors import SchemaError
from .logging import L_CHANGES
from .schema import ANY

if TYPE_CHECKING:
    from .transition import Event

__all__ = ["Binding", "ExceptionHandler", "HandlerFn", "HandlerWarning", "not_handler", "snake"]

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


class HandlerWarning(UserWarning):
    """A public method of a handler object looks like a handler but matches no
    state or event of the schema, so it is never called (a typo?)."""


F = TypeVar("F")

_NOT_HANDLER = "__am_not_handler__"

#: attribute marking a library handler that ``handler_timeout`` never applies to
#: (pipes: a slow moment inside one is the loop's or the OS's, see states.pipes)
UNTIMED = "_am_untimed"

# ``({state: state + "End"}, {state: state + "State"})`` for the bound handler
# names: Machine._finals (see dispatch.final_names)
Finals = tuple[dict[str, str], dict[str, str]]


def not_handler(fn: F) -> F:
    """Mark a method of a handler class as a helper: never bound, never checked.

    ``@am.not_handler`` above ``def get_state(self)`` keeps a helper whose name
    looks like a handler; a name starting with ``_`` does the same.
    """
    target = getattr(fn, "__func__", fn)  # staticmethod / classmethod
    setattr(target, _NOT_HANDLER, True)
    return fn


def _marked(obj: object, attr: str) -> bool:
    """``attr`` is a callable marked with :func:`not_handler` (None: not callable)."""
    try:
        static = inspect.getattr_static(obj, attr)
    except AttributeError:
        return False
    target = getattr(static, "__func__", static)
    return bool(getattr(target, _NOT_HANDLER, False))


def _is_method(obj: object, attr: str) -> bool:
    try:
        static = inspect.getattr_static(obj, attr)
    except AttributeError:
        return False
    return callable(static) or isinstance(static, staticmethod | classmethod)


_SUFFIX_WORDS = ("enter", "exit", "state", "end")


def _closest_handler(attr: str, by_snake: Mapping[str, str]) -> str | None:
    """The closest valid handler name if ``attr`` has a handler's shape
    (``foo_enterr``, ``fooo_enter``, ``foo_stat``, ``foo_baz``), else None."""
    import difflib  # cold: only for methods that match nothing

    snakes = list(by_snake)
    candidates: list[str] = []
    shaped = False
    i = attr.rfind("_")
    head, tail = attr[:i], attr[i + 1 :]
    close_tails = difflib.get_close_matches(tail, _SUFFIX_WORDS, n=1, cutoff=0.75)
    if tail in _SUFFIX_WORDS or (
        close_tails and difflib.get_close_matches(head, snakes, n=1, cutoff=0.75)
    ):
        shaped = True
        for word in close_tails:
            candidates += [f"{h}_{word}" for h in snakes]
    # a state's prefix followed by no event suffix and no state
    start = 0
    while (j := attr.find("_", start)) >= 0:
        left = attr[:j]
        if left in by_snake or left == "any":
            shaped = True
            words = ("enter", "state") if left == "any" else _SUFFIX_WORDS
            candidates += [f"{left}_{w}" for w in words]
            if left != "any":
                candidates += [f"{left}_{s}" for s in snakes]
        start = j + 1
    if not shaped:
        return None
    best = difflib.get_close_matches(attr, candidates, n=1, cutoff=0.0)
    return best[0] if best else ""


_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _warn_user(msg: str) -> None:
    """Warn at the first frame outside this package (the user's bind call)."""
    level = 1
    frame = sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(_PKG_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(msg, HandlerWarning, stacklevel=level)


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

    def compile(self, state_names: Iterable[str], *, warn: bool = False) -> None:
        """Build the event table for the schema; ambiguity is a SchemaError.

        The scan (names -> events, checks) depends only on the class and the
        state names, so it is cached per class; instances with their own
        callables (or mappings) are scanned every time. With ``warn``, methods
        shaped like handlers that match nothing give a :class:`HandlerWarning`
        (once per class and schema).
        """
        names = tuple(state_names)
        obj = self.obj
        cacheable = not isinstance(obj, Mapping) and not _own_callables(obj)
        key = (type(obj), names)
        scan = _SCANS.get(key) if cacheable else None
        if scan is None:
            scan = _Scan(*_scan(obj, names))
            if cacheable:
                if len(_SCANS) >= 1024:
                    _SCANS.clear()
                _SCANS[key] = scan
        if warn and scan.unmatched and not scan.warned:
            scan.warned = cacheable
            _warn_unmatched(obj, scan.unmatched, names)
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

    __slots__ = ("async_names", "attr_events", "event_state", "pairs", "unmatched", "warned")

    def __init__(self, entries: tuple[_Entry, ...], unmatched: tuple[str, ...]) -> None:
        # public names with an underscore that match no event (maybe typos)
        self.unmatched = unmatched
        self.warned = False
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


def _scan(obj: object, state_names: tuple[str, ...]) -> tuple[tuple[_Entry, ...], tuple[str, ...]]:
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
    unmatched: list[str] = []
    for attr in list(mapping) if mapping is not None else dir(obj):
        if not is_map and (attr.startswith("__") or "_" not in attr):
            continue
        events = _interpretations(attr, by_snake)
        if not events:
            if is_map:
                raise SchemaError(f"{attr!r} is not a handler name for this schema")
            if not attr.startswith("_"):
                unmatched.append(attr)
            continue
        if not is_map and _marked(obj, attr):
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
    return tuple(out), tuple(unmatched)


def _warn_unmatched(obj: object, unmatched: Iterable[str], state_names: Iterable[str]) -> None:
    by_snake = {snake(n): n for n in state_names}
    for attr in unmatched:
        closest = _closest_handler(attr, by_snake)
        if closest is None or not _is_method(obj, attr) or _marked(obj, attr):
            continue
        hint = f" (did you mean {closest}?)" if closest else ""
        _warn_user(
            f"{type(obj).__name__}.{attr} matches no state or event of this schema,"
            f" so it is never called{hint}; mark a helper method with"
            " @am.not_handler or start its name with '_'"
        )


@mypyc_attr(allow_interpreted_subclasses=True)
class ExceptionHandler:
    """Bindable default handler: ``exception_state`` logs every error.

    At ERROR to the stdlib logger ``asyncmachine_trio`` (with the handler
    that raised and the traceback), whatever the machine's ``log_level`` and
    ``report_errors``; and as the machine's own ``[error]`` line at
    ``LogLevel.CHANGES``. Subclass it to add your own handlers.
    """

    def exception_state(self, e: Event) -> None:
        """Log the error; ``[error] <msg>`` or ``[error:<type>] <called> (<err>)``."""
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
        source = args.fn if args is not None else ""
        where = f" in {source}" if source else ""
        head = f"error in machine {mach.id}{where}: {type(err).__name__}: {err}"
        _report.report_handled(mach, err, head, trace, source)
        mach._log(L_CHANGES, line)
