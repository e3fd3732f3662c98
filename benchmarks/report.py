"""Ratios to transitions, the issue's targets, and the one printed table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .import_time import render as render_import
from .rpc_attack_bench import render as render_rpc_attack
from .rpc_bench import render as render_rpc

AM = "asyncmachine-trio"
TR = "transitions"

Rows = dict[tuple[str, str], dict[str, Any]]

# the transitions row each kind of figure is compared with ("x tr" column)
RATIO_BASES: dict[str, tuple[str, str]] = {
    "transition": (TR, "toggle"),  # Machine toggle with on_enter callbacks (case 1)
    "step": (TR, "async-asyncio"),  # AsyncMachine toggle on asyncio (case 3)
    "mutation": (TR, "toggle"),
    "instance": (TR, "build50"),  # Machine(50 states, auto_transitions=False)
    "byte": (TR, "memory"),
}


def figure(row: dict[str, Any] | None) -> float | None:
    """µs per op, or bytes per instance for memory rows; None if missing or failed."""
    if row is None or row.get("error"):
        return None
    value = row["bytes_per_instance"] if row["unit"] == "byte" else row["us_per_op"]
    return float(value) if value is not None else None


def add_ratios(rows: Rows) -> None:
    for row in rows.values():
        base_key = RATIO_BASES.get(row["unit"])
        value, base = figure(row), figure(rows.get(base_key)) if base_key else None
        row["ratio_base"] = f"{base_key[0]} {base_key[1]}" if base_key else None
        row["ratio"] = value / base if value is not None and base else None


@dataclass(frozen=True)
class Target:
    """One target of the issue: ``figure(row) <= limit(rows)``."""

    name: str
    key: tuple[str, str]  # the row it is about
    limit: Callable[[Rows], float | None]
    text: str  # the limit in words

    def evaluate(self, rows: Rows) -> dict[str, Any]:
        value, limit = figure(rows.get(self.key)), self.limit(rows)
        met = None if value is None or limit is None else value <= limit
        return {
            "name": self.name,
            "row": f"{self.key[0]} {self.key[1]}",
            "target": self.text,
            "value": value,
            "limit": limit,
            "met": met,
        }


def _times(factor: float, key: tuple[str, str]) -> Callable[[Rows], float | None]:
    def limit(rows: Rows) -> float | None:
        base = figure(rows.get(key))
        return factor * base if base is not None else None

    return limit


def _const(value: float) -> Callable[[Rows], float | None]:
    return lambda rows: value


TARGETS = [
    Target("toggle", (AM, "toggle"), _times(0.5, (TR, "toggle")), "<= 0.5x transitions toggle"),
    Target("async toggle on trio", (AM, "async-trio"), _const(20.0), "<= 20 us"),
    Target(
        "async toggle on trio vs floor",
        (AM, "async-trio"),
        _times(1.7, (AM, "floor-trio")),
        "<= 1.7x the floor (bare nursery spawn + event)",
    ),
    Target(
        "async toggle on asyncio",
        (AM, "async-asyncio"),
        _times(0.5, (TR, "async-asyncio")),
        "<= 0.5x transitions AsyncMachine",
    ),
    Target("build50", (AM, "build50"), _const(100.0), "<= 100 us per instance"),
    Target("scale", (AM, "scale-1000"), _times(2.0, (AM, "scale-10")), "<= 2x at 10 states"),
    Target("waiters", (AM, "waiters-1000"), _times(1.2, (AM, "waiters-0")), "<= 1.2x no waiters"),
    Target("memory", (AM, "memory"), _const(16 * 1024.0), "<= 16 KiB per instance"),
    # issue 12
    Target(
        "scale, 1000 states",
        (AM, "scale-1000"),
        _times(1.5, (AM, "scale-10")),
        "<= 1.5x at 10 states",
    ),
    Target(
        "scale, 499 active",
        (AM, "scale-1000-active"),
        _times(2.0, (AM, "scale-10")),
        "<= 2x the 10-state toggle",
    ),
    Target("args", (AM, "toggle-args"), _times(1.3, (AM, "toggle")), "<= 1.3x toggle"),
    Target("queued", (AM, "toggle-queued"), _times(1.3, (AM, "toggle")), "<= 1.3x toggle"),
]


def evaluate_targets(rows: Rows) -> list[dict[str, Any]]:
    results = [t.evaluate(rows) for t in TARGETS]
    # the toggle target against the no-callback transitions figure too (the 9.0 us)
    nocb = figure(rows.get((TR, "toggle-nocb")))
    value = figure(rows.get((AM, "toggle")))
    results[0]["vs_no_callbacks"] = value / nocb if value is not None and nocb else None
    for t, r in zip(TARGETS, results, strict=True):
        row = rows.get(t.key)
        if row is not None:
            row.setdefault("targets", []).append(r)
            row["target"] = r
    return results


# the async steps and the floor each is compared with ("x floor" in the target column)
FLOORS = {
    (AM, "async-trio"): (AM, "floor-trio"),
    (AM, "async-asyncio"): (AM, "floor-asyncio"),
}


def add_floor_ratios(rows: Rows) -> None:
    """``floor_ratio``: an async step over the floor measured in the same run."""
    for key, floor_key in FLOORS.items():
        row = rows.get(key)
        value, floor = figure(row), figure(rows.get(floor_key))
        if row is not None and value is not None and floor:
            row["floor_ratio"] = value / floor


def _target_cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    if r["met"] is None:
        return f"n/a ({r['target']})"
    mark = "met" if r["met"] else "MISSED"
    value, limit = r["value"], r["limit"]
    if r["row"].endswith("memory"):
        text = f"{mark} {value / 1024:.1f} KiB (limit {limit / 1024:.0f})"
    else:
        text = f"{mark} {value:.2f} us (limit {limit:.2f})"
    if r.get("vs_no_callbacks") is not None:
        text += f"; {r['vs_no_callbacks']:.2f}x no-cb"
    return text


def _per_op(row: dict[str, Any]) -> str:
    if row["unit"] == "byte":
        return f"{row['bytes_per_instance']:,.0f} B"
    us = row["us_per_op"]
    return f"{us:,.2f} us" if us < 1000 else f"{us:,.0f} us"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'library':<20} {'case':<13} {'variant':<42} {'per op':>12} {'ops/s':>11} "
        f"{'spread':>6} {'x tr':>7}  target"
    )
    lines = [head, "-" * len(head)]
    previous = ""
    for row in rows:
        lib = row["lib"] if row["lib"] != previous else ""
        previous = row["lib"]
        start = f"{lib:<20} {row['case']:<13} {row['label']:<42}"
        if row.get("error"):
            note = f" ({row['note']})" if row.get("note") else ""
            lines.append(f"{start} FAILED: {row['error'][:80]}{note}")
            continue
        if row["unit"] == "byte":
            ops, spread = f"n={row['n']:,}", ""
        else:
            ops, spread = f"{row['ops_per_s']:,.0f}", f"{row['spread_pct']:.0f}%"
        r = row.get("ratio")
        ratio = "" if r is None else f"{r:.2f}x" if r >= 0.1 else f"{r:.3f}x"
        cells = [_target_cell(t) for t in row.get("targets") or [row.get("target")]]
        if row.get("floor_ratio") is not None:
            cells.append(f"{row['floor_ratio']:.2f}x floor")
        lines.append(
            f"{start} {_per_op(row):>12} {ops:>11} {spread:>6} {ratio:>7}  "
            f"{'; '.join(c for c in cells if c)}".rstrip()
        )
    return "\n".join(lines)


def render(doc: dict[str, Any]) -> str:
    """The whole printed report of a run: header, the table, the targets summary."""
    info, settings, targets = doc["machine"], doc["settings"], doc["targets"]
    out = [
        f"asyncmachine-trio benchmarks, {doc['date']} - python {info['python']}, "
        f"{info['cpu']} x{info['cores']}, {info['platform']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()),
        f"median of {settings['repeats']} repeats (~{settings['min_time']} s each) after a "
        "warm-up; spread = (max-min)/median; x tr = ratio to the transitions row of the same "
        "kind: Machine toggle with callbacks (transitions, mutations), AsyncMachine toggle on "
        "asyncio (async steps), build50 (instances), memory (bytes)",
        table(doc["rows"]),
    ]
    met = sum(1 for t in targets if t["met"])
    missed = [t["name"] for t in targets if t["met"] is False]
    unmeasured = [t["name"] for t in targets if t["met"] is None]
    summary = f"targets: {met} met, {len(missed)} missed"
    if missed:
        summary += " (" + ", ".join(missed) + ")"
    if unmeasured:
        summary += f", {len(unmeasured)} not measured (" + ", ".join(unmeasured) + ")"
    out.append(summary)
    if doc.get("rpc") is not None:
        out.append("")
        out.append(render_rpc(doc["rpc"]))
    if doc.get("rpc_attack") is not None:
        out.append("")
        out.append(render_rpc_attack(doc["rpc_attack"]))
    if doc.get("import") is not None:
        out.append("")
        out.append(render_import(doc["import"]))
    if doc.get("telemetry") is not None:
        from .telemetry_overhead import render as render_telemetry

        out.append("")
        out.append(render_telemetry(doc["telemetry"]))
    return "\n".join(out)
