"""`logbeacon query` and `logbeacon trace` against a real server, and terminal-safe output."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner, Result

from logbeacon.cli._common import escape_terminal, json_line
from logbeacon.cli.main import app
from logbeacon.event import format_timestamp
from tests.helpers.server import RunningServer, clean_environment, free_port, running_server

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
HOSTILE = "login failed for bob\r\n2024-05-01T00:00:00Z INFO admin login ok\x1b]0;pwned\x07\u2028x"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("cli-query")) as running:
        two_hours_ago = time.time() - 7200
        events = [
            {
                "event": "http_request",
                "level": "info",
                "service": "api",
                "trace_id": TRACE,
                "timestamp": format_timestamp(two_hours_ago),
            },
            {
                "event": "node_failed",
                "level": "error",
                "service": "langgraph",
                "trace_id": TRACE,
                "node": "developer",
                "timestamp": format_timestamp(two_hours_ago + 0.25),
            },
            {"event": "window_error", "level": "error", "service": "web", "message": HOSTILE},
        ]
        assert 200 == httpx.post(f"{running.url}/v1/logs", json=events).status_code
        yield running


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


def run(server: RunningServer, *args: str, token: bool = True) -> Result:
    extra = ["--url", server.url] + (["--token", server.read_token] if token else [])
    return CliRunner().invoke(app, [*args, *extra], env={"COLUMNS": "200"})


def test_query_json_lines_with_filters(server: RunningServer) -> None:
    """--json prints one parseable event per line; filters are applied by the server."""
    result = run(server, "query", "--level", "error", "--service", "web", "--json")
    lines = result.stdout.splitlines()
    assert 0 == result.exit_code
    assert [("window_error", HOSTILE)] == [
        (orjson.loads(line)["event"], orjson.loads(line)["message"]) for line in lines
    ]


def test_query_table_escapes_hostile_text(server: RunningServer) -> None:
    """The table shows CR/LF, escapes and U+2028 visibly, never raw (INJ-01..03)."""
    result = run(server, "query", "--service", "web")
    assert 0 == result.exit_code
    assert "\\r\\n2024-05-01T00:00:00Z INFO" in result.stdout
    assert "\\x1b]0;pwned\\x07" in result.stdout
    assert "\x1b" not in result.stdout
    assert "\r" not in result.stdout
    assert "\u2028" not in result.stdout


def test_query_with_trace_and_since(server: RunningServer) -> None:
    """--trace-id and --since narrow the results."""
    result = run(server, "query", "--trace-id", TRACE, "--json")
    recent = run(server, "query", "--since", "1h", "--json")
    assert {"http_request", "node_failed"} == {
        orjson.loads(line)["event"] for line in result.stdout.splitlines()
    }
    assert ["window_error"] == [orjson.loads(line)["event"] for line in recent.stdout.splitlines()]


def test_query_uses_the_local_read_token_file(server: RunningServer) -> None:
    """Without --token the CLI reads <data-dir>/read_token written by a local server."""
    result = CliRunner().invoke(
        app,
        ["query", "--json", "--url", server.url, "--data-dir", str(server.data_dir)],
    )
    assert 0 == result.exit_code
    assert 3 == len(result.stdout.splitlines())


def test_query_honours_environment_variables(server: RunningServer) -> None:
    """LOGBEACON_URL and LOGBEACON_TOKEN stand in for --url and --token."""
    result = CliRunner().invoke(
        app,
        ["query", "--json", "--limit", "1"],
        env={"LOGBEACON_URL": server.url, "LOGBEACON_TOKEN": server.read_token},
    )
    assert (0, 1) == (result.exit_code, len(result.stdout.splitlines()))


def test_query_without_token_says_what_to_do(server: RunningServer, tmp_path: Path) -> None:
    """A 401 becomes a message naming --token and LOGBEACON_TOKEN, exit 1."""
    result = CliRunner().invoke(app, ["query", "--url", server.url, "--data-dir", str(tmp_path)])
    assert 1 == result.exit_code
    assert "LOGBEACON_TOKEN" in result.stderr


def test_query_bad_filter_shows_the_server_message(server: RunningServer) -> None:
    """An invalid filter value reports the server's explanation."""
    result = run(server, "query", "--since", "last tuesday")
    assert 1 == result.exit_code
    assert "since" in result.stderr
    assert "15m" in result.stderr


def test_unreachable_server(tmp_path: Path) -> None:
    """Connection refused is a clear message, not a traceback."""
    result = CliRunner().invoke(
        app, ["query", "--url", f"http://127.0.0.1:{free_port()}", "--token", "x"]
    )
    assert 1 == result.exit_code
    assert "cannot reach a logbeacon server" in result.stderr


def test_trace_shows_services_in_time_order(server: RunningServer) -> None:
    """`logbeacon trace ID` lists the trace's events oldest first with offsets."""
    result = run(server, "trace", TRACE)
    assert 0 == result.exit_code
    assert "services api, langgraph" in result.stdout
    assert result.stdout.index("http_request") < result.stdout.index("node_failed")
    assert "250.0" in result.stdout


def test_trace_json(server: RunningServer) -> None:
    """`trace --json` prints the trace document."""
    result = run(server, "trace", TRACE, "--json")
    doc = orjson.loads(result.stdout)
    assert (TRACE, 250.0, 1) == (doc["trace_id"], doc["duration_ms"], doc["error_count"])


def test_unknown_trace_is_a_clear_error(server: RunningServer) -> None:
    """An unknown trace id exits 1 saying nothing is stored for it."""
    result = run(server, "trace", "c" * 32)
    assert 1 == result.exit_code
    assert "no events with trace id" in result.stderr


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\r\nb", "a\\r\\nb"),
        ("tab\there", "tab\\there"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("\x9b31m", "\\x9b31m"),
        ("nul\x00del\x7f", "nul\\x00del\\x7f"),
        ("ls\u2028ps\u2029nel\u0085", "ls\\u2028ps\\u2029nel\\x85"),
        ("rtl\u202eevil", "rtl\\u202eevil"),
        ("plain Grüße ✓", "plain Grüße ✓"),
    ],
)
def test_escape_terminal(raw: str, shown: str) -> None:
    """Control, escape, line-break and bidi characters render visibly; text stays as is."""
    assert shown == escape_terminal(raw)


def test_json_line_is_one_line() -> None:
    """JSON output escapes every line break, including U+2028/2029/0085, and stays valid."""
    line = json_line({"m": "a\nb\u2028c\u2029d\u0085e"})
    assert 1 == len(line.splitlines())
    assert {"m": "a\nb\u2028c\u2029d\u0085e"} == orjson.loads(line)
