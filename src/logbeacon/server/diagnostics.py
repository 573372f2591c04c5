"""Diagnostic mode: short-lived HS256 tokens that let one session's debug/info events through
the production level policy, and `POST /v1/diagnostics` that mints them.

Tokens carry `sid` (the session), `scope: "diag"`, `aud: "logbeacon-diag"`,
`iss: "logbeacon"`, `iat` and `exp`, with `exp - iat` at most 60 minutes. Verification pins
the algorithm to HS256 (so `alg: none` and RS/ES confusion fail), requires every claim,
checks the lifetime rule PyJWT does not know about, and reads time from the server's
injectable clock with 30 s of leeway. A token that fails is never an error for the request
that carried it: the policy simply applies (DESIGN.md §4).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final

import jwt
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from logbeacon.event import format_timestamp
from logbeacon.server.auth import require_admin
from logbeacon.server.errors import ApiResponse, error_responses
from logbeacon.server.payload import check_content_length, read_body
from logbeacon.server.state import get_state

__all__ = [
    "DIAG_AUDIENCE",
    "DIAG_ISSUER",
    "MAX_TTL_MINUTES",
    "DiagnosticTokenError",
    "DiagnosticTokens",
    "router",
]

ALGORITHM: Final = "HS256"
DIAG_AUDIENCE: Final = "logbeacon-diag"
DIAG_ISSUER: Final = "logbeacon"
SCOPE: Final = "diag"
MAX_TTL_MINUTES: Final = 60
LEEWAY_SECONDS: Final = 30
_MAX_TOKEN_CHARS: Final = 4096
_MAX_BODY_BYTES: Final = 16 * 1024
_REQUIRED: Final = ["exp", "iat", "aud", "iss", "sid"]
_SESSION_RE: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


class DiagnosticTokenError(Exception):
    """A diagnostic token did not verify; `reason` labels the metric."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: str
    session_id: str
    expires_at: float


class DiagnosticTokens:
    """Mint and verify diagnostic tokens with one secret and one clock."""

    __slots__ = ("_clock", "_secret")

    def __init__(self, secret: str | None, *, clock: Callable[[], float] = time.time) -> None:
        # Without a configured secret, tokens are valid for this process's lifetime only.
        self._secret = secret if secret is not None else secrets.token_urlsafe(48)
        self._clock = clock

    def mint(self, session_id: str, ttl_minutes: int) -> MintedToken:
        if not 1 <= ttl_minutes <= MAX_TTL_MINUTES:
            raise ValueError(f"ttl_minutes must be 1-{MAX_TTL_MINUTES}")
        if not _SESSION_RE.fullmatch(session_id):
            raise ValueError("session_id must be 1-128 characters without control characters")
        now = int(self._clock())
        expires = now + ttl_minutes * 60
        claims = {
            "sid": session_id,
            "scope": SCOPE,
            "aud": DIAG_AUDIENCE,
            "iss": DIAG_ISSUER,
            "iat": now,
            "exp": expires,
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return MintedToken(token, session_id, float(expires))

    def verify(self, token: str) -> str:
        """The session id a valid token grants, or raise `DiagnosticTokenError`."""
        if not token or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 2:
            raise DiagnosticTokenError("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise DiagnosticTokenError("malformed") from None
        if header.get("alg") != ALGORITHM:
            raise DiagnosticTokenError("alg")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=DIAG_AUDIENCE,
                issuer=DIAG_ISSUER,
                # Time claims are checked below against the server's clock.
                options={
                    "require": _REQUIRED,
                    "strict_aud": True,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise DiagnosticTokenError("signature") from None
        except jwt.InvalidAlgorithmError:
            raise DiagnosticTokenError("alg") from None
        except (
            jwt.InvalidAudienceError,
            jwt.InvalidIssuerError,
            jwt.InvalidIssuedAtError,
            jwt.MissingRequiredClaimError,
        ):
            raise DiagnosticTokenError("claims") from None
        except jwt.InvalidTokenError:
            raise DiagnosticTokenError("malformed") from None
        return self._check_claims(claims)

    def _check_claims(self, claims: dict[str, Any]) -> str:
        iat, exp, nbf = claims.get("iat"), claims.get("exp"), claims.get("nbf", 0)
        if not all(_is_time(v) for v in (iat, exp, nbf)):
            raise DiagnosticTokenError("claims")
        assert isinstance(iat, int | float)
        assert isinstance(exp, int | float)
        assert isinstance(nbf, int | float)
        now = self._clock()
        if exp <= now - LEEWAY_SECONDS:
            raise DiagnosticTokenError("expired")
        if iat > now + LEEWAY_SECONDS or nbf > now + LEEWAY_SECONDS:
            raise DiagnosticTokenError("not_yet_valid")
        if exp - iat > MAX_TTL_MINUTES * 60:
            raise DiagnosticTokenError("lifetime")
        sid = claims.get("sid")
        if claims.get("scope") != SCOPE or not isinstance(sid, str) or not sid:
            raise DiagnosticTokenError("claims")
        return sid


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --------------------------------------------------------------------------- endpoint


class DiagnosticRequest(BaseModel):
    # Strict: `true` is not a number of minutes, and unknown fields are mistakes.
    model_config = ConfigDict(strict=True, extra="forbid")

    session_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
    ttl_minutes: Annotated[int, Field(ge=1, le=MAX_TTL_MINUTES)] = 30

    @field_validator("ttl_minutes", mode="before")
    @classmethod
    def _integral_number(cls, value: object) -> object:
        # JSON has one number type: 42.0 is the integer 42 (JSON Schema agrees); 42.5 and
        # `true` still fail the strict check.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class DiagnosticResponse(BaseModel):
    token: str
    session_id: str
    expires_at: str


_REQUEST_SCHEMA: Final = DiagnosticRequest.model_json_schema()

router = APIRouter(tags=["diagnostics"])


@router.post(
    "/v1/diagnostics",
    status_code=201,
    response_model=DiagnosticResponse,
    responses=error_responses(400, 401, 403, 413, 422),
    dependencies=[Depends(require_admin)],
    # The body is read here, after the admin check and with a size limit, rather than by
    # FastAPI before any dependency runs.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _REQUEST_SCHEMA}},
        }
    },
    summary="Mint a diagnostic-mode token (admin)",
)
async def create_diagnostic_token(request: Request) -> ApiResponse:
    """Let one session's debug/info events through the prod level policy for ≤ 60 minutes."""
    check_content_length(request.headers.get("content-length"), _MAX_BODY_BYTES)
    raw = await read_body(request.stream(), _MAX_BODY_BYTES)
    try:
        body = DiagnosticRequest.model_validate_json(raw or b"null")
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error.get("loc", ()))} for error in exc.errors()]
        raise RequestValidationError(errors) from None
    minted = get_state(request).diagnostics.mint(body.session_id, body.ttl_minutes)
    return ApiResponse(
        {
            "token": minted.token,
            "session_id": minted.session_id,
            "expires_at": format_timestamp(minted.expires_at),
        },
        status_code=201,
    )
