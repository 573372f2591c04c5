"""Request signatures as the server checks them.

The scheme itself (headers, signed payload, parsing, constant-time comparison) lives in
`logbeacon.signing`, shared with the SDK that signs; this module re-exports it for server code
and adds the one thing only the verifier needs: which configured secret signed a request, so
each secret gets its own rate-limit bucket.
"""

from __future__ import annotations

from collections.abc import Sequence

from logbeacon.signing import (
    DEFAULT_WINDOW,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    check,
    hmac_sha256_hex,
    sign,
    verify,
)

__all__ = [
    "DEFAULT_WINDOW",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "check",
    "hmac_sha256_hex",
    "sign",
    "signing_secret_index",
    "verify",
]


def signing_secret_index(
    body: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    secrets: Sequence[str],
    *,
    now: float,
    window: int = DEFAULT_WINDOW,
) -> int:
    """Verify a request (raising `SignatureError` with the reason) and return the index of
    the secret that signed it.

    `check` decides acceptance with every secret compared in constant time; only once the
    request is known to be genuine are the secrets tried one by one to name the signer.
    """
    check(body, timestamp_header, signature_header, secrets, now=now, window=window)
    for index, secret in enumerate(secrets):
        if verify(body, timestamp_header, signature_header, [secret], now=now, window=window):
            return index
    raise SignatureError("bad_signature")  # unreachable: check() found a matching secret
