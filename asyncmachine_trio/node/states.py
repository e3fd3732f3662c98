"""State schemas of the node layer, with the reference's state names, as typed ``am.States``.

Built from :mod:`asyncmachine_trio.states` (``BasicStates``) and the aRPC
schemas (``StateSourceStates``, ``ConsumerStates``): every node machine is
also an aRPC state source.
"""

from __future__ import annotations

import asyncmachine_trio as am

from ..rpc.states import ConsumerStates, StateSourceStates
from ..states.basic import BasicStates

__all__ = [
    "BootstrapStates",
    "ClientStates",
    "SupervisorGroups",
    "SupervisorStates",
    "WorkerGroups",
    "WorkerStates",
]

_EXC = (am.EXCEPTION,)
_START = (am.START,)
_WORK = ("WorkRequested", "Working", "WorkReady", "Idle")
_POOL_STATUS = ("PoolStarting", "PoolReady")
_POOL_NORM = ("PoolNormalized", "NormalizingPool")


class WorkerStates(BasicStates, StateSourceStates):
    """A worker process's machine: two aRPC servers (local, public) and the work status.

    Inherit it to add the states of your work (``class MyWorker(WorkerStates)``).
    """

    ErrWork: am.State = am.State(require=_EXC)
    ErrWorkTimeout: am.State = am.State(require=_EXC)
    ErrClient: am.State = am.State(require=_EXC)
    ErrSupervisor: am.State = am.State(require=_EXC)

    LocalRpcReady: am.State = am.State(require=_START)
    PublicRpcReady: am.State = am.State(require=_START)
    SuperConnected: am.State = am.State(require=_START)
    ClientConnected: am.State = am.State(require=_START)
    Ready: am.State = am.State(require=("LocalRpcReady",))
    RpcReady: am.State = am.State(auto=True, require=("LocalRpcReady", "PublicRpcReady"))
    ServeClient: am.State = am.State(require=("PublicRpcReady",))
    ClientSendPayload: am.State = am.State(require=("PublicRpcReady",))
    SuperSendPayload: am.State = am.State(require=("LocalRpcReady",))

    Idle: am.State = am.State(auto=True, require=(am.READY,), remove=_WORK)
    WorkRequested: am.State = am.State(require=(am.READY,), remove=_WORK)
    Working: am.State = am.State(require=(am.READY,), remove=_WORK)
    WorkReady: am.State = am.State(require=(am.READY,), remove=_WORK)


class WorkerGroups(am.StateGroups):
    """Groups of :class:`WorkerStates`."""

    WorkStatus: list[str] = list(_WORK)


class SupervisorStates(BasicStates, StateSourceStates):
    """The supervisor's machine: the pool, the workers' lifecycle and client requests."""

    ErrWorker: am.State = am.State(require=_EXC, add=("NormalizingPool", "Heartbeat"))
    ErrPool: am.State = am.State(require=_EXC, remove=("PoolNormalized",), add=("NormalizingPool",))

    ClientConnected: am.State = am.State(multi=True)
    ClientDisconnected: am.State = am.State(multi=True)
    LocalRpcReady: am.State = am.State(require=_START)
    PublicRpcReady: am.State = am.State(require=_START)
    WorkerReady: am.State = am.State(multi=True, require=_START)
    WorkerGone: am.State = am.State(multi=True, require=_START)

    Start: am.State = am.State(add=("PoolStarting",))
    Ready: am.State = am.State(auto=True, require=("LocalRpcReady", "PublicRpcReady", "PoolReady"))
    Heartbeat: am.State = am.State(require=_START)

    PoolStarting: am.State = am.State(remove=_POOL_STATUS)
    PoolReady: am.State = am.State(require=_START, remove=_POOL_STATUS)
    NormalizingPool: am.State = am.State(require=_START, remove=_POOL_NORM, after=("ErrWorker",))
    PoolNormalized: am.State = am.State(require=_START, remove=_POOL_NORM)
    WorkersAvailable: am.State = am.State(require=("PoolReady",))

    ForkWorker: am.State = am.State(multi=True, require=_START)
    ForkingWorker: am.State = am.State(multi=True, require=_START)
    WorkerConnected: am.State = am.State(multi=True, require=_START)
    WorkerForked: am.State = am.State(multi=True, require=_START)
    KillingWorker: am.State = am.State(multi=True)
    WorkerKilled: am.State = am.State(multi=True)

    ProvideWorker: am.State = am.State(multi=True, require=("WorkersAvailable",))
    WorkerIssues: am.State = am.State(multi=True)


class SupervisorGroups(am.StateGroups):
    """Groups of :class:`SupervisorStates`."""

    PoolStatus: list[str] = list(_POOL_STATUS)
    Errors: list[str] = ["ErrWorker", "ErrPool"]
    PoolNormalized: list[str] = list(_POOL_NORM)


class ClientStates(BasicStates, ConsumerStates):
    """A node client's machine: the supervisor and worker connections, piped."""

    ErrWorker: am.State = am.State(require=_EXC)
    ErrSupervisor: am.State = am.State(require=_EXC)

    SuperConnecting: am.State = am.State()
    SuperReady: am.State = am.State()
    WorkerConnecting: am.State = am.State()
    WorkerReady: am.State = am.State(remove=("WorkerRequested",))
    WorkerRequested: am.State = am.State(require=("SuperReady",))
    Ready: am.State = am.State(auto=True, require=("WorkerReady",))


class BootstrapStates(BasicStates, StateSourceStates):
    """The throw-away machine a new worker process reports its addresses to."""

    WorkerAddr: am.State = am.State()
