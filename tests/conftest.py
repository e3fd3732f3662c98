"""Test configuration: a deterministic hypothesis profile for CI."""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio.testing
from hypothesis import settings

# CI replays the same examples every run (a red CI must be reproducible);
# local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Async tests run on trio (a fresh virtual clock per test) and on asyncio."""
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return ("asyncio", {})
