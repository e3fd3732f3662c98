"""pytest plugin: ``AM_TEST_DEBUG=1 pytest`` sends every machine a test creates to am-dbg.

Registered through the ``pytest11`` entry point; does nothing unless
``AM_TEST_DEBUG`` is set (and ``AM_TEST_RUNNER``, which marks CI, is not). The
debugger address is ``AM_TEST_DBG_ADDR``, else ``AM_DBG_ADDR``, else
``localhost:6831``. Machines get
the tag ``test:<test name>`` so the debugger can group them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

    from ..machine.machine import Machine

__all__ = ["enabled", "pytest_configure", "pytest_runtest_setup", "pytest_unconfigure"]

_current_test = ""


def enabled() -> bool:
    """True when ``AM_TEST_DEBUG`` asks for the debugger and this is not a CI runner."""
    flag = os.environ.get("AM_TEST_DEBUG", "")
    return flag not in ("", "0", "false") and not os.environ.get("AM_TEST_RUNNER")


def _hook(mach: Machine, parent: Machine | None) -> None:
    from .dbg import attach

    if _current_test:
        tag = f"test:{_current_test}"
        if tag not in mach._tags:
            mach._tags.append(tag)
    try:
        env = os.environ
        attach(mach, env.get("AM_TEST_DBG_ADDR") or env.get("AM_DBG_ADDR") or "1")
    except Exception:  # never fail a test over telemetry
        pass


def pytest_configure(config: pytest.Config) -> None:
    if enabled():
        from ..machine.tracing import add_machine_hook

        add_machine_hook(_hook)


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _current_test
    _current_test = item.name if enabled() else ""


def pytest_unconfigure(config: Any) -> None:
    if enabled():
        from ..machine.tracing import remove_machine_hook
        from .dbg import exporters

        remove_machine_hook(_hook)
        for ex in exporters():
            ex.close()
