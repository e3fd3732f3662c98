"""``arpc``: a REPL and a one-shot CLI over aRPC, for one or many machines.

    arpc ws://127.0.0.1:7531                  # REPL
    arpc -d tmp/repl                          # every <id>-repl.addr in tmp/repl, watched
    arpc 127.0.0.1:7531 -- add . Foo --arg k --val v     # one command, then exit

Machines opt in with :func:`asyncmachine_trio.rpc.repl.mach_repl_env`
(``AM_REPL_ADDR`` / ``AM_REPL_DIR``). Exit codes of a command: 0 executed
(or queued), 1 canceled, 2 error, 3 timeout. See ``docs/tools.md``.
"""

from __future__ import annotations

import difflib
import functools
import re
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import attrs
import click
import trio
from rich.console import Console
from rich.table import Table

from .. import __version__
from ..machine.mutation import MutationType, Result

if TYPE_CHECKING:
    from ..rpc import Client, NetworkMachine

# aRPC loads on first use: --help and --version stay quick


def normalize_addr(addr: str) -> str:
    """``host:port`` -> ``ws://host:port`` (see ``rpc.repl.normalize_addr``)."""
    from ..rpc.repl import normalize_addr as norm

    return norm(addr)


__all__ = [
    "EXIT_CANCELED",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "ArpcError",
    "Conn",
    "Filter",
    "Repl",
    "main",
    "run_line",
]

EXIT_OK = 0
EXIT_CANCELED = 1
EXIT_ERROR = 2
EXIT_TIMEOUT = 3
#: returned by ``exit``: the REPL ends
EXIT_REPL = -1

CHEATSHEET = """\
add MACH STATE... [--arg K --val V]...   add states ('.' = the first machine)
remove MACH STATE...                     remove states
group-add STATE... [filters]             add to every machine matching the filters
group-remove STATE... [filters]          remove from every matching machine
when MACH -s STATE...  [--timeout S]     wait until all states are active
when-not MACH -s STATE...                wait until all are inactive
when-time MACH -s STATE -t TICK...       wait until each state reaches its tick
mach MACH [--all]                        active states (--all: every state, ticks)
time MACH [--sum] [-s STATE...]          the clock (or its sum)
inspect MACH                             states, relations and ticks
list [filters] [--states] [--states-all] [--disconn]
status | connect ADDR | script FILE | cheatsheet | help | exit
filters: --active S --inactive S --mtime-min N --mtime-max N --mtime-states S
         --id-regex R --id-substr S --id-prefix P --id-suffix S --limit N --offset N
"""


class ArpcError(Exception):
    """A command failed; ``code`` is the exit code (2 error, 3 timeout)."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


@attrs.define(eq=False)
class Conn:
    """One address and its client."""

    addr: str
    client: Client
    scope: trio.CancelScope
    #: the address file it came from ("" for arguments)
    origin: str = ""

    @property
    def netmach(self) -> NetworkMachine:
        return self.client.netmach

    @property
    def id(self) -> str:
        """The remote machine's id ("" before the first handshake)."""
        return self.netmach.remote_id

    @property
    def ready(self) -> bool:
        return self.client.mach.is1("Ready")


@attrs.frozen(kw_only=True)
class Filter:
    """Which machines a group command or ``list`` applies to."""

    active: tuple[str, ...] = ()
    inactive: tuple[str, ...] = ()
    mtime_min: int | None = None
    mtime_max: int | None = None
    #: the states whose ticks count for mtime (default: all)
    mtime_states: tuple[str, ...] = ()
    id_regex: str = ""
    id_substr: str = ""
    id_prefix: str = ""
    id_suffix: str = ""
    limit: int = 0
    offset: int = 0

    def apply(self, conns: Sequence[Conn]) -> list[Conn]:
        try:
            rx = re.compile(self.id_regex) if self.id_regex else None
        except re.error as err:
            raise ArpcError(f"bad --id-regex {self.id_regex!r}: {err}") from None
        out: list[Conn] = []
        for c in conns:
            nm = c.netmach
            names = set(nm.state_names)
            if not all(s in names and nm.is1(s) for s in self.active):
                continue
            if any(s in names and nm.is1(s) for s in self.inactive):
                continue
            if self.mtime_min is not None or self.mtime_max is not None:
                counted = [s for s in self.mtime_states if s in names] or None
                if self.mtime_states and counted is None:
                    continue
                mtime = sum(nm.time(counted))
                if self.mtime_min is not None and mtime < self.mtime_min:
                    continue
                if self.mtime_max is not None and mtime > self.mtime_max:
                    continue
            if rx is not None and not rx.search(c.id):
                continue
            if self.id_substr and self.id_substr not in c.id:
                continue
            if not c.id.startswith(self.id_prefix) or not c.id.endswith(self.id_suffix):
                continue
            out.append(c)
        out = out[self.offset :]
        return out[: self.limit] if self.limit else out


class Repl:
    """Connections to many machines, and what commands need from them."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        connect_timeout: float = 5.0,
        log_level: int | None = None,
    ) -> None:
        self.console: Console = console or Console(highlight=False)
        self.connect_timeout = connect_timeout
        self.log_level = log_level
        self.conns: dict[str, Conn] = {}
        self.dirs: list[Path] = []
        self._nursery: trio.Nursery | None = None
        self._count = 0
        #: set whenever a connection is added or removed
        self.changed: trio.Event = trio.Event()

    def bind(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    # ----- connections

    def connect(self, addr: str, origin: str = "") -> Conn:
        """Start a client for ``addr`` (``host:port`` or a URL); no-op if known."""
        url = normalize_addr(addr)
        if url in self.conns:
            return self.conns[url]
        if self._nursery is None:
            raise ArpcError("not running")
        from ..rpc import Client

        self._count += 1
        client = Client(
            url,
            None,
            name=f"arpc-{self._count}",
            conn_retry_timeout=3600.0,
            log_level=self.log_level,
        )
        conn = Conn(url, client, trio.CancelScope(), origin)
        self.conns[url] = conn
        self._nursery.start_soon(self._run_client, conn)
        self._changed()
        return conn

    async def _run_client(self, conn: Conn) -> None:
        async with trio.open_nursery() as nursery:
            conn.client.start(nursery)
            try:
                # only this wait is cancelled by ``disconnect``: the client's own
                # tasks keep reading until it said bye
                with conn.scope:
                    await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await conn.client.stop(dispose=True)
                nursery.cancel_scope.cancel()

    async def aclose(self) -> None:
        """Say bye on every connection (in parallel) and stop the clients."""
        conns = list(self.conns.values())
        self.conns.clear()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            async with trio.open_nursery() as nursery:
                for c in conns:
                    c.scope.cancel()
                    nursery.start_soon(c.client.stop)

    def disconnect(self, addr: str) -> None:
        conn = self.conns.pop(normalize_addr(addr), None)
        if conn is not None:
            conn.scope.cancel()
            self._changed()

    async def wait_ready(self, *, require_all: bool, within: float) -> None:
        """Wait for one (or every) connection; :class:`ArpcError` naming the missing ones."""
        conns = list(self.conns.values())
        if not conns:
            return
        with trio.move_on_after(within):
            if require_all:
                for c in conns:
                    await c.client.mach.when1("Ready")
            else:
                async with trio.open_nursery() as nursery:

                    async def one(c: Conn) -> None:
                        await c.client.mach.when1("Ready")
                        nursery.cancel_scope.cancel()

                    for c in conns:
                        nursery.start_soon(one, c)
        ready = [c.ready for c in conns]
        if not (all(ready) if require_all else any(ready)):
            missing = [c.addr for c in conns if not c.ready]
            raise ArpcError(f"not connected after {within} s: {', '.join(missing)}")

    def machines(self, *, disconnected: bool = False) -> list[Conn]:
        """The connections with a machine (ready ones, unless ``disconnected``)."""
        return [c for c in self.conns.values() if (c.ready or (disconnected and c.id))]

    def find(self, mach_id: str) -> Conn:
        """The machine ``mach_id`` (``.`` = the first connected one)."""
        ready = self.machines()
        if mach_id == ".":
            if not ready:
                raise ArpcError("no machine is connected")
            return ready[0]
        for c in ready:
            if c.id == mach_id:
                return c
        ids = [c.id for c in ready]
        hint = difflib.get_close_matches(mach_id, ids, n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else f" (connected: {', '.join(ids) or '-'})"
        raise ArpcError(f"no connected machine {mach_id!r}{extra}")

    # ----- address files

    def scan_dir(self, path: Path) -> None:
        """Connect to every ``*.addr`` file's address; drop the ones whose file went away."""
        seen: set[str] = set()
        for f in sorted(path.glob("*.addr")):
            try:
                addr = f.read_text(encoding="utf-8").strip()
            except OSError:
                continue
            if addr:
                seen.add(normalize_addr(addr))
                self.connect(addr, origin=str(f))
        for c in list(self.conns.values()):
            if c.origin and Path(c.origin).parent == path and c.addr not in seen:
                self.disconnect(c.addr)

    async def watch_dir(self, path: Path) -> None:
        """:meth:`scan_dir` now and on every change of ``path`` (watchfiles)."""
        import watchfiles

        self.scan_dir(path)
        async for _changes in watchfiles.awatch(path, debounce=50, step=20, rust_timeout=500):
            self.scan_dir(path)


# ----- commands


T = TypeVar("T")
Action = Callable[["Repl"], Awaitable[int]]


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # definition order in help


@click.group(cls=_Group, name="", add_help_option=False, invoke_without_command=False)
def commands() -> None:
    """arpc commands (also usable after -- on the command line)."""


def _filter_options(fn: Callable[..., T]) -> Callable[..., T]:
    opts = [
        click.option("--active", multiple=True, help="Only machines with this state active."),
        click.option("--inactive", multiple=True, help="Only machines with this state inactive."),
        click.option("--mtime-min", type=int, help="Machine time at least N."),
        click.option("--mtime-max", type=int, help="Machine time at most N."),
        click.option("--mtime-states", multiple=True, help="States counted for machine time."),
        click.option("--id-regex", default="", help="Machine id matches the regex."),
        click.option("--id-substr", default="", help="Machine id contains the text."),
        click.option("--id-prefix", default="", help="Machine id starts with the text."),
        click.option("--id-suffix", default="", help="Machine id ends with the text."),
        click.option("--limit", type=int, default=0, help="At most N machines."),
        click.option("--offset", type=int, default=0, help="Skip the first N machines."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _filter(kw: dict[str, Any]) -> Filter:
    names = [a.name for a in attrs.fields(Filter)]
    picked = {k: kw.pop(k) for k in names if k in kw}
    for k in ("active", "inactive", "mtime_states"):
        picked[k] = tuple(picked.get(k, ()))
    return Filter(**picked)


def _args(keys: Sequence[str], vals: Sequence[str]) -> dict[str, Any]:
    if len(keys) != len(vals):
        raise ArpcError(f"{len(keys)} --arg but {len(vals)} --val: give them in pairs")
    return dict(zip(keys, vals, strict=True))


def _check_states(conn: Conn, states: Sequence[str]) -> None:
    names = list(conn.netmach.state_names)
    for s in states:
        if s not in names:
            hint = difflib.get_close_matches(s, names, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ArpcError(f"{conn.id} has no state {s!r}{extra}")


def _code(results: Sequence[Result]) -> int:
    return EXIT_CANCELED if any(r is Result.CANCELED for r in results) else EXIT_OK


async def _mutate(
    repl: Repl,
    conns: Sequence[Conn],
    kind: MutationType,
    states: Sequence[str],
    args: dict[str, Any],
) -> int:
    from ..rpc import RpcError

    results: list[Result] = []
    for c in conns:
        _check_states(c, states)
    for c in conns:
        try:
            res = await c.netmach.call(kind, list(states), args or None)
        except RpcError as err:
            raise ArpcError(f"{c.id}: {err}") from err
        results.append(res)
        colour = "red" if res is Result.CANCELED else "green"
        repl.console.print(f"{c.id}: [{colour}]{res}[/]")
    return _code(results)


def _mutation_command(name: str, kind: MutationType, doc: str) -> None:
    @commands.command(name, help=doc)
    @click.argument("mach")
    @click.argument("states", nargs=-1, required=True)
    @click.option("--arg", "arg_keys", multiple=True, help="Argument name (pairs with --val).")
    @click.option("--val", "arg_vals", multiple=True, help="Argument value.")
    def cmd(
        mach: str, states: tuple[str, ...], arg_keys: tuple[str, ...], arg_vals: tuple[str, ...]
    ) -> Action:
        async def run(repl: Repl) -> int:
            return await _mutate(repl, [repl.find(mach)], kind, states, _args(arg_keys, arg_vals))

        return run


def _group_command(name: str, kind: MutationType, doc: str) -> None:
    @commands.command(name, help=doc)
    @click.argument("states", nargs=-1, required=True)
    @click.option("--arg", "arg_keys", multiple=True, help="Argument name (pairs with --val).")
    @click.option("--val", "arg_vals", multiple=True, help="Argument value.")
    @_filter_options
    def cmd(
        states: tuple[str, ...], arg_keys: tuple[str, ...], arg_vals: tuple[str, ...], **kw: Any
    ) -> Action:
        flt = _filter(kw)

        async def run(repl: Repl) -> int:
            conns = [
                c for c in flt.apply(repl.machines()) if set(states) <= set(c.netmach.state_names)
            ]
            if not conns:
                raise ArpcError("no connected machine matches (and has the states)")
            return await _mutate(repl, conns, kind, states, _args(arg_keys, arg_vals))

        return run


_mutation_command("add", MutationType.ADD, "Add STATES to the machine MACH ('.' = the first).")
_mutation_command("remove", MutationType.REMOVE, "Remove STATES from the machine MACH.")
_group_command("group-add", MutationType.ADD, "Add STATES to every matching machine.")
_group_command("group-remove", MutationType.REMOVE, "Remove STATES from every matching machine.")


async def _wait(repl: Repl, conn: Conn, waiter: Awaitable[Any], what: str, limit: float) -> int:
    with trio.move_on_after(limit if limit > 0 else float("inf")) as scope:
        await waiter
    if scope.cancelled_caught:
        raise ArpcError(f"{conn.id}: timeout after {limit} s waiting for {what}", EXIT_TIMEOUT)
    repl.console.print(f"{conn.id}: [green]{what}[/]")
    return EXIT_OK


_timeout_opt = click.option(
    "--timeout", type=float, default=0.0, help="Give up after S seconds (exit 3); 0 waits forever."
)


@commands.command("when")
@click.argument("mach")
@click.option("-s", "--state", "states", multiple=True, required=True, help="State (repeatable).")
@_timeout_opt
def when_cmd(mach: str, states: tuple[str, ...], timeout: float) -> Action:
    """Wait until all the states are active."""

    async def run(repl: Repl) -> int:
        c = repl.find(mach)
        _check_states(c, states)
        return await _wait(repl, c, c.netmach.when(list(states)), " ".join(states), timeout)

    return run


@commands.command("when-not")
@click.argument("mach")
@click.option("-s", "--state", "states", multiple=True, required=True, help="State (repeatable).")
@_timeout_opt
def when_not_cmd(mach: str, states: tuple[str, ...], timeout: float) -> Action:
    """Wait until all the states are inactive."""

    async def run(repl: Repl) -> int:
        c = repl.find(mach)
        _check_states(c, states)
        what = "not " + " ".join(states)
        return await _wait(repl, c, c.netmach.when_not(list(states)), what, timeout)

    return run


@commands.command("when-time")
@click.argument("mach")
@click.option("-s", "--state", "states", multiple=True, required=True, help="State (repeatable).")
@click.option("-t", "--time", "ticks", type=int, multiple=True, required=True, help="Its tick.")
@_timeout_opt
def when_time_cmd(
    mach: str, states: tuple[str, ...], ticks: tuple[int, ...], timeout: float
) -> Action:
    """Wait until each state reaches its tick (-s A -t 3 -s B -t 5)."""

    async def run(repl: Repl) -> int:
        if len(states) != len(ticks):
            raise ArpcError(f"{len(states)} -s but {len(ticks)} -t: give them in pairs")
        c = repl.find(mach)
        _check_states(c, states)
        what = " ".join(f"{s}:{t}" for s, t in zip(states, ticks, strict=True))
        return await _wait(repl, c, c.netmach.when_time(list(states), list(ticks)), what, timeout)

    return run


@commands.command("mach")
@click.argument("mach")
@click.option("--all", "all_", is_flag=True, help="Every state with its tick.")
def mach_cmd(mach: str, all_: bool) -> Action:
    """The active states of MACH."""

    async def run(repl: Repl) -> int:
        nm = repl.find(mach).netmach
        repl.console.print(nm.string_all() if all_ else nm.string(), markup=False)
        return EXIT_OK

    return run


@commands.command("time")
@click.argument("mach")
@click.option("--sum", "sum_", is_flag=True, help="Only the sum of the ticks.")
@click.option("-s", "--state", "states", multiple=True, help="Only these states.")
def time_cmd(mach: str, sum_: bool, states: tuple[str, ...]) -> Action:
    """The clock of MACH (ticks per state)."""

    async def run(repl: Repl) -> int:
        c = repl.find(mach)
        _check_states(c, states)
        names = list(states) or None
        if sum_:
            repl.console.print(str(sum(c.netmach.time(names))))
        else:
            clock = c.netmach.clock(names)
            repl.console.print(" ".join(f"{k}:{v}" for k, v in clock.items()), markup=False)
        return EXIT_OK

    return run


@commands.command("inspect")
@click.argument("mach")
def inspect_cmd(mach: str) -> Action:
    """States, relations and ticks of MACH."""

    async def run(repl: Repl) -> int:
        repl.console.print(repl.find(mach).netmach.inspect(), markup=False)
        return EXIT_OK

    return run


@commands.command("list")
@_filter_options
@click.option("--states", "show_states", is_flag=True, help="Show the active states.")
@click.option("--states-all", is_flag=True, help="Show every state with its tick.")
@click.option("--disconn", is_flag=True, help="Include disconnected machines.")
def list_cmd(show_states: bool, states_all: bool, disconn: bool, **kw: Any) -> Action:
    """The connected machines (with filters)."""
    flt = _filter(kw)

    async def run(repl: Repl) -> int:
        conns = flt.apply(repl.machines(disconnected=disconn))
        table = Table(box=None, pad_edge=False)
        for col in ("#", "ID", "Conn", "Time", "Addr"):
            table.add_column(col)
        if show_states or states_all:
            table.add_column("States")
        for i, c in enumerate(conns, 1):
            row = [str(i), c.id, "yes" if c.ready else "no", str(sum(c.netmach.time())), c.addr]
            if states_all:
                row.append(" ".join(f"{k}:{v}" for k, v in c.netmach.clock().items()))
            elif show_states:
                row.append(" ".join(c.netmach.active_states()))
            table.add_row(*row)
        repl.console.print(table)
        repl.console.print(f"{len(conns)} machine(s)")
        return EXIT_OK

    return run


@commands.command("status")
def status_cmd() -> Action:
    """Connections and watched directories."""

    async def run(repl: Repl) -> int:
        ready = sum(1 for c in repl.conns.values() if c.ready)
        repl.console.print(f"connected: {ready}/{len(repl.conns)}")
        for c in repl.conns.values():
            state = "[green]ready[/]" if c.ready else "[yellow]connecting[/]"
            repl.console.print(f"  {c.addr} {c.id or '?'} {state}")
        for d in repl.dirs:
            repl.console.print(f"watching: {d}")
        return EXIT_OK

    return run


@commands.command("connect")
@click.argument("addr")
@_timeout_opt
def connect_cmd(addr: str, timeout: float) -> Action:
    """Connect to another address (host:port or ws://...)."""

    async def run(repl: Repl) -> int:
        conn = repl.connect(addr)
        with trio.move_on_after(timeout or repl.connect_timeout):
            await conn.client.mach.when1("Ready")
        if not conn.ready:
            raise ArpcError(f"{conn.addr}: not connected yet (retrying in the background)", 3)
        repl.console.print(f"connected: {conn.id} at {conn.addr}")
        return EXIT_OK

    return run


@commands.command("script")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def script_cmd(file: str) -> Action:
    """Run the commands of FILE (one per line, # comments); stops at the first failure."""

    async def run(repl: Repl) -> int:
        text = await trio.Path(file).read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            code = await run_line(repl, shlex.split(line))
            if code == EXIT_REPL:
                return EXIT_OK
            if code != EXIT_OK:
                repl.console.print(f"[red]{file}:{n}: exit {code}[/]")
                return code
        return EXIT_OK

    return run


@commands.command("cheatsheet")
def cheatsheet_cmd() -> Action:
    """Every command on one screen."""

    async def run(repl: Repl) -> int:
        repl.console.print(CHEATSHEET, markup=False)
        return EXIT_OK

    return run


@commands.command("help")
@click.argument("command", required=False)
def help_cmd(command: str | None) -> Action:
    """Help for all commands or for one."""

    async def run(repl: Repl) -> int:
        with click.Context(commands, info_name="") as ctx:
            if command is None:
                text = commands.get_help(ctx)
            else:
                cmd = commands.get_command(ctx, command)
                if cmd is None:
                    raise ArpcError(f"no command {command!r}")
                with click.Context(cmd, info_name=command, parent=ctx) as sub:
                    text = cmd.get_help(sub)
        repl.console.print(text.replace("Usage:  ", "Usage: "), markup=False)
        return EXIT_OK

    return run


@commands.command("exit")
def exit_cmd() -> Action:
    """Leave the REPL (also Ctrl+D)."""

    async def run(repl: Repl) -> int:
        return EXIT_REPL

    return run


async def run_line(repl: Repl, argv: Sequence[str]) -> int:
    """Parse and run one command; errors are printed, the exit code returned."""
    from ..rpc import RpcError

    if not argv:
        return EXIT_OK
    try:
        action = commands.main(list(argv), prog_name="", standalone_mode=False)
    except click.exceptions.Exit as err:  # --help
        return int(err.exit_code)
    except click.ClickException as err:
        repl.console.print(
            f"[red]error:[/] {err.format_message()}", highlight=False, soft_wrap=True
        )
        return EXIT_ERROR
    if not callable(action):  # --help printed by click
        return EXIT_OK
    try:
        code: int = await action(repl)
        return code
    except ArpcError as err:
        repl.console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        return err.code
    except RpcError as err:
        repl.console.print(
            f"[red]error:[/] {type(err).__name__}: {err}", highlight=False, soft_wrap=True
        )
        return EXIT_ERROR


# ----- the REPL


def command_names() -> list[str]:
    return list(commands.commands)


class _Completer:
    """Tab completion: commands, machine ids, states and flags of the connected schemas."""

    def __init__(self, repl: Repl) -> None:
        self.repl = repl

    def candidates(self, words: list[str], current: str) -> list[str]:
        if not words:
            return command_names()
        cmd = commands.commands.get(words[0])
        if cmd is None:
            return []
        flags = [o for p in cmd.params for o in getattr(p, "opts", ()) if o.startswith("-")]
        if current.startswith("-"):
            return flags
        ids = [c.id for c in self.repl.machines()]
        state_flags = {"-s", "--state", "--active", "--inactive", "--mtime-states"}
        takes_mach = words[0] in {
            "add", "remove", "when", "when-not", "when-time", "mach", "time", "inspect",
        }  # fmt: skip
        if words[-1] in state_flags or (words[0] in ("group-add", "group-remove")):
            return sorted({s for c in self.repl.machines() for s in c.netmach.state_names})
        if takes_mach and len(words) == 1:
            return [".", *ids]
        if takes_mach and words[0] in ("add", "remove") and len(words) >= 2:
            try:
                return list(self.repl.find(words[1]).netmach.state_names)
            except ArpcError:
                return []
        return []

    def prompt_toolkit(self) -> Any:
        from prompt_toolkit.completion import Completer, Completion

        outer = self

        class PtCompleter(Completer):
            def get_completions(self, document: Any, complete_event: Any) -> Any:
                text = document.text_before_cursor
                words = text.split()
                current = "" if text.endswith(" ") or not words else words.pop()
                low = current.lower()
                for cand in outer.candidates(words, current):
                    if cand.lower().startswith(low):
                        yield Completion(cand, start_position=-len(current))

        return PtCompleter()


def make_session(repl: Repl, history: str | None, **kwargs: Any) -> Any:
    """A prompt_toolkit session with completion and a history file."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    hist: Any = InMemoryHistory()
    if history:
        try:
            Path(history).expanduser().touch()
            hist = FileHistory(str(Path(history).expanduser()))
        except OSError:
            pass
    return PromptSession(
        completer=_Completer(repl).prompt_toolkit(),
        history=hist,
        complete_while_typing=False,
        **kwargs,
    )


async def repl_loop(repl: Repl, session: Any) -> None:
    """Read and run commands until ``exit`` or end of input (Ctrl+D)."""

    def prompt() -> str:
        n = len(repl.machines())
        return str(session.prompt(f"arpc ({n})> ", in_thread=False))

    while True:
        try:
            line = await trio.to_thread.run_sync(prompt, abandon_on_cancel=True)
        except EOFError:
            return
        except KeyboardInterrupt:
            continue
        try:
            argv = shlex.split(line)
        except ValueError as err:
            repl.console.print(f"[red]error:[/] {err}", soft_wrap=True)
            continue
        if await run_line(repl, argv) == EXIT_REPL:
            return


# ----- the command line


@attrs.frozen(kw_only=True)
class Invocation:
    """What the command line asked for."""

    addrs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    watch: bool = True
    req_all: bool = False
    timeout: float = 5.0
    history: str = "~/.arpc_history"
    log_level: int | None = None
    command: tuple[str, ...] = ()


@click.command(name="arpc", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("addrs", nargs=-1)
@click.option("-f", "--file", "files", multiple=True, help="Read addresses from FILE (one a line).")
@click.option("-d", "--dir", "dirs", multiple=True, help="Connect to every *.addr file in DIR.")
@click.option("-w/-W", "--watch/--no-watch", default=True, help="Follow changes of --dir.")
@click.option("-a", "--req-all", is_flag=True, help="Require every address to connect.")
@click.option("--timeout", type=float, default=5.0, help="Connect timeout (seconds).")
@click.option("--history", default="~/.arpc_history", help="REPL history file ('' = none).")
@click.option("--log-level", type=int, default=None, help="Log level of the aRPC clients (0-5).")
@click.version_option(__version__, "--version", prog_name="arpc", message="%(prog)s %(version)s")
def cli(
    addrs: tuple[str, ...],
    files: tuple[str, ...],
    dirs: tuple[str, ...],
    watch: bool,
    req_all: bool,
    timeout: float,
    history: str,
    log_level: int | None,
) -> Invocation:
    """REPL and one-shot CLI over aRPC. Put a command after --, e.g.

    arpc 127.0.0.1:7531 -- add . Foo --arg k --val v
    """
    return Invocation(
        addrs=tuple(addrs),
        files=tuple(files),
        dirs=tuple(dirs),
        watch=watch,
        req_all=req_all,
        timeout=timeout,
        history=history,
        log_level=log_level,
    )


def _read_addr_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ArpcError(f"cannot read {path}: {err.strerror}") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


async def run(
    inv: Invocation,
    *,
    console: Console | None = None,
    session: Callable[[Repl], Any] | None = None,
) -> int:
    """Connect, then run ``inv.command`` once or the REPL; returns the exit code.

    ``session(repl)`` makes the prompt_toolkit session (default:
    :func:`make_session` with ``inv.history``).
    """
    repl = Repl(console, connect_timeout=inv.timeout, log_level=inv.log_level)
    try:
        addrs = [*inv.addrs, *(a for f in inv.files for a in _read_addr_file(f))]
        dirs = [Path(d) for d in inv.dirs]
        for d in dirs:
            # a one-shot command waits for the directory (a program just started)
            if not d.is_dir() and not (inv.command and inv.watch):
                raise ArpcError(f"-d {d}: not a directory")
    except ArpcError as err:
        repl.console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        return err.code
    if not addrs and not dirs and inv.command:
        repl.console.print(
            "[red]error:[/] no address: give ADDR, -f FILE or -d DIR", soft_wrap=True
        )
        return EXIT_ERROR
    code = EXIT_OK
    async with trio.open_nursery() as nursery:
        repl.bind(nursery)
        repl.dirs = dirs
        for a in addrs:
            repl.connect(a)
        for d in dirs:
            if d.is_dir():
                repl.scan_dir(d)  # now: the first prompt / command sees them
            if inv.watch and not inv.command:
                nursery.start_soon(repl.watch_dir, d)
        try:
            if inv.command:
                if dirs and inv.watch and not repl.conns:
                    await _wait_for_addr_files(repl, dirs, inv.timeout)
                await repl.wait_ready(require_all=inv.req_all, within=inv.timeout)
                code = await run_line(repl, inv.command)
                code = EXIT_OK if code == EXIT_REPL else code
            else:
                if repl.conns:
                    try:
                        await repl.wait_ready(require_all=inv.req_all, within=inv.timeout)
                    except ArpcError as err:
                        repl.console.print(f"[yellow]{err}[/] (still trying)")
                if session is None:
                    prompt = make_session(repl, inv.history or None)
                else:
                    prompt = session(repl)
                await repl_loop(repl, prompt)
        except ArpcError as err:
            repl.console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
            code = err.code
        await repl.aclose()
        nursery.cancel_scope.cancel()
    return code


async def _wait_for_addr_files(repl: Repl, dirs: Sequence[Path], within: float) -> None:
    """One-shot ``-d DIR``: wait up to ``within`` s for a first address file.

    A program started just before (``AM_REPL_DIR=dir python app.py &``) may not
    have written it yet. :class:`ArpcError` when nothing came.
    """
    with trio.move_on_after(within):
        while True:
            for d in dirs:
                if d.is_dir():
                    repl.scan_dir(d)
            if repl.conns:
                return
            await trio.sleep(0.05)
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise ArpcError(f"-d {', '.join(missing)}: not a directory after {within} s")
    raise ArpcError(f"no address file in {', '.join(map(str, dirs))} after {within} s")


def parse(argv: Sequence[str]) -> Invocation | int:
    """The :class:`Invocation` of ``argv`` (without the program name), or an exit code."""
    argv = list(argv)
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1 :]
    try:
        inv = cli.main(argv, prog_name="arpc", standalone_mode=False)
    except click.exceptions.Exit as err:
        return int(err.exit_code)
    except click.ClickException as err:
        err.show()
        return EXIT_ERROR
    if not isinstance(inv, Invocation):  # --help / --version printed
        return EXIT_OK
    return attrs.evolve(inv, command=tuple(command))


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> None:
    """Console-script entry point: exits with the command's code."""
    inv = parse(sys.argv[1:] if argv is None else argv)
    if isinstance(inv, int):
        sys.exit(inv)
    console = Console(file=stdout, highlight=False) if stdout is not None else None
    try:
        code = trio.run(functools.partial(run, inv, console=console))
    except KeyboardInterrupt:
        code = EXIT_CANCELED
    sys.exit(code)


if __name__ == "__main__":
    main()
