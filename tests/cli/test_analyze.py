"""`logbeacon analyze` against a real `logbeacon serve`: tables, Markdown, JSON, failures."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner, Result

from logbeacon.cli.main import app
from logbeacon.event import format_timestamp
from tests.helpers.server import RunningServer, clean_environment, free_port, running_server

HOSTILE = "db down\r\n# fake heading\x1b]0;pwned\x07"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server holding a few minutes of API traffic with failures and one slow agent node."""
    with running_server(tmp_path_factory.mktemp("cli-analyze")) as running:
        start = time.time() - 300
        events: list[dict[str, object]] = [
            {"event": "http_request", "service": "api", "timestamp": format_timestamp(start + i)}
            for i in range(10)
        ]
        events += [
            {"event": "db_failed", "level": "error", "service": "api",
             "timestamp": format_timestamp(start + 20 + i),
             "error": {"type": "OperationalError", "message": HOSTILE}}
            for i in range(3)
        ]  # fmt: skip
        events.append(
            {"event": "node_complete", "service": "langgraph", "node": "researcher",
             "run_id": "r1", "duration_ms": 1234.0, "timestamp": format_timestamp(start + 30)}
        )  # fmt: skip
        assert 200 == httpx.post(f"{running.url}/v1/logs", json=events).status_code
        yield running


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


def run(server: RunningServer, *args: str) -> Result:
    extra = ["--url", server.url, "--token", server.read_token]
    return CliRunner().invoke(app, ["analyze", *args, *extra], env={"COLUMNS": "200"})


def test_tables_show_totals_top_error_and_slowest_step(server: RunningServer) -> None:
    """The default output names the totals, the top error type and the slowest node."""
    result = run(server, "--since", "1h")
    assert (0, True, True, True) == (
        result.exit_code,
        "14 events, 3 errors" in result.output,
        "OperationalError" in result.output,
        "researcher" in result.output,
    )


def test_markdown_output_is_the_servers_markdown(server: RunningServer) -> None:
    """--markdown prints the server's Markdown: the top error in a code span, no control
    characters, no injected heading."""
    result = run(server, "--markdown", "--service", "api")
    controls = [c for c in result.output if c != "\n" and unicodedata.category(c) == "Cc"]
    assert (0, True, [], []) == (
        result.exit_code,
        "`OperationalError`" in result.output,
        controls,
        [line for line in result.output.splitlines() if line.startswith("# fake")],
    )


def test_json_output_is_the_analysis_document(server: RunningServer) -> None:
    """--json prints the analysis as one JSON document, filtered by --level."""
    result = run(server, "--json", "--level", "error")
    doc = orjson.loads(result.output)
    assert (0, 3, {"error": 3, "critical": 0}) == (
        result.exit_code,
        doc["totals"]["events"],
        doc["by_level"],
    )


def test_bad_level_and_bad_token_fail_with_a_message(server: RunningServer) -> None:
    """A rejected parameter and a wrong token exit 1 with the server's reason."""
    bad_level = run(server, "--level", "loud")
    bad_token = CliRunner().invoke(
        app, ["analyze", "--url", server.url, "--token", "wrong-token-0123456789abcdef"]
    )
    assert (1, True, 1, True) == (
        bad_level.exit_code,
        "level" in bad_level.output,
        bad_token.exit_code,
        "token" in bad_token.output,
    )


def test_unreachable_server_says_how_to_fix_it(tmp_path: Path) -> None:
    """No server at --url: exit 1 and advice to start one or pass --url."""
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["analyze", "--markdown", "--url", url, "--token", "t" * 32])
    assert (1, True) == (result.exit_code, "logbeacon serve" in result.output)
