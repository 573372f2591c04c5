"""Settings resolution, configure/reset, and loggers following reconfiguration."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from logbeacon.exceptions import ConfigError
from logbeacon.redact import Redaction
from logbeacon.sdk import configure, current_settings, get_logger, is_configured, reset
from logbeacon.sdk.config import SETTINGS, resolve_settings
from logbeacon.sdk.stdlib import StdlibBridge
from tests.sdk.conftest import lines


def _bridges() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, StdlibBridge)]


def test_defaults_without_arguments_or_environment() -> None:
    """With nothing set, service is app, environment dev, level info, format auto."""
    settings = resolve_settings(environ={})
    assert ("app", "dev", None, "info", "auto") == (
        settings.service,
        settings.environment,
        settings.release,
        settings.level,
        settings.format,
    )
    assert (None, True, True, 10_000) == (
        settings.log_dir,
        settings.capture_stdlib,
        settings.pseudonymize_user_id,
        settings.ship_queue_size,
    )


@pytest.mark.parametrize(
    ("var", "value", "attribute", "expected"),
    [
        ("SERVICE_NAME", "billing", "service", "billing"),
        ("LOGBEACON_SERVICE", "api", "service", "api"),
        ("ENVIRONMENT", "staging", "environment", "staging"),
        ("LOGBEACON_ENVIRONMENT", "prod", "environment", "prod"),
        ("RELEASE", "v1.2.3", "release", "v1.2.3"),
        ("LOGBEACON_RELEASE", "abc123", "release", "abc123"),
        ("LOG_LEVEL", "WARNING", "level", "warn"),
        ("LOGBEACON_LEVEL", "debug", "level", "debug"),
        ("LOG_FORMAT", "console", "format", "console"),
        ("LOGBEACON_FORMAT", "JSON", "format", "json"),
        ("TROUBLESHOOT_API_LOG_DIR", "/tmp/lb-logs", "log_dir", Path("/tmp/lb-logs")),
        ("LOGBEACON_LOG_DIR", "/tmp/lb-logs2", "log_dir", Path("/tmp/lb-logs2")),
        ("LOG_INGEST_HMAC_SECRET", "s3", "hmac_secret", "s3"),
        ("LOGBEACON_HMAC_SECRET", "s4", "hmac_secret", "s4"),
        ("LOGBEACON_INGEST_KEY", "k1", "ingest_key", "k1"),
        ("LOGBEACON_USER_ID_KEY", "uk", "user_id_key", b"uk"),
        ("LOGBEACON_LOG_MAX_BYTES", "2048", "log_max_bytes", 2048),
        ("LOGBEACON_LOG_BACKUPS", "0", "log_backups", 0),
    ],
)
def test_environment_variables_and_aliases(
    var: str, value: str, attribute: str, expected: object
) -> None:
    """Each environment variable, including the seed plans' aliases, sets its setting."""
    settings = resolve_settings(environ={var: value})
    assert expected == getattr(settings, attribute)


def test_logbeacon_name_wins_over_alias() -> None:
    """LOGBEACON_SERVICE is consulted before the SERVICE_NAME alias."""
    settings = resolve_settings(environ={"LOGBEACON_SERVICE": "a", "SERVICE_NAME": "b"})
    assert "a" == settings.service


def test_explicit_arguments_win_over_environment() -> None:
    """An argument beats every environment variable for the same setting."""
    environ = {"SERVICE_NAME": "env-svc", "LOG_LEVEL": "error", "ENVIRONMENT": "prod"}
    settings = resolve_settings(environ=environ, service="arg-svc", level="debug")
    assert ("arg-svc", "debug", "prod") == (
        settings.service,
        settings.level,
        settings.environment,
    )


def test_configure_reads_process_environment(
    monkeypatch: pytest.MonkeyPatch, out: io.StringIO
) -> None:
    """configure() with no service argument uses SERVICE_NAME and RELEASE from os.environ."""
    monkeypatch.setenv("SERVICE_NAME", "worker")
    monkeypatch.setenv("RELEASE", "r42")
    configure(stream=out, format="json")
    get_logger().info("hello")
    [event] = lines(out)
    assert ("worker", "r42") == (event["service"], event["release"])


@pytest.mark.parametrize(
    ("arguments", "environ", "fragment"),
    [
        ({"level": "loud"}, {}, "level='loud' is not valid; expected one of debug, info"),
        ({}, {"LOG_LEVEL": "trace"}, "LOG_LEVEL='trace' is not valid"),
        ({"format": "xml"}, {}, "expected one of json, console, auto"),
        ({}, {"LOG_FORMAT": "yaml"}, "LOG_FORMAT='yaml'"),
        ({"service": ""}, {}, "service='' is not valid; expected a non-empty printable"),
        ({"service": "a\nb"}, {}, "service='a\\nb' is not valid"),
        ({"ship_queue_size": 0}, {}, "ship_queue_size=0 is not valid; expected an integer >= 1"),
        ({"capture_stdlib": "maybe"}, {}, "capture_stdlib='maybe' is not valid; expected true"),
        ({"redaction": {"extra_keys": ["x"]}}, {}, "logbeacon.Redaction"),
        ({"stream": 42}, {}, "a writable stream"),
        ({"ship_to": "ftp://example"}, {}, "an http:// or https:// server base URL"),
        ({}, {"LOGBEACON_LOG_MAX_BYTES": "12"}, "an integer >= 1024"),
    ],
)
def test_invalid_settings_name_setting_and_accepted_values(
    arguments: dict[str, object], environ: dict[str, str], fragment: str
) -> None:
    """An invalid value raises ConfigError naming where it came from and what is accepted."""
    with pytest.raises(ConfigError) as caught:
        resolve_settings(environ=environ, **arguments)
    assert fragment in str(caught.value)


def test_secret_values_are_not_echoed_in_errors() -> None:
    """An invalid ingest key is reported without its value."""
    with pytest.raises(ConfigError) as caught:
        resolve_settings(environ={}, ingest_key="   ")
    assert "ingest_key must be a non-empty string" == str(caught.value)


def test_unknown_argument_is_rejected() -> None:
    """resolve_settings refuses names that are not settings instead of ignoring them."""
    with pytest.raises(ConfigError) as caught:
        resolve_settings(environ={}, sevrice="x")
    assert "unknown setting(s): sevrice" == str(caught.value)


def test_ship_to_adds_the_shipper_sink(out: io.StringIO) -> None:
    """ship_to adds a background shipper to the sinks; the caller is not blocked by it."""
    from logbeacon.sdk import config

    configure(ship_to="http://127.0.0.1:9", stream=out, service="svc")
    pipeline = config._state.pipeline
    assert pipeline is not None
    assert ["stream", "shipper"] == [sink.name for sink in pipeline.sinks]


def test_failed_configure_keeps_previous_configuration(out: io.StringIO) -> None:
    """A configure() that raises leaves the earlier configuration in force."""
    configure(service="first", stream=out, format="json")
    with pytest.raises(ConfigError):
        configure(level="nonsense")
    get_logger().info("still")
    assert ["first"] == [e["service"] for e in lines(out)]


def test_every_setting_is_declared_once() -> None:
    """The settings table has one entry per name, each with at most one parser."""
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))


def test_configure_twice_does_not_duplicate_output(out: io.StringIO) -> None:
    """Reconfiguring replaces the sinks and the stdlib handler instead of adding more."""
    configure(stream=out, format="json")
    configure(stream=out, format="json")
    configure(stream=out, format="json", service="third")
    get_logger().info("once")
    logging.getLogger("lib").warning("stdlib once")
    events = lines(out)
    assert ["once", "log"] == [e["event"] for e in events]
    assert ["third", "third"] == [e["service"] for e in events]
    assert 1 == len(_bridges())


def test_reconfigure_closes_old_file(tmp_path: Path, out: io.StringIO) -> None:
    """The old log file is closed when configure() is called again with another directory."""
    configure(stream=out, format="json", log_dir=tmp_path / "a")
    get_logger().info("to_a")
    configure(stream=out, format="json", log_dir=tmp_path / "b")
    get_logger().info("to_b")
    text_a = (tmp_path / "a" / "app.jsonl").read_text()
    text_b = (tmp_path / "b" / "app.jsonl").read_text()
    assert (1, 1) == (text_a.count("\n"), text_b.count("\n"))
    assert ("to_a" in text_a, "to_b" in text_b) == (True, True)


def test_loggers_obtained_earlier_follow_reconfiguration(out: io.StringIO) -> None:
    """A logger (and a bound child) created before configure() uses the new level and sinks."""
    early = get_logger("early")
    child = early.bind(component="x")
    configure(stream=out, format="json", level="error")
    early.info("filtered")
    child.error("kept")
    configure(stream=out, format="json", level="debug", service="later")
    early.debug("now_visible")
    events = lines(out)
    assert ["kept", "now_visible"] == [e["event"] for e in events]
    assert ["x", "later"] == [events[0]["component"], events[1]["service"]]


def test_get_logger_before_configure_autoconfigures_from_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first log call configures from the environment and writes JSON to stdout."""
    monkeypatch.setenv("SERVICE_NAME", "auto")
    log = get_logger("m")
    assert not is_configured()
    log.info("first")
    assert is_configured()
    out = capsys.readouterr().out
    assert '"service":"auto"' in out
    assert '"event":"first"' in out


def test_autoconfigure_with_bad_environment_falls_back_in_production(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad LOG_LEVEL does not make a log call raise: defaults are used and it is counted."""
    monkeypatch.setenv("LOGBEACON_RAISE_INTERNAL", "0")
    monkeypatch.setenv("LOG_LEVEL", "shouting")
    get_logger().info("still_logged")
    from logbeacon.sdk import internal_errors

    assert {"autoconfigure:ConfigError": 1} == internal_errors()
    assert '"event":"still_logged"' in capsys.readouterr().out


def test_reset_returns_to_unconfigured_state(out: io.StringIO) -> None:
    """reset() removes the stdlib handler, forgets settings and stops writing to old sinks."""
    configure(stream=out, format="json")
    assert 1 == len(_bridges())
    reset()
    assert (False, None, 0) == (is_configured(), current_settings(), len(_bridges()))
    configure(stream=io.StringIO(), format="json")
    get_logger().info("elsewhere")
    assert "" == out.getvalue()


def test_auto_format_is_json_when_not_a_tty(out: io.StringIO) -> None:
    """format=auto renders JSON to a stream that is not a terminal."""
    configure(stream=out)
    get_logger().info("x")
    assert out.getvalue().startswith('{"timestamp":')


class _FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("environment", "console"), [("dev", True), ("prod", False)])
def test_auto_format_is_console_on_a_tty_outside_prod(environment: str, console: bool) -> None:
    """format=auto picks the console renderer on a TTY, except in prod."""
    stream = _FakeTty()
    configure(stream=stream, environment=environment)
    get_logger().info("x")
    assert console == (not stream.getvalue().startswith("{"))


def test_log_dir_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    """A log_dir below a regular file raises ConfigError saying what to do."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError) as caught:
        configure(log_dir=blocker / "logs", stream=io.StringIO())
    assert "choose a writable directory or unset log_dir" in str(caught.value)


def test_redaction_setting_is_passed_to_the_redactor(out: io.StringIO) -> None:
    """Redaction(extra_keys=...) makes the extra key redacted in output."""
    configure(stream=out, format="json", redaction=Redaction(extra_keys=("customer_ref",)))
    get_logger().info("x", customer_ref="C-123")
    assert "[REDACTED]" == lines(out)[0]["customer_ref"]
