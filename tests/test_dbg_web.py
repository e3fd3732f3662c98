"""am-dbg --web: the TUI served through textual-serve on loopback, opened by headless
Chromium; the page's terminal stream carries the machine list."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from asyncmachine_trio.tools.dbg.session import export_session
from tests.dbg_screens import demo_store
from tests.proc_util import communicate

ROOT = Path(__file__).resolve().parent.parent

# wraps the page's WebSocket so the terminal bytes it receives can be read back
CAPTURE = """
(() => {
  const Orig = window.WebSocket;
  window.__amText = "";
  function Capturing(url, protocols) {
    const ws = protocols ? new Orig(url, protocols) : new Orig(url);
    ws.addEventListener("message", (e) => {
      if (typeof e.data !== "string") {
        window.__amText += new TextDecoder().decode(new Uint8Array(e.data));
      }
    });
    return ws;
  }
  Capturing.prototype = Orig.prototype;
  window.WebSocket = Capturing;
})();
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, timeout=600
        )
        found = shutil.which("chromium")
    if not found:
        pytest.skip("Debian chromium is not installed and apt-get could not install it")
    return found


def listening_on(port: int) -> list[str]:
    """Local addresses listening on ``port`` (Linux /proc/net/tcp*)."""
    out = []
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(f).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if int(p, 16) == port and state == "0A":
                out.append(addr)
    return out


def test_web_on_loopback_in_chromium(tmp_path: Path) -> None:
    export_session(demo_store(), tmp_path / "s.amdbg.gz")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncmachine_trio.tools.dbg",
            "--web",
            str(port),
            "-l",
            "-1",
            "--import",
            str(tmp_path / "s.amdbg.gz"),
            "--dir",  # its files (tx.md) go here, not into the checkout
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    browser: subprocess.Popen[bytes] | None = None
    try:
        assert proc.stdout is not None
        assert f"serving the UI on http://127.0.0.1:{port}" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        page = None
        while time.monotonic() < deadline:
            try:
                page = httpx.get(url, timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert page is not None and page.status_code == 200
        assert "textual-terminal" in page.text and "am-dbg" in page.text
        if Path("/proc/net/tcp").exists():
            # loopback only: 0100007F is 127.0.0.1
            assert listening_on(port) == ["0100007F"]
        exe = chromium()
        profile = tmp_path / "chrome"
        browser = subprocess.Popen(
            [
                exe,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                f"--user-data-dir={profile}",
                "--window-size=1400,900",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        text = trio.run(read_page, profile, url)
        assert "worker-net" in text and "worker-db" in text
        assert "Machines:3" in text
    finally:
        if browser is not None:
            browser.terminate()
            browser.wait(timeout=20)
        proc.terminate()
        communicate(proc, timeout=20)


async def read_page(profile: Path, url: str) -> str:
    """Open ``url`` in the browser over the DevTools protocol; the terminal text it got."""
    with trio.fail_after(60):
        active = profile / "DevToolsActivePort"
        for _ in range(600):
            if active.exists() and active.read_text().strip():
                break
            await trio.sleep(0.1)
        dport = int(active.read_text().split()[0])
        async with httpx.AsyncClient() as client:
            targets = (await client.get(f"http://127.0.0.1:{dport}/json/list")).json()
        ws_url = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
        async with open_websocket_url(ws_url, max_message_size=64 * 1024 * 1024) as ws:
            ids = iter(range(1, 10_000))

            async def call(method: str, **params: Any) -> Any:
                mid = next(ids)
                await ws.send_message(json.dumps({"id": mid, "method": method, "params": params}))
                while True:
                    msg = json.loads(await ws.get_message())
                    if msg.get("id") == mid:
                        return msg.get("result", {})

            await call("Page.enable")
            await call("Page.addScriptToEvaluateOnNewDocument", source=CAPTURE)
            await call("Page.navigate", url=url)
            text = ""
            while "worker-db" not in text or "Machines:3" not in text:
                await trio.sleep(0.2)
                res = await call("Runtime.evaluate", expression="window.__amText || ''")
                text = res.get("result", {}).get("value", "")
            return text
