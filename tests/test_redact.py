"""The redactor: corpus secrets vanish wherever they sit, look-alikes survive untouched."""

from __future__ import annotations

import copy
import dataclasses
import enum
import re
import time
from typing import Any

import orjson
import pytest

from logbeacon.exceptions import ConfigError
from logbeacon.redact import MARKER, MARKER_KINDS, Redaction, Redactor, default_redactor
from tests.redaction_corpus import LOOKALIKES, SECRETS, LookAlike, Secret

_SECRET_IDS = [s.id for s in SECRETS]
_LOOKALIKE_IDS = [item.id for item in LOOKALIKES]

# Context around a secret inside a sentence: look-alikes that must survive next to it.
_LEAD = "[550e8400-e29b-41d4-a716-446655440000 2026-05-01T12:34:56.789Z ORD-2024-000123]"
_TYPED_MARKER = re.compile(r"\[REDACTED:([a-z_]+)\]")


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    """One redactor with the default rules, shared so its caches are exercised too."""
    return Redactor()


def _strings(tree: Any) -> list[str]:
    """Every string in a tree, keys included."""
    found: list[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                stack.append(key)
                stack.append(value)
        elif isinstance(node, list | tuple | set | frozenset):
            stack.extend(node)
    return found


def _assert_absent(secret: Secret, tree: Any, position: str) -> None:
    leaked = [s for s in _strings(tree) if secret.secret in s]
    assert [] == leaked, f"corpus secret {secret.id!r} leaked at {position}: {leaked!r}"


def _nest(value: Any) -> dict[str, Any]:
    """Put a value five levels deep in alternating dicts and lists."""
    return {"a": [{"b": {"c": [{"d": {"e": value}}]}}]}


def _dig(tree: dict[str, Any]) -> Any:
    return tree["a"][0]["b"]["c"][0]["d"]["e"]


# --------------------------------------------------------------------------- corpus: secrets


def test_corpus_is_large_enough() -> None:
    """The corpus holds at least 40 secrets and 20 look-alikes, with unique ids."""
    assert (True, True) == (len(SECRETS) >= 40, len(LOOKALIKES) >= 20)
    ids = [*_SECRET_IDS, *_LOOKALIKE_IDS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("secret", SECRETS, ids=_SECRET_IDS)
def test_secret_alone_becomes_its_marker(redactor: Redactor, secret: Secret) -> None:
    """A secret redacted on its own leaves its documented marker and none of its text."""
    out = redactor.redact_text(secret.text)
    _assert_absent(secret, out, "redact_text(text)")
    assert secret.expect in out, f"{secret.id}: expected {secret.expect!r} in {out!r}"


@pytest.mark.parametrize("secret", SECRETS, ids=_SECRET_IDS)
def test_secret_under_neutral_key(redactor: Redactor, secret: Secret) -> None:
    """(a) A secret as the value of an innocuous key is scrubbed by value patterns."""
    out = redactor.redact({"note": secret.text, "service": "api"})
    _assert_absent(secret, out, "value of key 'note'")
    assert "api" == out["service"]


@pytest.mark.parametrize("secret", SECRETS, ids=_SECRET_IDS)
def test_secret_inside_sentence(redactor: Redactor, secret: Secret) -> None:
    """(b) Inside a log line only the secret goes; the ids and timestamp before it stay."""
    line = f"{_LEAD} upstream said: {secret.text} (retry 2)"
    out = redactor.redact({"message": line})
    _assert_absent(secret, out, "inside a sentence under 'message'")
    assert out["message"].startswith(f"{_LEAD} upstream said: "), f"{secret.id}: {out!r}"


@pytest.mark.parametrize("secret", SECRETS, ids=_SECRET_IDS)
def test_secret_nested_five_levels(redactor: Redactor, secret: Secret) -> None:
    """(c) Secrets five levels down in dicts and lists are found."""
    out = redactor.redact(_nest(secret.text))
    _assert_absent(secret, out, "a.0.b.c.0.d.e")
    assert secret.expect in _dig(out), f"{secret.id}: {_dig(out)!r}"


@pytest.mark.parametrize("secret", SECRETS, ids=_SECRET_IDS)
def test_secret_under_sensitive_key(redactor: Redactor, secret: Secret) -> None:
    """(d) Under a sensitive key the whole value is replaced by the plain marker."""
    out = redactor.redact({"password": secret.text, "extra": {"apiKey": [secret.text]}})
    assert {"password": MARKER, "extra": {"apiKey": MARKER}} == out, secret.id


@pytest.mark.parametrize("secret", SECRETS, ids=_SECRET_IDS)
def test_secret_as_dict_key(redactor: Redactor, secret: Secret) -> None:
    """A secret used as a key is redacted in the key itself; its value stays unless the key
    names a sensitive field (``password=hunter2`` as a key is still a password key)."""
    out = redactor.redact({"attrs": {secret.text: 7}})
    _assert_absent(secret, out, "key of 'attrs'")
    expected_value = MARKER if redactor.is_sensitive_key(secret.text) else 7
    assert [expected_value] == list(out["attrs"].values()), secret.id


@pytest.mark.parametrize("secret", SECRETS, ids=_SECRET_IDS)
def test_secret_redaction_is_idempotent(redactor: Redactor, secret: Secret) -> None:
    """Markers match no rule: redacting the output again changes nothing."""
    tree = {"message": f"{_LEAD} {secret.text} end", secret.text: [secret.text]}
    once = redactor.redact(tree)
    assert once == redactor.redact(once), secret.id


@pytest.mark.parametrize("secret", SECRETS, ids=_SECRET_IDS)
def test_markers_never_echo_the_secret(redactor: Redactor, secret: Secret) -> None:
    """Markers are fixed words from MARKER_KINDS and carry no digit or character of the value."""
    out = redactor.redact_text(f"{secret.text} ")
    kinds = _TYPED_MARKER.findall(out)
    assert set(kinds) <= set(MARKER_KINDS), f"{secret.id}: unknown marker in {out!r}"
    assert [] == [m for m in re.findall(r"\[REDACTED[^\]]*\]", out) if re.search(r"\d", m)]


# --------------------------------------------------------------------------- corpus: look-alikes


@pytest.mark.parametrize("item", LOOKALIKES, ids=_LOOKALIKE_IDS)
def test_lookalike_survives_as_value(redactor: Redactor, item: LookAlike) -> None:
    """(a) A look-alike under an innocuous key comes back byte for byte."""
    assert {"note": item.text} == redactor.redact({"note": item.text}), item.id


@pytest.mark.parametrize("item", LOOKALIKES, ids=_LOOKALIKE_IDS)
def test_lookalike_survives_inside_sentence(redactor: Redactor, item: LookAlike) -> None:
    """(b) A look-alike inside a log line survives with the rest of the line."""
    line = f"job ORD-2024-000123 saw {item.text} at 2026-05-01T12:34:56Z, retrying"
    assert line == redactor.redact_text(line), item.id


@pytest.mark.parametrize("item", LOOKALIKES, ids=_LOOKALIKE_IDS)
def test_lookalike_survives_nested(redactor: Redactor, item: LookAlike) -> None:
    """(c) Five levels down a look-alike is left alone."""
    tree = _nest(item.text)
    assert tree == redactor.redact(tree), item.id


@pytest.mark.parametrize("item", LOOKALIKES, ids=_LOOKALIKE_IDS)
def test_lookalike_survives_as_key(redactor: Redactor, item: LookAlike) -> None:
    """A look-alike used as a key keeps its exact text."""
    out = redactor.redact({item.text: 1})
    assert [item.text] == list(out), item.id


def test_lookalike_event_is_returned_equal(redactor: Redactor) -> None:
    """An event made only of look-alikes serialises to the same bytes after redaction."""
    event = {f"field_{i}": item.text for i, item in enumerate(LOOKALIKES)}
    assert orjson.dumps(event) == orjson.dumps(redactor.redact_event(event))


# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "DB_PASSWORD",
        "passwords",
        "PGPASSWORD",
        "userPassword",
        "passwd",
        "mysql_pwd",
        "secret",
        "client_secret",
        "clientSecret",
        "AWS_SECRET_ACCESS_KEY",
        "token",
        "refreshToken",
        "refresh_token",
        "access_token",
        "id_token",
        "csrftoken",
        "X-CSRF-Token",
        "session_token",
        "session_key",
        "sessionKey",
        "api_key",
        "apikey",
        "apiKey",
        "APIKey",
        "X-Api-Key",
        "x-api-key",
        "api-key",
        "private_key",
        "privateKey",
        "access_key",
        "authorization",
        "Authorization",
        "proxy-authorization",
        "auth",
        "is_authenticated",
        "cookie",
        "Set-Cookie",
        "set-cookie",
        "credentials",
        "credit_card",
        "credit_card_number",
        "cardNumber",
        "otp",
        "ssn",
        "cvv",
        "connect.sid",
        "x-log-signature",
        "ingest_key",
        "hmac_secret",
        "user password",
        "X-APIKey",
        "cc_number",
        "security_code",
        "two-factor",
        "mfa_code",
        "signing_key",
        "passphrase",
    ],
)
def test_sensitive_keys_match_by_segment(redactor: Redactor, key: str) -> None:
    """Sensitive words match as whole segments of snake, kebab, dotted and camelCase names."""
    assert redactor.is_sensitive_key(key)
    assert {key: MARKER} == redactor.redact({key: "x-value-1"})


@pytest.mark.parametrize(
    "key",
    [
        "author",
        "authored_by",
        "authority",
        "auXth",
        "tokenizer",
        "tokenizer_name",
        "session",
        "session_id",
        "sessionId",
        "trace_id",
        "span_id",
        "request_id",
        "correlation_id",
        "user_id",
        "run_id",
        "job_id",
        "thread_id",
        "key",
        "keyboard",
        "monkey",
        "cache_key",
        "secretary",
        "passage",
        "message",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "max_tokens",
        "tokens_used",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "promptTokens",
        "completion_tokens_details",
    ],
)
def test_plain_keys_do_not_match(redactor: Redactor, key: str) -> None:
    """Ids, LLM usage counters and words that merely contain a sensitive word are kept."""
    assert not redactor.is_sensitive_key(key)
    assert {key: 12} == redactor.redact({key: 12})


def test_usage_counters_keep_their_numbers(redactor: Redactor) -> None:
    """An LLM usage block keeps every counter, including nested detail objects."""
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 85,
        "total_tokens": 1285,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 64},
    }
    assert {"usage": usage} == redactor.redact({"usage": usage})


def test_booleans_and_none_under_sensitive_keys_are_kept(redactor: Redactor) -> None:
    """`is_authenticated: true` tells no secret; only booleans and null survive a sensitive key."""
    event = {"is_authenticated": True, "password": False, "token": None}
    assert event == redactor.redact(event)


def test_other_values_under_sensitive_keys_are_replaced(redactor: Redactor) -> None:
    """Numbers, floats, lists, dicts and strings under sensitive keys all become the marker."""
    event = {
        "a_password_number": 42,
        "a_password_array": [42, 43],
        "secret": {"nested": "x"},
        "api_token": 1.5,
        "is_authenticated": "foobar",
    }
    assert dict.fromkeys(event, MARKER) == redactor.redact(event)


def test_sensitive_key_matches_at_any_depth(redactor: Redactor) -> None:
    """A sensitive key deep inside lists of dicts is scrubbed like a top-level one."""
    tree = {"a": [{"b": [{"c": {"db_password": "hunter2", "host": "db"}}]}]}
    expected = {"a": [{"b": [{"c": {"db_password": MARKER, "host": "db"}}]}]}
    assert expected == redactor.redact(tree)


def test_non_string_keys_are_walked(redactor: Redactor) -> None:
    """Integer keys are never sensitive, but their values are still redacted."""
    assert {1: "[REDACTED:email]", 2: 3} == redactor.redact({1: "jane.doe@example.com", 2: 3})


# --------------------------------------------------------------------------- configuration


def test_extra_keys_add_words_and_phrases() -> None:
    """`extra_keys` entries match by segment like the defaults, single words and phrases."""
    redactor = Redactor(Redaction(extra_keys=("pin", "tenant_code")))
    assert [True, True, True, True, False] == [
        redactor.is_sensitive_key("pin"),
        redactor.is_sensitive_key("user_PIN"),
        redactor.is_sensitive_key("tenantCode"),
        redactor.is_sensitive_key("X-Tenant-Code"),
        redactor.is_sensitive_key("tenant"),
    ]
    assert {"user_pin": MARKER, "tenant": "acme"} == redactor.redact(
        {"user_pin": "1234", "tenant": "acme"}
    )


def test_extra_patterns_use_the_custom_marker() -> None:
    """`extra_patterns` (strings or compiled) replace their spans with `[REDACTED:custom]`."""
    redactor = Redactor(
        Redaction(extra_patterns=(r"EMP-\d{6}", re.compile(r"\bproject-falcon\b", re.I)))
    )
    assert "staff [REDACTED:custom] on [REDACTED:custom]" == redactor.redact_text(
        "staff EMP-004211 on Project-Falcon"
    )


def test_allow_keys_override_defaults() -> None:
    """`allow_keys` match exactly (case-insensitive) or after segment normalisation."""
    redactor = Redactor(Redaction(allow_keys=("auth_method", "token_budget")))
    event = {"auth_method": "oauth", "AUTH_METHOD": "saml", "tokenBudget": 500, "token": "t"}
    assert {**event, "token": MARKER} == redactor.redact(event)


def test_allow_keys_do_not_disable_value_patterns() -> None:
    """An allow-listed key only skips key redaction; secrets in its value are still scrubbed."""
    redactor = Redactor(Redaction(allow_keys=("auth_method",)))
    assert {"auth_method": "[REDACTED:email]"} == redactor.redact(
        {"auth_method": "jane.doe@example.com"}
    )


def test_redaction_normalises_lists_to_tuples() -> None:
    """Lists (and a bare string) given to Redaction are stored as tuples; it stays frozen."""
    config = Redaction(extra_keys=["a"], extra_patterns="x+y", allow_keys=["b"])  # type: ignore[arg-type]
    assert (("a",), ("x+y",), ("b",)) == (
        config.extra_keys,
        config.extra_patterns,
        config.allow_keys,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.extra_keys = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (lambda: Redaction(extra_patterns=("([",)), "not a valid regex"),
        (lambda: Redaction(extra_patterns=("x*",)), "matches the empty string"),
        (lambda: Redaction(extra_patterns=("REDACTED",)), "matches the redaction marker"),
        (lambda: Redaction(extra_patterns=(r"\w+:\w+",)), "matches the redaction marker"),
        (lambda: Redaction(extra_keys=("",)), "non-empty strings"),
        (lambda: Redaction(allow_keys=(3,)), "non-empty strings"),  # type: ignore[arg-type]
        (lambda: Redaction(extra_patterns=(3,)), "regex strings"),  # type: ignore[arg-type]
        (lambda: Redaction(extra_keys=5), "list or tuple"),  # type: ignore[arg-type]
        (lambda: Redaction(extra_patterns=(re.compile(b"x"),)), "bytes pattern"),  # type: ignore[arg-type]
    ],
)
def test_bad_configuration_is_refused(config: Any, message: str) -> None:
    """Invalid settings fail at construction with a message saying what to fix."""
    with pytest.raises(ConfigError, match=message):
        Redactor(config())


def test_redactor_refuses_a_non_redaction_config() -> None:
    """Passing a dict instead of Redaction is a ConfigError naming the expected type."""
    with pytest.raises(ConfigError, match=r"logbeacon\.Redaction"):
        Redactor({"extra_keys": ["x"]})  # type: ignore[arg-type]


def test_default_redactor_is_shared() -> None:
    """`default_redactor()` returns one cached instance with the default rules."""
    assert (default_redactor(), Redaction()) == (default_redactor(), default_redactor().config)


# --------------------------------------------------------------------------- trees and events


def _rich_event() -> dict[str, Any]:
    return {
        "event": "login_failed",
        "message": "user jane.doe@example.com sent password=hunter2",
        "http": {"route": "/v1/login?next=/home", "status": 401},
        "headers": [("Authorization", "Bearer abcDEF123456ghiJKL789")],
        "attrs": {"db": {"password": "hunter2"}, "cards": ["4111 1111 1111 1111", 12]},
        "is_authenticated": False,
        "tags": {"ok", "jane.doe@example.com"},
    }


def test_input_is_never_mutated(redactor: Redactor) -> None:
    """Redaction builds a new tree; the caller's event compares equal to a deep copy after."""
    event = _rich_event()
    snapshot = copy.deepcopy(event)
    out = redactor.redact_event(event)
    assert snapshot == event
    assert out is not event
    assert out["attrs"] is not event["attrs"]


def test_containers_keep_their_types(redactor: Redactor) -> None:
    """Tuples stay tuples and sets stay sets; non-JSON leaves come back as the same object."""
    marker_obj = object()
    out = redactor.redact({"t": ("a", "jane.doe@example.com"), "s": {"x"}, "o": marker_obj})
    assert {"t": ("a", "[REDACTED:email]"), "s": {"x"}, "o": marker_obj} == out
    assert out["o"] is marker_obj


def test_card_number_logged_as_integer(redactor: Redactor) -> None:
    """A Luhn-valid card logged as an int is replaced; epoch numbers and bools are not."""
    tree = {"pan": 4111111111111111, "ts_us": 1453843029218310, "ms": 1714560000123, "b": True}
    expected = {**tree, "pan": "[REDACTED:card]"}
    assert expected == redactor.redact(tree)


def test_redact_event_records_paths(redactor: Redactor) -> None:
    """`_redacted` lists every scrubbed path, dotted and sorted, with no value in it."""
    event = _rich_event()
    del event["tags"]  # set order is arbitrary; sets are covered elsewhere
    out = redactor.redact_event(event)
    assert [
        "attrs.cards.0",
        "attrs.db.password",
        "headers.0.1",
        "http.route",
        "message",
    ] == out["_redacted"]
    assert "/v1/login" == out["http"]["route"]
    joined = " ".join(out["_redacted"])
    assert (False, False) == ("hunter2" in joined, "jane" in joined)


def test_redact_event_path_list_exact(redactor: Redactor) -> None:
    """For a simple event the recorded paths are exactly the scrubbed fields."""
    event = {
        "event": "x",
        "user": {"email": "jane.doe@example.com", "name": "Jane"},
        "api_key": "k",
        "items": [{"ok": 1}, {"card": "4111111111111111"}],
    }
    out = redactor.redact_event(event)
    assert ["api_key", "items.1.card", "user.email"] == out["_redacted"]


def test_redact_event_without_findings_has_no_key(redactor: Redactor) -> None:
    """An event with nothing to scrub gets no `_redacted` key at all."""
    event = {"event": "node_start", "node": "developer", "fit_score": 85}
    assert event == redactor.redact_event(event)


def test_redact_event_merges_existing_paths(redactor: Redactor) -> None:
    """Paths the SDK recorded survive the server's pass, merged and de-duplicated."""
    event = {"_redacted": ["password", "b.token"], "password": MARKER, "email": "a@b.example.com"}
    out = redactor.redact_event(event)
    assert ["b.token", "email", "password"] == out["_redacted"]
    assert out == redactor.redact_event(out)


def test_redact_event_scrubs_forged_path_entries(redactor: Redactor) -> None:
    """A client cannot smuggle a secret through `_redacted`: entries are redacted, junk dropped."""
    event = {"_redacted": ["jane.doe@example.com", 5, None], "event": "x"}
    assert ["[REDACTED:email]"] == redactor.redact_event(event)["_redacted"]


def test_redact_event_key_path_uses_redacted_name(redactor: Redactor) -> None:
    """When a key itself held a secret, its path names the redacted key."""
    out = redactor.redact_event({"by jane.doe@example.com": 1})
    assert (["by [REDACTED:email]"], {"by [REDACTED:email]": 1}) == (
        out.pop("_redacted"),
        out,
    )


def test_colliding_redacted_keys_are_kept_apart(redactor: Redactor) -> None:
    """Two keys that redact to the same text keep both values, stably across passes."""
    tree = {"a jane@example.com": 1, "a bob@example.org": 2, "a [REDACTED:email]": 3}
    once = redactor.redact(tree)
    assert [1, 2, 3] == sorted(once.values())
    assert once == redactor.redact(once)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("url", "https://example.com/a/b?token=1&x=2#frag", "https://example.com/a/b"),
        ("route", "/users/{user_id}?q=jane", "/users/{user_id}"),
        ("path", "/search#section", "/search"),
        ("http.route", "/v1/logs?since=1h", "/v1/logs"),
        ("http.url", "https://example.com/?a=b", "https://example.com/"),
        ("request_url", "https://api.example.com/x?sig=abc", "https://api.example.com/x"),
        (
            "url",
            "https://app:s3cret@db.example.com/x?y=1",
            "https://app:[REDACTED]@db.example.com/x",
        ),
    ],
)
def test_query_strings_dropped_from_url_keys(
    redactor: Redactor, key: str, value: str, expected: str
) -> None:
    """Values under url/route/path keys lose `?query` and `#fragment`; the path stays."""
    assert {"http": {key: expected}} == redactor.redact({"http": {key: value}})


def test_query_string_kept_under_other_keys(redactor: Redactor) -> None:
    """Outside url-like keys a harmless query string is left in place."""
    tree = {"note": "see https://example.com/docs?page=2"}
    assert tree == redactor.redact(tree)


def test_json_inside_a_string_is_scrubbed_as_text(redactor: Redactor) -> None:
    """A string holding JSON stays a string; only the secret values inside it change."""
    body = orjson.dumps({"user": "jane", "password": "hunter2", "note": "ok"}).decode()
    out = redactor.redact({"body": body})
    assert '{"user":"jane","password":"[REDACTED]","note":"ok"}' == out["body"]


def test_deep_nesting_does_not_raise(redactor: Redactor) -> None:
    """A tree deeper than the walk limit is cut with a marker instead of a RecursionError."""
    tree: Any = "jane.doe@example.com"
    for _ in range(2000):
        tree = [tree]
    out = redactor.redact(tree)
    assert "jane.doe@example.com" not in orjson.dumps(out).decode()
    assert "[REDACTED:depth]" in orjson.dumps(out).decode()


def test_cyclic_structure_does_not_hang(redactor: Redactor) -> None:
    """A dict containing itself (not JSON, but loggable) ends at the depth limit."""
    tree: dict[str, Any] = {"name": "loop"}
    tree["self"] = tree
    out = redactor.redact_event(tree)
    assert "loop" == out["name"]


# --------------------------------------------------------------------------- free-text behaviour


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "User jane.doe@example.com failed login with card 4111 1111 1111 1111",
            "User [REDACTED:email] failed login with card [REDACTED:card]",
        ),
        (
            "API request failed with Bearer abcDEF123456ghiJKL789 and other data",
            "API request failed with Bearer [REDACTED:bearer] and other data",
        ),
        (
            "User password is secret123 for authentication",
            "User password is secret123 for authentication",
        ),
        ("pg://matt:pass@localhost/1", "pg://matt:[REDACTED]@localhost/1"),
        ("postgres:///path", "postgres:///path"),
        (
            'connect {"dsn": "pg://u:p4ss@db/x", "pool": 5}',
            'connect {"dsn": "pg://u:[REDACTED]@db/x", "pool": 5}',
        ),
        ("said: password=hunter2, user=bob", "said: password=[REDACTED], user=bob"),
        ("token: expired", "token: [REDACTED]"),
        ("qty 42 4111 1111 1111 1111", "qty 42 [REDACTED:card]"),
        ("run --password=hunter2 --verbose", "run --password=[REDACTED] --verbose"),
        ('--token "two words" next', "--token [REDACTED] next"),
        ('{"token":null,"is_authenticated":true}', '{"token":null,"is_authenticated":true}'),
        (
            "clone https://deploy@git.example.com/x.git",
            "clone https://deploy@git.example.com/x.git",
        ),
        ("DE89 3704 0044 0532 0130 00 paid", "[REDACTED:iban] paid"),
        ("fooNO9386011117947bar", "fooNO9386011117947bar"),
        ("timestamp 1453843029218310", "timestamp 1453843029218310"),
        (
            "User-Agent: Chrome/124.0.0.0 from 127.0.0.1",
            "User-Agent: Chrome/124.0.0.0 from 127.0.0.1",
        ),
    ],
)
def test_free_text_examples(redactor: Redactor, text: str, expected: str) -> None:
    """Relay's pinned behaviours and our gap fixes, on whole log lines."""
    assert expected == redactor.redact_text(text)


def test_str_subclass_values_are_judged_by_their_text(redactor: Redactor) -> None:
    """A StrEnum or other str subclass is redacted like a plain string."""

    class Contact(enum.StrEnum):
        OWNER = "jane.doe@example.com"

    class Field(enum.StrEnum):
        NAME = "name"

    assert ({"c": "[REDACTED:email]"}, "[REDACTED:email]", {"name": 1}) == (
        redactor.redact({"c": Contact.OWNER}),
        redactor.redact_text(Contact.OWNER),
        redactor.redact({Field.NAME: 1}),
    )


def test_redact_text_returns_same_object_when_clean(redactor: Redactor) -> None:
    """Clean text comes back as the identical object (callers may test with `is`)."""
    text = "nothing to see in this line, 42 items processed in 3.5s"
    assert redactor.redact_text(text) is text


def test_multiline_text_keeps_other_lines(redactor: Redactor) -> None:
    """A header value is cut at its line end; the next line survives."""
    text = "GET /x\nCookie: sid=abc123; theme=dark\nHost: example.com"
    assert "GET /x\nCookie: [REDACTED]\nHost: example.com" == redactor.redact_text(text)


# --------------------------------------------------------------------------- cost


_PATHOLOGICAL = {
    "repeated_assignments": "a=" * 4096,
    "repeated_colons_after_scheme": "http://" + "a:" * 4096,
    "repeated_at_signs": "a@" * 4096,
    "dots_after_at": "x@" + "a." * 4096,
    "digit_groups": "12-" * 2730,
    "plus_digit_groups": "+1 " * 2730,
    "unclosed_quote_after_secret_key": 'password: "' + "x" * 8192,
    "escaped_quotes": 'token=\\"' * 1024,
    "pem_without_end": "-----BEGIN PRIVATE KEY-----" + "A" * 8192,
    "bearer_words": "Bearer " * 1170,
    "iban_starts": "DE89 " * 1638,
}


@pytest.mark.parametrize("text", _PATHOLOGICAL.values(), ids=list(_PATHOLOGICAL))
def test_pathological_text_stays_linear(text: str) -> None:
    """8 KiB of adversarial text redacts in well under a second (no catastrophic backtracking)."""
    redactor = Redactor()
    started = time.process_time()
    redactor.redact_text(text)
    assert time.process_time() - started < 0.25
