"""The examples in ``examples/``: each ``main()`` run in-process and its log checked.

Every example uses anyio only, so each runs on trio (with a ``MockClock`` that
skips its fake latencies) and on asyncio (real, millisecond sleeps).
"""

from __future__ import annotations

import runpy
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from trio.testing import MockClock

import asyncmachine_trio as am
from asyncmachine_trio import testing as amt
from tests.examples_util import load_example

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = ["expense", "file_processing", "dag_dependency_graph", "subscriptions"]


load = load_example


@pytest.fixture(params=["trio", "asyncio"])
def backend(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


def run(name: str, backend: str) -> list[str]:
    """Run the example's ``main()`` on ``backend`` and return what it returned."""
    main = cast(Callable[[], Awaitable[list[str]]], load(name).main)
    options: dict[str, Any] = {}
    if backend == "trio":
        options["clock"] = MockClock(autojump_threshold=0)
    return anyio.run(main, backend=backend, backend_options=options)


def in_order(lines: Sequence[str], expected: Sequence[str]) -> None:
    """Lines starting with each of ``expected`` occur in this order (others may come between)."""
    pos = 0
    for want in expected:
        found = [i for i in range(pos, len(lines)) if lines[i].startswith(want)]
        assert found, f"{want!r} missing after line {pos} in:\n" + "\n".join(lines)
        pos = found[0] + 1


def test_expense(backend: str) -> None:
    assert run("expense", backend) == [
        "[state] +CreatingExpense",
        "[exter] expense 123 created",
        "[state] +ExpenseCreated -CreatingExpense",
        "[auto_] +WaitingForApproval",
        "[exter] approval for fake rejected",
        "[state] +ApprovalGranted -WaitingForApproval",
        "[auto_] +PaymentInProgress",
        "[exter] expense 123 paid",
        "[state] +PaymentCompleted -PaymentInProgress",
        "done: (ExpenseCreated:1 ApprovalGranted:1 PaymentCompleted:1)",
    ]


def test_file_processing(backend: str) -> None:
    assert run("file_processing", backend) == [
        "[state] +DownloadingFile",
        "[exter] downloaded /tmp/foo.txt",
        "[state] +FileDownloaded -DownloadingFile",
        "[auto_] +ProcessingFile",
        "[exter] processed into /tmp/foo.txt.processed",
        "[state] +FileProcessed -ProcessingFile",
        "[exter] cleanup /tmp/foo.txt",
        "[auto_] +UploadingFile",
        "[exter] uploaded /tmp/foo.txt.processed",
        "[state] +FileUploaded -UploadingFile",
        "[exter] cleanup /tmp/foo.txt.processed",
        "done: (FileDownloaded:1 FileProcessed:1 FileUploaded:1)",
        "uploaded foo.txt.processed: DUMMY CONTENT FOR FOO.TXT",
    ]


def test_file_processing_cancels_a_step(backend: str) -> None:
    """Removing DownloadingFile mid-download cancels its task: nothing follows."""
    ex = load("file_processing")

    async def main() -> None:
        handlers = ex.FileHandlers()
        async with am.open_machine(ex.FileStates, handlers=handlers) as mach:
            mach.add1("DownloadingFile", {"filename": "foo.txt"})
            await anyio.sleep(ex.DELAY / 2)
            mach.remove1("DownloadingFile")
            await anyio.sleep(ex.DELAY * 2)
            amt.assert_not(mach, ["DownloadingFile", "FileDownloaded", "ProcessingFile"])
            amt.assert_clock(mach, {"DownloadingFile": 2, "FileDownloaded": 0})
            amt.assert_no_err_ever(mach)
        assert handlers.tmp == {}

    options = {"clock": MockClock(autojump_threshold=0)} if backend == "trio" else {}
    anyio.run(main, backend=backend, backend_options=options)


def test_dag_dependency_graph(backend: str) -> None:
    lines = run("dag_dependency_graph", backend)
    split = lines.index("sync done: (A:1 B:1 C:1 D:1 Start:1)")
    sync, async_ = lines[: split + 1], lines[split + 1 :]

    # sync: one auto transition, dependencies first
    assert sync == [
        "[sync] [state] +Start",
        "[sync] [auto_] +D +B +C +A",
        "D ok",
        "B ok",
        "C ok",
        "A ok",
        "sync done: (A:1 B:1 C:1 D:1 Start:1)",
    ]

    # async: the leaves start together, then each node once its dependencies are done
    assert async_[:2] == ["[async] [state] +Start", "[async] [auto_] +CInit +DInit"]
    for node in "ABCD":
        assert async_.count(f"{node} ok") == 1
    in_order(async_, ["D ok", "[async] [auto_] +BInit", "B ok", "[async] [auto_] +AInit", "A ok"])
    in_order(async_, ["C ok", "[async] [auto_] +AInit"])
    assert async_[-1] == ("async done: (AInit:1 A:1 BInit:1 B:1 CInit:1 C:1 DInit:1 D:1 Start:1)")


def test_subscriptions(backend: str) -> None:
    lines = run("subscriptions", backend)
    messages = [line for line in lines if line[0].isdigit()]
    assert sorted(messages) == [
        "1 - Foo activated",
        "2 - Bar deactivated",
        "3 - Bar activated with id=123",
        "4 - Foo tick >= 1 and Bar tick >= 3",
        "5 - Foo ticked 2 times since subscribing",
        "6 - Error",
    ]
    # every waiter reports after the transition (and the [...:match] line) that resolved it
    steps = [
        ("[state] +Foo", "[when:match] Foo", "1 - "),
        ("[state] -Bar", "[whenNot:match] Bar", "2 - "),
        ("[state] -Foo", "[whenTime:match] Foo", "5 - "),
        ("[state] +Bar (id=123)", "[whenArgs:match] Bar", "3 - "),
        ("[state] +Bar (id=123)", "[whenTime:match] Foo", "4 - "),
        ("[state] +Exception", "[when:match] Exception", "6 - "),
    ]
    for change, match, report in steps:
        in_order(lines, [change, match, report])
    # the next mutation waits for the reports of the previous one
    in_order(lines, ["1 - Foo activated", "[state] -Bar", "2 - Bar deactivated", "[state] -Foo"])
    assert lines[-1] == "done: (Bar:3 Exception:1) [Foo:2]"


@pytest.mark.parametrize("name", NAMES)
def test_runs_as_a_script(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``python examples/<name>.py`` on trio prints the lines ``main()`` returns."""
    runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    printed = capsys.readouterr().out.splitlines()
    module = load(name)
    assert module.__doc__ and "Run: python examples/" in module.__doc__
    assert printed[-1].startswith(("done:", "async done:", "uploaded "))
