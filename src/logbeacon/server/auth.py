"""Who may ingest, read and mint diagnostic tokens (DESIGN.md §4 "Auth", §8 status codes).

- Ingestion: an ingest key (`Authorization: Bearer`), an HMAC signature (`x-log-signature`),
  or the public browser key (`?key=`, only with an allowed `Origin`). Every credential a
  request presents must be valid, so a bad signature next to a good key is still a 401 (no
  silent downgrade). With none configured, ingestion is open to loopback clients only; a
  loopback request carrying forwarding headers came through a proxy and is not local.
- Reading: a read token as `Authorization: Bearer`, `?token=` (answered with an HttpOnly
  cookie so the dashboard keeps working) or that cookie.
- Admin: `Authorization: Bearer <LOGBEACON_ADMIN_TOKEN>`.

401 means missing or invalid credentials (with `WWW-Authenticate: Bearer` on read APIs); 403
means valid credentials used for something they may not do. Every secret comparison goes
through `hmac.compare_digest` against every candidate, without early exit.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Final, TypeVar

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyCookie, APIKeyHeader, APIKeyQuery, HTTPBearer

from logbeacon.server._head import RequestHead
from logbeacon.server.errors import ApiError
from logbeacon.server.settings import Settings
from logbeacon.server.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    signing_secret_index,
)
from logbeacon.server.state import get_state

__all__ = [
    "DIAG_COOKIE",
    "DIAG_HEADER",
    "READ_COOKIE",
    "Authenticator",
    "IngestIdentity",
    "ReadGrant",
    "ReplayCache",
    "constant_time_in",
    "rate_key_for_host",
    "require_admin",
    "require_read",
]

R = TypeVar("R", bound=Response)

READ_COOKIE: Final = "logbeacon_token"
DIAG_COOKIE: Final = "diag"
DIAG_HEADER: Final = "x-logbeacon-diag"
_MAX_CREDENTIAL: Final = 512
_FORWARDING_HEADERS: Final = ("forwarded", "x-forwarded-for", "x-real-ip")

# Declared for the OpenAPI document (and its `ignored_auth` checks); the values they extract
# are read again by `Authenticator`, which owns every decision.
read_bearer = HTTPBearer(auto_error=False, scheme_name="ReadToken", description="read token")
read_query = APIKeyQuery(name="token", auto_error=False, scheme_name="ReadTokenQuery")
read_cookie = APIKeyCookie(name=READ_COOKIE, auto_error=False, scheme_name="ReadTokenCookie")
ingest_bearer = HTTPBearer(auto_error=False, scheme_name="IngestKey", description="ingest key")
ingest_signature = APIKeyHeader(
    name=SIGNATURE_HEADER,
    auto_error=False,
    scheme_name="Signature",
    description="sha256=<hex HMAC-SHA256(secret, timestamp + '.' + raw body)> with x-log-timestamp",
)
browser_key_query = APIKeyQuery(name="key", auto_error=False, scheme_name="BrowserKey")
admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="admin token")


def _bytes(value: str) -> bytes:
    return value.encode("utf-8", "replace")


def constant_time_in(value: str, candidates: Iterable[str]) -> bool:
    """Is `value` one of `candidates`? Compares against all of them, in constant time each."""
    given = _bytes(value)
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(given, _bytes(candidate))
    return found


def _bearer(request: Request) -> str | None:
    return _bearer_of(request.headers.get("authorization"))


def _bearer_of(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""  # present but not a bearer token: invalid, not absent
    return token.strip()


def rate_key_for_host(host: str | None) -> str:
    """Bucket key of a client address; IPv6 clients are grouped by /64 (one subscriber)."""
    if host is None:
        return "ip:unknown"
    return _address_facts(host)[0]


@functools.lru_cache(maxsize=4096)
def _address_facts(host: str) -> tuple[str, bool]:
    """(rate key, is loopback) of a peer address.

    Parsing an address is a visible share of a single-event POST, and clients repeat; the
    cache is bounded, so many distinct clients cost at most its size.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"ip:{host[:64]}", False
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"ip:{address.ipv4_mapped}", address.is_loopback
        return f"ip:{ipaddress.IPv6Network((address, 64), strict=False)}", address.is_loopback
    return f"ip:{address}", address.is_loopback


def is_local_request(head: RequestHead) -> bool:
    """A loopback peer that was not forwarded by a proxy."""
    host = head.host
    if host is None or not _address_facts(host)[1]:
        return False
    headers = head.headers
    return not any(name in headers for name in _FORWARDING_HEADERS)


def _fingerprint(secret: str) -> str:
    """A stable, non-reversible name for a credential (rate-limit keys, never logged raw)."""
    return hashlib.sha256(_bytes(secret)).hexdigest()[:16]


class ReplayCache:
    """Remembers (timestamp, signature) pairs already used, for as long as they stay valid.

    A pair is valid while its timestamp is within the tolerance of now, so remembering it for
    twice the tolerance from first sight is enough. Entries are kept in arrival order, so
    expired ones are dropped from the front; at `max_entries` the oldest goes first (bounded
    memory wins over exactness under a flood of distinct signed requests).
    """

    __slots__ = ("_clock", "_entries", "max_entries", "ttl")

    def __init__(
        self, ttl: float, *, max_entries: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def seen(self, timestamp: str, signature: str) -> bool:
        """Record the pair; True if it was already recorded (a replay)."""
        now = self._clock()
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if oldest > now:
                break
            entries.popitem(last=False)
        key = (timestamp, signature)
        if key in entries:
            return True
        if len(entries) >= self.max_entries:
            entries.popitem(last=False)
        entries[key] = now + self.ttl
        return False


@dataclass(frozen=True, slots=True)
class IngestIdentity:
    """How an ingest request authenticated; `rate_key` names its per-credential bucket."""

    kind: str  # "local" | "key" | "signature" | "browser"
    rate_key: str | None = None
    signed: bool = False


_LOCAL: Final = IngestIdentity("local")


def _unauthorized(code: str, message: str, *, bearer: bool = False) -> ApiError:
    headers = {"WWW-Authenticate": 'Bearer realm="logbeacon"'} if bearer else None
    return ApiError(401, code, message, headers=headers)


class Authenticator:
    """Every authentication decision of the server."""

    def __init__(
        self,
        settings: Settings,
        read_tokens: Sequence[str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.read_tokens = tuple(read_tokens)
        self._clock = clock
        self.replays = ReplayCache(2 * settings.signature_tolerance, clock=clock)
        self._not_for_ingest = (*self.read_tokens, *_optional(settings.admin_token))
        self._not_for_reading = (
            *settings.ingest_keys,
            *_optional(settings.admin_token),
            *_optional(settings.browser_key),
        )

    # ------------------------------------------------------------------ ingestion

    def ingest_headers(self, head: RequestHead) -> IngestIdentity:
        """Decide what can be decided before the body is read (the signature needs it)."""
        settings = self.settings
        if settings.ingest_open:
            if not is_local_request(head):
                raise ApiError(
                    403,
                    "loopback_only",
                    "no ingest credential is configured, so only loopback clients may ingest; "
                    "set LOGBEACON_INGEST_KEYS, LOGBEACON_HMAC_SECRETS or LOGBEACON_BROWSER_KEY",
                )
            return _LOCAL

        headers = head.headers
        identity: IngestIdentity | None = None
        token = _bearer_of(headers.get("authorization"))
        if token is not None:
            if not token or len(token) > _MAX_CREDENTIAL:
                raise _unauthorized("invalid_credentials", "invalid Authorization header")
            if constant_time_in(token, settings.ingest_keys):
                identity = IngestIdentity("key", rate_key=f"key:{_fingerprint(token)}")
            elif constant_time_in(token, self._not_for_ingest):
                raise ApiError(403, "forbidden", "this token may not ingest; use an ingest key")
            else:
                raise _unauthorized("invalid_credentials", "unknown ingest key")

        browser_key = head.query_param("key")
        if browser_key is not None:
            if (
                settings.browser_key is None
                or len(browser_key) > _MAX_CREDENTIAL
                or not constant_time_in(browser_key, (settings.browser_key,))
            ):
                raise _unauthorized("invalid_credentials", "unknown browser key")
            if headers.get("origin") not in settings.allowed_origins:
                raise ApiError(
                    403,
                    "origin_not_allowed",
                    "the browser key is valid only from the origins in LOGBEACON_ALLOWED_ORIGINS",
                )
            identity = identity or IngestIdentity("browser")

        if SIGNATURE_HEADER in headers or TIMESTAMP_HEADER in headers:
            if not settings.hmac_secrets:
                raise _unauthorized("invalid_signature", "this server does not accept signatures")
            return IngestIdentity(
                "signature", rate_key=identity.rate_key if identity else None, signed=True
            )
        if identity is None:
            raise _unauthorized(
                "missing_credentials",
                "send Authorization: Bearer <ingest key>, an x-log-signature, or ?key=<browser "
                "key> from an allowed origin",
            )
        return identity

    def verify_signature(
        self, head: RequestHead, body: bytes, identity: IngestIdentity
    ) -> IngestIdentity:
        """Check the HMAC over the raw body bytes as received, then refuse replays.

        Returns the identity with its rate key naming the secret that signed (unless an
        ingest key already named one).
        """
        timestamp = head.headers.get(TIMESTAMP_HEADER)
        signature = head.headers.get(SIGNATURE_HEADER)
        secrets = self.settings.hmac_secrets
        try:
            index = signing_secret_index(
                body,
                timestamp,
                signature,
                secrets,
                now=self._clock(),
                window=self.settings.signature_tolerance,
            )
        except SignatureError as exc:
            raise _unauthorized(exc.reason, "request signature rejected") from None
        assert timestamp is not None
        assert signature is not None
        if self.replays.seen(timestamp, signature):
            raise _unauthorized("replayed", "this signed request was already received")
        if identity.kind == "signature" and identity.rate_key is None:
            rate_key = f"sig:{_fingerprint(secrets[index])}"
            return IngestIdentity("signature", rate_key=rate_key, signed=True)
        return identity

    # ------------------------------------------------------------------ reading, admin

    def read(self, request: Request) -> str | None:
        """Allow a read or raise; returns the token when it came as `?token=` (set a cookie)."""
        token = _bearer(request)
        from_query = None
        if token is None:
            from_query = request.query_params.get("token")
            token = from_query if from_query is not None else request.cookies.get(READ_COOKIE)
        if token is None:
            raise _unauthorized(
                "missing_token",
                "this API needs a read token: Authorization: Bearer <token> or ?token=<token>",
                bearer=True,
            )
        if token and len(token) <= _MAX_CREDENTIAL:
            if constant_time_in(token, self.read_tokens):
                return from_query
            if constant_time_in(token, self._not_for_reading):
                raise ApiError(403, "forbidden", "this credential may not read; use a read token")
        raise _unauthorized("invalid_token", "unknown read token", bearer=True)

    def admin(self, request: Request) -> None:
        """Allow an admin call or raise."""
        token = _bearer(request)
        if token is None:
            raise _unauthorized(
                "missing_token", "send Authorization: Bearer <admin token>", bearer=True
            )
        admin = self.settings.admin_token
        if admin is None:
            raise ApiError(
                403,
                "admin_disabled",
                "no admin token is configured; set LOGBEACON_ADMIN_TOKEN to enable admin calls",
            )
        if token and len(token) <= _MAX_CREDENTIAL:
            if constant_time_in(token, (admin,)):
                return
            if constant_time_in(token, (*self.read_tokens, *self.settings.ingest_keys)):
                raise ApiError(403, "forbidden", "this credential may not do admin calls")
        raise _unauthorized("invalid_token", "unknown admin token", bearer=True)


def _optional(value: str | None) -> tuple[str, ...]:
    return () if value is None else (value,)


# --------------------------------------------------------------------------- dependencies


@dataclass(frozen=True, slots=True)
class ReadGrant:
    """A granted read; `apply` sets the token cookie when the token came as `?token=`."""

    query_token: str | None = None
    secure: bool = False

    def apply(self, response: R) -> R:
        if self.query_token is not None:
            response.set_cookie(
                READ_COOKIE,
                self.query_token,
                httponly=True,
                samesite="strict",
                secure=self.secure,
                path="/",
            )
        return response


async def require_read(
    request: Request,
    _bearer: Annotated[object, Depends(read_bearer)] = None,
    _query: Annotated[object, Depends(read_query)] = None,
    _cookie: Annotated[object, Depends(read_cookie)] = None,
) -> ReadGrant:
    """Dependency of every read API: 401/403 or a `ReadGrant`."""
    token = get_state(request).auth.read(request)
    return ReadGrant(token, secure=request.url.scheme == "https")


async def require_admin(
    request: Request, _bearer: Annotated[object, Depends(admin_bearer)] = None
) -> None:
    """Dependency of admin APIs; runs before the body is validated, so 401 comes first."""
    get_state(request).auth.admin(request)
