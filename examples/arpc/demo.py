"""aRPC server and client in one process (one ``trio.run``): what the two
terminals of ``server.py`` and ``client.py`` show, interleaved.

The server listens on a free port of 127.0.0.1; the client connects, mutates
Foo -> Bar -> Baz on the source, reads the mirrored clock locally and receives
a payload; then both stop.

Run: python examples/arpc/demo.py
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import trio

HERE = Path(__file__).resolve().parent


def load(name: str) -> ModuleType:
    """Import ``server.py`` / ``client.py`` of this folder (scripts, not a package)."""
    mod_name = f"examples_arpc_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module


async def main() -> list[str]:
    """Run the server and the client; return the printed lines."""
    server, client = load("server"), load("client")
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line)

    async with trio.open_nursery() as nursery:
        url = await nursery.start(server.serve, 0, say)
        await client.run(url, say)
        nursery.cancel_scope.cancel()
    return lines


if __name__ == "__main__":
    trio.run(main)
