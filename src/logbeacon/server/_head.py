"""What the ingest path reads of a request's head, decoded once into plain dicts.

Starlette's `Headers` scans the raw header list for every lookup and raises (and catches) a
`KeyError` for each absent name. The ingest path asks for about a dozen names per request,
most of them absent (credentials, signatures, forwarding, correlation, diagnostics), and on a
single-event POST that was a visible share of the server's time. One pass over the raw list
answers all of them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import cookie_parser

__all__ = ["RequestHead"]


class RequestHead:
    """Headers (first value of each name, lower-case), peer address and query of a request."""

    __slots__ = ("headers", "host", "query")

    def __init__(self, headers: dict[str, str], host: str | None, query: bytes) -> None:
        self.headers = headers
        self.host = host
        self.query = query

    @classmethod
    def from_scope(cls, scope: Any) -> RequestHead:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            if name not in headers:  # the first one, as `Headers.get` answers
                headers[name] = raw_value.decode("latin-1")
        client = scope.get("client")
        return cls(headers, client[0] if client else None, scope.get("query_string") or b"")

    def query_param(self, name: str) -> str | None:
        """The last value of a query parameter, as Starlette's `QueryParams.get` answers."""
        if not self.query:
            return None
        found = None
        for key, value in parse_qsl(self.query.decode("latin-1"), keep_blank_values=True):
            if key == name:
                found = value
        return found

    def cookie(self, name: str) -> str | None:
        raw = self.headers.get("cookie")
        if raw is None:
            return None
        return cookie_parser(raw).get(name)
