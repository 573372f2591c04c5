"""Request signatures as the server checks them: known answers, properties, signer index."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from logbeacon.server.signing import (
    SignatureError,
    check,
    hmac_sha256_hex,
    sign,
    signing_secret_index,
    verify,
)
from tests.server.conftest import HMAC_ROTATED, HMAC_SECRET

VECTOR_BODY = b'{"events":[{"level":"error","message":"boom"}]}'
T = 1_700_000_000


def test_known_answers() -> None:
    """GitHub's vector and RELIABILITY.md §6's four vectors reproduce exactly (SIG-01)."""
    assert "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17" == (
        hmac_sha256_hex(b"It's a Secret to Everybody", b"Hello, World!")
    )
    spaced = VECTOR_BODY[:-1] + b" }"
    assert [
        "sha256=40fb0be3b3d7afc25348df731ae9cf538e7e681dc9faae6419a91e73dd01bb86",
        "sha256=3d606e7c7f04744022e88021c93d4f304ea5243dc772667ad5ef0d7fde917063",
        "sha256=9b6554908c9a5e437c964b43218d14023e10c2ac80c13ae6e34be502be40a3ba",
        "sha256=6b4f6b6feb803e0b29224dca352ea41cd8f6333a71e5964374009c2ad602399b",
    ] == [
        sign(VECTOR_BODY, HMAC_SECRET, T)["x-log-signature"],
        sign(spaced, HMAC_SECRET, T)["x-log-signature"],
        sign(VECTOR_BODY, HMAC_SECRET, T + 1)["x-log-signature"],
        sign(VECTOR_BODY, HMAC_ROTATED, T)["x-log-signature"],
    ]


def test_signing_secret_index_names_the_signer() -> None:
    """The index of the secret that signed is returned; forgeries raise with a reason."""
    headers = sign(VECTOR_BODY, HMAC_ROTATED, T)
    args = (VECTOR_BODY, headers["x-log-timestamp"], headers["x-log-signature"])
    assert 1 == signing_secret_index(*args, [HMAC_SECRET, HMAC_ROTATED], now=T)
    assert 0 == signing_secret_index(*args, [HMAC_ROTATED], now=T)
    with pytest.raises(SignatureError) as info:
        signing_secret_index(*args, [HMAC_SECRET], now=T)
    assert "bad_signature" == info.value.reason


@settings(derandomize=True, max_examples=150, deadline=None)
@given(
    body=st.binary(max_size=300),
    timestamp=st.integers(min_value=0, max_value=10**11),
    secret=st.text(min_size=1, max_size=64),
    position=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
)
@example(body=b"", timestamp=0, secret="s", position=0, flip=1)
def test_sign_verify_property(
    body: bytes, timestamp: int, secret: str, position: int, flip: int
) -> None:
    """verify(sign(b)) holds for any body; any 1-byte change of body or signature breaks it."""
    headers = sign(body, secret, timestamp)
    ts, sig = headers["x-log-timestamp"], headers["x-log-signature"]
    assert verify(body, ts, sig, [secret], now=timestamp)
    if body:
        i = position % len(body)
        mutated = body[:i] + bytes([body[i] ^ flip]) + body[i + 1 :]
        assert not verify(mutated, ts, sig, [secret], now=timestamp)
    hex_part = sig[len("sha256=") :]
    j = position % len(hex_part)
    replacement = "0" if hex_part[j] != "0" else "1"
    assert not verify(
        body, ts, f"sha256={hex_part[:j]}{replacement}{hex_part[j + 1 :]}", [secret], now=timestamp
    )
    assert not verify(body, str(timestamp + 1), sig, [secret], now=timestamp)


@pytest.mark.parametrize(
    ("timestamp", "signature", "reason"),
    [
        (None, "sha256=" + "0" * 64, "missing_timestamp"),
        ("1e9", "sha256=" + "0" * 64, "malformed_timestamp"),
        (str(T), None, "missing_signature"),
        (str(T), "v0=" + "0" * 64, "missing_signature"),
        (str(T), "sha256=" + "g" * 64, "malformed_signature"),
        (str(T), ",".join(["sha256=" + "0" * 64] * 6), "malformed_signature"),
        (str(T - 301), "sha256=" + "0" * 64, "timestamp_out_of_tolerance"),
        (str(T), "sha256=" + "0" * 64, "bad_signature"),
    ],
)
def test_rejection_reasons(timestamp: str | None, signature: str | None, reason: str) -> None:
    """Each way a signature can fail has its own stable reason (for metrics and 401 bodies)."""
    with pytest.raises(SignatureError) as info:
        check(VECTOR_BODY, timestamp, signature, [HMAC_SECRET], now=T)
    assert reason == info.value.reason


def test_signing_module_does_not_import_fastapi() -> None:
    """The SDK can import the signing scheme without pulling in the server stack."""
    code = (
        "import sys, logbeacon.server.signing; "
        "print(sorted(m for m in ('fastapi', 'starlette', 'jwt', 'prometheus_client') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert "[]" == out.strip()
