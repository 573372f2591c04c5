"""The alerts file: defaults, validation errors that name the line, and the docs' example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from logbeacon.exceptions import ConfigError
from logbeacon.server.alerts_config import (
    DEFAULT_ENVIRONMENTS,
    default_config,
    load_config,
    parse_config,
    parse_duration,
)
from logbeacon.server.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"

GOOD = """\
dashboard_url = "https://logs.example.com"

[[webhook]]
name = "ops"
url = "https://hooks.example.com/a"

[[rule]]
name = "errors"
type = "new_error_group"

[[rule]]
name = "storm"
type = "error_rate"
threshold = 5
"""


def _error(text: str, **environ: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="alerts.toml", environ=environ)
    return str(caught.value)


def test_defaults_are_new_error_groups_and_failed_runs_in_prod_and_staging() -> None:
    """Without a file the two default rules watch prod and staging and send nowhere."""
    config = default_config()
    assert [("new-error-groups", "new_error_group"), ("failed-runs", "run_failed")] == [
        (rule.name, rule.type) for rule in config.rules
    ]
    assert {DEFAULT_ENVIRONMENTS} == {rule.environments for rule in config.rules}
    assert ((), ()) == (config.webhooks, config.rules[0].webhooks)


def test_a_file_without_rules_gets_the_default_rules_sending_to_every_webhook() -> None:
    """Webhooks alone are enough: the default rules send to all of them."""
    config = parse_config('[[webhook]]\nname = "a"\nurl = "http://127.0.0.1:9/x"\n')
    assert [("a",), ("a",)] == [rule.webhooks for rule in config.rules]


def test_rule_keys_and_durations_are_parsed() -> None:
    """Rules take their keys, durations and defaults; `rule = []` turns alerting off."""
    config = parse_config(GOOD)
    errors, storm = config.rules
    assert ("ops",) == errors.webhooks
    assert (5.0, 300.0, 600.0, 10.0) == (
        storm.threshold,
        storm.window,
        storm.cooldown,
        storm.group_wait,
    )
    assert "https://logs.example.com" == config.dashboard_url
    assert () == parse_config("rule = []\n").rules
    assert (0.25, 90.0, 7 * 86_400.0) == (
        parse_duration("250ms"),
        parse_duration("1.5m"),
        parse_duration("7d"),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[rule]]\nname = "x"\ntype = "error_rate"\nthreshold = 3\ntreshold = 4\n',
            "alerts.toml:5: rule 'x': unknown key 'treshold'",
        ),
        (
            GOOD.replace("threshold = 5", "threshold = -1"),
            "alerts.toml:14: rule 'storm': threshold must be a positive number",
        ),
        (
            '[[rule]]\nname = "a"\ntype = "run_failed"\n\n[[rule]]\nname = "b"\ntype = "nope"\n',
            "alerts.toml:7: rule 'b': type must be one of new_error_group, error_rate",
        ),
        (
            '[[rule]]\nname = "a"\ntype = "run_failed"\nwebhooks = ["slack"]\n',
            "alerts.toml:4: rule 'a': no [[webhook]] is named 'slack'",
        ),
        (
            '[[rule]]\nname = "a"\ntype = "no_events"\n',
            "alerts.toml:1: rule 'a': a no_events rule needs after",
        ),
        (
            '[[rule]]\nname = "a"\ntype = "new_error_group"\ncooldown = "soon"\n',
            "alerts.toml:4: rule 'a': cooldown must be a duration",
        ),
        (
            '[[webhook]]\nname = "w"\nurl = "ftp://example.com"\n',
            "alerts.toml:3: webhook 'w': url must be an http:// or https:// URL",
        ),
        (
            '[[webhook]]\nname = "w"\nurl = "http://a.example"\nsecret_env = "HOOK_SECRET"\n',
            "alerts.toml:4: webhook 'w': environment variable HOOK_SECRET is not set",
        ),
        (
            '[[webhook]]\nname = "w"\nurl = "http://a.example"\nsecret = "short"\n',
            "alerts.toml:4: webhook 'w': the secret must be at least 16 characters",
        ),
        (
            GOOD.replace('name = "storm"', 'name = "errors"'),
            "alerts.toml:12: rule name 'errors' is used twice",
        ),
        ("queue_size = 5\n", "alerts.toml:1: queue_size must be a whole number from 100"),
        ('[rule]\nname = "x"\n', "alerts.toml:1: rule must be an array of tables"),
    ],
)
def test_semantic_errors_name_the_line_and_the_problem(text: str, expected: str) -> None:
    """Each mistake is reported as `file:line: where: problem` pointing at the bad key."""
    message = _error(text)
    assert expected == message[: len(expected)]


def test_syntax_errors_keep_tomllib_line_numbers() -> None:
    """A TOML syntax error names its line and column."""
    message = _error('[[rule]]\nname = "a"\ntype = run_failed\n')
    assert re.match(r"alerts\.toml:3: invalid TOML at column \d+: ", message), message


def test_messages_never_contain_the_webhook_url_or_secret() -> None:
    """A bad webhook entry is named by its name; its URL (a credential for Slack) is not."""
    text = (
        '[[webhook]]\nname = "w"\nurl = "https://hooks.example.com/T0/SECRETPATH"\n'
        'secret = "0123456789abcdefSECRET"\nformat = "xml"\n'
    )
    message = _error(text)
    assert "alerts.toml:5: webhook 'w': format must be one of json, slack" == message
    config = parse_config(text.replace('"xml"', '"json"'))
    assert "SECRETPATH" not in repr(config)
    assert "SECRET" not in repr(config.webhooks[0])


def test_secret_env_reads_the_variable() -> None:
    """`secret_env` names a variable whose value signs the webhook's requests."""
    text = '[[webhook]]\nname = "w"\nurl = "http://a.example"\nsecret_env = "HOOK_SECRET"\n'
    config = parse_config(text, environ={"HOOK_SECRET": "s" * 20})
    assert "s" * 20 == config.webhooks[0].secret


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A path that does not exist is reported with the path."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}: alerts file not found" == str(caught.value)


def test_settings_take_the_alerts_file_from_the_environment(tmp_path: Path) -> None:
    """`LOGBEACON_ALERTS` sets the alerts file; a flag overrides it."""
    settings = Settings.from_env({"LOGBEACON_ALERTS": "/etc/logbeacon/alerts.toml"})
    assert Path("/etc/logbeacon/alerts.toml") == settings.alerts
    overridden = Settings.from_env({"LOGBEACON_ALERTS": "/x.toml"}, alerts=tmp_path / "a.toml")
    assert tmp_path / "a.toml" == overridden.alerts


def test_the_documented_example_is_valid() -> None:
    """The full example in docs/alerts.md parses, with every rule type in it."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"```toml\n(.*?)```", text, re.S)
    assert match is not None
    config = parse_config(match.group(1), environ={"ALERTS_WEBHOOK_SECRET": "x" * 32})
    assert {"new_error_group", "error_rate", "run_failed", "no_events"} == {
        rule.type for rule in config.rules
    }
