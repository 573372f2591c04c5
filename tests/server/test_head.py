"""RequestHead answers header, query and cookie questions as Starlette's Request does."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from logbeacon.server._head import RequestHead


def scope(headers: list[tuple[bytes, bytes]], query: bytes = b"", client: Any = None) -> Any:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/logs",
        "headers": headers,
        "query_string": query,
        "client": client,
    }


HEADERS = [
    (b"content-type", b"application/json"),
    (b"authorization", b"Bearer first"),
    (b"authorization", b"Bearer second"),
    (b"x-caf\xe9", b"caf\xe9"),
    (b"cookie", b"a=1; diag=tok.en; b=2"),
]


@pytest.mark.parametrize(
    "name", ["content-type", "authorization", "x-caf\xe9", "cookie", "traceparent"]
)
def test_headers_match_starlette(name: str) -> None:
    s = scope(HEADERS)
    assert Request(s).headers.get(name) == RequestHead.from_scope(s).headers.get(name)


@pytest.mark.parametrize(
    ("query", "name"),
    [
        (b"key=a&key=b", "key"),
        (b"key=", "key"),
        (b"other=1", "key"),
        (b"", "key"),
        (b"key=%2Fx%20y+z", "key"),
        (b"token=t&key=k", "token"),
    ],
)
def test_query_params_match_starlette(query: bytes, name: str) -> None:
    s = scope([], query)
    assert Request(s).query_params.get(name) == RequestHead.from_scope(s).query_param(name)


def test_cookie_and_peer() -> None:
    s = scope(HEADERS, client=("127.0.0.1", 5))
    head = RequestHead.from_scope(s)
    assert Request(s).cookies.get("diag") == head.cookie("diag") == "tok.en"
    assert head.cookie("missing") is None
    assert RequestHead.from_scope(scope([])).cookie("diag") is None
    assert "127.0.0.1" == head.host
    assert RequestHead.from_scope(scope([])).host is None
