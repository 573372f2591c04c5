"""`GET /v1/client.js` and `GET /v1/client.d.ts`: the browser client, served by the server it
reports to (DESIGN.md §5), so a page needs one `<script src>` and no build step.

Pages on any origin load it, so it needs no token and says so to the browser:
`Cross-Origin-Resource-Policy: cross-origin` (pages with `Cross-Origin-Embedder-Policy`) and
`Access-Control-Allow-Origin: *` (`<script integrity=… crossorigin>`; the file is public). Its URL
carries no version, so it is cached briefly and revalidated by a strong ETag (a hash of the
bytes): a revalidation costs a `304` without a body, and a server upgrade reaches every page
within `max-age`.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.responses import Response

__all__ = ["CACHE_CONTROL", "Asset", "load_asset", "router"]

CACHE_CONTROL: Final = "public, max-age=300"
_MEDIA_TYPES: Final = {
    "client.js": "application/javascript; charset=utf-8",
    "client.d.ts": "text/plain; charset=utf-8",
}

router = APIRouter(tags=["browser client"])


@dataclass(frozen=True, slots=True)
class Asset:
    """One packaged file with what its responses need."""

    name: str
    body: bytes
    media_type: str
    etag: str

    def response(self, if_none_match: str | None) -> Response:
        """The file, or `304 Not Modified` when the client already has these bytes."""
        headers = {
            "ETag": self.etag,
            "Cache-Control": CACHE_CONTROL,
            "Cross-Origin-Resource-Policy": "cross-origin",
            "Access-Control-Allow-Origin": "*",
        }
        if _matches(if_none_match, self.etag):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


@functools.cache
def load_asset(name: str) -> Asset:
    """Read a file of `logbeacon/server/static` once (from the installed package)."""
    body = (files("logbeacon.server") / "static" / name).read_bytes()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    return Asset(name, body, _MEDIA_TYPES[name], etag)


def _matches(header: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: `*` or any listed tag, compared weakly (a `W/` prefix is ignored)."""
    if header is None:
        return False
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or etag in (tag.removeprefix("W/") for tag in tags)


def _responses(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": description,
            "content": {media_type: {"schema": {"type": "string"}}},
        },
        304: {"description": "Not modified: the ETag in `If-None-Match` is current"},
    }


# Documented here and read from the request directly: a header that fails validation would
# be a 422, and no If-None-Match value is invalid (an unknown one simply does not match).
_OPENAPI_EXTRA: Final = {
    "parameters": [
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "ETags from earlier answers; a match gives 304 without a body",
            "schema": {"type": "string"},
        }
    ]
}


@router.get(
    "/v1/client.js",
    summary="The browser client (no token needed)",
    response_class=Response,
    responses=_responses("application/javascript", "The script that defines window.LogBeacon"),
    openapi_extra=_OPENAPI_EXTRA,
)
async def client_js(request: Request) -> Response:
    return load_asset("client.js").response(request.headers.get("if-none-match"))


@router.get(
    "/v1/client.d.ts",
    summary="TypeScript declarations of the browser client (no token needed)",
    response_class=Response,
    responses=_responses("text/plain", "Declarations of window.LogBeacon"),
    openapi_extra=_OPENAPI_EXTRA,
)
async def client_dts(request: Request) -> Response:
    return load_asset("client.d.ts").response(request.headers.get("if-none-match"))
