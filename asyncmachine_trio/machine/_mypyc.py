"""``mypyc_attr`` for the modules the compiled build compiles with mypyc.

Type checkers and mypyc see the real decorator of ``mypy_extensions``; at run time it
is a no-op here, so the pure package does not depend on ``mypy_extensions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["mypyc_attr"]

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:

    def mypyc_attr(*attrs: Any, **kwattrs: Any) -> Any:
        """No-op outside mypyc: returns the class unchanged."""
        return lambda cls: cls
