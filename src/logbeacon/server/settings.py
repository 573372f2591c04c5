"""Server settings: every flag and environment variable of `logbeacon serve` in one dataclass.

Each setting is declared once, with its environment variable(s) next to it; precedence is
explicit argument → environment → default (STYLE.md 3). Bad values raise `ConfigError` naming
the variable, so a typo stops the server at start instead of weakening it at run time.
Secrets are excluded from `repr` so a settings object can be logged safely.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from logbeacon.event import DEFAULT_LIMITS, Limits
from logbeacon.exceptions import ConfigError

__all__ = ["ENV_VARS", "PROD_ENVIRONMENTS", "Settings", "is_loopback_host"]

MIB: Final = 1024 * 1024

# Field name → environment variables, first match wins (seed aliases after our own names).
ENV_VARS: Final[Mapping[str, tuple[str, ...]]] = {
    "host": ("LOGBEACON_HOST",),
    "port": ("LOGBEACON_PORT",),
    "data_dir": ("LOGBEACON_DATA_DIR",),
    "store": ("LOGBEACON_STORE",),
    "environment": ("LOGBEACON_ENVIRONMENT", "ENVIRONMENT"),
    "ingest_keys": ("LOGBEACON_INGEST_KEYS",),
    "hmac_secrets": ("LOGBEACON_HMAC_SECRETS", "LOG_INGEST_HMAC_SECRET"),
    "read_tokens": ("LOGBEACON_READ_TOKENS",),
    "admin_token": ("LOGBEACON_ADMIN_TOKEN",),
    "diagnostic_secret": ("LOG_DIAGNOSTIC_SECRET",),
    "browser_key": ("LOGBEACON_BROWSER_KEY",),
    "allowed_origins": ("LOGBEACON_ALLOWED_ORIGINS",),
    "trusted_proxies": ("LOGBEACON_TRUSTED_PROXIES",),
    "stdout": ("LOGBEACON_STDOUT",),
    "retention_days": ("LOGBEACON_RETENTION_DAYS",),
    "durability": ("LOGBEACON_DURABILITY",),
    "max_body_bytes": ("LOGBEACON_MAX_BODY_BYTES",),
    "max_batch": ("LOGBEACON_MAX_BATCH",),
    "rate": ("LOGBEACON_RATE",),
    "burst": ("LOGBEACON_BURST",),
    "alerts": ("LOGBEACON_ALERTS",),
    "writer_process": ("LOGBEACON_WRITER_PROCESS",),
}

PROD_ENVIRONMENTS: Final = frozenset({"prod", "production"})
DURABILITY_MODES: Final = ("normal", "full")

_LIST_FIELDS: Final = frozenset(
    {"ingest_keys", "hmac_secrets", "read_tokens", "allowed_origins", "trusted_proxies"}
)
_INT_FIELDS: Final = frozenset({"port", "retention_days", "max_body_bytes", "max_batch", "burst"})
_SECRET_MIN: Final = 16
_DIAG_SECRET_MIN_BYTES: Final = 32  # RFC 7518 §3.2: an HS256 key is at least 256 bits
_BROWSER_KEY_MIN: Final = 8
# Printable ASCII without space or comma: safe in headers and in comma-separated lists.
_TOKEN_RE: Final = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback addresses: binding there exposes nothing."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _env_name(name: str) -> str:
    return ENV_VARS[name][0]


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Everything `create_app` and `logbeacon serve` need; see docs/server.md for each one."""

    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = Path(".logbeacon")
    store: str | None = None
    environment: str = "dev"
    ingest_keys: tuple[str, ...] = field(default=(), repr=False)
    hmac_secrets: tuple[str, ...] = field(default=(), repr=False)
    read_tokens: tuple[str, ...] = field(default=(), repr=False)
    admin_token: str | None = field(default=None, repr=False)
    diagnostic_secret: str | None = field(default=None, repr=False)
    browser_key: str | None = field(default=None, repr=False)
    allowed_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    stdout: bool = False
    retention_days: int = 14
    durability: str = "normal"
    max_body_bytes: int = MIB
    max_batch: int = 1000
    rate: float = 50.0
    burst: int = 500
    limits: Limits = DEFAULT_LIMITS
    signature_tolerance: int = 300
    rate_limit_max_keys: int = 100_000
    alerts: Path | None = None  # alert rules file (docs/alerts.md); None: the default rules
    writer_process: bool | None = None  # SQLite writer in a child process; None: automatic

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "data_dir", Path(self.data_dir))
        if self.alerts is not None:
            set_(self, "alerts", Path(self.alerts))
        set_(self, "environment", self.environment.strip().lower())
        set_(self, "allowed_origins", tuple(_origin(o) for o in self.allowed_origins))
        self._validate()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from environment variables, then apply `overrides` (None = unset).

        `overrides` are field names (`port=9000`, `stdout=True`); the CLI passes every flag,
        leaving the ones the user did not give as None so the environment still applies.
        """
        env = os.environ if environ is None else environ
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, variables in ENV_VARS.items():
            for variable in variables:
                raw = env.get(variable, "").strip()
                if raw:
                    values[name] = _parse(name, variable, raw)
                    break
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some settings changed (validated again)."""
        return replace(self, **changes)

    # ------------------------------------------------------------------ derived

    @property
    def is_prod(self) -> bool:
        """The level policy applies (DESIGN.md §4)."""
        return self.environment in PROD_ENVIRONMENTS

    @property
    def resolved_writer_process(self) -> bool:
        """The SQLite writer gets its own process when there is a core for it (on POSIX: the
        child inherits its pipes by descriptor)."""
        if self.writer_process is None:
            return os.name == "posix" and usable_cores() > 1
        return self.writer_process

    @property
    def ingest_open(self) -> bool:
        """No ingest credential configured: ingestion is open to loopback clients only."""
        return not (self.ingest_keys or self.hmac_secrets or self.browser_key)

    # ------------------------------------------------------------------ validation

    def _validate(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"{_env_name('port')} must be a port number 1-65535")
        if not self.host.strip():
            raise ConfigError(f"{_env_name('host')} must not be empty")
        if not self.environment or len(self.environment) > 64:
            raise ConfigError("ENVIRONMENT must be a short name such as dev, staging or prod")
        if self.durability not in DURABILITY_MODES:
            raise ConfigError(
                f"{_env_name('durability')} must be 'normal' (survives a process crash) or "
                "'full' (survives power loss)"
            )
        if self.retention_days < 1:
            raise ConfigError(f"{_env_name('retention_days')} must be at least 1 day")
        if not 1024 <= self.max_body_bytes <= 64 * MIB:
            raise ConfigError(f"{_env_name('max_body_bytes')} must be between 1024 and 67108864")
        if not 1 <= self.max_batch <= 100_000:
            raise ConfigError(f"{_env_name('max_batch')} must be between 1 and 100000 events")
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ConfigError(f"{_env_name('rate')} must be a positive number of events/second")
        if self.burst < 1:
            raise ConfigError(f"{_env_name('burst')} must be at least 1 event")
        if self.signature_tolerance < 1 or self.rate_limit_max_keys < 1:
            raise ConfigError("signature_tolerance and rate_limit_max_keys must be positive")
        for name in ("ingest_keys", "hmac_secrets", "read_tokens"):
            for value in getattr(self, name):
                _check_secret(name, value, _SECRET_MIN)
        if self.admin_token is not None:
            _check_secret("admin_token", self.admin_token, _SECRET_MIN)
        if self.diagnostic_secret is not None and (
            len(self.diagnostic_secret.encode("utf-8")) < _DIAG_SECRET_MIN_BYTES
        ):
            raise ConfigError(
                "LOG_DIAGNOSTIC_SECRET must be at least 32 bytes (HS256 key length, RFC 7518); "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        self._validate_browser_key()
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigError(
                    f"{_env_name('trusted_proxies')} entries must be IP addresses or networks"
                ) from None
        self._validate_exposure()

    def _validate_browser_key(self) -> None:
        if self.browser_key is None:
            return
        _check_secret("browser_key", self.browser_key, _BROWSER_KEY_MIN)
        if not self.allowed_origins:
            raise ConfigError(
                "LOGBEACON_BROWSER_KEY needs LOGBEACON_ALLOWED_ORIGINS (the origins of the pages "
                "that may use it, e.g. https://app.example.com)"
            )
        secrets = {*self.ingest_keys, *self.hmac_secrets, *self.read_tokens, self.admin_token}
        if self.browser_key in secrets:
            raise ConfigError(
                "LOGBEACON_BROWSER_KEY is public (it ships in web pages); it must differ from "
                "every ingest key, HMAC secret, read token and the admin token"
            )

    def _validate_exposure(self) -> None:
        if is_loopback_host(self.host):
            return
        if self.ingest_open or not self.read_tokens:
            raise ConfigError(
                f"refusing to listen on {self.host}: outside loopback, set an ingest credential "
                "(LOGBEACON_INGEST_KEYS, LOGBEACON_HMAC_SECRETS or LOGBEACON_BROWSER_KEY with "
                "LOGBEACON_ALLOWED_ORIGINS) and LOGBEACON_READ_TOKENS, or bind to 127.0.0.1"
            )


def _check_secret(name: str, value: str, minimum: int) -> None:
    variable = _env_name(name)
    if len(value) < minimum or not _TOKEN_RE.fullmatch(value):
        raise ConfigError(
            f"{variable}: each value must be at least {minimum} printable ASCII characters "
            "without spaces or commas"
        )


def _origin(value: str) -> str:
    """Normalise an allowed origin to `scheme://host[:port]` as browsers send it."""
    text = value.strip().rstrip("/")
    parts = urlsplit(text)
    if (
        text == "*"
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
        or "*" in text
    ):
        raise ConfigError(
            f"{_env_name('allowed_origins')}: {value[:100]!r} is not an origin; list exact "
            "origins such as https://app.example.com (wildcards are not allowed: the browser "
            "key would be usable from any page)"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{_env_name('allowed_origins')}: bad port in {value[:100]!r}") from None
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _parse(name: str, variable: str, raw: str) -> Any:
    if name in _LIST_FIELDS:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if name in _INT_FIELDS:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be a whole number, got {raw[:40]!r}") from None
    if name == "rate":
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be a number, got {raw[:40]!r}") from None
    if name in ("stdout", "writer_process"):
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{variable} must be 1/0, true/false, yes/no or on/off")
    if name in ("data_dir", "alerts"):
        return Path(raw)
    return raw
