"""The prod level policy and diagnostic tokens (RELIABILITY.md §7, INJ-06)."""

from __future__ import annotations

import base64
import json
import warnings
from typing import Any

import jwt
import pytest

from logbeacon.event import parse_timestamp
from logbeacon.server.diagnostics import DiagnosticTokenError, DiagnosticTokens
from logbeacon.server.policy import LevelPolicy
from tests.server.conftest import ADMIN_TOKEN, DIAG_SECRET, FakeClock, Harness, HarnessFactory

SESSION = "sess-A"


def claims(now: float, **overrides: Any) -> dict[str, Any]:
    base = {
        "sid": SESSION,
        "scope": "diag",
        "aud": "logbeacon-diag",
        "iss": "logbeacon",
        "iat": int(now),
        "exp": int(now) + 3600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def token(now: float, *, key: str = DIAG_SECRET, algorithm: str = "HS256", **overrides: Any) -> str:
    return jwt.encode(claims(now, **overrides), key, algorithm=algorithm)


def b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --------------------------------------------------------------------------- LevelPolicy


@pytest.mark.parametrize(
    ("event", "allowed"),
    [
        ({"level": "warn", "service": "api", "event": "x"}, True),
        ({"level": "error", "service": "api", "event": "x"}, True),
        ({"level": "info", "service": "api", "event": "x"}, False),
        ({"level": "debug", "service": "api", "event": "x"}, False),
        ({"level": "info", "service": "langgraph", "event": "node_start"}, True),
        ({"level": "info", "service": "langgraph", "event": "run_complete"}, True),
        ({"level": "debug", "service": "langgraph", "event": "graph_compiled"}, True),
        ({"level": "info", "service": "langgraph", "event": "custom", "node": "n"}, True),
        ({"level": "info", "service": "langgraph", "event": "custom", "run_id": "r"}, True),
        ({"level": "info", "service": "langgraph", "event": "custom"}, False),
        ({"level": "info", "service": "api", "event": "node_start"}, False),
        ({"level": "info", "service": "api", "event": "x", "session_id": SESSION}, True),
        ({"level": "info", "service": "api", "event": "x", "session_id": "other"}, False),
    ],
)
def test_prod_level_policy(event: dict[str, Any], allowed: bool) -> None:
    """In prod: warn+ passes, LangGraph node/run events pass, the diagnostic session passes."""
    assert allowed == LevelPolicy(enabled=True).allows(event, SESSION)


def test_policy_off_outside_prod() -> None:
    """Outside prod every level passes."""
    assert LevelPolicy(enabled=False).allows({"level": "debug", "service": "api", "event": "x"})


# --------------------------------------------------------------------------- tokens


def test_minted_token_verifies_and_carries_the_contract_claims() -> None:
    """Minted tokens are HS256 with sid, scope=diag, iat, exp ≤ 60 min (DESIGN.md §8)."""
    clock = FakeClock()
    tokens = DiagnosticTokens(DIAG_SECRET, clock=clock)
    minted = tokens.mint(SESSION, 60)
    decoded = jwt.decode(
        minted.token,
        DIAG_SECRET,
        algorithms=["HS256"],
        audience="logbeacon-diag",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert SESSION == tokens.verify(minted.token)
    assert ("diag", SESSION, 3600) == (
        decoded["scope"],
        decoded["sid"],
        decoded["exp"] - decoded["iat"],
    )
    assert "HS256" == jwt.get_unverified_header(minted.token)["alg"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(
            lambda now: token(
                now, key="another-secret-FAKE-0123456789abcdef-0123456789abcdef-01234567"
            ),
            "signature",
            id="wrong-key",
        ),
        pytest.param(lambda now: token(now, algorithm="HS384"), "alg", id="HS384"),
        pytest.param(lambda now: token(now, algorithm="HS512"), "alg", id="HS512"),
        pytest.param(
            lambda now: b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims(now)) + ".",
            "alg",
            id="alg-none",
        ),
        pytest.param(
            lambda now: b64({"alg": "RS256", "typ": "JWT"}) + "." + b64(claims(now)) + ".c2ln",
            "alg",
            id="RS256",
        ),
        pytest.param(lambda now: token(now, exp=int(now) - 31), "expired", id="expired"),
        pytest.param(
            lambda now: token(now, iat=int(now) + 120, exp=int(now) + 600),
            "not_yet_valid",
            id="iat-future",
        ),
        pytest.param(lambda now: token(now, nbf=int(now) + 120), "not_yet_valid", id="nbf-future"),
        pytest.param(lambda now: token(now, exp=int(now) + 3601), "lifetime", id="lifetime-3601"),
        pytest.param(lambda now: token(now, exp=None), "claims", id="no-exp"),
        pytest.param(lambda now: token(now, iat=None), "claims", id="no-iat"),
        pytest.param(lambda now: token(now, aud=None), "claims", id="no-aud"),
        pytest.param(lambda now: token(now, sid=None), "claims", id="no-sid"),
        pytest.param(lambda now: token(now, iss=None), "claims", id="no-iss"),
        pytest.param(lambda now: token(now, aud="webapp"), "claims", id="aud-webapp"),
        pytest.param(lambda now: token(now, aud=["x", "logbeacon-diag"]), "claims", id="aud-list"),
        pytest.param(lambda now: token(now, iss="someone-else"), "claims", id="iss-other"),
        pytest.param(lambda now: token(now, scope=None), "claims", id="no-scope"),
        pytest.param(lambda now: token(now, scope="admin"), "claims", id="scope-admin"),
        pytest.param(lambda now: token(now, sid=""), "claims", id="empty-sid"),
        pytest.param(lambda now: token(now, iat="yesterday"), "claims", id="iat-text"),
        pytest.param(lambda now: "a.b", "malformed", id="two-segments"),
        pytest.param(lambda now: "a.b.c.d", "malformed", id="four-segments"),
        pytest.param(lambda now: "!!!.???.***", "malformed", id="not-base64"),
        pytest.param(
            lambda now: jwt.PyJWS().encode(b"[1,2]", DIAG_SECRET, algorithm="HS256"),
            "malformed",
            id="payload-list",
        ),
        pytest.param(lambda now: "a" * 65_536, "malformed", id="64kb"),
    ],
)
def test_invalid_tokens_are_refused(make: Any, reason: str) -> None:
    """Every malformed, mis-signed, mis-claimed or over-long token is refused with a reason."""
    clock = FakeClock()
    tokens = DiagnosticTokens(DIAG_SECRET, clock=clock)
    with pytest.raises(DiagnosticTokenError) as info:
        tokens.verify(make(clock.now))
    assert reason == info.value.reason


def test_tampered_sid_is_refused() -> None:
    """Changing `sid` in the payload while keeping the signature fails (JWT-05)."""
    clock = FakeClock()
    header, _, signature = token(clock.now).split(".")
    forged = f"{header}.{b64(claims(clock.now, sid='sess-B'))}.{signature}"
    with pytest.raises(DiagnosticTokenError):
        DiagnosticTokens(DIAG_SECRET, clock=clock).verify(forged)


def test_crit_header_is_refused() -> None:
    """A token declaring an unknown critical extension is refused (JWT-16)."""
    clock = FakeClock()
    forged = jwt.encode(
        claims(clock.now), DIAG_SECRET, algorithm="HS256", headers={"crit": ["exp"]}
    )
    with pytest.raises(DiagnosticTokenError):
        DiagnosticTokens(DIAG_SECRET, clock=clock).verify(forged)


@pytest.mark.parametrize(("offset", "valid"), [(-29, True), (-31, False), (3600, True)])
def test_expiry_leeway_is_30_seconds(offset: int, valid: bool) -> None:
    """exp up to 30 s in the past is tolerated (clock skew), beyond that refused (JWT-08)."""
    clock = FakeClock()
    tokens = DiagnosticTokens(DIAG_SECRET, clock=clock)
    issued = int(clock.now) + offset - 3600
    candidate = token(clock.now, iat=issued, exp=int(clock.now) + offset)
    if valid:
        assert SESSION == tokens.verify(candidate)
    else:
        with pytest.raises(DiagnosticTokenError):
            tokens.verify(candidate)


def test_mint_refuses_ttl_over_an_hour() -> None:
    """The minting code itself refuses a lifetime over 60 minutes."""
    with pytest.raises(ValueError, match="60"):
        DiagnosticTokens(DIAG_SECRET).mint(SESSION, 61)


def test_tokens_without_configured_secret_use_a_process_secret() -> None:
    """Without LOG_DIAGNOSTIC_SECRET tokens still work, but only for this process's key."""
    first, second = DiagnosticTokens(None), DiagnosticTokens(None)
    minted = first.mint(SESSION, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SESSION == first.verify(minted.token)
    with pytest.raises(DiagnosticTokenError):
        second.verify(minted.token)


# --------------------------------------------------------------------------- end to end


BATCH = [
    {"event": "a", "level": "debug", "service": "api"},
    {"event": "b", "level": "info", "service": "api"},
    {"event": "c", "level": "warn", "service": "api"},
    {"event": "d", "level": "error", "service": "api"},
]


async def test_prod_rejects_debug_and_info_per_event(make_harness: HarnessFactory) -> None:
    """Prod without a token: debug/info rejected level_not_allowed, warn/error stored (JWT-21)."""
    async with make_harness(environment="prod") as harness, harness.client() as client:
        response = await client.post("/v1/logs", json=BATCH)
        stored = sorted(e["event"] for e in await harness.all_events())
    assert {
        "accepted": 2,
        "duplicates": 0,
        "rejected": [
            {"index": 0, "reason": "level_not_allowed"},
            {"index": 1, "reason": "level_not_allowed"},
        ],
    } == response.json()
    assert ["c", "d"] == stored


async def test_dev_stores_every_level(make_harness: HarnessFactory) -> None:
    """Outside prod the same batch is stored entirely (JWT-22)."""
    async with make_harness(environment="dev") as harness, harness.client() as client:
        response = await client.post("/v1/logs", json=BATCH)
    assert 4 == response.json()["accepted"]


@pytest.mark.parametrize(
    "level",
    ["DEBUG", "Debug ", "debug\n", 10, None, "INFO"],
    ids=["DEBUG", "Debug-space", "debug-newline", "10", "null", "INFO"],
)
async def test_level_spoofing_cannot_pass_the_policy(
    make_harness: HarnessFactory, level: Any
) -> None:
    """Case, whitespace, numbers and null all normalise to debug/info and are refused (INJ-06)."""
    async with make_harness(environment="prod") as harness, harness.client() as client:
        response = await client.post("/v1/logs", json=[{"event": "x", "level": level}])
    assert [{"index": 0, "reason": "level_not_allowed"}] == response.json()["rejected"]


@pytest.mark.parametrize("level", ["WARNING", "Warn", "error", "ERROR", "critical", "fatal", 40])
async def test_warn_and_above_aliases_are_accepted(
    make_harness: HarnessFactory, level: Any
) -> None:
    """Aliases of warn and above are normalised and stored in prod (INJ-06)."""
    async with make_harness(environment="prod") as harness, harness.client() as client:
        response = await client.post("/v1/logs", json=[{"event": "x", "level": level}])
    assert 1 == response.json()["accepted"]


async def _post_with_token(
    harness: Harness, diag: str | None, *, cookie: bool = False
) -> dict[str, Any]:
    batch = [
        {"event": "a1", "level": "debug", "session_id": SESSION},
        {"event": "b1", "level": "info", "session_id": "sess-B"},
        {"event": "a2", "level": "error", "session_id": SESSION},
    ]
    async with harness.client() as client:
        if diag is not None and cookie:
            client.cookies.set("diag", diag)
        headers = {"x-logbeacon-diag": diag} if diag is not None and not cookie else {}
        response = await client.post("/v1/logs", json=batch, headers=headers)
    result: dict[str, Any] = response.json()
    result["status"] = response.status_code
    return result


@pytest.mark.parametrize("cookie", [False, True], ids=["header", "cookie"])
async def test_valid_token_lets_its_session_through(
    make_harness: HarnessFactory, cookie: bool
) -> None:
    """A valid token (header or `diag` cookie) passes its session only (JWT-01, JWT-13)."""
    clock = FakeClock()
    async with make_harness(
        environment="prod", diagnostic_secret=DIAG_SECRET, clock=clock
    ) as harness:
        result = await _post_with_token(harness, token(clock.now), cookie=cookie)
        stored = sorted(e["event"] for e in await harness.all_events())
    assert [{"index": 1, "reason": "level_not_allowed"}] == result["rejected"]
    assert ["a1", "a2"] == stored


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda now: token(now, sid="other"), id="wrong-session"),
        pytest.param(lambda now: token(now, exp=int(now) - 60), id="expired"),
        pytest.param(
            lambda now: b64({"alg": "none"}) + "." + b64(claims(now)) + ".", id="alg-none"
        ),
        pytest.param(
            lambda now: token(
                now, key="another-secret-FAKE-0123456789abcdef-0123456789abcdef-01234567"
            ),
            id="wrong-key",
        ),
        pytest.param(lambda now: token(now, exp=int(now) + 7200), id="ttl-over-60"),
        pytest.param(lambda now: "garbage", id="garbage"),
    ],
)
async def test_invalid_token_never_fails_the_batch(make_harness: HarnessFactory, make: Any) -> None:
    """An invalid or expired token only means the policy applies; warn/error stored (JWT-23)."""
    clock = FakeClock()
    async with make_harness(
        environment="prod", diagnostic_secret=DIAG_SECRET, clock=clock
    ) as harness:
        result = await _post_with_token(harness, make(clock.now))
        stored = [e["event"] for e in await harness.all_events()]
    assert 200 == result["status"]
    assert [0, 1] == [r["index"] for r in result["rejected"]]
    assert ["a2"] == stored


async def test_invalid_tokens_are_counted(make_harness: HarnessFactory) -> None:
    """A refused token increments logbeacon_diag_token_invalid_total{reason} (JWT-02)."""
    clock = FakeClock()
    async with make_harness(
        environment="prod", diagnostic_secret=DIAG_SECRET, clock=clock
    ) as harness:
        await _post_with_token(harness, b64({"alg": "none"}) + "." + b64(claims(clock.now)) + ".")
        async with harness.client() as client:
            text = (await client.get("/metrics", headers=harness.read_headers)).text
    assert 'logbeacon_diag_token_invalid_total{reason="alg"} 1.0' in text


async def test_minted_token_round_trip_through_the_api(make_harness: HarnessFactory) -> None:
    """POST /v1/diagnostics → 201 {token, session_id, expires_at}; the token works for ingest."""
    clock = FakeClock()
    async with make_harness(
        environment="prod", admin_token=ADMIN_TOKEN, diagnostic_secret=DIAG_SECRET, clock=clock
    ) as harness:
        async with harness.client() as client:
            minted = await client.post(
                "/v1/diagnostics",
                json={"session_id": SESSION, "ttl_minutes": 15},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
        body = minted.json()
        result = await _post_with_token(harness, body["token"])
    assert 201 == minted.status_code
    assert SESSION == body["session_id"]
    assert clock.now + 900 == parse_timestamp(body["expires_at"])
    assert [1] == [r["index"] for r in result["rejected"]]


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"session_id": SESSION, "ttl_minutes": 61}, 422),
        ({"session_id": SESSION, "ttl_minutes": 0}, 422),
        ({"session_id": ""}, 422),
        ({"session_id": "a\nb"}, 422),
        ({"ttl_minutes": 5}, 422),
        ({"session_id": SESSION}, 201),
    ],
)
async def test_diagnostics_request_validation(
    make_harness: HarnessFactory, payload: dict[str, Any], status: int
) -> None:
    """ttl_minutes above 60 (or invalid fields) is 422 naming the limit; defaults mint."""
    async with make_harness(admin_token=ADMIN_TOKEN) as harness, harness.client() as client:
        response = await client.post(
            "/v1/diagnostics", json=payload, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
    assert status == response.status_code
    if payload.get("ttl_minutes") == 61:
        assert "60" in response.json()["message"]
        assert "ttl_minutes" in response.json()["message"]
