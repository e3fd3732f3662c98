"""MkDocs hooks for the documentation site (``hooks:`` in mkdocs.yml).

Docstrings use reStructuredText roles (``:class:`Name```, ``:func:`~mod.fn```);
mkdocstrings renders their text as Markdown, so the role name would show.
This hook turns a role into plain code: ``:class:`~a.b.C``` -> ``C``.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):<code>(~?)([^<]*)</code>")


def _code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    """Render reStructuredText roles in API docstrings as code."""
    return ROLE.sub(_code, html)
