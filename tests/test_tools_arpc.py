"""arpc: one-shot commands against a server process, the REPL, -d DIR pickup."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

import asyncmachine_trio as am
from asyncmachine_trio import rpc
from asyncmachine_trio.rpc import repl as amrepl
from asyncmachine_trio.tools import arpc

ROOT = Path(__file__).resolve().parent.parent


class WorkerStates(rpc.StateSourceStates):
    Foo = am.State(remove=("Bar",))
    Bar = am.State(remove=("Foo",))
    Baz = am.State(require=("Foo",))
    Tick = am.State(multi=True)


# ----- one-shot commands against examples/repl.py in a subprocess


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """examples/repl.py opted in with AM_REPL_DIR; yields the directory."""
    d = tmp_path_factory.mktemp("repl")
    env = {**os.environ, "AM_REPL_DIR": str(d), "PYTHONPATH": str(ROOT)}
    env.pop("AM_TEST_RUNNER", None)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "repl.py"), "worker"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (d / "worker-repl.addr").exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "no address file in 30 s"
            time.sleep(0.05)
        yield d
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert not (d / "worker-repl.addr").exists()  # removed on exit


def arpc_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "asyncmachine_trio.tools.arpc", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def test_one_shot_exit_codes(server_dir: Path) -> None:
    d = str(server_dir)
    addr = (server_dir / "worker-repl.addr").read_text().strip()
    assert addr.startswith("ws://127.0.0.1:")
    # independent commands (any order gives the same codes), run side by side
    procs = [
        arpc_cli(addr, "--", "add", ".", "Foo", "--arg", "who", "--val", "test"),
        # Baz needs Foo, Bar removes it
        arpc_cli("-d", d, "--", "add", "worker", "Baz", "Bar"),
        arpc_cli("-d", d, "--", "when", "worker", "-s", "Bar", "--timeout", "0.2"),
        arpc_cli("-d", d, "--", "add", "wroker", "Foo"),
    ]
    res = [(*p.communicate(timeout=60), p.returncode) for p in procs]
    assert (res[0][2], res[0][0].strip()) == (0, "worker: executed"), res[0][1]
    assert (res[1][2], res[1][0].strip()) == (1, "worker: canceled")
    assert res[2][2] == 3 and "timeout after 0.2 s waiting for Bar" in res[2][0]
    assert res[3][2] == 2 and "did you mean 'worker'?" in res[3][0]


def test_one_shot_without_a_server() -> None:
    code, out = finish(arpc_cli("--timeout", "0.3", "127.0.0.1:9", "--", "mach", "."))
    assert code == 2 and "not connected after 0.3 s: ws://127.0.0.1:9" in out


def test_one_shot_waits_for_a_program_just_started(tmp_path: Path) -> None:
    """``AM_REPL_DIR=d python app.py & arpc -d d -- ...``: the address file comes later."""
    d = tmp_path / "repl"  # does not exist yet
    proc = arpc_cli("-d", str(d), "--timeout", "30", "--", "mach", "late")
    time.sleep(0.5)
    env = {**os.environ, "AM_REPL_DIR": str(d), "PYTHONPATH": str(ROOT)}
    env.pop("AM_TEST_RUNNER", None)
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "repl.py"), "late"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        code, out = finish(proc)
    finally:
        server.terminate()
        server.wait(10)
    assert (code, out.strip()) == (0, "()")


def test_one_shot_without_an_address_file(tmp_path: Path) -> None:
    code, out = finish(
        arpc_cli("-d", str(tmp_path / "nope"), "--timeout", "0.3", "--", "mach", ".")
    )
    assert code == 2 and f"-d {tmp_path / 'nope'}: not a directory after 0.3 s" in out
    code, out = finish(arpc_cli("-d", str(tmp_path), "--timeout", "0.3", "--", "mach", "."))
    assert code == 2 and f"no address file in {tmp_path} after 0.3 s" in out
    # -W: no waiting; a long path is not wrapped into the message (rich wraps at
    # the terminal's width, 80 columns when there is none)
    far = tmp_path / ("x" * 100) / "nope"
    code, out = finish(arpc_cli("-W", "-d", str(far), "--", "mach", "."))
    assert code == 2 and f"-d {far}: not a directory\n" in out


def test_help_and_version() -> None:
    assert finish(arpc_cli("--version")) == (0, f"arpc {am.__version__}\n")
    assert arpc.parse(["--help"]) == 0
    assert arpc.parse(["--bogus"]) == arpc.EXIT_ERROR


# ----- in-process: every command, the REPL, -d DIR


async def run_commands(addr: str, *commands: list[str]) -> list[tuple[int, str]]:
    """Run commands one by one over one connection and collect (code, output)."""
    out: list[tuple[int, str]] = []
    repl = arpc.Repl()
    async with trio.open_nursery() as nursery:
        repl.bind(nursery)
        repl.connect(addr)
        await repl.wait_ready(require_all=True, within=10)
        for cmd in commands:
            buf = io.StringIO()
            repl.console = Console(file=buf, width=200, highlight=False)
            code = await arpc.run_line(repl, cmd)
            out.append((code, buf.getvalue()))
        nursery.cancel_scope.cancel()
    return out


@pytest.mark.trio
async def test_commands_in_process(tmp_path: Path) -> None:
    script = tmp_path / "cmds.txt"
    script.write_text("# a script\nadd . Foo\nwhen . -s Foo --timeout 5\ntime . --sum\n")
    async with am.open_machine(WorkerStates, id="w1") as mach:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(amrepl.mach_repl, mach)
            with trio.fail_after(30):
                res = await run_commands(
                    url,
                    ["script", str(script)],
                    ["mach", "w1"],
                    ["mach", "w1", "--all"],
                    ["time", "w1", "-s", "Foo"],
                    ["inspect", "w1"],
                    ["list", "--states-all"],
                    ["list", "--active", "Bar"],
                    ["group-add", "Tick", "--id-prefix", "w"],
                    ["group-remove", "Foo", "--id-suffix", "nope"],
                    ["when-time", "w1", "-s", "Tick", "-t", "1", "--timeout", "5"],
                    ["when-not", "w1", "-s", "Bar"],
                    ["remove", "w1", "Foo"],
                    ["add", "w1", "Nope"],
                    ["add", "w1", "Foo", "--arg", "a"],
                    ["status"],
                    ["cheatsheet"],
                    ["help", "when-time"],
                    ["frobnicate"],
                    ["exit"],
                )
            nursery.cancel_scope.cancel()
        assert mach.tick("Tick") == 1 and not mach.is1("Foo")
    codes = [c for c, _ in res]
    assert codes == [0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 2, 0, 0, 0, 2, arpc.EXIT_REPL]
    text = [t for _, t in res]
    assert text[0].splitlines() == ["w1: executed", "w1: Foo", "1"]  # add, when, time --sum
    assert "Foo" in text[1] and "Exception" in text[2]
    assert text[3].strip() == "Foo:1"
    assert "Foo" in text[4] and "remove" in text[4].lower()
    assert "w1" in text[5] and "Tick:0" in text[5]
    assert "0 machine(s)" in text[6]
    assert "w1: executed" in text[7]
    assert "no connected machine matches" in text[8]
    assert "w1 has no state 'Nope'" in text[12]
    assert "1 --arg but 0 --val" in text[13]
    assert "connected: 1/1" in text[14]
    assert "group-add STATE" in text[15] and "-t" in text[16]
    assert "No such command 'frobnicate'" in text[17]


@pytest.mark.trio
async def test_repl_with_pipe_input_and_completion(tmp_path: Path) -> None:
    async with am.open_machine(WorkerStates, id="w2") as mach:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(amrepl.mach_repl, mach)
            buf = io.StringIO()
            console = Console(file=buf, width=200, highlight=False)
            with create_pipe_input() as pipe:
                inv = arpc.Invocation(addrs=(url,), timeout=10)

                async def drive() -> None:
                    # wait for the connection, check completion, then type
                    with trio.fail_after(20):
                        while "w2" not in buf.getvalue():  # noqa: ASYNC110 - polls outside state
                            await trio.sleep(0.02)
                    pipe.send_text("add w2 Ti\t")  # Tab completes Tick (in the background)
                    with trio.fail_after(20):
                        while sessions[0].default_buffer.text != "add w2 Tick":  # noqa: ASYNC110 - polls outside state
                            await trio.sleep(0.02)
                    pipe.send_text("\n")
                    pipe.send_text("mach w2\n")
                    pipe.send_text("exit\n")

                sessions: list[Any] = []

                def session(repl: arpc.Repl) -> object:
                    hist = str(tmp_path / "hist")
                    sessions.append(arpc.make_session(repl, hist, input=pipe, output=DummyOutput()))
                    return sessions[0]

                pipe.send_text("list\n")
                nursery.start_soon(drive)
                with trio.fail_after(30):
                    code = await arpc.run(inv, console=console, session=session)
            nursery.cancel_scope.cancel()
        out = buf.getvalue()
        assert code == 0, out
        assert mach.tick("Tick") == 1, out
    assert "w2: executed" in out and "(Tick:1)" in out
    assert "add w2 Tick" in (tmp_path / "hist").read_text()


@pytest.mark.trio
async def test_completion_offers_remote_states() -> None:
    async with am.open_machine(WorkerStates, id="w3") as mach:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(amrepl.mach_repl, mach)
            repl = arpc.Repl(Console(file=io.StringIO()))
            repl.bind(nursery)
            repl.connect(url)
            await repl.wait_ready(require_all=True, within=10)
            completer = arpc._Completer(repl).prompt_toolkit()

            def complete(text: str) -> list[str]:
                doc = Document(text, len(text))
                return [c.text for c in completer.get_completions(doc, None)]

            assert "group-add" in complete("gr")
            assert complete("add ") == [".", "w3"]
            assert complete("add w3 b") == ["Bar", "Baz"]  # case-insensitive
            assert complete("when w3 -s F") == ["Foo"]
            assert "--timeout" in complete("when w3 --t")
            assert "Tick" in complete("group-add ")
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_dir_picks_up_new_addr_files(tmp_path: Path) -> None:
    repl = arpc.Repl(Console(file=io.StringIO()))
    async with am.open_machine(WorkerStates, id="w4") as mach:
        async with trio.open_nursery() as nursery:
            repl.bind(nursery)
            nursery.start_soon(repl.watch_dir, tmp_path)
            await trio.sleep(0.1)
            assert repl.conns == {}
            with trio.CancelScope() as serving:
                nursery.start_soon(amrepl.mach_repl, mach, "1", tmp_path)
                with trio.fail_after(20):
                    while not repl.machines():  # noqa: ASYNC110 - polls outside state
                        await trio.sleep(0.02)
                assert [c.id for c in repl.machines()] == ["w4"]
                assert repl.find(".").origin == str(tmp_path / "w4-repl.addr")
            # the file goes away with the server: the connection is dropped
            serving.cancel()
            (tmp_path / "w4-repl.addr").unlink(missing_ok=True)
            with trio.fail_after(20):
                while repl.conns:  # noqa: ASYNC110 - polls outside state
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_env_opt_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AM_REPL_ADDR", raising=False)
    monkeypatch.delenv("AM_REPL_DIR", raising=False)
    monkeypatch.delenv("AM_TEST_RUNNER", raising=False)
    async with am.open_machine(WorkerStates, id="w5") as mach:
        async with trio.open_nursery() as nursery:
            assert not amrepl.mach_repl_env(mach, nursery)
            monkeypatch.setenv("AM_REPL_DIR", str(tmp_path))
            monkeypatch.setenv("AM_TEST_RUNNER", "1")
            assert not amrepl.mach_repl_env(mach, nursery)
            monkeypatch.delenv("AM_TEST_RUNNER")
            monkeypatch.setenv("AM_REPL_ADDR", "1")
            assert amrepl.mach_repl_env(mach, nursery)
            path = amrepl.addr_file(tmp_path, "w5")
            with trio.fail_after(10):
                while not path.exists():  # noqa: ASYNC110 - polls outside state
                    await trio.sleep(0.02)
            assert path.read_text().startswith("ws://127.0.0.1:")
            nursery.cancel_scope.cancel()
    assert not path.exists()
    assert amrepl.normalize_addr("localhost:1") == "ws://localhost:1"
    assert amrepl.normalize_addr("tcp://h:2") == "tcp://h:2"
