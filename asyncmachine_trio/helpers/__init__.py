"""Helpers above the core: waiting, confirmed mutations, retries, checks, loops, pools.

A port of the reference's ``pkg/helpers`` and ``pkg/x/helpers`` (see
docs/cookbook.md). Everything runs on trio or asyncio (anyio). Differences from the
reference, on purpose:

* Go's ``ctx`` becomes an optional ``ctx: am.Ctx`` (e.g. a state context); a helper
  waiting on it stops when it is cancelled. ``timeout`` is in seconds, ``None``
  waits forever, and an expired timeout raises the builtin :class:`TimeoutError`.
  With ``AM_DEBUG`` set (and not ``AM_TEST_RUNNER``) timeouts are 100 times longer.
* ``add_sync`` / ``add_async`` keep the reference's names but are coroutines:
  "sync" waits for the mutation itself, "async" for a later confirming state.
* Waiters handed to the ``wait_for_*`` helpers are consumed: closed on return
  (``close=False`` keeps the unresolved ones registered).
* Bugs the reference has are fixed (see each docstring): ``remove_sync`` result,
  ``wait_for_err_any`` never seeing the error, ``cant_add`` polarity, the
  ``StateLoop`` threshold, ``Cond.is_empty``, ``nested_state``'s Multi tick,
  list truncation in ``args_to_log_map``.

Not ported: telemetry and semantic-logger setup (``MachDebug*``, ``SemConfigEnv``),
``NewMirror`` (needs the pipes of ``states/``), REPL args (``ArgsUnmarshal``,
``ArgsNames``), the visualisation matrices other than :func:`time_matrix`, and
what the core already has (``StatesToIndexes`` = ``am.states_to_index``).
"""

from .api import MachineApi as MachineApi
from .env import ENV_AM_DBG_ADDR as ENV_AM_DBG_ADDR
from .env import ENV_AM_DEBUG as ENV_AM_DEBUG
from .env import ENV_AM_HEALTHCHECK as ENV_AM_HEALTHCHECK
from .env import ENV_AM_LOG as ENV_AM_LOG
from .env import ENV_AM_LOG_PRINT as ENV_AM_LOG_PRINT
from .env import ENV_AM_TEST_RUNNER as ENV_AM_TEST_RUNNER
from .env import enable_debugging as enable_debugging
from .env import is_debug as is_debug
from .env import is_telemetry as is_telemetry
from .env import is_test_runner as is_test_runner
from .env import set_env_log_level as set_env_log_level
from .errors import ContextCanceledError as ContextCanceledError
from .errors import EvalError as EvalError
from .errors import ExceptionStateError as ExceptionStateError
from .errors import MutationCanceledError as MutationCanceledError
from .errors import RetriesExceededError as RetriesExceededError
from .errors import StateLoopError as StateLoopError
from .handlers import DISPOSED_ARG_HANDLER as DISPOSED_ARG_HANDLER
from .handlers import REGISTER_DISPOSAL as REGISTER_DISPOSAL
from .handlers import dispose as dispose
from .handlers import dispose_bind as dispose_bind
from .handlers import eval_getter as eval_getter
from .handlers import eval_setter as eval_setter
from .handlers import healthcheck as healthcheck
from .handlers import nested_state as nested_state
from .handlers import remove_multi as remove_multi
from .logs import LOG_ARGS_MAX_LEN as LOG_ARGS_MAX_LEN
from .logs import args_to_log_map as args_to_log_map
from .logs import log_args as log_args
from .loops import Cond as Cond
from .loops import MachGroup as MachGroup
from .loops import StateLoop as StateLoop
from .misc import activations as activations
from .misc import get_transition_states as get_transition_states
from .misc import handler_to_state as handler_to_state
from .misc import rand_id as rand_id
from .misc import result_to_err as result_to_err
from .misc import tag_value as tag_value
from .misc import tag_value_int as tag_value_int
from .misc import time_matrix as time_matrix
from .mutations import MutRequest as MutRequest
from .mutations import add1_async as add1_async
from .mutations import add1_sync as add1_sync
from .mutations import add_async as add_async
from .mutations import add_sync as add_sync
from .mutations import ask_add as ask_add
from .mutations import ask_add1 as ask_add1
from .mutations import ask_remove as ask_remove
from .mutations import ask_remove1 as ask_remove1
from .mutations import cant_add as cant_add
from .mutations import cant_add1 as cant_add1
from .mutations import cant_remove as cant_remove
from .mutations import cant_remove1 as cant_remove1
from .mutations import new_req_add as new_req_add
from .mutations import new_req_add1 as new_req_add1
from .mutations import new_req_remove as new_req_remove
from .mutations import new_req_remove1 as new_req_remove1
from .mutations import remove1_sync as remove1_sync
from .mutations import remove_sync as remove_sync
from .pools import FanHandlers as FanHandlers
from .pools import TaskPool as TaskPool
from .pools import fan_out as fan_out
from .pools import fan_out_in as fan_out_in
from .pools import open_pool as open_pool
from .schema import copy_schema as copy_schema
from .schema import count_relations as count_relations
from .schema import implements as implements
from .schema import is_multi as is_multi
from .schema import schema_canonical as schema_canonical
from .schema import schema_hash as schema_hash
from .schema import schema_implements as schema_implements
from .waiting import Waitable as Waitable
from .waiting import group_when1 as group_when1
from .waiting import interval as interval
from .waiting import wait as wait
from .waiting import wait_for_all as wait_for_all
from .waiting import wait_for_any as wait_for_any
from .waiting import wait_for_err_all as wait_for_err_all
from .waiting import wait_for_err_any as wait_for_err_any
from .waiting import when_func as when_func

__all__ = [
    "DISPOSED_ARG_HANDLER",
    "ENV_AM_DBG_ADDR",
    "ENV_AM_DEBUG",
    "ENV_AM_HEALTHCHECK",
    "ENV_AM_LOG",
    "ENV_AM_LOG_PRINT",
    "ENV_AM_TEST_RUNNER",
    "LOG_ARGS_MAX_LEN",
    "REGISTER_DISPOSAL",
    "Cond",
    "ContextCanceledError",
    "EvalError",
    "ExceptionStateError",
    "FanHandlers",
    "MachGroup",
    "MachineApi",
    "MutRequest",
    "MutationCanceledError",
    "RetriesExceededError",
    "StateLoop",
    "StateLoopError",
    "TaskPool",
    "Waitable",
    "activations",
    "add1_async",
    "add1_sync",
    "add_async",
    "add_sync",
    "args_to_log_map",
    "ask_add",
    "ask_add1",
    "ask_remove",
    "ask_remove1",
    "cant_add",
    "cant_add1",
    "cant_remove",
    "cant_remove1",
    "copy_schema",
    "count_relations",
    "dispose",
    "dispose_bind",
    "enable_debugging",
    "eval_getter",
    "eval_setter",
    "fan_out",
    "fan_out_in",
    "get_transition_states",
    "group_when1",
    "handler_to_state",
    "healthcheck",
    "implements",
    "interval",
    "is_debug",
    "is_multi",
    "is_telemetry",
    "is_test_runner",
    "log_args",
    "nested_state",
    "new_req_add",
    "new_req_add1",
    "new_req_remove",
    "new_req_remove1",
    "open_pool",
    "rand_id",
    "remove1_sync",
    "remove_multi",
    "remove_sync",
    "result_to_err",
    "schema_canonical",
    "schema_hash",
    "schema_implements",
    "set_env_log_level",
    "tag_value",
    "tag_value_int",
    "time_matrix",
    "wait",
    "wait_for_all",
    "wait_for_any",
    "wait_for_err_all",
    "wait_for_err_any",
    "when_func",
]
