"""Test configuration: a deterministic hypothesis profile for CI."""

from __future__ import annotations

import os

from hypothesis import settings

# CI replays the same examples every run (a red CI must be reproducible);
# local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
