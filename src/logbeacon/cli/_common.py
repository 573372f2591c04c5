"""What every CLI command that talks to a server shares: credentials, an HTTP client, friendly
errors, and terminal-safe rendering of untrusted text.

Event text comes from anyone who can ingest. Printed raw, a `\\r\\n` forges a log line, an
ANSI/OSC sequence recolours the terminal or retitles the window (CVE-2009-4487), and U+2028
or U+0085 split lines in some viewers. `escape_terminal` renders every such character visibly
(`\\n`, `\\x1b`, `\\u2028`), and Rich output is built from `Text` objects, never markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, NoReturn

import typer

if TYPE_CHECKING:
    import httpx
    from rich.console import Console
    from rich.text import Text

__all__ = [
    "DEFAULT_URL",
    "DataDirOption",
    "KeyOption",
    "TokenOption",
    "UrlOption",
    "api_request",
    "escape_terminal",
    "fail",
    "json_line",
    "make_client",
    "resolve_token",
    "safe_text",
    "stderr_console",
    "stdout_console",
]

DEFAULT_URL: Final = "http://127.0.0.1:8765"
DEFAULT_DATA_DIR: Final = ".logbeacon"
READ_TOKEN_FILE: Final = "read_token"  # noqa: S105 - a file name

UrlOption = Annotated[
    str,
    typer.Option(
        "--url", envvar="LOGBEACON_URL", help="Base URL of the logbeacon server.", show_default=True
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="LOGBEACON_TOKEN",
        help="Read token (default: <data-dir>/read_token written by a local `logbeacon serve`).",
        show_default=False,
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key", envvar="LOGBEACON_INGEST_KEY", help="Ingest key for writing.", show_default=False
    ),
]
DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="LOGBEACON_DATA_DIR",
        help="Data directory of a local server (where its read_token is).",
    ),
]


def _build_escapes() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in (*range(0x20), 0x7F, *range(0x80, 0xA0)):
        table[code] = f"\\x{code:02x}"
    table.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
    # Unicode line/paragraph separators and bidirectional controls ("Trojan Source").
    for code in (0x2028, 0x2029, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        table[code] = f"\\u{code:04x}"
    return table


_ESCAPES: Final = _build_escapes()
_JSON_LINE_BREAKS: Final = {0x2028: "\\u2028", 0x2029: "\\u2029", 0x85: "\\u0085"}


def escape_terminal(value: object) -> str:
    """Text safe to print on a terminal: control, escape and line-break characters shown as
    visible escapes, so one event is always one line and cannot drive the terminal."""
    return str(value).translate(_ESCAPES)


def safe_text(value: object, style: str = "") -> Text:
    """A Rich `Text` of escaped `value` (Text is never parsed as markup)."""
    from rich.text import Text

    return Text(escape_terminal(value), style=style)


def json_line(obj: Any) -> str:
    """One JSON document on one line for `jq`: strict JSON, control characters escaped by the
    encoder, and the Unicode line breaks JSON allows raw escaped as well."""
    from logbeacon.event import encode

    return encode(obj).decode("utf-8").translate(_JSON_LINE_BREAKS)


def stdout_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error that says what to do, and exit."""
    stderr_console().print(safe_text(f"error: {message}", style="bold red"))
    raise typer.Exit(code)


def resolve_token(token: str | None, data_dir: Path) -> str | None:
    """`--token`/`LOGBEACON_TOKEN`, else the read token a local server wrote to its data dir."""
    if token:
        return token
    path = data_dir / READ_TOKEN_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def make_client(url: str, *, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
    """An HTTP client for the server at `url`, sending the token as a bearer credential."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)


def api_request(
    client: httpx.Client,
    method: str,
    path: str,
    *,
    params: Mapping[str, str | int] | None = None,
    json: Any = None,
    not_found: str | None = None,
) -> Any:
    """Call the API and return its JSON, turning every failure into a message and exit 1."""
    import httpx

    try:
        response = client.request(method, path, params=params, json=json)
    except httpx.ConnectError:
        fail(
            f"cannot reach a logbeacon server at {client.base_url}; start one with `logbeacon "
            "serve` or pass --url / set LOGBEACON_URL"
        )
    except httpx.HTTPError as exc:
        fail(f"request to {client.base_url} failed: {type(exc).__name__}")
    status = response.status_code
    if status == 401:
        fail(
            "the server needs a valid token: pass --token or set LOGBEACON_TOKEN (a local "
            "server writes its generated token to <data-dir>/read_token)"
        )
    if status == 404 and not_found is not None:
        fail(not_found)
    if status >= 400:
        fail(f"the server answered {status}: {_error_message(response)}")
    try:
        return response.json()
    except ValueError:
        fail("the server did not answer with JSON; is --url a logbeacon server?")


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return escape_terminal(body["message"])
    return response.reason_phrase
