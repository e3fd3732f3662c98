"""Static checks of the public API as a user's type checker sees it (not run by pytest).

``nox -s typecheck`` runs ``mypy --strict`` on this file and ``nox -s verifytypes``
runs pyright on it (``tests/typing/pyrightconfig.json``): every line marked
``# type: ignore[...]`` must be an error for both, or they report the ignore as
unused, so a typing regression (an option back to ``**kwargs: Any``, a ``str``
accepted as a list of states) fails CI.
"""

from __future__ import annotations

from collections.abc import Sequence

from typing_extensions import assert_type

import asyncmachine_trio as am
from asyncmachine_trio import rpc


class S(am.States):
    A: am.State = am.State()
    B = am.State(remove=("A",))


async def options_are_typed(source: am.Machine) -> None:
    # a misspelled option is an error before the program runs
    async with am.open_machine(S, handler_timeot=1.0):  # type: ignore[call-arg]
        pass
    async with rpc.open_server(source, push_intervall=0.1):  # type: ignore[call-arg]
        pass
    am.Machine(S, log_levle=am.LogLevel.OPS)  # type: ignore[call-arg]
    am.Machine(S, handler_timeout="1s")  # type: ignore[arg-type]

    async with am.open_machine(S, handler_timeout=None, id="m") as mach:
        assert_type(mach, am.Machine)
    async with rpc.open_server(source, "ws://127.0.0.1:0", push_interval=0.1) as server:
        assert_type(server, rpc.Server)


def methods_are_typed(mach: am.Machine, ctx: am.Ctx) -> None:
    # the methods Machine delegates to its modules are typed like the others
    assert_type(mach.when([S.A], ctx), am.Waiter)
    assert_type(mach.when_not([S.A]), am.Waiter)
    assert_type(mach.when_time([S.A], [2]), am.Waiter)
    assert_type(mach.when_args(S.A, {"x": 1}), am.Waiter)
    assert_type(mach.when_query(lambda clock: clock[S.A] > 1), am.Waiter)
    assert_type(mach.when_queue(3), am.Waiter)
    assert_type(mach.when_queue_ends(), am.Waiter)
    assert_type(mach.can_add([S.A]), am.Result)
    assert_type(mach.can_remove([S.A]), am.Result)
    assert_type(mach.eval("src", lambda: None), bool)
    assert_type(mach.bind_handlers(object()), str)
    assert_type(mach.is_queued(am.MutationType.ADD, [S.A]), tuple[bool, int, int])
    assert_type(mach.is_queued_above(1, am.MutationType.ADD, [S.A]), bool)
    assert_type(mach.will_be_any([S.A]), bool)
    mach.when(S.A, 1)  # type: ignore[arg-type]
    mach.is_queued(am.MutationType.ADD, [S.A], positon=am.Position.ANY)  # type: ignore[call-arg]
    # a typed schema's attribute reads back as the state's name
    assert_type(S.B, str)


def state_lists_exclude_str(mach: am.Machine, seq: Sequence[str], one: str) -> None:
    # lists, tuples and any Sequence[str] are state lists; a bare str is not
    mach.add([S.A, S.B])
    mach.remove((S.A,))
    mach.set(seq)
    mach.toggle(S.names())
    mach.is_(mach.state_names)
    mach.any([S.A], (S.B,))
    mach.when(mach.active_states())
    names: am.StateNames = [S.A]
    mach.not_(names)
    mach.add(one)  # type: ignore[arg-type]
    mach.add("A")  # type: ignore[arg-type]
    mach.remove(S.A)  # type: ignore[arg-type]
    mach.is_(S.A)  # type: ignore[arg-type]
    mach.has("AB")  # type: ignore[arg-type]
    mach.when_not(S.B)  # type: ignore[arg-type]
    mach.can_add(S.A)  # type: ignore[arg-type]
    mach.any(S.A)  # type: ignore[arg-type]
