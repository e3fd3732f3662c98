"""``examples/integrations``: NATS workers as real processes, the MCP expense demo."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "integrations"
TIMEOUT = 60  # per example; a hang fails instead of blocking the suite


def run_script(name: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, not an installed copy
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_nats_remote() -> None:
    lines = run_script("nats_remote.py")
    assert lines == [
        "add Job n=0: executed",
        "add Job n=1: executed",
        "add Job n=2: executed",
        "waited for ['Start'] on worker1",
        "clock of worker1: {'Job': 5, 'Start': 1}",
        "add Stop: executed",
        "[worker1] job 0",
        "[worker1] job 1",
        "[worker1] job 2",
        "[worker1] stopping after 3 jobs",
    ]


def test_nats_pool() -> None:
    lines = run_script("nats_pool.py")
    assert lines[0].startswith("30 jobs spread over the pool: {'w1': ")
    assert lines[1] == "total 30, every worker busy: True"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_mcp_expense() -> None:
    spec = importlib.util.spec_from_file_location(
        "examples_mcp_expense", EXAMPLES / "mcp_expense.py"
    )
    assert spec is not None and spec.loader is not None
    module: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = await module.main(demo=True)
    assert lines == [
        "tools: add, remove, create_expense, approve, states",
        "create_expense: executed: (CreatingExpense:1)",
        "approve fake: error canceled: (ExpenseCreated:1 WaitingForApproval:1)",
        "approve 123: executed: (ExpenseCreated:1 ApprovalGranted:1 PaymentInProgress:1)",
        "add PaymentCompleted: state 'PaymentCompleted' is read-only",
        "states: ['ExpenseCreated', 'ApprovalGranted', 'PaymentCompleted']",
    ]
