"""``am-gen``: scaffold a states file, or make a Grafana dashboard.

am-gen states-file -s 'Foo:auto:require(Bar),Bar' -n MyMach -i basic -g 'Grp(Foo;Bar)'
am-gen grafana -i mach1,mach2 -n MyDash -s my_service [-g http://grafana:3000]
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ._cli import console, fail, version_callback
from .gen import GenError, build, dashboard, render_states_file

app: typer.Typer = typer.Typer(
    name="am-gen",
    help="Generate asyncmachine-trio states files and Grafana dashboards.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _main(version: Annotated[bool, version_callback("am-gen")] = False) -> None:
    """Generate asyncmachine-trio states files and Grafana dashboards."""


@app.command("states-file")
def states_file(
    states: Annotated[
        str,
        typer.Option("-s", "--states", help="States: 'Foo:auto:multi:require(Bar;_Group),Bar'."),
    ],
    name: Annotated[str, typer.Option("-n", "--name", help="Machine name, e.g. MyMach.")],
    inherit: Annotated[
        list[str] | None,
        typer.Option(
            "-i",
            "--inherit",
            help="Bundled schema(s): basic, connected, disposed, conn-pool, rpc, node/worker.",
        ),
    ] = None,
    groups: Annotated[
        str, typer.Option("-g", "--groups", help="Groups: 'Playing(Play;Pause),Errors'.")
    ] = "",
    force: Annotated[bool, typer.Option("-f", "--force", help="Overwrite the file.")] = False,
    out_dir: Annotated[
        Path, typer.Option("-o", "--dir", help="Directory to write ss_<name>.py into.")
    ] = Path("."),
    stdout: Annotated[bool, typer.Option("--stdout", help="Print instead of writing.")] = False,
) -> None:
    """Write ss_<name>.py: a typed am.States class, its groups and S / G aliases."""
    try:
        sf = build(name, states, groups, inherit or ())
    except GenError as err:
        fail(str(err))
    except ImportError as err:
        fail(f"cannot import an inherited schema: {err}")
    text = render_states_file(sf)
    if stdout:
        print(text, end="")
        return
    path = out_dir / sf.file_name
    if path.exists() and not force:
        fail(f"{path} exists; use --force to overwrite it")
    path.write_text(text, encoding="utf-8")
    console.print(
        f"[green]wrote[/] {path}: {sf.class_name} ({len(sf.schema())} states),"
        f" {sf.groups_name} ({len(sf.groups)} groups)",
        soft_wrap=True,
    )


def _env_token() -> str:
    token = os.environ.get("GRAFANA_TOKEN", "")
    if token or not os.path.exists(".env"):
        return token
    for line in Path(".env").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "GRAFANA_TOKEN":
            return value.strip().strip("'\"")
    return ""


def upload(
    dash: dict[str, Any], url: str, token: str, folder: str = "", timeout: float = 10.0
) -> dict[str, Any]:
    """Upsert ``dash`` through Grafana's HTTP API (creating ``folder`` if missing)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    body: dict[str, Any] = {"dashboard": dash, "overwrite": True, "message": "am-gen"}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout) as http:
        if folder:
            resp = http.get("/api/folders")
            resp.raise_for_status()
            found = [f for f in resp.json() if f.get("title") == folder]
            if found:
                body["folderUid"] = found[0]["uid"]
            else:
                resp = http.post("/api/folders", json={"title": folder})
                resp.raise_for_status()
                body["folderUid"] = resp.json()["uid"]
        resp = http.post("/api/dashboards/db", json=body)
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result


@app.command("grafana")
def grafana(
    ids: Annotated[str, typer.Option("-i", "--ids", help="Machine ids, comma separated.")],
    name: Annotated[str, typer.Option("-n", "--name", help="Dashboard name.")],
    source: Annotated[
        str, typer.Option("-s", "--source", help="Prometheus job / Loki service_name.")
    ],
    grafana_url: Annotated[
        str,
        typer.Option("-g", "--grafana-url", help="Upload to this Grafana (GRAFANA_TOKEN)."),
    ] = "",
    folder: Annotated[str, typer.Option("-f", "--folder", help="Grafana folder.")] = "",
) -> None:
    """Print a dashboard JSON for the Prometheus metrics, or upload it with -g."""
    mach_ids = [i.strip() for i in ids.split(",") if i.strip()]
    try:
        dash = dashboard(mach_ids, name, source)
    except GenError as err:
        fail(str(err))
    if not grafana_url:
        print(json.dumps(dash, indent=2))
        return
    token = _env_token()
    if not token:
        fail("no Grafana token: set GRAFANA_TOKEN (environment or .env)")
    import httpx

    try:
        result = upload(dash, grafana_url, token, folder)
    except httpx.HTTPStatusError as err:
        fail(f"Grafana answered {err.response.status_code}: {err.response.text[:200]}")
    except httpx.HTTPError as err:
        fail(f"cannot reach Grafana at {grafana_url}: {err}")
    console.print(
        f"[green]uploaded[/] {name}: {result.get('url', result.get('uid', ''))}", soft_wrap=True
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
