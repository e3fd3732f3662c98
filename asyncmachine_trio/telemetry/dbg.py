"""The debugger exporter: streams schemas and transitions to a debugger (protocol v2).

    from asyncmachine_trio.telemetry import dbg
    dbg.attach(mach)                      # localhost:6831
    dbg.attach(mach, "127.0.0.1:7000")

or without code: ``AM_DBG_ADDR=1 python app.py`` (see ``docs/telemetry.md``).

One :class:`Exporter` per debugger address serves every machine traced to it
over one TCP connection, from a worker thread with a blocking socket: the app's
event loop (trio, asyncio, or none) never does telemetry I/O. On the machine's
side a transition costs one append to a bounded buffer (records are built by
the worker); when the buffer is full or the debugger is away the transition is
only counted as dropped. The worker reconnects with exponential backoff,
resends the schemas, reports drop counts, and detaches after ``max_failures``
failed attempts in a row. It logs one line when it connects and one when it
gives up.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import select
import socket
import threading
from collections import deque
from collections.abc import Callable
from time import time_ns
from typing import TYPE_CHECKING, Any

import attrs

from .. import __version__
from ..machine import tracing as _tracing
from ..machine.attached import PerMachine
from .env import is_rpc_plumbing
from .errors import ProtocolError, TelemetryError
from .model import MUTATION_TYPES as _TYPES
from .model import STEP_FLAGS as _FLAGS
from .model import SchemaRecord, _default_mapper, schema_record, strip_log_prefix
from .protocol import (
    PREAMBLE,
    Decoder,
    Dropped,
    ErrorFrame,
    Gone,
    Hello,
    check_welcome,
    encode_frame,
    encode_wire_txs,
    parse_addr,
)

if TYPE_CHECKING:
    from ..machine.machine import Machine
    from ..machine.transition import Transition

__all__ = [
    "CLOSED",
    "CONNECTING",
    "DETACHED",
    "DOWN",
    "UP",
    "Exporter",
    "ExporterConfig",
    "attach",
    "detach",
    "exporter_of",
    "exporters",
]

_log = logging.getLogger("asyncmachine_trio.telemetry")

CONNECTING = "connecting"
UP = "up"
DOWN = "down"
DETACHED = "detached"
CLOSED = "closed"

_SCHEMA = object()  # buffer marker: (re)send the machine's schema
_GONE = object()  # buffer marker: the machine was disposed


@attrs.frozen(kw_only=True)
class ExporterConfig:
    """Tuning of an :class:`Exporter` (the defaults suit most apps)."""

    #: transitions buffered at most; more are dropped and counted
    buffer: int = 10_000
    #: records per ``txs`` frame at most
    batch: int = 1000
    #: after the first buffered record, wait this long to batch more (seconds)
    flush_interval: float = 0.01
    #: failed connection attempts in a row before the exporter detaches
    max_failures: int = 10
    #: reconnect delays: first, doubling up to the last (seconds)
    backoff_min: float = 0.1
    backoff_max: float = 5.0
    connect_timeout: float = 2.0
    #: a send blocked longer than this counts as a failure
    send_timeout: float = 5.0
    #: how often an idle worker checks that the debugger is still there
    idle_poll: float = 0.25
    #: on interpreter exit, flush for at most this long (seconds)
    exit_flush: float = 1.0


_NONE: list[Any] = []  # shared by records, never mutated
_NO_ARGS: dict[str, str] = {}


def _steps_wire(steps: list[Any]) -> list[list[Any]]:
    return [
        [
            _FLAGS.get(s.type, 0),
            s.from_state,
            s.to_state,
            str(s.relation or ""),
            s.is_final,
            s.is_enter,
            s.is_self,
        ]
        for s in steps
    ]


class _Tracked:
    """Per machine and exporter: sequence numbers and drop counters.

    ``seq`` and ``dropped`` are written by the machine's thread only;
    ``dropped_worker`` and ``reported`` by the worker only.
    """

    __slots__ = (
        "dropped",
        "dropped_worker",
        "end_hook",
        "initial",
        "mach",
        "mid",
        "reported",
        "schema_hook",
        "seq",
    )

    def __init__(self, mach: Machine) -> None:
        self.mach = mach
        self.mid = mach.id
        self.seq = 0
        self.dropped = 0
        self.dropped_worker = 0
        self.reported = 0
        self.end_hook: Callable[[Transition], None] | None = None
        self.schema_hook: Callable[[Machine], None] | None = None
        #: the schema as it was when tracing started (made on the machine's thread)
        self.initial: SchemaRecord | None = schema_record(mach)


class Exporter:
    """One debugger connection shared by the machines traced to ``addr``.

    Use :func:`attach`; construct directly only for custom setups (tests).
    ``state`` is ``connecting`` / ``up`` / ``down`` / ``detached`` / ``closed``.
    """

    def __init__(self, addr: str = "1", config: ExporterConfig | None = None) -> None:
        self.addr = addr
        self.host, self.port = parse_addr(addr)
        self.config = cfg = config or ExporterConfig()
        self.state = CONNECTING
        #: transitions sent / dropped, frames sent, successful connections
        self.sent = 0
        self.batches = 0
        self.connects = 0
        self.failures = 0
        self.last_error: Exception | None = None
        self._max = cfg.buffer
        # hot-path flags, read by the machines' threads
        self._accept = True
        self._detached = False
        self._buf: deque[tuple[Any, ...]] = deque()
        #: machines to announce (schema) even before their first transition
        self._announce: deque[_Tracked] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._tracked: dict[int, _Tracked] = {}
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._announced: set[str] = set()
        self._up_event = threading.Event()
        #: drops of machines no longer tracked
        self._dropped_gone = 0
        self._id_prefix = secrets.token_hex(4)
        self._tx_count = 0

    def __repr__(self) -> str:
        return f"<dbg.Exporter {self.host}:{self.port} {self.state} sent={self.sent}>"

    # ----- machines

    @property
    def dropped(self) -> int:
        """Transitions dropped so far (all machines)."""
        live = sum(t.dropped + t.dropped_worker for t in list(self._tracked.values()))
        return self._dropped_gone + live

    def machines(self) -> list[Machine]:
        """The machines traced by this exporter."""
        return [t.mach for t in list(self._tracked.values())]

    def track(self, mach: Machine) -> None:
        """Trace ``mach`` (idempotent); starts the worker on first use."""
        if self.state in (DETACHED, CLOSED):
            raise TelemetryError(f"exporter for {self.addr} is {self.state}")
        with self._lock:
            if id(mach) in self._tracked:
                return
            t = _Tracked(mach)
            self._tracked[id(mach)] = t
        t.end_hook = self._make_end_hook(t)
        t.schema_hook = self._make_schema_hook(t)
        mach._end_hooks.append(t.end_hook)
        mach._schema_hooks.append(t.schema_hook)
        mach.on_dispose(lambda _id: self._disposed(t))
        _by_machine[mach] = self
        if self._accept:  # announce it now, even before its first transition
            self._announce.append(t)
            self._wake.set()
        self._start()

    def untrack(self, mach: Machine) -> None:
        """Stop tracing ``mach`` (the debugger gets a ``gone`` frame)."""
        t = self._tracked.get(id(mach))
        if t is not None:
            self._disposed(t)

    def _make_end_hook(self, t: _Tracked) -> Callable[[Transition], None]:
        buf = self._buf
        wake = self._wake
        append = buf.append
        mach = t.mach

        def on_end(tx: Transition) -> None:
            t.seq += 1
            if self._accept and len(buf) < self._max:
                append((t, tx, time_ns(), mach._queue_tick, mach._machine_tick, t.seq))
                if len(buf) == 1:
                    wake.set()
                return
            t.dropped += 1
            if self._detached:
                self._unhook(t)

        return on_end

    def _make_schema_hook(self, t: _Tracked) -> Callable[[Machine], None]:
        def on_schema(_m: Machine) -> None:
            if self._accept:
                self._buf.append((t, _SCHEMA))
                self._wake.set()

        return on_schema

    def _disposed(self, t: _Tracked) -> None:
        with self._lock:
            if self._tracked.pop(id(t.mach), None) is None:
                return
            self._dropped_gone += t.dropped + t.dropped_worker
        self._unhook(t)
        if self._accept:
            self._buf.append((t, _GONE))
            self._wake.set()

    def _unhook(self, t: _Tracked) -> None:
        m = t.mach
        # replace, never mutate: a transition may be iterating the old list
        m._end_hooks = [h for h in m._end_hooks if h is not t.end_hook]
        m._schema_hooks = [h for h in m._schema_hooks if h is not t.schema_hook]
        _by_machine.pop(m, None)

    # ----- lifecycle

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"am-dbg-exporter-{self.port}", daemon=True
            )
            self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (True) or ``timeout`` passed (False); for tests and scripts."""
        return self._up_event.wait(timeout)

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until the buffer was sent (True) or ``timeout`` passed (False)."""
        end = time_ns() + int(timeout * 1e9)
        while time_ns() < end:
            if not self._buf and not self._announce and not self._busy:
                return True
            self._wake.set()
            self._stop.wait(0.005)
        return False

    _busy = False

    def close(self, timeout: float | None = None) -> None:
        """Flush (up to ``timeout``, default ``config.exit_flush``), stop, untrace all."""
        if self.state == CLOSED:
            return
        budget = self.config.exit_flush if timeout is None else timeout
        if self.state in (CONNECTING, UP) and budget > 0:
            # a short script may end before the first connection: give it the budget
            t0 = time_ns()
            if self.wait_connected(budget):
                self.flush(max(0.0, budget - (time_ns() - t0) / 1e9))
        self._accept = False
        self._detached = True
        self.state = CLOSED
        self._stop.set()
        self._wake.set()
        for t in list(self._tracked.values()):
            self._unhook(t)
        self._tracked.clear()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        _forget(self)

    # ----- the worker thread

    def _run(self) -> None:
        cfg = self.config
        delay = cfg.backoff_min
        failures = 0
        while not self._stop.is_set():
            try:
                sock = self._connect()
            except (OSError, ProtocolError) as err:
                failures += 1
                self.failures += 1
                self.last_error = err
                self._go_down()
                if failures >= cfg.max_failures:
                    self._give_up(err, failures)
                    return
                self._stop.wait(delay)
                delay = min(delay * 2, cfg.backoff_max)
                continue
            failures = 0
            delay = cfg.backoff_min
            self.connects += 1
            _log.info(
                "telemetry: connected to the debugger at %s:%d (%d machines)",
                self.host,
                self.port,
                len(self._tracked),
            )
            try:
                self._pump(sock)
            except (OSError, ProtocolError) as err:
                self.last_error = err
                self._go_down()
                failures += 1
                self.failures += 1
            finally:
                self._up_event.clear()
                self._sock = None
                sock.close()
            if failures:
                self._stop.wait(delay)

    def _connect(self) -> socket.socket:
        cfg = self.config
        sock = socket.create_connection((self.host, self.port), timeout=cfg.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            hello = Hello(
                agent=f"asyncmachine-trio {__version__}",
                pid=os.getpid(),
                host=socket.gethostname(),
            )
            sock.sendall(PREAMBLE + encode_frame(hello))
            dec = Decoder()
            frames: list[Any] = []
            while not frames:
                data = sock.recv(65536)
                if not data:
                    raise ProtocolError("the debugger closed the connection during the handshake")
                frames = dec.feed(data)
            if isinstance(frames[0], ErrorFrame):
                raise ProtocolError(f"the debugger refused: {frames[0].message}")
            check_welcome(frames[0])
            sock.settimeout(cfg.send_timeout)
        except BaseException:
            sock.close()
            raise
        return sock

    def _go_down(self) -> None:
        """Debugger away: stop buffering, count what was buffered as dropped."""
        self._accept = False
        self.state = DOWN
        self._announced.clear()
        buf = self._buf
        while buf:
            item = buf.popleft()
            if len(item) == 6:
                item[0].dropped_worker += 1

    def _give_up(self, err: Exception, failures: int) -> None:
        self._detached = True
        self.state = DETACHED
        _log.warning(
            "telemetry: debugger at %s:%d unreachable after %d attempts (%s); "
            "exporter detached, %d transitions dropped",
            self.host,
            self.port,
            failures,
            err,
            self.dropped,
        )
        with self._lock:
            tracked = list(self._tracked.values())
            self._tracked.clear()
            self._dropped_gone += sum(t.dropped + t.dropped_worker for t in tracked)
        for t in tracked:
            # the hooks remove themselves on the machine's thread at its next transition
            _by_machine.pop(t.mach, None)
        _forget(self)

    def _pump(self, sock: socket.socket) -> None:
        cfg = self.config
        self._sock = sock
        self._announced = set()
        buf = self._buf
        # buffer again from now on (sent after what follows), then fresh
        # schemas for every machine and the drops while away
        self._accept = True
        out: list[bytes] = []
        for t in list(self._tracked.values()):
            out.append(self._schema_frame(t))
        out.extend(self._dropped_frames())
        self._send(sock, out)
        self.state = UP
        self._up_event.set()
        while True:
            if not buf and not self._announce:
                self._wake.clear()
                if not buf and not self._announce:
                    if self._stop.is_set():
                        return
                    if not self._wake.wait(cfg.idle_poll):
                        self._check_alive(sock)
                        continue
                    self._stop.wait(cfg.flush_interval)
            self._busy = True
            try:
                self._send_batch(sock, cfg.batch)
            finally:
                self._busy = False
            if self._stop.is_set() and not buf:
                return

    def _schema_frame(self, t: _Tracked) -> bytes:
        self._announced.add(t.mid)
        rec, t.initial = t.initial, None
        return encode_frame(rec if rec is not None else schema_record(t.mach))

    def _dropped_frames(self) -> list[bytes]:
        out: list[bytes] = []
        for t in list(self._tracked.values()):
            total = t.dropped + t.dropped_worker
            if total > t.reported:
                if t.mid not in self._announced:
                    out.append(self._schema_frame(t))
                out.append(encode_frame(Dropped(t.mid, total - t.reported)))
                t.reported = total
        return out

    def _send_batch(self, sock: socket.socket, limit: int) -> None:
        buf = self._buf
        out: list[bytes] = []
        txs: list[list[Any]] = []
        taken: list[tuple[Any, ...]] = []
        announced = self._announced
        while self._announce:
            t = self._announce.popleft()
            if t.mid not in announced and id(t.mach) in self._tracked:
                out.append(self._schema_frame(t))
        while buf and len(taken) < limit:
            item = buf.popleft()
            taken.append(item)
            t = item[0]
            if t.mid not in announced:
                if txs:
                    out.append(encode_wire_txs(txs))
                    txs = []
                out.append(self._schema_frame(t))
            if len(item) == 6:
                txs.append(self._tx_wire(item))
                continue
            if txs:
                out.append(encode_wire_txs(txs))
                txs = []
            marker = item[1]
            if marker is _SCHEMA:
                out.append(self._schema_frame(t))
            elif marker is _GONE:
                out.append(encode_frame(Gone(t.mid, time_ns())))
                announced.discard(t.mid)
        if txs:
            out.append(encode_wire_txs(txs))
        out.extend(self._dropped_frames())
        try:
            self._send(sock, out)
        except BaseException:
            for item in taken:
                if len(item) == 6:
                    item[0].dropped_worker += 1
            raise
        self.sent += sum(1 for i in taken if len(i) == 6)

    def _tx_wire(self, item: tuple[Any, ...]) -> list[Any]:
        """A TxRecord's wire array straight from the transition (no attrs object).

        Equal to ``_tx_out(tx_record(...))`` (tested); transition ids not read
        by anyone yet are made from a per-exporter prefix and a counter. Empty
        fields share one (never mutated) empty list / dict.
        """
        t, tx, tns, qt, mt, seq = item
        mut = tx.mutation
        tid = tx._id
        if not tid:
            self._tx_count += 1
            tid = tx._id = f"{self._id_prefix}{self._tx_count & 0xFFFFFFFF:08x}"
        m = tx.machine
        index = m._index
        called = mut.called
        if len(called) == 1 and called[0] in index:
            idxs = [index[called[0]]]
        else:
            idxs = [index[s] for s in called if s in index]
        args = mut.args
        before = tx._before
        after = tx._after
        steps = tx._steps
        logs = tx.log_entries
        pre = tx.pre_log_entries
        levels = tx.log_levels
        pre_levels = tx.pre_log_levels
        src = mut.source
        mid = t.mid
        return [
            mid,
            seq,
            tid,
            _TYPES.get(mut.type, 0),
            idxs,
            (m._args_mapper or _default_mapper)(args) if args else _NO_ARGS,
            tx.is_accepted,
            mut.is_auto,
            mut.is_check,
            False,
            before,
            before if after is None else after,
            qt,
            mt,
            tx.queue_len,
            _steps_wire(steps) if steps else _NONE,
            [strip_log_prefix(x, mid) for x in logs] if logs else _NONE,
            [strip_log_prefix(x, mid) for x in pre] if pre else _NONE,
            tns,
            "" if src is None else src.mach_id,
            "" if src is None else src.tx_id,
            0 if src is None else src.mach_time,
            bytes(levels) if levels else b"",
            bytes(pre_levels) if pre_levels else b"",
            mut.queue_tick,
        ]

    def _send(self, sock: socket.socket, frames: list[bytes]) -> None:
        if frames:
            sock.sendall(b"".join(frames))
            self.batches += 1

    def _check_alive(self, sock: socket.socket) -> None:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            data = sock.recv(65536)
            if not data:
                raise ProtocolError("the debugger closed the connection")
            for frame in Decoder().feed(data):
                if isinstance(frame, ErrorFrame):
                    raise ProtocolError(f"the debugger reported: {frame.message}")


# ----- the registry: one exporter per address

_registry: dict[tuple[str, int], Exporter] = {}
_registry_lock = threading.Lock()
_by_machine: PerMachine[Exporter] = PerMachine()


def _forget(ex: Exporter) -> None:
    with _registry_lock:
        if _registry.get((ex.host, ex.port)) is ex:
            del _registry[(ex.host, ex.port)]


def exporters() -> list[Exporter]:
    """The live exporters, one per debugger address."""
    with _registry_lock:
        return list(_registry.values())


def exporter_of(mach: Machine) -> Exporter | None:
    """The exporter tracing ``mach``, if any."""
    return _by_machine.get(mach)


def attach(
    mach: Machine,
    addr: str | None = None,
    *,
    config: ExporterConfig | None = None,
    children: bool = True,
) -> Exporter:
    """Trace ``mach`` to the debugger at ``addr`` (``None`` / ``"1"``: ``localhost:6831``).

    Machines created later with ``parent=mach`` are traced too (``children``).
    Returns the exporter (shared by every machine traced to the same address;
    ``config`` applies when this call creates it). Never raises for an absent
    debugger: the exporter retries in the background and detaches after
    ``config.max_failures`` failed attempts in a row. Bad addresses raise
    :class:`TelemetryError`.
    """
    host, port = parse_addr(addr or "1")
    with _registry_lock:
        ex = _registry.get((host, port))
        if ex is None:
            ex = _registry[(host, port)] = Exporter(addr or "1", config)
    ex.track(mach)
    if children:
        _tracing.add_machine_hook(_child_hook)
    return ex


def detach(mach: Machine) -> None:
    """Stop tracing ``mach`` (no error when not traced)."""
    ex = _by_machine.get(mach)
    if ex is not None:
        ex.untrack(mach)


def _child_hook(mach: Machine, parent: Machine | None) -> None:
    if parent is None:
        return
    ex = _by_machine.get(parent)
    if ex is not None and ex.state not in (DETACHED, CLOSED) and not is_rpc_plumbing(mach):
        ex.track(mach)


@atexit.register
def _at_exit() -> None:
    for ex in exporters():
        try:
            ex.close()
        except Exception:  # never break interpreter exit
            pass
