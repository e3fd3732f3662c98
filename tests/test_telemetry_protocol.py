"""Telemetry protocol v2: records, codec, framing, the receiver's handshake and errors."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import anyio
import msgpack
import pytest
from hypothesis import given, settings
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
    assert list(p.Decoder().feed_iter(data)) == frames
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


# ----- the wire form (what the receiver decodes), new fields, old frames, hostile input


def test_levels_and_queue_tick_recorded() -> None:
    """Log levels per line and the mutation's queue tick travel in the record."""
    _, recs = records()
    for r in recs:
        assert len(r.log_levels) == len(r.log_entries)
        assert len(r.pre_log_levels) == len(r.pre_log_entries)
    first = recs[0]
    levels = dict(zip(first.log_entries, first.log_levels, strict=True))
    state_line = next(x for x in first.log_entries if x.startswith("[state]"))
    assert levels[state_line] == am.LogLevel.CHANGES
    assert all(1 <= lv <= am.LogLevel.OPS for lv in first.log_levels)
    assert first.mut_queue_tick > 0  # a queued (not prepended) mutation
    (batch,) = p.Decoder().feed(p.encode_txs(recs))
    assert isinstance(batch, p.TxBatch) and batch.txs == recs


def test_wire_txs_decoding() -> None:
    """``wire_txs`` frames hold normalized tuples equal to the records' wire arrays."""
    _, recs = records()
    (frame,) = p.Decoder(wire_txs=True).feed(p.encode_txs(recs))
    assert isinstance(frame, p.WireTxs)
    for t, r in zip(frame.txs, recs, strict=True):
        assert type(t) is tuple and len(t) == len(p.TX_FIELDS)
        assert p.tx_from_wire(t) == r
    # the same frame encodes back to the same bytes
    assert p.encode_frame(frame) == p.encode_txs(recs)


def test_old_frames_accepted() -> None:
    """A v2 client from before levels (22 fields per record) still decodes, levels unknown."""
    _, recs = records()
    old = [p.tx_to_wire(r)[:22] for r in recs]
    for wire_txs in (False, True):
        (frame,) = p.Decoder(wire_txs=wire_txs).feed(_frame(["txs", [old]]))
        txs = [p.tx_from_wire(t) for t in frame.txs] if wire_txs else frame.txs  # type: ignore[union-attr]
        for got, want in zip(txs, recs, strict=True):
            assert got.log_levels == b"" and got.pre_log_levels == b"" and got.mut_queue_tick == 0
            assert got.log_entries == want.log_entries and got.time_after == want.time_after


def _good() -> list[Any]:
    return p.tx_to_wire(
        TxRecord("m", 1, "t", 0, [0], {"a": "b"}, time_before=[0, 1], time_after=[1, 1])
    )


def _with(i: int, v: Any) -> list[Any]:
    raw = _good()
    raw[i] = v
    return raw


_F = {name: i for i, name in enumerate(p.TX_FIELDS)}


@pytest.mark.parametrize(
    ("record", "match"),
    [
        (_with(_F["time_after"], [1, -1]), "TxRecord.time_after"),
        (_with(_F["time_before"], [0.5]), "TxRecord.time_before"),
        (_with(_F["time_before"], [True]), "TxRecord.time_before"),
        (_with(_F["called"], {"a": 1}), "TxRecord.called"),
        (_with(_F["seq"], True), "TxRecord.seq"),
        (_with(_F["accepted"], 1), "TxRecord.accepted"),
        (_with(_F["args"], {"a": 1}), "TxRecord.args"),
        (_with(_F["args"], [["a", "b"]]), "TxRecord.args"),
        (_with(_F["log_entries"], ["ok", b"bytes"]), "TxRecord.log_entries"),
        (_with(_F["log_levels"], "3"), "TxRecord.log_levels"),
        (_with(_F["mut_queue_tick"], "1"), "TxRecord.mut_queue_tick"),
        (_with(_F["time_ns"], -5), "TxRecord.time_ns"),
        (_with(_F["steps"], [[1, 2]]), "TxRecord.steps"),
        (_with(_F["steps"], [[]]), "TxRecord.steps"),
        (_with(_F["steps"], [7]), "TxRecord.steps"),
        (_with(_F["source_machine"], None), "TxRecord.source_machine"),
        (42, "expected an array"),
        ("m" * 30, "expected an array"),
    ],
)
def test_hostile_records(record: Any, match: str) -> None:
    """Every bad field is a ProtocolError naming it, on both decoding paths."""
    body = _frame(["txs", [[_good(), record]]])
    for wire_txs in (False, True):
        with pytest.raises(ProtocolError, match=match):
            p.Decoder(wire_txs=wire_txs).feed(body)
    with pytest.raises(ProtocolError, match="TxBatch"):
        p.Decoder(wire_txs=True).feed(_frame(["txs", [7]]))


_atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.binary(max_size=4),
)
_values = st.recursive(
    _atoms,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


@st.composite
def _mutated(draw: st.DrawFn) -> list[Any]:
    raw = _good()
    for _ in range(draw(st.integers(0, 3))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(_values)
    return raw[: draw(st.integers(3, len(raw) + 2))]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_mutated(), _values), max_size=4))
def test_fuzzed_batches_never_crash(batch: list[Any]) -> None:
    """Any msgpack value as a batch: a typed error, or records the store can take."""
    from asyncmachine_trio.telemetry.receiver import Connection
    from asyncmachine_trio.tools.dbg.store import Store

    body = _frame(["txs", [batch]])
    try:
        (frame,) = p.Decoder(wire_txs=True).feed(body)
    except ProtocolError:
        return
    assert isinstance(frame, p.WireTxs)
    store = Store()
    conn = Connection(1, "fuzz")
    for mid in {t[0] for t in frame.txs}:
        store.on_schema(conn, SchemaRecord(mid, state_names=["A", "B"]))
    store.add_wire_txs(frame.txs)
    for md in store.machines.values():
        assert [r.seq for r in md.records()] == [t[1] for t in frame.txs if t[0] == md.id]


@pytest.mark.anyio
async def test_receiver_client_cap(anyio_backend: Any) -> None:
    """Past ``max_clients`` a client gets a typed refusal, is counted, others go on."""
    from asyncmachine_trio.tools.dbg.store import Store

    store = Store(max_clients=2)
    rec = Receiver(store)
    assert rec.max_clients == 2  # the handler's cap
    assert Receiver(Collector(), max_clients=3).max_clients == 3
    assert Receiver(Collector()).max_clients is None
    mach, recs = records()
    async with anyio.create_task_group() as tg:
        port = await tg.start(rec.serve, "127.0.0.1", 0)
        a, _ = await _client(port)
        b, _ = await _client(port)
        c = await anyio.connect_tcp("127.0.0.1", port)
        await c.send(p.PREAMBLE + p.encode_frame(p.Hello(agent="third")))
        msg = await _read_error(c, p.Decoder())
        assert "too many clients" in msg and "2 at most" in msg
        await c.aclose()
        assert rec.refused == 1 and store.refused == 1 and store.summary()["refused"] == 1
        # the served ones are unaffected
        await a.send(p.encode_frame(schema_record(mach)) + p.encode_txs(recs))
        await store.wait(lambda s: "proto-m" in s.machines and len(s.get("proto-m")) == 3, 5)
        # a slot frees up: the next client is welcome again
        await b.aclose()
        await store.wait(lambda s: s.clients == 1 and len(rec.connections) == 1, 5)
        d, _ = await _client(port)
        for s in (a, d):
            await s.aclose()
        tg.cancel_scope.cancel()
    assert rec.refused == 1


@pytest.mark.anyio
async def test_receiver_old_and_new_frames(anyio_backend: Any) -> None:
    """An old client (records without levels) and a current one, side by side."""
    from asyncmachine_trio.tools.dbg.store import Store

    mach, recs = records()
    store = Store()
    async with anyio.create_task_group() as tg:
        port = await tg.start(Receiver(store).serve, "127.0.0.1", 0)
        old, _ = await _client(port)
        sch = schema_record(mach)
        sch.machine_id = "old-m"
        old_recs = [[*p.tx_to_wire(r)[:22]] for r in recs]
        for r in old_recs:
            r[0] = "old-m"
        await old.send(p.encode_frame(sch) + _frame(["txs", [old_recs]]))
        new, _ = await _client(port)
        await new.send(p.encode_frame(schema_record(mach)) + p.encode_txs(recs))
        await store.wait(lambda s: len(s.machines) == 2 and s.tx_count == 6, 5)
        for s in (old, new):
            await s.aclose()
        tg.cancel_scope.cancel()
    assert list(store.get("proto-m").records()) == recs
    olds = list(store.get("old-m").records())
    assert [r.log_entries for r in olds] == [r.log_entries for r in recs]
    assert all(r.log_levels == b"" and r.mut_queue_tick == 0 for r in olds)
    # lines of unknown level pass every level filter
    md = store.get("old-m")
    first = recs[0].pre_log_entries + recs[0].log_entries
    assert [line for _, line in md.log_lines(1, max_level=1)] == first
    assert len(store.get("proto-m").log_lines(1, max_level=1)) < len(recs[0].log_entries)
