"""Error analysis: what kind of failure this is, what to try, and which bug it belongs to.

Three answers for every error event:

- `category` — by exception *type* first, then by message. Types are matched by module and
  class name while walking the MRO, so optional libraries (httpx, openai, SQLAlchemy …) are
  recognised without being imported. Generic types (`ValueError`, `OSError`, a library's base
  error) only decide when the message says nothing more specific.
- `suggestions` — short, actionable next steps: type- or message-specific hints first, then
  the category's defaults.
- `fingerprint` — groups occurrences of the same bug: a hash of the type name, the category,
  the message with its variable parts (ids, numbers, UUIDs, quoted values, emails, URL
  queries) replaced by placeholders, and the innermost *in-app* frame (function name + file
  basename; no line numbers, so an edit above the bug keeps its group). It is sha256-based,
  so it is the same in every process and on every machine.

`analyze(exc)` works on a live exception; `analyze_error(error)` on an event's `error` object
(`type`, `message`, `stack` as Python traceback lines or a JavaScript stack), which is what
the server has for browser events. Both produce the same fingerprint for the same Python
exception. This module imports only the standard library: the server calls it per event.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "CATEGORIES",
    "ErrorAnalysis",
    "analyze",
    "analyze_error",
    "enrich",
    "normalize_message",
]

CATEGORIES: Final = (
    "timeout",
    "rate_limit",
    "authentication",
    "permission",
    "validation",
    "resource_exhaustion",
    "network",
    "llm_provider",
    "database",
    "not_found",
    "unknown",
)

_MAX_SUGGESTIONS: Final = 4
_MAX_NORMALIZED: Final = 500


@dataclass(frozen=True, slots=True)
class ErrorAnalysis:
    """The verdict on one error; `retryable` says whether retrying unchanged can succeed."""

    category: str
    suggestions: list[str] = field(default_factory=list)
    fingerprint: str = ""
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class _Verdict:
    category: str
    retryable: bool | None = None  # None: the category's default
    hint: str | None = None  # a type-specific suggestion shown first


@dataclass(frozen=True, slots=True)
class _Facts:
    """What the rules may look at: the same for a live exception and an error dict."""

    message: str
    status: int | None = None
    errno: int | None = None
    host: str | None = None


_Rule = _Verdict | Callable[[_Facts], _Verdict | None]

_RETRYABLE: Final = frozenset({"timeout", "rate_limit", "network", "llm_provider"})

_SUGGESTIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "timeout": (
        "Find the call that timed out (the top in-app frame) and check that dependency's "
        "latency and health.",
        "Retry with exponential backoff and jitter once the operation is idempotent.",
        "Raise the timeout only if the work is legitimately slow; otherwise set a deadline "
        "upstream.",
    ),
    "rate_limit": (
        "Back off and retry, honouring the Retry-After header when there is one.",
        "Cap concurrency (a semaphore or token bucket) below the provider's limit.",
        "Check the account's quota and billing; cache repeated calls.",
    ),
    "authentication": (
        "Check that the API key or token is set in this environment and is not expired or revoked.",
        "Confirm the credential belongs to the right account, project and base URL.",
        "Do not retry: fix the credential first.",
    ),
    "permission": (
        "The credential is valid but lacks access: check its scopes or roles and the "
        "resource's ACL.",
        "For files, check the owner and mode for the user the process runs as.",
    ),
    "validation": (
        "Log the offending input's shape (keys, types) where it entered and compare it with "
        "the expected schema.",
        "Validate at the boundary (request, file, LLM output) and fail there with a clear message.",
    ),
    "resource_exhaustion": (
        "Check memory, disk, open files and connection-pool usage at the time of the error.",
        "Process the data in smaller batches or stream it instead of loading it all at once.",
        "Raise the limit (pool size, ulimit, container memory) only after ruling out a leak.",
    ),
    "network": (
        "Check that the host is reachable from this machine: DNS, firewall, proxy, TLS "
        "certificates.",
        "Verify the service URL and port for this environment and that the service is up.",
        "Retry transient failures with backoff.",
    ),
    "llm_provider": (
        "Check the provider's status page; retry 5xx or overloaded errors with backoff or "
        "fall back to another model.",
        "Log the model, token counts and the provider's request id to report the failure.",
    ),
    "database": (
        "Check that the database is reachable and its schema is migrated for this release.",
        "Keep transactions short and retry lock or deadlock errors; for constraint errors "
        "look for duplicate or missing rows.",
    ),
    "not_found": (
        "Check the id, path or key that was looked up and where it came from (stale id, "
        "wrong environment, typo).",
        "If a missing value is expected, handle it explicitly (a 404, a default).",
    ),
    "unknown": (
        "Open the top in-app frame of the stack and reproduce with the same input; the "
        "event's correlation ids lead to it.",
        "Group by fingerprint to see how often it happens and since which release.",
    ),
}

# --------------------------------------------------------------------------- hints

_HINT_NONE = (
    "A value was None/undefined where an object was expected: check what the previous step "
    "returned."
)
_HINT_CONTEXT = (
    "The prompt exceeds the model's context window: trim history, summarise or chunk the "
    "input, or use a model with a larger window."
)
_HINT_SQLITE_LOCK = (
    "SQLite is locked by another writer: enable WAL, keep write transactions short and set a "
    "busy timeout."
)
_HINT_NOT_JSON = (
    "The payload was not JSON (often an HTML error page): log the status code and the first "
    "bytes of the body."
)
_HINT_FETCH = (
    "The browser could not reach the server: check CORS, mixed content (http on an https "
    "page), blockers, and that the API is up."
)
_HINT_POOL = (
    "The connection pool is exhausted: look for connections that are never returned, or "
    "size the pool for the concurrency you run."
)

# Message-based hints, independent of the category (a TypeError about None is still "unknown").
_MESSAGE_HINTS: Final = (
    (
        re.compile(r"'NoneType' object|of undefined|of null\b|undefined is not|null is not", re.I),
        _HINT_NONE,
    ),
    (re.compile(r"database is locked", re.I), _HINT_SQLITE_LOCK),
    (
        re.compile(r"unexpected token .* in json|is not valid json|expecting value: line", re.I),
        _HINT_NOT_JSON,
    ),
    (re.compile(r"failed to fetch|networkerror when attempting|load failed", re.I), _HINT_FETCH),
)

# --------------------------------------------------------------------------- status codes

_LLM_PACKAGES: Final = frozenset({"openai", "anthropic", "groq", "litellm", "mistralai", "cohere"})
_LLM_HOSTS: Final = (
    "openai.com",
    "anthropic.com",
    "openai.azure.com",
    "generativelanguage.googleapis.com",
    "api.mistral.ai",
    "api.groq.com",
    "api.cohere.com",
    "openrouter.ai",
)
_DB_PACKAGES: Final = frozenset(
    {
        "sqlite3",
        "sqlalchemy",
        "psycopg",
        "psycopg2",
        "asyncpg",
        "aiosqlite",
        "pymysql",
        "MySQLdb",
        "pymongo",
        "motor",
        "redis",
        "clickhouse_connect",
        "peewee",
    }
)
_HTTP_PACKAGES: Final = frozenset({"httpx", "requests", "urllib3", "aiohttp", "httpcore"})

_CONTEXT_LENGTH_RE: Final = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|prompt is too long"
    r"|reduce the length of the messages",
    re.I,
)


_STATUS_CATEGORIES: Final = {
    400: "validation",
    401: "authentication",
    403: "permission",
    404: "not_found",
    408: "timeout",
    413: "validation",
    422: "validation",
    429: "rate_limit",
    504: "timeout",
}


def _from_status(status: int | None, facts: _Facts, *, provider: bool) -> _Verdict | None:
    """Map an HTTP status to a category; 5xx is the provider's fault for LLM APIs."""
    if status is None:
        return None
    if provider and status in (400, 413) and _CONTEXT_LENGTH_RE.search(facts.message):
        return _Verdict("llm_provider", retryable=False, hint=_HINT_CONTEXT)
    if status in _STATUS_CATEGORIES:
        return _Verdict(_STATUS_CATEGORIES[status])
    if status >= 500:
        return _Verdict("llm_provider" if provider else "network")
    return None


def _is_llm_host(host: str | None) -> bool:
    if not host:
        return False
    return any(host == known or host.endswith("." + known) for known in _LLM_HOSTS)


def _http_status_rule(facts: _Facts) -> _Verdict | None:
    return _from_status(facts.status, facts, provider=_is_llm_host(facts.host))


def _provider_status_rule(facts: _Facts) -> _Verdict | None:
    return _from_status(facts.status, facts, provider=True)


def _provider_bad_request(facts: _Facts) -> _Verdict:
    if _CONTEXT_LENGTH_RE.search(facts.message):
        return _Verdict("llm_provider", retryable=False, hint=_HINT_CONTEXT)
    return _Verdict("validation")


# By name, because the numbers differ between Linux, macOS and Windows.
_ERRNO_NAMES: Final = {
    "ENOSPC": "resource_exhaustion",
    "EMFILE": "resource_exhaustion",
    "ENFILE": "resource_exhaustion",
    "ENOMEM": "resource_exhaustion",
    "EDQUOT": "resource_exhaustion",
    "ETIMEDOUT": "timeout",
    "ECONNREFUSED": "network",
    "ECONNRESET": "network",
    "EHOSTUNREACH": "network",
    "ENETUNREACH": "network",
    "EACCES": "permission",
    "EPERM": "permission",
    "ENOENT": "not_found",
}
_ERRNO_CATEGORIES: Final = {
    getattr(errno, name): category
    for name, category in _ERRNO_NAMES.items()
    if hasattr(errno, name)
}


def _oserror_rule(facts: _Facts) -> _Verdict | None:
    category = _ERRNO_CATEGORIES.get(facts.errno) if facts.errno is not None else None
    return _Verdict(category) if category else None


# --------------------------------------------------------------------------- type rules

_V = _Verdict
# (top-level package, class name) -> rule. Built-in types are under "builtins".
_TYPE_RULES: Final[dict[tuple[str, str], _Rule]] = {
    ("builtins", "TimeoutError"): _V("timeout"),
    ("builtins", "MemoryError"): _V("resource_exhaustion"),
    ("builtins", "RecursionError"): _V(
        "resource_exhaustion",
        hint="Unbounded recursion: check the base case, or turn the recursion into a loop.",
    ),
    ("builtins", "PermissionError"): _V("permission"),
    ("builtins", "FileNotFoundError"): _V("not_found"),
    ("builtins", "NotADirectoryError"): _V("not_found"),
    ("builtins", "ModuleNotFoundError"): _V(
        "not_found",
        hint="A module is missing: install the package (or the right extra) in this environment.",
    ),
    ("builtins", "KeyError"): _V(
        "not_found",
        hint="A mapping had no such key: log the available keys or use .get() with a default.",
    ),
    ("builtins", "IndexError"): _V(
        "not_found",
        hint="A sequence was shorter than expected: check for empty results before indexing.",
    ),
    ("builtins", "ConnectionError"): _V("network"),
    ("builtins", "UnicodeError"): _V("validation"),
    ("socket", "gaierror"): _V("network"),
    ("ssl", "SSLError"): _V("network"),
    ("ssl", "SSLCertVerificationError"): _V("network"),
    ("urllib", "HTTPError"): _http_status_rule,
    ("urllib", "URLError"): _V("network"),
    ("http", "HTTPException"): _V("network"),
    ("json", "JSONDecodeError"): _V("validation", hint=_HINT_NOT_JSON),
    # httpx (all exported with __module__ == "httpx")
    ("httpx", "TimeoutException"): _V("timeout"),
    ("httpx", "ConnectTimeout"): _V("timeout"),
    ("httpx", "ReadTimeout"): _V("timeout"),
    ("httpx", "WriteTimeout"): _V("timeout"),
    ("httpx", "PoolTimeout"): _V("resource_exhaustion", retryable=True, hint=_HINT_POOL),
    ("httpx", "ConnectError"): _V("network"),
    ("httpx", "NetworkError"): _V("network"),
    ("httpx", "RemoteProtocolError"): _V("network"),
    ("httpx", "ProxyError"): _V("network"),
    ("httpx", "HTTPStatusError"): _http_status_rule,
    # requests
    ("requests", "ConnectTimeout"): _V("timeout"),
    ("requests", "ReadTimeout"): _V("timeout"),
    ("requests", "Timeout"): _V("timeout"),
    ("requests", "HTTPError"): _http_status_rule,
    ("requests", "ConnectionError"): _V("network"),
    ("requests", "JSONDecodeError"): _V("validation", hint=_HINT_NOT_JSON),
    # aiohttp / starlette / fastapi
    ("aiohttp", "ServerTimeoutError"): _V("timeout"),
    ("aiohttp", "ClientResponseError"): _http_status_rule,
    ("aiohttp", "ClientConnectionError"): _V("network"),
    ("starlette", "HTTPException"): _http_status_rule,
    ("fastapi", "HTTPException"): _http_status_rule,
    ("fastapi", "RequestValidationError"): _V("validation"),
    # validation libraries
    ("pydantic_core", "ValidationError"): _V("validation"),
    ("pydantic", "ValidationError"): _V("validation"),
    ("jsonschema", "ValidationError"): _V("validation"),
    ("marshmallow", "ValidationError"): _V("validation"),
    # auth
    ("jwt", "ExpiredSignatureError"): _V(
        "authentication", hint="The token has expired: refresh it or sign in again."
    ),
    ("jwt", "InvalidTokenError"): _V("authentication"),
    # databases
    ("sqlalchemy", "TimeoutError"): _V("resource_exhaustion", retryable=True, hint=_HINT_POOL),
    ("sqlalchemy", "NoResultFound"): _V("not_found"),
    ("sqlalchemy", "IntegrityError"): _V(
        "database",
        retryable=False,
        hint="A constraint failed: check for a duplicate key or a missing referenced row.",
    ),
    ("sqlalchemy", "OperationalError"): _V("database", retryable=True),
    ("sqlalchemy", "SQLAlchemyError"): _V("database"),
    ("sqlite3", "IntegrityError"): _V(
        "database",
        retryable=False,
        hint="A constraint failed: check for a duplicate key or a missing referenced row.",
    ),
    ("sqlite3", "OperationalError"): _V("database", retryable=True),
    ("sqlite3", "Error"): _V("database"),
    ("psycopg", "OperationalError"): _V("database", retryable=True),
    ("psycopg2", "OperationalError"): _V("database", retryable=True),
    ("redis", "ConnectionError"): _V("network"),
    ("redis", "TimeoutError"): _V("timeout"),
    # agent frameworks
    ("langgraph", "GraphRecursionError"): _V(
        "resource_exhaustion",
        retryable=False,
        hint="The graph hit its recursion limit: check conditional edges for a loop that "
        "never ends, or raise recursion_limit if the graph is legitimately long.",
    ),
    ("langchain_core", "OutputParserException"): _V(
        "llm_provider",
        retryable=True,
        hint="The model's output did not parse: log the raw output, tighten the prompt, or "
        "use structured output or a retrying parser.",
    ),
    ("litellm", "ContextWindowExceededError"): _V(
        "llm_provider", retryable=False, hint=_HINT_CONTEXT
    ),
    ("litellm", "Timeout"): _V("timeout"),
}

# Stainless-generated LLM SDKs (openai, anthropic, groq …) share these class names.
_PROVIDER_RULES: Final[dict[str, _Rule]] = {
    "APITimeoutError": _V("timeout"),
    "APIConnectionError": _V("network"),
    "RateLimitError": _V("rate_limit"),
    "AuthenticationError": _V("authentication"),
    "PermissionDeniedError": _V("permission"),
    "NotFoundError": _V("not_found"),
    "BadRequestError": _provider_bad_request,
    "UnprocessableEntityError": _V("validation"),
    "RequestTooLargeError": _provider_bad_request,
    "ConflictError": _V("llm_provider"),
    "InternalServerError": _V("llm_provider"),
    "ServiceUnavailableError": _V("llm_provider"),
    "OverloadedError": _V("llm_provider"),
    "DeadlineExceededError": _V("timeout"),
    "ContextWindowExceededError": _V("llm_provider", retryable=False, hint=_HINT_CONTEXT),
    "LengthFinishReasonError": _V(
        "llm_provider",
        retryable=False,
        hint="The completion hit max_tokens: raise max_tokens or ask for shorter output.",
    ),
    "ContentFilterFinishReasonError": _V(
        "llm_provider",
        retryable=False,
        hint="The provider's content filter stopped the completion: review the prompt and input.",
    ),
    "APIStatusError": _provider_status_rule,
}
for _pkg in sorted(_LLM_PACKAGES):
    for _name, _rule in _PROVIDER_RULES.items():
        _TYPE_RULES.setdefault((_pkg, _name), _rule)

# Types that only decide when the message is not more specific.
_WEAK_TYPES: Final[dict[tuple[str, str], _Rule]] = {
    ("builtins", "ValueError"): _V("validation"),
    ("builtins", "OSError"): _oserror_rule,
}

# Names known without a module (browser events, `type` sent without a package): built-ins
# first, then library names that mean the same everywhere, then browser-only names.
# sqlite3's plain `Error` is left out: in a browser event `Error` is JavaScript's base class.
_BY_NAME: Final[dict[str, _Rule]] = {}
for (_pkg, _name), _rule in sorted(_TYPE_RULES.items(), key=lambda kv: kv[0][0] != "builtins"):
    if _name != "Error":
        _BY_NAME.setdefault(_name, _rule)
_BY_NAME.update(
    {
        "ChunkLoadError": _V(
            "network",
            hint="A JavaScript chunk failed to load, often after a deploy replaced it: "
            "reload; keep old assets for a while after deploys.",
        ),
        "QuotaExceededError": _V(
            "resource_exhaustion", hint="Browser storage is full: clear old entries."
        ),
    }
)
_WEAK_BY_NAME: Final = {name: rule for (_pkg, name), rule in _WEAK_TYPES.items()}

# --------------------------------------------------------------------------- message rules


def _status_re(codes: str) -> str:
    """An HTTP status only when cued ("status 429", "Error code: 429", "HTTP 503"), so that
    "processed 500 rows" is not a server error."""
    return rf"\b(?:status|code|http|error)\W{{0,3}}(?:code\W{{0,3}})?(?:{codes})\b"


_MESSAGE_RULES: Final = (
    (
        re.compile(
            r"out of memory|\boom(?:killed)?\b|cannot allocate memory|no space left"
            r"|disk (?:is )?full|disk quota|too many open files|pool (?:is )?exhausted"
            r"|pool limit|maximum recursion depth|maximum call stack",
            re.I,
        ),
        _V("resource_exhaustion"),
    ),
    (
        re.compile(
            r"rate[ _-]?limit|too many requests|quota|throttl|resource[ _]exhausted|"
            + _status_re("429"),
            re.I,
        ),
        _V("rate_limit"),
    ),
    (
        re.compile(r"\btimed? ?out|timeout|deadline[ _]exceeded|" + _status_re("408|504"), re.I),
        _V("timeout"),
    ),
    (
        re.compile(
            r"unauthori[sz]ed|invalid[ _](?:api[ _-]?key|token|credentials)"
            r"|incorrect api key|authentication (?:failed|required|error)|not authenticated"
            r"|(?:token|jwt|signature) (?:has )?expired"
            r"|api[ _]key .*(?:must be set|missing|not set)|missing (?:api[ _]key|credentials)|"
            + _status_re("401"),
            re.I,
        ),
        _V("authentication"),
    ),
    (
        re.compile(
            r"forbidden|permission denied|access denied|not permitted"
            r"|insufficient permissions?|" + _status_re("403"),
            re.I,
        ),
        _V("permission"),
    ),
    (_CONTEXT_LENGTH_RE, _V("llm_provider", retryable=False, hint=_HINT_CONTEXT)),
    (
        re.compile(
            r"overloaded|model .*(?:does not exist|not found)|content (?:filter|policy)", re.I
        ),
        _V("llm_provider"),
    ),
    (
        re.compile(
            r"database is locked|no such table|no such column|deadlock|integrity ?error"
            r"|unique constraint|foreign key constraint|duplicate key"
            r"|relation .* does not exist",
            re.I,
        ),
        _V("database"),
    ),
    (
        re.compile(
            r"connection (?:refused|reset|aborted|closed|error)|failed to fetch"
            r"|network ?error|name or service not known|getaddrinfo|name resolution"
            r"|no route to host|network is unreachable|certificate verify failed|\bssl\b"
            r"|broken pipe|econnrefused|econnreset|enotfound|load failed"
            r"|server disconnected|remote end closed|bad gateway|service unavailable"
            r"|internal server error|" + _status_re(r"5\d\d"),
            re.I,
        ),
        _V("network"),
    ),
    (
        re.compile(
            r"validation error|invalid (?:input|data|value|format|json|request|argument)"
            r"|field required|\bschema\b|unexpected token .* in json|is not valid json|"
            + _status_re("400|422"),
            re.I,
        ),
        _V("validation"),
    ),
    (
        re.compile(r"not found|no such file|does not exist|cannot find|" + _status_re("404"), re.I),
        _V("not_found"),
    ),
)


def _from_message(message: str) -> _Verdict | None:
    for pattern, verdict in _MESSAGE_RULES:
        if pattern.search(message):
            return verdict
    return None


def _apply(rule: _Rule, facts: _Facts) -> _Verdict | None:
    return rule if isinstance(rule, _Verdict) else rule(facts)


def _classify(keys: Sequence[tuple[str, str]], facts: _Facts, *, bare: bool) -> _Verdict:
    """Strong type rules, then the message, then weak type and package rules, then unknown.

    `keys` are (top-level package, class name) pairs, most derived first; with `bare`, a key
    whose package is unknown ("") is matched by name alone.
    """
    weak: _Verdict | None = None
    for package, name in keys:
        rule = _TYPE_RULES.get((package, name)) or (_BY_NAME.get(name) if bare else None)
        if rule is not None and (verdict := _apply(rule, facts)) is not None:
            return verdict
        weak_rule = _WEAK_TYPES.get((package, name)) or (_WEAK_BY_NAME.get(name) if bare else None)
        if weak is None and weak_rule is not None:
            weak = _apply(weak_rule, facts)
    by_message = _from_message(facts.message)
    if by_message is not None:
        return by_message
    if weak is not None:
        return weak
    package = keys[0][0] if keys else ""
    if package in _LLM_PACKAGES:
        return _Verdict("llm_provider")
    if package in _DB_PACKAGES:
        return _Verdict("database")
    if package in _HTTP_PACKAGES:
        return _Verdict("network")
    return _Verdict("unknown")


def _suggestions(verdict: _Verdict, message: str) -> list[str]:
    out: list[str] = []
    if verdict.hint:
        out.append(verdict.hint)
    out.extend(hint for pattern, hint in _MESSAGE_HINTS if pattern.search(message))
    out.extend(_SUGGESTIONS[verdict.category])
    return list(dict.fromkeys(out))[:_MAX_SUGGESTIONS]


def _retryable(verdict: _Verdict) -> bool:
    return verdict.retryable if verdict.retryable is not None else verdict.category in _RETRYABLE


# --------------------------------------------------------------------------- normalisation

_URL_RE: Final = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")
_EMAIL_RE: Final = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_UUID_RE: Final = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
# A quote opens/closes only at a word boundary, so the apostrophe in "can't" is not a quote.
_QUOTED_RE: Final = re.compile(
    r"(?<![\w])'[^'\n]*'(?![\w])|(?<![\w])\"[^\"\n]*\"(?![\w])|`[^`\n]*`"
)
_HEX_RE: Final = re.compile(r"\b0x[0-9a-fA-F]+\b")
# Tokens of 6+ letters/digits/_/- with at least one digit: hex ids, job ids, dates, versions.
_ID_RE: Final = re.compile(r"(?<![\w-])(?=[\w-]*\d)[A-Za-z0-9][\w-]{5,}(?![\w-])")
_NUM_RE: Final = re.compile(r"\d+")
_SPACE_RE: Final = re.compile(r"\s+")


def _url_without_query(match: re.Match[str]) -> str:
    url = match.group(0).rstrip(".,;:)]}")
    tail = match.group(0)[len(url) :]
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<url>" + tail
    return f"{parts.scheme}://{parts.netloc}{parts.path}{tail}"


def normalize_message(message: str, type_name: str = "") -> str:
    """The message with its variable parts replaced, so one bug's occurrences compare equal.

    URLs keep scheme, host and path (query and fragment dropped); emails, UUIDs, quoted
    values, 0x-hex, id-like tokens (6+ characters with a digit) and numbers become
    placeholders. A leading "Uncaught " and "<type>: " (as browsers prefix) are dropped.
    """
    text = message.strip()
    text = text.removeprefix("Uncaught ")
    if type_name and text.startswith(type_name + ":"):
        text = text[len(type_name) + 1 :]
    text = _URL_RE.sub(_url_without_query, text)
    text = _EMAIL_RE.sub("<email>", text)
    text = _UUID_RE.sub("<uuid>", text)
    text = _QUOTED_RE.sub("<str>", text)
    text = _HEX_RE.sub("<hex>", text)
    text = _ID_RE.sub("<id>", text)
    text = _NUM_RE.sub("<num>", text)
    return _SPACE_RE.sub(" ", text).strip()[:_MAX_NORMALIZED]


# --------------------------------------------------------------------------- frames

# site-packages, the standard library (POSIX and Windows layouts), interpreter pseudo-files,
# browser extensions and bundler internals are not the application's code.
_LIBRARY_PATH_RE: Final = re.compile(
    r"[/\\](?:site|dist)-packages[/\\]|[/\\]lib[/\\]python\d+(?:\.\d+)?t?[/\\]|[/\\]Lib[/\\]"
    r"|^<|[/\\]node_modules[/\\]|^(?:chrome|moz|safari(?:-web)?)-extension:"
    r"|^webpack/bootstrap|^native$|^\[native code\]$|^<anonymous>$"
)
# logbeacon's own frames (editable installs live outside site-packages).
_OWN_DIR: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# `File "app.py", line 3, in load` as `traceback` prints it, optionally followed by
# `: <source line>` as the SDK's `error.stack` carries it.
_PY_FRAME_RE: Final = re.compile(r'^\s*File "(?P<path>[^"]+)", line \d+, in (?P<func>[^\s:]+)')
_V8_FRAME_RE: Final = re.compile(
    r"^\s*at (?:(?P<func>.+?) \((?P<loc1>.+?)\)|(?P<loc2>[^ ()]+))\s*$"
)
_GECKO_FRAME_RE: Final = re.compile(r"^\s*(?P<func>[^@]*)@(?P<loc>\S+)\s*$")
_LINE_COL_RE: Final = re.compile(r"(?::\d+){1,2}$")
# Content hashes in bundle names (main.3f2a1b9c.js, index-Bx3kZq9a.js) change every build.
_BUNDLE_HASH_RE: Final = re.compile(r"[.-](?=[A-Za-z0-9]*\d)[A-Za-z0-9_]{8,}(?=\.[a-z]+$)")


def _is_library(path: str) -> bool:
    return bool(_LIBRARY_PATH_RE.search(path)) or path.startswith(_OWN_DIR)


def _basename(location: str) -> str:
    location = _LINE_COL_RE.sub("", location).split("?", 1)[0].split("#", 1)[0]
    name = re.split(r"[/\\]", location.rstrip("/\\"))[-1]
    return _BUNDLE_HASH_RE.sub("", name)


def _clean_js_function(func: str) -> str:
    func = func.strip()
    for prefix in ("async ", "new "):
        func = func.removeprefix(prefix)
    return func or "<anonymous>"


def _pick_frame(frames: Sequence[tuple[str, str]]) -> str:
    """`function@basename` of the innermost in-app frame (frames innermost first).

    Falls back to the innermost frame when none is in-app, and to "" without frames.
    """
    for path, func in frames:
        if not _is_library(path):
            return f"{func}@{_basename(path)}"
    if frames:
        path, func = frames[0]
        return f"{func}@{_basename(path)}"
    return ""


def _traceback_frames(tb: TracebackType | None) -> list[tuple[str, str]]:
    frames: list[tuple[str, str]] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, code.co_name))
        tb = tb.tb_next
    frames.reverse()
    return frames


def _stack_lines(stack: object) -> list[str]:
    if isinstance(stack, str):
        return stack.splitlines()
    if isinstance(stack, list | tuple):
        lines: list[str] = []
        for item in stack:
            lines.extend(str(item).splitlines())
        return lines
    return []


def _stack_frames(stack: object) -> list[tuple[str, str]]:
    """Frames (innermost first) from Python traceback lines or a V8/Gecko/WebKit stack."""
    lines = _stack_lines(stack)
    python = [m for line in lines if (m := _PY_FRAME_RE.match(line))]
    if python:
        # A Python traceback lists the innermost frame last; with chained exceptions the
        # last block is the exception's own traceback.
        return [(m["path"], m["func"]) for m in reversed(python)]
    frames: list[tuple[str, str]] = []
    for line in lines:
        # Only frames with a line number count: "(<anonymous>)" and "(index 0)" are not code.
        if v8 := _V8_FRAME_RE.match(line):
            location, func = v8["loc1"] or v8["loc2"], v8["func"] or ""
        elif gecko := _GECKO_FRAME_RE.match(line):
            location, func = gecko["loc"], gecko["func"]
        else:
            continue
        if _LINE_COL_RE.search(location):
            frames.append((_LINE_COL_RE.sub("", location), _clean_js_function(func)))
    return frames


def _fingerprint(type_name: str, category: str, message: str, frame: str) -> str:
    material = "\x1f".join((type_name, category, normalize_message(message, type_name), frame))
    return hashlib.sha256(material.encode("utf-8", "replace")).hexdigest()[:16]


# --------------------------------------------------------------------------- public API


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return ""


def _safe_attr(obj: object, name: str) -> Any:
    """getattr that survives properties which raise (httpx's `.request` when unset)."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _status_of(exc: BaseException) -> int | None:
    for holder in (exc, _safe_attr(exc, "response")):
        if holder is None:
            continue
        for name in ("status_code", "status", "code"):
            value = _safe_attr(holder, name)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
    return None


def _host_of(exc: BaseException) -> str | None:
    request = _safe_attr(exc, "request")
    url = _safe_attr(request, "url") if request is not None else None
    host = _safe_attr(url, "host") if url is not None else None
    return host if isinstance(host, str) else None


def _mro_keys(cls: type[BaseException]) -> list[tuple[str, str]]:
    return [
        (str(getattr(klass, "__module__", "") or "").split(".", 1)[0], klass.__name__)
        for klass in cls.__mro__
        if klass not in (BaseException, Exception, object)
    ]


def analyze(exc: BaseException) -> ErrorAnalysis:
    """Categorise a live exception, suggest next steps, and fingerprint it for grouping."""
    message = _safe_str(exc)
    error_number = _safe_attr(exc, "errno")
    facts = _Facts(
        message=message,
        status=_status_of(exc),
        errno=error_number if isinstance(error_number, int) else None,
        host=_host_of(exc),
    )
    verdict = _classify(_mro_keys(type(exc)), facts, bare=False)
    frame = _pick_frame(_traceback_frames(exc.__traceback__))
    return ErrorAnalysis(
        category=verdict.category,
        suggestions=_suggestions(verdict, message),
        fingerprint=_fingerprint(type(exc).__name__, verdict.category, message, frame),
        retryable=_retryable(verdict),
    )


_TYPE_PREFIX_RE: Final = re.compile(r"^(?:Uncaught )?(?P<type>[A-Za-z_][\w.]*(?:Error|Exception)):")


def analyze_error(error: Mapping[str, Any]) -> ErrorAnalysis:
    """The same analysis from an event's `error` object (`type`, `message`, `stack`).

    Used where there is no exception object: browser events and events from other
    processes. `type` may be bare (`TypeError`) or dotted (`httpx.ConnectError`); when it is
    missing, a `"SomeError: …"` prefix of the message is used. An optional integer
    `status`/`status_code` counts as the HTTP status.
    """
    message = error.get("message")
    message = message if isinstance(message, str) else ("" if message is None else str(message))
    raw_type = error.get("type")
    type_text = raw_type.strip() if isinstance(raw_type, str) else ""
    if not type_text and (prefix := _TYPE_PREFIX_RE.match(message)):
        type_text = prefix["type"]
    module, _, name = type_text.rpartition(".")
    status = next(
        (
            v
            for v in (error.get("status"), error.get("status_code"))
            if isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599
        ),
        None,
    )
    keys = [(module.split(".", 1)[0], name)] if name else []
    verdict = _classify(keys, _Facts(message=message, status=status), bare=True)
    frame = _pick_frame(_stack_frames(error.get("stack")))
    return ErrorAnalysis(
        category=verdict.category,
        suggestions=_suggestions(verdict, message),
        fingerprint=_fingerprint(name, verdict.category, message, frame),
        retryable=_retryable(verdict),
    )


_ENRICHED_FIELDS: Final = ("category", "suggestions", "fingerprint")


def enrich(exc: BaseException | None, error: dict[str, Any], event: dict[str, Any]) -> None:
    """SDK error-enricher hook: fill `error.category/suggestions/fingerprint` if absent.

    Values already present (set by the caller or an earlier enricher) are kept. `event` is
    part of the hook's signature; the analysis needs only the exception or the error object.
    """
    del event
    if all(key in error for key in _ENRICHED_FIELDS):
        return
    analysis = analyze(exc) if exc is not None else analyze_error(error)
    error.setdefault("category", analysis.category)
    error.setdefault("suggestions", list(analysis.suggestions))
    error.setdefault("fingerprint", analysis.fingerprint)
