"""am-dbg store: ingest over the real receiver, many machines, filters, memory cap,
sessions (export / import, corrupt files) and mach:// addresses."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncmachine_trio as am
from asyncmachine_trio.telemetry import protocol as p
from asyncmachine_trio.telemetry import schema_record, tx_record
from asyncmachine_trio.telemetry.receiver import Connection, Receiver
from asyncmachine_trio.tools.dbg.address import Address, AddressError
from asyncmachine_trio.tools.dbg.session import SessionError, export_session, import_session
from asyncmachine_trio.tools.dbg.store import (
    F_AUTO,
    F_CANCELED,
    F_CHECK,
    F_EMPTY,
    F_ERR,
    F_HEALTH,
    F_QUEUED,
    Filters,
    Store,
)
from tests.dbg_util import STATES, T0, schema, txs


def fill(store: Store, n_mach: int, n_tx: int, parent_every: int = 5) -> None:
    conn = Connection(1, "test")
    for m in range(n_mach):
        parent = f"m{m - m % parent_every}" if m % parent_every else ""
        s = schema(f"m{m}", parent)
        conn.machines[s.machine_id] = s
        store.on_schema(conn, s)
        store.add_txs(txs(f"m{m}", n_tx, t0=T0 + m * 7))


def test_parse_added_removed_touched() -> None:
    mach = am.Machine(
        {"A": am.State(), "B": am.State(remove=("A",)), "Exception": am.State(multi=True)},
        id="real",
        log_steps=True,
    )
    recs = []

    class T(am.Tracer):
        def transition_end(self, transition: am.Transition) -> None:
            recs.append(tx_record(transition, len(recs) + 1))

    mach.tracer_bind(T())
    store = Store()
    conn = Connection(1, "t")
    store.on_schema(conn, schema_record(mach))
    mach.add1("A")
    mach.add1("B")
    mach.add1("B")  # no change
    mach.add_err(ValueError("x"))
    store.add_txs(recs)
    md = store.get("real")
    a, b, exc = md.index["A"], md.index["B"], md.index["Exception"]
    t1, t2, t3, t4 = md.txs
    assert t1.added == (a,) and t1.removed == ()
    assert t2.added == (b,) and t2.removed == (a,)
    assert set(t2.touched) >= {a, b}
    assert t3.flags & F_EMPTY and t3.added == ()
    assert t4.flags & F_ERR and exc in t4.added
    assert md.is_err_at(4) and not md.is_err_at(2)
    # records rebuilt from the compact form equal what came in
    assert list(md.records()) == recs
    with pytest.raises(KeyError, match="did you mean 'real'"):
        store.get("reel")


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_receiver_round_trip(anyio_backend: Any) -> None:
    """Frames over a real TCP connection land in the store unchanged."""
    store = Store()
    sent = txs("net", 500)
    async with anyio.create_task_group() as tg:
        port = await tg.start(Receiver(store).serve, "127.0.0.1", 0)
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(p.PREAMBLE + p.encode_frame(p.Hello(agent="t")))
            dec = p.Decoder()
            with anyio.fail_after(5):
                frames: list[Any] = []
                while not frames:
                    frames = dec.feed(await s.receive())
            assert isinstance(frames[0], p.Welcome)
            await s.send(p.encode_frame(schema("net", "root")))
            for i in range(0, 500, 100):
                await s.send(p.encode_txs(sent[i : i + 100]))
            await s.send(p.encode_frame(p.Dropped("net", 3)))
            await store.wait(
                lambda s: "net" in s.machines and len(s.get("net")) == 500 and s.get("net").dropped,
                timeout=5,
            )
        await store.wait(lambda s: not s.get("net").connected, timeout=5)
        tg.cancel_scope.cancel()
    md = store.get("net")
    assert list(md.records()) == sent
    assert md.parent_id == "root" and md.dropped == 3 and not md.connected
    assert store.connects == 1 and store.clients == 0


def test_many_machines() -> None:
    store = Store()
    fill(store, 50, 2000)
    assert len(store) == 50 and store.tx_count == 100_000
    tree = store.tree()
    assert [d for d, m in tree if m.id == "m0"] == [0]
    assert [d for d, m in tree if m.id == "m3"] == [1]
    assert store.children("m5") == ["m6", "m7", "m8", "m9"]
    # human-time lookup (time travel): each machine at the time of another's transition
    m1 = store.get("m1")
    t = m1.txs[999].time_ns
    for m in ("m0", "m2", "m49"):
        md = store.get(m)
        pos = md.pos_at_ns(t)
        assert md.txs[pos - 1].time_ns <= t
        assert pos == len(md.txs) or md.txs[pos].time_ns > t
    assert store.summary()["transitions"] == 100_000


def test_filters() -> None:
    store = Store()
    fill(store, 1, 1000)
    md = store.get("m0")
    flags = [t.flags for t in md.txs]
    for name, bit in (
        ("canceled", F_CANCELED),
        ("queued", F_QUEUED),
        ("auto", F_AUTO),
        ("empty", F_EMPTY),
        ("health", F_HEALTH),
        ("checks", F_CHECK),
    ):
        f = Filters(**{name: True})
        view = md.view(f)
        expect = [i + 1 for i, fl in enumerate(flags) if not fl & bit]
        assert list(view) == expect, name
        assert 0 < len(view) < 1000, name
    ac = md.view(Filters(auto_canceled=True))
    assert all(not (md.txs[i - 1].flags & F_AUTO and md.txs[i - 1].flags & F_CANCELED) for i in ac)
    assert len(ac) < 1000 and len(ac) > len(md.view(Filters(auto=True)))
    # incremental: a cached view grows with new transitions
    f = Filters(canceled=True)
    before = len(md.view(f))
    store.add_txs(txs("m0", 20)[:10])  # seq restarts: counted as no gap
    assert len(md.view(f)) == before + 9
    # disconnected machines hidden from the tree
    store.get("m0").connected = False
    assert store.tree(Filters(disconnected=True)) == []


def test_memory_cap() -> None:
    store = Store(max_mem=2_000_000, min_keep=300)
    fill(store, 10, 2000)
    assert store.mem <= 2_000_000
    assert store.gc_runs > 0 and store.gc_dropped > 0
    for md in store.machines.values():
        assert len(md.txs) >= 300
        assert md.offset + len(md.txs) == 2000
        assert md.mem == md.schema_mem + sum(md.sizes)  # the schema counts too
        # the kept transitions are the newest, with intact clocks
        assert md.txs[-1].seq == 2000
        assert list(md.before_of(1)) == md.record(1).time_before
    assert store.mem == sum(m.mem for m in store.machines.values())
    # when halving is not enough, disconnected machines go, oldest first
    small = Store(max_mem=10**9, min_keep=300)
    fill(small, 4, 300)
    for md in small.machines.values():
        md.connected = False
    small.get("m2").last_ns = 0
    small.max_mem = small.mem - 1
    small.gc()
    assert small.gc_removed == ["m2"] and "m2" not in small.machines


def test_clean_on_connect() -> None:
    store = Store(clean_on_connect=True)
    fill(store, 2, 10)
    for md in store.machines.values():
        md.connected = False
    store.on_schema(Connection(9, "x"), schema("fresh"))
    assert list(store.machines) == ["fresh"]


def test_export_import_identical(tmp_path: Path) -> None:
    store = Store()
    fill(store, 50, 200)
    store.get("m3").gone = True
    store.get("m4").dropped_reported = 7
    seen: list[tuple[int, int]] = []
    n = export_session(store, tmp_path / "s.amdbg.gz", progress=lambda d, t: seen.append((d, t)))
    assert n == 10_000 and seen[-1] == (10_000, 10_000)
    back = import_session(tmp_path / "s.amdbg.gz", progress=lambda d, t: seen.append((d, t)))
    assert list(back.machines) == list(store.machines)
    for mid, md in store.machines.items():
        other = back.get(mid)
        assert other.schema == md.schema
        assert list(other.records()) == list(md.records())
        assert other.dropped == md.dropped and other.gone == md.gone
        assert not other.connected
    # an import of the import is byte-for-byte the same export
    export_session(back, tmp_path / "s2.amdbg.gz")
    a = gzip.decompress((tmp_path / "s.amdbg.gz").read_bytes())
    b = gzip.decompress((tmp_path / "s2.amdbg.gz").read_bytes())
    assert a == b


def test_corrupt_files(tmp_path: Path) -> None:
    store = Store()
    fill(store, 3, 300)
    good = tmp_path / "good.amdbg.gz"
    export_session(store, good)
    data = good.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "garbage": b"not a session at all" * 10,
        "flipped": data[:40] + bytes([data[40] ^ 0xFF]) + data[41:],
        "foreign": gzip.compress(b"SOMETHING-ELSE/1\n" + b"x" * 100),
        "partial-frame": gzip.compress(gzip.decompress(data)[:-7]),
        "bad-frame": gzip.compress(b"AMDBG-SESSION/1\n" + b"\x00\x00\x00\x03\x93\x01\x02"),
    }
    for name, blob in cases.items():
        f = tmp_path / f"{name}.amdbg.gz"
        f.write_bytes(blob)
        with pytest.raises(SessionError, match=str(f.name)):
            import_session(f)
    with pytest.raises(SessionError, match="No such file"):
        import_session(tmp_path / "missing.amdbg.gz")


def test_addresses() -> None:
    a = Address.parse("mach://m1/tx-9/3?state=Ready&t=12")
    assert (a.machine_id, a.tx, a.step, a.state, a.machine_time) == ("m1", "tx-9", 3, "Ready", 12)
    assert Address.parse(str(a)) == a
    b = Address.parse("mach://m1/%2317")
    assert b.tx_number() == 17
    c = Address.parse("mach://x?ht=2026-01-02T03:04:05Z")
    assert c.human_time_ns is not None and Address.parse(str(c)) == c
    assert Address("id with space", "#4", 2).machine_id == "id with space"
    assert Address.parse(str(Address("id with space", "#4", 2))).tx == "#4"
    for bad, msg in (
        ("http://x", "not a mach://"),
        ("mach://", "no machine id"),
        ("mach://m/a/b/c", "too many"),
        ("mach://m/a/x", "not a number"),
        ("mach://m?zzz=1", "unknown parameter 'zzz'"),
        ("mach://m?t=q", "not a number"),
        ("mach://m?ht=yesterday", "RFC 3339"),
    ):
        with pytest.raises(AddressError, match=msg):
            Address.parse(bad)


def test_states_of_synthetic_traffic() -> None:
    assert STATES[2] == "Healthcheck"


def test_same_format_as_recordings(tmp_path: Path) -> None:
    """am-dbg exports are am-relay / am-vis recordings and the other way around."""
    from asyncmachine_trio.tools.recording import read_recording, write_recording

    store = Store()
    fill(store, 3, 50)
    export_session(store, tmp_path / "a.amdbg.gz")
    col = read_recording(tmp_path / "a.amdbg.gz")
    assert {m: log.txs for m, log in col.machines.items()} == {
        m: list(md.records()) for m, md in store.machines.items()
    }
    schemas = [md.schema for md in store.machines.values()]
    recs = [r for md in store.machines.values() for r in md.records()]
    write_recording(tmp_path / "b.amdbg.gz", schemas, recs, gone=["m1"])
    back = import_session(tmp_path / "b.amdbg.gz")
    assert list(back.get("m2").records()) == list(store.get("m2").records())
    assert back.get("m1").gone and not back.get("m0").gone
    # an uncompressed stream too
    raw = gzip.decompress((tmp_path / "b.amdbg.gz").read_bytes())
    (tmp_path / "c.amdbg").write_bytes(raw)
    assert import_session(tmp_path / "c.amdbg").tx_count == 150


def test_log_reader_data(tmp_path: Path) -> None:
    """Levels, source, queue ticks, handlers, contexts, waiters and pipes of a real
    pair of piped machines, through the store, an export and an import."""
    from asyncmachine_trio.states import pipes

    recs: dict[str, list[Any]] = {"src": [], "dst": []}

    class T(am.Tracer):
        def __init__(self, mid: str) -> None:
            self.mid = mid

        def transition_end(self, transition: am.Transition) -> None:
            out = recs[self.mid]
            out.append(tx_record(transition, len(out) + 1))

    states = {"A": am.State(), "B": am.State(), "C": am.State()}
    src = am.Machine(states, id="src", log_level=am.LogLevel.OPS)
    dst = am.Machine(states, id="dst", log_level=am.LogLevel.OPS)
    src.tracer_bind(T("src"))
    dst.tracer_bind(T("dst"))
    store = Store()
    conn = Connection(1, "t")
    for m in (src, dst):
        store.on_schema(conn, schema_record(m))
    pipes.bind(src, dst, "A")
    waiter = src.when1("B")
    src.add1("A")  # 1
    src.new_state_ctx("A")
    src.add1("C")  # 2
    src.add1("B")  # 3
    src.remove1("A")  # 4
    assert waiter.is_set()
    store.add_txs(recs["src"])
    store.add_txs(recs["dst"])
    s = store.get("src")
    r1 = store.reader("src", 1)
    assert r1.handlers == ("AState",) and r1.source is None
    assert r1.subscriptions == ("when B",) and r1.contexts == ()
    assert r1.pipes_out == ("[pipe-out:add] A to dst", "[pipe-out:remove] A to dst")
    assert r1.pipes_in == ()
    assert r1.mut_queue_tick == recs["src"][0].mut_queue_tick > 0
    assert store.reader("src", 2).contexts == ("A",)
    r4 = store.reader("src", 4)
    assert r4.contexts == () and r4.subscriptions == () and r4.handlers == ("AEnd",)
    # the piped transitions name their source; the source lists them as forks
    d = store.get("dst")
    rd = store.reader("dst", 1)
    assert rd.source is not None and rd.source[:2] == ("src", s.txs[0].id)
    assert rd.pipes_in == ("[pipe-in:add] A from src", "[pipe-in:remove] A from src")
    assert r1.forks == (("dst", d.txs[0].id),)
    assert store.forks("src", s.txs[3].id) == [("dst", d.txs[1].id)]
    # levels: every line has one; a level filter keeps what is at or below it
    lines = s.log_lines(1)
    assert [x for _, x in lines] == recs["src"][0].pre_log_entries + recs["src"][0].log_entries
    assert {lv for lv, _ in lines} == {am.LogLevel.CHANGES, am.LogLevel.OPS}
    assert [x for _, x in s.log_lines(1, max_level=2)] == ["[state] +A"]
    # all of it survives an export and an import
    export_session(store, tmp_path / "r.amdbg.gz")
    back = import_session(tmp_path / "r.amdbg.gz")
    for mid in ("src", "dst"):
        assert list(back.get(mid).records()) == recs[mid]
        for pos in range(1, len(recs[mid]) + 1):
            assert back.reader(mid, pos) == store.reader(mid, pos)


def test_reader_lines_parsing() -> None:
    """Waiters of every kind open and close; pipes go with ``[pipe:gc]``."""
    store = Store()
    conn = Connection(1, "t")
    store.on_schema(conn, schema("m"))
    lines = [
        ["[whenTime:new] A,B 1 2", "[whenArgs:new] A (x,y)", "[whenQueue:new] 7"],
        ["[whenQuery:new] 1", "[whenQuery:new] 2", "[whenNot:new] C", "[when:new] A B"],
        ["[when:new] A B", "[pipe-in:add] A from p1", "[pipe-out:add] B to p2"],
        ["[whenTime:match] A B [1 2]", "[whenArgs:match] A (x,y)", "[whenQueue:match] 7"],
        ["[whenQuery:match] 0", "[whenNot:match] C", "[when:match] A B", "[pipe:gc] p1"],
        ["[whenQuery:match] 1", "[when:match] A B", "[when:match] never opened"],
    ]
    recs = txs("m", len(lines))
    for r, ls in zip(recs, lines, strict=True):
        r.log_entries = ls
    store.add_txs(recs)
    subs = [store.reader("m", i + 1).subscriptions for i in range(len(lines))]
    assert subs[0] == ("whenTime A B [1 2]", "whenArgs A (x,y)", "whenQueue 7")
    assert subs[1][3:] == ("whenQuery x2", "whenNot C", "when A B")
    assert "when A B x2" in subs[2]
    assert subs[3] == ("whenQuery x2", "whenNot C", "when A B x2")
    assert subs[4] == ("whenQuery", "when A B")
    assert subs[5] == ()
    assert store.reader("m", 3).pipes_in == ("[pipe-in:add] A from p1",)
    assert store.reader("m", 5).pipes_in == ()
    assert store.reader("m", 5).pipes_out == ("[pipe-out:add] B to p2",)


def test_store_rows_are_not_gc_tracked() -> None:
    """Stored transitions hold only atomic values: the cyclic GC stops tracking them."""
    import gc

    store = Store()
    fill(store, 1, 500)
    rows = store.get("m0")._rows
    # a tuple is untracked by the pass that finds all its items untracked; rows
    # whose nested tuples come later in the GC's list lag a pass, so collect
    # until nothing changes (a few passes), then nothing may stay tracked
    tracked = -1
    for _ in range(6):
        gc.collect()
        now = sum(gc.is_tracked(r) for r in rows)
        if now == tracked:
            break
        tracked = now
    assert tracked == 0
    # what does not change is shared between transitions, not copied
    assert len({id(r[-1]) for r in rows}) == 1
    assert len({id(r[4]) for r in rows}) <= len(STATES)
