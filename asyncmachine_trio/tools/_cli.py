"""Shared bits of the console scripts: the --version option and the error exit."""

from __future__ import annotations

from typing import NoReturn

try:
    import typer
    from rich.console import Console
except ImportError as _err:  # pragma: no cover - depends on the install
    from .._install import install_hint

    raise ImportError(
        f"the asyncmachine-trio tools need the cli extra: {install_hint('cli')}"
    ) from _err

from .. import __version__

console = Console()
err_console = Console(stderr=True)


def version_callback(prog: str) -> typer.models.OptionInfo:
    """A ``--version`` option printing ``<prog> <version>``."""

    def show(value: bool) -> None:
        if value:
            console.print(f"{prog} {__version__}")
            raise typer.Exit()

    return typer.Option(  # type: ignore[no-any-return]
        "--version", callback=show, is_eager=True, help="Show the version and exit."
    )


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` in red to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
