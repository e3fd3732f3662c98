"""A long fuzz session of the aRPC frame decoder (``nox -s fuzz``; not part of CI).

Runs atheris (coverage-guided; libFuzzer options after ``--``) over
:func:`asyncmachine_trio.rpc.wire.decode_frame` and the structuring of every
message class, seeded with valid frames. The property: every input decodes to
a frame or raises :class:`~asyncmachine_trio.rpc.RpcDecodeError`; anything else
(or a crash) is a finding. Usage::

    python tests/fuzz_wire.py -atheris_runs=1000000
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import atheris

with atheris.instrument_imports():
    import msgpack

    from asyncmachine_trio.rpc import wire
    from asyncmachine_trio.rpc.errors import RpcDecodeError

MESSAGES = (
    wire.CliHello,
    wire.SrvHello,
    wire.CliMutation,
    wire.SrvMutation,
    wire.Update,
    wire.UpdateMuts,
    wire.SrvSync,
    wire.SrvPayload,
    wire.Empty,
)

COUNT = [0, 0]  # inputs, inputs that decoded to a frame


def one_input(data: bytes) -> None:
    COUNT[0] += 1
    try:
        frame = wire.decode_frame(data)
    except RpcDecodeError:
        return
    COUNT[1] += 1
    for cls in MESSAGES:
        try:
            wire.structure(frame.body, cls)
        except RpcDecodeError:
            pass


def seeds(path: str) -> None:
    frames = [
        wire.Frame(1, "Hello", None, wire.CliHello("rc-x", token="t")),
        wire.Frame(2, "Handshake", None, wire.Empty()),
        wire.Frame(3, "Add", None, wire.CliMutation([0, 1], {"a": [1, {"b": b"x"}]}, 7, "tx")),
        wire.Frame(0, "ClientSetClock", None, wire.Update([0], [1], 2, 3, 4)),
        wire.Frame(4, None, wire.ErrorInfo("access", "no"), None),
        wire.Frame(5, None, None, wire.SrvSync([1, 2], 3, 4)),
    ]
    for i, f in enumerate(frames):
        with open(os.path.join(path, f"seed{i}"), "wb") as fh:
            fh.write(wire.encode_frame(f))
    with open(os.path.join(path, "seed-ext"), "wb") as fh:
        ext = msgpack.ExtType(1, msgpack.packb(["am.AException", ["E", "m", "", []]]))
        fh.write(msgpack.packb([6, "Add", None, [[0], {"e": ext}, 8, ""]]))


def main() -> None:
    corpus = tempfile.mkdtemp(prefix="am-fuzz-")
    seeds(corpus)
    argv = [sys.argv[0], *sys.argv[1:], corpus]
    if not any(a.startswith("-atheris_runs") or a.startswith("-runs") for a in argv):
        argv.insert(1, "-atheris_runs=1000000")
    started = time.monotonic()
    atheris.Setup(argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        took = time.monotonic() - started
        print(
            f"fuzz_wire: {COUNT[0]} inputs, {COUNT[1]} decoded to a frame, "
            f"{took:.0f} s, no finding",
            flush=True,
        )


if __name__ == "__main__":
    main()
