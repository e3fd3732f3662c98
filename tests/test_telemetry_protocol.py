"""Telemetry protocol v2: records, codec, framing, the receiver's handshake and errors."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import anyio
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import asyncmachine_trio as am
from asyncmachine_trio.telemetry import (
    ProtocolError,
    SchemaRecord,
    StepRecord,
    TxRecord,
    VersionError,
    schema_record,
    tx_record,
)
from asyncmachine_trio.telemetry import protocol as p
from asyncmachine_trio.telemetry.receiver import Collector, Receiver

SCHEMA = {
    "A": am.State(remove=("B",)),
    "B": am.State(remove=("A",), tags=("t",)),
    "C": am.State(multi=True, require=("A",)),
}


class LastTx(am.Tracer):
    def __init__(self) -> None:
        self.txs: list[am.Transition] = []

    def transition_end(self, transition: am.Transition) -> None:
        self.txs.append(transition)


def records() -> tuple[am.Machine, list[TxRecord]]:
    mach = am.Machine(SCHEMA, id="proto-m", log_steps=True, log_level=am.LogLevel.OPS)
    tr = LastTx()
    mach.tracer_bind(tr)
    mach.add1("A", {"name": "n1", "secret": "x"})
    mach.add(["C", "B"])  # B removes A, C requires A: canceled? (B wins, C dropped)
    mach.add1("C")
    return mach, [tx_record(tx, i + 1) for i, tx in enumerate(tr.txs)]


def test_tx_record_fields() -> None:
    mach, recs = records()
    names = list(mach.state_names)
    r = recs[0]
    assert r.machine_id == "proto-m"
    assert r.seq == 1 and len(r.id) == 16
    assert r.type == 0 and r.mutation_type is am.MutationType.ADD
    assert r.called == [names.index("A")]
    # the default args mapper logs "name" only
    assert r.args == {"name": "n1"}
    assert r.accepted
    assert r.time_before[names.index("A")] == 0
    assert r.time_after[names.index("A")] == 1
    assert r.added() == [names.index("A")] and r.removed() == []
    assert any(s.type == 32 and s.to_state == "A" for s in r.steps)  # "called" step
    # log lines without the "[proto] " prefix
    assert r.log_entries and all(not e.startswith("[proto") for e in r.log_entries)
    assert r.time_ns > 0
    # time after of record n == time before of record n+1
    for a, b in itertools.pairwise(recs):
        assert a.time_after == b.time_before
    assert recs[-1].time_after == list(mach.time())


def test_schema_record() -> None:
    mach = am.Machine(SCHEMA, id="s1", parent="p0", tags=["rpc-client", "k:v"])
    s = schema_record(mach)
    assert s.machine_id == "s1" and s.parent_id == "p0"
    assert s.tags == ["rpc-client", "k:v"]
    assert s.state_names == list(mach.state_names)
    by_name = {st.name: st for st in s.states}
    assert by_name["B"].remove == ["A"] and by_name["B"].tags == ["t"]
    assert by_name["C"].multi and by_name["C"].require == ["A"]
    assert by_name["A"].add is None
    assert s.state_index()["Exception"] == s.state_names.index("Exception")


def test_roundtrip_every_kind() -> None:
    mach, recs = records()
    frames: list[Any] = [
        p.Hello(agent="t", pid=7, host="h"),
        p.Welcome(agent="r"),
        schema_record(mach),
        p.TxBatch(recs),
        p.Dropped("proto-m", 3),
        p.Gone("proto-m", 5),
        p.ErrorFrame("bad"),
    ]
    data = b"".join(p.encode_frame(f) for f in frames)
    assert p.Decoder().feed(data) == frames
    # byte by byte: the same frames
    dec = p.Decoder()
    out: list[Any] = []
    for i in range(len(data)):
        out += dec.feed(data[i : i + 1])
    assert out == frames
    assert p.encode_txs(recs) == p.encode_frame(p.TxBatch(recs))


_names = st.text(max_size=8)
_ints = st.integers(min_value=0, max_value=2**63)


@given(
    st.builds(
        TxRecord,
        machine_id=_names,
        seq=_ints,
        id=_names,
        type=st.integers(0, 3),
        called=st.lists(st.integers(0, 100), max_size=4),
        args=st.dictionaries(_names, _names, max_size=3),
        accepted=st.booleans(),
        is_auto=st.booleans(),
        time_before=st.lists(_ints, max_size=5),
        time_after=st.lists(_ints, max_size=5),
        steps=st.lists(st.builds(StepRecord, type=st.integers(0, 127), to_state=_names)),
        log_entries=st.lists(_names, max_size=3),
        time_ns=_ints,
        source_machine=_names,
    )
)
def test_tx_roundtrip_property(rec: TxRecord) -> None:
    assert p.Decoder().feed(p.encode_txs([rec])) == [p.TxBatch([rec])]


def _frame(obj: Any) -> bytes:
    data = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(data)) + data


def test_lenient_lengths() -> None:
    # a future version appends fields: ignored; an older one sends fewer: defaults
    _, recs = records()
    raw = p._tx_out(recs[0])
    (frame,) = p.Decoder().feed(_frame(["txs", [[[*raw, "future", 1]]]]))
    assert isinstance(frame, p.TxBatch) and frame.txs[0] == recs[0]
    (frame,) = p.Decoder().feed(_frame(["txs", [[raw[:5]]]]))
    assert isinstance(frame, p.TxBatch)
    assert frame.txs[0].called == recs[0].called and frame.txs[0].time_after == []
    (frame,) = p.Decoder().feed(_frame(["schema", ["only-id"]]))
    assert frame == SchemaRecord("only-id")
    (frame,) = p.Decoder().feed(_frame(["hello", [2, "a", 1, "h", "extra"]]))
    assert frame == p.Hello(2, "a", 1, "h")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_frame(["nope", []]), "unknown frame kind 'nope'; known: hello, welcome"),
        (_frame({"a": 1}), "expected \\[kind, body\\]"),
        (_frame(["txs", [[["m", "not-an-int", "id", 0, []]]]]), "TxRecord.seq"),
        (_frame(["txs", [[["m", 1, "id", 0, ["x"]]]]]), "TxRecord.called"),
        (_frame(["txs", [[["m", 1]]]]), "expected an array of >= 5"),
        (_frame(["dropped", "x"]), "malformed dropped frame"),
        (b"\x00\x00\x00\x02\xc1\xc1", "malformed frame"),
    ],
)
def test_malformed(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        p.Decoder().feed(data)


def test_preamble_and_limits() -> None:
    dec = p.Decoder(expect_preamble=True)
    assert dec.feed(p.PREAMBLE[:3]) == []
    assert dec.feed(p.PREAMBLE[3:] + p.encode_frame(p.Hello())) == [p.Hello()]
    with pytest.raises(VersionError, match="not protocol v2"):
        p.Decoder(expect_preamble=True).feed(b"\x0c\xff\x81\x03\x01")
    with pytest.raises(VersionError, match="bad preamble"):
        p.Decoder(expect_preamble=True).feed(b"AMDBG/3\n")
    with pytest.raises(ProtocolError, match="exceeds the limit 10"):
        p.Decoder(max_frame=10).feed(struct.pack(">I", 11))
    with pytest.raises(VersionError, match="protocol 3"):
        p.check_hello(p.Hello(protocol=3))
    with pytest.raises(ProtocolError, match="expected a hello frame first, got schema"):
        p.check_hello(SchemaRecord("x"))


def test_parse_addr() -> None:
    assert p.parse_addr("1") == ("localhost", 6831)
    assert p.parse_addr("") == ("localhost", 6831)
    assert p.parse_addr("127.0.0.1:9") == ("127.0.0.1", 9)
    assert p.parse_addr("[::1]:7") == ("::1", 7)
    assert p.parse_addr("host") == ("host", 6831)
    with pytest.raises(am.telemetry.TelemetryError, match="'x' is not a number"):
        p.parse_addr("h:x")
    with pytest.raises(am.telemetry.TelemetryError, match="out of range"):
        p.parse_addr("h:70000")


# ----- the receiver over loopback TCP


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Real sockets: both loops with their real clocks."""
    return request.param


async def _client(port: int) -> tuple[anyio.abc.SocketStream, p.Decoder]:
    s = await anyio.connect_tcp("127.0.0.1", port)
    await s.send(p.PREAMBLE + p.encode_frame(p.Hello(agent="raw")))
    dec = p.Decoder()
    frames: list[Any] = []
    with anyio.fail_after(5):
        while not frames:
            frames = dec.feed(await s.receive())
    assert frames == [p.Welcome(agent="asyncmachine-trio receiver")]
    return s, dec


async def _read_error(s: anyio.abc.SocketStream, dec: p.Decoder) -> str:
    frames: list[Any] = []
    with anyio.fail_after(5):
        while not frames:
            frames = dec.feed(await s.receive())
    assert isinstance(frames[0], p.ErrorFrame)
    return frames[0].message


@pytest.mark.anyio
async def test_receiver_handshake_and_errors(anyio_backend: Any) -> None:
    mach, recs = records()
    coll = Collector()
    rec = Receiver(coll)
    async with anyio.create_task_group() as tg:
        port = await tg.start(rec.serve, "127.0.0.1", 0)
        good, _ = await _client(port)
        await good.send(p.encode_frame(schema_record(mach)) + p.encode_txs(recs))
        # a hostile client: a transition before its schema
        bad, bdec = await _client(port)
        await bad.send(p.encode_txs(recs))
        assert "before its schema" in await _read_error(bad, bdec)
        # another: garbage instead of the preamble
        raw = await anyio.connect_tcp("127.0.0.1", port)
        await raw.send(b"GET / HTTP/1.1\r\n\r\n")
        assert "not protocol v2" in await _read_error(raw, p.Decoder())
        # another: protocol 3
        v3 = await anyio.connect_tcp("127.0.0.1", port)
        await v3.send(p.PREAMBLE + p.encode_frame(p.Hello(protocol=3)))
        assert "protocol 3" in await _read_error(v3, p.Decoder())
        # the good client is still served
        await good.send(p.encode_frame(p.Dropped("proto-m", 2)))
        await coll.wait(lambda c: "proto-m" in c.machines and c.machines["proto-m"].dropped, 5)
        log = coll.machines["proto-m"]
        assert log.txs == recs and log.dropped == 2 and log.connected
        await good.send(p.encode_frame(p.Gone("proto-m")))
        await good.aclose()
        await coll.wait(lambda c: not c.machines["proto-m"].connected, 5)
        assert log.gone and coll.connects == 2 and len(coll.errors) == 1
        for s in (bad, raw, v3):
            await s.aclose()
        tg.cancel_scope.cancel()
