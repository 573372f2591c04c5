"""`logbeacon serve`: flags, environment, refusal to expose itself, and the printed URL."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from logbeacon.cli.main import app
from logbeacon.cli.serve import _without_credentials
from logbeacon.server.settings import ENV_VARS
from tests.helpers.server import clean_environment, running_server

DOCS = Path(__file__).parents[2] / "docs" / "server.md"
FLAGS = (
    "--host",
    "--port",
    "--data-dir",
    "--store",
    "--environment",
    "--stdout",
    "--retention-days",
    "--durability",
    "--max-body-bytes",
    "--max-batch",
    "--rate",
    "--burst",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


def test_non_loopback_bind_without_keys_is_refused(tmp_path: Path) -> None:
    """--host 0.0.0.0 without keys exits 2 explaining which variables to set."""
    result = CliRunner().invoke(
        app, ["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "d")]
    )
    assert 2 == result.exit_code
    for variable in ("LOGBEACON_INGEST_KEYS", "LOGBEACON_READ_TOKENS"):
        assert variable in result.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--durability", "sometimes"], {}, "LOGBEACON_DURABILITY"),
        (["--burst", "0"], {}, "LOGBEACON_BURST"),
        ([], {"LOGBEACON_PORT": "eighty"}, "LOGBEACON_PORT"),
        (["--store", "mysql://x"], {}, "--store"),
    ],
)
def test_bad_settings_exit_2_naming_the_setting(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    """A bad flag or variable stops serve before it binds, naming what to fix."""
    result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "d"), *args], env=env)
    assert 2 == result.exit_code
    assert named in result.stderr


def test_store_credentials_are_not_printed() -> None:
    """A store URL with user:password is printed without them."""
    assert "clickhouse://***@db.internal:8443/logs" == _without_credentials(
        "clickhouse://admin:s3cret-FAKE@db.internal:8443/logs"
    )
    assert "sqlite:///var/lib/x.db" == _without_credentials("sqlite:///var/lib/x.db")


def test_help_lists_every_flag_with_its_variable() -> None:
    """serve --help shows each flag of DESIGN.md §4 and names its environment variable."""
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert 0 == result.exit_code
    for flag in FLAGS:
        assert flag in result.stdout
    for variable in ("LOGBEACON_PORT", "LOGBEACON_DURABILITY", "LOGBEACON_BURST", "ENVIRONMENT"):
        assert variable in result.stdout


def test_every_flag_and_variable_is_documented() -> None:
    """docs/server.md documents every serve flag and environment variable."""
    docs = DOCS.read_text()
    variables = [name for names in ENV_VARS.values() for name in names]
    assert [] == [item for item in (*FLAGS, *variables) if item not in docs]


@pytest.mark.e2e
def test_banner_prints_the_dashboard_url_with_the_saved_token(tmp_path: Path) -> None:
    """Without read tokens, serve prints http://127.0.0.1:PORT/?token=… and saves the token."""
    with running_server(tmp_path) as server:
        banner = server.log_path.read_text()
        url = re.search(r"dashboard: (http://\S+)", banner)
        assert url is not None
        token = (server.data_dir / "read_token").read_text().strip()
        assert f"{server.url}/?token={token}" == url.group(1)
        response = httpx.get(f"{server.url}/v1/logs", params={"token": token})
    assert 200 == response.status_code


@pytest.mark.e2e
def test_flags_override_environment(tmp_path: Path) -> None:
    """--max-batch and --environment beat their variables in a running server."""
    env = {"LOGBEACON_MAX_BATCH": "100", "ENVIRONMENT": "dev"}
    args = ["--max-batch", "2", "--environment", "prod"]
    with running_server(tmp_path, env=env, args=args) as server:
        too_many = httpx.post(f"{server.url}/v1/logs", json=[{"event": "x"}] * 3)
        policy = httpx.post(f"{server.url}/v1/logs", json=[{"event": "x", "level": "info"}])
    assert (413, 2) == (too_many.status_code, too_many.json()["limit"])
    assert [{"index": 0, "reason": "level_not_allowed"}] == policy.json()["rejected"]
