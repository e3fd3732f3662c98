"""am-gen: the states-file grammar, the generated file, Grafana JSON and upload."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import asyncmachine_trio as am
from asyncmachine_trio.states import BasicStates, ConnectedStates
from asyncmachine_trio.tools import gen
from asyncmachine_trio.tools.gen_cli import app

runner = CliRunner()


def load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_states_file_imports_and_matches_the_flags(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "states-file",
            "-s", "foo:auto:Require(Bar;Baz):remove(_Errs),Bar,Baz:multi:after(Foo),Qux:add(Ready)",
            "-n", "myMach",
            "-i", "basic",
            "-g", "Errs(Bar;Qux),Later",
            "-o", str(tmp_path),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    path = tmp_path / "ss_my_mach.py"
    assert "wrote" in res.output and path.exists()
    mod = load(path)
    assert mod.S is mod.MyMachStates and issubclass(mod.S, BasicStates)
    expected = {
        **BasicStates.schema(),
        "Foo": am.State(auto=True, require=("Bar", "Baz"), remove=("Bar", "Qux")),
        "Bar": am.State(),
        "Baz": am.State(multi=True, after=("Foo",)),
        "Qux": am.State(add=("Ready",)),
    }
    assert mod.S.schema() == expected
    assert mod.G.groups() == {"Errs": ["Bar", "Qux"], "Later": []}
    # Foo requires and removes Bar (the flags say so): strict machines refuse it
    with pytest.raises(am.SchemaError, match="require-remove conflict for Foo to Bar"):
        am.Machine(mod.S)
    mach = am.Machine(mod.S, strict_schema=False)
    mach.set_groups(mod.G, mod.S)
    # refuses to overwrite without --force
    again = ["states-file", "-s", "A", "-n", "myMach", "-o", str(tmp_path)]
    res = runner.invoke(app, again)
    assert res.exit_code == 2 and "--force" in res.output
    assert "Foo" in path.read_text()
    res = runner.invoke(app, [*again, "--force"])
    assert res.exit_code == 0
    assert load(path).S.names() == ["A"]


def test_inheritance_of_two_schemas_and_groups() -> None:
    sf = gen.build("Conn", "Extra:require(Connected)", "", ["basic,connected"])
    text = gen.render_states_file(sf)
    assert "class ConnStates(BasicStates, ConnectedStates):" in text
    assert "class ConnGroups(ConnectedGroups):" in text
    assert list(sf.schema())[-1] == "Extra"
    assert set(ConnectedStates.names()) <= set(sf.schema())
    assert gen.build("R", "A", "", ["rpc/statesrc"]).inherit == ("rpc",)


@pytest.mark.parametrize(
    ("states", "groups", "inherit", "message"),
    [
        ("A,B,A", "", [], "duplicate state 'A' in 'A'"),
        ("A:requir(B),B", "", [], r"unknown property 'requir\(B\)' of state 'A'"),
        ("A:require(Bx),B", "", [], r"require\(Bx\) names an unknown state"),
        ("A:remove(_Nope)", "G(A)", [], r"remove\(_Nope\) names an unknown group"),
        ("A:remove(_G1)", "G(A)", [], r"did you mean 'G'"),
        ("A,,B", "", [], "empty state"),
        ("A:add(B", "", [], r"unbalanced '\('"),
        ("A-b", "", [], "bad state name 'A-b'"),
        ("A:require(B;)", "", [], "empty target"),
        ("A", "G(B)", [], "group 'G' lists unknown state 'B'"),
        ("A", "G,G", [], "duplicate group 'G'"),
        ("A", "", ["basik"], "unknown schema to inherit 'basik' .did you mean 'basic'"),
        ("none", "", [], "Python keyword"),
        ("", "", [], "no states given"),
    ],
)
def test_grammar_errors_name_the_token(
    states: str, groups: str, inherit: list[str], message: str
) -> None:
    with pytest.raises(gen.GenError, match=message):
        gen.build("M", states, groups, inherit)


def test_cli_error_exit(tmp_path: Path) -> None:
    res = runner.invoke(app, ["states-file", "-s", "A:bogus", "-n", "M", "-o", str(tmp_path)])
    assert res.exit_code == 2
    assert "unknown property 'bogus'" in res.output
    assert not (tmp_path / "ss_m.py").exists()


def test_help_and_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"am-gen {am.__version__}"
    for args in (["--help"], ["states-file", "--help"], ["grafana", "--help"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0 and "Usage" in res.output


def check_layout(dash: dict[str, Any], ids: list[str], source: str) -> None:
    """The panel layout: three rows per machine, the metric names of the tracer."""
    assert dash["refresh"] == "5s" and dash["time"] == {"from": "now-5m", "to": "now"}
    assert "generated" in dash["tags"]
    rows = [p for p in dash["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == [
        t for i in ids for t in (f"Mach: {i}", f"Details: {i}", f"Logs: {i}")
    ]
    assert [r["collapsed"] for r in rows] == [False, True, True] * len(ids)
    seen_ids: set[int] = set()
    exprs: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            assert p["id"] not in seen_ids
            seen_ids.add(p["id"])
            assert {"x", "y", "w", "h"} <= set(p["gridPos"])
            exprs.extend(t["expr"] for t in p.get("targets", ()))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for i in ids:
        norm = gen.normalize_id(i)
        for metric in gen.METRICS:
            if metric not in ("states_active", "states_inactive"):
                assert f'am_{metric}_{norm}{{job="{source}"}}' in exprs
        assert f'{{service_name="{source}", asyncmachine_id="{i}"}}' in exprs
    kinds = {p["type"] for r in rows for p in r["panels"]} | {p["type"] for p in dash["panels"]}
    assert {"timeseries", "heatmap", "logs", "row"} <= kinds


def test_grafana_prints_json() -> None:
    res = runner.invoke(app, ["grafana", "-i", "mach-1,Other.Mach", "-n", "Dash", "-s", "svc"])
    assert res.exit_code == 0, res.output
    dash = json.loads(res.output)
    assert dash["title"] == "Dash"
    check_layout(dash, ["mach-1", "Other.Mach"], "svc")
    assert gen.normalize_id("Other.Mach-1") == "other_mach_1"


class FakeGrafana(BaseHTTPRequestHandler):
    received: list[tuple[str, str, dict[str, Any] | None, str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.received.append(("GET", self.path, None, self.headers["Authorization"]))
        self._reply(200, [{"uid": "other", "title": "other"}])

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append(("POST", self.path, body, self.headers["Authorization"]))
        if self.headers["Authorization"] != "Bearer s3cret":
            self._reply(401, {"message": "Unauthorized"})
        elif self.path == "/api/folders":
            self._reply(200, {"uid": "f-1", "title": body["title"]})
        else:
            self._reply(200, {"status": "success", "uid": "u", "url": "/d/u/dash"})


@pytest.fixture
def grafana_url() -> Iterator[str]:
    FakeGrafana.received = []
    server = HTTPServer(("127.0.0.1", 0), FakeGrafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(5)
    server.server_close()


def test_grafana_upload(grafana_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", "s3cret")
    args = ["grafana", "-i", "m1", "-n", "Dash", "-s", "svc", "-g", grafana_url, "-f", "am"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "uploaded" in res.output and "/d/u/dash" in res.output
    methods = [(m, p) for m, p, _, _ in FakeGrafana.received]
    assert methods == [
        ("GET", "/api/folders"),
        ("POST", "/api/folders"),
        ("POST", "/api/dashboards/db"),
    ]
    _, _, body, auth = FakeGrafana.received[-1]
    assert auth == "Bearer s3cret"
    assert body is not None and body["folderUid"] == "f-1" and body["overwrite"] is True
    check_layout(body["dashboard"], ["m1"], "svc")
    # a wrong token: Grafana's answer, exit 2
    monkeypatch.setenv("GRAFANA_TOKEN", "nope")
    res = runner.invoke(app, ["grafana", "-i", "m1", "-n", "D", "-s", "svc", "-g", grafana_url])
    assert res.exit_code == 2 and "401" in res.output


def test_grafana_without_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["grafana", "-i", "m", "-n", "D", "-s", "s", "-g", "http://x"])
    assert res.exit_code == 2 and "GRAFANA_TOKEN" in res.output
    (tmp_path / ".env").write_text("GRAFANA_TOKEN='abc'\n")
    from asyncmachine_trio.tools.gen_cli import _env_token

    assert _env_token() == "abc"


@pytest.mark.parametrize("inherit", [["node/worker"], ["basic,node", "rpc"]])
def test_inherit_the_node_worker(inherit: list[str]) -> None:
    """``-i node/worker`` (or ``node``) bases the file on the node layer's WorkerStates."""
    from asyncmachine_trio import node

    sf = gen.build("Counter", "Counting:require(Ready),Counted", "Done(Counted)", inherit)
    assert sf.inherit == ("node/worker",)  # basic and rpc are part of WorkerStates
    ns: dict[str, object] = {}
    exec(compile(gen.render_states_file(sf), "ss_counter.py", "exec"), ns)
    states = ns["CounterStates"]
    assert isinstance(states, type) and issubclass(states, node.WorkerStates)
    names = states.names()  # type: ignore[attr-defined]
    assert names[: len(node.WorkerStates.names())] == node.WorkerStates.names()
    assert names[-2:] == ["Counting", "Counted"]
    groups = ns["CounterGroups"]
    assert isinstance(groups, type) and issubclass(groups, node.WorkerGroups)
