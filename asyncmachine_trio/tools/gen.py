"""``am-gen`` logic: the states-file grammar and generator, and Grafana dashboards.

The grammar of ``-s`` (a comma list of states)::

    Name[:auto][:multi][:Relation(A;B)]...     e.g.  Foo:auto:require(Bar;Baz),Bar,Baz:multi

Relations are ``require``, ``add``, ``remove``, ``after`` (any case); a target
starting with ``_`` is a group (``remove(_Playing)``), expanded to its states.
``-g`` is a comma list of groups, each optionally with members:
``Playing(Play;Pause),Errors``. Names get an upper-case first letter.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Sequence
from typing import Any

import attrs

from ..machine.errors import AsyncMachineError
from ..machine.schema import State, States

__all__ = [
    "INHERITS",
    "GenError",
    "StateSpec",
    "StatesFile",
    "dashboard",
    "normalize_id",
    "parse_groups",
    "parse_states",
    "render_states_file",
]

RELATIONS = ("require", "add", "remove", "after")


class GenError(AsyncMachineError, ValueError):
    """Bad generator input; the message names the offending token."""


#: ``-i`` values: (import module, schema class, groups class or "")
INHERITS: dict[str, tuple[str, str, str]] = {
    "basic": ("asyncmachine_trio.states", "BasicStates", ""),
    "connected": ("asyncmachine_trio.states", "ConnectedStates", "ConnectedGroups"),
    "disposed": ("asyncmachine_trio.states", "DisposedStates", ""),
    "conn-pool": ("asyncmachine_trio.states", "ConnPoolStates", "ConnPoolGroups"),
    "rpc": ("asyncmachine_trio.rpc", "StateSourceStates", ""),
    "node/worker": ("asyncmachine_trio.node", "WorkerStates", "WorkerGroups"),
}
# the reference's spellings of the same schemas
_INHERIT_ALIASES = {
    "rpc/statesrc": "rpc",
    "connpool": "conn-pool",
    "conn_pool": "conn-pool",
    "node": "node/worker",
}
# schemas another one already inherits: dropped when both are given (a class
# cannot list a base before its own subclass)
_INCLUDED_BY = {"node/worker": ("basic", "rpc")}


@attrs.frozen
class StateSpec:
    """One parsed state of ``-s``: name, flags and relations (group refs kept)."""

    name: str
    auto: bool = False
    multi: bool = False
    #: relation -> targets, in the given order; ``_Group`` targets unexpanded
    relations: dict[str, tuple[str, ...]] = attrs.field(factory=dict)


@attrs.frozen
class StatesFile:
    """Everything a states file is made of."""

    name: str
    states: tuple[StateSpec, ...]
    groups: dict[str, tuple[str, ...]]
    inherit: tuple[str, ...] = ()

    @property
    def class_name(self) -> str:
        return f"{self.name}States"

    @property
    def groups_name(self) -> str:
        return f"{self.name}Groups"

    @property
    def file_name(self) -> str:
        return f"ss_{snake_name(self.name)}.py"

    def inherited_schema(self) -> dict[str, State]:
        """The merged schema of the inherited bundled classes (imports them)."""
        import importlib

        out: dict[str, State] = {}
        for key in self.inherit:
            module, cls, _ = INHERITS[key]
            klass: type[States] = getattr(importlib.import_module(module), cls)
            out.update(klass.schema())
        return out

    def schema(self) -> dict[str, State]:
        """The schema the generated class will have (inherited states first)."""
        out = self.inherited_schema()
        for spec in self.states:
            rels = {k: self.expand(v) for k, v in spec.relations.items()}
            out[spec.name] = State(auto=spec.auto, multi=spec.multi, **rels)
        return out

    def expand(self, targets: Sequence[str]) -> tuple[str, ...]:
        """Targets with ``_Group`` replaced by the group's states (no duplicates)."""
        out: dict[str, None] = {}
        for t in targets:
            if t.startswith("_"):
                out.update(dict.fromkeys(self.groups[t[1:]]))
            else:
                out[t] = None
        return tuple(out)


_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_REL_RE = re.compile(r"^([A-Za-z]+)\((.*)\)$")


def _name(token: str, what: str, where: str) -> str:
    if not _NAME_RE.match(token):
        raise GenError(
            f"bad {what} name {token!r} in {where!r}: use letters, digits and _ (a letter first)"
        )
    name = token[0].upper() + token[1:]
    if keyword.iskeyword(name):
        raise GenError(f"{what} name {token!r} in {where!r} is a Python keyword")
    return name


def _split_top(text: str, sep: str, where: str) -> list[str]:
    """Split on ``sep`` outside parentheses."""
    parts: list[str] = []
    depth = 0
    cur = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise GenError(f"unbalanced ')' in {where!r}")
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise GenError(f"unbalanced '(' in {where!r}")
    parts.append(cur)
    return [p.strip() for p in parts]


def parse_groups(text: str) -> dict[str, tuple[str, ...]]:
    """``Playing(Play;Pause),Errors`` -> ``{"Playing": ("Play", "Pause"), "Errors": ()}``."""
    out: dict[str, tuple[str, ...]] = {}
    if not text.strip():
        return out
    for token in _split_top(text, ",", text):
        if not token:
            raise GenError(f"empty group in {text!r}")
        m = _REL_RE.match(token)
        raw, members = (m.group(1), m.group(2)) if m else (token, "")
        name = _name(raw, "group", token)
        if name in out:
            raise GenError(f"duplicate group {name!r} in {text!r}")
        names = [_name(x.strip(), "state", token) for x in members.split(";") if x.strip()]
        out[name] = tuple(names)
    return out


def parse_states(text: str) -> list[StateSpec]:
    """Parse the ``-s`` grammar (see the module doc); :class:`GenError` names the bad token."""
    specs: list[StateSpec] = []
    seen: set[str] = set()
    if not text.strip():
        raise GenError("no states given (-s 'Foo,Bar:auto')")
    for token in _split_top(text, ",", text):
        if not token:
            raise GenError(f"empty state in {text!r} (a doubled or trailing comma)")
        parts = _split_top(token, ":", token)
        name = _name(parts[0], "state", token)
        if name in seen:
            raise GenError(f"duplicate state {name!r} in {token!r}")
        seen.add(name)
        auto = multi = False
        rels: dict[str, tuple[str, ...]] = {}
        for part in parts[1:]:
            low = part.lower()
            if low == "auto":
                auto = True
                continue
            if low == "multi":
                multi = True
                continue
            m = _REL_RE.match(part)
            if m is None or m.group(1).lower() not in RELATIONS:
                raise GenError(
                    f"unknown property {part!r} of state {name!r}: expected auto, multi"
                    f" or one of {', '.join(r + '(A;B)' for r in RELATIONS)}"
                )
            rel = m.group(1).lower()
            targets: list[str] = []
            for t in m.group(2).split(";"):
                t = t.strip()
                if not t:
                    raise GenError(f"empty target in {part!r} of state {name!r}")
                if t.startswith("_"):
                    targets.append("_" + _name(t[1:], "group", part))
                else:
                    targets.append(_name(t, "state", part))
            rels[rel] = (*rels.get(rel, ()), *targets)
        specs.append(StateSpec(name, auto, multi, rels))
    return specs


def _closest(name: str, options: Sequence[str]) -> str:
    import difflib

    match = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def build(name: str, states: str, groups: str = "", inherit: Sequence[str] = ()) -> StatesFile:
    """Parse and check the CLI input: every reference must resolve."""
    file_name = _name(name, "machine", name)
    inh: list[str] = []
    for raw in inherit:
        for key in (k.strip().lower() for k in raw.split(",")):
            if not key:
                continue
            key = _INHERIT_ALIASES.get(key, key)
            if key not in INHERITS:
                raise GenError(
                    f"unknown schema to inherit {key!r}{_closest(key, list(INHERITS))};"
                    f" expected one of {', '.join(INHERITS)}"
                )
            if key not in inh:
                inh.append(key)
    for key, included in _INCLUDED_BY.items():
        if key in inh:
            inh = [k for k in inh if k not in included]
    specs = parse_states(states)
    grp = parse_groups(groups)
    sf = StatesFile(file_name, tuple(specs), grp, tuple(inh))
    known = [*sf.inherited_schema(), *(s.name for s in specs)]
    for g, members in grp.items():
        for s in members:
            if s not in known:
                raise GenError(f"group {g!r} lists unknown state {s!r}{_closest(s, known)}")
    for spec in specs:
        for rel, targets in spec.relations.items():
            for t in targets:
                if t.startswith("_"):
                    if t[1:] not in grp:
                        raise GenError(
                            f"state {spec.name!r}: {rel}({t}) names an unknown group"
                            f"{_closest(t[1:], list(grp))} (define it with -g)"
                        )
                elif t not in known:
                    raise GenError(
                        f"state {spec.name!r}: {rel}({t}) names an unknown state"
                        f"{_closest(t, known)}"
                    )
    return sf


def snake_name(name: str) -> str:
    """``MyMach`` -> ``my_mach``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _tuple(items: Sequence[str]) -> str:
    inner = ", ".join(f'"{x}"' for x in items)
    return f"({inner},)" if len(items) == 1 else f"({inner})"


def render_states_file(sf: StatesFile) -> str:
    """The text of ``ss_<name>.py``: a typed States class, its groups and aliases."""
    imports: dict[str, list[str]] = {}
    bases: list[str] = []
    group_bases: list[str] = []
    for key in sf.inherit:
        module, cls, groups = INHERITS[key]
        imports.setdefault(module, []).append(cls)
        bases.append(cls)
        if groups:
            imports[module].append(groups)
            group_bases.append(groups)
    lines = [
        f'"""States of the {sf.name} machine (generated by am-gen; edit freely).',
        "",
        "Use: ``am.Machine(S, handlers)``, state names as ``S.Foo``,",
        "groups as ``G.Bar`` (``mach.set_groups(G, S)``).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "import asyncmachine_trio as am",
    ]
    for module, names in imports.items():
        lines.append(f"from {module} import {', '.join(sorted(names))}")
    lines += ["", "", f"class {sf.class_name}({', '.join(bases) or 'am.States'}):"]
    lines.append(f'    """The states of {sf.name}."""')
    lines.append("")
    for spec in sf.states:
        args: list[str] = []
        if spec.auto:
            args.append("auto=True")
        if spec.multi:
            args.append("multi=True")
        refs: list[str] = []
        for rel in RELATIONS:
            targets = spec.relations.get(rel)
            if targets:
                args.append(f"{rel}={_tuple(sf.expand(targets))}")
                refs += [f"{rel} {t}" for t in targets if t.startswith("_")]
        if refs:
            lines.append(f"    # {', '.join(refs)}")
        line = f"    {spec.name} = am.State({', '.join(args)})"
        if len(line) > 100:
            line = f"    {spec.name} = am.State(\n        " + ",\n        ".join(args) + ",\n    )"
        lines.append(line)
    lines += ["", "", f"class {sf.groups_name}({', '.join(group_bases) or 'am.StateGroups'}):"]
    lines.append(f'    """Groups of {sf.name} states."""')
    if sf.groups:
        lines.append("")
        for g, members in sf.groups.items():
            inner = ", ".join(f"{sf.class_name}.{m}" for m in members)
            lines.append(
                f"    {g}: list[str] = [{inner}]" if not members else f"    {g} = [{inner}]"
            )
    lines += [
        "",
        "",
        f"S = {sf.class_name}",
        f"G = {sf.groups_name}",
        "",
    ]
    return "\n".join(lines)


# ----- Grafana


def normalize_id(mach_id: str) -> str:
    """A machine id as it appears in metric names: lowercase, others ``_``."""
    return re.sub(r"[^a-z0-9_]", "_", mach_id.lower())


#: metric suffixes of the Prometheus tracer (``am_<metric>_<id>``)
METRICS = (
    "transitions", "exceptions", "queue_size", "tx_ticks", "steps", "handlers",
    "states_added", "states_removed", "states_touched", "states_active", "states_inactive",
    "tx_time", "states", "relations", "ref_states",
)  # fmt: skip


class _Panels:
    def __init__(self, source: str) -> None:
        self.source = source
        self.next_id = 1
        self.y = 0

    def _id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def target(self, metric: str, mach: str, ref: str) -> dict[str, Any]:
        return {
            "datasource": {"type": "prometheus", "uid": "Prometheus"},
            "expr": f'am_{metric}_{normalize_id(mach)}{{job="{self.source}"}}',
            "legendFormat": metric,
            "refId": ref,
        }

    def panel(
        self, kind: str, title: str, mach: str, metrics: Sequence[str], w: int, x: int
    ) -> dict[str, Any]:
        refs = "ABCDEFGH"
        return {
            "id": self._id(),
            "type": kind,
            "title": title,
            "datasource": {"type": "prometheus", "uid": "Prometheus"},
            "gridPos": {"h": 8, "w": w, "x": x, "y": self.y},
            "targets": [self.target(m, mach, refs[i]) for i, m in enumerate(metrics)],
        }

    def row(self, title: str, collapsed: bool, panels: list[dict[str, Any]]) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": self._id(),
            "type": "row",
            "title": title,
            "collapsed": collapsed,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
            "panels": panels if collapsed else [],
        }
        return row


def dashboard(ids: Sequence[str], name: str, source: str) -> dict[str, Any]:
    """A Grafana dashboard (JSON model) for the Prometheus metrics of ``ids``.

    Per machine: a row "Mach: ID" (transitions; exceptions heatmap), a collapsed
    "Details: ID" (mutations, details, states and relations, transition time
    heatmap) and a collapsed "Logs: ID" (Loki, by ``service_name`` and
    ``asyncmachine_id``). Refresh 5 s, last 5 minutes, tag ``generated``.
    """
    if not ids:
        raise GenError("no machine ids given (-i id1,id2)")
    if not source:
        raise GenError("no source given (-s: the Prometheus job / Loki service_name)")
    p = _Panels(source)
    panels: list[dict[str, Any]] = []
    for mach in ids:
        mach_row = p.row(f"Mach: {mach}", False, [])
        p.y += 1
        panels.append(mach_row)
        panels.append(p.panel("timeseries", "Transitions", mach, ["transitions"], 16, 0))
        panels.append(p.panel("heatmap", "Exceptions", mach, ["exceptions"], 8, 16))
        p.y += 8
        details_y = p.y
        p.y += 1
        inner = [
            p.panel(
                "timeseries",
                "Mutations",
                mach,
                ["queue_size", "handlers", "states_added", "states_removed"],
                12,
                0,
            ),
            p.panel("timeseries", "Details", mach, ["tx_ticks", "steps", "states_touched"], 12, 12),
        ]
        p.y += 8
        inner += [
            p.panel(
                "timeseries",
                "States and relations",
                mach,
                ["states", "relations", "ref_states"],
                12,
                0,
            ),
            p.panel("heatmap", "Transition time (µs)", mach, ["tx_time"], 12, 12),
        ]
        p.y += 8
        row = p.row(f"Details: {mach}", True, inner)
        row["gridPos"]["y"] = details_y
        panels.append(row)
        logs_y = p.y
        p.y += 1
        logs = {
            "id": p._id(),
            "type": "logs",
            "title": "Logs",
            "datasource": {"type": "loki", "uid": "Loki"},
            "gridPos": {"h": 12, "w": 24, "x": 0, "y": p.y},
            "targets": [
                {
                    "datasource": {"type": "loki", "uid": "Loki"},
                    "expr": f'{{service_name="{source}", asyncmachine_id="{mach}"}}',
                    "refId": "A",
                }
            ],
        }
        p.y += 12
        row = p.row(f"Logs: {mach}", True, [logs])
        row["gridPos"]["y"] = logs_y
        panels.append(row)
    return {
        "title": name,
        "uid": normalize_id(f"am-{name}")[:40],
        "tags": ["generated", "asyncmachine"],
        "refresh": "5s",
        "time": {"from": "now-5m", "to": "now"},
        "timezone": "browser",
        "schemaVersion": 39,
        "editable": True,
        "panels": panels,
    }
