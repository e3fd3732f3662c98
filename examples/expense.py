"""Expense workflow: an async approval input drives a chain of Auto states.

CreatingExpense -> ExpenseCreated -> WaitingForApproval -> ApprovalGranted
-> PaymentInProgress -> PaymentCompleted (based on Temporal's expense sample).

- ``WaitingForApproval`` and ``PaymentInProgress`` are Auto states: each one
  activates by itself once its requirement is met, and stays off while the
  state that removes it is active.
- The API calls are ``async def ..._state`` handlers: tasks scoped to their
  state, cancelled when it ends.
- Approvals arrive from an outside task over a memory stream; the negotiation
  handler ``approval_granted_enter`` rejects an approval for another expense.

Run: python examples/expense.py
"""

from __future__ import annotations

import anyio
import trio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

import asyncmachine_trio as am

DELAY = 0.01  # fake network latency, in seconds


class ExpenseStates(am.States):
    CreatingExpense = am.State(remove=("ExpenseCreated",))
    ExpenseCreated = am.State(remove=("CreatingExpense",))
    WaitingForApproval = am.State(
        auto=True, require=("ExpenseCreated",), remove=("ApprovalGranted",)
    )
    ApprovalGranted = am.State(require=("ExpenseCreated",), remove=("WaitingForApproval",))
    PaymentInProgress = am.State(
        auto=True, require=("ApprovalGranted",), remove=("PaymentCompleted",)
    )
    PaymentCompleted = am.State(remove=("PaymentInProgress",))


S = ExpenseStates


class ExpenseHandlers:
    def __init__(self, approvals: ObjectReceiveStream[str]) -> None:
        self.approvals = approvals
        self.expense_id = ""

    async def creating_expense_state(self, e: am.Event) -> None:
        self.expense_id = e.args["expense_id"]
        await anyio.sleep(DELAY)  # POST /expense
        e.machine.log("expense %s created", self.expense_id)
        e.machine.add1(S.ExpenseCreated)

    async def waiting_for_approval_state(self, e: am.Event) -> None:
        # feed every approval to the machine until one is accepted, which
        # ends WaitingForApproval and cancels this task
        async for approved_id in self.approvals:
            e.machine.add1(S.ApprovalGranted, {"approved_id": approved_id})

    def approval_granted_enter(self, e: am.Event) -> bool:
        ok: bool = e.args.get("approved_id") == self.expense_id
        if not ok:
            e.machine.log("approval for %s rejected", e.args.get("approved_id"))
        return ok

    async def payment_in_progress_state(self, e: am.Event) -> None:
        await anyio.sleep(DELAY)  # POST /payment
        e.machine.log("expense %s paid", self.expense_id)
        e.machine.add1(S.PaymentCompleted)


async def approver(expense_id: str, approvals: ObjectSendStream[str]) -> None:
    """A mock of the person approving: first a wrong expense, then ours."""
    async with approvals:
        for approved_id in ("fake", expense_id):
            await anyio.sleep(DELAY)
            await approvals.send(approved_id)


async def main() -> list[str]:
    """Run one expense to PaymentCompleted; return the log lines."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line)

    send, receive = anyio.create_memory_object_stream[str](10)
    async with receive, anyio.create_task_group() as tg:
        tg.start_soon(approver, "123", send)
        async with am.open_machine(
            S,
            id="expense",
            handlers=ExpenseHandlers(receive),
            log_level=am.LogLevel.CHANGES,
            logger=lambda _level, line: say(line),
            dont_log_id=True,
        ) as mach:
            mach.add1(S.CreatingExpense, {"expense_id": "123"})
            with anyio.fail_after(1):
                await mach.when1(S.PaymentCompleted)
            say(f"done: {mach}")
    return lines


if __name__ == "__main__":
    trio.run(main)
