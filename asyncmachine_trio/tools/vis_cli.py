"""``am-vis``: diagrams of a schema, a history database or a graph, from the shell.

    am-vis mermaid examples.expense:ExpenseStates
    am-vis d2 examples/expense.py:ExpenseStates --active ExpenseCreated -o expense.d2
    am-vis svg history.sqlite --map -o machines.svg
    am-vis inspect history.sqlite
    am-vis seq recording.amdbg.gz -m worker -t -1 --ascii

TARGET is ``module:attr`` or ``path/to/file.py:attr`` (an ``am.States`` class, a
schema mapping, a machine or an ``am.graph.Graph``), a history database
(SQLite, every machine in it, active states from the last record) or a
debugger recording (``*.amdbg.gz`` of ``am-relay``: machines, parents, pipes,
aRPC links, active states after the last transition).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import vis
from ..graph import Graph, MachineNode
from ..machine.schema import State
from ._cli import console, fail, version_callback

app: typer.Typer = typer.Typer(
    name="am-vis",
    help="Diagrams of asyncmachine-trio schemas and machines: Mermaid, D2, SVG.",
    no_args_is_help=True,
    add_completion=False,
)


class TargetError(Exception):
    """The TARGET argument cannot be loaded; the message says why."""


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _load_history(path: Path) -> Graph:
    from ..history import DatabaseError, list_machines

    try:
        records = list_machines(path)
    except DatabaseError as err:
        raise TargetError(f"{path}: {err}") from err
    if not records:
        raise TargetError(f"{path}: the history database holds no machines")
    g = Graph()
    for rec in records:
        schema = rec.schema or {name: State() for name in rec.state_names}
        active = [n for n, t in zip(rec.state_names, rec.m_time, strict=False) if t % 2 == 1]
        g.add(MachineNode(rec.mach_id, schema, active=active))
    return g


def _import_attr(spec: str) -> Any:
    mod_part, _, attr = spec.rpartition(":")
    if not mod_part or not attr:
        raise TargetError(
            f"{spec!r}: expected module:attr, path/to/file.py:attr or a history database"
        )
    if mod_part.endswith(".py") or os.sep in mod_part:
        path = Path(mod_part)
        if not path.is_file():
            raise TargetError(f"{spec!r}: no file {path}")
        name = f"_am_vis_{path.stem}"
        mspec = importlib.util.spec_from_file_location(name, path)
        if mspec is None or mspec.loader is None:
            raise TargetError(f"{spec!r}: cannot import {path}")
        module = importlib.util.module_from_spec(mspec)
        sys.modules[name] = module
        mspec.loader.exec_module(module)
    else:
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(mod_part)
        except ImportError as err:
            # a file of that dotted path under the current directory (an installed
            # package of the same top-level name may shadow a local directory)
            path = Path(*mod_part.split(".")).with_suffix(".py")
            if not path.is_file():
                raise TargetError(f"{spec!r}: cannot import {mod_part}: {err}") from err
            return _import_attr(f"{path}:{attr}")
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = [n for n in dir(module) if not n.startswith("_")]
            raise TargetError(
                f"{spec!r}: {mod_part} has no {attr!r} (has: {', '.join(names[:20])})"
            ) from None
    return obj


def _is_recording(path: Path) -> bool:
    from ..telemetry.protocol import PREAMBLE

    try:
        with path.open("rb") as f:
            head = f.read(len(PREAMBLE))
    except OSError:
        return False
    return head.startswith(b"\x1f\x8b") or head == PREAMBLE


def _load_recording(path: Path) -> Graph:
    from ..telemetry.errors import ProtocolError
    from .recording import read_recording, recording_graph

    try:
        graph: Graph = recording_graph(read_recording(path))
    except ProtocolError as err:
        raise TargetError(str(err)) from err
    if not len(graph):
        raise TargetError(f"{path}: the recording holds no machines")
    return graph


def load_target(spec: str) -> Graph | Any:
    """A Graph (history database, debugger recording) or the object ``module:attr`` names."""
    path = Path(spec)
    if path.is_file() and _is_sqlite(path):
        return _load_history(path)
    if path.is_file() and _is_recording(path):
        return _load_recording(path)
    return _import_attr(spec)


class Preset(str, Enum):
    single = "single"
    bird = "bird"
    map = "map"


def _select(
    target: Any, preset: Preset, mach: str, distance: int | None
) -> tuple[Any, dict[str, Any]]:
    """Apply a preset: which machines, and which diagram options."""
    opts: dict[str, Any] = {}
    if not isinstance(target, Graph):
        if preset is Preset.bird:
            opts["inherited"] = False
        if preset is Preset.map:
            raise TargetError("--map needs a graph of machines (a history database or a Graph)")
        return target, opts
    if mach and mach not in target:
        raise TargetError(f"no machine {mach!r} (has: {', '.join(target.machines)})")
    start = mach or next(iter(target.machines))
    if preset is Preset.single:
        return (
            target.subgraph([start]) if distance is None else target.near([start], distance)
        ), opts
    if preset is Preset.bird:
        opts["inherited"] = False
        return target.near([start], 3 if distance is None else distance), opts
    opts["states"] = False
    return (target if not mach else target.near([start], distance or 99)), opts


def _render(
    kind: str,
    target: str,
    output: Path | None,
    preset: Preset,
    mach: str,
    distance: int | None,
    active: str | None,
    labels: bool,
    groups: bool,
    direction: str,
    layout: str = "elk",
) -> None:
    try:
        obj = load_target(target)
        obj, opts = _select(obj, preset, mach, distance)
    except TargetError as err:
        fail(str(err))
    opts.update(labels=labels, groups=groups, direction=direction)
    act = [a.strip() for a in active.split(",") if a.strip()] if active is not None else None
    try:
        if kind == "mermaid":
            text = vis.mermaid(obj, active=act, **opts)
        elif kind == "d2":
            text = vis.d2(obj, active=act, **opts)
        else:
            text = vis.svg(obj, active=act, layout=layout, **opts)
    except vis.VisError as err:
        fail(str(err))
    if output is None:
        print(text, end="")
        return
    output.write_text(text, encoding="utf-8")
    console.print(f"[green]wrote[/] {output}", highlight=False, soft_wrap=True)


TargetArg = Annotated[
    str,
    typer.Argument(
        help="module:attr, path/file.py:attr, a history database or a debugger recording."
    ),
]
OutOpt = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")
]
BirdOpt = Annotated[bool, typer.Option("--bird", help="Neighbours (distance 3), own states.")]
MapOpt = Annotated[bool, typer.Option("--map", help="Machines and their links only.")]
MachOpt = Annotated[str, typer.Option("-m", "--mach", help="Start from this machine id.")]
DistOpt = Annotated[int | None, typer.Option("--distance", help="Machines up to N links away.")]
ActiveOpt = Annotated[
    str | None, typer.Option("-a", "--active", help="Highlight these states (comma list).")
]
LabelsOpt = Annotated[bool, typer.Option("--labels", help="Label relation edges.")]
GroupsOpt = Annotated[bool, typer.Option("--groups/--no-groups", help="Groups as subgraphs.")]
DirOpt = Annotated[str, typer.Option("--direction", help="LR, TB, RL or BT.")]


def _preset(bird: bool, map_: bool) -> Preset:
    if bird and map_:
        fail("--bird and --map exclude each other")
    return Preset.bird if bird else Preset.map if map_ else Preset.single


@app.callback()
def _main(version: Annotated[bool, version_callback("am-vis")] = False) -> None:
    """Diagrams of asyncmachine-trio schemas and machines: Mermaid, D2, SVG."""


@app.command()
def mermaid(
    target: TargetArg,
    output: OutOpt = None,
    bird: BirdOpt = False,
    map_: MapOpt = False,
    mach: MachOpt = "",
    distance: DistOpt = None,
    active: ActiveOpt = None,
    labels: LabelsOpt = False,
    groups: GroupsOpt = True,
    direction: DirOpt = "LR",
) -> None:
    """Mermaid flowchart text (renders on GitHub in a ```mermaid block)."""
    _render(
        "mermaid", target, output, _preset(bird, map_), mach, distance, active, labels,
        groups, direction,
    )  # fmt: skip


@app.command()
def d2(
    target: TargetArg,
    output: OutOpt = None,
    bird: BirdOpt = False,
    map_: MapOpt = False,
    mach: MachOpt = "",
    distance: DistOpt = None,
    active: ActiveOpt = None,
    labels: LabelsOpt = False,
    groups: GroupsOpt = True,
    direction: DirOpt = "LR",
) -> None:
    """D2 text."""
    _render(
        "d2", target, output, _preset(bird, map_), mach, distance, active, labels, groups,
        direction,
    )  # fmt: skip


@app.command()
def svg(
    target: TargetArg,
    output: OutOpt = None,
    bird: BirdOpt = False,
    map_: MapOpt = False,
    mach: MachOpt = "",
    distance: DistOpt = None,
    active: ActiveOpt = None,
    labels: LabelsOpt = False,
    groups: GroupsOpt = True,
    direction: DirOpt = "LR",
    layout: Annotated[str, typer.Option("--layout", help="d2 layout: elk or dagre.")] = "elk",
) -> None:
    """SVG rendered by d2 (extra vis)."""
    _render(
        "svg", target, output, _preset(bird, map_), mach, distance, active, labels, groups,
        direction, layout,
    )  # fmt: skip


@app.command()
def seq(
    recording: Annotated[Path, typer.Argument(help="A debugger recording (.amdbg.gz).")],
    mach: MachOpt = "",
    tx: Annotated[
        int, typer.Option("-t", "--tx", help="Which transition: 1 = first, -1 = last.")
    ] = -1,
    ascii_: Annotated[bool, typer.Option("--ascii", help="Plain text, not Mermaid.")] = False,
    output: OutOpt = None,
) -> None:
    """One transition of a debugger recording as a sequence diagram."""
    from ..telemetry.errors import ProtocolError
    from .recording import read_recording

    try:
        col = read_recording(recording)
    except (ProtocolError, OSError) as err:
        fail(str(err))
    if not col.machines:
        fail(f"{recording}: the recording holds no machines")
    mid = mach or next(iter(col.machines))
    log = col.machines.get(mid)
    if log is None:
        fail(f"no machine {mid!r} in {recording} (has: {', '.join(col.machines)})")
    n = len(log.txs)
    index = tx - 1 if tx > 0 else n + tx
    if not 0 <= index < n:
        fail(f"{mid} has {n} transitions in {recording}; -t {tx} is outside 1..{n} / -{n}..-1")
    text = vis.sequence(
        log.txs[index], "ascii" if ascii_ else "mermaid", names=log.schema.state_names
    )
    if output is None:
        print(text, end="")
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"[green]wrote[/] {output}", highlight=False, soft_wrap=True)


@app.command()
def inspect(target: TargetArg, output: OutOpt = None) -> None:
    """A Markdown report of every machine: parent, active states, links, pipes."""
    try:
        obj = load_target(target)
    except TargetError as err:
        fail(str(err))
    graph = obj if isinstance(obj, Graph) else Graph.of(obj)
    text = graph.inspect()
    if output is None:
        print(text, end="")
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"[green]wrote[/] {output}", highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
