"""The diagrams web server of am-dbg (HTTP, loopback by default, on the listen port + 1).

A small HTTP/1.1 server on anyio (no extra dependency; runs on trio and
asyncio) serving, from the output directory only:

* ``/`` — an index: the four diagram viewers and the files in ``--dir``;
* ``/view/<type>`` — a viewer page for ``mach`` (the selected machine),
  ``graph`` (all machines), ``state`` (the selected state and its
  neighbours) or ``steps`` (the transition at the cursor); it reloads the
  diagram when it changes, told by server-sent events;
* ``/diagram/<type>`` — the diagram itself: the SVG (``image/svg+xml``) when
  the ``d2`` binary made one, else the Mermaid text (``text/plain``);
* ``/events`` — the server-sent events: ``{"Event": "refresh", "Id": type}``;
* ``/files/<path>`` — any file of the output directory.

While a viewer is open (or a diagram was asked for in the last minute), the
diagrams are produced even at ``--output-diagrams 0``.

Hostile input gets a 4xx and closes that connection only: request heads over
:attr:`DiagramServer.max_head` bytes (431), heads not complete within
``head_timeout`` seconds (408, slow clients), malformed request lines (400),
methods other than GET / HEAD (405), paths that leave the directory, hidden
files or links out of it (404). At most ``max_connections`` connections
(one more closes the oldest connection still sending its request head with a
503, or gets the 503 itself when none is) and ``max_events`` event streams at
once; a client that does not
read its response within ``send_timeout`` seconds is dropped. Files are sent
in pieces of ``chunk`` bytes, so memory does not grow with the files' sizes.
"""

from __future__ import annotations

import html
import json
import logging
import os
import posixpath
from pathlib import Path
from urllib.parse import unquote

import anyio
import anyio.abc

from ...telemetry.receiver import _serve_listener
from .outputs import DIAGRAM_TYPES, Outputs

__all__ = ["DiagramServer"]

_log = logging.getLogger("asyncmachine_trio.tools.dbg")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
_TYPES = {
    ".svg": "image/svg+xml",
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".mermaid": "text/plain; charset=utf-8",
    ".d2": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".addr": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".gz": "application/gzip",
}
_PAGE_CSP = (
    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline';"
    " img-src 'self' blob:"
)
_FILE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"

_STYLE = """
body { font-family: sans-serif; margin: 1em 2em; background: #1e1e1e; color: #ddd; }
a { color: #8ab4f8; } pre { background: #111; padding: 1em; overflow: auto; }
#d img { max-width: 100%; background: #fff; } .dim { color: #888; }
"""

_VIEWER_JS = """
const type = %s;
const box = document.getElementById("d");
const note = document.getElementById("n");
async function load() {
  const r = await fetch("/diagram/" + type + "?t=" + Date.now());
  if (r.status !== 200) { box.textContent = "no " + type + " diagram yet"; return; }
  const ct = r.headers.get("content-type") || "";
  if (ct.startsWith("image/svg")) {
    const blob = await r.blob();
    const img = document.createElement("img");
    img.src = URL.createObjectURL(blob);
    box.replaceChildren(img);
  } else {
    const pre = document.createElement("pre");
    pre.textContent = await r.text();
    box.replaceChildren(pre);
  }
  note.textContent = "updated " + new Date().toLocaleTimeString();
}
const es = new EventSource("/events");
es.onmessage = (e) => { const m = JSON.parse(e.data); if (m.Id === type) load(); };
load();
"""


class _HttpError(Exception):
    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message or _REASONS.get(status, "error"))
        self.status = status


class DiagramServer:
    """Serves the diagrams and files of an :class:`~.outputs.Outputs` (see the module doc)."""

    def __init__(
        self,
        outputs: Outputs,
        *,
        max_head: int = 16 * 1024,
        head_timeout: float = 10.0,
        send_timeout: float = 30.0,
        max_connections: int = 64,
        max_events: int = 16,
        ping_interval: float = 15.0,
        chunk: int = 64 * 1024,
    ) -> None:
        self.outputs = outputs
        self.root = Path(outputs.dir)
        self.max_head = max_head
        self.head_timeout = head_timeout
        self.send_timeout = send_timeout
        self.max_connections = max_connections
        self.max_events = max_events
        self.ping_interval = ping_interval
        #: files are sent in pieces of this many bytes (a request holds one at a time)
        self.chunk = chunk
        self.port = 0
        self.url = ""
        #: connections open now; event streams open now; requests answered by status
        self.connections = 0
        self.streams = 0
        self.answered: dict[int, int] = {}
        #: connections closed while sending their request heads, to make room
        self.evicted = 0
        self._reading: dict[anyio.CancelScope, None] = {}
        self._changed = anyio.Event()
        self._changes: list[str] = []
        self._seq = 0
        outputs.listeners.append(self._on_written)

    # ----- serving

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` until cancelled; ``task_status`` gets the base URL.

        A flood of connections exhausting the process's descriptors pauses
        accepting (0.1 s at a time) instead of ending the server.
        """
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            shown = f"[{host}]" if ":" in host else host
            self.url = f"http://{shown}:{self.port}"
            task_status.started(self.url)
            await _serve_listener(listener, self.handle, "am-dbg web")

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        """Answer one connection (one request, then close); never raises."""
        self.connections += 1
        try:
            async with stream:
                if self.connections > self.max_connections:
                    if not self._reading:
                        await self._send(stream, 503, b"too many connections\n")
                        return
                    # the oldest connection still sending its request head makes room
                    # (clients trickling their heads cannot lock the others out)
                    oldest = next(iter(self._reading))
                    del self._reading[oldest]
                    oldest.cancel()
                    self.evicted += 1
                try:
                    method, path = await self._read_head(stream)
                    await self._route(stream, method, path)
                except _HttpError as err:
                    await self._send(stream, err.status, f"{err}\n".encode())
        except (
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
            TimeoutError,
        ):
            pass
        except Exception:  # a bug must not take am-dbg down
            _log.exception("am-dbg web: request failed")
        finally:
            self.connections -= 1

    async def _read_head(self, stream: anyio.abc.ByteStream) -> tuple[str, str]:
        buf = b""
        with anyio.CancelScope() as evict:
            self._reading[evict] = None
            try:
                with anyio.move_on_after(self.head_timeout) as scope:
                    while b"\r\n\r\n" not in buf and b"\n\n" not in buf:
                        chunk = await stream.receive(4096)
                        buf += chunk
                        if len(buf) > self.max_head:
                            raise _HttpError(431, f"request head over {self.max_head} bytes")
            finally:
                self._reading.pop(evict, None)
        if evict.cancelled_caught:
            raise _HttpError(503, "too many connections: this request was the slowest")
        if scope.cancelled_caught:
            raise _HttpError(408, "request head not received in time")
        line = buf.split(b"\n", 1)[0].rstrip(b"\r")
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise _HttpError(400, "request line is not ASCII") from None
        parts = text.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _HttpError(400, "malformed request line")
        method, target, _version = parts
        if method not in ("GET", "HEAD"):
            raise _HttpError(405, f"method {method[:20]} not allowed")
        if not target.startswith("/"):
            raise _HttpError(400, "the target must be a path")
        path = target.split("?", 1)[0].split("#", 1)[0]
        return method, path

    async def _route(self, stream: anyio.abc.ByteStream, method: str, path: str) -> None:
        head = method == "HEAD"
        if path in ("/", "/index.html"):
            await self._send(
                stream,
                200,
                self._index().encode(),
                "text/html; charset=utf-8",
                csp=_PAGE_CSP,
                head=head,
            )
            return
        if path == "/events":
            await self._events(stream)
            return
        for prefix, fn in (("/view/", self._viewer), ("/diagram/", None)):
            if path.startswith(prefix):
                kind = path[len(prefix) :]
                if kind not in DIAGRAM_TYPES:
                    raise _HttpError(
                        404, f"no diagram {kind[:40]!r}; known: {', '.join(DIAGRAM_TYPES)}"
                    )
                self.outputs.demand()
                if fn is not None:
                    await self._send(
                        stream,
                        200,
                        fn(kind).encode(),
                        "text/html; charset=utf-8",
                        csp=_PAGE_CSP,
                        head=head,
                    )
                else:
                    await self._diagram(stream, kind, head)
                return
        if path.startswith("/files/"):
            file = self._safe_path(path[len("/files/") :])
            await self._file(stream, file, head)
            return
        raise _HttpError(404)

    def _safe_path(self, raw: str) -> Path:
        """The file of the output directory ``raw`` names, or 404."""
        try:
            rel = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise _HttpError(404) from None
        if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/"):
            raise _HttpError(404)
        parts = rel.split("/")
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise _HttpError(404)
        norm = posixpath.normpath(rel)
        root = self.root.resolve()
        full = (root / norm).resolve()
        if not full.is_relative_to(root) or not full.is_file():
            raise _HttpError(404)
        return full

    async def _file(self, stream: anyio.abc.ByteStream, file: Path, head: bool) -> None:
        """Send ``file`` in chunks of :attr:`chunk` bytes (memory stays bounded)."""
        try:
            f = await anyio.open_file(file, "rb")
        except OSError:
            raise _HttpError(404) from None
        async with f:
            try:
                size = (await anyio.to_thread.run_sync(os.fstat, f.wrapped.fileno())).st_size
            except OSError:
                raise _HttpError(404) from None
            ctype = _TYPES.get(file.suffix, "application/octet-stream")
            self._count(200)
            try:
                with anyio.fail_after(self.send_timeout):
                    await stream.send(_head(200, size, ctype, _FILE_CSP))
                    left = 0 if head else size
                    while left > 0:
                        data = await f.read(min(self.chunk, left))
                        if not data:  # the file shrank: the client sees a short body
                            break
                        await stream.send(data)
                        left -= len(data)
            except TimeoutError:
                pass  # a client that does not read: dropped

    async def _diagram(self, stream: anyio.abc.ByteStream, kind: str, head: bool) -> None:
        d = self.root / "diagrams"
        svg, mm = d / f"{kind}.svg", d / f"{kind}.mermaid"
        if not svg.is_file() and not mm.is_file():
            # asked for the first time: give the writer a round to make it
            for _ in range(2):
                with anyio.move_on_after(5) as scope:
                    await self.outputs.wait_round()
                if scope.cancelled_caught:
                    break
                if svg.is_file() or mm.is_file():
                    break
        # an SVG older than its D2 text is being re-rendered: the Mermaid text is current
        fresh = svg.is_file() and _mtime(svg) >= _mtime(d / f"{kind}.d2")
        if fresh:
            await self._file(stream, svg, head)
        elif mm.is_file():
            await self._file(stream, mm, head)
        else:
            raise _HttpError(404, f"no {kind} diagram (yet)")

    async def _events(self, stream: anyio.abc.ByteStream) -> None:
        if self.streams >= self.max_events:
            raise _HttpError(503, "too many event streams")
        self.streams += 1
        try:
            hdr = (
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                "Cache-Control: no-cache\r\nConnection: close\r\n\r\nretry: 2000\n\n"
            )
            self._count(200)
            await self._write(stream, hdr.encode())
            seq = self._seq
            while True:
                self.outputs.demand()
                with anyio.move_on_after(self.ping_interval):
                    await self._changed.wait()
                if self._seq == seq:
                    await self._write(stream, b": ping\n\n")
                    continue
                kinds = sorted(set(self._changes))
                seq = self._seq
                msg = "".join(
                    f"data: {json.dumps({'Event': 'refresh', 'Id': k, 'Group': ''})}\n\n"
                    for k in kinds
                )
                await self._write(stream, msg.encode())
        finally:
            self.streams -= 1

    def _on_written(self, paths: set[str]) -> None:
        kinds = {Path(p).name.split(".", 1)[0] for p in paths if p.startswith("diagrams/")} & set(
            DIAGRAM_TYPES
        )
        if not kinds:
            return
        self._seq += 1
        self._changes = sorted(kinds)
        ev, self._changed = self._changed, anyio.Event()
        ev.set()

    # ----- pages

    def _listing(self) -> list[str]:
        out: list[str] = []
        root = self.root
        try:
            for p in sorted(root.iterdir()):
                if p.name.startswith("."):
                    continue
                if p.is_file():
                    out.append(p.name)
                elif p.name == "diagrams" and p.is_dir():
                    out += [
                        f"diagrams/{q.name}"
                        for q in sorted(p.iterdir())
                        if q.is_file() and not q.name.startswith(".")
                    ]
                if len(out) >= 500:
                    break
        except OSError:
            pass
        return out

    def _index(self) -> str:
        views = "".join(
            f'<li><a href="/view/{k}">{k}</a> (<a href="/diagram/{k}">raw</a>)</li>'
            for k in DIAGRAM_TYPES
        )
        files = (
            "".join(
                f'<li><a href="/files/{html.escape(f, quote=True)}">{html.escape(f)}</a></li>'
                for f in self._listing()
            )
            or '<li class="dim">(none yet)</li>'
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>am-dbg</title>"
            f"<style>{_STYLE}</style></head><body><h1>am-dbg diagrams</h1>"
            f"<h2>Viewers</h2><ul>{views}</ul>"
            f"<h2>Files in {html.escape(str(self.root))}</h2><ul>{files}</ul></body></html>"
        )

    def _viewer(self, kind: str) -> str:
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>am-dbg: {kind}</title><style>{_STYLE}</style></head><body>"
            f'<p><a href="/">am-dbg</a> / {kind} <span id="n" class="dim"></span></p>'
            f'<div id="d" class="dim">loading...</div>'
            f"<script>{_VIEWER_JS % json.dumps(kind)}</script></body></html>"
        )

    # ----- low level

    def _count(self, status: int) -> None:
        self.answered[status] = self.answered.get(status, 0) + 1

    async def _write(self, stream: anyio.abc.ByteStream, data: bytes) -> None:
        with anyio.fail_after(self.send_timeout):
            await stream.send(data)

    async def _send(
        self,
        stream: anyio.abc.ByteStream,
        status: int,
        body: bytes,
        ctype: str = "text/plain; charset=utf-8",
        *,
        csp: str = _FILE_CSP,
        head: bool = False,
    ) -> None:
        self._count(status)
        hdr = _head(status, len(body), ctype, csp)
        try:
            await self._write(stream, hdr if head else hdr + body)
        except TimeoutError:
            pass  # a client that does not read: dropped


def _head(status: int, length: int, ctype: str, csp: str) -> bytes:
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {length}\r\n"
        "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
        f"Content-Security-Policy: {csp}\r\nConnection: close\r\n\r\n"
    ).encode()


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0
