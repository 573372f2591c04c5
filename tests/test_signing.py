"""The HMAC request-signature scheme (RELIABILITY.md §6, FUZ-12), signing and verifying."""

from __future__ import annotations

import ast
import hashlib
import hmac
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from logbeacon import signing
from logbeacon.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    check,
    hmac_sha256_hex,
    sign,
    verify,
)

SECRET = "logbeacon-test-secret-FAKE-0123456789abcdef"
ROTATED = "logbeacon-test-secret-FAKE-rotated-9876543210"
BODY = b'{"events":[{"level":"error","message":"boom"}]}'
T = 1_700_000_000


def test_github_known_answer() -> None:
    """SIG-01: the HMAC primitive reproduces GitHub's published webhook vector."""
    expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert expected == hmac_sha256_hex(b"It's a Secret to Everybody", b"Hello, World!")


@pytest.mark.parametrize(
    ("body", "timestamp", "secret", "expected"),
    [
        (BODY, T, SECRET, "40fb0be3b3d7afc25348df731ae9cf538e7e681dc9faae6419a91e73dd01bb86"),
        (
            BODY[:-1] + b" }",
            T,
            SECRET,
            "3d606e7c7f04744022e88021c93d4f304ea5243dc772667ad5ef0d7fde917063",
        ),
        (BODY, T + 1, SECRET, "9b6554908c9a5e437c964b43218d14023e10c2ac80c13ae6e34be502be40a3ba"),
        (BODY, T, ROTATED, "6b4f6b6feb803e0b29224dca352ea41cd8f6333a71e5964374009c2ad602399b"),
    ],
)
def test_known_vectors(body: bytes, timestamp: int, secret: str, expected: str) -> None:
    """SIG-01: sign() reproduces RELIABILITY.md's vectors over `<timestamp>.` + raw body."""
    assert len(BODY) == 47
    headers = sign(body, secret, timestamp)
    assert {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: f"sha256={expected}"} == headers


def test_round_trip() -> None:
    """SIG-02: a signature made at t verifies at t with the same secret."""
    headers = sign(BODY, SECRET, T)
    assert verify(BODY, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], [SECRET], now=T)


def test_sign_uses_current_time_by_default() -> None:
    """sign() without a timestamp signs 'now', which verifies against the real clock."""
    headers = sign(BODY, SECRET)
    assert verify(BODY, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], SECRET)


def test_reserialised_body_fails() -> None:
    """SIG-03: the same JSON with other bytes (spacing, key order) does not verify."""
    headers = sign(BODY, SECRET, T)
    other = b'{"events": [{"message": "boom", "level": "error"}]}'
    assert not verify(other, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], [SECRET], now=T)


@pytest.mark.parametrize(
    ("offset", "ok"), [(-299, True), (-300, True), (-301, False), (299, True), (301, False)]
)
def test_window_both_directions(offset: int, ok: bool) -> None:
    """SIG-04: a timestamp within 300 s of now verifies, older or newer than that does not."""
    headers = sign(BODY, SECRET, T)
    now = T - offset
    assert ok == verify(
        BODY, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], [SECRET], now=now
    )


def test_window_reason() -> None:
    """check() names `timestamp_out_of_tolerance` for a stale signature."""
    headers = sign(BODY, SECRET, T)
    with pytest.raises(SignatureError) as caught:
        check(BODY, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], [SECRET], now=T + 301)
    assert "timestamp_out_of_tolerance" == caught.value.reason


def test_timestamp_is_signed() -> None:
    """SIG-05: a fresh timestamp header with an old signature fails."""
    old = sign(BODY, SECRET, T)
    assert not verify(BODY, str(T + 10), old[SIGNATURE_HEADER], [SECRET], now=T + 10)


def test_rotation_sender_and_verifier() -> None:
    """SIG-07: old+new signatures pass a new-only or old+new verifier; old-only fails later."""
    both = sign(BODY, [SECRET, ROTATED], T)
    assert both[SIGNATURE_HEADER].count("sha256=") == 2
    ts = both[TIMESTAMP_HEADER]
    assert verify(BODY, ts, both[SIGNATURE_HEADER], [ROTATED], now=T)
    assert verify(BODY, ts, both[SIGNATURE_HEADER], [SECRET, ROTATED], now=T)
    old_only = sign(BODY, SECRET, T)[SIGNATURE_HEADER]
    assert not verify(BODY, ts, old_only, [ROTATED], now=T)
    assert verify(BODY, ts, old_only, [ROTATED, SECRET], now=T)


@pytest.mark.parametrize(
    ("timestamp", "signature", "reason"),
    [
        (None, "sha256=" + "0" * 64, "missing_timestamp"),
        ("abc", "sha256=" + "0" * 64, "malformed_timestamp"),
        ("-5", "sha256=" + "0" * 64, "malformed_timestamp"),
        (" 1700000000", "sha256=" + "0" * 64, "malformed_timestamp"),
        ("1e9", "sha256=" + "0" * 64, "malformed_timestamp"),
        (str(T), None, "missing_signature"),
        (str(T), "sha256=", "malformed_signature"),
        (str(T), "sha256=abc", "malformed_signature"),
        (str(T), "sha256=" + "zz" * 32, "malformed_signature"),
        (str(T), "sha256=" + "0" * 64 + "," * 10, "malformed_signature"),
        (str(T), "sha256=" + "0" * 5000, "malformed_signature"),
        (str(T), "v0=" + "0" * 64, "missing_signature"),
        (str(T), "sha1=" + "0" * 40, "missing_signature"),
    ],
)
def test_malformed_headers(timestamp: str | None, signature: str | None, reason: str) -> None:
    """SIG-10/SIG-11: malformed or downgraded headers fail with a reason, never crash."""
    with pytest.raises(SignatureError) as caught:
        check(BODY, timestamp, signature, [SECRET], now=T)
    assert reason == caught.value.reason
    assert not verify(BODY, timestamp, signature, [SECRET], now=T)


def test_uppercase_hex_is_the_same_signature() -> None:
    """SIG-10: hex is decoded before comparing, so upper-case hex verifies too."""
    headers = sign(BODY, SECRET, T)
    upper = "sha256=" + headers[SIGNATURE_HEADER].removeprefix("sha256=").upper()
    assert verify(BODY, str(T), upper, [SECRET], now=T)


def test_no_secret_configured() -> None:
    """A verifier without secrets refuses everything with `signing_not_configured`."""
    headers = sign(BODY, SECRET, T)
    with pytest.raises(SignatureError) as caught:
        check(BODY, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], [], now=T)
    assert "signing_not_configured" == caught.value.reason


def test_error_message_leaks_nothing() -> None:
    """SIG-14: the error names the reason only, never the expected signature or payload."""
    expected = sign(BODY, SECRET, T)[SIGNATURE_HEADER]
    with pytest.raises(SignatureError) as caught:
        check(BODY, str(T), "sha256=" + "0" * 64, [SECRET], now=T)
    text = str(caught.value)
    assert "request signature rejected: bad_signature" == text
    assert expected.removeprefix("sha256=") not in text


def test_non_ascii_and_gzip_bytes() -> None:
    """SIG-15: the signature covers raw bytes, UTF-8 text and gzip output alike."""
    import gzip

    for body in ('{"message":"Grüße ✓"}'.encode(), gzip.compress(BODY, mtime=0)):
        headers = sign(body, SECRET, T)
        assert verify(body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], SECRET, now=T)
        digest = hmac.new(SECRET.encode(), f"{T}.".encode() + body, hashlib.sha256).hexdigest()
        assert f"sha256={digest}" == headers[SIGNATURE_HEADER]


def test_constant_time_compare_only() -> None:
    """SIG-09: signatures are compared with hmac.compare_digest, never with == or !=."""
    tree = ast.parse(Path(signing.__file__).read_text())
    calls = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert "compare_digest" in calls
    compared_names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
        ):
            compared_names.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
    assert set() == compared_names & {"digest", "expected", "digests", "signature"}


_MUTATION_BODY = st.binary(min_size=1, max_size=256)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    body=_MUTATION_BODY,
    secret=st.text(min_size=1, max_size=40),
    timestamp=st.integers(min_value=0, max_value=10**11),
    where=st.sampled_from(["body", "timestamp", "signature"]),
    position=st.integers(min_value=0),
    delta=st.integers(min_value=1, max_value=255),
)
@example(body=b"x", secret="k", timestamp=0, where="timestamp", position=0, delta=1)
def test_property_round_trip_and_mutation(
    body: bytes, secret: str, timestamp: int, where: str, position: int, delta: int
) -> None:
    """FUZ-12: sign→verify always passes; any one-byte change of body, timestamp or signature
    fails."""
    headers = sign(body, secret, timestamp)
    ts, sig = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert verify(body, ts, sig, [secret], now=timestamp)

    def mutate(data: bytes) -> bytes:
        index = position % len(data)
        return data[:index] + bytes([(data[index] + delta) % 256]) + data[index + 1 :]

    if where == "body":
        body = mutate(body)
    elif where == "timestamp":
        ts = mutate(ts.encode()).decode("latin-1")
    else:
        prefix, hexpart = sig.split("=", 1)
        mutated = mutate(hexpart.encode()).decode("latin-1")
        if mutated.lower() == hexpart:  # a case flip of a hex letter is the same digest
            return
        sig = f"{prefix}={mutated}"
    assert not verify(body, ts, sig, [secret], now=timestamp)
