"""The expense workflow (examples/expense.py) driven by an AI agent over MCP.

    python examples/integrations/mcp_expense.py           # serve until Ctrl-C
    python examples/integrations/mcp_expense.py --demo    # an SDK client plays the agent

Tools the agent sees: ``create_expense(expense_id)``, ``approve(approved_id)``
(typed call signatures), ``add`` / ``remove`` for the same two states, and
``states``. The payment states are read-only: visible, never mutable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import anyio

import asyncmachine_trio as am
from asyncmachine_trio.integrations import mcp as ammcp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from expense import ExpenseHandlers, ExpenseStates

S = ExpenseStates


class AgentApprovals(ExpenseHandlers):
    """Approvals come from the agent's ``approve`` tool, not from a stream."""

    def __init__(self) -> None:
        self.expense_id = ""

    async def waiting_for_approval_state(self, e: am.Event) -> None:
        e.machine.log("waiting for an agent to approve %s", self.expense_id)


def mcp_server(mach: am.Machine) -> ammcp.MachineMcp:
    return ammcp.MachineMcp(
        mach,
        name="expense",
        description="An expense workflow: create an expense, approve it, watch it get paid.",
        states_include=[S.CreatingExpense, S.ApprovalGranted],
        states_readonly=[
            S.ExpenseCreated,
            S.WaitingForApproval,
            S.PaymentInProgress,
            S.PaymentCompleted,
        ],
        calls=[
            ammcp.CallSignature(
                [S.CreatingExpense],
                name="create_expense",
                description="Create an expense",
                args={"expense_id": ammcp.ArgSpec(str, required=True)},
            ),
            ammcp.CallSignature(
                [S.ApprovalGranted],
                name="approve",
                description="Approve the expense with this id",
                args={"approved_id": ammcp.ArgSpec(str, required=True)},
            ),
        ],
    )


async def agent(url: str, mach: am.Machine, say: list[str]) -> None:
    """What an agent does, with the official MCP SDK client."""
    from mcp import Client

    async with Client(url) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        say.append(f"tools: {', '.join(tools)}")
        res = await client.call_tool("create_expense", {"expense_id": "123"})
        say.append(f"create_expense: {res.content[0].text}")
        with anyio.fail_after(5):
            await mach.when1(S.WaitingForApproval)
        for approved_id in ("fake", "123"):
            res = await client.call_tool("approve", {"approved_id": approved_id})
            say.append(
                f"approve {approved_id}: {'error ' if res.is_error else ''}{res.content[0].text}"
            )
        res = await client.call_tool("add", {"state": S.PaymentCompleted})
        say.append(f"add PaymentCompleted: {res.content[0].text}")
        with anyio.fail_after(5):
            await mach.when1(S.PaymentCompleted)
        snap = json.loads((await client.call_tool("states", {})).content[0].text)
        say.append(f"states: {snap['active']}")


async def main(demo: bool = True, port: int = 0) -> list[str]:
    say: list[str] = []
    async with (
        am.open_machine(S, id="expense", handlers=AgentApprovals()) as mach,
        ammcp.serve(mcp_server(mach), port=port) as url,
    ):
        if demo:
            await agent(url, mach, say)
        else:
            print(f"MCP server on {url}", flush=True)
            await anyio.sleep_forever()
    for line in say:
        print(line)
    return say


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="play the agent with an SDK client")
    parser.add_argument("--port", type=int, default=8753)
    opts = parser.parse_args()
    anyio.run(main, opts.demo, opts.port, backend="trio")
