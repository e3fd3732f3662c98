"""The console scripts' entry points: a missing extra is one line naming it, not a traceback.

``pip install -e .`` installs every console script of ``[project.scripts]``, but
the tools import Typer, Rich, Textual... of the ``cli`` / ``dbg`` extras. Each
entry point here imports its tool's module (``TOOLS``) and, when a module of an
extra is missing, prints which extra to install and exits with code 2.
"""

from __future__ import annotations

import importlib
import sys

from .._install import install_hint
from . import TOOLS

#: the extra each tool needs (the ``cli`` extra includes ``dbg``)
EXTRA_OF: dict[str, str] = {
    "am-gen": "cli",
    "am-vis": "cli",
    "arpc": "cli",
    "am-dbg": "dbg",
    "am-relay": "cli",
}


def run(tool: str) -> None:
    """Import ``tool``'s module and call its ``main()``; a missing extra exits with code 2."""
    module, _ = TOOLS[tool]
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        name = getattr(err, "name", None) or getattr(err.__cause__, "name", None)
        missing = name.split(".")[0] if name else None
        if missing is None or missing == "asyncmachine_trio":
            raise
        sys.stderr.write(
            f"{tool} needs the {EXTRA_OF[tool]} extra (the module {missing!r} is missing):"
            f" {install_hint(EXTRA_OF[tool])}\n"
        )
        raise SystemExit(2) from None
    mod.main()


def am_gen() -> None:
    """``am-gen``."""
    run("am-gen")


def am_vis() -> None:
    """``am-vis``."""
    run("am-vis")


def arpc() -> None:
    """``arpc``."""
    run("arpc")


def am_dbg() -> None:
    """``am-dbg``."""
    run("am-dbg")


def am_relay() -> None:
    """``am-relay``."""
    run("am-relay")
