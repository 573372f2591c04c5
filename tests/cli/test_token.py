"""`logbeacon token diag`: minting through the server and using the token."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import jwt
import orjson
import pytest
from typer.testing import CliRunner

from logbeacon.cli.main import app
from tests.helpers.server import RunningServer, clean_environment, running_server

ADMIN = "admin-token-FAKE-0123456789abcdef"
SECRET = "diag-secret-FAKE-0123456789abcdef-0123456789abcdef-0123456789abcdef"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {"LOGBEACON_ADMIN_TOKEN": ADMIN, "LOG_DIAGNOSTIC_SECRET": SECRET, "ENVIRONMENT": "prod"}
    with running_server(tmp_path_factory.mktemp("cli-token"), env=env) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


def test_mint_prints_a_token_that_unlocks_the_session(server: RunningServer) -> None:
    """The printed token has sid/scope/30 min and lets that session's debug events through."""
    result = CliRunner().invoke(
        app,
        ["token", "diag", "--session", "sess-7", "--url", server.url],
        env={"LOGBEACON_ADMIN_TOKEN": ADMIN},
    )
    token = result.stdout.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="logbeacon-diag")
    response = httpx.post(
        f"{server.url}/v1/logs",
        json=[
            {"event": "debug_detail", "level": "debug", "session_id": "sess-7"},
            {"event": "debug_other", "level": "debug", "session_id": "sess-8"},
        ],
        headers={"x-logbeacon-diag": token},
    )
    assert 0 == result.exit_code
    assert ("sess-7", "diag", 1800) == (
        claims["sid"],
        claims["scope"],
        claims["exp"] - claims["iat"],
    )
    assert "valid until" in result.stderr
    assert (1, [1]) == (
        response.json()["accepted"],
        [r["index"] for r in response.json()["rejected"]],
    )


def test_mint_json_output(server: RunningServer) -> None:
    """--json prints token, session_id and expires_at."""
    result = CliRunner().invoke(
        app,
        [
            "token",
            "diag",
            "--session",
            "s",
            "--ttl",
            "5",
            "--json",
            "--url",
            server.url,
            "--admin-token",
            ADMIN,
        ],
    )
    assert 0 == result.exit_code
    assert {"token", "session_id", "expires_at"} == set(orjson.loads(result.stdout))


def test_ttl_over_an_hour_is_refused_locally() -> None:
    """--ttl above 60 is a usage error before any request is made."""
    result = CliRunner().invoke(
        app, ["token", "diag", "--session", "s", "--ttl", "61", "--admin-token", ADMIN]
    )
    assert 2 == result.exit_code
    assert "60" in result.stderr


def test_missing_admin_token_says_what_to_set() -> None:
    """Without an admin token the command explains --admin-token / LOGBEACON_ADMIN_TOKEN."""
    result = CliRunner().invoke(app, ["token", "diag", "--session", "s"])
    assert 1 == result.exit_code
    assert "LOGBEACON_ADMIN_TOKEN" in result.stderr


def test_wrong_admin_token_is_refused(server: RunningServer) -> None:
    """A wrong admin token is a clear 401 message, exit 1."""
    result = CliRunner().invoke(
        app,
        [
            "token",
            "diag",
            "--session",
            "s",
            "--url",
            server.url,
            "--admin-token",
            "wrong-admin-FAKE-0123456789",
        ],
    )
    assert 1 == result.exit_code
    assert "token" in result.stderr
