"""The auth matrix: who may ingest, read and mint, with which status codes (DESIGN.md §8)."""

from __future__ import annotations

import ast
import gzip
import inspect
import os
import stat
from typing import Any

import httpx
import orjson
import pytest

from logbeacon.server import Settings, auth, create_app
from logbeacon.server.app import load_or_create_read_token
from logbeacon.server.signing import sign
from tests.server.conftest import (
    ADMIN_TOKEN,
    BROWSER_KEY,
    HMAC_ROTATED,
    HMAC_SECRET,
    INGEST_KEY,
    LOOPBACK,
    ORIGIN,
    READ_TOKEN,
    REMOTE,
    FakeClock,
    HarnessFactory,
)

EVENT = {"event": "thing", "level": "error", "service": "api"}
BODY = orjson.dumps([EVENT])
JSON = {"content-type": "application/json"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(
    make_harness: HarnessFactory,
    *,
    client: tuple[str, int] = REMOTE,
    headers: dict[str, str] | None = None,
    body: bytes = BODY,
    params: dict[str, str] | None = None,
    clock: FakeClock | None = None,
    **settings: Any,
) -> httpx.Response:
    async with make_harness(clock=clock, **settings) as harness, harness.client(client) as c:
        return await c.post(
            "/v1/logs", content=body, headers={**JSON, **(headers or {})}, params=params
        )


# --------------------------------------------------------------------------- open mode


async def test_open_mode_accepts_loopback(make_harness: HarnessFactory) -> None:
    """With no ingest credential configured, a loopback client may ingest."""
    response = await post(make_harness, client=LOOPBACK)
    assert 200 == response.status_code


async def test_open_mode_refuses_remote_clients(make_harness: HarnessFactory) -> None:
    """With no ingest credential configured, a non-loopback client gets 403."""
    response = await post(make_harness, client=REMOTE)
    assert (403, "loopback_only") == (response.status_code, response.json()["error"])


async def test_open_mode_refuses_proxied_loopback(make_harness: HarnessFactory) -> None:
    """A loopback peer carrying X-Forwarded-For came through a proxy and is not local."""
    response = await post(make_harness, client=LOOPBACK, headers={"X-Forwarded-For": "203.0.113.9"})
    assert 403 == response.status_code


# --------------------------------------------------------------------------- ingest keys


async def test_ingest_key_accepted_from_anywhere(make_harness: HarnessFactory) -> None:
    """A configured ingest key lets a remote client ingest."""
    response = await post(make_harness, headers=bearer(INGEST_KEY), ingest_keys=(INGEST_KEY,))
    assert 200 == response.status_code


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 401, "missing_credentials"),
        (bearer("wrong-key-FAKE-0123456789"), 401, "invalid_credentials"),
        ({"Authorization": f"Basic {INGEST_KEY}"}, 401, "invalid_credentials"),
        ({"Authorization": "Bearer "}, 401, "invalid_credentials"),
        (bearer(READ_TOKEN), 403, "forbidden"),
        (bearer(ADMIN_TOKEN), 403, "forbidden"),
    ],
    ids=["none", "wrong", "basic", "empty", "read-token", "admin-token"],
)
async def test_ingest_key_failures(
    make_harness: HarnessFactory, headers: dict[str, str], status: int, error: str
) -> None:
    """Missing/invalid credentials are 401; valid non-ingest credentials are 403."""
    response = await post(
        make_harness,
        headers=headers,
        ingest_keys=(INGEST_KEY,),
        read_tokens=(READ_TOKEN,),
        admin_token=ADMIN_TOKEN,
    )
    assert (status, error) == (response.status_code, response.json()["error"])


async def test_keys_configured_means_loopback_needs_them_too(
    make_harness: HarnessFactory,
) -> None:
    """Once a key is configured, loopback clients without it get 401."""
    response = await post(make_harness, client=LOOPBACK, ingest_keys=(INGEST_KEY,))
    assert 401 == response.status_code


# --------------------------------------------------------------------------- HMAC


def signed(body: bytes, secret: str, timestamp: float) -> dict[str, str]:
    return sign(body, secret, int(timestamp))


async def post_signed(
    make_harness: HarnessFactory,
    headers: dict[str, str],
    *,
    body: bytes = BODY,
    secrets: tuple[str, ...] = (HMAC_SECRET,),
    clock: FakeClock | None = None,
    **settings: Any,
) -> httpx.Response:
    return await post(
        make_harness,
        headers=headers,
        body=body,
        clock=clock or FakeClock(),
        hmac_secrets=secrets,
        **settings,
    )


async def test_valid_signature_is_accepted(make_harness: HarnessFactory) -> None:
    """A body signed with a configured secret at the current time is accepted (SIG-02)."""
    clock = FakeClock()
    response = await post_signed(make_harness, signed(BODY, HMAC_SECRET, clock.now), clock=clock)
    assert 200 == response.status_code


@pytest.mark.parametrize(("skew", "status"), [(-299, 200), (-301, 401), (299, 200), (301, 401)])
async def test_signature_timestamp_window_is_symmetric(
    make_harness: HarnessFactory, skew: int, status: int
) -> None:
    """Timestamps more than 300 s away from the server clock, either way, are refused (SIG-04)."""
    clock = FakeClock()
    headers = signed(BODY, HMAC_SECRET, clock.now + skew)
    response = await post_signed(make_harness, headers, clock=clock)
    assert status == response.status_code
    if status == 401:
        assert "timestamp_out_of_tolerance" == response.json()["error"]


async def test_replayed_signature_is_refused(make_harness: HarnessFactory) -> None:
    """The same (timestamp, signature) twice within the window: the second is 401 (SIG-06)."""
    clock = FakeClock()
    headers = {**JSON, **signed(BODY, HMAC_SECRET, clock.now)}
    async with make_harness(clock=clock, hmac_secrets=(HMAC_SECRET,)) as harness:
        async with harness.client(REMOTE) as c:
            first = await c.post("/v1/logs", content=BODY, headers=headers)
            second = await c.post("/v1/logs", content=BODY, headers=headers)
        stored = await harness.all_events()
    assert (200, 401) == (first.status_code, second.status_code)
    assert "replayed" == second.json()["error"]
    assert 1 == len(stored)


@pytest.mark.parametrize(
    "make_headers",
    [
        pytest.param(lambda now: signed(BODY, "some-other-secret-FAKE-000000", now), id="forged"),
        pytest.param(
            lambda now: signed(orjson.dumps([EVENT], option=orjson.OPT_INDENT_2), HMAC_SECRET, now),
            id="reserialized-body",
        ),
        pytest.param(
            lambda now: {**signed(BODY, HMAC_SECRET, now - 10), "x-log-timestamp": str(int(now))},
            id="fresh-timestamp-old-signature",
        ),
        pytest.param(
            lambda now: {
                "x-log-timestamp": str(int(now)),
                "x-log-signature": signed(BODY, HMAC_SECRET, now)["x-log-signature"].replace(
                    "sha256=", "sha1="
                ),
            },
            id="scheme-downgrade",
        ),
        pytest.param(lambda now: {"x-log-signature": "sha256=" + "0" * 64}, id="no-timestamp"),
        pytest.param(lambda now: {"x-log-timestamp": str(int(now))}, id="no-signature"),
        pytest.param(
            lambda now: {"x-log-timestamp": "abc", "x-log-signature": "sha256=" + "0" * 64},
            id="t-abc",
        ),
        pytest.param(
            lambda now: {"x-log-timestamp": str(int(now)), "x-log-signature": "sha256="},
            id="empty",
        ),
        pytest.param(
            lambda now: {"x-log-timestamp": str(int(now)), "x-log-signature": "sha256=zz" * 32},
            id="non-hex",
        ),
        pytest.param(
            lambda now: {"x-log-timestamp": str(int(now)), "x-log-signature": "sha256=" + "a" * 63},
            id="odd-length",
        ),
        pytest.param(
            lambda now: {"x-log-timestamp": str(int(now)), "x-log-signature": "a" * 10_000},
            id="10kb-header",
        ),
        pytest.param(
            lambda now: {
                "x-log-timestamp": str(int(now)),
                "x-log-signature": ",".join(["sha256=" + "0" * 64] * 1000),
            },
            id="1000-entries",
        ),
    ],
)
async def test_bad_signatures_are_401(make_harness: HarnessFactory, make_headers: Any) -> None:
    """Forged, mutated, re-dated, downgraded or malformed signatures are 401, never 500."""
    clock = FakeClock()
    response = await post_signed(make_harness, make_headers(clock.now), clock=clock)
    assert 401 == response.status_code
    assert b"sha256" not in response.content  # nothing of the header is echoed (SIG-14)


async def test_uppercase_hex_signature_is_the_same_signature(
    make_harness: HarnessFactory,
) -> None:
    """Hex is decoded before comparing, so upper-case hex verifies (SIG-10)."""
    clock = FakeClock()
    headers = signed(BODY, HMAC_SECRET, clock.now)
    headers["x-log-signature"] = "sha256=" + headers["x-log-signature"][7:].upper()
    response = await post_signed(make_harness, headers, clock=clock)
    assert 200 == response.status_code


@pytest.mark.parametrize(
    ("server_secrets", "signing_secrets", "status"),
    [
        ((HMAC_ROTATED,), (HMAC_ROTATED,), 200),
        ((HMAC_SECRET, HMAC_ROTATED), (HMAC_SECRET,), 200),
        ((HMAC_SECRET, HMAC_ROTATED), (HMAC_ROTATED,), 200),
        ((HMAC_ROTATED,), (HMAC_SECRET, HMAC_ROTATED), 200),
        ((HMAC_ROTATED,), (HMAC_SECRET,), 401),
    ],
    ids=["new-new", "both-old", "both-new", "new-vs-both", "retired-old"],
)
async def test_secret_rotation(
    make_harness: HarnessFactory,
    server_secrets: tuple[str, ...],
    signing_secrets: tuple[str, ...],
    status: int,
) -> None:
    """Several secrets and signatures bridge a rotation; a retired secret fails (SIG-07)."""
    clock = FakeClock()
    headers = sign(BODY, list(signing_secrets), int(clock.now))
    response = await post_signed(make_harness, headers, secrets=server_secrets, clock=clock)
    assert status == response.status_code


async def test_gzip_signature_covers_the_compressed_bytes(make_harness: HarnessFactory) -> None:
    """A gzipped body is signed as sent (compressed); signing the inflated bytes fails (SIG-15)."""
    clock = FakeClock()
    compressed = gzip.compress(BODY)
    good = {**signed(compressed, HMAC_SECRET, clock.now), "content-encoding": "gzip"}
    bad = {**signed(BODY, HMAC_SECRET, clock.now), "content-encoding": "gzip"}
    ok = await post_signed(make_harness, good, body=compressed, clock=clock)
    refused = await post_signed(make_harness, bad, body=compressed, clock=clock)
    assert (200, 401) == (ok.status_code, refused.status_code)


async def test_non_ascii_body_verifies_over_raw_bytes(make_harness: HarnessFactory) -> None:
    """UTF-8 bodies verify over their raw bytes (SIG-15)."""
    clock = FakeClock()
    body = orjson.dumps([{**EVENT, "message": "Grüße ✓"}])
    response = await post_signed(
        make_harness, signed(body, HMAC_SECRET, clock.now), body=body, clock=clock
    )
    assert 200 == response.status_code


async def test_bad_signature_next_to_good_key_is_401(make_harness: HarnessFactory) -> None:
    """Every credential presented must be valid: no silent downgrade to the key (SIG-13)."""
    clock = FakeClock()
    headers = {**bearer(INGEST_KEY), **signed(BODY, "forged-secret-FAKE-0000000000", clock.now)}
    response = await post_signed(make_harness, headers, clock=clock, ingest_keys=(INGEST_KEY,))
    assert 401 == response.status_code


async def test_signature_without_configured_secrets_is_401(make_harness: HarnessFactory) -> None:
    """A signed request to a server without HMAC secrets is refused, not waved through."""
    clock = FakeClock()
    response = await post(
        make_harness,
        headers={**bearer(INGEST_KEY), **signed(BODY, HMAC_SECRET, clock.now)},
        clock=clock,
        ingest_keys=(INGEST_KEY,),
    )
    assert 401 == response.status_code


async def test_size_limit_comes_before_signature(make_harness: HarnessFactory) -> None:
    """An oversize body with a bad signature is 413 without being read (SIG-12)."""
    clock = FakeClock()
    body = b"[" + b" " * 20_000 + b"]"
    headers = {"x-log-timestamp": str(int(clock.now)), "x-log-signature": "sha256=" + "0" * 64}
    response = await post_signed(
        make_harness, headers, body=body, clock=clock, max_body_bytes=10_000
    )
    assert 413 == response.status_code


async def test_signature_is_checked_before_json_parsing(make_harness: HarnessFactory) -> None:
    """A body with a bad signature is never parsed: garbage JSON still gets the 401 (SIG-12)."""
    clock = FakeClock()
    headers = {"x-log-timestamp": str(int(clock.now)), "x-log-signature": "sha256=" + "0" * 64}
    response = await post_signed(make_harness, headers, body=b"{not json", clock=clock)
    assert (401, "bad_signature") == (response.status_code, response.json()["error"])


def test_secret_comparisons_are_constant_time() -> None:
    """auth.py never compares credentials with ==/!= (SIG-09); it uses hmac.compare_digest."""
    tree = ast.parse(inspect.getsource(auth))
    suspicious = {"token", "key", "secret", "signature", "digest", "candidate"}
    offenders = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
        ):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            if any(word in name.lower() for name in names for word in suspicious):
                offenders.append(ast.unparse(node))
    assert [] == offenders
    assert "compare_digest" in inspect.getsource(auth.constant_time_in)


# --------------------------------------------------------------------------- browser key


def browser_settings() -> dict[str, Any]:
    return {"browser_key": BROWSER_KEY, "allowed_origins": (ORIGIN,)}


async def test_browser_key_from_allowed_origin(make_harness: HarnessFactory) -> None:
    """?key= with an allowed Origin is accepted and the answer carries CORS headers."""
    response = await post(
        make_harness,
        headers={"origin": ORIGIN, "content-type": "text/plain;charset=UTF-8"},
        params={"key": BROWSER_KEY},
        **browser_settings(),
    )
    assert 200 == response.status_code
    assert ORIGIN == response.headers["access-control-allow-origin"]
    assert "Retry-After" == response.headers["access-control-expose-headers"]


@pytest.mark.parametrize(
    ("origin", "key", "status"),
    [
        ("https://evil.example", BROWSER_KEY, 403),
        (None, BROWSER_KEY, 403),
        (ORIGIN, "wrong-browser-key", 401),
    ],
    ids=["disallowed-origin", "no-origin", "wrong-key"],
)
async def test_browser_key_failures(
    make_harness: HarnessFactory, origin: str | None, key: str, status: int
) -> None:
    """The browser key is honoured only with an allowed Origin; a wrong key is 401."""
    headers = {"origin": origin} if origin else {}
    response = await post(make_harness, headers=headers, params={"key": key}, **browser_settings())
    assert status == response.status_code
    if origin == ORIGIN:
        assert ORIGIN == response.headers["access-control-allow-origin"]  # CORS on errors
    else:
        assert "access-control-allow-origin" not in response.headers


async def test_preflight_for_allowed_and_other_origins(make_harness: HarnessFactory) -> None:
    """OPTIONS preflight: 204 with allow headers for allowed origins, 403 without ACAO else."""
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-log-signature",
    }
    async with make_harness(**browser_settings()) as harness, harness.client(REMOTE) as c:
        ok = await c.options("/v1/logs", headers={**preflight, "origin": ORIGIN})
        bad = await c.options("/v1/logs", headers={**preflight, "origin": "https://evil.example"})
    assert 204 == ok.status_code
    assert ORIGIN == ok.headers["access-control-allow-origin"]
    assert "x-log-signature" in ok.headers["access-control-allow-headers"]
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert 403 == bad.status_code
    assert "access-control-allow-origin" not in bad.headers


@pytest.mark.parametrize("status", [400, 413, 429])
async def test_cors_headers_on_error_responses(make_harness: HarnessFactory, status: int) -> None:
    """400/413/429 answers to an allowed origin carry ACAO and expose Retry-After (RL-19)."""
    body = {400: b"{bad", 413: orjson.dumps([EVENT] * 3), 429: orjson.dumps([EVENT] * 2)}[status]
    async with make_harness(burst=2, max_batch=2, **browser_settings()) as harness:
        async with harness.client(REMOTE) as c:
            if status == 429:
                await c.post(
                    "/v1/logs",
                    content=body,
                    params={"key": BROWSER_KEY},
                    headers={**JSON, "origin": ORIGIN},
                )
            response = await c.post(
                "/v1/logs",
                content=body,
                params={"key": BROWSER_KEY},
                headers={**JSON, "origin": ORIGIN},
            )
    assert status == response.status_code
    assert ORIGIN == response.headers["access-control-allow-origin"]
    assert "Retry-After" == response.headers["access-control-expose-headers"]


# --------------------------------------------------------------------------- reading


async def test_read_apis_need_a_token(make_harness: HarnessFactory) -> None:
    """Without a token the read APIs are 401 with WWW-Authenticate: Bearer."""
    async with make_harness(read_tokens=(READ_TOKEN,)) as harness, harness.client() as c:
        responses = [
            await c.get("/v1/logs"),
            await c.get(f"/v1/traces/{'a' * 32}"),
            await c.get("/metrics"),
            await c.get("/v1/logs", headers=bearer("wrong-token-FAKE-0123456789")),
        ]
    assert [401] * 4 == [r.status_code for r in responses]
    assert all(r.headers["www-authenticate"].startswith("Bearer") for r in responses)


@pytest.mark.parametrize("token", [INGEST_KEY, ADMIN_TOKEN, BROWSER_KEY])
async def test_other_credentials_may_not_read(make_harness: HarnessFactory, token: str) -> None:
    """An ingest key, the admin token or the browser key used to read is 403."""
    async with (
        make_harness(
            read_tokens=(READ_TOKEN,),
            ingest_keys=(INGEST_KEY,),
            admin_token=ADMIN_TOKEN,
            **browser_settings(),
        ) as harness,
        harness.client() as c,
    ):
        response = await c.get("/v1/logs", headers=bearer(token))
    assert (403, "forbidden") == (response.status_code, response.json()["error"])


async def test_query_token_sets_a_strict_httponly_cookie(make_harness: HarnessFactory) -> None:
    """?token= works once and answers with an HttpOnly SameSite=Strict cookie that keeps working."""
    async with make_harness(read_tokens=(READ_TOKEN,)) as harness, harness.client() as c:
        first = await c.get("/v1/logs", params={"token": READ_TOKEN})
        later = await c.get("/v1/logs")  # the client's jar sends the cookie back
        c.cookies.clear()
        without = await c.get("/v1/logs")
    cookie = first.headers["set-cookie"]
    assert (200, 200, 401) == (first.status_code, later.status_code, without.status_code)
    assert cookie.startswith(f"{auth.READ_COOKIE}={READ_TOKEN};")
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()


async def test_generated_read_token_is_saved_private(make_harness: HarnessFactory) -> None:
    """Without configured read tokens one is generated, saved 0600 in the data dir, and works."""
    async with make_harness() as harness, harness.client() as c:
        token = harness.state.generated_read_token
        assert token is not None
        path = harness.state.settings.data_dir / "read_token"
        response = await c.get("/v1/logs", headers=bearer(token))
    assert 200 == response.status_code
    assert token == path.read_text().strip()
    assert 0o600 == stat.S_IMODE(os.stat(path).st_mode)


def test_generated_read_token_is_reused_across_restarts(tmp_path: Any) -> None:
    """A restarted server on the same data dir keeps its token (dashboard links keep working)."""
    first = load_or_create_read_token(tmp_path)
    second = load_or_create_read_token(tmp_path)
    (tmp_path / "read_token").write_text("short\n")
    third = load_or_create_read_token(tmp_path)
    assert first == second
    assert third != first
    assert 43 == len(third)


def test_configured_read_tokens_write_no_file(tmp_path: Any) -> None:
    """With LOGBEACON_READ_TOKENS set, nothing is generated or written."""
    app = create_app(Settings(data_dir=tmp_path / "d", read_tokens=(READ_TOKEN,)))
    assert app.state.logbeacon.generated_read_token is None
    assert not (tmp_path / "d" / "read_token").exists()


# --------------------------------------------------------------------------- admin


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        (bearer("wrong-admin-FAKE-0123456789"), 401),
        (bearer(READ_TOKEN), 403),
        (bearer(INGEST_KEY), 403),
        (bearer(ADMIN_TOKEN), 201),
    ],
    ids=["none", "wrong", "read-token", "ingest-key", "admin"],
)
async def test_diagnostics_needs_the_admin_token(
    make_harness: HarnessFactory, headers: dict[str, str], status: int
) -> None:
    """POST /v1/diagnostics: 401 without/with a wrong token, 403 for other credentials."""
    async with (
        make_harness(
            read_tokens=(READ_TOKEN,), ingest_keys=(INGEST_KEY,), admin_token=ADMIN_TOKEN
        ) as harness,
        harness.client() as c,
    ):
        response = await c.post("/v1/diagnostics", json={"session_id": "s1"}, headers=headers)
    assert status == response.status_code


async def test_diagnostics_without_admin_token_configured_is_403(
    make_harness: HarnessFactory,
) -> None:
    """With no admin token configured, minting is refused with a message naming the variable."""
    async with make_harness() as harness, harness.client() as c:
        response = await c.post(
            "/v1/diagnostics", json={"session_id": "s1"}, headers=bearer(ADMIN_TOKEN)
        )
    assert 403 == response.status_code
    assert "LOGBEACON_ADMIN_TOKEN" in response.json()["message"]


async def test_diagnostics_body_is_size_limited(make_harness: HarnessFactory) -> None:
    """A large admin body is 413; without credentials it is 401 before being read."""
    body = b'{"session_id": "' + b"a" * 100_000 + b'"}'
    async with make_harness(admin_token=ADMIN_TOKEN) as harness, harness.client() as c:
        admin = await c.post(
            "/v1/diagnostics",
            content=body,
            headers={"content-type": "application/json", **bearer(ADMIN_TOKEN)},
        )
        anonymous = await c.post(
            "/v1/diagnostics", content=body, headers={"content-type": "application/json"}
        )
    assert (413, "body_too_large") == (admin.status_code, admin.json()["error"])
    assert 401 == anonymous.status_code


async def test_auth_is_checked_before_the_body(make_harness: HarnessFactory) -> None:
    """An unauthenticated admin call with an invalid body is 401, not 422."""
    async with make_harness(admin_token=ADMIN_TOKEN) as harness, harness.client() as c:
        response = await c.post("/v1/diagnostics", json={"ttl_minutes": "x"})
    assert 401 == response.status_code
