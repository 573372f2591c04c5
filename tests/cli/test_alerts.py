"""`logbeacon alerts check|test`, and `logbeacon serve --alerts` refusing a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from logbeacon.cli.main import app
from logbeacon.signing import verify
from tests.helpers.server import clean_environment, free_port
from tests.server.test_alerts import WEBHOOK_SECRET, webhook_receiver, webhook_toml


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_alerts_test_sends_a_signed_sample_to_each_webhook(tmp_path: Path) -> None:
    """`alerts test` posts a signed sample alert and reports it delivered."""
    with webhook_receiver() as receiver:
        path = _write(tmp_path, webhook_toml(receiver.url, fmt="slack"))
        result = CliRunner().invoke(app, ["alerts", "test", "--alerts", str(path)])
        assert 0 == result.exit_code, result.output
        assert "webhook ops: delivered (attempt 1)" in result.stderr
        (call,) = receiver.wait_for(1)
        assert verify(
            call.body,
            call.headers["x-log-timestamp"],
            call.headers["x-log-signature"],
            WEBHOOK_SECRET,
        )
        assert call.json()["text"].startswith(":rotating_light: *Test alert from logbeacon")


def test_alerts_test_exits_1_when_a_webhook_is_unreachable(tmp_path: Path) -> None:
    """A receiver that is down is retried, then reported as failed with exit code 1."""
    url = f"http://127.0.0.1:{free_port()}/hook"
    path = _write(tmp_path, webhook_toml(url))
    result = CliRunner().invoke(app, ["alerts", "test", "--alerts", str(path), "--attempts", "2"])
    assert 1 == result.exit_code
    assert "webhook ops: failed after 2 attempt(s): ConnectError" in result.stderr


def test_alerts_check_lists_rules_and_reports_the_bad_line(tmp_path: Path) -> None:
    """`alerts check` lists a valid file's rules, and names the line of a mistake (exit 2)."""
    path = _write(tmp_path, '[[rule]]\nname = "r"\ntype = "run_failed"\n')
    result = CliRunner().invoke(app, ["alerts", "check", "--alerts", str(path)])
    assert 0 == result.exit_code, result.output
    assert "rule r: run_failed in every environment → history only" in result.stdout
    _write(tmp_path, '[[rule]]\nname = "r"\ntype = "run_failed"\nnmes = ["x"]\n')
    result = CliRunner().invoke(app, ["alerts", "check"], env={"LOGBEACON_ALERTS": str(path)})
    assert 2 == result.exit_code
    assert f"{path}:4: rule 'r': unknown key 'nmes'" in result.stderr


def test_serve_refuses_a_bad_alerts_file_naming_the_line(tmp_path: Path) -> None:
    """`serve --alerts` with a mistake exits 2 before binding, naming the file and line."""
    path = _write(tmp_path, '[[rule]]\nname = "r"\ntype = "error_rate"\nthreshold = "lots"\n')
    result = CliRunner().invoke(
        app, ["serve", "--alerts", str(path), "--data-dir", str(tmp_path / "d")]
    )
    assert 2 == result.exit_code
    assert f"{path}:4: rule 'r': threshold must be a positive number" in result.stderr
