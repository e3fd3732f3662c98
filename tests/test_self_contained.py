"""The repository stands on its own: no reference to files it does not contain.

Docs, docstrings and comments cite ``docs/semantics.md`` (``semantics §4.2``),
never the specification or design notes the project was built from; every
cited section and every ``docs/*.md`` page named exists.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEMANTICS = ROOT / "docs" / "semantics.md"

# spelled in pieces so that this file does not match itself
FORBIDDEN = re.compile(
    "|".join(
        [
            r"\bSPEC" + r"\b",
            r"\bDESIGN" + r"\b",
            "shared" + "/",
            "upper" + "-layers",
            "tooling" + r"\.md",
            "conformance" + "/",
        ]
    )
)
SUFFIXES = {".py", ".md", ".toml", ".txt", ".yml", ".yaml", ".cfg", ".ini", ".sh", ""}


def _files() -> list[Path]:
    out = [ROOT / n for n in ("README.md", "CHANGELOG.md", "noxfile.py", "pyproject.toml")]
    out.append(ROOT / ".ci" / "run")
    for top in ("asyncmachine_trio", "docs", "examples", "tests", "benchmarks"):
        for p in sorted((ROOT / top).rglob("*")):
            if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts:
                out.append(p)
    return [p for p in out if p.exists()]


def _headings() -> set[str]:
    """The section numbers of the semantics page: '4', '4.2', ..."""
    found = set()
    for line in SEMANTICS.read_text().splitlines():
        m = re.match(r"#{2,3} (\d+(?:\.\d+)?)[ .]", line)
        if m:
            found.add(m.group(1))
    return found


def test_no_file_refers_to_documents_outside_the_repository() -> None:
    hits = []
    for path in _files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert hits == []


def test_semantics_citations_name_existing_sections() -> None:
    sections = _headings()
    assert {"1.4", "4.2", "5.6", "6.1", "9.3", "14"} <= sections
    quirks = {int(m.group(1)) for m in re.finditer(r"^\| (\d+) \|", SEMANTICS.read_text(), re.M)}
    assert quirks == set(range(1, 31))
    bad = []
    cite = re.compile(r"semantics §(\d+(?:\.\d+)?)(?: #(\d+))?")
    for path in _files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for m in cite.finditer(line):
                if m.group(1) not in sections or (m.group(2) and int(m.group(2)) not in quirks):
                    bad.append(f"{path.relative_to(ROOT)}:{n}: {m.group(0)}")
    assert bad == []


def test_doc_pages_link_to_existing_pages() -> None:
    link = re.compile(r"\]\(([a-z_-]+\.md)(?:#[^)]*)?\)")
    missing = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for m in link.finditer(path.read_text()):
            base = ROOT if path.name == "README.md" else path.parent
            if not (base / m.group(1)).exists():
                missing.append(f"{path.relative_to(ROOT)}: {m.group(1)}")
    assert missing == []
