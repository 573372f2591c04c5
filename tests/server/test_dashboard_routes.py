"""The dashboard's routes in-process: sign-in by `?token=` or form, the cookie it sets, the
static ES modules and their types, and the security headers (CSP without inline code)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie

import httpx
import pytest

from logbeacon.server.auth import READ_COOKIE
from logbeacon.server.dashboard import CONTENT_SECURITY_POLICY, STATIC_DIR, get_assets
from tests.server.conftest import INGEST_KEY, READ_TOKEN, HarnessFactory

IMPORT_RE = re.compile(r"""(?:^|\n)\s*(?:import|export)\b[^;'"]*?from\s+["']([^"']+)["']""")
SCRIPT_TAG_RE = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)


def set_cookies(response: httpx.Response) -> dict[str, dict[str, str]]:
    """The Set-Cookie headers of a response: name → attributes (lower-case keys)."""
    cookies: dict[str, dict[str, str]] = {}
    for header in response.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            attributes = {key: str(value) for key, value in morsel.items() if value}
            flags = {part.strip().lower() for part in header.split(";")}
            attributes["value"] = morsel.value
            attributes["httponly"] = str("httponly" in flags)
            cookies[name] = attributes
    return cookies


def cookie(value: str) -> dict[str, str]:
    """A Cookie header carrying the dashboard's token cookie."""
    return {"Cookie": f"{READ_COOKIE}={value}"}


@pytest.fixture
async def app_client(make_harness: HarnessFactory) -> AsyncIterator[httpx.AsyncClient]:
    """A loopback client of a server with one configured read token and one ingest key."""
    async with (
        make_harness(read_tokens=(READ_TOKEN,), ingest_keys=(INGEST_KEY,)) as harness,
        harness.client() as client,
    ):
        yield client


def assert_page_headers(response: httpx.Response) -> None:
    assert CONTENT_SECURITY_POLICY == response.headers["content-security-policy"]
    assert "DENY" == response.headers["x-frame-options"]
    assert "no-referrer" == response.headers["referrer-policy"]


async def test_root_without_credentials_shows_the_sign_in_form(
    app_client: httpx.AsyncClient,
) -> None:
    """`/` with no token anywhere answers the sign-in form, sets no cookie, and is framed by CSP."""
    response = await app_client.get("/")
    assert 200 == response.status_code
    assert response.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/login"' in response.text
    assert "/ui/app.js" not in response.text
    assert {} == set_cookies(response)
    assert "no-store" == response.headers["cache-control"]
    assert_page_headers(response)


async def test_valid_query_token_sets_the_cookie_and_redirects_to_the_bare_root(
    app_client: httpx.AsyncClient,
) -> None:
    """`/?token=<read token>` → 303 to `/` with an HttpOnly SameSite=Strict cookie, path `/`."""
    response = await app_client.get("/", params={"token": READ_TOKEN})
    assert 303 == response.status_code
    assert "/" == response.headers["location"]
    set_cookie = set_cookies(response)[READ_COOKIE]
    assert READ_TOKEN == set_cookie["value"]
    assert "True" == set_cookie["httponly"]
    assert "strict" == set_cookie["samesite"].lower()
    assert "/" == set_cookie["path"]
    assert "secure" not in set_cookie  # plain http on loopback; https requests get Secure
    assert_page_headers(response)


async def test_cookie_is_secure_over_https(make_harness: HarnessFactory) -> None:
    """Reached over https (directly or through a trusted proxy), the cookie gets `Secure`."""
    async with make_harness(read_tokens=(READ_TOKEN,)) as harness:
        transport = httpx.ASGITransport(app=harness.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            response = await client.get("/", params={"token": READ_TOKEN})
    assert 303 == response.status_code
    assert "secure" in set_cookies(response)[READ_COOKIE]


async def test_invalid_query_token_sets_no_cookie(app_client: httpx.AsyncClient) -> None:
    """A wrong `?token=` is a 401 sign-in page with a message, and no cookie at all."""
    response = await app_client.get("/", params={"token": "not-the-token-0123456789abcdef"})
    assert 401 == response.status_code
    assert {} == set_cookies(response)
    assert 'role="alert"' in response.text
    assert "not-the-token" not in response.text  # never reflected


async def test_ingest_key_as_query_token_is_refused_without_cookie(
    app_client: httpx.AsyncClient,
) -> None:
    """An ingest key is valid but may not read: 403 sign-in page, no cookie."""
    response = await app_client.get("/", params={"token": INGEST_KEY})
    assert 403 == response.status_code
    assert {} == set_cookies(response)


async def test_cookie_opens_the_app_shell_with_external_modules_only(
    app_client: httpx.AsyncClient,
) -> None:
    """With the cookie, `/` is the app shell: module scripts with `src`, no inline script."""
    response = await app_client.get("/", headers=cookie(READ_TOKEN))
    assert 200 == response.status_code
    scripts = SCRIPT_TAG_RE.findall(response.text)
    assert [' type="module" src="/ui/app.js"'] == scripts
    assert "<style" not in response.text
    assert " style=" not in response.text
    assert re.search(r"<[^>]*\son[a-z]+\s*=", response.text) is None  # no inline handlers
    assert_page_headers(response)


async def test_csp_forbids_inline_code_and_other_origins() -> None:
    """The policy allows only this origin and no inline script or style, and denies framing."""
    directives = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert "'self'" == directives["default-src"]
    assert "'self'" == directives["script-src"]
    assert "'self'" == directives["style-src"]
    assert "'self'" == directives["connect-src"]
    assert "'none'" == directives["frame-ancestors"]
    assert "unsafe" not in CONTENT_SECURITY_POLICY


async def test_stale_cookie_is_cleared_and_the_form_shown(app_client: httpx.AsyncClient) -> None:
    """A cookie that no longer reads (rotated token) gets the form, a 401 and a deletion."""
    response = await app_client.get("/", headers=cookie("old-token-0123456789abcdef0123"))
    assert 401 == response.status_code
    assert '<form method="post" action="/login"' in response.text
    assert "0" == set_cookies(response)[READ_COOKIE]["max-age"]


async def test_bad_query_token_does_not_touch_a_good_cookie(app_client: httpx.AsyncClient) -> None:
    """A mistyped `?token=` next to a valid cookie is refused without deleting the cookie."""
    response = await app_client.get(
        "/", params={"token": "typo-0123456789abcdef0123456789"}, headers=cookie(READ_TOKEN)
    )
    assert 401 == response.status_code
    assert {} == set_cookies(response)


async def test_posting_the_form_signs_in(app_client: httpx.AsyncClient) -> None:
    """POST /login with the read token (form-encoded, same origin) sets the cookie, 303 to `/`."""
    response = await app_client.post(
        "/login", data={"token": READ_TOKEN}, headers={"Origin": "http://testserver"}
    )
    assert 303 == response.status_code
    assert "/" == response.headers["location"]
    set_cookie = set_cookies(response)[READ_COOKIE]
    assert (READ_TOKEN, "True", "strict") == (
        set_cookie["value"],
        set_cookie["httponly"],
        set_cookie["samesite"].lower(),
    )


@pytest.mark.parametrize(
    ("data", "headers", "status"),
    [
        ({"token": "wrong-token-0123456789abcdef0123"}, {}, 401),
        ({"token": ""}, {}, 401),
        ({"token": INGEST_KEY}, {}, 401),
        ({"token": READ_TOKEN}, {"Origin": "https://evil.example"}, 403),
        ({"token": READ_TOKEN}, {"Origin": "null"}, 403),
        ({"token": READ_TOKEN}, {"Sec-Fetch-Site": "cross-site", "Origin": "null"}, 403),
        ({"token": READ_TOKEN}, {"Sec-Fetch-Site": "same-site"}, 403),
    ],
    ids=["wrong", "empty", "ingest-key", "cross-site", "opaque-origin", "fetch-cross", "sibling"],
)
async def test_failed_form_sign_in_sets_no_cookie(
    app_client: httpx.AsyncClient, data: dict[str, str], headers: dict[str, str], status: int
) -> None:
    """A wrong token, a non-read credential or a cross-site post never yields the cookie."""
    response = await app_client.post("/login", data=data, headers=headers)
    assert status == response.status_code
    assert {} == set_cookies(response)
    assert '<form method="post" action="/login"' in response.text


async def test_fetch_metadata_vouches_for_a_same_origin_post(
    app_client: httpx.AsyncClient,
) -> None:
    """Under `no-referrer` a browser sends `Origin: null`; `Sec-Fetch-Site` decides then."""
    response = await app_client.post(
        "/login",
        data={"token": READ_TOKEN},
        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
    )
    assert 303 == response.status_code
    assert READ_TOKEN == set_cookies(response)[READ_COOKIE]["value"]


async def test_token_as_json_body_is_not_a_sign_in(app_client: httpx.AsyncClient) -> None:
    """Only a form post signs in (a JSON body is not what the form sends)."""
    response = await app_client.post("/login", json={"token": READ_TOKEN})
    assert 401 == response.status_code
    assert {} == set_cookies(response)


async def test_oversized_form_is_refused(app_client: httpx.AsyncClient) -> None:
    """A sign-in body beyond 4 KiB is refused without parsing it."""
    response = await app_client.post("/login", data={"token": READ_TOKEN, "pad": "x" * 5000})
    assert 401 == response.status_code
    assert {} == set_cookies(response)


async def test_sign_out_deletes_the_cookie(app_client: httpx.AsyncClient) -> None:
    """POST /logout answers 303 to `/` and expires the cookie."""
    response = await app_client.post(
        "/logout", headers={**cookie(READ_TOKEN), "Origin": "http://testserver"}
    )
    assert 303 == response.status_code
    expired = set_cookies(response)[READ_COOKIE]
    assert ("0", "strict") == (expired["max-age"], expired["samesite"].lower())


async def test_read_api_works_with_the_cookie_from_sign_in(app_client: httpx.AsyncClient) -> None:
    """The cookie set by `/?token=` is what authenticates the dashboard's API calls."""
    signed_in = await app_client.get("/", params={"token": READ_TOKEN})
    value = set_cookies(signed_in)[READ_COOKIE]["value"]
    app_client.cookies.clear()  # send exactly what each request names
    with_cookie = await app_client.get("/v1/logs", headers=cookie(value))
    without = await app_client.get("/v1/logs")
    assert (200, 401) == (with_cookie.status_code, without.status_code)
    assert {"events": [], "next_cursor": None} == with_cookie.json()


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("views/tail.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
async def test_assets_are_served_with_their_types_and_revalidation(
    app_client: httpx.AsyncClient, name: str, media_type: str
) -> None:
    """Each asset has its own type, nosniff, an ETag with `no-cache`, and 304 on a match."""
    response = await app_client.get(f"/ui/{name}")
    assert 200 == response.status_code
    assert media_type == response.headers["content-type"]
    assert "nosniff" == response.headers["x-content-type-options"]
    assert "no-cache" == response.headers["cache-control"]
    assert (STATIC_DIR / name).read_bytes() == response.content
    again = await app_client.get(
        f"/ui/{name}", headers={"If-None-Match": f'W/{response.headers["etag"]}, "other"'}
    )
    assert (304, b"") == (again.status_code, again.content)


async def test_assets_need_no_token(app_client: httpx.AsyncClient) -> None:
    """The sign-in page uses the stylesheet, so assets (no data in them) are public."""
    response = await app_client.get("/ui/style.css")
    assert 200 == response.status_code


@pytest.mark.parametrize(
    "path",
    [
        "/ui/nope.js",
        "/ui/index.html",
        "/ui/login.html",
        "/ui/../dashboard.py",
        "/ui/%2e%2e/dashboard.py",
        "/ui/..%2fdashboard.py",
        "/ui/views/../../dashboard.py",
        "/ui/",
    ],
)
async def test_only_packaged_assets_are_served(app_client: httpx.AsyncClient, path: str) -> None:
    """Unknown names, the two pages and every traversal attempt are 404 JSON errors."""
    response = await app_client.get(path)
    assert 404 == response.status_code
    assert "application/json" == response.headers["content-type"]


def _module_graph() -> set[str]:
    """Every module reachable from app.js through static imports (relative to the dir)."""
    seen: set[str] = set()
    pending = ["app.js"]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        source = (STATIC_DIR / name).read_text(encoding="utf-8")
        base = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
        for target in IMPORT_RE.findall(source):
            assert target.startswith(("./", "../")), target
            parts: list[str] = [p for p in base.split("/") if p]
            for part in target.split("/"):
                if part == "..":
                    parts.pop()
                elif part != ".":
                    parts.append(part)
            pending.append("/".join(parts))
    return seen


async def test_every_imported_module_is_served(app_client: httpx.AsyncClient) -> None:
    """Every module app.js imports (transitively) is an asset, and every JS asset is used."""
    graph = _module_graph()
    served = {name for name in get_assets().names() if name.endswith(".js")}
    assert served == graph
    for name in sorted(graph):
        response = await app_client.get(f"/ui/{name}")
        assert (name, 200) == (name, response.status_code)


def test_dashboard_code_never_builds_html_from_strings() -> None:
    """No asset uses innerHTML-like sinks, eval, or loads anything from another origin."""
    sinks = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
        r"setAttribute\(\s*[\"']style|javascript:"
    )
    url = re.compile(r"https?://(?!www\.w3\.org/2000/svg)")
    offenders = []
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.suffix not in {".js", ".css", ".html", ".svg"}:
            continue
        text = path.read_text(encoding="utf-8")
        code = text if path.suffix != ".js" else re.sub(r"^\s*//.*$", "", text, flags=re.M)
        if path.suffix == ".js" and sinks.search(re.sub(r'"(?:innerHTML|outerHTML)"', "", code)):
            offenders.append(f"{path.name}: HTML sink")
        if url.search(code):
            offenders.append(f"{path.name}: external URL")
    assert [] == offenders
