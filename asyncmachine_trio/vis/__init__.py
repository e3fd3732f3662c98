"""Diagrams: relation graphs and transitions as Mermaid, D2, ASCII and SVG.

One call per output; the target is a machine (its active states are
highlighted), an ``am.States`` class, a schema mapping, a
:class:`~asyncmachine_trio.graph.MachineNode` or a whole
:class:`~asyncmachine_trio.graph.Graph` of connected machines::

    print(am.vis.mermaid(mach))          # flowchart text, renders on GitHub
    print(am.vis.d2(MyStates))           # D2 text
    svg = am.vis.svg(mach)               # needs the [vis] extra (the d2 binary)
    print(am.vis.sequence(tx))           # one transition, Mermaid sequenceDiagram
    print(am.vis.sequence(tx, "ascii"))  # the same as plain text

Text output needs no extra; :func:`svg` raises :class:`D2NotFoundError` when
the ``d2`` binary is missing. See ``docs/tools.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import attrs

from ..graph import Graph, MachineNode, node_of
from .flow import RELATIONS, Options, d2_flowchart, mermaid_flowchart
from .render import D2Error, D2NotFoundError, VisError, d2_binary, d2_fmt, d2_svg
from .seq import SeqStep, TxSequence, ascii_sequence, mermaid_sequence, sequence_of

__all__ = [
    "RELATIONS",
    "D2Error",
    "D2NotFoundError",
    "Options",
    "SeqStep",
    "TxSequence",
    "VisError",
    "d2",
    "d2_binary",
    "d2_fmt",
    "mermaid",
    "sequence",
    "svg",
]


def _target(target: Any, active: Iterable[str] | None) -> Graph | MachineNode:
    if isinstance(target, Graph):
        if active is not None:
            raise VisError("active= applies to one machine, not a graph")
        return target
    try:
        return node_of(target, active=active)
    except Exception as err:
        raise VisError(str(err)) from err


def _opts(options: Options | None, kw: dict[str, Any]) -> Options:
    base = options or Options()
    if not kw:
        return base
    try:
        return attrs.evolve(base, **kw)
    except TypeError as err:
        names = ", ".join(a.name for a in attrs.fields(Options))
        raise VisError(f"{err}; diagram options are: {names}") from None


def mermaid(
    target: Any,
    *,
    active: Iterable[str] | None = None,
    options: Options | None = None,
    **opts: Any,
) -> str:
    """Mermaid ``flowchart`` text of a machine, schema or graph.

    ``active`` overrides the highlighted states; keyword options are the fields
    of :class:`Options` (``labels=True``, ``groups=False``, ``direction="TB"``...).
    """
    return mermaid_flowchart(_target(target, active), _opts(options, opts))


def d2(
    target: Any,
    *,
    active: Iterable[str] | None = None,
    options: Options | None = None,
    **opts: Any,
) -> str:
    """D2 text of a machine, schema or graph (the same options as :func:`mermaid`)."""
    return d2_flowchart(_target(target, active), _opts(options, opts))


def svg(
    target: Any,
    *,
    active: Iterable[str] | None = None,
    layout: str = "elk",
    options: Options | None = None,
    **opts: Any,
) -> str:
    """SVG text, rendered from :func:`d2` by the ``d2`` binary (extra ``vis``).

    ``target`` may also be D2 text (a ``str``). Raises :class:`D2NotFoundError`
    without the binary, :class:`D2Error` when it fails.
    """
    text = target if isinstance(target, str) else d2(target, active=active, options=options, **opts)
    return d2_svg(text, layout=layout)


def sequence(
    source: Any,
    fmt: Literal["mermaid", "ascii"] = "mermaid",
    *,
    names: Sequence[str] | None = None,
) -> str:
    """One transition as a sequence diagram: ``"mermaid"`` or ``"ascii"``.

    ``source`` is an ``am.Transition`` (``Machine(log_steps=True)`` records every
    resolution step; e.g. from ``am.LastTxTracer``), a history record
    (``MemoryRecord`` with its transition; ``names=history.tracked_states``) or
    a telemetry ``TxRecord`` (``names=schema_record.state_names``).
    """
    seq = sequence_of(source, names)
    if fmt == "mermaid":
        return mermaid_sequence(seq)
    if fmt == "ascii":
        return ascii_sequence(seq)
    raise VisError(f"unknown sequence format {fmt!r}; expected 'mermaid' or 'ascii'")
