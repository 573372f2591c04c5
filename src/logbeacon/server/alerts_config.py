"""Alert configuration: the TOML file of `logbeacon serve --alerts` (docs/alerts.md).

Loaded and validated once, at start. A syntax error keeps tomllib's "at line N" text; a
semantic error (unknown key, wrong type, bad value) names the line of the offending key, found
by `KeyLines` in the file's text, so every mistake reads `alerts.toml:12: …`. Without a file
the defaults apply: new error groups and failed runs in `prod` and `staging`, recorded in the
history (`GET /v1/alerts`, the dashboard) with no webhook to send to.

Webhook URLs and secrets never appear in an error message, a `repr` or an API answer: a
Slack webhook URL is itself a credential.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from logbeacon.exceptions import ConfigError

__all__ = [
    "DEFAULT_ENVIRONMENTS",
    "RULE_TYPES",
    "WEBHOOK_FORMATS",
    "AlertsConfig",
    "KeyLines",
    "Rule",
    "Webhook",
    "default_config",
    "load_config",
    "parse_config",
    "parse_duration",
]

RULE_TYPES: Final = ("new_error_group", "error_rate", "run_failed", "no_events")
WEBHOOK_FORMATS: Final = ("json", "slack")
DEFAULT_ENVIRONMENTS: Final = ("prod", "staging")

_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SECRET_MIN: Final = 16
_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_DURATION_RE: Final = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)\s*(ms|s|m|h|d|w)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}

_TOP_KEYS: Final = frozenset({"dashboard_url", "queue_size", "history_size", "webhook", "rule"})
_WEBHOOK_KEYS: Final = frozenset(
    {
        "name",
        "url",
        "format",
        "secret",
        "secret_env",
        "timeout",
        "max_attempts",
        "backoff",
        "max_backoff",
    }
)
_COMMON_RULE_KEYS: Final = frozenset(
    {"name", "type", "environments", "services", "webhooks", "cooldown", "group_wait"}
)
_RULE_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "new_error_group": _COMMON_RULE_KEYS | {"regression_after"},
    "error_rate": _COMMON_RULE_KEYS | {"threshold", "window"},
    "run_failed": _COMMON_RULE_KEYS | {"names", "include_cancelled"},
    "no_events": _COMMON_RULE_KEYS | {"after"},
}


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where alerts are POSTed; `secret` signs them like ingestion (x-log-signature)."""

    name: str
    url: str = field(repr=False)
    format: str = "json"
    secret: str | None = field(default=None, repr=False)
    timeout: float = 10.0
    max_attempts: int = 6
    backoff: float = 2.0
    max_backoff: float = 300.0

    def describe(self) -> dict[str, Any]:
        """What `GET /v1/alerts` shows: no URL, no secret."""
        return {"name": self.name, "format": self.format, "signed": self.secret is not None}


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule; fields a rule type does not use keep their defaults."""

    name: str
    type: str
    environments: tuple[str, ...] = ()  # empty: every environment
    services: tuple[str, ...] = ()  # empty: every service
    webhooks: tuple[str, ...] = ()  # names; filled with every webhook when not given
    cooldown: float = 600.0
    group_wait: float = 10.0
    regression_after: float = 7 * 86_400.0  # new_error_group; 0 = regressions never fire
    threshold: float = 10.0  # error_rate: errors per minute
    window: float = 300.0  # error_rate
    names: tuple[str, ...] = ()  # run_failed: graph/pipeline names or job ids; empty: all
    include_cancelled: bool = False  # run_failed: a cancelled graph (warn) counts too
    after: float = 600.0  # no_events

    def matches(self, service: str | None, environment: str | None) -> bool:
        """The rule's service and environment filters (environment compared in lower case)."""
        if self.environments and (environment or "").lower() not in self.environments:
            return False
        return not self.services or service in self.services

    def describe(self) -> dict[str, Any]:
        """The rule as `GET /v1/alerts` shows it (only the keys its type uses)."""
        document: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "environments": list(self.environments),
            "services": list(self.services),
            "webhooks": list(self.webhooks),
            "cooldown_seconds": self.cooldown,
            "group_wait_seconds": self.group_wait,
        }
        if self.type == "new_error_group":
            document["regression_after_seconds"] = self.regression_after
        elif self.type == "error_rate":
            document["threshold_per_minute"] = self.threshold
            document["window_seconds"] = self.window
        elif self.type == "run_failed":
            document["names"] = list(self.names)
            document["include_cancelled"] = self.include_cancelled
        else:
            document["after_seconds"] = self.after
        return document


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """Every rule and webhook, plus the engine's bounds."""

    rules: tuple[Rule, ...]
    webhooks: tuple[Webhook, ...] = ()
    dashboard_url: str | None = None
    queue_size: int = 10_000
    history_size: int = 1_000
    source: str = "defaults"

    def webhook(self, name: str) -> Webhook:
        for webhook in self.webhooks:
            if webhook.name == name:
                return webhook
        raise KeyError(name)


def default_config() -> AlertsConfig:
    """The rules that apply without a file: new error groups and failed runs in prod/staging."""
    return AlertsConfig(rules=_default_rules(()))


def _default_rules(webhooks: tuple[str, ...]) -> tuple[Rule, ...]:
    return (
        Rule(
            name="new-error-groups",
            type="new_error_group",
            environments=DEFAULT_ENVIRONMENTS,
            webhooks=webhooks,
        ),
        Rule(
            name="failed-runs",
            type="run_failed",
            environments=DEFAULT_ENVIRONMENTS,
            webhooks=webhooks,
        ),
    )


# --------------------------------------------------------------------------- key lines


class KeyLines:
    """Line numbers of keys in a TOML text, to point semantic errors at the right line.

    Knows `[table]` and `[[array]]` headers (the n-th `[[rule]]` is rule n) and `key = value`
    lines; a key inside an inline table or a multi-line value falls back to its table's header.
    Good enough for error messages, which is all it is for.
    """

    _HEADER: Final = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?")
    _KEY: Final = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')\s*=")

    def __init__(self, text: str) -> None:
        self._keys: dict[tuple[str, int | None, str], int] = {}
        self._tables: dict[tuple[str, int | None], int] = {}
        counts: dict[str, int] = {}
        table: tuple[str, int | None] = ("", None)
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header is not None:
                name = header.group(2).strip().strip("\"'")
                if header.group(1) == "[[":
                    index = counts.get(name, 0)
                    counts[name] = index + 1
                    table = (name, index)
                else:
                    table = (name, None)
                self._tables.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key is not None:
                self._keys.setdefault((*table, key.group(1).strip("\"'")), number)

    def line(self, table: str = "", index: int | None = None, key: str | None = None) -> int | None:
        """The line of `key` in the table (or of the table's header), None if not found."""
        if key is not None:
            found = self._keys.get((table, index, key))
            if found is None and not table:  # a key written as a table: [rule]
                found = self._tables.get((key, None), self._tables.get((key, 0)))
            if found is not None:
                return found
        return self._tables.get((table, index))


# --------------------------------------------------------------------------- parsing


class _Reader:
    """Validates one TOML table, raising ConfigError with `file:line: where: problem`."""

    def __init__(
        self,
        source: str,
        lines: KeyLines,
        values: Mapping[str, Any],
        *,
        table: str = "",
        index: int | None = None,
        label: str = "",
    ) -> None:
        self.source = source
        self.lines = lines
        self.values = values
        self.table = table
        self.index = index
        self.label = label

    def error(self, key: str | None, problem: str) -> ConfigError:
        line = self.lines.line(self.table, self.index, key)
        where = f"{self.source}:{line}" if line is not None else self.source
        subject = f"{self.label}: " if self.label else ""
        return ConfigError(f"{where}: {subject}{problem}")

    def check_keys(self, allowed: frozenset[str]) -> None:
        for key in self.values:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.error(key, f"unknown key {key!r} (known keys: {known})")

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        if key not in self.values:
            if required:
                raise self.error(None, f"{key} is required")
            return default
        value = self.values[key]
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"{key} must be a non-empty string")
        return value.strip()

    def name(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.text(key, default, required=required)
        if value is not None and not _NAME_RE.fullmatch(value):
            raise self.error(key, f"{key} must be 1-64 letters, digits, '_', '.' or '-'")
        return value

    def names(self, key: str, *, lower: bool = False) -> tuple[str, ...] | None:
        if key not in self.values:
            return None
        value = self.values[key]
        if not isinstance(value, list) or not all(
            isinstance(item, str) and item.strip() for item in value
        ):
            raise self.error(key, f"{key} must be a list of non-empty strings")
        items = tuple(item.strip().lower() if lower else item.strip() for item in value)
        return tuple(dict.fromkeys(items))

    def duration(
        self, key: str, default: float, *, minimum: float = 0.0, maximum: float = 90 * 86_400.0
    ) -> float:
        if key not in self.values:
            return default
        value = self.values[key]
        seconds: float
        if isinstance(value, bool):
            raise self.error(key, f'{key} must be a duration such as "30s", "5m", "7d"')
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except ValueError:
                raise self.error(
                    key, f'{key} must be a duration such as "30s", "5m", "2h", "7d"'
                ) from None
        else:
            raise self.error(key, f'{key} must be a duration such as "30s", "5m", "7d"')
        if not math.isfinite(seconds) or not minimum <= seconds <= maximum:
            raise self.error(key, f"{key} must be between {_human(minimum)} and {_human(maximum)}")
        return seconds

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        if key not in self.values:
            return default
        value = self.values[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(key, f"{key} must be a whole number from {low} to {high}")
        return value

    def number(self, key: str, default: float) -> float:
        if key not in self.values:
            return default
        value = self.values[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise self.error(key, f"{key} must be a positive number")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.values:
            return default
        value = self.values[key]
        if not isinstance(value, bool):
            raise self.error(key, f"{key} must be true or false")
        return value


def parse_duration(text: str) -> float:
    """Seconds in `"30s"`, `"1.5s"`, `"250ms"`, `"5m"`, `"2h"`, `"7d"`, `"1w"`; ValueError else."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"not a duration: {text[:20]!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _human(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> AlertsConfig:
    """Read and validate an alerts file; ConfigError names the file, the line and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: alerts file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read the alerts file: {reason}") from None
    return parse_config(text, source=str(path), environ=environ)


def parse_config(
    text: str, *, source: str = "alerts.toml", environ: Mapping[str, str] | None = None
) -> AlertsConfig:
    """Validate the text of an alerts file (see `load_config`)."""
    env = os.environ if environ is None else environ
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        if match is None:
            raise ConfigError(f"{source}: invalid TOML: {reason}") from None
        raise ConfigError(
            f"{source}:{match.group(1)}: invalid TOML at column {match.group(2)}: {reason}"
        ) from None
    lines = KeyLines(text)
    top = _Reader(source, lines, document)
    top.check_keys(_TOP_KEYS)
    dashboard_url = top.text("dashboard_url")
    if dashboard_url is not None:
        parts = urlsplit(dashboard_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise top.error("dashboard_url", "dashboard_url must be an http(s) URL")
        dashboard_url = dashboard_url.rstrip("/")
    queue_size = top.integer("queue_size", 10_000, low=100, high=1_000_000)
    history_size = top.integer("history_size", 1_000, low=10, high=100_000)

    webhooks = tuple(
        _webhook(source, lines, index, entry, env)
        for index, entry in enumerate(_tables(top, "webhook"))
    )
    seen: set[str] = set()
    for index, webhook in enumerate(webhooks):
        if webhook.name in seen:
            raise _Reader(source, lines, {}, table="webhook", index=index).error(
                "name", f"webhook name {webhook.name!r} is used twice"
            )
        seen.add(webhook.name)

    every = tuple(webhook.name for webhook in webhooks)
    if "rule" in document:
        rules = tuple(
            _rule(source, lines, index, entry, webhooks=seen, every=every)
            for index, entry in enumerate(_tables(top, "rule"))
        )
    else:
        rules = _default_rules(every)
    names: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.name in names:
            raise _Reader(source, lines, {}, table="rule", index=index).error(
                "name", f"rule name {rule.name!r} is used twice"
            )
        names.add(rule.name)
    return AlertsConfig(
        rules=rules,
        webhooks=webhooks,
        dashboard_url=dashboard_url,
        queue_size=queue_size,
        history_size=history_size,
        source=source,
    )


def _tables(top: _Reader, key: str) -> Sequence[Mapping[str, Any]]:
    value = top.values.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise top.error(key, f"{key} must be an array of tables: write [[{key}]] sections")
    return value


def _webhook(
    source: str, lines: KeyLines, index: int, values: Mapping[str, Any], env: Mapping[str, str]
) -> Webhook:
    reader = _Reader(
        source, lines, values, table="webhook", index=index, label=f"webhook #{index + 1}"
    )
    reader.check_keys(_WEBHOOK_KEYS)
    name = reader.name("name", required=True)
    assert name is not None
    reader.label = f"webhook {name!r}"
    url = reader.text("url", required=True)
    assert url is not None
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise reader.error("url", "url has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise reader.error("url", "url must be an http:// or https:// URL")
    fmt = reader.text("format", "json")
    if fmt not in WEBHOOK_FORMATS:
        raise reader.error("format", f"format must be one of {', '.join(WEBHOOK_FORMATS)}")
    secret = reader.text("secret")
    secret_env = reader.text("secret_env")
    if secret is not None and secret_env is not None:
        raise reader.error("secret_env", "give secret or secret_env, not both")
    if secret_env is not None:
        if not _ENV_NAME_RE.fullmatch(secret_env):
            raise reader.error("secret_env", "secret_env must be an environment variable name")
        secret = env.get(secret_env, "").strip()
        if not secret:
            raise reader.error("secret_env", f"environment variable {secret_env} is not set")
    if secret is not None and len(secret) < _SECRET_MIN:
        raise reader.error(
            "secret_env" if secret_env else "secret",
            f"the secret must be at least {_SECRET_MIN} characters",
        )
    backoff = reader.duration("backoff", 2.0, minimum=0.01, maximum=3600.0)
    max_backoff = reader.duration("max_backoff", 300.0, minimum=0.01, maximum=86_400.0)
    if max_backoff < backoff:
        raise reader.error("max_backoff", "max_backoff must not be shorter than backoff")
    assert fmt is not None
    return Webhook(
        name=name,
        url=url,
        format=fmt,
        secret=secret,
        timeout=reader.duration("timeout", 10.0, minimum=0.1, maximum=300.0),
        max_attempts=reader.integer("max_attempts", 6, low=1, high=100),
        backoff=backoff,
        max_backoff=max_backoff,
    )


def _rule(
    source: str,
    lines: KeyLines,
    index: int,
    values: Mapping[str, Any],
    *,
    webhooks: set[str],
    every: tuple[str, ...],
) -> Rule:
    reader = _Reader(source, lines, values, table="rule", index=index, label=f"rule #{index + 1}")
    name = reader.name("name", required=True)
    assert name is not None
    reader.label = f"rule {name!r}"
    kind = reader.text("type", required=True)
    if kind not in RULE_TYPES:
        raise reader.error("type", f"type must be one of {', '.join(RULE_TYPES)}")
    reader.check_keys(_RULE_KEYS[kind])
    targets = reader.names("webhooks")
    for target in targets or ():
        if target not in webhooks:
            raise reader.error("webhooks", f"no [[webhook]] is named {target!r}")
    environments = reader.names("environments", lower=True)
    services = reader.names("services")
    if kind == "no_events" and "after" not in values:
        raise reader.error(None, 'a no_events rule needs after (e.g. after = "10m")')
    if kind == "error_rate" and "threshold" not in values:
        raise reader.error(None, "an error_rate rule needs threshold (errors per minute)")
    return Rule(
        name=name,
        type=kind,
        environments=environments or (),
        services=services or (),
        webhooks=every if targets is None else targets,
        cooldown=reader.duration("cooldown", 600.0, maximum=7 * 86_400.0),
        group_wait=reader.duration("group_wait", 10.0, maximum=3600.0),
        regression_after=reader.duration("regression_after", 7 * 86_400.0, maximum=365 * 86_400.0),
        threshold=reader.number("threshold", 10.0),
        window=reader.duration("window", 300.0, minimum=10.0, maximum=86_400.0),
        names=reader.names("names") or (),
        include_cancelled=reader.boolean("include_cancelled", False),
        after=reader.duration("after", 600.0, minimum=1.0, maximum=30 * 86_400.0),
    )
