"""Synthetic protocol v2 traffic for the am-dbg tests and benchmarks."""

from __future__ import annotations

from asyncmachine_trio.telemetry import SchemaRecord, StateRecord, StepRecord, TxRecord

STATES = ["Start", "Ready", "Healthcheck", "Working", "Done", "Exception", "ErrNet", "Busy"]
T0 = 1_700_000_000_000_000_000


def schema(mid: str, parent: str = "", states: list[str] | None = None) -> SchemaRecord:
    names = list(states or STATES)
    recs = [StateRecord(n) for n in names]
    if "Working" in names:
        recs[names.index("Working")] = StateRecord(
            "Working", auto=True, require=["Start"], remove=["Done"]
        )
    if "Busy" in names:
        recs[names.index("Busy")] = StateRecord("Busy", multi=True)
    return SchemaRecord(
        mid, parent, ["t1"], names, recs, {"main": [0, 1]}, ["main"], [0] * len(names), 0, 0, T0
    )


def txs(mid: str, n: int, *, n_states: int = len(STATES), t0: int = T0, step_ns: int = 1000):
    """``n`` transitions cycling through patterns: adds, removes, canceled, auto, queued,
    checks, empty and health ones, with steps and log lines now and then."""
    time = [0] * n_states
    out: list[TxRecord] = []
    for i in range(n):
        before = list(time)
        k = i % 10
        accepted = k != 3
        called = [(i % (n_states - 1)) + 1]
        if k == 7:
            called = [2]  # Healthcheck
        if accepted and k not in (5, 6, 7):
            s = called[0]
            time[s] += 1
            if k == 4 and time[3] % 2 == 0:
                time[3] += 1
        out.append(
            TxRecord(
                mid,
                i + 1,
                f"{mid}-{i}",
                0 if k % 2 else 1,
                called,
                {"n": str(i)} if k == 1 else {},
                accepted,
                k == 4 or (k == 3 and i % 20 == 3),
                k == 6,
                k == 5,
                before,
                list(time),
                i,
                i + 1,
                0,
                [StepRecord(32, "", STATES[called[0] % len(STATES)])] if k == 2 else [],
                [f"[state] +{STATES[called[0] % len(STATES)]} line {i}"] if k in (0, 2) else [],
                [],
                t0 + i * step_ns,
            )
        )
    return out
