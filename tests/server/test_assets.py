"""`GET /v1/client.js` and `/v1/client.d.ts`: served without a token, cached by ETag, small."""

from __future__ import annotations

import gzip
import re
from importlib.resources import files

from logbeacon.server.assets import CACHE_CONTROL, load_asset
from tests.server.conftest import BROWSER_KEY, ORIGIN, READ_TOKEN, Harness, HarnessFactory

SIZE_BUDGET = 6 * 1024  # bytes of client.js after `collapse_js` (comments and whitespace out)
OPTIONS = {
    "endpoint",
    "key",
    "sessionId",
    "release",
    "environment",
    "service",
    "flushInterval",
    "maxBatch",
}
API = {"init", "log", "watchEventSource", "flush"}

_WORD = re.compile(r"[A-Za-z0-9_$\\]")
_TOKEN = re.compile(r"[A-Za-z0-9_$.]+|\S")
# After these characters a `/` starts a regular expression literal, not a division.
_BEFORE_REGEX = "(,=:[!&|?{};+-*%<>~^"


def collapse_js(source: str) -> str:
    """Remove comments and the whitespace JavaScript does not need, and nothing else.

    A conservative stand-in for a minifier (no renaming, no rewriting): strings, template
    literals and regular expressions are copied verbatim, a space is kept between two word
    characters, and a line break is kept wherever automatic semicolon insertion could care.
    The browser suite runs the result, so a mistake here fails a test instead of flattering
    the size.
    """
    out: list[str] = []
    space = newline = False
    i, end = 0, len(source)

    def emit(token: str) -> None:
        nonlocal space, newline
        if out and (space or newline):
            last, first = out[-1][-1], token[0]
            if newline and last not in "{;,([":
                out.append("\n")
            elif (_WORD.match(last) and _WORD.match(first)) or (last == first and last in "+-"):
                out.append(" ")
        space = newline = False
        out.append(token)

    while i < end:
        char = source[i]
        if char in " \t\r":
            space, i = True, i + 1
        elif char == "\n":
            newline, i = True, i + 1
        elif source.startswith("//", i):
            stop = source.find("\n", i)
            i = end if stop < 0 else stop
        elif source.startswith("/*", i):
            i, space = source.index("*/", i + 2) + 2, True
        elif char in "\"'`":
            j = i + 1
            while source[j] != char:
                j += 2 if source[j] == "\\" else 1
            emit(source[i : j + 1])
            i = j + 1
        elif char == "/" and (not out or out[-1][-1] in _BEFORE_REGEX):
            j, in_class = i + 1, False
            while in_class or source[j] != "/":
                if source[j] == "\\":
                    j += 1
                elif source[j] in "[]":
                    in_class = source[j] == "["
                j += 1
            j += 1
            while j < end and source[j].isalpha():
                j += 1
            emit(source[i:j])
            i = j
        else:
            match = _TOKEN.match(source, i)
            assert match is not None
            emit(match.group())
            i = match.end()
    return "".join(out)


def client_source() -> str:
    return (files("logbeacon.server") / "static" / "client.js").read_text(encoding="utf-8")


async def test_client_js_is_served_without_a_token(make_harness: HarnessFactory) -> None:
    """/v1/client.js answers anyone with the packaged script as JavaScript, cacheable."""
    async with (
        make_harness(
            read_tokens=(READ_TOKEN,), browser_key=BROWSER_KEY, allowed_origins=(ORIGIN,)
        ) as harness,
        harness.client() as client,
    ):
        response = await client.get("/v1/client.js")
    assert 200 == response.status_code
    assert "application/javascript; charset=utf-8" == response.headers["content-type"]
    assert client_source().encode() == response.content
    assert CACHE_CONTROL == response.headers["cache-control"]
    assert "cross-origin" == response.headers["cross-origin-resource-policy"]
    assert "nosniff" == response.headers["x-content-type-options"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["etag"])


async def test_matching_etag_gets_304_without_a_body(harness: Harness) -> None:
    """If-None-Match with the current ETag (also weak, in a list, or `*`) answers 304."""
    async with harness.client() as client:
        etag = (await client.get("/v1/client.js")).headers["etag"]
        answers = [
            await client.get("/v1/client.js", headers={"If-None-Match": value})
            for value in (etag, f'"other", W/{etag}', "*", '"stale"')
        ]
    assert [304, 304, 304, 200] == [r.status_code for r in answers]
    assert [b"", b"", b""] == [r.content for r in answers[:3]]
    assert [etag] * 4 == [r.headers["etag"] for r in answers]
    assert CACHE_CONTROL == answers[0].headers["cache-control"]


async def test_declarations_are_served(harness: Harness) -> None:
    """/v1/client.d.ts serves the TypeScript declarations with their own ETag."""
    async with harness.client() as client:
        response = await client.get("/v1/client.d.ts")
        script = await client.get("/v1/client.js")
    assert 200 == response.status_code
    assert "text/plain; charset=utf-8" == response.headers["content-type"]
    assert b"interface LogBeaconApi" in response.content
    assert response.headers["etag"] != script.headers["etag"]


async def test_client_js_carries_cors_for_allowed_and_other_origins(
    make_harness: HarnessFactory,
) -> None:
    """Any page may load it (ACAO *); an allowed origin gets its own origin back, as for the API."""
    async with (
        make_harness(browser_key=BROWSER_KEY, allowed_origins=(ORIGIN,)) as harness,
        harness.client() as client,
    ):
        allowed = await client.get("/v1/client.js", headers={"Origin": ORIGIN})
        other = await client.get("/v1/client.js", headers={"Origin": "https://evil.example"})
    assert (ORIGIN, "*") == (
        allowed.headers["access-control-allow-origin"],
        other.headers["access-control-allow-origin"],
    )


def test_assets_load_from_the_installed_package() -> None:
    """Both files are package data of logbeacon.server (shipped in the wheel with the code)."""
    script, declarations = load_asset("client.js"), load_asset("client.d.ts")
    assert script.body == client_source().encode()
    assert declarations.body.startswith(b"// TypeScript declarations")


def test_client_js_stays_under_its_size_budget() -> None:
    """client.js with comments and spare whitespace removed stays under 6 KiB."""
    collapsed = collapse_js(client_source()).encode()
    gzipped = len(gzip.compress(collapsed, mtime=0))
    assert len(collapsed) < SIZE_BUDGET, f"{len(collapsed)} bytes ({gzipped} gzipped)"


def test_collapse_keeps_strings_and_regular_expressions() -> None:
    """The size measure never edits literals: '//' in strings and '/ /' in regexes survive."""
    source = 'const a = "x // y";\n// gone\nconst b = s.replace(/ \\/ [/]/g, "");  /* gone */\n'
    assert 'const a="x // y";const b=s.replace(/ \\/ [/]/g,"");' == collapse_js(source)


def test_client_js_uses_no_syntax_newer_than_es2019() -> None:
    """No optional chaining, nullish coalescing or logical assignment (ES2020+) in client.js."""
    code = collapse_js(client_source())
    without_literals = re.sub(r'"(?:\\.|[^"\\])*"', '""', code)
    assert [] == re.findall(r"\?\.(?!\d)|\?\?|\|\|=|&&=", without_literals)


def test_declarations_cover_the_client_api_and_options() -> None:
    """client.d.ts declares exactly the methods and init options client.js implements."""
    declarations = load_asset("client.d.ts").body.decode()
    api = re.search(r"interface LogBeaconApi \{(.*?)\n\}", declarations, re.S)
    options = re.search(r"interface LogBeaconOptions \{(.*?)\n\}", declarations, re.S)
    assert api is not None
    assert options is not None
    assert API == set(re.findall(r"^\s+(\w+)\(", api.group(1), re.M))
    assert OPTIONS == set(re.findall(r"^\s+(\w+)\?:", options.group(1), re.M))
    source = client_source()
    assert OPTIONS == {name for name in OPTIONS if f"o.{name}" in source}
