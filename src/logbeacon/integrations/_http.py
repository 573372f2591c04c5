"""ASGI plumbing shared by the web integrations: types, header reading, route templates.

Nothing here imports Starlette or FastAPI: the correlation middleware must work around any
ASGI application, so framework details are read from the scope by duck typing and only
when the framework is already loaded (`sys.modules`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final, TypeAlias

__all__ = [
    "UNMATCHED_ROUTE",
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "header_values",
    "route_template",
]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED_ROUTE: Final = "<unmatched>"
"""The route logged when no route matched: a raw path could carry ids, tokens or e-mails."""

_PARAM_RE: Final = re.compile(r"{([^}:]+)(?::[^}]*)?}")
_MAX_HEADER_VALUE: Final = 8192


def header_values(scope: Scope, name: bytes) -> list[str]:
    """Every value of header `name` (lowercase bytes), in order, decoded as latin-1.

    Header names are compared case-insensitively even though ASGI servers lowercase them,
    because a hand-built scope (tests, other servers) may not. Values longer than 8 KiB are
    replaced by an empty string: no valid id is that long, and they must not be copied around.
    """
    found: list[str] = []
    for raw_name, raw_value in _headers(scope):
        if raw_name.lower() == name:
            found.append(raw_value.decode("latin-1") if len(raw_value) <= _MAX_HEADER_VALUE else "")
    return found


def _headers(scope: Scope) -> Iterable[tuple[bytes, bytes]]:
    headers = scope.get("headers")
    return headers if headers is not None else ()


def route_template(scope: Scope, entry_root_path: str) -> str:
    """The route template that served a request (`/users/{user_id}`), read after routing.

    Starlette records the matched route in `scope["route"]`; FastAPI 0.16x keeps included
    routers unflattened and records the full template of such a route separately, which is
    preferred when present. A mounted sub-application extends `root_path` with the concrete
    mount prefix; that prefix is prepended to the route's template, with each segment that is
    the value of a mount's path parameter put back as `{name}`, so `/orgs/{org}/...` mounts
    do not leak ids. A request that reached a mount but no route inside it yields
    `<mount>/{path}`; one that matched nothing at all yields `"<unmatched>"`.
    """
    root_path = scope.get("root_path", "")
    prefix = root_path[len(entry_root_path) :] if root_path.startswith(entry_root_path) else ""
    route = scope.get("route")
    if route is None or _is_mount(route):
        # No route, or the final route is a Mount (static files, a plain ASGI app, or a
        # sub-app that matched nothing): a grown root_path is the mount's own path.
        if prefix:
            return _templatize_prefix(prefix, scope, used=set()) + "/{path}"
        return UNMATCHED_ROUTE
    template = _effective_template(scope) or _route_format(route)
    if template is None:
        return UNMATCHED_ROUTE
    if not prefix:
        return template
    used = set(_PARAM_RE.findall(template))
    return _templatize_prefix(prefix, scope, used=used) + template


def _effective_template(scope: Scope) -> str | None:
    fastapi_scope = scope.get("fastapi")
    if not isinstance(fastapi_scope, dict):
        return None
    context = fastapi_scope.get("effective_route_context")
    path_format = getattr(context, "path_format", None)
    return path_format if isinstance(path_format, str) and path_format else None


def _route_format(route: object) -> str | None:
    path_format = getattr(route, "path_format", None)
    if isinstance(path_format, str) and path_format:
        return path_format
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return _PARAM_RE.sub(lambda m: "{" + m.group(1) + "}", path)
    return None


def _is_mount(route: object) -> bool:
    routing = sys.modules.get("starlette.routing")
    return routing is not None and isinstance(route, routing.Mount)


def _templatize_prefix(prefix: str, scope: Scope, *, used: set[str]) -> str:
    """Replace path segments of a concrete mount prefix that are values of mount parameters."""
    if not prefix:
        return ""
    params = scope.get("path_params")
    if not isinstance(params, dict):
        return prefix
    by_value = {str(v): k for k, v in params.items() if k not in used and k != "path"}
    if not by_value:
        return prefix
    segments = prefix.split("/")
    return "/".join("{" + by_value[s] + "}" if s and s in by_value else s for s in segments)
