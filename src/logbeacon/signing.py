"""HMAC-SHA256 request signatures for ingestion: one scheme for the SDK that signs and the
server that verifies (DESIGN.md §4, RELIABILITY.md §6).

Scheme::

    x-log-timestamp: <unix seconds>
    x-log-signature: sha256=<hex of HMAC-SHA256(secret, f"{timestamp}.".encode() + raw_body)>

Why each part:

* The signature covers the body bytes exactly as they travel, so a gzipped body is signed
  compressed: the server checks it before inflating or parsing anything, and re-serialised
  JSON (same meaning, other bytes) does not verify.
* The timestamp is inside the signed payload, so an old signature cannot be re-dated, and it
  must lie within `window` seconds of the verifier's clock in *both* directions (Slack's rule,
  stricter than Stripe's past-only check): a sender whose clock runs ahead gains nothing.
* During secret rotation a sender may list several signatures (`sha256=<a>,sha256=<b>`) and a
  verifier may hold several secrets; one match of any pair is enough. Every pair is compared
  with `hmac.compare_digest` and without an early exit, so timing reveals neither which
  secret nor which signature matched.
* Only the `sha256` scheme counts: a header offering just `sha1=`/`v0=` is a missing
  signature, never a weaker check. Header sizes are capped so a hostile header costs nothing.

Stdlib only: the SDK imports this module and `import logbeacon` must stay light.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Sequence
from typing import Final

from logbeacon.exceptions import LogbeaconError

__all__ = [
    "DEFAULT_WINDOW",
    "SCHEME",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "check",
    "hmac_sha256_hex",
    "parse_signature_header",
    "parse_timestamp_header",
    "sign",
    "signature_value",
    "verify",
]

SIGNATURE_HEADER: Final = "x-log-signature"
TIMESTAMP_HEADER: Final = "x-log-timestamp"
SCHEME: Final = "sha256"
DEFAULT_WINDOW: Final = 300

_MAX_HEADER_CHARS: Final = 1024
_MAX_SIGNATURES: Final = 5
_MAX_TIMESTAMP_DIGITS: Final = 12
_DIGEST_HEX_CHARS: Final = 64


class SignatureError(LogbeaconError, ValueError):
    """A signed request failed verification; `reason` is a stable code for metrics and logs.

    Reasons: `signing_not_configured`, `missing_timestamp`, `malformed_timestamp`,
    `missing_signature`, `malformed_signature`, `timestamp_out_of_tolerance`,
    `bad_signature`. The message never contains the expected signature, the signed payload
    or the header, so it is safe to log and to answer with.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"request signature rejected: {reason}")


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def _payload(timestamp: int, body: bytes) -> bytes:
    return f"{timestamp}.".encode("ascii") + body


def hmac_sha256_hex(secret: str | bytes, payload: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of `payload` (the primitive, for known-answer tests)."""
    return hmac.new(_key(secret), payload, hashlib.sha256).hexdigest()


def signature_value(
    body: bytes, secrets: str | bytes | Sequence[str | bytes], timestamp: int
) -> str:
    """The `x-log-signature` value: `sha256=<hex>`, one entry per secret, comma-separated.

    Several secrets let a sender bridge a rotation: old and new verifiers both accept it.
    """
    keys = [secrets] if isinstance(secrets, str | bytes) else list(secrets)
    if not keys or len(keys) > _MAX_SIGNATURES:
        raise ValueError(f"sign with 1 to {_MAX_SIGNATURES} secrets, got {len(keys)}")
    payload = _payload(timestamp, body)
    return ",".join(f"{SCHEME}={hmac_sha256_hex(key, payload)}" for key in keys)


def sign(
    body: bytes,
    secret: str | bytes | Sequence[str | bytes],
    timestamp: int | None = None,
) -> dict[str, str]:
    """Both headers for one request carrying exactly `body`.

    Sign again for every attempt: a retry is a new request and may fall outside the window.
    """
    ts = int(time.time()) if timestamp is None else int(timestamp)
    if ts < 0:
        raise ValueError("timestamp must be unix seconds (non-negative)")
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: signature_value(body, secret, ts)}


def parse_timestamp_header(value: str | None) -> int:
    """The header's unix seconds: ASCII digits only, so `1e9`, `-5`, ` 12` or `+1` never parse."""
    if value is None or value == "":
        raise SignatureError("missing_timestamp")
    if not value.isascii() or not value.isdigit() or len(value) > _MAX_TIMESTAMP_DIGITS:
        raise SignatureError("malformed_timestamp")
    return int(value)


def parse_signature_header(value: str | None) -> list[bytes]:
    """The raw digests of every `sha256=` entry; other schemes are skipped, never trusted.

    Hex is decoded before comparison, so upper- and lower-case hex are the same signature.
    A malformed `sha256=` entry (wrong length, not hex) fails the whole header.
    """
    if value is None or not value.strip():
        raise SignatureError("missing_signature")
    if len(value) > _MAX_HEADER_CHARS:
        raise SignatureError("malformed_signature")
    entries = [part.strip() for part in value.split(",")]
    if len(entries) > _MAX_SIGNATURES:
        raise SignatureError("malformed_signature")
    digests: list[bytes] = []
    for entry in entries:
        scheme, sep, hex_digest = entry.partition("=")
        if not sep or scheme.strip().lower() != SCHEME:
            continue
        hex_digest = hex_digest.strip()
        if len(hex_digest) != _DIGEST_HEX_CHARS or not hex_digest.isascii():
            raise SignatureError("malformed_signature")
        try:
            digests.append(bytes.fromhex(hex_digest))
        except ValueError:
            raise SignatureError("malformed_signature") from None
    if not digests:
        raise SignatureError("missing_signature")
    return digests


def _any_match(payload: bytes, secrets: Iterable[str | bytes], digests: Sequence[bytes]) -> bool:
    matched = False
    for secret in secrets:
        expected = hmac.new(_key(secret), payload, hashlib.sha256).digest()
        for digest in digests:
            # No early exit: every pair is compared so the time taken does not say which.
            matched |= hmac.compare_digest(expected, digest)
    return matched


def check(
    body: bytes,
    header_timestamp: str | None,
    header_signature: str | None,
    secrets: Sequence[str | bytes],
    *,
    now: float | None = None,
    window: int = DEFAULT_WINDOW,
) -> int:
    """Verify a request and return its timestamp, or raise `SignatureError` with the reason.

    The server uses this form to count rejections by reason; the order of checks is cheap
    header parsing first, then the clock window, then the HMAC.
    """
    keys = [s for s in secrets if s]
    if not keys:
        raise SignatureError("signing_not_configured")
    timestamp = parse_timestamp_header(header_timestamp)
    digests = parse_signature_header(header_signature)
    current = time.time() if now is None else now
    if abs(current - timestamp) > window:
        raise SignatureError("timestamp_out_of_tolerance")
    if not _any_match(_payload(timestamp, body), keys, digests):
        raise SignatureError("bad_signature")
    return timestamp


def verify(
    body: bytes,
    header_timestamp: str | None,
    header_signature: str | None,
    secrets: str | bytes | Sequence[str | bytes],
    *,
    now: float | None = None,
    window: int = DEFAULT_WINDOW,
) -> bool:
    """True when the headers carry a valid, timely signature of `body` by any of `secrets`.

    Never raises on hostile input; use `check` to learn why a request was refused.
    """
    keys = [secrets] if isinstance(secrets, str | bytes) else list(secrets)
    try:
        check(body, header_timestamp, header_signature, keys, now=now, window=window)
    except SignatureError:
        return False
    return True
