"""JSON control messages: round trips, schemas, reference fixtures, handlers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trio
import trio.testing

import asyncmachine_trio as am
from asyncmachine_trio import integrations as ig
from asyncmachine_trio.integrations import jsonschema as amschema
from asyncmachine_trio.integrations.messages import MAX_MESSAGE_SIZE, MESSAGE_TYPES

FIXTURES = Path(__file__).parent / "fixtures" / "integrations"

SCHEMA: dict[str, am.State] = {
    "A": am.State(),
    "B": am.State(),
    "C": am.State(),
    "D": am.State(require=("A",)),
}


def machine(**kw: Any) -> am.Machine:
    return am.Machine(SCHEMA, id="m1", **kw)


SAMPLES: list[Any] = [
    ig.MutationReq(add=["A", "B"]),
    ig.MutationReq(remove=["B"], args={"arg1": "test", "n": [1, {"x": None}]}),
    ig.MutationResp(result=0),
    ig.MutationResp(result=1, error=ig.ErrorInfo("unknown_state", "no", hint="A")),
    ig.WaitingReq(states=["A"]),
    ig.WaitingReq(states=["A", "B"], time=[3, 1]),
    ig.WaitingReq(states_not=["C"]),
    ig.WaitingResp(mach_id="m1", states=["A"]),
    ig.WaitingResp(mach_id="m1", states=["A"], time=[5]),
    ig.WaitingResp(mach_id="m1", states_not=["A"]),
    ig.GetterReq(id=True),
    ig.GetterReq(time=["A"], time_sum=["A", "B"], clocks=["B"], tags=True, export=True),
    ig.GetterResp(
        mach_id="m1",
        time=[1, 2],
        time_sum=3,
        clocks={"A": 1},
        tags=["t"],
        export=am.Serialized(id="m1", state_names=("A", "B"), time=(1, 2)),
        id="m1",
        parent_id="p",
    ),
    ig.ErrorResp(error=ig.ErrorInfo("unknown_kind", "unknown kind 'x'")),
]


def validate(data: dict[str, Any]) -> None:
    jsonschema.validate(data, amschema.load_schema(data["kind"]))


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_and_schema(msg: Any) -> None:
    raw = ig.encode(msg)
    assert ig.decode(raw) == msg
    validate(json.loads(raw))


def test_omitempty_like_the_reference() -> None:
    assert json.loads(ig.encode(ig.MutationReq(add=["A"]))) == {
        "kind": "am_req_mutation",
        "add": ["A"],
    }
    # result and mach_id are always written, as in Go
    assert json.loads(ig.encode(ig.MutationResp(result=0))) == {
        "kind": "am_resp_mutation",
        "result": 0,
    }
    assert json.loads(ig.encode(ig.WaitingResp())) == {"kind": "am_resp_waiting", "mach_id": ""}
    assert json.loads(ig.encode(ig.GetterReq())) == {"kind": "am_req_getter"}


@pytest.mark.parametrize("cls", list(MESSAGE_TYPES.values()), ids=lambda c: c.__name__)
def test_checked_in_schema_is_generated(cls: type[Any]) -> None:
    path = amschema.SCHEMA_DIR / amschema.file_name(cls)
    assert path.read_text() == amschema.render(cls), (
        "regenerate: python -m asyncmachine_trio.integrations.jsonschema"
    )
    jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_schema_refuses_what_handlers_refuse() -> None:
    mut = amschema.load_schema("am_req_mutation")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": "am_req_mutation", "add": ["A"], "remove": ["B"]}, mut)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": "am_req_mutation"}, mut)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": "am_req_getter", "add": ["A"]}, mut)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": "am_req_waiting"}, amschema.load_schema("am_req_waiting"))


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_reference_fixtures_decode(path: Path) -> None:
    raw = path.read_bytes()
    msg = ig.decode(raw)
    assert msg.kind == json.loads(raw)["kind"]
    assert path.stem.startswith(amschema.file_name(type(msg)).removesuffix(".json"))
    # what we write back is what the reference wrote (same omitempty rules)
    assert json.loads(ig.encode(msg)) == json.loads(raw)
    validate(json.loads(raw))


def test_fixture_fields() -> None:
    resp = ig.decode((FIXTURES / "getter_resp_all.json").read_bytes())
    assert isinstance(resp, ig.GetterResp)
    assert resp.export == am.Serialized(
        id="a1b2c3d4e5f60718",
        state_names=("A", "B", "C", "D", "Exception"),
        time=(3, 1, 0, 0, 0),
        queue_tick=7,
        machine_tick=1,
    )
    assert resp.clocks == {"A": 3}
    assert resp.time_sum == 4
    req = ig.decode((FIXTURES / "mutation_req_remove_args.json").read_bytes())
    assert req == ig.MutationReq(remove=["B"], args={"arg1": "test"})


def test_null_is_the_zero_value() -> None:
    assert ig.decode(b'{"kind":"am_req_mutation","add":["A"],"remove":null,"args":null}') == (
        ig.MutationReq(add=["A"])
    )


@pytest.mark.parametrize(
    ("payload", "exc", "text"),
    [
        (b"not json", ig.MalformedMessageError, "not JSON"),
        (b"[1, 2]", ig.MalformedMessageError, "JSON object"),
        (b'{"add": ["A"]}', ig.UnknownKindError, "kind"),
        (b'{"kind": "am_req_mutatoin"}', ig.UnknownKindError, "am_req_mutation"),
        (b'{"kind": "am_req_mutation", "add": "A"}', ig.MalformedMessageError, ".add"),
        (b'{"kind": "am_req_mutation", "add": [1]}', ig.MalformedMessageError, ".add[0]"),
        (b'{"kind": "am_req_waiting", "time": [true]}', ig.MalformedMessageError, ".time[0]"),
        (b'{"kind": "am_req_getter", "id": "yes"}', ig.MalformedMessageError, ".id"),
        (b"\xff\xfe", ig.MalformedMessageError, "not JSON"),
    ],
)
def test_decode_errors(payload: bytes, exc: type[Exception], text: str) -> None:
    with pytest.raises(exc, match=None) as info:
        ig.decode(payload)
    assert text in str(info.value)


def test_decode_nesting_is_bounded() -> None:
    def nested(depth: int) -> bytes:
        # the message is level 1, args level 2, then depth - 2 arrays
        inner = b"[" * (depth - 2) + b"]" * (depth - 2)
        return b'{"kind": "am_req_mutation", "add": ["A"], "args": {"a": ' + inner + b"}}"

    assert ig.decode(nested(ig.MAX_DEPTH)).kind == "am_req_mutation"
    with pytest.raises(ig.MalformedMessageError, match="nested deeper than 32 levels"):
        ig.decode(nested(ig.MAX_DEPTH + 1))
    # deeper than Python's recursion limit: the JSON parser's RecursionError is typed too
    with pytest.raises(ig.MalformedMessageError, match="nested deeper"):
        ig.decode(b'{"kind": "am_req_getter", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_decode_too_large() -> None:
    with pytest.raises(ig.MessageTooLargeError):
        ig.decode(b" " * (MAX_MESSAGE_SIZE + 1))


def test_decode_kind_families() -> None:
    with pytest.raises(ig.UnknownKindError):
        ig.decode_request(b'{"kind": "am_resp_mutation", "result": 0}')
    with pytest.raises(ig.UnknownKindError):
        ig.decode_response(b'{"kind": "am_req_getter"}')
    with pytest.raises(ig.UnknownKindError, match="expected kind"):
        ig.decode(b'{"kind": "am_req_getter"}', ig.MutationReq)


def test_error_info_round_trips_to_typed_errors() -> None:
    for code, cls in ig.errors.ERROR_TYPES.items():
        err = ig.ErrorInfo(code, "msg", hint="h").to_exc()
        assert type(err) is cls
        assert (err.code, str(err), err.hint) == (code, "msg", "h")
    other = ig.ErrorInfo("from_the_future", "x").to_exc()
    assert type(other) is ig.IntegrationError
    assert other.code == "from_the_future"


# ----- handlers


async def payload(mach: am.Machine, data: Any, **kw: Any) -> Any:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    out = await ig.handle_json(mach, raw, **kw)
    assert out is not None
    resp = json.loads(out)
    validate(resp)
    return resp


@pytest.mark.trio
async def test_mutation_handler_with_args() -> None:
    mach = machine()
    seen: list[Any] = []

    class H:
        def b_end(self, e: am.Event) -> None:
            seen.append(e.args["arg1"])

    mach.bind_handlers(H())
    resp = await ig.handle_mutation(mach, ig.MutationReq(add=["A", "B"]))
    assert resp == ig.MutationResp(result=0)
    resp = await ig.handle_mutation(mach, ig.MutationReq(remove=["B"], args={"arg1": "test"}))
    assert resp.result == am.Result.EXECUTED
    assert seen == ["test"]
    assert mach.active_states() == ["A"]
    # canceled by relations: D requires A
    mach.remove1("A")
    assert (await ig.handle_mutation(mach, ig.MutationReq(add=["D"]))).result == 1


@pytest.mark.trio
async def test_mutation_allow_filter() -> None:
    mach = machine()
    resp = await ig.handle_mutation(mach, ig.MutationReq(add=["A", "C"]), allow=lambda s: s != "C")
    assert resp.error is not None
    assert resp.error.code == "state_not_allowed"
    assert resp.result == am.Result.CANCELED
    assert not mach.any1("A", "C")


@pytest.mark.trio
@pytest.mark.parametrize(
    ("req", "code", "hint"),
    [
        ({"kind": "am_req_mutation", "add": ["A"], "remove": ["B"]}, "add_and_remove", ""),
        ({"kind": "am_req_mutation"}, "no_states", ""),
        ({"kind": "am_req_mutation", "add": ["Aa"]}, "unknown_state", "A"),
        ({"kind": "am_req_mutation", "remove": ["Nope"]}, "unknown_state", ""),
        ({"kind": "am_req_mutation", "add": [1]}, "malformed", ""),
        ({"kind": "am_req_waiting"}, "no_states", ""),
        ({"kind": "am_req_waiting", "states": ["A", "B"], "time": [1]}, "time_length_mismatch", ""),
        ({"kind": "am_req_waiting", "states": ["A"], "time": [-1]}, "malformed", ""),
        ({"kind": "am_req_waiting", "states_not": ["X"]}, "unknown_state", ""),
        ({"kind": "am_req_getter", "time": ["B", "Cc"]}, "unknown_state", "C"),
        ({"kind": "am_req_getter", "tags": "x"}, "malformed", ""),
    ],
)
async def test_validation_errors_are_responses(req: Any, code: str, hint: str) -> None:
    mach = machine()
    resp = await payload(mach, req)
    assert resp["kind"] == req["kind"].replace("_req_", "_resp_")
    assert resp["error"]["code"] == code
    assert resp["error"].get("hint", "") == hint
    if req["kind"] == "am_req_mutation":
        assert resp["result"] == am.Result.CANCELED
    assert mach.active_states() == []


@pytest.mark.trio
@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{", "malformed"),
        (b'"just a string"', "malformed"),
        (b'{"kind": "am_req_nothing"}', "unknown_kind"),
        (b'{"kind": 7}', "unknown_kind"),
        (b" " * (MAX_MESSAGE_SIZE + 1), "too_large"),
        # nesting: past the interpreter's recursion limit, and past MAX_DEPTH
        (b"[" * 300_000 + b"]" * 300_000, "malformed"),
        (b'{"kind": "am_req_mutation", "args": ' + b"[" * 40 + b"]" * 40 + b"}", "malformed"),
    ],
)
async def test_unknown_payloads_get_error_responses(raw: bytes, code: str) -> None:
    resp = await payload(machine(), raw)
    assert resp["kind"] == "am_resp_error"
    assert resp["error"]["code"] == code


@pytest.mark.trio
async def test_responses_are_not_answered() -> None:
    assert await ig.handle_payload(machine(), b'{"kind":"am_resp_mutation","result":0}') is None


@pytest.mark.trio
async def test_internal_errors_are_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(ig.handlers, "get", broken)
    resp = await payload(machine(), {"kind": "am_req_getter", "id": True})
    assert resp == {
        "kind": "am_resp_getter",
        "mach_id": "m1",
        "error": {"code": "internal", "message": "RuntimeError: boom"},
    }


@pytest.mark.trio
async def test_getter_handler() -> None:
    mach = am.Machine(
        SCHEMA, id="m1", parent="p1", tags=("t1", "t2"), names=[*SCHEMA, am.EXCEPTION]
    )
    mach.add(["A", "B"])
    mach.remove1("B")
    resp = await ig.handle_getter(
        mach,
        ig.GetterReq(
            time=["A", "B"],
            time_sum=["A", "B"],
            clocks=["B"],
            tags=True,
            export=True,
            id=True,
            parent_id=True,
        ),
    )
    assert resp.error is None
    assert resp.time == [1, 2]
    assert resp.time_sum == 3
    assert resp.clocks == {"B": 2}
    assert resp.tags == ["t1", "t2"]
    assert resp.id == "m1"
    assert resp.parent_id == "p1"
    assert resp.export == mach.export()
    # only what was asked
    assert await ig.handle_getter(mach, ig.GetterReq(id=True)) == ig.GetterResp(
        mach_id="m1", id="m1"
    )


@pytest.mark.trio
async def test_waiting_states() -> None:
    mach = machine()
    async with trio.open_nursery() as nursery:
        got: list[ig.WaitingResp] = []

        async def wait() -> None:
            got.append(await ig.handle_waiting(mach, ig.WaitingReq(states=["A", "B"])))

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        mach.add1("A")
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        mach.add1("B")
    assert got == [ig.WaitingResp(mach_id="m1", states=["A", "B"])]


@pytest.mark.trio
async def test_waiting_states_not_and_time() -> None:
    mach = machine()
    mach.add1("C")
    async with trio.open_nursery() as nursery:
        got: list[ig.WaitingResp] = []

        async def wait(req: ig.WaitingReq) -> None:
            got.append(await ig.handle_waiting(mach, req))

        nursery.start_soon(wait, ig.WaitingReq(states_not=["C"]))
        nursery.start_soon(wait, ig.WaitingReq(states=["A"], time=[3]))
        await trio.testing.wait_all_tasks_blocked()
        mach.remove1("C")
        mach.add1("A")
        mach.remove1("A")
        await trio.testing.wait_all_tasks_blocked()
        assert got == [ig.WaitingResp(mach_id="m1", states_not=["C"])]
        mach.add1("A")
    assert got[1] == ig.WaitingResp(mach_id="m1", states=["A"], time=[3])


@pytest.mark.trio
async def test_waiting_timeout_and_ctx() -> None:
    mach = machine()
    resp = await ig.handle_waiting(mach, ig.WaitingReq(states=["A"]), timeout=0.5)
    assert resp.error is not None
    assert resp.error.code == "timeout"
    ctx = am.Ctx()
    async with trio.open_nursery() as nursery:
        got: list[ig.WaitingResp] = []

        async def wait() -> None:
            got.append(await ig.handle_waiting(mach, ig.WaitingReq(states=["A"]), ctx=ctx))

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        ctx.cancel()
    assert got[0].error is not None
    assert got[0].error.code == "canceled"


@pytest.mark.trio
async def test_waiting_cancel_scope() -> None:
    mach = machine()
    with trio.move_on_after(1) as scope:
        await ig.handle_waiting(mach, ig.WaitingReq(states=["A"]))
    assert scope.cancelled_caught
    # the subscription was released: a later add resolves nothing stale
    mach.add1("A")


@pytest.mark.trio
async def test_handle_request_dispatches() -> None:
    mach = machine()
    assert isinstance(await ig.handle_request(mach, ig.MutationReq(add=["A"])), ig.MutationResp)
    assert isinstance(await ig.handle_request(mach, ig.GetterReq(id=True)), ig.GetterResp)
    resp = await ig.handle_request(mach, ig.WaitingReq(states=["A"]))
    assert resp == ig.WaitingResp(mach_id="m1", states=["A"])


@pytest.mark.anyio
async def test_handlers_on_both_backends() -> None:
    mach = machine()
    assert (await payload(mach, {"kind": "am_req_mutation", "add": ["A"]}))["result"] == 0
    resp = await payload(mach, {"kind": "am_req_waiting", "states": ["A"]}, wait_timeout=1)
    assert resp == {"kind": "am_resp_waiting", "mach_id": "m1", "states": ["A"]}
