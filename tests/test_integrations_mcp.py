"""MCP: the official SDK client against a machine's MCP server over real HTTP."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

import asyncmachine_trio as am
from asyncmachine_trio.integrations import mcp as ammcp

pytestmark = pytest.mark.anyio


class S(am.States):
    A = am.State()
    B = am.State(remove=("A",))
    Secret = am.State()
    Status = am.State()
    Approve = am.State(require=("A",))


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@contextlib.asynccontextmanager
async def client(url: str, token: str | None = None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=5) as http:
        async with Client(streamable_http_client(url, http_client=http)) as c:
            yield c


def make(mach: am.Machine, seen: list[Any] | None = None) -> ammcp.MachineMcp:
    return ammcp.MachineMcp(
        mach,
        name="test",
        states_exclude=["Secret"],
        states_readonly=["Status"],
        args={"reason": ammcp.ArgSpec(str), "amount": ammcp.ArgSpec(int)},
        calls=[
            ammcp.CallSignature(
                ["Approve"],
                name="approve",
                description="Approve the expense",
                args={
                    "approver": ammcp.ArgSpec(str, required=True),
                    "level": ammcp.ArgSpec(int, values=(1, 2)),
                },
            ),
            ammcp.CallSignature(["Secret"], name="leak"),  # not mutable: no tool
        ],
    )


def leaves(err: BaseException) -> list[BaseException]:
    subs = getattr(err, "exceptions", None)  # an exception group
    if subs is not None:
        return [leaf for sub in subs for leaf in leaves(sub)]
    return [err]


def text(result: Any) -> str:
    out: str = result.content[0].text
    return out


async def test_tools_add_remove_states() -> None:
    seen: list[dict[str, Any]] = []

    class H:
        def a_state(self, e: am.Event) -> None:
            seen.append(dict(e.args))

    async with am.open_machine(S, handlers=H()) as mach:
        async with ammcp.serve(make(mach)) as url, client(url) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert set(tools) == {"add", "remove", "approve", "states"}
            add_schema = tools["add"].input_schema
            assert add_schema["properties"]["state"]["enum"] == ["A", "B", "Approve"]
            assert add_schema["properties"]["amount"] == {"type": "integer"}
            approve = tools["approve"].input_schema
            assert approve["required"] == ["approver"]
            assert approve["properties"]["level"] == {"type": "integer", "enum": [1, 2]}

            res = await c.call_tool("add", {"state": "A", "reason": "test", "amount": 3})
            assert not res.is_error
            assert text(res) == "executed: (A:1)"
            assert seen == [{"FromMCP": True, "reason": "test", "amount": 3}]
            res = await c.call_tool("approve", {"approver": "bob", "level": 2})
            assert text(res) == "executed: (A:1 Approve:1)"
            # remove really removes
            res = await c.call_tool("remove", {"state": "Approve"})
            assert text(res) == "executed: (A:1)"
            assert mach.active_states() == ["A"]

            mach.add1(S.Status)
            mach.add1(S.Secret)
            snap = json.loads(text(await c.call_tool("states", {})))
            assert snap["active"] == ["A", "Status"]
            assert "Secret" not in snap["clock"]
            assert snap["clock"]["Approve"] == 2
            res = await c.read_resource(f"machine://{mach.id}/states")
            assert json.loads(res.contents[0].text) == snap


REFUSED = [
    ("add", {"state": "Status"}, "read-only"),
    ("remove", {"state": "Status"}, "read-only"),
    ("add", {"state": "Secret"}, "not allowed"),
    ("add", {"state": "Nope"}, "unknown state"),
    ("add", {"state": "Aa"}, "did you mean 'A'"),
    ("add", {}, "'state' (a string) is required"),
    ("add", {"state": "A", "amount": "3"}, "must be integer"),
    ("add", {"state": "A", "amount": True}, "must be integer"),
    ("add", {"state": "A", "reasn": "x"}, "did you mean 'reason'"),
    ("approve", {}, "missing required arguments: approver"),
    ("approve", {"approver": "bob", "level": 3}, "must be one of"),
    ("approve", {"approver": "bob"}, "canceled"),  # Approve requires A
    ("leak", {}, "unknown tool"),
]


async def test_refused_calls() -> None:
    async with am.open_machine(S) as mach:
        async with ammcp.serve(make(mach)) as url, client(url) as c:
            for tool, args, error in REFUSED:
                res = await c.call_tool(tool, args)
                assert res.is_error, (tool, args)
                assert error in text(res), (tool, args, text(res))
                assert mach.active_states() == []


async def test_bearer_token() -> None:
    async with am.open_machine(S) as mach:
        async with ammcp.serve(make(mach), token="s3cret") as url:
            async with client(url, token="s3cret") as c:
                assert not (await c.call_tool("add", {"state": "A"})).is_error
            for bad in ("wrong", None):
                async with httpx2.AsyncClient(timeout=5) as http:
                    headers = {"Authorization": f"Bearer {bad}"} if bad else {}
                    resp = await http.post(url, json={}, headers=headers)
                    assert resp.status_code == 401
                # the SDK client fails its first request
                with pytest.raises(Exception) as info:
                    async with client(url, token=bad) as c:
                        await c.list_tools()
                assert any(isinstance(e, MCPError) for e in leaves(info.value))
        assert mach.active_states() == ["A"]


async def test_refuses_public_bind_without_token() -> None:
    async with am.open_machine(S) as mach:
        with pytest.raises(ValueError, match="without a token"):
            async with ammcp.serve(make(mach), host="0.0.0.0"):
                pass


def test_config_errors() -> None:
    mach = am.Machine(S)
    with pytest.raises(am.StateUnknownError):
        ammcp.MachineMcp(mach, states_readonly=["Nope"])
    with pytest.raises(TypeError):
        ammcp.ArgSpec(list)
