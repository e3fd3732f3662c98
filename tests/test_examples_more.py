"""The reference's examples ported to ``examples/``: each runs to completion here.

Examples that sleep run on trio with a ``MockClock`` (instant) and on asyncio
(real, short sleeps); synchronous ones need no loop.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
import trio
from trio.testing import MockClock

import asyncmachine_trio as am
from asyncmachine_trio import rpc
from asyncmachine_trio import testing as amt
from tests.examples_util import load_example

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


load = load_example


@pytest.fixture(params=["trio", "asyncio"])
def backend(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


def run_async(fn: Callable[..., Awaitable[Any]], backend: str, *args: Any) -> Any:
    """Run ``fn(*args)`` on ``backend`` (trio: a MockClock that skips sleeps)."""
    options: dict[str, Any] = {}
    if backend == "trio":
        options["clock"] = MockClock(autojump_threshold=0)
    return anyio.run(fn, *args, backend=backend, backend_options=options)


def quiet(line: str) -> None:
    """A ``say`` that prints nothing (the examples return their lines)."""


@pytest.mark.parametrize(
    "name",
    ["basic", "fsm", "nfa", "fan_out_in", "relations_playground", "asyncio_app", "mach_template"],
)
def test_docstring_says_how_to_run(name: str) -> None:
    doc = load(name).__doc__
    assert doc and f"Run: python examples/{name}.py" in doc


# ----- basic


def test_basic(backend: str) -> None:
    work = 1.0 if backend == "trio" else 0.01  # virtual seconds on trio
    lines = run_async(load("basic").main, backend, quiet, work)
    assert lines == [
        "add Bar without a result: canceled",
        "Foo: working",
        "Bar: result 42",
        "done: (Start:1 Bar:1 Done:1)",
    ]


# ----- fsm


def test_fsm_turnstile() -> None:
    assert load("fsm").main() == [
        "push    executed -> Locked",
        "coin:0  canceled -> Locked",
        "coin:1  executed -> Unlocked",
        "coin:1  executed -> Unlocked",
        "push    executed -> Locked",
        "push    executed -> Locked",
        "coin:2  executed -> Unlocked",
        "push    executed -> Locked",
        "passes: 2",
    ]


def test_fsm_rejects_unknown_input() -> None:
    fsm = load("fsm")
    with pytest.raises(ValueError, match="'kick'"):
        fsm.feed(fsm.new_turnstile(), ["kick"])


# ----- nfa


@pytest.mark.parametrize(
    ("word", "accepted"),
    [
        ("101010", True),
        ("10", True),
        ("0110", True),
        ("000010", True),
        ("1011", False),
        ("1", False),
        ("", False),
        ("100", False),
    ],
)
def test_nfa_accepts_strings_ending_in_10(word: str, accepted: bool) -> None:
    ok, trace = load("nfa").accepts(word)
    assert ok is accepted
    assert len(trace) == len(word)


def test_nfa_tracks_several_states_at_once() -> None:
    _, trace = load("nfa").accepts("101010")
    assert trace[0] == "1: Q0 Q1"  # nondeterminism: both branches active
    assert trace[1] == "0: Q0 Q2 Accepted"


def test_nfa_rejects_other_symbols() -> None:
    with pytest.raises(ValueError, match="'102'"):
        load("nfa").accepts("102")


# ----- fan_out_in


def test_fan_out_in(backend: str) -> None:
    ex = load("fan_out_in")
    work = ex.WORK if backend == "trio" else 0.02
    lines = run_async(ex.main, backend, quiet, 1, work)
    started = [ln for ln in lines if " started, running: " in ln]
    assert sorted(ln.split()[0] for ln in started) == sorted(f"Task{i}" for i in range(15))
    assert all(int(ln.rsplit(" ", 1)[1]) <= 3 for ln in started)
    assert lines[-2] == "peak concurrency: 3"
    if backend == "trio":  # virtual time: exactly 5 rounds of 3 tasks
        assert lines[-1] == "done: 15 tasks in 5 rounds of work, fanned in: True"
    else:
        assert lines[-1].startswith("done: 15 tasks in ")
        assert lines[-1].endswith("fanned in: True")


# ----- relations_playground


def test_relations_playground() -> None:
    ex = load("relations_playground")
    answers = {p.name: ex.solve(p) for p in ex.PUZZLES}
    assert answers == {
        "FooBar": [],
        "FileProcessed": ["FileProcessed"],
        "DryWaterWet": ["Dry"],
        "RemoveByAdd": ["A", "B"],
        "AddOptionalRemoveMandatory": ["A", "C"],
        "Mutex": ["C"],
        "Quiz": ["A", "B", "D", "E"],
    }
    lines = ex.main()
    assert len(lines) == 2 * len(ex.PUZZLES)


# ----- scripts


@pytest.mark.parametrize("name", ["fsm", "nfa", "relations_playground"])
def test_sync_examples_run_as_scripts(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", [name])
    runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    assert capsys.readouterr().out.strip()


# ----- mach_template


def test_mach_template(backend: str) -> None:
    ex = load("mach_template")
    config = ex.Config(name="t", rounds=4, interval=0.5 if backend == "trio" else 0.01, fail_on=2)
    lines = run_async(ex.main, backend, config, quiet)
    assert lines == [
        "t: ready",
        "request without an id: canceled",
        "t: processed request 1",
        "t: error: request 2 failed",
        "t: processed request 3",
        "t: processed request 4",
        "t: done, processed [1, 3, 4]",
        "stopped: (Done:1)",
    ]


def test_mach_template_config_from_env() -> None:
    ex = load("mach_template")
    assert ex.Config.from_env({}) == ex.Config()
    config = ex.Config.from_env({"TEMPLATE_ROUNDS": "7", "TEMPLATE_NAME": "x"})
    assert (config.rounds, config.name) == (7, "x")
    with pytest.raises(ValueError, match="TEMPLATE_"):
        ex.Config.from_env({"TEMPLATE_INTERVAL": "soon"})


# ----- asyncio_app (asyncio only: it is a plain asyncio program)


def test_asyncio_app() -> None:
    lines = anyio.run(load("asyncio_app").main, quiet, backend="asyncio")
    assert lines == [
        "uploaded ALPHA",
        "a.txt: (Downloaded:1 Processed:1 Uploaded:1)",
        "missing.txt: failed: FileNotFoundError('missing.txt')",
        "uploaded BETA",
        "b.txt: (Downloaded:1 Processed:1 Uploaded:1)",
    ]


def test_asyncio_app_imports_no_trio() -> None:
    source = (EXAMPLES / "asyncio_app.py").read_text()
    assert "import trio" not in source and "import anyio" not in source


# ----- path_watcher (real files and a real watcher: real clock on both loops)


def test_path_watcher(backend: str, tmp_path: Path) -> None:
    ex = load("path_watcher")
    S = ex.WatcherStates
    bin1, bin2 = tmp_path / "bin1", tmp_path / "bin2"
    bin1.mkdir()
    bin2.mkdir()
    (bin1 / "a").write_text("#!/bin/sh\n")
    (bin1 / "a").chmod(0o755)
    (bin1 / "data.txt").write_text("not executable")

    async def scenario() -> list[str]:
        lines: list[str] = []
        watcher = ex.Watcher([bin1, bin2, tmp_path / "missing"], lines.append, step_ms=20)
        async with am.open_machine(S, id="pw", handlers=watcher) as mach:

            async def until(cond: Callable[[], bool]) -> None:
                with anyio.fail_after(10):
                    while not cond():
                        await mach.when_next_active(S.Updated)

            mach.add1(S.Start)
            with anyio.fail_after(10):
                await mach.when1(S.Ready)
            assert watcher.all() == {"a"}

            (bin2 / "b").write_text("#!/bin/sh\n")
            (bin2 / "b").chmod(0o755)
            await until(lambda: "b" in watcher.all())
            (bin1 / "a").unlink()
            await until(lambda: "a" not in watcher.all())
            assert watcher.found == {
                str(bin1.resolve()): set(),
                str(bin2.resolve()): {"b"},
                str((tmp_path / "missing").resolve()): set(),
            }
            # negotiation: an unwatched directory is not scanned
            assert mach.add1(S.Scanning, {"dir": str(tmp_path)}) == am.Result.CANCELED
            # removing Start ends Watching, which cancels the watch loop
            mach.remove1(S.Start)
            assert mach.not_([S.Watching, S.Ready])
            amt.assert_no_err_ever(mach)
        return lines

    lines = anyio.run(scenario, backend=backend)
    assert lines[:2] == ["watching 3 directories", "ready: 1 executables"]
    assert lines[2:] == [f"+ b ({bin2.resolve()})", f"- a ({bin1.resolve()})"]


# ----- tui (Textual runs on asyncio; driven with its Pilot)


def test_tui(monkeypatch: pytest.MonkeyPatch) -> None:
    ex = load("tui")
    S = ex.DownloadStates
    # 100 steps of 20 ms: the pause below lands long before the end, even on a loaded machine
    monkeypatch.setattr(ex, "STEP", 0.02)

    async def scenario() -> None:
        app = ex.DownloadApp()
        async with app.run_test() as pilot:

            async def until(cond: Callable[[], bool]) -> None:
                with anyio.fail_after(10):
                    while not cond():
                        await pilot.pause(0.01)

            await until(lambda: app.mach is not None)
            mach = app.mach
            await pilot.press("s")
            await until(lambda: app.progress > 0)
            await pilot.press("p")
            assert mach.is1(S.Paused) and mach.not1(S.Downloading)
            paused_at = app.progress
            await pilot.pause(0.05)
            assert app.progress == paused_at  # the download task was cancelled
            await pilot.press("s")
            await until(lambda: mach.is1(S.Done))
            assert app.progress == 100
            await pilot.press("s")  # refused once Done
            assert mach.is1(S.Done) and mach.not1(S.Downloading)
            await until(lambda: "Done:1" in str(app.query_one("#states").render()))
            # ~100 progress steps and a dozen transitions, far fewer repaints
            assert 0 < app.repaints < 100
            await pilot.press("r")
            assert app.progress == 0 and mach.active_states() == []
            await pilot.press("q")
        assert mach.is_disposed

    anyio.run(scenario, backend="asyncio")


# ----- cli (flags drive a machine)


def test_cli_flags(backend: str) -> None:
    ex = load("cli")
    lines: list[str] = []
    duration = 0.5 if backend == "trio" else 0.02  # virtual seconds on trio
    final = run_async(ex.run, backend, ["Foo1", "Bar2"], duration, lines.append)
    # Bar2 removes Foo1; Start ended after the duration
    assert final == "(Bar2:1)"
    assert lines == [f"starting for Foo1, {duration}s", "start done"]


def test_cli_command() -> None:
    from click.testing import CliRunner

    ex = load("cli")
    result = CliRunner().invoke(ex.main, ["--foo-1", "-d", "0.01"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "starting for Foo1, 0.01s",
        "start done",
        "exit with (Foo1:1)",
    ]
    result = CliRunner().invoke(ex.main, [])
    assert result.exit_code == 2 and "pass --foo-1 or --bar-2" in result.output


# ----- cli_daemon (aRPC, trio only; real sockets on 127.0.0.1, real clock)


def test_cli_daemon_in_process() -> None:
    daemon, cli = load("cli_daemon/daemon"), load("cli_daemon/cli")
    lines: list[str] = []

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(daemon.serve, 0, lines.append)
            with trio.fail_after(20):
                assert await cli.run_op(url, "OpFoo1", 0.05, lines.append) == "done for OpFoo1"
                assert await cli.run_op(url, "OpBar2", 0.01, lines.append) == "done for OpBar2"
                # the daemon's negotiation refuses a duration out of range
                with pytest.raises(cli.OpRefusedError, match="OpBar2"):
                    await cli.run_op(url, "OpBar2", 1000, lines.append)
                # a CLI that leaves mid-op takes its op with it
                async with rpc.open_client(url, name="quitter") as client:
                    await client.netmach.call_add1("OpFoo1", {"duration": 30})
                    assert client.netmach.is1("OpFoo1")
                # and the next call still works
                assert await cli.run_op(url, "OpFoo1", 0.01, lines.append) == "done for OpFoo1"
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    assert lines[0].startswith("[daemon] listening on ws://127.0.0.1:")
    assert "[cli] OpFoo1: executed, daemon now (Start:1 OpFoo1:1)" in lines
    assert "[cli] opdone: done for OpBar2" in lines
    assert lines.count("[daemon] starting OpFoo1 for 30.0s") == 1
    assert lines.count("[daemon] OpFoo1 done") == 2  # not the abandoned one
    assert lines.count("[daemon] cli left") == 5


def test_cli_daemon_two_processes() -> None:
    """The CLI as a real process against the daemon on loopback."""
    daemon = load("cli_daemon/daemon")
    cli_path = EXAMPLES / "cli_daemon" / "cli.py"
    root = str(EXAMPLES.parent)

    async def scenario() -> subprocess.CompletedProcess[bytes]:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(daemon.serve, 0, quiet)
            with trio.fail_after(60):
                done = await trio.run_process(
                    [sys.executable, str(cli_path), "--bar-2", "-d", "0.01", "--addr", url],
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    env={**os.environ, "PYTHONPATH": root},
                )
            nursery.cancel_scope.cancel()
        return done

    done = trio.run(scenario)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode().splitlines()
    assert out[-1] == "[cli] opdone: done for OpBar2"


# ----- tree_state_source (aRPC muxes + hypercorn on 127.0.0.1; trio only, real clock)


def test_tree_state_source_main() -> None:
    ex = load("tree_state_source")
    lines = trio.run(ex.main, 3, 0.02, quiet, 7)
    assert len(lines) == 7 + 3
    assert lines[0].startswith("root: http://127.0.0.1:")
    assert sum(ln.startswith("l2-") for ln in lines) == 4
    changes = lines[7:]
    assert all(ln.endswith("7 nodes agree: True") for ln in changes), changes


def test_tree_state_source_replicas() -> None:
    import httpx

    ex = load("tree_state_source")

    async def scenario() -> None:
        async with ex.open_tree(l1=1, l2=2, push_interval=0) as tree, httpx.AsyncClient() as http:
            root = tree.root.mach
            assert len(root.state_names) == ex.FLIGHTS * 7 + 2  # + ErrOnClient, Exception
            root.add(["Flight1Delayed", "Flight1GateA"])
            root.add1("Flight1Boarding")  # removes Flight1Delayed
            with trio.fail_after(10):
                for node in tree.nodes:
                    await node.mach.when1("Flight1Boarding")
            for node in tree.nodes:
                assert node.mach.clock() == root.clock(), node.name
                got = (await http.get(node.http)).json()
                assert got["active"] == ["Flight1Boarding", "Flight1GateA"], node.name
            # a mutation at a leaf travels up to the root, and down to the other leaf
            leaf, other = tree.l2
            # (the L1 replica forwards it through its outbox: QUEUED)
            assert await leaf.mach.call_add1("Flight3GateC") is am.Result.QUEUED
            with trio.fail_after(10):
                await root.when1("Flight3GateC")
                await other.mach.when1("Flight3GateC")
            missing = await http.get(tree.root.http + "/nope")
            assert missing.status_code == 404 and "nope" in missing.json()["error"]

    trio.run(scenario)
