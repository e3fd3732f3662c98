"""Relation graphs as Mermaid ``flowchart`` and D2 text.

One machine: a node per state, an edge per relation (require, add, remove,
after: four arrow styles), Auto / Multi marked, active states highlighted,
groups as subgraphs. Many machines: a container per machine plus parent,
pipe and aRPC edges.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import attrs

from ..graph import Graph, MachineNode

__all__ = ["Options", "d2_flowchart", "mermaid_flowchart"]

RELATIONS = ("require", "add", "remove", "after")


@attrs.frozen(kw_only=True)
class Options:
    """What a flowchart shows (the presets of ``am-vis`` are made of these)."""

    #: draw the states of each machine (off: machines only, the ``--map`` preset)
    states: bool = True
    #: draw relation edges between states
    relations: bool = True
    #: relation kinds drawn
    relation_kinds: tuple[str, ...] = RELATIONS
    #: put grouped states in subgraphs
    groups: bool = True
    #: highlight the active states
    active: bool = True
    #: label every relation edge with its kind
    labels: bool = False
    #: draw states inherited from a parent schema (``MachineNode.own``)
    inherited: bool = True
    #: draw pipes between machines
    pipes: bool = True
    #: draw parent edges
    parents: bool = True
    #: draw aRPC links
    rpc: bool = True
    #: ``LR``, ``TB``, ``RL`` or ``BT``
    direction: str = "LR"
    #: only these states (every machine; ``None``: all)
    only_states: tuple[str, ...] | None = None


_SIMPLE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# words Mermaid's flowchart lexer reads as keywords (node ids may not be them)
_MERMAID_KW = {
    "end", "graph", "flowchart", "subgraph", "style", "class", "classdef", "click",
    "linkstyle", "direction", "default", "call", "href", "interpolate", "accdescr",
    "acctitle", "o", "x",
}  # fmt: skip
# D2 reserved keys (a state named like one is quoted)
_D2_KW = {
    "label", "shape", "style", "classes", "class", "direction", "near", "icon", "width",
    "height", "link", "tooltip", "vars", "constraint", "source-arrowhead", "target-arrowhead",
    "grid-rows", "grid-columns", "grid-gap", "top", "left", "layers", "scenarios", "steps",
    "_", "null",
}  # fmt: skip


def _states_of(node: MachineNode, opts: Options) -> list[str]:
    names = list(node.schema)
    if not opts.inherited and node.own is not None:
        own = set(node.own)
        names = [n for n in names if n in own]
    if opts.only_states is not None:
        keep = set(opts.only_states)
        names = [n for n in names if n in keep]
    return names


def _placement(
    node: MachineNode, names: Sequence[str], opts: Options
) -> tuple[dict[str, list[str]], list[str]]:
    """Group name -> its states (each state in its first group only), ungrouped states.

    A group holding every drawn state (``self`` of a class without parents)
    adds nothing and is skipped.
    """
    placed: set[str] = set()
    groups: dict[str, list[str]] = {}
    visible = set(names)
    if opts.groups:
        for g, members in node.groups.items():
            mine = [s for s in members if s in visible and s not in placed]
            if not mine or len(mine) == len(names):
                continue
            groups[g] = mine
            placed.update(mine)
    return groups, [n for n in names if n not in placed]


def _edges(node: MachineNode, names: Sequence[str], opts: Options) -> list[tuple[str, str, str]]:
    if not opts.relations:
        return []
    visible = set(names)
    out: list[tuple[str, str, str]] = []
    for name in names:
        state = node.schema[name]
        for kind in opts.relation_kinds:
            for target in getattr(state, kind) or ():
                if target in visible and target != name:
                    out.append((name, kind, target))
    return out


class _Ids:
    """Stable, syntax-safe ids for machines and states."""

    def __init__(self, keywords: set[str], single: bool) -> None:
        self.keywords = keywords
        self.single = single
        self.used: set[str] = set()
        self.ids: dict[tuple[str, str], str] = {}

    def _make(self, raw: str, fallback: str) -> str:
        base = raw if _SIMPLE.match(raw) and raw.lower() not in self.keywords else fallback
        cand = base
        i = 2
        while cand in self.used:
            cand = f"{base}_{i}"
            i += 1
        self.used.add(cand)
        return cand

    def mach(self, mach_id: str, index: int) -> str:
        key = (mach_id, "")
        if key not in self.ids:
            self.ids[key] = self._make(f"m{index}", f"m{index}")
        return self.ids[key]

    def state(self, mach_key: str, state: str) -> str:
        key = (mach_key, state)
        if key not in self.ids:
            raw = state if self.single else f"{mach_key}_{state}"
            safe = re.sub(r"\W", "_", state)
            self.ids[key] = self._make(raw, f"{'s' if self.single else mach_key + '_s'}_{safe}")
        return self.ids[key]


def _mm_text(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def _mm_node(sid: str, name: str, node: MachineNode) -> str:
    st = node.schema[name]
    label = name
    marks = [m for m, on in (("auto", st.auto), ("multi", st.multi)) if on]
    if marks:
        label += " · " + " ".join(marks)
    text = _mm_text(label)
    if st.auto:
        return f"{sid}([{text}])"
    if st.multi:
        return f"{sid}[[{text}]]"
    return f"{sid}[{text}]"


_MM_ARROW = {"require": "--o", "add": "-->", "remove": "--x", "after": "-.->"}

MERMAID_CLASSES = (
    "classDef active fill:#2e7d32,stroke:#1b5e20,color:#ffffff,font-weight:bold",
    "classDef auto stroke-dasharray:4 3",
    "classDef multi stroke-width:3px",
)


def _graph_of(target: Graph | MachineNode) -> tuple[Graph, bool]:
    if isinstance(target, MachineNode):
        return Graph({target.id: target}), True
    return target, len(target) == 1


def mermaid_flowchart(target: Graph | MachineNode, opts: Options | None = None) -> str:
    """Mermaid ``flowchart`` text for one machine or a graph of machines."""
    opts = opts or Options()
    graph, single = _graph_of(target)
    ids = _Ids(_MERMAID_KW, single)
    out = [f"flowchart {opts.direction}"]
    out.append("    %% require --o  add -->  remove --x  after -.->")
    active: list[str] = []
    auto: list[str] = []
    multi: list[str] = []
    edges: list[str] = []
    mach_ids = {m.id: ids.mach(m.id, i) for i, m in enumerate(graph)}

    for m in graph:
        mk = mach_ids[m.id]
        indent = "    "
        if not single and not opts.states:
            out.append(f"    {mk}[{_mm_text(m.id)}]")  # --map: a machine is a node
            continue
        if not single:
            out.append(f"    subgraph {mk}[{_mm_text(m.id)}]")
            indent = "        "
        if opts.states:
            names = _states_of(m, opts)
            groups, rest = _placement(m, names, opts)

            def emit(name: str, ind: str, m: MachineNode = m, mk: str = mk) -> None:
                sid = ids.state(mk, name)
                out.append(ind + _mm_node(sid, name, m))
                st = m.schema[name]
                if opts.active and name in m.active:
                    active.append(sid)
                if st.auto:
                    auto.append(sid)
                if st.multi:
                    multi.append(sid)

            for gi, (g, members) in enumerate(groups.items()):
                gid = ids._make(f"{mk}_g{gi}", f"{mk}_g{gi}")
                out.append(f"{indent}subgraph {gid}[{_mm_text(g)}]")
                for name in members:
                    emit(name, indent + "    ")
                out.append(f"{indent}end")
            for name in rest:
                emit(name, indent)
            for a, kind, b in _edges(m, names, opts):
                arrow = _MM_ARROW[kind]
                label = f"|{kind}|" if opts.labels else ""
                edges.append(f"    {ids.state(mk, a)} {arrow}{label} {ids.state(mk, b)}")
        if not single:
            out.append("    end")

    if not single:
        edges.extend(_mm_links(graph, mach_ids, ids, opts))
    out.extend(edges)
    out.extend("    " + c for c in MERMAID_CLASSES)
    for cls, members in (("auto", auto), ("multi", multi), ("active", active)):
        if members:
            out.append(f"    class {','.join(members)} {cls}")
    return "\n".join(out) + "\n"


def _mm_links(graph: Graph, mach_ids: dict[str, str], ids: _Ids, opts: Options) -> Iterable[str]:
    if opts.parents:
        for m in graph:
            if m.parent_id in mach_ids:
                yield f"    {mach_ids[m.id]} ==>|parent| {mach_ids[m.parent_id]}"
    if opts.rpc:
        for a, b in graph.rpc_links():
            if b in mach_ids:
                yield f"    {mach_ids[a]} -.-|rpc| {mach_ids[b]}"
    if opts.pipes:
        for p in graph.pipes:
            if p.source not in mach_ids or p.target not in mach_ids:
                continue
            src_node, tgt_node = graph.machines[p.source], graph.machines[p.target]
            src = mach_ids[p.source]
            tgt = mach_ids[p.target]
            if opts.states and p.source_state in _states_of(src_node, opts):
                src = ids.state(src, p.source_state)
            if opts.states and p.target_state in _states_of(tgt_node, opts):
                tgt = ids.state(tgt, p.target_state)
            arrow = "-->" if p.kind == "add" else "--x"
            yield f"    {src} {arrow}|pipe {p.kind}| {tgt}"


# ----- D2


def _d2_key(text: str) -> str:
    if _SIMPLE.match(text) and text.lower() not in _D2_KW:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _d2_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


D2_CLASSES = """classes: {
  state: {
    style.border-radius: 8
  }
  active: {
    style.fill: "#2e7d32"
    style.stroke: "#1b5e20"
    style.font-color: "#ffffff"
    style.bold: true
  }
  auto: {
    style.stroke-dash: 4
  }
  multi: {
    style.multiple: true
  }
  machine: {
    style.fill: "#f5f5f5"
  }
  group: {
    style.fill: "#e3f2fd"
  }
  require: {
    target-arrowhead.shape: circle
  }
  add: {
    target-arrowhead.shape: arrow
  }
  remove: {
    target-arrowhead.shape: cross
    style.stroke: "#c62828"
  }
  after: {
    style.stroke-dash: 3
  }
  parent: {
    style.stroke-width: 4
  }
  rpc: {
    style.stroke-dash: 5
    style.stroke: "#1565c0"
  }
  pipe: {
    style.stroke: "#6a1b9a"
  }
}"""


def d2_flowchart(target: Graph | MachineNode, opts: Options | None = None) -> str:
    """D2 text for one machine or a graph of machines (``d2 fmt`` clean)."""
    opts = opts or Options()
    graph, single = _graph_of(target)
    d2_dir = {"LR": "right", "RL": "left", "TB": "down", "BT": "up"}.get(opts.direction, "right")
    out = [f"direction: {d2_dir}", D2_CLASSES]
    edges: list[str] = []
    paths: dict[tuple[str, str], str] = {}

    for m in graph:
        base = "" if single else _d2_key(m.id)
        ind = "" if single else "  "
        if not single:
            out.append(f"{base}: {{")
            out.append("  class: machine")
        if opts.states:
            names = _states_of(m, opts)
            groups, rest = _placement(m, names, opts)
            for g, members in groups.items():
                gk = _d2_key(g)
                out.append(f"{ind}{gk}: {{")
                out.append(f"{ind}  class: group")
                for name in members:
                    out.append(f"{ind}  {_d2_state(name, m, opts)}")
                    paths[(m.id, name)] = ".".join(x for x in (base, gk, _d2_key(name)) if x)
                out.append(f"{ind}}}")
            for name in rest:
                out.append(f"{ind}{_d2_state(name, m, opts)}")
                paths[(m.id, name)] = ".".join(x for x in (base, _d2_key(name)) if x)
            for a, kind, b in _edges(m, names, opts):
                label = f" {kind}" if opts.labels else ""
                edges.append(f"{paths[(m.id, a)]} -> {paths[(m.id, b)]}:{label} {{class: {kind}}}")
        if not single:
            out.append("}")

    if not single:
        keys = {m.id: _d2_key(m.id) for m in graph}
        if opts.parents:
            for m in graph:
                if m.parent_id in keys:
                    edges.append(f"{keys[m.id]} -> {keys[m.parent_id]}: parent {{class: parent}}")
        if opts.rpc:
            for a, b in graph.rpc_links():
                if b in keys:
                    edges.append(f"{keys[a]} -- {keys[b]}: rpc {{class: rpc}}")
        if opts.pipes:
            for p in graph.pipes:
                if p.source not in keys or p.target not in keys:
                    continue
                src = paths.get((p.source, p.source_state), keys[p.source])
                tgt = paths.get((p.target, p.target_state), keys[p.target])
                edges.append(f"{src} -> {tgt}: pipe {p.kind} {{class: pipe}}")
    out.extend(edges)
    return "\n".join(out) + "\n"


def _d2_state(name: str, m: MachineNode, opts: Options) -> str:
    st = m.schema[name]
    classes = ["state"]
    if st.auto:
        classes.append("auto")
    if st.multi:
        classes.append("multi")
    if opts.active and name in m.active:
        classes.append("active")
    label = name
    marks = [x for x, on in (("auto", st.auto), ("multi", st.multi)) if on]
    if marks:
        label += " · " + " ".join(marks)
    cls = classes[0] if len(classes) == 1 else "[" + "; ".join(classes) + "]"
    return f"{_d2_key(name)}: {_d2_str(label)} {{class: {cls}}}"
