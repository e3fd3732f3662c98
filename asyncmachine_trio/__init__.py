"""asyncmachine-trio: clock-based, relational, multi-state machines for trio.

``import asyncmachine_trio as am`` gives the whole core API; the layers above it
(``am.helpers``, ``am.states``, ``am.history``, ``am.rpc``, ``am.testing``) load on first use.
"""

from typing import Any as _Any

from .machine import machine as _machine_module
from .machine.args import ARGS_PREFIX as ARGS_PREFIX
from .machine.args import ACheck as ACheck
from .machine.args import AException as AException
from .machine.args import ExceptionArgsPanic as ExceptionArgsPanic
from .machine.args import TypedArgs as TypedArgs
from .machine.args import args_key as args_key
from .machine.args import args_merge as args_merge
from .machine.args import parse_args as parse_args
from .machine.args import pass_args as pass_args
from .machine.clock import Time as Time
from .machine.clock import TimeIndex as TimeIndex
from .machine.clock import is_active_tick as is_active_tick
from .machine.clock import next_active as next_active
from .machine.clock import next_active_in as next_active_in
from .machine.clock import next_inactive as next_inactive
from .machine.clock import next_inactive_in as next_inactive_in
from .machine.errors import ArgumentError as ArgumentError
from .machine.errors import AsyncMachineError as AsyncMachineError
from .machine.errors import AutoLivelockError as AutoLivelockError
from .machine.errors import DisposedError as DisposedError
from .machine.errors import HandlerTimeoutError as HandlerTimeoutError
from .machine.errors import NestedEvalError as NestedEvalError
from .machine.errors import NoNurseryError as NoNurseryError
from .machine.errors import RelationError as RelationError
from .machine.errors import SchemaError as SchemaError
from .machine.errors import StateUnknownError as StateUnknownError
from .machine.errors import TracerError as TracerError
from .machine.errors import WrongThreadError as WrongThreadError
from .machine.handlers import ExceptionHandler as ExceptionHandler
from .machine.handlers import HandlerWarning as HandlerWarning
from .machine.handlers import not_handler as not_handler
from .machine.handlers import snake as snake
from .machine.logging import LOG_ARGS as LOG_ARGS
from .machine.logging import LogLevel as LogLevel
from .machine.logging import log_args_mapper as log_args_mapper
from .machine.machine import Machine as Machine
from .machine.machine import Serialized as Serialized
from .machine.mutation import Mutation as Mutation
from .machine.mutation import MutationType as MutationType
from .machine.mutation import MutSource as MutSource
from .machine.mutation import Position as Position
from .machine.mutation import Result as Result
from .machine.names import StateNames as StateNames
from .machine.open import open_machine as open_machine
from .machine.resolver import Relation as Relation
from .machine.schema import ANY as ANY
from .machine.schema import DISPOSING as DISPOSING
from .machine.schema import EXCEPTION as EXCEPTION
from .machine.schema import HEALTHCHECK as HEALTHCHECK
from .machine.schema import HEARTBEAT as HEARTBEAT
from .machine.schema import MACHINE_RESTORED as MACHINE_RESTORED
from .machine.schema import READY as READY
from .machine.schema import START as START
from .machine.schema import TAG_ARGS_REQ as TAG_ARGS_REQ
from .machine.schema import Schema as Schema
from .machine.schema import State as State
from .machine.schema import StateGroups as StateGroups
from .machine.schema import States as States
from .machine.schema import adjacent_states as adjacent_states
from .machine.schema import parse_schema as parse_schema
from .machine.schema import schema_filter_by_tag as schema_filter_by_tag
from .machine.schema import schema_merge as schema_merge
from .machine.schema import schema_prefix as schema_prefix
from .machine.schema import states_by_tag as states_by_tag
from .machine.slist import capitalize as capitalize
from .machine.slist import hash_str as hash_str
from .machine.slist import index_to_states as index_to_states
from .machine.slist import states_add as states_add
from .machine.slist import states_diff as states_diff
from .machine.slist import states_equal as states_equal
from .machine.slist import states_equal_order as states_equal_order
from .machine.slist import states_filter_match as states_filter_match
from .machine.slist import states_hash as states_hash
from .machine.slist import states_prefix as states_prefix
from .machine.slist import states_remove as states_remove
from .machine.slist import states_shared as states_shared
from .machine.slist import states_to_index as states_to_index
from .machine.slist import states_unique as states_unique
from .machine.slist import states_with_prefix as states_with_prefix
from .machine.tracing import LastTxTracer as LastTxTracer
from .machine.tracing import Tracer as Tracer
from .machine.transition import Event as Event
from .machine.transition import Step as Step
from .machine.transition import StepType as StepType
from .machine.transition import Transition as Transition
from .machine.waiting import Ctx as Ctx
from .machine.waiting import StateCtx as StateCtx
from .machine.waiting import Waiter as Waiter

__version__ = "0.1.0"

# telemetry opt-in by environment (AM_DBG_ADDR, AM_OTEL_TRACE...): a machine
# hook is registered only when one of the variables is set
from .machine.tracing import env_boot as _env_boot

_env_boot()

compiled: bool = not str(getattr(_machine_module, "__file__", "")).endswith(".py")
"""True when the core modules run compiled with mypyc (a wheel built from source with a
C compiler), False for the pure package. Getting started: the compiled core."""

# the other layers load on first use (``am.rpc`` needs the ``[rpc]`` extra; ``am.vis``
# text output needs nothing, its SVG the ``[vis]`` extra), which keeps
# ``import asyncmachine_trio`` cheap (benchmarks/import_time.py)
_LAZY = ("graph", "helpers", "history", "node", "rpc", "states", "telemetry", "testing", "vis")


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
