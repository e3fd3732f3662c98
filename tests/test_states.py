"""The reusable schemas of ``asyncmachine_trio.states``: relations and the Disposed mixin."""

from __future__ import annotations

import anyio
import pytest

import asyncmachine_trio as am
from asyncmachine_trio import helpers as amhelp
from asyncmachine_trio import states as ss


class BasicConnStates(ss.BasicStates, ss.ConnectedStates):
    pass


class BasicPoolStates(ss.BasicStates, ss.ConnPoolStates):
    pass


class BasicDisposedStates(ss.BasicStates, ss.DisposedStates):
    pass


# ----- Basic


def test_basic_names_follow_the_reference_order() -> None:
    assert ss.BasicStates.names() == [
        "Exception",
        "ErrNetwork",
        "ErrHandlerTimeout",
        "Start",
        "Ready",
        "Healthcheck",
        "Heartbeat",
    ]
    assert ss.BasicStates.Ready == "Ready"
    assert am.Machine(ss.BasicStates).state_names == tuple(ss.BasicStates.names())


def test_basic_relations_as_defined() -> None:
    schema = ss.BasicStates.schema()
    assert schema["Exception"] == am.State(multi=True)
    for err in ("ErrNetwork", "ErrHandlerTimeout"):
        assert schema[err] == am.State(multi=True, add=("Exception",), require=("Exception",))
    assert schema["Ready"] == am.State(require=("Start",))
    assert schema["Healthcheck"] == am.State(multi=True)
    assert schema["Start"] == am.State()
    assert schema["Heartbeat"] == am.State()


def test_ready_requires_start() -> None:
    mach = am.Machine(ss.BasicStates)
    assert mach.add1("Ready") is am.Result.CANCELED
    assert mach.not1("Ready")
    mach.add(["Start", "Ready"])
    assert mach.is_(["Start", "Ready"])
    mach.remove1("Start")
    assert mach.not_(["Start", "Ready"])


def test_error_states_add_and_require_exception() -> None:
    mach = am.Machine(ss.BasicStates)
    mach.add1("ErrNetwork")
    assert mach.is_(["ErrNetwork", "Exception"])
    mach.remove1("Exception")
    assert mach.not_(["ErrNetwork", "Exception"])
    err = TimeoutError("slow")
    mach.add_err_state("ErrHandlerTimeout", err)
    assert mach.is_(["ErrHandlerTimeout", "Exception"])
    assert mach.err is err
    # Multi: re-entered on every error
    tick = mach.tick("ErrHandlerTimeout")
    mach.add_err_state("ErrHandlerTimeout", err)
    assert mach.tick("ErrHandlerTimeout") == tick + 2


def test_healthcheck_is_multi_heartbeat_is_not() -> None:
    mach = am.Machine(ss.BasicStates)
    mach.add1("Healthcheck")
    mach.add1("Healthcheck")
    assert mach.tick("Healthcheck") == 3
    mach.add1("Heartbeat")
    mach.add1("Heartbeat")
    assert mach.tick("Heartbeat") == 1


# ----- Connected


STATUSES = ["Connecting", "Connected", "Disconnecting", "Disconnected"]


def test_connected_statuses_are_mutually_exclusive() -> None:
    assert ss.ConnectedGroups.groups() == {"Connected": STATUSES}
    mach = am.Machine(BasicConnStates)
    mach.add1("Start")
    for status in [*STATUSES, *reversed(STATUSES), "Connected", "Connecting"]:
        mach.add1(status)
        assert mach.active_states(STATUSES) == [status]
    # two statuses in one mutation cannot both win
    assert mach.add(["Connected", "Disconnecting"]) is am.Result.CANCELED
    assert mach.active_states(STATUSES) == ["Connecting"]


def test_connecting_and_connected_require_start() -> None:
    mach = am.Machine(BasicConnStates)
    assert mach.add1("Connecting") is am.Result.CANCELED
    assert mach.add1("Connected") is am.Result.CANCELED
    mach.add1("Disconnecting")  # no Require
    assert mach.is1("Disconnecting")
    mach.add(["Start", "Connected"])
    assert mach.is1("Connected")
    # losing Start drops Connected; the Auto Disconnected takes over
    mach.remove1("Start")
    assert mach.active_states(STATUSES) == ["Disconnected"]


def test_disconnected_is_auto() -> None:
    mach = am.Machine(BasicConnStates)
    mach.add1("Start")
    assert mach.is_(["Start", "Disconnected"])
    mach.add1("Connected")
    assert mach.not1("Disconnected")


def test_err_connecting_requires_exception_and_wraps_the_error() -> None:
    mach = am.Machine(BasicConnStates)
    assert mach.add1("ErrConnecting") is am.Result.CANCELED
    cause = ConnectionRefusedError("no route")
    ss.add_err_connecting(mach, cause)
    assert mach.is_(["ErrConnecting", "Exception"])
    assert isinstance(mach.err, ss.ConnectingError)
    assert mach.err.__cause__ is cause
    assert "no route" in str(mach.err)


def test_relations_can_be_injected_into_an_inherited_state() -> None:
    class ClientStates(ss.BasicStates, ss.ConnectedStates):
        Connected = ss.state_add(
            ss.ConnectedStates,
            ss.ConnectedStates.Connected,
            am.State(add=("Handshaking",), remove=("RetryingConn",)),
        )
        Handshaking = am.State(require=("Connected",))
        RetryingConn = am.State()

    schema = ClientStates.schema()
    assert schema["Connected"].require == ("Start",)
    assert schema["Connected"].add == ("Handshaking",)
    assert schema["Connected"].remove == (*STATUSES, "RetryingConn")
    # the inherited position is kept, new states come last
    assert ClientStates.names()[-2:] == ["Handshaking", "RetryingConn"]
    assert ClientStates.names().index("Connected") < ClientStates.names().index("Handshaking")
    mach = am.Machine(ClientStates)
    mach.add(["Start", "RetryingConn"])
    mach.add1("Connected")
    assert mach.is_(["Connected", "Handshaking"])
    assert mach.not1("RetryingConn")
    # the mixin itself is unchanged
    assert ss.ConnectedStates.schema()["Connected"].add is None


def test_state_set_replaces_relations_and_keeps_flags() -> None:
    ready = ss.state_set(ss.BasicStates, "Ready", am.State(require=("Heartbeat",)))
    assert ready == am.State(require=("Heartbeat",))
    hc = ss.state_set(ss.BasicStates, "Healthcheck", am.State(add=("Heartbeat",)))
    assert hc.multi and hc.add == ("Heartbeat",)
    auto = ss.state_set({"A": am.State(multi=True)}, "A", am.State(), auto=True, multi=False)
    assert auto == am.State(auto=True)
    with pytest.raises(am.StateUnknownError):
        ss.state_add(ss.BasicStates, "Nope", am.State())


def test_schema_merge_composes_dict_schemas() -> None:
    schema = am.schema_merge(
        ss.BasicStates,
        ss.ConnectedStates,
        {"Ready": ss.state_add(ss.BasicStates, "Ready", am.State(require=("Connected",)))},
    )
    assert schema["Ready"].require == ("Start", "Connected")
    mach = am.Machine(schema)
    mach.add1("Start")
    assert mach.add1("Ready") is am.Result.CANCELED
    mach.add1("Connected")
    mach.add1("Ready")
    assert mach.is1("Ready")


# ----- ConnPool


def test_conn_pool_relations() -> None:
    assert ss.ConnPoolGroups.groups() == {"Connected": ["Connected", "Disconnected"]}
    mach = am.Machine(BasicPoolStates)
    assert mach.add1("Connecting") is am.Result.CANCELED  # requires Start
    mach.add1("Start")
    assert mach.not1("Disconnected")  # not Auto, unlike Connected's
    mach.add1("Connecting")
    mach.add1("Connected")  # some connections made, others still connecting
    assert mach.is_(["Connecting", "Connected"])
    assert mach.add1("ConnectedFully") is am.Result.EXECUTED
    assert mach.is_(["Connecting", "Connected", "ConnectedFully"])
    # an active Connected blocks Disconnected (Disconnected does not remove it)
    assert mach.add1("Disconnected") is am.Result.CANCELED
    # Disconnecting removes ConnectedFully, Connected and Connecting
    mach.add1("Disconnecting")
    assert set(mach.active_states()) == {"Start", "Disconnecting"}
    # Disconnected removes Connecting, ConnectedFully and Disconnecting
    mach.add1("Disconnected")
    assert set(mach.active_states()) == {"Start", "Disconnected"}
    # Connected removes Disconnected
    mach.add1("Connected")
    assert set(mach.active_states()) == {"Start", "Connected"}
    # Connecting removes Disconnecting
    mach.add1("Disconnecting")
    mach.add1("Connecting")
    assert set(mach.active_states()) == {"Start", "Connecting"}


def test_conn_pool_connected_fully_requires_connected() -> None:
    mach = am.Machine(BasicPoolStates)
    mach.add1("Start")
    assert mach.add1("ConnectedFully") is am.Result.CANCELED
    mach.add(["Connected", "ConnectedFully"])
    mach.remove1("Connected")
    assert mach.not_(["Connected", "ConnectedFully"])


# ----- Disposed


class DisposedHandlers(ss.DisposedHandlers):
    def __init__(self) -> None:
        self.released: list[str] = []

    def disposing_state(self, e: am.Event) -> None:
        self.released.append("own resources")
        super().disposing_state(e)


def test_disposed_relations() -> None:
    assert ss.DisposedStates.names() == ["RegisterDisposal", "Disposing", "Disposed"]
    mach = am.Machine(BasicDisposedStates)  # no handlers: plain relations
    mach.add(["Start", "Ready"])
    mach.add_err(ValueError("x"))
    mach.add1("Disposing")
    assert set(mach.active_states()) == {"Disposing"}
    mach.add1("Disposed")
    assert set(mach.active_states()) == {"Disposed"}
    mach.add1("RegisterDisposal")
    mach.add1("RegisterDisposal")
    assert mach.tick("RegisterDisposal") == 3  # Multi


def test_register_disposal_needs_a_callable() -> None:
    mach = am.Machine(BasicDisposedStates, handlers=DisposedHandlers())
    # a dry run is rejected quietly
    assert mach.can_add1("RegisterDisposal") is am.Result.CANCELED
    assert not mach.is_err()
    assert mach.add1("RegisterDisposal", {ss.DISPOSED_ARG_HANDLER: "nope"}) is am.Result.CANCELED
    assert mach.is_err()
    assert isinstance(mach.err, am.ArgumentError)
    assert mach.add1("RegisterDisposal", {ss.DISPOSED_ARG_HANDLER: print}) is am.Result.EXECUTED


def test_disposal_without_a_task_group_runs_inline() -> None:
    handlers = DisposedHandlers()
    lines: list[str] = []
    mach = am.Machine(
        BasicDisposedStates,
        id="m1",
        handlers=handlers,
        log_level=am.LogLevel.CHANGES,
        logger=lambda _lvl, line: lines.append(line),
        dont_log_id=True,
    )
    seen: list[str] = []

    def broken(_id: str) -> None:
        raise RuntimeError("broken callback")

    amhelp.dispose_bind(mach, seen.append)
    amhelp.dispose_bind(mach, broken)
    amhelp.dispose_bind(mach, lambda mid: seen.append("second " + mid))
    mach.add1("Start")
    amhelp.dispose(mach)
    assert mach.is_disposed
    assert seen == ["m1", "second m1"]
    assert handlers.released == ["own resources"]
    assert "[dispose:err] RuntimeError: broken callback" in lines
    assert "[state] +Disposing -Start" in lines
    assert "[state] +Disposed -Disposing" in lines


@pytest.mark.anyio
async def test_disposing_runs_callbacks_in_a_task_then_disposes() -> None:
    handlers = DisposedHandlers()
    order: list[str] = []

    async def slow(mid: str) -> None:
        await anyio.sleep(0.001)
        order.append("slow " + mid)

    async with am.open_machine(BasicDisposedStates, id="m2", handlers=handlers) as mach:
        amhelp.dispose_bind(mach, slow)
        amhelp.dispose_bind(mach, lambda mid: order.append("sync " + mid))
        mach.add1("Start")
        disposed = mach.when_disposed()
        amhelp.dispose(mach)
        # the transition did not wait for the callbacks
        assert set(mach.active_states()) == {"RegisterDisposal", "Disposing"}
        assert order == []
        with anyio.fail_after(1):
            await disposed
    assert order == ["slow m2", "sync m2"]
    assert mach.is_disposed


@pytest.mark.anyio
async def test_callbacks_are_cancelled_with_disposing() -> None:
    order: list[str] = []

    async def forever(_mid: str) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            order.append("cancelled")

    async with am.open_machine(BasicDisposedStates, handlers=DisposedHandlers()) as mach:
        amhelp.dispose_bind(mach, forever)
        mach.add1("Disposing")
        await anyio.sleep(0.001)
        mach.remove1("Disposing")
        await anyio.sleep(0.001)
        assert order == ["cancelled"]
        assert mach.not1("Disposed")
        assert not mach.is_disposed


@pytest.mark.anyio
async def test_cancelled_task_group_disposes_via_disposing() -> None:
    seen: list[str] = []
    handlers = DisposedHandlers()
    async with anyio.create_task_group() as tg:
        mach = am.Machine(BasicDisposedStates, id="m3", handlers=handlers)
        mach.start(tg)
        amhelp.dispose_bind(mach, seen.append)
        mach.add1("Start")
        await anyio.sleep(0.001)
        tg.cancel_scope.cancel()
    assert mach.is_disposed
    assert seen == ["m3"]
    assert handlers.released == ["own resources"]
