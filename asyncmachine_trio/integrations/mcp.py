"""An MCP server for a machine: agents read and mutate it through tools (extra ``mcp``).

Tools: ``add`` and ``remove`` (a ``state`` enum of the mutable states, plus the
declared typed args), one tool per :class:`CallSignature`, and ``states``
(active states and the clock of every visible state; also the resource
``machine://<id>/states``). Served over streamable HTTP on 127.0.0.1 by
:func:`serve`, optionally behind a bearer token. Runs on trio or asyncio
(hypercorn serves both).
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

import anyio
import attrs
import mcp_types as types
from mcp.server.lowlevel import Server

import asyncmachine_trio as am

from .errors import closest
from .nats_server import free_port

__all__ = ["ArgSpec", "CallSignature", "MachineMcp", "bearer_auth", "serve"]

_JSON_TYPES: dict[type[Any], str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
}
FROM_MCP = "FromMCP"
"""Arg set on every mutation made through MCP (the reference's name)."""


@attrs.frozen
class ArgSpec:
    """A typed tool argument: ``str``, ``int``, ``float`` or ``bool``."""

    type: type[Any] = str
    required: bool = False
    values: tuple[Any, ...] = ()
    """Allowed values (an enum), if any."""
    description: str = ""

    def __attrs_post_init__(self) -> None:
        if self.type not in _JSON_TYPES:
            raise TypeError(f"ArgSpec type must be one of str, int, float, bool: {self.type!r}")

    def json_schema(self) -> dict[str, Any]:
        """The argument's JSON Schema."""
        out: dict[str, Any] = {"type": _JSON_TYPES[self.type]}
        if self.values:
            out["enum"] = list(self.values)
        if self.description:
            out["description"] = self.description
        return out

    def check(self, name: str, value: Any) -> Any:
        """``value`` if it fits, else ``ValueError`` naming the argument."""
        ok = isinstance(value, self.type) and not (
            isinstance(value, bool) and self.type is not bool
        )
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise ValueError(f"argument {name!r} must be {_JSON_TYPES[self.type]}, got {value!r}")
        if self.values and value not in self.values:
            raise ValueError(f"argument {name!r} must be one of {list(self.values)}, got {value!r}")
        return value


@attrs.frozen
class CallSignature:
    """A named mutation with typed args, served as its own tool."""

    states: tuple[str, ...] = attrs.field(converter=tuple)
    name: str = ""
    description: str = ""
    is_remove: bool = False
    args: Mapping[str, ArgSpec] = attrs.field(factory=dict)

    @property
    def tool_name(self) -> str:
        """``name``, or ``add_<states>`` / ``remove_<states>``."""
        if self.name:
            return self.name
        verb = "remove" if self.is_remove else "add"
        return "_".join([verb, *(am.snake(s) for s in self.states)])


class ToolError(Exception):
    """A refused tool call (answered with ``isError``)."""


class MachineMcp:
    """The MCP tools of one machine (build the ASGI app with :meth:`app`).

    - ``states_include`` / ``states_exclude``: the mutable states (include wins).
    - ``states_readonly``: states shown by ``states`` but never mutable.
    - ``args``: typed args accepted by ``add`` / ``remove`` (passed to handlers).
    - ``calls``: one tool per signature (skipped if a state of it is not mutable).
    - ``mut_callback``: awaited after every mutation (e.g. to redraw a UI).
    """

    def __init__(
        self,
        mach: am.Machine,
        *,
        name: str = "",
        version: str = "0",
        description: str = "",
        states_include: Collection[str] = (),
        states_exclude: Collection[str] = (),
        states_readonly: Collection[str] = (),
        args: Mapping[str, ArgSpec] | None = None,
        calls: Sequence[CallSignature] = (),
        mut_callback: Callable[[], Awaitable[None]] | None = None,
        queue_timeout: float = 5.0,
    ) -> None:
        self.mach = mach
        for group in (states_include, states_exclude, states_readonly):
            for s in group:
                if not mach.has1(s):
                    raise am.StateUnknownError(f"MCP: unknown state {s!r} for {mach.id}")
        self.include: frozenset[str] = frozenset(states_include)
        self.exclude: frozenset[str] = frozenset(states_exclude)
        self.readonly: frozenset[str] = frozenset(states_readonly)
        self.args: dict[str, ArgSpec] = dict(args or {})
        self.mut_callback = mut_callback
        self.queue_timeout = queue_timeout
        self.calls: dict[str, CallSignature] = {
            c.tool_name: c for c in calls if all(self.mutable(s) for s in c.states)
        }
        for call in calls:
            for s in call.states:
                if not mach.has1(s):
                    raise am.StateUnknownError(f"MCP call {call.tool_name}: unknown state {s!r}")
        self.uri: str = f"machine://{mach.id}/states"
        self.server: Server[Any] = Server(
            name or f"asyncmachine {mach.id}",
            version=version,
            description=description or None,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_read_resource=self._read_resource,
        )

    # ----- permissions

    def mutable(self, state: str) -> bool:
        """True if agents may add or remove ``state``."""
        if state in self.readonly or state == am.EXCEPTION:
            return False
        if self.include:
            return state in self.include
        return state not in self.exclude

    def visible(self, state: str) -> bool:
        """True if ``state`` shows in the ``states`` tool and mutation answers."""
        return self.mutable(state) or state in self.readonly

    def mutable_states(self) -> list[str]:
        """The mutable states, in the machine's order."""
        return [s for s in self.mach.state_names if self.mutable(s)]

    # ----- tools

    def tools(self) -> list[types.Tool]:
        """Every tool this server lists."""
        arg_props = {n: a.json_schema() for n, a in self.args.items()}
        out = []
        for verb in ("add", "remove"):
            state = {
                "type": "string",
                "enum": self.mutable_states(),
                "description": f"Name of the state to {verb}",
            }
            out.append(
                types.Tool(
                    name=verb,
                    description=f"{verb.capitalize()} a state of machine {self.mach.id}"
                    " (with optional args); answers the active states and their ticks.",
                    input_schema={
                        "type": "object",
                        "properties": {"state": state, **arg_props},
                        "required": ["state"],
                        "additionalProperties": False,
                    },
                )
            )
        for name, call in self.calls.items():
            verb = "Remove" if call.is_remove else "Add"
            out.append(
                types.Tool(
                    name=name,
                    description=call.description or f"{verb} {' '.join(call.states)}",
                    input_schema={
                        "type": "object",
                        "properties": {n: a.json_schema() for n, a in call.args.items()},
                        "required": [n for n, a in call.args.items() if a.required],
                        "additionalProperties": False,
                    },
                )
            )
        out.append(
            types.Tool(
                name="states",
                description=f"Active states and the clock (state: tick) of machine {self.mach.id}",
                input_schema={"type": "object", "properties": {}, "additionalProperties": False},
            )
        )
        return out

    def snapshot(self) -> dict[str, Any]:
        """The visible states: active ones and every tick (what ``states`` answers)."""
        clock = {s: t for s, t in self.mach.clock().items() if self.visible(s)}
        return {
            "id": self.mach.id,
            "active": [s for s in self.mach.state_names if self.visible(s) and self.mach.is1(s)],
            "clock": clock,
        }

    def summary(self) -> str:
        """``(A:1 B:3)``: the active visible states with their ticks."""
        clock = self.mach.clock()
        return "(" + " ".join(f"{s}:{clock[s]}" for s in self.snapshot()["active"]) + ")"

    def _typed_args(self, specs: Mapping[str, ArgSpec], given: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {FROM_MCP: True}
        for name, value in given.items():
            spec = specs.get(name)
            if spec is None:
                hint = closest(name, specs)
                more = f" (did you mean {hint!r}?)" if hint else ""
                raise ToolError(f"unknown argument {name!r}{more}")
            try:
                out[name] = spec.check(name, value)
            except ValueError as err:
                raise ToolError(str(err)) from None
        missing = [n for n, s in specs.items() if s.required and n not in given]
        if missing:
            raise ToolError(f"missing required arguments: {', '.join(missing)}")
        return out

    def _state(self, given: Mapping[str, Any]) -> str:
        state = given.get("state")
        if not isinstance(state, str):
            raise ToolError("argument 'state' (a string) is required")
        if not self.mach.has1(state):
            hint = closest(state, self.mutable_states())
            more = f" (did you mean {hint!r}?)" if hint else ""
            raise ToolError(f"unknown state {state!r}{more}")
        if state in self.readonly:
            raise ToolError(f"state {state!r} is read-only")
        if not self.mutable(state):
            raise ToolError(f"state {state!r} is not allowed")
        return state

    async def _mutate(self, states: list[str], args: dict[str, Any], remove: bool) -> str:
        mach = self.mach
        res = mach.remove(states, args) if remove else mach.add(states, args)
        if res is am.Result.CANCELED:
            raise ToolError(f"canceled: {self.summary()}")
        if res is am.Result.QUEUED:
            with anyio.move_on_after(self.queue_timeout):
                await mach.when_queue_ends()
        if self.mut_callback is not None:
            await self.mut_callback()
        return f"{res}: {self.summary()}"

    async def call(self, name: str, arguments: Mapping[str, Any] | None) -> str:
        """Run one tool; raises :class:`ToolError` when refused."""
        given = dict(arguments or {})
        if name in ("add", "remove"):
            state = self._state(given)
            given.pop("state")
            args = self._typed_args(self.args, given)
            return await self._mutate([state], args, remove=name == "remove")
        if name == "states":
            return json.dumps(self.snapshot())
        call = self.calls.get(name)
        if call is None:
            hint = closest(name, ["add", "remove", "states", *self.calls])
            more = f" (did you mean {hint!r}?)" if hint else ""
            raise ToolError(f"unknown tool {name!r}{more}")
        args = self._typed_args(call.args, given)
        return await self._mutate(list(call.states), args, remove=call.is_remove)

    # ----- MCP handlers

    async def _list_tools(self, _ctx: Any, _params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.tools())

    async def _call_tool(
        self, _ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            text = await self.call(params.name, params.arguments)
        except ToolError as err:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=str(err))], is_error=True
            )
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    async def _list_resources(self, _ctx: Any, _params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    name="states",
                    uri=self.uri,
                    description="Active states and the clock of the machine",
                    mime_type="application/json",
                )
            ]
        )

    async def _read_resource(
        self, _ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        if str(params.uri) != self.uri:
            raise ValueError(f"unknown resource {params.uri}; this server has {self.uri}")
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(
                    uri=self.uri, mime_type="application/json", text=json.dumps(self.snapshot())
                )
            ]
        )

    # ----- HTTP

    def app(self, *, token: str | None = None, path: str = "/mcp", host: str = "127.0.0.1") -> Any:
        """The streamable HTTP ASGI app (behind :func:`bearer_auth` if ``token``)."""
        asgi = self.server.streamable_http_app(streamable_http_path=path, host=host)
        return bearer_auth(asgi, token) if token else asgi


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def bearer_auth(app: ASGIApp, token: str) -> ASGIApp:
    """Wrap an ASGI app: HTTP requests need ``Authorization: Bearer <token>`` (else 401)."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                body = b'{"error": "unauthorized: a valid bearer token is required"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return guarded


@contextlib.asynccontextmanager
async def serve(
    server: MachineMcp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    path: str = "/mcp",
) -> AsyncIterator[str]:
    """Serve ``server`` with hypercorn until the block exits; yields the endpoint URL.

    ``port=0`` picks a free one. Loopback by default: pass ``token`` before
    binding anything else.
    """
    import hypercorn.config
    import sniffio

    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        raise ValueError(f"refusing to serve MCP on {host} without a token")
    port = port or free_port()
    config = hypercorn.config.Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.5
    stop = anyio.Event()
    app = server.app(token=token, path=path, host=host)
    if sniffio.current_async_library() == "trio":
        import hypercorn.trio as hyper
    else:
        import hypercorn.asyncio as hyper  # type: ignore[no-redef]
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: hyper.serve(app, config, shutdown_trigger=stop.wait))
        with anyio.fail_after(10):
            while True:
                try:
                    stream = await anyio.connect_tcp(host, port)
                except OSError:
                    await anyio.sleep(0.01)
                    continue
                await stream.aclose()
                break
        try:
            yield f"http://{host}:{port}{path}"
        finally:
            stop.set()
