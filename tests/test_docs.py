"""The site's runnable code blocks run (a doctest-style collector), and the site is complete.

A fenced ``python`` block right after a line ``<!-- run -->`` is runnable (see
docs/writing-docs.md). The runnable blocks of one page run in order in one
namespace, as a reader would paste them; each page is one test.
"""

from __future__ import annotations

import gc
import re
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKER = "<!-- run -->"
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


def runnable_blocks(text: str) -> list[tuple[int, str]]:
    """``(line, code)`` of each runnable block of a markdown page (1-based line of the code).

    Fences are tracked, so a marker shown inside another code block is not one.
    """
    lines = text.splitlines()
    blocks: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        marked = i > 0 and lines[i - 1].strip() == MARKER
        end = i + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(fence) and lines[end].strip().strip(fence[0]) == ""
        ):
            end += 1
        if end == len(lines):
            raise ValueError(f"unclosed code fence at line {i + 1}")
        if marked:
            if lang != "python":
                raise ValueError(f"line {i}: {MARKER} before a {lang or 'plain'} block")
            body = [ln[len(indent) :] for ln in lines[i + 1 : end]]
            blocks.append((i + 2, "\n".join(body) + "\n"))
        i = end + 1
    return blocks


def marker_misplaced(text: str) -> list[int]:
    """Lines of markers that are not directly followed by a code fence (outside fences)."""
    lines = text.splitlines()
    bad: list[int] = []
    in_fence: str | None = None
    for i, line in enumerate(lines):
        m = FENCE.match(line)
        if in_fence is None and m:
            in_fence = m.group(2)
        elif in_fence is not None and line.strip().startswith(in_fence):
            in_fence = None
        elif (
            in_fence is None
            and line.strip() == MARKER
            and (i + 1 >= len(lines) or not FENCE.match(lines[i + 1]))
        ):
            bad.append(i + 1)
    return bad


PAGES = sorted(p for p in DOCS.rglob("*.md") if runnable_blocks(p.read_text()))


def page_id(path: Path) -> str:
    return str(path.relative_to(DOCS))


def test_collector_finds_blocks() -> None:
    # the pages the docs helper owns mark their examples; others may add more
    ids = {page_id(p) for p in PAGES}
    assert {"index.md", "getting-started.md", "coming-from.md", "writing-docs.md"} <= ids
    # the manual's pages whose every complete program runs (fragments stay unmarked)
    assert {"manual.md", "cookbook.md", "states.md", "history.md", "rpc.md", "pubsub.md"} <= ids


def test_collector_ignores_markers_inside_code() -> None:
    text = "~~~markdown\n<!-- run -->\n```python\nraise SystemExit\n```\n~~~\n"
    assert runnable_blocks(text) == []
    text = "x\n<!-- run -->\n```python\nprint(1)\n```\n"
    assert runnable_blocks(text) == [(4, "print(1)\n")]
    with pytest.raises(ValueError, match="bash"):
        runnable_blocks("<!-- run -->\n```bash\nls\n```\n")


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.md")), ids=page_id)
def test_markers_are_placed(page: Path) -> None:
    assert marker_misplaced(page.read_text()) == [], f"{MARKER} not followed by a code block"


# py-libp2p 0.8 can leave a dial's socket to the garbage collector at shutdown
# (tests/test_pubsub.py has the same filter); the socket is libp2p's
_LIBP2P_SOCKET = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
PAGE_MARKS = {"pubsub.md": [_LIBP2P_SOCKET]}


@pytest.mark.parametrize(
    "page", [pytest.param(p, marks=PAGE_MARKS.get(page_id(p), []), id=page_id(p)) for p in PAGES]
)
def test_page_blocks_run(page: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "__main__"}
    for line, code in runnable_blocks(page.read_text()):
        # line numbers in tracebacks are the page's
        source = "\n" * (line - 1) + code
        try:
            exec(compile(source, str(page), "exec"), namespace)
        except Exception:
            pytest.fail(
                f"{page_id(page)}: the block at line {line} failed:\n{traceback.format_exc()}"
            )
    namespace.clear()
    gc.collect()  # what a page left to the collector goes now, under the page's marks
    capsys.readouterr()


def test_every_example_is_on_the_site() -> None:
    page = (DOCS / "examples.md").read_text()
    examples = ROOT / "examples"
    missing = [
        str(p.relative_to(examples))
        for p in sorted(examples.rglob("*.py"))
        if p.stem not in page and str(p.relative_to(examples)) not in page
    ]
    assert missing == [], "add these to docs/examples.md"


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [str(p.relative_to(DOCS)) for p in sorted(DOCS.rglob("*.md"))]
    assert [p for p in pages if p not in nav] == [], "add these pages to mkdocs.yml's nav"


def test_readme_links_every_page() -> None:
    readme = (ROOT / "README.md").read_text()
    pages = [p.name for p in sorted(DOCS.glob("*.md")) if p.name != "changelog.md"]
    assert [p for p in pages if f"(docs/{p})" not in readme] == [], "link these from README.md"
    assert "(docs/reference/index.md)" in readme


def test_node_page_worker_and_supervisor_run(tmp_path: Path) -> None:
    """docs/node.md: the worker file and the supervisor program, as a reader saves them.

    The supervisor's public port is 0 here (any free port): tests run in parallel.
    """
    import os
    import re
    import subprocess
    import sys

    text = (DOCS / "node.md").read_text()
    worker, supervisor = re.findall(r"```python\n(.*?)```", text, re.S)[:2]
    assert worker.startswith("# wordcount_worker.py\n")
    assert "7541" in supervisor
    (tmp_path / "wordcount_worker.py").write_text(worker)
    (tmp_path / "main.py").write_text(supervisor.replace("7541", "0"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, not an installed copy
    proc = subprocess.run(
        [sys.executable, "main.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "{'words': 3}"
