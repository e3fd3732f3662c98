"""am-relay rotate-dbg: rotation by count and by time, forwarding, recordings."""

from __future__ import annotations

import gzip
from pathlib import Path

import anyio
import pytest
import trio
from typer.testing import CliRunner

import asyncmachine_trio as am
from asyncmachine_trio.telemetry import ProtocolError, schema_record, tx_record
from asyncmachine_trio.telemetry.model import SchemaRecord, TxRecord
from asyncmachine_trio.telemetry.protocol import (
    PREAMBLE,
    Decoder,
    Hello,
    Welcome,
    encode_frame,
    encode_txs,
)
from asyncmachine_trio.telemetry.receiver import Collector, Receiver
from asyncmachine_trio.tools import recording, relay
from asyncmachine_trio.tools.relay_cli import app, serve

runner = CliRunner()


class PlayerStates(am.States):
    Playing = am.State(remove=("Paused",))
    Paused = am.State(remove=("Playing",))


class Recorder(am.Tracer):
    def __init__(self) -> None:
        self.txs: list[am.Transition] = []

    def transition_end(self, transition: am.Transition) -> None:
        self.txs.append(transition)


def records(n: int, mach_id: str = "player") -> tuple[SchemaRecord, list[TxRecord]]:
    """A schema record and ``n`` transition records of a real machine."""
    rec = Recorder()
    mach = am.Machine(PlayerStates, id=mach_id, tracers=[rec])
    schema = schema_record(mach)
    for i in range(n):
        mach.add1("Playing" if i % 2 == 0 else "Paused")
    return schema, [tx_record(tx, i + 1) for i, tx in enumerate(rec.txs)]


class Exporter:
    """A minimal protocol v2 client (what an app's exporter does)."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream

    @classmethod
    async def connect(cls, port: int) -> Exporter:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(PREAMBLE + encode_frame(Hello(agent="test")))
        dec = Decoder()
        frames: list[object] = []
        while not frames:
            frames = list(dec.feed(await stream.receive()))
        assert isinstance(frames[0], Welcome)
        return cls(stream)

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)


def check_file(path: Path, schema: SchemaRecord, txs: list[TxRecord]) -> None:
    col = recording.read_recording(path)
    log = col.machines[schema.machine_id]
    assert log.schema.state_names == schema.state_names
    assert [t.seq for t in log.txs] == [t.seq for t in txs]
    assert [t.time_after for t in log.txs] == [t.time_after for t in txs]


async def wait_files(rotator: relay.Rotator, n: int) -> None:
    with trio.fail_after(10):
        while len(rotator.files) < n:  # noqa: ASYNC110 - polls the rotator's list
            await trio.sleep(0.01)


@pytest.mark.trio
async def test_rotation_by_count(tmp_path: Path) -> None:
    schema, txs = records(12)
    rotator = relay.Rotator(tmp_path, "rec", interval_tx=5, interval=3600)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, rotator, "127.0.0.1", 0)
        exp = await Exporter.connect(port)
        await exp.send(encode_frame(schema))
        await exp.send(encode_txs(txs[:4]))
        await exp.send(encode_txs(txs[4:8]))  # 8 buffered >= 5: a file
        await wait_files(rotator, 1)
        await exp.send(encode_txs(txs[8:]))
        with trio.fail_after(10):
            while rotator.total_txs < 12:  # noqa: ASYNC110 - polls the handler
                await trio.sleep(0.01)
        await exp.stream.aclose()
        nursery.cancel_scope.cancel()  # the rest is written on shutdown
    assert [f.txs for f in rotator.files] == [8, 4]
    names = sorted(f.path.name for f in rotator.files)
    assert len(names) == 2 and all(n.startswith("rec-") for n in names)
    assert all(n.endswith(".amdbg.gz") for n in names)
    check_file(rotator.files[0].path, schema, txs[:8])
    check_file(rotator.files[1].path, schema, txs[8:])  # the schema again: self-contained


@pytest.mark.trio
async def test_machines_seen_counts_gone_machines(tmp_path: Path) -> None:
    """The exit line's machine count: every machine that sent a schema, gone or not."""
    from asyncmachine_trio.telemetry.protocol import Gone

    schema, txs = records(2)
    rotator = relay.Rotator(tmp_path, "rec", interval_tx=100, interval=3600)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, rotator, "127.0.0.1", 0)
        exp = await Exporter.connect(port)
        await exp.send(encode_frame(schema))
        await exp.send(encode_txs(txs))
        await exp.send(encode_frame(Gone(machine_id=schema.machine_id)))
        with trio.fail_after(10):
            while not rotator.gone:  # noqa: ASYNC110 - polls the handler
                await trio.sleep(0.01)
        await exp.stream.aclose()
        nursery.cancel_scope.cancel()  # written on shutdown: the gone machine is forgotten
    assert rotator.schemas == {}
    assert rotator.machines_seen == {"player"}


@pytest.mark.trio
async def test_rotation_by_time(tmp_path: Path) -> None:
    schema, txs = records(5)
    rotator = relay.Rotator(tmp_path, "t", interval_tx=1000, interval=0.2)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, rotator, "127.0.0.1", 0)
        exp = await Exporter.connect(port)
        await exp.send(encode_frame(schema) + encode_txs(txs[:3]))
        await wait_files(rotator, 1)
        await exp.send(encode_txs(txs[3:]))
        await wait_files(rotator, 2)
        await exp.stream.aclose()
        nursery.cancel_scope.cancel()
    assert [f.txs for f in rotator.files] == [3, 2]
    check_file(rotator.files[0].path, schema, txs[:3])
    check_file(rotator.files[1].path, schema, txs[3:])


@pytest.mark.trio
async def test_forwarding_to_a_live_debugger(tmp_path: Path) -> None:
    schema, txs = records(4)
    live = Collector()
    rotator = relay.Rotator(tmp_path, interval_tx=1000, interval=3600)
    async with trio.open_nursery() as nursery:
        dbg_port = await nursery.start(Receiver(live).serve, "127.0.0.1", 0)
        fwd = relay.Forwarder(f"127.0.0.1:{dbg_port}", rotator.current_schemas)
        rotator.forwarders = [fwd]
        port = await nursery.start(serve, rotator, "127.0.0.1", 0)
        with trio.fail_after(10):
            while not fwd.connected:  # noqa: ASYNC110 - polls the forwarder
                await trio.sleep(0.01)
        exp = await Exporter.connect(port)
        await exp.send(encode_frame(schema) + encode_txs(txs))
        await live.wait(lambda c: len(c.machines.get("player", _Empty).txs) == 4, timeout=10)
        await exp.stream.aclose()
        nursery.cancel_scope.cancel()
    assert [t.time_after for t in live.machines["player"].txs] == [t.time_after for t in txs]
    assert fwd.dropped == 0 and fwd.connects == 1
    assert [f.txs for f in rotator.files] == [4]


class _Empty:
    txs: list[TxRecord] = []


def test_recording_round_trip_and_errors(tmp_path: Path) -> None:
    schema, txs = records(3)
    path = recording.write_recording(tmp_path / "a.amdbg.gz", [schema], txs, gone=["player"])
    col = recording.read_recording(path)
    assert col.machines["player"].gone and len(col.machines["player"].txs) == 3
    # a plain v2 decoder reads the decompressed bytes
    frames = Decoder(expect_preamble=True).feed(gzip.decompress(path.read_bytes()))
    assert isinstance(frames[0], Hello) and isinstance(frames[1], SchemaRecord)
    raw = gzip.decompress(path.read_bytes())
    (tmp_path / "cut.amdbg").write_bytes(raw[:-3])
    with pytest.raises(ProtocolError, match="truncated"):
        recording.read_recording(tmp_path / "cut.amdbg")
    (tmp_path / "x.amdbg").write_bytes(b"hello world")
    with pytest.raises(ProtocolError, match=r"x\.amdbg"):
        recording.read_recording(tmp_path / "x.amdbg")
    orphan = recording.recording_bytes([], txs)
    (tmp_path / "o.amdbg").write_bytes(orphan)
    with pytest.raises(ProtocolError, match="before its schema"):
        recording.read_recording(tmp_path / "o.amdbg")


def test_recording_graph_for_am_vis(tmp_path: Path) -> None:
    from asyncmachine_trio import vis

    schema, txs = records(3)
    path = recording.write_recording(tmp_path / "a.amdbg.gz", [schema], txs)
    g = recording.recording_graph(recording.read_recording(path))
    assert g.node("player").active == {"Playing"}  # after Playing, Paused, Playing
    assert "class Playing active" in vis.mermaid(g)


def test_durations() -> None:
    assert relay.parse_duration("90") == 90
    assert relay.parse_duration("1h30m") == 5400
    assert relay.parse_duration("24h") == 86400
    assert relay.parse_duration("250ms") == 0.25
    for bad in ("", "5x", "0s", "h"):
        with pytest.raises(ValueError, match="bad duration"):
            relay.parse_duration(bad)


def test_cli_help_version_and_bad_input() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"am-relay {am.__version__}"
    res = runner.invoke(app, ["rotate-dbg", "--help"])
    assert res.exit_code == 0 and "--interval-tx" in res.output
    res = runner.invoke(app, ["rotate-dbg", "--interval-duration", "soon"])
    assert res.exit_code == 2 and "bad duration 'soon'" in res.output
    res = runner.invoke(app, ["rotate-dbg", "-l", "localhost:http"])
    assert res.exit_code == 2 and "port 'http' is not a number" in res.output
