"""Node: supervised pools of worker processes, and clients that get a worker (extra ``[rpc]``).

A :class:`Supervisor` forks worker processes (each runs :func:`run_worker`
with a :class:`Worker`), keeps the pool at its policy, checks the workers'
health and replaces those that fail; a :class:`NodeClient` asks a supervisor
for a worker and then talks to that worker directly over aRPC. See
``docs/node.md``.
"""

from __future__ import annotations

from .client import NodeClient as NodeClient
from .client import open_node_client as open_node_client
from .errors import NodeError as NodeError
from .errors import NoWorkerError as NoWorkerError
from .errors import PoolError as PoolError
from .errors import WorkerError as WorkerError
from .errors import WorkerHealthError as WorkerHealthError
from .errors import WorkerLostError as WorkerLostError
from .states import BootstrapStates as BootstrapStates
from .states import ClientStates as ClientStates
from .states import SupervisorGroups as SupervisorGroups
from .states import SupervisorStates as SupervisorStates
from .states import WorkerGroups as WorkerGroups
from .states import WorkerStates as WorkerStates
from .supervisor import Supervisor as Supervisor
from .supervisor import WorkerClass as WorkerClass
from .supervisor import WorkerInfo as WorkerInfo
from .supervisor import open_supervisor as open_supervisor
from .worker import TOKEN_ENV as TOKEN_ENV
from .worker import Worker as Worker
from .worker import WorkFn as WorkFn
from .worker import run_worker as run_worker

__all__ = [
    "TOKEN_ENV",
    "BootstrapStates",
    "ClientStates",
    "NoWorkerError",
    "NodeClient",
    "NodeError",
    "PoolError",
    "Supervisor",
    "SupervisorGroups",
    "SupervisorStates",
    "WorkFn",
    "Worker",
    "WorkerClass",
    "WorkerError",
    "WorkerGroups",
    "WorkerHealthError",
    "WorkerInfo",
    "WorkerLostError",
    "WorkerStates",
    "open_node_client",
    "open_supervisor",
    "run_worker",
]
