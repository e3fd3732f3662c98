"""A server (or mux) in its own process, for tests that measure or kill it.

    python tests/rpc_server_proc.py --kind mux --scheme ws [--nofile 64] ...

Prints ``ADDR <url>`` once listening and serves until killed. With
``--slow S`` the source's handler of ``M`` (Multi) sleeps ``S`` seconds in a
thread-free busy wait, and every applied mutation is appended to ``--log``
(one line per ``M`` run: its args' ``n``), so a test can count what a killed
process really applied.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import asyncmachine_trio as am
from asyncmachine_trio import rpc


class Src(rpc.StateSourceStates):
    A = am.State()
    B = am.State()
    M = am.State(multi=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--kind", default="server", choices=["server", "mux"])
    p.add_argument("--scheme", default="ws")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--nofile", type=int, default=0)
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--handshake-timeout", type=float, default=5.0)
    p.add_argument("--slow", type=float, default=0.0)
    p.add_argument("--log", default="")
    a = p.parse_args()
    if a.nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (a.nofile, a.nofile))
    # no handler_timeout: the slow handler busy-waits on purpose, and a loaded machine
    # that deschedules this process must not turn that into a timed-out transition
    # (what the tests check is the delivery contract across kills, not timeouts)
    src = am.Machine(Src, id="src", handler_timeout=None)
    log = open(a.log, "a", buffering=1) if a.log else None  # noqa: SIM115

    class Handlers:
        def m_state(self, e: am.Event) -> None:
            # logged first: a kill during the slow part leaves an applied
            # mutation whose response was never sent
            if log is not None:
                log.write(f"{e.args.get('n')}\n")
            if a.slow:
                end = time.monotonic() + a.slow
                while time.monotonic() < end:
                    pass

    src.bind_handlers(Handlers())
    kw = {"connect_timeout": a.connect_timeout}

    async def run() -> None:
        addr = f"{a.scheme}://127.0.0.1:{a.port}"
        if a.kind == "server":
            cm = rpc.open_server(src, addr, handshake_timeout=a.handshake_timeout, **kw)
        else:
            cm = rpc.open_mux(src, addr, handshake_timeout=a.handshake_timeout, **kw)
        async with cm as srv:
            print(f"ADDR {srv.addr}", flush=True)
            await trio.sleep_forever()

    trio.run(run)


if __name__ == "__main__":
    main()
