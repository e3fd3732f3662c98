"""Pubsub wire messages and mirrors, without a network (no libp2p needed)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import asyncmachine_trio as am
from asyncmachine_trio.pubsub import (
    ByeMsg,
    GossipMsg,
    InfoMsg,
    Limits,
    MachInfo,
    Mirror,
    PubsubDecodeError,
    PubsubReadOnlyError,
    ReqInfoMsg,
    ReqUpdatesMsg,
    SchemaCache,
    TopicStates,
    UpdatesMsg,
    decode,
    encode,
    wire,
)


class Worker(am.States):
    Foo = am.State(remove=("Bar",))
    Bar = am.State(remove=("Foo",))
    Baz = am.State(require=("Foo",), multi=False, tags=("x",))


def info_of(m: am.Machine) -> MachInfo:
    return MachInfo(
        id=m.id,
        schema=m.schema,
        states=list(m.state_names),
        time=list(m.time()),
        tags=list(m.tags),
        parent=m.parent_id,
    )


def test_every_message_round_trips() -> None:
    m = am.Machine(Worker, id="w1", tags=["t1"], parent="root")
    m.add1("Foo")
    msgs = [
        InfoMsg({"peerA": {0: info_of(m)}}, {"peerA": {0: 1}, "peerB": {0: 3, 1: 4}}),
        UpdatesMsg({"peerA": {0: [1, 2, 3, 0]}}),
        GossipMsg({"peerA": {0: 7}}),
        ReqInfoMsg(["peerA", "peerB"]),
        ReqUpdatesMsg(["peerB"]),
        ByeMsg({0: [1, 0, 0, 0]}),
    ]
    for msg in msgs:
        assert decode(encode(msg)) == msg
    info = decode(encode(msgs[0]))
    assert isinstance(info, InfoMsg)
    assert info.peers["peerA"][0].schema == m.schema
    assert info.peers["peerA"][0].sum == sum(m.time())


ONE_STATE = {"id": "m", "schema": {"A": {}}, "states": ["A"], "time": [0]}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xc1garbage", "not msgpack"),
        (msgpack.packb([1, 2, 3]), "must be a map"),
        (msgpack.packb({"type": "nope"}), "unknown message type"),
        (msgpack.packb({"type": "reqinfo", "peers": "abc"}), "must be a list"),
        (msgpack.packb({"type": "reqinfo", "peers": [1]}), "must be a string"),
        (msgpack.packb({"type": "updates", "clocks": {"p": {0: [-1]}}}), "non-negative"),
        (msgpack.packb({"type": "updates", "clocks": {"p": {"0": [1]}}}), "non-negative"),
        (msgpack.packb({"type": "gossip", "gossips": {"p": {0: 1.5}}}), "non-negative"),
        (msgpack.packb({"type": "bye", "clocks": {999: [1]}}), "machine index 999"),
        (
            msgpack.packb(
                {
                    "type": "info",
                    "peers": {"p": {0: {"id": "m", "schema": {"A": {}}, "states": ["B"]}}},
                }
            ),
            "do not match its schema",
        ),
        (
            msgpack.packb(
                {
                    "type": "info",
                    "peers": {
                        "p": {
                            0: {"id": "m", "schema": {"A": {"x": 1}}, "states": ["A"], "time": [0]}
                        }
                    },
                }
            ),
            "unknown fields",
        ),
        (
            msgpack.packb(
                {
                    "type": "info",
                    "peers": {
                        "p": {0: {"id": "m", "schema": {"A": {}}, "states": ["A"], "time": []}}
                    },
                }
            ),
            "0 ticks for 1 states",
        ),
    ],
)
def test_malformed_messages_raise_a_typed_error_naming_the_peer(data: bytes, why: str) -> None:
    with pytest.raises(PubsubDecodeError, match=why) as info:
        decode(data, peer="QmBad")
    assert info.value.peer == "QmBad"
    assert "QmBad" in str(info.value)


def test_size_limits() -> None:
    big = encode(ReqInfoMsg(["p" * 200] * 50))
    with pytest.raises(PubsubDecodeError, match="limit 100"):
        decode(big, limits=Limits(max_msg_size=100))
    with pytest.raises(PubsubDecodeError, match="limit 10"):
        decode(big, limits=Limits(max_peers=10))
    with pytest.raises(PubsubDecodeError, match="bad length"):
        decode(encode(ReqInfoMsg(["p" * 300])))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_only_ever_raises_the_decode_error(data: bytes) -> None:
    try:
        decode(data)
    except PubsubDecodeError:
        pass


def info_bytes(mach_id: str, schema: dict[str, Any], states: list[str]) -> bytes:
    one = {"id": mach_id, "schema": schema, "states": states, "time": [0] * len(states)}
    return bytes(msgpack.packb({"type": "info", "peers": {"p": {0: one}}}))


def test_a_schema_cache_checks_each_schema_once() -> None:
    m = am.Machine(Worker, id="w1")
    data = encode(InfoMsg({"peerA": {0: info_of(m)}}, {}))
    cache = SchemaCache()
    first = decode(data, schemas=cache)
    checked: list[str] = []
    real = wire._Reader.r_state

    def spy(self: Any, name: str, v: Any) -> am.State:
        checked.append(name)
        return real(self, name, v)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wire._Reader, "r_state", spy)
        again = decode(data, schemas=cache)
        assert checked == []  # the same schema again: taken from the cache
        assert again == first
        decode(data)
        assert checked == list(m.state_names)  # no cache: checked
    assert again == decode(data)
    # the cached schema is a copy: changing a decoded one does not reach the cache
    assert isinstance(again, InfoMsg)
    again.peers["peerA"][0].schema.clear()
    assert decode(data, schemas=cache) == first


def test_a_schema_cache_still_rejects_what_differs() -> None:
    cache = SchemaCache()
    decode(info_bytes("m", {"A": {}}, ["A"]), schemas=cache)
    # the same machine id with a broken schema or state list is checked in full
    with pytest.raises(PubsubDecodeError, match="unknown fields"):
        decode(info_bytes("m", {"A": {"x": 1}}, ["A"]), schemas=cache)
    with pytest.raises(PubsubDecodeError, match="do not match its schema"):
        decode(info_bytes("m", {"A": {}}, ["B"]), schemas=cache)
    with pytest.raises(PubsubDecodeError, match="must be a list"):
        decode(info_bytes("m", {"A": {}}, "A"), schemas=cache)  # type: ignore[arg-type]


def test_a_schema_cache_is_bounded() -> None:
    cache = SchemaCache(size=3)
    for i in range(10):
        decode(info_bytes(f"m{i}", {"A": {}}, ["A"]), schemas=cache)
    assert sorted(cache._seen) == ["m7", "m8", "m9"]
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="size must be a positive int"):
            SchemaCache(size=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_names must be a positive int"):
            SchemaCache(max_names=bad)  # type: ignore[arg-type]


def test_a_schema_cache_holds_a_bounded_number_of_names() -> None:
    # a peer sending many big schemas cannot make the cache hold more than max_names
    names = [f"S{i}" for i in range(10)]
    big = {n: {"require": names[:3]} for n in names}  # 10 states + 30 targets: 40 names
    cache = SchemaCache(max_names=100)
    for i in range(5):
        decode(info_bytes(f"m{i}", big, names), schemas=cache)
        assert cache._names <= 100
    assert sorted(cache._seen) == ["m3", "m4"]
    assert cache._names == 80
    # one schema over the whole budget is checked every time, never kept
    huge = {n: {"require": names} for n in names}  # 110 names
    decode(info_bytes("huge", huge, names), schemas=cache)
    assert "huge" not in cache._seen and cache._names == 80
    # a machine whose schema changed replaces its entry
    decode(info_bytes("m4", {"A": {}}, ["A"]), schemas=cache)
    assert cache._names == 41


def make_mirror() -> tuple[am.Machine, Mirror]:
    src = am.Machine(Worker, id="src", tags=["role:w"], parent="boss")
    return src, Mirror("QmPeer", 0, info_of(src))


def test_mirror_mirrors_schema_tags_and_parent() -> None:
    src, m = make_mirror()
    assert m.state_names == src.state_names
    assert m.schema == src.schema
    assert m.remote_id == "src" and m.peer_id == "QmPeer" and m.mach_index == 0
    assert m.parent_id == "boss" and m.remote_parent == "boss"
    assert {"pubsub-worker", "src-id:src", "peer:QmPeer", "role:w"} <= set(m.tags)
    assert m.id.startswith("ps-src-")


def test_mirror_is_read_only_and_names_the_peer() -> None:
    _, m = make_mirror()
    calls = [
        lambda: m.add1("Foo"),
        lambda: m.add(["Foo"]),
        lambda: m.remove1("Foo"),
        lambda: m.remove(["Foo"]),
        lambda: m.set(["Foo"]),
        lambda: m.toggle1("Foo"),
        lambda: m.toggle(["Foo"]),
        lambda: m.add_err(ValueError("x")),
        lambda: m.add_err_state("Foo", ValueError("x")),
        lambda: m.can_add(["Foo"]),
        lambda: m.can_remove(["Foo"]),
    ]
    for call in calls:
        with pytest.raises(PubsubReadOnlyError, match="QmPeer") as info:
            call()
        assert info.value.peer == "QmPeer" and info.value.remote_id == "src"
    assert m.not1("Foo")


def test_mirror_updates_are_monotonic_by_time_sum() -> None:
    src, m = make_mirror()
    src.add1("Foo")
    newer = list(src.time())
    src.add1("Bar")
    newest = list(src.time())
    assert m._apply_clock(newest)
    assert m.is1("Bar") and m.not1("Foo")
    assert not m._apply_clock(newer)  # older: ignored
    assert m.is1("Bar")
    assert not m._apply_clock([1])  # wrong length: ignored
    assert m.time() == newest
    assert m.time_sum == sum(newest)


@pytest.mark.trio
async def test_waiting_on_a_mirror_resolves_when_the_clock_arrives() -> None:
    src, m = make_mirror()
    hits: list[str] = []

    class H:
        def foo_state(self, e: am.Event) -> None:
            hits.append("Foo")

    m.bind_handlers(H())
    with trio.fail_after(2):
        async with trio.open_nursery() as n:

            async def later() -> None:
                await trio.sleep(0.01)
                src.add1("Foo")
                m._apply_clock(list(src.time()))

            n.start_soon(later)
            await m.when1("Foo")
    assert hits == ["Foo"]


def test_topic_states_follow_the_reference_schema() -> None:
    names = TopicStates.names()
    for s in (
        "ErrJoining",
        "ErrListening",
        "Started",
        "Joining",
        "Joined",
        "Ready",
        "SendGossips",
        "SendUpdates",
        "ReqMissingPeers",
        "ReqMissingUpdates",
        "DoSendInfo",
        "SendInfo",
        "Heartbeat",
        "PeerJoined",
        "PeerLeft",
        "MsgInfo",
        "MsgBye",
        "MsgUpdates",
        "MsgReqInfo",
        "MsgReqUpdates",
        "MsgReceived",
        "MissPeersByUpdates",
        "MissPeersByGossip",
        "MissUpdatesByGossip",
        "ListMachines",
        "SendMsg",
        "ProcessMsgs",
        "Connected",
        "Connecting",
        "Disposing",
        "Start",
        "Exception",
    ):
        assert s in names
    schema = TopicStates.schema()
    assert schema["Ready"].auto and "Joined" in (schema["Ready"].require or ())
    assert schema["MsgInfo"].multi and schema["MsgInfo"].require == ("Joined",)
    assert schema["Heartbeat"].require == ("Joined",) and not schema["Heartbeat"].multi
