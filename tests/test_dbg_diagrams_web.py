"""The diagrams web server of am-dbg: index, viewers, raw diagrams, server-sent
events, files of --dir only; hostile requests get a 4xx and the server lives on."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from asyncmachine_trio.tools.dbg.logic import Debugger
from asyncmachine_trio.tools.dbg.outputs import OutputOptions, Outputs
from asyncmachine_trio.tools.dbg.web import DiagramServer
from tests.dbg_screens import demo_store

both = pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])


@asynccontextmanager
async def serving(tmp_path: Path, **kw: Any) -> AsyncIterator[tuple[DiagramServer, Debugger]]:
    store = demo_store()
    dbg = Debugger(store, tail=False)
    dbg.refresh()
    dbg.last()
    dbg.back(3)
    dbg.select_state("Working")
    out = Outputs(store, dbg, OutputOptions(tmp_path / "out", interval=0.05))
    server = DiagramServer(out, **kw)
    (tmp_path / "secret.txt").write_text("not served")
    async with anyio.create_task_group() as tg:
        await tg.start(out.run)
        await tg.start(server.serve, "127.0.0.1", 0)
        yield server, dbg
        tg.cancel_scope.cancel()


async def until(cond: Callable[[], bool]) -> None:
    """Poll server counters (no event to wait on)."""
    with anyio.fail_after(10):
        while not cond():  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def raw(port: int, data: bytes, *, close: bool = False) -> bytes:
    """Send ``data``, read the answer until the server closes."""
    with anyio.fail_after(10):
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(data)
            if close:
                await s.send_eof()
            out = b""
            try:
                while True:
                    out += await s.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
            return out


async def raw_rest(s: anyio.abc.ByteStream) -> bytes:
    """What the server sends on ``s`` until it closes."""
    out = b""
    with anyio.fail_after(10):
        try:
            while True:
                out += await s.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass
    return out


@both
async def test_index_viewers_diagrams_files(tmp_path: Path, anyio_backend: Any) -> None:
    async with serving(tmp_path) as (server, _dbg), httpx.AsyncClient(base_url=server.url) as c:
        r = await c.get("/view/steps", timeout=10)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert 'const type = "steps"' in r.text and "EventSource" in r.text
        for kind in ("mach", "state", "steps", "graph"):
            r = await c.get(f"/diagram/{kind}", timeout=20)
            assert r.status_code == 200, (kind, r.text)
            ctype = r.headers["content-type"]
            if ctype.startswith("image/svg"):
                assert "<svg" in r.text
            else:
                assert ctype.startswith("text/plain")
                assert r.text.startswith(("flowchart", "sequenceDiagram"))
        r = await c.get("/", timeout=10)
        assert r.status_code == 200
        for kind in ("mach", "graph", "state", "steps"):
            assert f'href="/view/{kind}"' in r.text
        assert 'href="/files/tx.md"' in r.text and "diagrams/steps.mermaid" in r.text
        r = await c.get("/files/tx.md", timeout=10)
        assert r.status_code == 200 and r.text.startswith("# worker: transition")
        assert r.headers["x-content-type-options"] == "nosniff"
        r = await c.get("/files/diagrams/steps.mermaid.txt", timeout=10)
        assert r.status_code == 200 and "[remove]" in r.text
        r = await c.head("/files/tx.md", timeout=10)
        assert r.status_code == 200 and r.content == b""
        r = await c.get("/diagram/nope", timeout=10)
        assert r.status_code == 404 and "known: mach" in r.text


@both
async def test_events_refresh_the_viewers(tmp_path: Path, anyio_backend: Any) -> None:
    async with serving(tmp_path) as (server, dbg):
        with anyio.fail_after(20):
            async with await anyio.connect_tcp("127.0.0.1", server.port) as s:
                await s.send(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
                got = b""
                while b"retry:" not in got:
                    got += await s.receive()
                assert b"text/event-stream" in got
                # the stream asks for the diagrams; a cursor move changes the steps one
                await until(lambda: server.outputs.level() >= 2 and server.streams == 1)
                await server.outputs.wait_round()
                dbg.fwd()
                while b'"Id": "steps"' not in got:
                    got += await s.receive()
                assert b'data: {"Event": "refresh", "Id": "steps"' in got
    assert server.streams == 0


@both
async def test_hostile_requests(tmp_path: Path, anyio_backend: Any) -> None:
    async with serving(tmp_path, head_timeout=0.5, max_head=4096) as (server, _dbg):
        port = server.port
        for path in (
            "/files/../secret.txt",
            "/files/%2e%2e/secret.txt",
            "/files/diagrams/../../secret.txt",
            "/files//etc/passwd",
            "/files/%2Fetc%2Fpasswd",
            "/files/..%2Fsecret.txt",
            "/files/.%2e/secret.txt",
            "/files/%ff%fe",
            "/files/a%00b",
            "/files/diagrams",
            "/files/.hidden",
            "/nope",
        ):
            ans = await raw(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert ans.startswith(b"HTTP/1.1 404 "), (path, ans[:80])
            assert b"not served" not in ans
        # a symlink out of the directory is not followed (the directory may not be
        # written yet: make it, with a file that is served, so the 404 means something)
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        (out / "ok.txt").write_text("served")
        ans = await raw(port, b"GET /files/ok.txt HTTP/1.1\r\n\r\n")
        assert ans.startswith(b"HTTP/1.1 200 ") and ans.endswith(b"served"), ans[:80]
        (out / "link.txt").symlink_to(tmp_path / "secret.txt")
        ans = await raw(port, b"GET /files/link.txt HTTP/1.1\r\n\r\n")
        assert ans.startswith(b"HTTP/1.1 404 ")
        ans = await raw(port, b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
        assert ans.startswith(b"HTTP/1.1 405 ")
        for bad in (b"GARBAGE\r\n\r\n", b"GET x HTTP/1.1\r\n\r\n", b"GET / FTP/1\r\n\r\n"):
            ans = await raw(port, bad)
            assert ans.startswith(b"HTTP/1.1 400 "), (bad, ans[:60])
        ans = await raw(port, b"GET /\xff HTTP/1.1\r\n\r\n")
        assert ans.startswith(b"HTTP/1.1 400 ")
        # huge headers
        ans = await raw(port, b"GET / HTTP/1.1\r\n" + b"X-A: " + b"a" * 10_000 + b"\r\n\r\n")
        assert ans.startswith(b"HTTP/1.1 431 ")
        # a slow client: half a request head, then nothing
        ans = await raw(port, b"GET / HTTP/1.1\r\nHost:")
        assert ans.startswith(b"HTTP/1.1 408 ")
        # a client that closes its side early gets an answer to what it sent
        ans = await raw(port, b"GET /nope HTTP/1.1\r\n\r\n", close=True)
        assert ans.startswith(b"HTTP/1.1 404 ")
        # still serving
        async with httpx.AsyncClient(base_url=server.url) as c:
            r = await c.get("/", timeout=10)
            assert r.status_code == 200
        assert server.connections == 0
        assert server.answered[404] >= 13 and server.answered[431] == 1


@both
async def test_connection_limits(tmp_path: Path, anyio_backend: Any) -> None:
    async with serving(tmp_path, max_connections=2, max_events=1, head_timeout=5) as (s, _):
        with anyio.fail_after(20):
            # connections trickling their heads: a newcomer closes the oldest (503)
            held = [await anyio.connect_tcp("127.0.0.1", s.port) for _ in range(2)]
            await until(lambda: s.connections == 2)
            await held[0].send(b"GET / HT")
            ans = await raw(s.port, b"GET / HTTP/1.1\r\n\r\n")
            assert ans.startswith(b"HTTP/1.1 200 ")
            evicted = await raw_rest(held[0])
            assert evicted.startswith(b"HTTP/1.1 503 ") and b"slowest" in evicted
            assert s.evicted == 1
            for h in held:
                await h.aclose()
            await until(lambda: s.connections == 0)
            # connections past their heads (stalled downloads) are not evicted: 503
            (tmp_path / "out").mkdir(exist_ok=True)
            (tmp_path / "out" / "big.bin").touch()
            os.truncate(tmp_path / "out" / "big.bin", 64 * 1024 * 1024)
            stalled = []
            for _ in range(2):
                c = await anyio.connect_tcp("127.0.0.1", s.port)
                await c.send(b"GET /files/big.bin HTTP/1.1\r\n\r\n")
                stalled.append(c)
            await until(lambda: s.connections == 2 and not s._reading)
            ans = await raw(s.port, b"GET / HTTP/1.1\r\n\r\n")
            assert ans.startswith(b"HTTP/1.1 503 ") and b"too many connections" in ans
            for c in stalled:
                await c.aclose()
            await until(lambda: s.connections == 0)
            first = await anyio.connect_tcp("127.0.0.1", s.port)
            await first.send(b"GET /events HTTP/1.1\r\n\r\n")
            await until(lambda: s.streams == 1)
            ans = await raw(s.port, b"GET /events HTTP/1.1\r\n\r\n")
            assert ans.startswith(b"HTTP/1.1 503 ") and b"event streams" in ans
            await first.aclose()


CHROME = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]
CHROME += ["--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1"]
VIEWER_STATE = """
(() => {
  const img = document.querySelector("#d img");
  const pre = document.querySelector("#d pre");
  return JSON.stringify({img: img ? img.src : "", pre: pre ? pre.textContent : "",
                         note: document.getElementById("n").textContent});
})()
"""


def launch(exe: str, profile: Path) -> subprocess.Popen[bytes]:
    """Headless Chromium with the DevTools protocol on a free loopback port."""
    return subprocess.Popen(
        [exe, *CHROME, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_viewer_in_chromium(tmp_path: Path, anyio_backend: Any) -> None:
    """The viewer page in headless Chromium shows the diagram and reloads it when
    the cursor moves (server-sent events)."""
    import json

    from trio_websocket import open_websocket_url

    from tests.test_dbg_web import chromium

    exe = chromium()
    async with serving(tmp_path) as (server, dbg):
        profile = tmp_path / "chrome"
        browser = launch(exe, profile)
        try:
            with anyio.fail_after(90):
                active = profile / "DevToolsActivePort"
                while not (active.exists() and active.read_text().strip()):  # noqa: ASYNC110
                    await anyio.sleep(0.1)
                dport = int(active.read_text().split()[0])
                async with httpx.AsyncClient() as client:
                    targets = (await client.get(f"http://127.0.0.1:{dport}/json/list")).json()
                ws_url = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
                async with open_websocket_url(ws_url, max_message_size=1 << 26) as ws:
                    ids = iter(range(1, 10_000))

                    async def call(method: str, **params: Any) -> Any:
                        mid = next(ids)
                        msg = {"id": mid, "method": method, "params": params}
                        await ws.send_message(json.dumps(msg))
                        while True:
                            got = json.loads(await ws.get_message())
                            if got.get("id") == mid:
                                return got.get("result", {})

                    async def state() -> dict[str, str]:
                        res = await call("Runtime.evaluate", expression=VIEWER_STATE)
                        return dict(json.loads(res.get("result", {}).get("value", "{}")))

                    await call("Page.enable")
                    await call("Page.navigate", url=server.url + "/view/steps")
                    seen = await state()
                    while not (seen.get("img") or seen.get("pre")):
                        await anyio.sleep(0.1)
                        seen = await state()
                    if seen["pre"]:  # no d2: the Mermaid text
                        assert seen["pre"].startswith("sequenceDiagram")
                    else:
                        assert seen["img"].startswith("blob:")
                    first = seen
                    dbg.fwd()  # the steps diagram changes; the page reloads it
                    while seen["img"] == first["img"] and seen["pre"] == first["pre"]:
                        await anyio.sleep(0.1)
                        seen = await state()
                    assert seen["note"].startswith("updated")
        finally:
            browser.terminate()
            browser.wait(timeout=20)
