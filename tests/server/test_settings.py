"""Server settings: environment variables, aliases, overrides and the errors that name them."""

from __future__ import annotations

from pathlib import Path

import pytest

from logbeacon.exceptions import ConfigError
from logbeacon.server.settings import ENV_VARS, Settings
from tests.server.conftest import BROWSER_KEY, HMAC_SECRET, INGEST_KEY, ORIGIN, READ_TOKEN


def test_defaults_match_the_design() -> None:
    """Defaults are DESIGN.md §4's: loopback:8765, ./.logbeacon, 1 MiB, 1000, 50/s, 500, 14 d."""
    s = Settings.from_env({})
    assert (
        "127.0.0.1",
        8765,
        Path(".logbeacon"),
        None,
        "dev",
        False,
        14,
        "normal",
        1_048_576,
        1000,
        50.0,
        500,
    ) == (
        s.host,
        s.port,
        s.data_dir,
        s.store,
        s.environment,
        s.stdout,
        s.retention_days,
        s.durability,
        s.max_body_bytes,
        s.max_batch,
        s.rate,
        s.burst,
    )


def test_every_setting_from_its_environment_variable() -> None:
    """Each environment variable of the settings table sets its field."""
    env = {
        "LOGBEACON_HOST": "0.0.0.0",
        "LOGBEACON_PORT": "9000",
        "LOGBEACON_DATA_DIR": "/tmp/lb",
        "LOGBEACON_STORE": "sqlite:///tmp/lb/x.db",
        "ENVIRONMENT": "PROD",
        "LOGBEACON_INGEST_KEYS": f"{INGEST_KEY}, {INGEST_KEY[::-1]}",
        "LOGBEACON_HMAC_SECRETS": HMAC_SECRET,
        "LOGBEACON_READ_TOKENS": READ_TOKEN,
        "LOGBEACON_ADMIN_TOKEN": "admin-token-FAKE-0123456789",
        "LOG_DIAGNOSTIC_SECRET": "d" * 32,
        "LOGBEACON_BROWSER_KEY": BROWSER_KEY,
        "LOGBEACON_ALLOWED_ORIGINS": f"{ORIGIN}/, http://localhost:3000",
        "LOGBEACON_TRUSTED_PROXIES": "10.0.0.0/8",
        "LOGBEACON_STDOUT": "1",
        "LOGBEACON_RETENTION_DAYS": "30",
        "LOGBEACON_DURABILITY": "full",
        "LOGBEACON_MAX_BODY_BYTES": "2048",
        "LOGBEACON_MAX_BATCH": "10",
        "LOGBEACON_RATE": "2.5",
        "LOGBEACON_BURST": "20",
    }
    s = Settings.from_env(env)
    assert ("0.0.0.0", 9000, Path("/tmp/lb"), "sqlite:///tmp/lb/x.db", "prod") == (
        s.host,
        s.port,
        s.data_dir,
        s.store,
        s.environment,
    )
    assert ((INGEST_KEY, INGEST_KEY[::-1]), (HMAC_SECRET,), (READ_TOKEN,)) == (
        s.ingest_keys,
        s.hmac_secrets,
        s.read_tokens,
    )
    assert ((ORIGIN, "http://localhost:3000"), ("10.0.0.0/8",)) == (
        s.allowed_origins,
        s.trusted_proxies,
    )
    assert (True, 30, "full", 2048, 10, 2.5, 20, True) == (
        s.stdout,
        s.retention_days,
        s.durability,
        s.max_body_bytes,
        s.max_batch,
        s.rate,
        s.burst,
        s.is_prod,
    )


def test_seed_aliases_are_honoured() -> None:
    """LOG_INGEST_HMAC_SECRET and ENVIRONMENT work as aliases; our own names win."""
    s = Settings.from_env({"LOG_INGEST_HMAC_SECRET": HMAC_SECRET, "ENVIRONMENT": "staging"})
    both = Settings.from_env({"LOGBEACON_ENVIRONMENT": "prod", "ENVIRONMENT": "staging"})
    assert ((HMAC_SECRET,), "staging", "prod") == (s.hmac_secrets, s.environment, both.environment)


def test_overrides_win_and_none_means_unset() -> None:
    """Explicit arguments beat the environment; None leaves the environment's value."""
    s = Settings.from_env({"LOGBEACON_PORT": "9000", "LOGBEACON_BURST": "7"}, port=9100, burst=None)
    assert (9100, 7) == (s.port, s.burst)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LOGBEACON_PORT": "http"}, "LOGBEACON_PORT"),
        ({"LOGBEACON_PORT": "70000"}, "LOGBEACON_PORT"),
        ({"LOGBEACON_DURABILITY": "fsync"}, "LOGBEACON_DURABILITY"),
        ({"LOGBEACON_RETENTION_DAYS": "0"}, "LOGBEACON_RETENTION_DAYS"),
        ({"LOGBEACON_MAX_BODY_BYTES": "10"}, "LOGBEACON_MAX_BODY_BYTES"),
        ({"LOGBEACON_MAX_BATCH": "0"}, "LOGBEACON_MAX_BATCH"),
        ({"LOGBEACON_RATE": "fast"}, "LOGBEACON_RATE"),
        ({"LOGBEACON_RATE": "nan"}, "LOGBEACON_RATE"),
        ({"LOGBEACON_BURST": "0"}, "LOGBEACON_BURST"),
        ({"LOGBEACON_STDOUT": "maybe"}, "LOGBEACON_STDOUT"),
        ({"LOGBEACON_INGEST_KEYS": "short"}, "LOGBEACON_INGEST_KEYS"),
        ({"LOGBEACON_READ_TOKENS": "has space in it 0123"}, "LOGBEACON_READ_TOKENS"),
        ({"LOG_DIAGNOSTIC_SECRET": "sixteen-bytes-ok"}, "LOG_DIAGNOSTIC_SECRET"),
        ({"LOGBEACON_BROWSER_KEY": BROWSER_KEY}, "LOGBEACON_ALLOWED_ORIGINS"),
        ({"LOGBEACON_ALLOWED_ORIGINS": "*"}, "LOGBEACON_ALLOWED_ORIGINS"),
        ({"LOGBEACON_ALLOWED_ORIGINS": "https://a.example/path"}, "LOGBEACON_ALLOWED_ORIGINS"),
        ({"LOGBEACON_ALLOWED_ORIGINS": "ftp://a.example"}, "LOGBEACON_ALLOWED_ORIGINS"),
        ({"LOGBEACON_TRUSTED_PROXIES": "proxy.internal"}, "LOGBEACON_TRUSTED_PROXIES"),
        (
            {
                "LOGBEACON_BROWSER_KEY": READ_TOKEN,
                "LOGBEACON_ALLOWED_ORIGINS": ORIGIN,
                "LOGBEACON_READ_TOKENS": READ_TOKEN,
            },
            "LOGBEACON_BROWSER_KEY",
        ),
    ],
)
def test_bad_values_raise_config_error_naming_the_variable(env: dict[str, str], named: str) -> None:
    """A bad value stops start-up with a ConfigError that names the variable to fix."""
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"LOGBEACON_INGEST_KEYS": INGEST_KEY},
        {"LOGBEACON_READ_TOKENS": READ_TOKEN},
    ],
    ids=["nothing", "no-read-token", "no-ingest-credential"],
)
def test_non_loopback_bind_needs_keys(env: dict[str, str]) -> None:
    """Listening beyond loopback needs an ingest credential and a read token."""
    with pytest.raises(ConfigError, match="LOGBEACON_READ_TOKENS"):
        Settings.from_env({**env, "LOGBEACON_HOST": "0.0.0.0"})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_keys(host: str) -> None:
    """Loopback binds are allowed without any key."""
    assert host == Settings(host=host).host


def test_exposed_bind_with_keys_is_allowed() -> None:
    """With an ingest key and a read token, any address may be bound."""
    s = Settings(host="0.0.0.0", ingest_keys=(INGEST_KEY,), read_tokens=(READ_TOKEN,))
    assert "0.0.0.0" == s.host


def test_repr_hides_secrets() -> None:
    """Settings can be logged: no key, token or secret appears in repr (INJ-11)."""
    s = Settings(
        ingest_keys=(INGEST_KEY,),
        hmac_secrets=(HMAC_SECRET,),
        read_tokens=(READ_TOKEN,),
        admin_token="admin-token-FAKE-0123456789",
        diagnostic_secret="d" * 32,
        browser_key=BROWSER_KEY,
        allowed_origins=(ORIGIN,),
    )
    text = repr(s)
    for secret in (INGEST_KEY, HMAC_SECRET, READ_TOKEN, "admin-token-FAKE", "d" * 32, BROWSER_KEY):
        assert secret not in text


def test_unknown_override_is_an_error() -> None:
    """A misspelt override is refused instead of silently ignored."""
    with pytest.raises(ConfigError, match="prot"):
        Settings.from_env({}, prot=1)


def test_every_environment_variable_is_documented() -> None:
    """docs/server.md names every environment variable the server reads."""
    docs = (Path(__file__).parents[2] / "docs" / "server.md").read_text()
    missing = [v for names in ENV_VARS.values() for v in names if v not in docs]
    assert [] == missing
