"""Reports of errors nobody handles, and of handler timeouts (issue 11).

An error is a state: ``add_err`` and a raising handler add ``Exception``. When
no bound handler object defines ``exception_state``, nothing would ever look
at it, so the machine reports it once, at ERROR, to the standard library
logger ``asyncmachine_trio`` (as asyncio reports "Task exception was never
retrieved" to its logger). A handler slower than ``handler_timeout``, whose
transition was canceled or reverted, is reported at WARNING.

The same unhandled error (type, message, handler and state) reported again for the
same machine within :data:`REPEAT_WINDOW` seconds is counted rather than logged, and
the next report of it says how many were left out: a worker that fails at start-up
over and over, or a periodic job failing the same way, logs once a minute, not on
every try. ``report_errors=False`` (or ``AM_REPORT_ERRORS=0``) silences both. Nothing
here runs on the mutation fast path: an error registers an end-of-transition
hook that removes itself once the error's mutation was processed.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .args import AException
from .schema import EXCEPTION

if TYPE_CHECKING:
    from .machine import Machine
    from .transition import Event, Transition

__all__ = [
    "REPEAT_WINDOW",
    "ErrorReport",
    "add_listener",
    "handler_name",
    "remove_listener",
    "report_timeout",
    "reporting_default",
    "watch",
]

_KEY = AException.args_key()
_EXC_STATE = EXCEPTION + "State"


class ErrorReport:
    """One report: what a listener of :func:`add_listener` receives.

    ``message`` is the whole text (with the traceback, if any).
    """

    __slots__ = ("err", "handler", "kind", "level", "machine_id", "message", "state", "trace")

    def __init__(
        self,
        kind: str,
        machine_id: str,
        message: str,
        err: BaseException | None,
        handler: str,
        state: str,
        trace: str = "",
    ) -> None:
        # "unhandled" (ERROR), "handled" (ERROR, am.ExceptionHandler), "timeout" (WARNING)
        self.kind: str = kind
        self.level: str = "warning" if kind == "timeout" else "error"
        self.machine_id: str = machine_id
        self.message: str = message
        self.err: BaseException | None = err
        self.handler: str = handler
        self.state: str = state
        self.trace: str = trace  # the traceback (or stack) text, "" if none

    def __repr__(self) -> str:
        return f"<ErrorReport {self.kind} {self.machine_id}: {self.message.splitlines()[0]}>"


Listener = Callable[[ErrorReport], Any]
_listeners: list[Listener] = []


def add_listener(fn: Listener) -> None:
    """Call ``fn(report)`` for every report of every machine (test fixtures)."""
    _listeners.append(fn)


def remove_listener(fn: Listener) -> None:
    """Undo :func:`add_listener` (unknown listeners are ignored)."""
    if fn in _listeners:
        _listeners.remove(fn)


def reporting_default() -> bool:
    """``report_errors`` when not given: on, unless ``AM_REPORT_ERRORS=0``."""
    return os.environ.get("AM_REPORT_ERRORS", "1").strip().lower() not in ("0", "false", "no")


def _emit(report: ErrorReport, head: str) -> None:
    """Log ``head`` (the traceback as ``exc_info`` when the error was raised);
    the record carries ``machine_id``, ``handler`` and ``state``."""
    import logging  # on first use: keeps ``import asyncmachine_trio`` cheap

    extra = {"machine_id": report.machine_id, "handler": report.handler, "state": report.state}
    err = report.err
    logger = logging.getLogger("asyncmachine_trio")
    level = logging.ERROR if report.level == "error" else logging.WARNING
    if err is not None and err.__traceback__ is not None:
        logger.log(level, head, exc_info=(type(err), err, err.__traceback__), extra=extra)
    else:
        logger.log(level, report.message, extra=extra)
    for fn in list(_listeners):
        fn(report)


# ----- the Python name of a handler


def handler_name(m: Machine, event: Event, err: BaseException | None = None) -> str:
    """``Handlers.foo_state``: the method bound to ``event`` that raised ``err``.

    With several bindings defining the event, the frame under the dispatcher
    in the traceback tells which one raised.
    """
    fns = [b.table[event.name] for b in m._bindings if event.name in b.table]
    if len(fns) > 1 and err is not None and err.__traceback__ is not None:
        tb: types.TracebackType | None = err.__traceback__
        codes = {id(_code(fn)): fn for fn in fns}
        while tb is not None:
            hit = codes.get(id(tb.tb_frame.f_code))
            if hit is not None:
                return _qualname(hit)
            tb = tb.tb_next
    return _qualname(fns[0]) if fns else event.name


def _code(fn: Any) -> Any:
    return getattr(getattr(fn, "__func__", fn), "__code__", None)


def _qualname(fn: Any) -> str:
    self_ = getattr(fn, "__self__", None)
    name = getattr(fn, "__name__", None)
    if self_ is not None and name:
        return f"{type(self_).__name__}.{name}"
    return str(getattr(fn, "__qualname__", None) or name or repr(fn))


# ----- unhandled errors


def watch(m: Machine, exc: AException, source: str, state: str) -> None:
    """Report ``exc`` after its ``Exception`` mutation, unless it is handled.

    ``source`` names the code that raised (a handler's Python name, a task),
    ``state`` the state it was about. Call before the mutation is queued.
    """
    if not m.report_errors or exc.err is None:
        return
    pending = m._report_pending
    pending.append((exc, source, state))
    if m._report_hook not in m._end_hooks:
        m._end_hooks.append(m._report_hook)


def end_hook(m: Machine, tx: Transition) -> None:
    """After each transition while errors are pending: report the applied ones."""
    pending = m._report_pending
    exc = tx.mutation.args.get(_KEY) if tx.mutation.args else None
    for i, (p_exc, source, state) in enumerate(pending):
        if p_exc is exc:
            del pending[i]
            if tx.is_accepted and EXCEPTION in tx.mutation.called and _unhandled(m):
                _report_unhandled(m, p_exc, source, state)
            break
    if pending and not m._queue:
        # their mutations were dropped (full queue, disposal): not applied
        pending.clear()
    hooks = m._end_hooks
    if not pending and hooks and hooks[-1] is m._report_hook:
        # only when last: the caller is iterating over this list (a hook added
        # after this one keeps it until that one leaves; idle, it costs a call)
        hooks.pop()


#: an unhandled error like the last one reported for its machine (same type, message,
#: source and state) within this many seconds is counted, not reported again
REPEAT_WINDOW = 60.0


def _repeat(m: Machine, err: BaseException, source: str, state: str) -> int | None:
    """``None`` if this report repeats the machine's last one within
    :data:`REPEAT_WINDOW` (it is counted), else how many repeats were not logged."""
    import time

    key = (type(err).__qualname__, str(err), source, state)
    now = time.monotonic()
    last = m._report_repeat
    if last is not None and last[0] == key and now - last[1] < REPEAT_WINDOW:
        m._report_repeat = (key, last[1], last[2] + 1)
        return None
    m._report_repeat = (key, now, 0)
    return last[2] if last is not None and last[0] == key else 0


def _unhandled(m: Machine) -> bool:
    return m.is_err() and _EXC_STATE not in m._handler_names


def _report_unhandled(m: Machine, exc: AException, source: str, state: str) -> None:
    err = exc.err
    assert err is not None
    if m._last_reported is err:
        return
    m._last_reported = err
    skipped = _repeat(m, err, source, state)
    if skipped is None:
        return  # the same error again, soon after: counted, not logged
    where = f" in {source}" if source else ""
    about = f" (state {state})" if state else ""
    head = f"unhandled error in machine {m.id}{where}{about}: {type(err).__name__}: {err}"
    if skipped:
        times = "time" if skipped == 1 else "times"
        head += f" (it happened {skipped} more {times} since its last report, not logged)"
    hint = (
        "no handler defines exception_state: bind am.ExceptionHandler() or your own"
        " exception_state to handle errors, or pass report_errors=False"
        " (AM_REPORT_ERRORS=0) to silence this report"
    )
    trace = exc.err_trace.rstrip("\n")
    text = f"{head}\n{hint}"
    message = text + (f"\n{trace}" if trace else "")
    _emit(ErrorReport("unhandled", m.id, message, err, source, state, trace), text)


def report_handled(m: Machine, err: BaseException, head: str, trace: str, source: str) -> None:
    """What ``am.ExceptionHandler`` logs: the error, at ERROR (whatever the switch)."""
    trace = trace.rstrip("\n")
    message = head + (f"\n{trace}" if trace else "")
    _emit(ErrorReport("handled", m.id, message, err, source, "", trace), head)


# ----- handler timeouts


def report_timeout(
    m: Machine,
    err: BaseException,
    handler: str,
    state: str,
    elapsed: float,
    limit: float,
    final: bool,
) -> None:
    if not m.report_errors:
        return
    what = "its states were reverted" if final else "its transition was canceled"
    message = (
        f"handler timeout in machine {m.id}: {handler} took {elapsed:.3f}s,"
        f" over handler_timeout={limit:g}s; {what}"
    )
    _emit(ErrorReport("timeout", m.id, message, None, handler, state), message)
