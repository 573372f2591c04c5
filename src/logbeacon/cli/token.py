"""`logbeacon token diag --session S [--ttl 30]`: mint a diagnostic-mode token.

The server mints it (`POST /v1/diagnostics`, admin token required), so the signing secret
never leaves the server. The token alone goes to stdout, ready for a cookie or header; what it
grants goes to stderr.
"""

from __future__ import annotations

from typing import Annotated

import typer

from logbeacon.cli._common import (
    DEFAULT_URL,
    UrlOption,
    api_request,
    json_line,
    make_client,
    safe_text,
    stderr_console,
)

__all__ = ["diag", "register"]

token_app = typer.Typer(
    help="Mint tokens.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
)


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")


@token_app.command("diag")
def diag(
    session: Annotated[
        str, typer.Option("--session", help="Session id whose debug/info events to keep.")
    ],
    ttl: Annotated[
        int, typer.Option("--ttl", min=1, max=60, help="Minutes the token is valid (≤ 60).")
    ] = 30,
    admin_token: Annotated[
        str | None,
        typer.Option(
            "--admin-token",
            envvar="LOGBEACON_ADMIN_TOKEN",
            help="The server's admin token.",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print token, session and expiry as JSON.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Let one session's debug/info events through the prod level policy for a while."""
    if not admin_token:
        stderr_console().print(
            safe_text(
                "error: minting needs the server's admin token: pass --admin-token or set "
                "LOGBEACON_ADMIN_TOKEN",
                style="bold red",
            )
        )
        raise typer.Exit(1)
    with make_client(url, token=admin_token) as client:
        minted = api_request(
            client, "POST", "/v1/diagnostics", json={"session_id": session, "ttl_minutes": ttl}
        )
    if json_output:
        typer.echo(json_line(minted))
        return
    typer.echo(str(minted.get("token", "")))
    stderr_console().print(
        safe_text(
            f"diagnostic token for session {minted.get('session_id')} valid until "
            f"{minted.get('expires_at')}; send it as cookie `diag` or header x-logbeacon-diag"
        )
    )
