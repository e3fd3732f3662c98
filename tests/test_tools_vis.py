"""am-vis: targets (module:attr, file:attr, history database), presets, outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import asyncmachine_trio as am
from asyncmachine_trio import history as amhist
from asyncmachine_trio import vis
from asyncmachine_trio.tools.vis_cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_module_target_matches_the_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a module:attr target (a module of its own: an installed ``examples``
    # package may shadow the repository's)
    src = (ROOT / "examples" / "expense.py").read_text()
    (tmp_path / "am_vis_expense.py").write_text(src)
    monkeypatch.syspath_prepend(str(tmp_path))
    res = runner.invoke(app, ["mermaid", "am_vis_expense:ExpenseStates", "-a", "ExpenseCreated"])
    assert res.exit_code == 0, res.output
    states = sys.modules["am_vis_expense"].ExpenseStates
    assert res.output == vis.mermaid(states, active=["ExpenseCreated"])
    # a dotted path that names a file under the current directory works even when
    # an installed package shadows the directory
    res = runner.invoke(app, ["d2", "examples.expense:ExpenseStates", "--labels"])
    assert res.exit_code == 0, res.output
    assert res.output == vis.d2(states, labels=True)


def test_output_file_and_svg(tmp_path: Path) -> None:
    out = tmp_path / "e.svg"
    res = runner.invoke(app, ["svg", "examples/expense.py:ExpenseStates", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and out.read_text().startswith("<?xml")


@pytest.fixture
def history_db(tmp_path: Path) -> Path:
    """Two machines' records in one database, schemas stored."""
    path = tmp_path / "hist.sqlite"
    cfg = amhist.SqliteConfig(store_schema=True)
    parent = am.Machine({"Start": am.State(), "Ready": am.State(require=("Start",))}, id="app")
    child = am.Machine(
        {"Work": am.State(auto=True), "Done": am.State(remove=("Work",))}, id="worker"
    )
    for mach in (parent, child):
        hist = amhist.SqliteHistory(path, mach, cfg)
        mach.add1("Start" if mach is parent else "Done")
        hist.close()
    return path


def test_history_database_target(history_db: Path) -> None:
    res = runner.invoke(app, ["mermaid", str(history_db)])
    assert res.exit_code == 0, res.output
    assert "Ready --o Start" in res.output and "class Start active" in res.output
    assert "Work" not in res.output  # single preset: the first machine
    res = runner.invoke(app, ["mermaid", str(history_db), "-m", "worker"])
    assert "class Done active" in res.output
    res = runner.invoke(app, ["mermaid", str(history_db), "--map"])
    assert 'm0["app"]' in res.output and 'm1["worker"]' in res.output
    assert "Start" not in res.output and "subgraph" not in res.output
    res = runner.invoke(app, ["inspect", str(history_db)])
    assert "## app" in res.output and "- active: Done" in res.output


def test_bird_hides_inherited_states() -> None:
    res = runner.invoke(app, ["mermaid", "tests/test_vis.py:PlayerStates", "--bird"])
    assert res.exit_code == 0, res.output
    assert "Playing" in res.output and 'Start["Start"]' not in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mermaid", "nope"], "expected module:attr"),
        (["mermaid", "examples/expense.py:Nope"], "has no 'Nope'"),
        (["mermaid", "no_such_mod_x:A"], "cannot import no_such_mod_x"),
        (["mermaid", "missing/file.py:A"], "no file missing/file.py"),
        (["mermaid", "examples/expense.py:DELAY"], "float"),
        (["mermaid", "examples/expense.py:ExpenseStates", "--map"], "--map needs a graph"),
        (["mermaid", "examples/expense.py:ExpenseStates", "--map", "--bird"], "exclude"),
    ],
)
def test_bad_input_is_named(args: list[str], message: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert message in res.output


def test_not_a_history_database(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    res = runner.invoke(app, ["mermaid", str(path)])
    assert res.exit_code == 2 and "not a history database" in res.output


def test_help_and_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.output.strip() == f"am-vis {am.__version__}"
    for cmd in ("mermaid", "d2", "svg", "inspect"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "Usage: am-vis" in res.output


def test_debugger_recording_target(tmp_path: Path) -> None:
    from asyncmachine_trio.telemetry import schema_record, tx_record
    from asyncmachine_trio.tools.recording import write_recording

    txs: list[am.Transition] = []

    class Rec(am.Tracer):
        def transition_end(self, transition: am.Transition) -> None:
            txs.append(transition)

    parent = am.Machine({"Start": am.State()}, id="app", tracers=[Rec()])
    child = am.Machine({"Work": am.State()}, id="worker", parent=parent, tracers=[Rec()])
    parent.add1("Start")
    child.add1("Work")
    path = write_recording(
        tmp_path / "s.amdbg.gz",
        [schema_record(parent), schema_record(child)],
        [tx_record(tx, 1) for tx in txs],
    )
    res = runner.invoke(app, ["mermaid", str(path), "--map"])
    assert res.exit_code == 0, res.output
    assert "m1 ==>|parent| m0" in res.output
    res = runner.invoke(app, ["mermaid", str(path), "-m", "worker"])
    assert "class Work active" in res.output
    (tmp_path / "bad.amdbg.gz").write_bytes(b"\x1f\x8bnot gzip")
    res = runner.invoke(app, ["mermaid", str(tmp_path / "bad.amdbg.gz")])
    assert res.exit_code == 2 and "bad.amdbg.gz" in res.output


def test_seq_of_a_recorded_transition(tmp_path: Path) -> None:
    from asyncmachine_trio.telemetry import schema_record, tx_record
    from asyncmachine_trio.tools.recording import write_recording

    tracer = am.LastTxTracer()
    schema = {"A": am.State(remove=("B",)), "B": am.State()}
    mach = am.Machine(schema, id="m", tracers=[tracer], log_steps=True)
    rec0 = schema_record(mach)
    mach.add1("B")
    assert tracer.last is not None
    first = tx_record(tracer.last, 1)
    mach.add1("A")
    assert tracer.last is not None
    last = tx_record(tracer.last, 2)
    path = write_recording(tmp_path / "r.amdbg.gz", [rec0], [first, last])
    res = runner.invoke(app, ["seq", str(path), "--ascii"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == "[add] A: accepted"
    assert "deactivate" in res.output  # B went away
    res = runner.invoke(app, ["seq", str(path), "-t", "1"])
    assert "title [add] B: accepted" in res.output
    assert res.output == vis.sequence(first, names=rec0.state_names)
    res = runner.invoke(app, ["seq", str(path), "-t", "3"])
    assert res.exit_code == 2 and "outside 1..2" in res.output
    res = runner.invoke(app, ["seq", str(path), "-m", "x"])
    assert res.exit_code == 2 and "no machine 'x'" in res.output
