"""aRPC clock diffs (docs/rpc.md) and the wire format (1.3-1.5).

Properties of ``make_update`` / ``apply_update``: a diff S1 → S2 applied to S1
reproduces S2 on the tracked indexes, any single corruption of the base (by
1..255: an 8-bit checksum cannot see multiples of 256, by design) is detected,
the first push carries absolute ticks, and the traffic does not depend on how
large the ticks are. Then the wire: every message round-trips, the type
registry, typed errors for what cannot be encoded or decoded, and exceptions
in args (as ``rpc.RemoteException``, on the wire and end to end).
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import attrs
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rpc_util import rpc_pair

import asyncmachine_trio as am
from asyncmachine_trio import rpc
from asyncmachine_trio.machine.args import AException, pass_args
from asyncmachine_trio.rpc import wire
from asyncmachine_trio.rpc.sync import Snapshot, apply_update, checksum, make_update


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """On trio and on asyncio (real clocks: some transports are real sockets)."""
    return str(request.param)


# ----- strategies


@st.composite
def snapshot_pairs(draw: st.DrawFn, max_tick: int = 2**40) -> tuple[Snapshot, Snapshot, list[int]]:
    """S1, S2 with non-decreasing ticks and counters, and a random tracked subset."""
    n = draw(st.integers(1, 24))
    t1 = draw(st.lists(st.integers(0, max_tick), min_size=n, max_size=n))
    grow = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))
    t2 = [a + d for a, d in zip(t1, grow, strict=True)]
    qt1 = draw(st.integers(1, max_tick))
    mt1 = draw(st.integers(0, max_tick))
    qt2 = qt1 + draw(st.integers(0, 1000))
    mt2 = mt1 + draw(st.integers(0, 5))
    tracked = sorted(draw(st.sets(st.integers(0, n - 1))))
    return Snapshot(tuple(t1), qt1, mt1), Snapshot(tuple(t2), qt2, mt2), tracked


# ----- diff round trip


@given(snapshot_pairs())
def test_diff_applied_to_base_reproduces_target(
    case: tuple[Snapshot, Snapshot, list[int]],
) -> None:
    s1, s2, tracked = case
    upd = make_update(s1, s2, tracked)
    ticks, qt, mt = apply_update(list(s1.ticks), s1.queue_tick, s1.machine_tick, upd, tracked)
    for i in tracked:
        assert ticks[i] == s2.ticks[i]
    # untracked ticks never travel: the client keeps its own
    for i in set(range(len(s1.ticks))) - set(tracked):
        assert ticks[i] == s1.ticks[i]
    assert (qt, mt) == (s2.queue_tick, s2.machine_tick)
    assert upd.checksum == s2.checksum(tracked)
    assert upd.checksum == checksum(sum(ticks[i] for i in tracked), qt, mt)
    # only changed tracked states travel
    assert set(upd.indexes) == {i for i in tracked if s1.ticks[i] != s2.ticks[i]}
    assert all(d > 0 for d in upd.ticks)


@given(snapshot_pairs(), st.data())
def test_single_corruption_of_the_base_is_detected(
    case: tuple[Snapshot, Snapshot, list[int]], data: st.DataObject
) -> None:
    s1, s2, tracked = case
    upd = make_update(s1, s2, tracked)
    targets = [("tick", i) for i in tracked] + [("queue", -1), ("machine", -1)]
    where, i = data.draw(st.sampled_from(targets))
    by = data.draw(st.integers(1, 255)) * data.draw(st.sampled_from([1, -1]))
    ticks, qt, mt = list(s1.ticks), s1.queue_tick, s1.machine_tick
    if where == "tick":
        ticks[i] += by
    elif where == "queue":
        qt += by
    else:
        mt += by
    with pytest.raises(rpc.RpcDriftError):
        apply_update(ticks, qt, mt, upd, tracked)


@given(snapshot_pairs(), st.data())
def test_corrupted_update_is_detected(
    case: tuple[Snapshot, Snapshot, list[int]], data: st.DataObject
) -> None:
    """A corrupted delta (or tick delta) in the message itself is detected too."""
    s1, s2, tracked = case
    upd = make_update(s1, s2, tracked)
    by = data.draw(st.integers(1, 255))
    fields = ["queue_tick", "machine_tick"] + (["ticks"] if upd.ticks else [])
    field = data.draw(st.sampled_from(fields))
    if field == "ticks":
        k = data.draw(st.integers(0, len(upd.ticks) - 1))
        upd.ticks[k] += by
    else:
        setattr(upd, field, getattr(upd, field) + by)
    with pytest.raises(rpc.RpcDriftError):
        apply_update(list(s1.ticks), s1.queue_tick, s1.machine_tick, upd, tracked)


def test_corruption_by_a_multiple_of_256_is_invisible_by_design() -> None:
    """Documents the 8-bit checksum's blind spot (why corruptions are drawn in 1..255)."""
    s1 = Snapshot((1, 2, 3), 5, 0)
    s2 = Snapshot((3, 2, 4), 7, 0)
    upd = make_update(s1, s2, [0, 1, 2])
    ticks, _, _ = apply_update([1 + 256, 2, 3], 5, 0, upd, [0, 1, 2])
    assert ticks == [3 + 256, 2, 4]


def test_malformed_update_is_drift() -> None:
    upd = wire.Update([0, 1], [1], 0, 0, 0)
    with pytest.raises(rpc.RpcDriftError):
        apply_update([0, 0], 1, 0, upd, [0, 1])


def test_negative_result_is_drift() -> None:
    # sums match (-1 + 1), but a tick cannot go below 0
    upd = wire.Update([0, 1], [-1, 1], 0, 0, checksum(1, 1, 0))
    with pytest.raises(rpc.RpcDriftError):
        apply_update([0, 0], 1, 0, upd, [0, 1])


def test_indexes_beyond_the_client_are_ignored() -> None:
    """A schema that grew on the source: new indexes are skipped, like the reference."""
    s1 = Snapshot((1, 0), 1, 0)
    s2 = Snapshot((1, 1), 2, 0)
    upd = make_update(s1, s2, [0, 1])
    upd.indexes.append(7)
    upd.ticks.append(3)
    ticks, qt, _ = apply_update([1, 0], 1, 0, upd, [0, 1])
    assert ticks == [1, 1] and qt == 2


# ----- first push


@given(snapshot_pairs())
def test_first_push_carries_absolute_ticks(case: tuple[Snapshot, Snapshot, list[int]]) -> None:
    _, s2, tracked = case
    upd = make_update(None, s2, tracked)
    assert upd.indexes == [i for i in tracked if s2.ticks[i]]
    assert upd.ticks == [s2.ticks[i] for i in upd.indexes]
    assert (upd.queue_tick, upd.machine_tick) == (s2.queue_tick, s2.machine_tick)
    n = len(s2.ticks)
    ticks, qt, mt = apply_update([0] * n, 0, 0, upd, tracked)
    assert [ticks[i] for i in tracked] == [s2.ticks[i] for i in tracked]
    assert (qt, mt) == (s2.queue_tick, s2.machine_tick)


def test_grown_schema_diff_is_absolute_for_new_states() -> None:
    prev = Snapshot((3, 1), 4, 0)
    cur = Snapshot((3, 2, 5, 0), 6, 0)
    upd = make_update(prev, cur, [0, 1, 2, 3])
    assert list(zip(upd.indexes, upd.ticks, strict=True)) == [(1, 1), (2, 5)]
    assert upd.queue_tick == 2
    ticks, _, _ = apply_update([3, 1, 0, 0], 4, 0, upd, [0, 1, 2, 3])
    assert ticks == [3, 2, 5, 0]


def test_no_change_is_an_empty_diff() -> None:
    s = Snapshot((1, 2, 3), 9, 1)
    upd = make_update(s, s, [0, 1, 2])
    assert (upd.indexes, upd.ticks, upd.queue_tick, upd.machine_tick) == ([], [], 0, 0)


# ----- traffic


@given(snapshot_pairs(max_tick=1000), st.integers(10**6, 2**50))
def test_traffic_does_not_depend_on_absolute_ticks(
    case: tuple[Snapshot, Snapshot, list[int]], offset: int
) -> None:
    s1, s2, tracked = case

    def shifted(s: Snapshot) -> Snapshot:
        return Snapshot(
            tuple(t + offset for t in s.ticks), s.queue_tick + offset, s.machine_tick + offset
        )

    low = make_update(s1, s2, tracked)
    high = make_update(shifted(s1), shifted(s2), tracked)
    assert low.indexes == high.indexes
    assert low.ticks == high.ticks
    assert (low.queue_tick, low.machine_tick) == (high.queue_tick, high.machine_tick)
    # on the wire: only the checksum byte may differ (fixint 0..127 vs uint8 128..255)
    a = wire.encode_frame(wire.Frame(0, "ClientSetClock", None, low))
    b = wire.encode_frame(wire.Frame(0, "ClientSetClock", None, high))
    assert abs(len(a) - len(b)) <= 1
    ticks, _, _ = apply_update(
        list(shifted(s1).ticks), s1.queue_tick + offset, s1.machine_tick + offset, high, tracked
    )
    assert [ticks[i] for i in tracked] == [s2.ticks[i] + offset for i in tracked]


# ----- wire: every message round-trips


@attrs.define
class _Point:
    x: int
    y: int


@attrs.define
class _Line:
    a: _Point
    b: _Point
    label: str = ""


class _Money:
    """Not attrs: travels through a custom encode / decode."""

    def __init__(self, cents: int, currency: str) -> None:
        self.cents = cents
        self.currency = currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Money) and (self.cents, self.currency) == (
            other.cents,
            other.currency,
        )

    __hash__ = None  # type: ignore[assignment]


@attrs.define
class _Unregistered:
    v: int


rpc.register_type(_Point)
rpc.register_type(_Line, "tests.Line")
rpc.register_type(
    _Money,
    "tests.Money",
    encode=lambda m: [m.cents, m.currency],
    decode=lambda raw: _Money(raw[0], raw[1]),
)

MESSAGES: list[tuple[str | None, Any]] = [
    ("Hello", wire.CliHello("rc-x")),
    (
        "Hello",
        wire.CliHello("rc-y", False, "abc", True, ["A", "B"], ["B"], True, "tok"),
    ),
    ("Handshake", wire.Empty()),
    (None, wire.ErrorInfo("access", "no access")),
    (
        None,
        wire.SrvHello(
            "src",
            ["A", "B", "Exception"],
            [1, 0, 2],
            5,
            0,
            3,
            [
                wire.StateDef("A", auto=True, require=["B"]),
                wire.StateDef("B", multi=True, add=["A"], remove=["C"], after=["A"], tags=["t"]),
                wire.StateDef("Exception", multi=True),
            ],
            "hash",
            [0, 2],
        ),
    ),
    (None, wire.SrvHello("src", ["A"], [0], 1, 0, 1)),
    ("ClientSetClock", wire.Update([0, 3], [1, 2**40], 2, 1, 200)),
    (
        "ClientSetClockMany",
        wire.UpdateMuts(
            ["add", "remove"],
            [[0], [1, 2]],
            [wire.Update([0], [1], 1, 0, 3), wire.Update([], [], 1, 0, 4)],
        ),
    ),
    ("Add", wire.CliMutation([0, 2], {"a": 1, "b": [1, "x"], "c": None}, 2**55, "tx1")),
    ("Remove", wire.CliMutation([1])),
    (None, wire.SrvMutation(0, wire.Update([1], [1], 1, 0, 9), None, 0)),
    (
        None,
        wire.SrvMutation(
            2, None, wire.UpdateMuts(["set"], [[0]], [wire.Update([], [], 0, 0, 0)]), 7
        ),
    ),
    (None, wire.SrvSync([1, 2, 3], 4, 5)),
    (
        "ClientSendPayload",
        wire.SrvPayload("P", {"k": [1, 2.5, b"\x00\xff", "s"]}, "rc-a", "tok", "src", "tx"),
    ),
    (None, wire.SrvArgs(["am_rpc", "x"])),
    ("Add", wire.CliMutation([0], {"p": _Point(1, 2), "l": [_Line(_Point(0, 0), _Point(1, 1))]})),
    ("ClientSendPayload", wire.SrvPayload("M", {"m": _Money(125, "EUR")})),
]


@pytest.mark.parametrize(("method", "msg"), MESSAGES)
def test_every_message_round_trips(method: str | None, msg: Any) -> None:
    frame = wire.Frame(7, method, None, msg)
    out = wire.decode_frame(wire.encode_frame(frame))
    assert (out.seq, out.method, out.error) == (7, method, None)
    assert wire.structure(out.body, type(msg)) == msg


def test_error_frame_round_trips() -> None:
    frame = wire.Frame(3, None, wire.ErrorInfo("invalid_params", "bad index"), None)
    out = wire.decode_frame(wire.encode_frame(frame))
    assert out == frame


def test_notification_and_empty_body() -> None:
    out = wire.decode_frame(wire.encode_frame(wire.Frame(0, "Close")))
    assert out == wire.Frame(0, "Close", None, None)


_native = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60)
@given(
    st.lists(st.integers(0, 1000), min_size=1, max_size=5),
    st.dictionaries(st.text(max_size=6), _native, max_size=4),
    st.integers(0, 2**64 - 1),
)
def test_mutation_args_round_trip(states: list[int], args: dict[str, Any], mid: int) -> None:
    msg = wire.CliMutation(states, args or None, mid, "")
    out = wire.decode_frame(wire.encode_frame(wire.Frame(1, "Add", None, msg)))
    assert wire.structure(out.body, wire.CliMutation) == msg


# ----- type registry


def test_registered_attrs_type_travels_with_its_type() -> None:
    line = _Line(_Point(1, 2), _Point(3, 4), "diag")
    msg = wire.CliMutation(
        [0], {"line": line, "pts": [_Point(5, 6)], "nested": {"p": _Point(7, 8)}}
    )
    body = wire.decode_frame(wire.encode_frame(wire.Frame(1, "Add", None, msg))).body
    got = wire.structure(body, wire.CliMutation)
    assert got.args is not None
    assert type(got.args["line"]) is _Line and got.args["line"] == line
    assert type(got.args["pts"][0]) is _Point
    assert got.args["nested"]["p"] == _Point(7, 8)


def test_custom_encode_decode() -> None:
    payload = wire.SrvPayload("price", [_Money(1, "USD"), _Money(2, "EUR")])
    body = wire.decode_frame(wire.encode_frame(wire.Frame(0, "ClientSendPayload", None, payload)))
    got = wire.structure(body.body, wire.SrvPayload)
    assert got.data == [_Money(1, "USD"), _Money(2, "EUR")]
    assert all(type(m) is _Money for m in got.data)


class _Opaque:
    pass


@pytest.mark.parametrize(
    "value",
    [_Opaque(), _Unregistered(1), [_Unregistered(2)], {"deep": {"x": _Opaque()}}],
    ids=["plain-class", "attrs-class", "in-list", "in-dict"],
)
def test_unregistered_value_is_an_encode_error(value: Any) -> None:
    """An unregistered class never travels silently (it would lose its type)."""
    with pytest.raises(rpc.RpcEncodeError, match="register"):
        wire.encode_frame(wire.Frame(1, "Add", None, wire.CliMutation([0], {"v": value})))
    with pytest.raises(rpc.RpcEncodeError):
        wire.encode_frame(wire.Frame(0, "ClientSendPayload", None, wire.SrvPayload("n", value)))


# ----- decoding errors


def _ext(tag: str, value: Any) -> msgpack.ExtType:
    return msgpack.ExtType(1, msgpack.packb([tag, value]))


BAD_FRAMES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("never-used-byte", b"\xc1"),
    ("garbage", b"\xde\xad\xbe\xef garbage"),
    ("truncated", wire.encode_frame(wire.Frame(1, "Hello", None, wire.CliHello("rc-a")))[:-3]),
    ("extra-data", msgpack.packb([1, "Close", None, None]) + b"\x00"),
    ("not-array", msgpack.packb({"seq": 1})),
    ("scalar", msgpack.packb(5)),
    ("3-items", msgpack.packb([1, "Close", None])),
    ("5-items", msgpack.packb([1, "Close", None, None, None])),
    ("seq-negative", msgpack.packb([-1, "Close", None, None])),
    ("seq-string", msgpack.packb(["1", "Close", None, None])),
    ("seq-bool", msgpack.packb([True, "Close", None, None])),
    ("seq-float", msgpack.packb([1.0, "Close", None, None])),
    ("method-int", msgpack.packb([1, 5, None, None])),
    ("unknown-tag", msgpack.packb([1, "Add", None, [[0], {"x": _ext("nope.Nope", 1)}, 0, ""]])),
    ("unknown-ext-code", msgpack.packb([1, "Add", None, msgpack.ExtType(9, b"")])),
    ("ext-not-a-pair", msgpack.packb([1, "Add", None, msgpack.ExtType(1, b"\xc1")])),
]


@pytest.mark.parametrize("data", [d for _, d in BAD_FRAMES], ids=[n for n, _ in BAD_FRAMES])
def test_malformed_frames_are_decode_errors(data: bytes) -> None:
    with pytest.raises(rpc.RpcDecodeError):
        wire.decode_frame(data)


@pytest.mark.parametrize(
    ("body", "cls"),
    [
        (12345, wire.CliMutation),
        ("text", wire.CliMutation),
        ([["x"], None, 0, ""], wire.CliMutation),
        ([], wire.CliHello),
        ([["a"], [1], 0, 0, 0], wire.Update),
        ([[0], [1], 0, 0], wire.Update),
        ([[0], "notadict", 0, ""], wire.CliMutation),
        ({"a": 1}, wire.SrvSync),
        (None, wire.SrvHello),
    ],
)
def test_malformed_bodies_are_decode_errors(body: Any, cls: type[Any]) -> None:
    with pytest.raises(rpc.RpcDecodeError):
        wire.structure(body, cls)


def test_malformed_error_info_still_decodes() -> None:
    """An error frame always decodes (answering it with an error could ping-pong)."""
    out = wire.decode_frame(msgpack.packb([4, None, 12345, None]))
    assert out.error is not None and out.error.kind == "malformed"


# ----- exceptions in args


def test_exception_args_travel_as_remote_exception() -> None:
    args = pass_args(AException(err=ValueError("boom"), err_trace="tb...", target_states=["A"]))
    msg = wire.CliMutation([0, 1], args, 1)
    body = wire.decode_frame(wire.encode_frame(wire.Frame(1, "Add", None, msg))).body
    got = wire.structure(body, wire.CliMutation)
    assert got.args is not None
    a = am.parse_args(got.args, AException)
    assert a is not None
    assert isinstance(a.err, rpc.RemoteException)
    assert (a.err.type_name, a.err.message) == ("ValueError", "boom")
    assert str(a.err) == "ValueError: boom"
    assert a.err_trace == "tb..."
    assert a.target_states == ["A"]
    # relayed again (a tree of replicas): the original type name is kept
    body2 = wire.decode_frame(wire.encode_frame(wire.Frame(1, "Add", None, got))).body
    a2 = am.parse_args(wire.structure(body2, wire.CliMutation).args or {}, AException)
    assert a2 is not None and isinstance(a2.err, rpc.RemoteException)
    assert (a2.err.type_name, a2.err.message) == ("ValueError", "boom")


def test_exception_args_without_error() -> None:
    msg = wire.CliMutation([0], pass_args(AException(err=None)), 1)
    body = wire.decode_frame(wire.encode_frame(wire.Frame(1, "Add", None, msg))).body
    a = am.parse_args(wire.structure(body, wire.CliMutation).args or {}, AException)
    assert a is not None and a.err is None


@pytest.mark.anyio
async def test_add_err_reaches_the_source_as_remote_exception() -> None:
    """End to end: ``call_add_err`` on a network machine, the source's handler sees the error."""

    class Src(rpc.StateSourceStates):
        A = am.State()

    got: list[AException | None] = []

    class Handlers:
        def exception_state(self, e: am.Event) -> None:
            got.append(am.parse_args(e.args, AException))

    src = am.Machine(Src, id="src")
    src.bind_handlers(Handlers())
    async with rpc_pair(src, name="err") as (_server, client):
        nm = client.netmach
        res = await nm.call_add_err_state("A", KeyError("missing"))
        assert res is am.Result.EXECUTED
        assert src.is_(["A", am.EXCEPTION, "ErrOnClient"])
        with anyio.fail_after(2):
            await nm.when1("ErrOnClient")
    assert len(got) == 1 and got[0] is not None
    err = got[0].err
    assert isinstance(err, rpc.RemoteException)
    assert (err.type_name, err.message) == ("KeyError", "'missing'")
