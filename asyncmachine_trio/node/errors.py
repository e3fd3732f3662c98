"""Errors of the node layer."""

from __future__ import annotations

import asyncmachine_trio as am

__all__ = [
    "NoWorkerError",
    "NodeError",
    "PoolError",
    "WorkerError",
    "WorkerHealthError",
    "WorkerLostError",
]


class NodeError(am.AsyncMachineError):
    """Root of the node layer's errors."""


class WorkerError(NodeError):
    """A worker failed: it could not start, exited, or reported an error."""


class WorkerHealthError(WorkerError):
    """A worker did not answer its health check in time."""


class WorkerLostError(WorkerError):
    """The client's worker went away before the work's result arrived."""


class PoolError(NodeError):
    """The pool could not reach its minimum of ready workers."""


class NoWorkerError(NodeError):
    """No worker could be provided (none available in time, or the client's limit)."""
