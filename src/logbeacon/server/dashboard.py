"""The dashboard's pages: `GET /` (app shell or sign-in form), `POST /login`, `POST /logout`,
and `GET /ui/{path}` (its static ES modules, stylesheet and icon).

The dashboard is a handful of plain ES modules read from `static/dashboard/` and served by this
router: no bundler, no CDN, nothing fetched from another origin, so it works offline and under
a strict Content-Security-Policy (`default-src 'self'`, no inline script or style). All data
comes from the read APIs with the `logbeacon_token` cookie.

Signing in: the URL printed by `logbeacon serve` carries `?token=`; a valid one is answered
with the HttpOnly, SameSite=Strict cookie and a redirect to `/`, so the token leaves the
address bar and the browser history at once. Without a valid cookie, `/` shows a small form
that posts the token to `/login`. The assets themselves carry no data and are served without
a token, so the sign-in page can use the stylesheet.
"""

from __future__ import annotations

import functools
import hashlib
import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from logbeacon.server.auth import READ_COOKIE, ReadGrant, constant_time_in
from logbeacon.server.errors import ApiError
from logbeacon.server.state import get_state

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_DIR", "Asset", "Assets", "get_assets", "router"]

STATIC_DIR: Final = Path(__file__).with_name("static") / "dashboard"

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

# Headers of every dashboard response. `no-referrer` also matters: `/?token=` must never
# travel in a Referer header (the API middleware sets it as well).
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Referrer-Policy": "no-referrer",
}

# Served types by suffix; a file with any other suffix is not served at all. HTML is not
# served under /ui/: the two pages have one address each (`/`).
_MEDIA_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_APP_SHELL: Final = "index.html"
_LOGIN_PAGE: Final = "login.html"
_MESSAGE_SLOT: Final = "<!-- message -->"
_MAX_FORM_BYTES: Final = 4096
_MAX_TOKEN: Final = 512

_SIGNED_OUT: Final = "Your saved token is no longer valid. Paste a current read token."
_NOT_A_READ_TOKEN: Final = "That is not a read token of this server."  # noqa: S105 - a message
_CROSS_SITE: Final = "Sign-in requests must come from this dashboard's own page."


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file, read once; `etag` lets browsers revalidate instead of re-downloading."""

    body: bytes
    media_type: str
    etag: str


class Assets:
    """The dashboard directory, read into memory once (a few tens of KiB).

    Lookups go through a dict of the files found at start, so no request path can name
    anything outside the directory, whatever dots or slashes it holds.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, Asset] = {}
        for path in sorted(root.rglob("*")):
            media_type = _MEDIA_TYPES.get(path.suffix)
            if media_type is None or not path.is_file():
                continue
            body = path.read_bytes()
            digest = hashlib.sha256(body).hexdigest()[:20]
            name = path.relative_to(root).as_posix()
            self._files[name] = Asset(body, media_type, f'"{digest}"')
        self.shell = (root / _APP_SHELL).read_text(encoding="utf-8")
        self.login = (root / _LOGIN_PAGE).read_text(encoding="utf-8")

    def __contains__(self, name: str) -> bool:
        return name in self._files

    def get(self, name: str) -> Asset | None:
        return self._files.get(name)

    def names(self) -> list[str]:
        return sorted(self._files)


@functools.cache
def get_assets() -> Assets:
    """The packaged dashboard files (read on first use, then kept)."""
    return Assets(STATIC_DIR)


router = APIRouter(tags=["dashboard"], include_in_schema=False)


def _page(body: str, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    response = HTMLResponse(body, status_code=status, headers={**_PAGE_HEADERS, **(headers or {})})
    response.headers["Cache-Control"] = "no-store"
    return response


def _login_page(message: str | None, *, status: int, clear_cookie: bool = False) -> Response:
    """The sign-in form; `message` is one of this module's fixed texts, escaped anyway."""
    slot = f'<p class="login-error" role="alert">{html.escape(message)}</p>' if message else ""
    headers = {"WWW-Authenticate": 'Bearer realm="logbeacon"'} if status == 401 else None
    response = _page(
        get_assets().login.replace(_MESSAGE_SLOT, slot), status=status, headers=headers
    )
    if clear_cookie:
        _forget_cookie(response)
    return response


def _forget_cookie(response: Response) -> None:
    response.delete_cookie(READ_COOKIE, path="/", httponly=True, samesite="strict")


def _signed_in(request: Request, token: str) -> Response:
    """Set the token cookie and send the browser to the bare `/` (token out of the URL)."""
    response = RedirectResponse("/", status_code=303, headers=_PAGE_HEADERS)
    response.headers["Cache-Control"] = "no-store"
    return ReadGrant(token, secure=request.url.scheme == "https").apply(response)


def _is_read_token(request: Request, token: str) -> bool:
    return 0 < len(token) <= _MAX_TOKEN and constant_time_in(
        token, get_state(request).auth.read_tokens
    )


def _same_origin(request: Request) -> bool:
    """A form post from our own page (login CSRF defence; the cookie is SameSite=Strict too).

    Browsers say where a request comes from in `Sec-Fetch-Site`; older ones only in `Origin`
    (which is `null` under our `no-referrer` policy, hence Fetch Metadata first). A request
    with neither is not from a browser page (curl, scripts) and cannot ride on a victim's
    session, so it is let through.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin == f"{request.url.scheme}://{request.url.netloc}"


@router.get("/")
async def dashboard(request: Request) -> Response:
    """The app shell for a valid token (header, `?token=` or cookie), else the sign-in form."""
    auth = get_state(request).auth
    had_cookie = READ_COOKIE in request.cookies
    try:
        query_token = auth.read(request)
    except ApiError as exc:
        if exc.error == "missing_token":
            return _login_page(None, status=200)
        from_query = "token" in request.query_params
        message = _NOT_A_READ_TOKEN if from_query or exc.status == 403 else _SIGNED_OUT
        # A stale cookie is dropped, but a bad `?token=` never touches a good cookie.
        return _login_page(message, status=exc.status, clear_cookie=had_cookie and not from_query)
    if query_token is not None:
        return _signed_in(request, query_token)
    return _page(get_assets().shell)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check a token posted by the sign-in form; set the cookie and go to `/` if it reads."""
    if not _same_origin(request):
        return _login_page(_CROSS_SITE, status=403)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return _login_page(_NOT_A_READ_TOKEN, status=401)
    token = ""
    if content_type == "application/x-www-form-urlencoded":
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        token = (form.get("token") or [""])[0].strip()
    if not _is_read_token(request, token):
        return _login_page(_NOT_A_READ_TOKEN, status=401)
    return _signed_in(request, token)


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the token cookie and show the sign-in form."""
    if not _same_origin(request):
        return _login_page(_CROSS_SITE, status=403)
    response = RedirectResponse("/", status_code=303, headers=_PAGE_HEADERS)
    _forget_cookie(response)
    return response


@router.get("/ui/{name:path}")
async def asset(request: Request, name: str) -> Response:
    """A static file of the dashboard, revalidated by ETag (`no-cache`: upgrades show at once)."""
    found = get_assets().get(name)
    if found is None:
        raise ApiError(404, "not_found", "no such dashboard file")
    headers = {**_PAGE_HEADERS, "ETag": found.etag, "Cache-Control": "no-cache"}
    if _etag_matches(request.headers.get("if-none-match"), found.etag):
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)


def _etag_matches(header: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: `*` or any listed tag, compared weakly."""
    if not header:
        return False
    tags = [part.strip() for part in header.split(",")]
    return "*" in tags or etag in (tag.removeprefix("W/") for tag in tags)
