"""Environment switches (help.go IsDebug, IsTestRunner, ...)."""

from __future__ import annotations

import os

ENV_AM_DEBUG = "AM_DEBUG"
ENV_AM_TEST_RUNNER = "AM_TEST_RUNNER"
ENV_AM_LOG = "AM_LOG"
ENV_AM_LOG_PRINT = "AM_LOG_PRINT"
ENV_AM_HEALTHCHECK = "AM_HEALTHCHECK"
ENV_AM_DBG_ADDR = "AM_DBG_ADDR"


def is_test_runner() -> bool:
    """``AM_TEST_RUNNER`` is set."""
    return os.environ.get(ENV_AM_TEST_RUNNER, "") != ""


def is_debug() -> bool:
    """``AM_DEBUG`` is set and this is not the test runner."""
    return os.environ.get(ENV_AM_DEBUG, "") != "" and not is_test_runner()


def is_telemetry() -> bool:
    """``AM_DBG_ADDR`` is set and this is not the test runner."""
    return os.environ.get(ENV_AM_DBG_ADDR, "") != "" and not is_test_runner()


def set_env_log_level(level: int) -> None:
    """Set ``AM_LOG`` (the default log level of machines created later)."""
    os.environ[ENV_AM_LOG] = str(int(level))


def enable_debugging(stdout: bool = False) -> None:
    """Set ``AM_DEBUG``, ``AM_DBG_ADDR=1`` and ``AM_LOG=3`` (ops); no-op under the test runner."""
    if is_test_runner():
        return
    os.environ[ENV_AM_DEBUG] = "1"
    if stdout:
        os.environ[ENV_AM_LOG_PRINT] = "1"
    os.environ[ENV_AM_DBG_ADDR] = "1"
    set_env_log_level(3)


def env_on(name: str) -> bool:
    """The environment variable ``name`` is set to a non-empty value other than ``0``."""
    return os.environ.get(name, "") not in ("", "0")
