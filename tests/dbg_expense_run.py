"""Runs examples/expense.py with a tracer writing every transition's clocks to argv[1]
(JSON); AM_DBG_ADDR in the environment sends the same transitions to am-dbg."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import trio

import asyncmachine_trio as am
from asyncmachine_trio.machine.tracing import add_machine_hook

seen: list[dict[str, object]] = []


class Rec(am.Tracer):
    def transition_end(self, transition: am.Transition) -> None:
        after = transition._after if transition._after is not None else transition._before
        seen.append(
            {
                "machine": transition.machine.id,
                "id": transition.id,
                "accepted": transition.is_accepted,
                "time": list(after),
            }
        )


def hook(mach: am.Machine, _parent: am.Machine | None) -> None:
    mach.tracer_bind(Rec())


add_machine_hook(hook)
root = Path(__file__).resolve().parent.parent
ns = runpy.run_path(str(root / "examples" / "expense.py"), run_name="expense_under_test")
trio.run(ns["main"])
Path(sys.argv[1]).write_text(json.dumps(seen))
