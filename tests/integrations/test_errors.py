"""Error analysis: categories, suggestions, retryability, fingerprints, and the SDK hook.

Exceptions are real instances: httpx errors built with a real `httpx.Request`/`Response`,
requests, sqlite3, pydantic, PyJWT and LangGraph errors raised by those libraries, a refused
connection on 127.0.0.1. openai and anthropic are not installed in this environment, so their
exceptions are stand-in classes carrying the same module and class names (and hierarchy),
which is all the analysis looks at.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import runpy
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pydantic
import pytest
import requests

from logbeacon.integrations.errors import (
    CATEGORIES,
    ErrorAnalysis,
    analyze,
    analyze_error,
    enrich,
    normalize_message,
)
from logbeacon.sdk import get_logger
from logbeacon.sdk.hooks import add_error_enricher
from logbeacon.sdk.processors import error_from_exception
from logbeacon.testing import capture_logs

HEX16 = re.compile(r"[0-9a-f]{16}")


def raised(exc: BaseException) -> BaseException:
    """`exc` after being raised and caught here, so it carries a traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def caught(fn: Callable[[], object]) -> BaseException:
    """The exception `fn()` raises."""
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("expected an exception")


# --------------------------------------------------------------------------- stand-ins


def _class(module: str, name: str, *bases: type[BaseException]) -> type[Exception]:
    return type(name, bases or (Exception,), {"__module__": module})


def _provider_classes(module: str) -> dict[str, type[Exception]]:
    """The Stainless SDK hierarchy (openai, anthropic) under `module`'s name."""
    api_error = _class(module, "APIError")
    status_error = _class(module, "APIStatusError", api_error)
    connection = _class(module, "APIConnectionError", api_error)
    classes = {
        "APIError": api_error,
        "APIStatusError": status_error,
        "APIConnectionError": connection,
        "APITimeoutError": _class(module, "APITimeoutError", connection),
    }
    for name in (
        "BadRequestError",
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "RateLimitError",
        "InternalServerError",
        "OverloadedError",
    ):
        classes[name] = _class(module, name, status_error)
    return classes


OPENAI = _provider_classes("openai")
ANTHROPIC = _provider_classes("anthropic")


def _status_error(cls: type[Exception], status: int, message: str) -> Exception:
    exc = cls(message)
    exc.status_code = status  # type: ignore[attr-defined]
    return exc


# --------------------------------------------------------------------------- real errors

REQUEST = httpx.Request("POST", "https://api.example.com/v1/users/42?token=abc")


def _httpx_status(status: int, url: str = "https://api.example.com/v1/items") -> Exception:
    request = httpx.Request("GET", url)
    response = httpx.Response(status, request=request)
    return caught(response.raise_for_status)


def _requests_status(status: int) -> Exception:
    response = requests.Response()
    response.status_code = status
    response.url = "https://api.example.com/x"
    response.reason = "error"
    return caught(response.raise_for_status)


def _refused_connection() -> Exception:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return caught(lambda: socket.create_connection(("127.0.0.1", port), timeout=2))


def _sqlite_missing_table() -> Exception:
    connection = sqlite3.connect(":memory:")
    try:
        return caught(lambda: connection.execute("select * from missing"))
    finally:
        connection.close()


def _sqlite_duplicate() -> Exception:
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("create table t (id integer primary key)")
        connection.execute("insert into t values (1)")
        return caught(lambda: connection.execute("insert into t values (1)"))
    finally:
        connection.close()


class _Model(pydantic.BaseModel):
    age: int


def _expired_jwt() -> Exception:
    token = jwt.encode({"exp": int(time.time()) - 60}, "k" * 32, algorithm="HS256")
    return caught(lambda: jwt.decode(token, "k" * 32, algorithms=["HS256"]))


async def _slow() -> None:
    await asyncio.sleep(1)


def _asyncio_timeout() -> Exception:
    return caught(lambda: asyncio.run(asyncio.wait_for(_slow(), 0.001)))


def _graph_recursion() -> Exception:
    from langgraph.errors import GraphRecursionError

    return raised(GraphRecursionError("Recursion limit of 25 reached"))


CASES: list[tuple[str, Callable[[], BaseException], str]] = [
    ("builtin TimeoutError", lambda: raised(TimeoutError("slow")), "timeout"),
    ("asyncio.wait_for timeout", _asyncio_timeout, "timeout"),
    ("httpx.ReadTimeout", lambda: raised(httpx.ReadTimeout("read", request=REQUEST)), "timeout"),
    ("httpx.ConnectError", lambda: raised(httpx.ConnectError("no", request=REQUEST)), "network"),
    ("httpx 429", lambda: _httpx_status(429), "rate_limit"),
    ("httpx 401", lambda: _httpx_status(401), "authentication"),
    ("httpx 403", lambda: _httpx_status(403), "permission"),
    ("httpx 404", lambda: _httpx_status(404), "not_found"),
    ("httpx 422", lambda: _httpx_status(422), "validation"),
    ("httpx 503", lambda: _httpx_status(503), "network"),
    (
        "httpx 500 from an LLM API",
        lambda: _httpx_status(500, "https://api.openai.com/v1/chat/completions"),
        "llm_provider",
    ),
    (
        "requests.ConnectionError",
        lambda: raised(requests.exceptions.ConnectionError("x")),
        "network",
    ),
    ("requests.ReadTimeout", lambda: raised(requests.exceptions.ReadTimeout("x")), "timeout"),
    ("requests.ConnectTimeout", lambda: raised(requests.exceptions.ConnectTimeout("x")), "timeout"),
    ("requests 429", lambda: _requests_status(429), "rate_limit"),
    ("openai.RateLimitError", lambda: raised(OPENAI["RateLimitError"]("slow down")), "rate_limit"),
    ("openai.APITimeoutError", lambda: raised(OPENAI["APITimeoutError"]("t")), "timeout"),
    (
        "openai.AuthenticationError",
        lambda: raised(OPENAI["AuthenticationError"]("no")),
        "authentication",
    ),
    ("openai.APIConnectionError", lambda: raised(OPENAI["APIConnectionError"]("c")), "network"),
    ("openai.BadRequestError", lambda: raised(OPENAI["BadRequestError"]("bad")), "validation"),
    (
        "openai.BadRequestError context length",
        lambda: raised(
            OPENAI["BadRequestError"]("This model's maximum context length is 8192 tokens")
        ),
        "llm_provider",
    ),
    (
        "openai.InternalServerError",
        lambda: raised(OPENAI["InternalServerError"]("oops")),
        "llm_provider",
    ),
    (
        "openai.APIStatusError 502",
        lambda: raised(_status_error(OPENAI["APIStatusError"], 502, "bad gateway")),
        "llm_provider",
    ),
    ("anthropic.RateLimitError", lambda: raised(ANTHROPIC["RateLimitError"]("r")), "rate_limit"),
    (
        "anthropic.OverloadedError",
        lambda: raised(ANTHROPIC["OverloadedError"]("o")),
        "llm_provider",
    ),
    (
        "anthropic.PermissionDeniedError",
        lambda: raised(ANTHROPIC["PermissionDeniedError"]("p")),
        "permission",
    ),
    ("sqlite3 no such table", _sqlite_missing_table, "database"),
    ("sqlite3 IntegrityError", _sqlite_duplicate, "database"),
    ("pydantic ValidationError", lambda: caught(lambda: _Model(age="x")), "validation"),
    ("jwt ExpiredSignatureError", _expired_jwt, "authentication"),
    ("MemoryError", lambda: raised(MemoryError()), "resource_exhaustion"),
    (
        "OSError ENOSPC",
        lambda: raised(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))),
        "resource_exhaustion",
    ),
    ("LangGraph recursion limit", _graph_recursion, "resource_exhaustion"),
    ("PermissionError", lambda: raised(PermissionError(13, "Permission denied")), "permission"),
    ("FileNotFoundError", lambda: caught(Path("/nonexistent/x.txt").read_text), "not_found"),
    ("KeyError", lambda: caught(lambda: {}["user_id"]), "not_found"),
    ("ConnectionRefusedError on 127.0.0.1", _refused_connection, "network"),
    ("json.JSONDecodeError", lambda: caught(lambda: json.loads("<html>")), "validation"),
    ("plain TypeError", lambda: caught(lambda: len(5)), "unknown"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("label", "make", "category"), CASES, ids=[c[0] for c in CASES])
def test_category_from_real_exception(
    label: str, make: Callable[[], BaseException], category: str
) -> None:
    """Each kind of failure lands in its category by exception type (and status code)."""
    assert category == analyze(make()).category


def test_every_category_is_reachable_and_known() -> None:
    """The test table covers every category, and analysis only returns declared categories."""
    produced = {analyze(make()).category for _, make, _ in CASES}
    assert set(CATEGORIES) == produced


MESSAGE_CASES = [
    (RuntimeError("Rate limit reached for requests"), "rate_limit"),
    (RuntimeError("You exceeded your current quota"), "rate_limit"),
    (Exception("Request timed out after 30s"), "timeout"),
    (Exception("rpc error: DEADLINE_EXCEEDED"), "timeout"),
    (ValueError("Invalid API key provided"), "authentication"),
    (RuntimeError("401 Unauthorized"), "authentication"),
    (RuntimeError("403 Forbidden"), "permission"),
    (RuntimeError("This model's maximum context length is 8192 tokens"), "llm_provider"),
    (RuntimeError("connect ECONNREFUSED 10.0.0.5:5432: connection refused"), "network"),
    (RuntimeError("Request failed with status code 502"), "network"),
    (RuntimeError("CUDA out of memory"), "resource_exhaustion"),
    (RuntimeError('relation "users" does not exist'), "database"),
    (RuntimeError("Error code: 404 - model missing"), "not_found"),
    (ValueError("age must be positive"), "validation"),
    (Exception("processed 500 rows, then stopped"), "unknown"),
    (Exception("something odd happened"), "unknown"),
]


@pytest.mark.parametrize(("exc", "category"), MESSAGE_CASES, ids=[str(c[0]) for c in MESSAGE_CASES])
def test_category_from_message_when_type_is_generic(exc: Exception, category: str) -> None:
    """Generic exception types are categorised by message; bare numbers are not statuses."""
    assert category == analyze(raised(exc)).category


def test_retryable_follows_the_failure_kind() -> None:
    """Transient failures are retryable; credentials, constraints and context length are not."""
    verdicts = {
        "timeout": analyze(raised(TimeoutError())).retryable,
        "rate_limit": analyze(raised(OPENAI["RateLimitError"]("r"))).retryable,
        "auth": analyze(raised(OPENAI["AuthenticationError"]("a"))).retryable,
        "locked": analyze(raised(sqlite3.OperationalError("database is locked"))).retryable,
        "duplicate": analyze(_sqlite_duplicate()).retryable,
        "context": analyze(
            raised(OPENAI["BadRequestError"]("maximum context length exceeded"))
        ).retryable,
    }
    expected = {
        "timeout": True,
        "rate_limit": True,
        "auth": False,
        "locked": True,
        "duplicate": False,
        "context": False,
    }
    assert expected == verdicts


def test_suggestions_are_short_specific_and_unique() -> None:
    """Suggestions start with the type's hint, then the category's, at most four, no repeats."""
    analysis = analyze(caught(lambda: {}["user_id"]))
    assert ".get()" in analysis.suggestions[0]
    assert 2 <= len(analysis.suggestions) <= 4
    assert len(set(analysis.suggestions)) == len(analysis.suggestions)
    locked = analyze(raised(sqlite3.OperationalError("database is locked")))
    assert "WAL" in locked.suggestions[0]
    context = analyze(raised(OPENAI["BadRequestError"]("maximum context length is 8192")))
    assert "context window" in context.suggestions[0]


def test_analysis_is_a_plain_dataclass() -> None:
    """`analyze` returns an ErrorAnalysis with a 16-hex fingerprint and string suggestions."""
    analysis = analyze(raised(ValueError("x")))
    assert isinstance(analysis, ErrorAnalysis)
    assert HEX16.fullmatch(analysis.fingerprint)
    assert all(isinstance(s, str) and s for s in analysis.suggestions)


# --------------------------------------------------------------------------- fingerprints


def load_user(user_id: int, request_id: str, email: str) -> None:
    """A bug whose message carries variable ids."""
    raise LookupError(
        f"user {user_id} (request {request_id}, token 'abc{user_id}', {email}) not found at "
        f"https://api.example.com/users/{user_id}?trace={request_id} addr {hex(id(email))}"
    )


def load_order(user_id: int, request_id: str, email: str) -> None:
    """The same message raised from a different function: a different bug."""
    raise LookupError(
        f"user {user_id} (request {request_id}, token 'abc{user_id}', {email}) not found at "
        f"https://api.example.com/users/{user_id}?trace={request_id} addr {hex(id(email))}"
    )


def test_fingerprint_equal_for_same_bug_with_different_ids() -> None:
    """Numbers, UUIDs, quoted values, emails, URL queries and addresses do not split a group."""
    first = analyze(caught(lambda: load_user(17, str(uuid.uuid4()), "ann@example.com")))
    second = analyze(caught(lambda: load_user(90210, str(uuid.uuid4()), "bob@test.org")))
    assert first.fingerprint == second.fingerprint


def test_fingerprint_differs_by_raising_function() -> None:
    """The innermost in-app frame (function + file) is part of the fingerprint."""
    args = (17, "r-1", "ann@example.com")
    assert (
        analyze(caught(lambda: load_user(*args))).fingerprint
        != analyze(caught(lambda: load_order(*args))).fingerprint
    )


def test_fingerprint_differs_by_type() -> None:
    """Two exception types with the same message from the same place are different bugs."""

    def fail(kind: type[Exception]) -> None:
        raise kind("user 5 missing")

    assert (
        analyze(caught(lambda: fail(KeyError))).fingerprint
        != analyze(caught(lambda: fail(ValueError))).fingerprint
    )


def test_fingerprint_differs_by_http_status_behind_the_same_message_shape() -> None:
    """A 401 and a 404 from the same call group apart (the category is part of the hash)."""
    assert analyze(_httpx_status(401)).fingerprint != analyze(_httpx_status(404)).fingerprint


def _compile_app(blank_lines: int) -> Callable[[], None]:
    source = "\n" * blank_lines + textwrap.dedent(
        """
        def handler():
            raise ValueError("bad order 42")
        """
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, "/srv/app/orders.py", "exec"), namespace)
    return namespace["handler"]  # type: ignore[no-any-return]


def test_fingerprint_ignores_line_numbers() -> None:
    """Code added above the raise (moving it down) keeps the fingerprint."""
    assert (
        analyze(caught(_compile_app(0))).fingerprint
        == analyze(caught(_compile_app(30))).fingerprint
    )


def parse_config_a(text: str) -> object:
    """Caller A of a stdlib function that raises deep inside the stdlib."""
    return json.loads(text)


def parse_config_b(text: str) -> object:
    """Caller B of the same stdlib function."""
    return json.loads(text)


def test_fingerprint_skips_library_frames() -> None:
    """Stdlib frames are skipped: the in-app caller decides, so two callers differ."""
    a = analyze(caught(lambda: parse_config_a("{oops")))
    b = analyze(caught(lambda: parse_config_b("{oops")))
    again = analyze(caught(lambda: parse_config_a("{broken!")))
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == again.fingerprint


def test_fingerprint_matches_between_exception_and_its_sdk_error_dict() -> None:
    """`analyze_error` on the SDK's error object gives the same fingerprint as `analyze`."""
    exc = caught(lambda: load_user(3, "r-9", "c@d.io"))
    assert analyze(exc).fingerprint == analyze_error(error_from_exception(exc)).fingerprint
    as_traceback = {
        "type": "LookupError",
        "message": str(exc),
        "stack": traceback.format_exception(exc),
    }
    assert analyze(exc).fingerprint == analyze_error(as_traceback).fingerprint


_SCRIPT = """
from logbeacon.integrations.errors import analyze

def charge_card(order_id):
    raise RuntimeError(f"payment for order {order_id} failed: connection reset")

def main(order_id):
    try:
        charge_card(order_id)
    except RuntimeError as exc:
        return analyze(exc).fingerprint

if __name__ == "__main__":
    import sys
    print(main(int(sys.argv[1])))
"""


def test_fingerprint_is_stable_across_processes(tmp_path: Path) -> None:
    """Two interpreters with different hash seeds and this one agree on the fingerprint."""
    script = tmp_path / "billing.py"
    script.write_text(_SCRIPT)
    outputs = []
    for seed, order_id in (("1", "101"), ("2", "202")):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, str(script), order_id],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        )
        outputs.append(done.stdout.strip())
    here = runpy.run_path(str(script))["main"](303)
    assert [here, here] == outputs


def test_error_analysis_imports_no_optional_library() -> None:
    """Importing the module (which the server does per event) loads no optional library."""
    code = (
        "import sys, logbeacon.integrations.errors\n"
        "print(sorted(m for m in ('httpx', 'requests', 'pydantic', 'sqlalchemy', 'openai',"
        " 'psutil', 'fastapi', 'langgraph') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "[]" == done.stdout.strip()


NORMALIZE_CASES = [
    ("user 42 not found", "user <num> not found"),
    ("id 6f1c2e4a-1b2c-4d5e-8f90-123456789abc", "id <uuid>"),
    ("job 6929c97b45fa3c355f84ba2d failed", "job <id> failed"),
    ("object at 0x7f3a2b1c", "object at <hex>"),
    ("mail ann@example.com bounced", "mail <email> bounced"),
    ("KeyError 'user_id'", "KeyError <str>"),
    ('field "email" missing', "field <str> missing"),
    ("can't parse", "can't parse"),
    (
        "GET https://api.x.io/v1/items?page=2&key=k#f failed",
        "GET https://api.x.io/v<num>/items failed",
    ),
    ("Uncaught TypeError: x is undefined", "x is undefined"),
    ("  many   spaces\n here ", "many spaces here"),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZE_CASES, ids=[c[0] for c in NORMALIZE_CASES])
def test_normalize_message(raw: str, expected: str) -> None:
    """Variable parts of messages become placeholders; the rest is kept."""
    assert expected == normalize_message(raw, "TypeError")


# --------------------------------------------------------------------------- error dicts

CHROME_STACK = """TypeError: Cannot read properties of undefined (reading 'x')
    at renderCard (https://app.example.com/static/js/main.3f2a1b9c.js:12:345)
    at Array.map (<anonymous>)
    at CardList (https://app.example.com/static/js/main.3f2a1b9c.js:40:17)
    at https://app.example.com/static/js/vendor.js:1:2"""


def _browser_error(stack: str, reading: str = "x") -> dict[str, Any]:
    return {
        "type": "TypeError",
        "message": f"Cannot read properties of undefined (reading '{reading}')",
        "stack": stack,
    }


def test_analyze_error_on_browser_type_error() -> None:
    """A browser TypeError is `unknown` with the None/undefined hint and a fingerprint."""
    analysis = analyze_error(_browser_error(CHROME_STACK))
    assert "unknown" == analysis.category
    assert "None/undefined" in analysis.suggestions[0]
    assert HEX16.fullmatch(analysis.fingerprint)
    assert analysis.retryable is False


def test_browser_fingerprint_survives_rebuilds_and_different_values() -> None:
    """A new bundle hash, other line numbers or another property name keep the group."""
    rebuilt = (
        CHROME_STACK.replace("3f2a1b9c", "77aa11bb")
        .replace(":12:345", ":80:2")
        .replace(":40:17", ":99:1")
    )
    assert (
        analyze_error(_browser_error(CHROME_STACK)).fingerprint
        == analyze_error(_browser_error(rebuilt, reading="name")).fingerprint
    )


def test_browser_fingerprint_uses_the_innermost_frame() -> None:
    """A different innermost function is a different bug."""
    other = CHROME_STACK.replace("at renderCard", "at renderHeader")
    assert (
        analyze_error(_browser_error(CHROME_STACK)).fingerprint
        != analyze_error(_browser_error(other)).fingerprint
    )


def test_gecko_stack_and_type_from_message_prefix() -> None:
    """Firefox stacks are parsed, and a missing type is read from a "XError:" prefix."""
    firefox = "renderCard@https://app.example.com/static/js/main.3f2a1b9c.js:12:345\n" + (
        "CardList@https://app.example.com/static/js/main.3f2a1b9c.js:40:17"
    )
    chrome_like = analyze_error(
        {
            "message": "TypeError: Cannot read properties of undefined (reading 'x')",
            "stack": firefox,
        }
    )
    assert chrome_like.fingerprint == analyze_error(_browser_error(firefox)).fingerprint


def test_analyze_error_categories_from_dicts() -> None:
    """Error dicts are categorised by bare or dotted type name, status and message."""
    found = {
        "fetch": analyze_error({"type": "TypeError", "message": "Failed to fetch"}).category,
        "dotted": analyze_error({"type": "httpx.ConnectError", "message": "x"}).category,
        "bare": analyze_error({"type": "RateLimitError", "message": "x"}).category,
        "status": analyze_error({"type": "HTTPError", "message": "x", "status": 401}).category,
        "js base": analyze_error({"type": "Error", "message": "boom"}).category,
        "empty": analyze_error({}).category,
    }
    expected = {
        "fetch": "network",
        "dotted": "network",
        "bare": "rate_limit",
        "status": "authentication",
        "js base": "unknown",
        "empty": "unknown",
    }
    assert expected == found


# --------------------------------------------------------------------------- SDK hook


@pytest.fixture
def with_enricher() -> Iterator[None]:
    """Register `enrich` as an error enricher (the SDK is configured by the conftest)."""
    remove = add_error_enricher(enrich)
    yield
    remove()


def fail_payment() -> None:
    """An in-app function that fails."""
    raise TimeoutError("payment 881 timed out")


@pytest.mark.usefixtures("with_enricher")
def test_enrich_fills_error_fields_through_the_sdk_hook() -> None:
    """An error logged with exc_info gets category, suggestions and fingerprint."""
    exc = caught(fail_payment)
    with capture_logs() as logs:
        get_logger("billing").error("payment_failed", exc_info=exc)
    error = logs[0]["error"]
    analysis = analyze(exc)
    assert ("timeout", analysis.suggestions, analysis.fingerprint) == (
        error["category"],
        error["suggestions"],
        error["fingerprint"],
    )


@pytest.mark.usefixtures("with_enricher")
def test_enrich_keeps_values_already_present() -> None:
    """A category the caller set survives; missing fields are filled from the error dict."""
    with capture_logs() as logs:
        get_logger("web").error(
            "window_error",
            error={"type": "TypeError", "message": "Failed to fetch", "category": "custom"},
        )
    error = logs[0]["error"]
    assert "custom" == error["category"]
    assert (
        analyze_error({"type": "TypeError", "message": "Failed to fetch"}).fingerprint
        == (error["fingerprint"])
    )
    assert error["suggestions"]


def test_enrich_without_exception_uses_the_error_dict() -> None:
    """Called directly with exc=None, `enrich` analyses the dict and leaves the event alone."""
    error: dict[str, Any] = {"type": "TimeoutError", "message": "t"}
    event: dict[str, Any] = {"event": "x"}
    enrich(None, error, event)
    assert ("timeout", {"event": "x"}) == (error["category"], event)
