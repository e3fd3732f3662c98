"""Exceptions leave the package's context managers as themselves (issue 11, item 4).

A single exception raised in the body of ``open_machine``, ``open_pool``, the
rpc ``open_server`` / ``open_client`` / ``open_mux`` reaches the caller
unwrapped, with its traceback, cause and context; several concurrent failures
stay an ``ExceptionGroup``; bad options raise before any task starts.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import anyio
import pytest
import trio

import asyncmachine_trio as am
from asyncmachine_trio import rpc
from asyncmachine_trio.helpers import open_pool
from asyncmachine_trio.machine.excgroup import single_exception, unwrap_single

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

SCHEMA = {"A": am.State()}


def _raise_chained() -> None:
    try:
        raise KeyError("inner")
    except KeyError as inner:
        raise ValueError("outer") from inner


# ----- the helper


def test_unwrap_single_keeps_cause_context_and_traceback() -> None:
    with pytest.raises(ValueError, match="outer") as info:
        with unwrap_single():
            try:
                _raise_chained()
            except ValueError as err:
                raise ExceptionGroup("one", [err]) from None
    err = info.value
    assert isinstance(err.__cause__, KeyError)
    assert isinstance(err.__context__, KeyError)  # not the group
    frames = [f.name for f in traceback.extract_tb(err.__traceback__)]
    assert "_raise_chained" in frames


def test_unwrap_single_flattens_nested_groups_of_one() -> None:
    with pytest.raises(ValueError, match="deep"):
        with unwrap_single():
            raise ExceptionGroup("a", [ExceptionGroup("b", [ValueError("deep")])])


def test_unwrap_single_leaves_groups_of_several() -> None:
    with pytest.raises(ExceptionGroup) as info:
        with unwrap_single():
            raise ExceptionGroup("two", [ValueError("x"), ExceptionGroup("b", [KeyError("y")])])
    assert len(info.value.exceptions) == 2
    assert single_exception(info.value) is None


def test_unwrap_single_passes_plain_exceptions_and_base_exceptions() -> None:
    with pytest.raises(KeyError):
        with unwrap_single():
            raise KeyError("plain")
    with pytest.raises(KeyboardInterrupt):
        with unwrap_single():
            raise BaseExceptionGroup("base", [KeyboardInterrupt()])


# ----- open_machine and open_pool, on trio and asyncio


@pytest.mark.anyio
async def test_open_machine_body_error_is_unwrapped() -> None:
    with pytest.raises(ValueError, match="body") as info:
        async with am.open_machine(SCHEMA) as mach:
            mach.add1("A")
            raise ValueError("body")
    assert not isinstance(info.value, BaseExceptionGroup)
    assert mach.is_disposed


@pytest.mark.anyio
async def test_open_machine_forked_task_error_is_caught_by_its_type() -> None:
    # a fork's exception becomes the Exception state; a BaseException subclass
    # other than cancellation escapes the task group, alone: unwrapped
    class Stop(BaseException):
        pass

    async def boom() -> None:
        raise Stop

    with pytest.raises(Stop):
        async with am.open_machine(SCHEMA) as mach:
            mach.add1("A")
            mach.fork("A", boom)
            await anyio.sleep(1)


@pytest.mark.anyio
async def test_open_machine_several_errors_stay_a_group() -> None:
    class Stop(BaseException):
        pass

    go = anyio.Event()

    async def boom() -> None:
        with anyio.CancelScope(shield=True):
            await go.wait()
        raise Stop

    with pytest.raises(BaseExceptionGroup) as info:
        async with am.open_machine(SCHEMA) as mach:
            mach.add1("A")
            mach.fork("A", boom)
            go.set()
            raise ValueError("body")
    assert info.group_contains(ValueError)
    assert info.group_contains(Stop)


@pytest.mark.anyio
async def test_open_pool_several_errors_stay_a_group() -> None:
    go = anyio.Event()

    async def bad(n: int) -> None:
        with anyio.CancelScope(shield=True):
            await go.wait()
        raise LookupError(n)

    with pytest.raises(ExceptionGroup) as info:
        async with open_pool(2) as pool:
            pool.start_soon(bad, 1)
            pool.start_soon(bad, 2)
            await anyio.sleep(0.1)
            go.set()
    assert len(info.value.exceptions) == 2


@pytest.mark.anyio
async def test_open_machine_bad_option_raises_before_tasks() -> None:
    with pytest.raises(TypeError, match="handler_timeot"):
        async with am.open_machine(SCHEMA, handler_timeot=1):  # type: ignore[call-arg]
            pytest.fail("the block must not run")


@pytest.mark.anyio
async def test_open_pool_task_error_is_unwrapped() -> None:
    async def bad() -> None:
        raise LookupError("task")

    with pytest.raises(LookupError, match="task"):
        async with open_pool(2) as pool:
            pool.start_soon(bad)


@pytest.mark.anyio
async def test_wait_helpers_raise_the_waiters_error_unwrapped() -> None:
    async with am.open_machine(SCHEMA) as mach:

        async def dies() -> None:
            raise RuntimeError("waiter")

        from asyncmachine_trio.helpers import waiting

        with pytest.raises(RuntimeError, match="waiter"):
            await waiting._first(dies, lambda: anyio.sleep(10))
        assert not mach.is_disposed


# ----- rpc (trio)


def _state_source() -> am.Machine:
    return am.Machine({**SCHEMA, **rpc.StateSourceStates.schema()}, id="src")


@pytest.mark.trio
async def test_open_server_body_error_is_unwrapped() -> None:
    with trio.fail_after(10):
        with pytest.raises(ValueError, match="server body"):
            async with rpc.open_server(_state_source(), "tcp://127.0.0.1:0"):
                raise ValueError("server body")


@pytest.mark.trio
async def test_open_server_busy_port_is_unwrapped() -> None:
    with trio.fail_after(10):
        async with rpc.open_server(_state_source(), "tcp://127.0.0.1:0") as first:
            port = first.addr.rsplit(":", 1)[1]
            with pytest.raises(OSError) as info:
                async with rpc.open_server(_state_source(), f"tcp://127.0.0.1:{port}"):
                    pytest.fail("bound a busy port")
            assert not isinstance(info.value, BaseExceptionGroup)


@pytest.mark.trio
async def test_open_server_bad_option_is_unwrapped() -> None:
    with pytest.raises(TypeError, match="push_intervall"):
        async with rpc.open_server(_state_source(), push_intervall=1):  # type: ignore[call-arg]
            pytest.fail("the block must not run")


@pytest.mark.trio
async def test_open_mux_body_error_is_unwrapped() -> None:
    src = _state_source()
    with trio.fail_after(10):
        with pytest.raises(KeyError, match="mux body"):
            async with rpc.open_mux(src, "tcp://127.0.0.1:0"):
                raise KeyError("mux body")


@pytest.mark.trio
async def test_open_client_body_error_and_bad_option_are_unwrapped() -> None:
    src = _state_source()
    with trio.fail_after(10):
        async with rpc.open_server(src, "tcp://127.0.0.1:0", push_interval=0.0) as server:
            kw: dict[str, Any] = {"call_timeout": 3.0}
            with pytest.raises(ValueError, match="client body"):
                async with rpc.open_client(server.addr, src.schema, **kw):
                    raise ValueError("client body")
            with pytest.raises(TypeError, match="cal_timeout"):
                async with rpc.open_client(server.addr, src.schema, cal_timeout=1):  # type: ignore[call-arg]
                    pytest.fail("the block must not run")
