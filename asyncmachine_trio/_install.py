"""How to install an extra, as error messages spell it (the package or a checkout)."""

from __future__ import annotations


def install_hint(extra: str) -> str:
    """``pip install 'asyncmachine-trio[EXTRA]'`` and its spelling in a checkout.

    The package is not on PyPI yet: a checkout installs extras with
    ``pip install -e '.[EXTRA]'``.
    """
    return f"pip install 'asyncmachine-trio[{extra}]' (in a checkout: pip install -e '.[{extra}]')"
