"""The `logbeacon` command: one Typer app, one module per command group.

Each `logbeacon/cli/<name>.py` has `register(app: typer.Typer) -> None`; adding a command group
means adding its module name to `COMMAND_MODULES` (one line). Command modules import heavy
dependencies (uvicorn, httpx, the server) inside their functions, so `logbeacon --help` stays
fast.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Final

import typer

from logbeacon._version import __version__

__all__ = ["COMMAND_MODULES", "app", "main"]

# One line per command group: logbeacon.cli.<name>.register(app).
COMMAND_MODULES: Final = (
    "serve",
    "demo",
    "query",
    "token",
    "run",
    "collect",
    "tail",
    "analyze",
    "alerts",
    "export",
)

app = typer.Typer(
    name="logbeacon",
    help="Troubleshooting-first observability: one timeline across browser, API and agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"logbeacon {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Troubleshooting-first observability: one timeline across browser, API and agents."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"logbeacon.cli.{_name}").register(app)


def main() -> None:
    """Console-script entry point (`logbeacon = "logbeacon.cli.main:main"`)."""
    app()


if __name__ == "__main__":
    main()
