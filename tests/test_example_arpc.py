"""``examples/arpc``: the in-process demo, and server + client as two processes (real sockets)."""

from __future__ import annotations

import importlib.util
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import trio

ROOT = Path(__file__).resolve().parent.parent
ARPC = ROOT / "examples" / "arpc"
TIMEOUT = 30  # seconds per process; a hang fails the test instead of blocking the suite

CLIENT_LINES = [
    "[client] connected: rnm-example mirrors example",
    "[client] add Foo: executed, remote machine now (Foo:1)",
    "[client] add Bar: executed, remote machine now (Bar:1)",
    "[client] add Baz: executed, remote machine now (Baz:1)",
    "[client] read locally: Baz is active",
    "[client] requesting a payload",
    "[client] payload 'greeting': Hello aRPC",
    "[client] done",
]

SERVER_LINES = [
    "[server] listening on ws://127.0.0.1:",
    "[server] client rc-example connected",
    "[server] [state] +Foo",
    "[server] [state] +Bar -Foo",
    "[server] [state] +Baz -Bar",
    "[server] [state] +Payload",
    "[server] sending the payload 'greeting' to rc-example",
]


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("examples_arpc_demo", ARPC / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def in_order(lines: Sequence[str], expected: Sequence[str]) -> None:
    """Lines starting with each of ``expected`` occur in this order (others may come between)."""
    pos = 0
    for want in expected:
        found = [i for i in range(pos, len(lines)) if lines[i].startswith(want)]
        assert found, f"{want!r} missing after line {pos} in:\n" + "\n".join(lines)
        pos = found[0] + 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_in_one_process() -> None:
    lines: list[str] = trio.run(load_demo().main)
    client = [ln for ln in lines if ln.startswith("[client]")]
    server = [ln for ln in lines if ln.startswith("[server]")]
    in_order(client, CLIENT_LINES)
    assert len(client) == len(CLIENT_LINES)
    in_order(server, SERVER_LINES)
    # each remote mutation ran on the source before its result reached the client
    in_order(
        lines,
        [
            "[server] [state] +Foo",
            "[client] add Foo",
            "[server] [state] +Bar -Foo",
            "[client] add Bar",
            "[server] [state] +Baz -Bar",
            "[client] add Baz",
            "[server] sending the payload",
            "[client] payload 'greeting'",
        ],
    )


def test_server_and_client_processes() -> None:
    """``python examples/arpc/server.py PORT`` + ``python examples/arpc/client.py PORT``."""
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-u", str(ARPC / "server.py"), str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as server:
        run_server_and_client(server, port)


def run_server_and_client(server: subprocess.Popen[str], port: int) -> None:
    out: queue.Queue[str] = queue.Queue()
    stdout = server.stdout
    assert stdout is not None

    def read() -> None:
        for line in stdout:
            out.put(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        first = out.get(timeout=TIMEOUT)
        assert first == f"[server] listening on ws://127.0.0.1:{port}"

        client = subprocess.run(
            [sys.executable, str(ARPC / "client.py"), str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert client.returncode == 0, client.stdout + client.stderr
        assert client.stderr == ""
        lines = client.stdout.splitlines()
        in_order(lines, CLIENT_LINES)
        assert len(lines) == len(CLIENT_LINES)

        # the server stops cleanly on Ctrl+C (SIGINT) and reported what happened
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=TIMEOUT) == 0
        reader.join(timeout=TIMEOUT)
        server_lines = [first]
        while not out.empty():
            server_lines.append(out.get())
        in_order(server_lines, [*SERVER_LINES, "[server] client disconnected", "[server] SIGINT"])
        assert not any("Traceback" in ln for ln in server_lines), "\n".join(server_lines)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=TIMEOUT)


def test_client_without_a_server_exits_1() -> None:
    client = subprocess.run(
        [sys.executable, str(ARPC / "client.py"), str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert client.returncode == 1
    assert client.stderr == ""
    assert re.search(r"could not connect to ws://127\.0\.0\.1:\d+", client.stdout)
    assert "python examples/arpc/server.py" in client.stdout


def test_readme_shows_the_two_commands() -> None:
    section = (ROOT / "README.md").read_text().split("## Remote machines (aRPC)", 1)
    assert len(section) == 2, "README.md has no 'Remote machines (aRPC)' section"
    assert "python examples/arpc/server.py" in section[1]
    assert "python examples/arpc/client.py" in section[1]


def test_benchmark_grpc_scenario_budget() -> None:
    """benchmarks/rpc_bench.py's scenario, tiny: 1 call, no push, <= 115 bytes per iteration.

    Timing is never asserted (the benchmark reports it); calls and bytes are deterministic.
    """
    if str(ROOT) not in sys.path:  # benchmarks/ is not installed, only the package
        sys.path.insert(0, str(ROOT))
    from benchmarks import rpc_bench

    out = trio.run(rpc_bench._run, 60, 10, 2, 25)
    arpc = out["arpc"]
    assert arpc["errors"] == 0
    assert arpc["completions"] == 60 * 2 + 10
    assert arpc["client_calls_per_iter"] == 1.0
    assert arpc["server_calls_per_iter"] == 0.0
    assert arpc["pushes"] == 0
    assert arpc["messages_per_iter"] == 2.0
    assert arpc["wire_bytes_per_iter"] <= rpc_bench.TARGET_BYTES
    assert arpc["frame_bytes_per_iter"] < arpc["wire_bytes_per_iter"]
    assert len(out["echo"]["runs"]) == 2
