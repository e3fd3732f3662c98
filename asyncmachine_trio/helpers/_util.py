"""Private aliases shared by the helpers modules."""

from __future__ import annotations

from .. import Result

EXECUTED = Result.EXECUTED
CANCELED = Result.CANCELED
QUEUED = Result.QUEUED
