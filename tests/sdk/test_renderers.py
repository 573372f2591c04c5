"""JSON and console renderers, called directly with event dicts (INJ-01/02/03)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from logbeacon.sdk.renderers import ConsoleRenderer, JsonRenderer, escape_text

_BASE: dict[str, Any] = {
    "timestamp": "2026-01-31T12:00:01.123456Z",
    "level": "info",
    "service": "api",
    "event": "login",
}

_HOSTILE = [
    "login failed for bob\r\n2024-05-01T00:00:00Z INFO admin login ok",
    "a\u2028b",
    "a\u2029b",
    "a\u0085b",
    "lone\rcr",
    "form\ffeed",
    "vertical\vtab",
    "\x1b[31mERROR\x1b[0m",
    "\x1b]0;pwned\x07",
    "\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07",
    "\x1b[2J\x1b[H",
    "\x9b31m",
    "nul\x00byte",
    "del\x7f",
    "bidi\u202eevil",
]


def test_json_is_one_compact_newline_terminated_line() -> None:
    """The JSON renderer writes compact UTF-8 ending in exactly one newline."""
    line = JsonRenderer()({**_BASE, "n": 1, "text": "é"})
    assert line.endswith(b"\n")
    assert 1 == line.count(b"\n")
    prefix = b'{"timestamp":"2026-01-31T12:00:01.123456Z","level":"info",'
    assert prefix == line[: len(prefix)]
    assert {**_BASE, "n": 1, "text": "é"} == json.loads(line)


@pytest.mark.parametrize("value", _HOSTILE)
def test_json_escapes_every_line_break_and_control(value: str) -> None:
    """Hostile values stay one line, with no raw control, C1, DEL or U+2028/2029 bytes."""
    line = JsonRenderer()({**_BASE, "message": value, value: "as key"})
    body = line[:-1]
    assert b"\n" not in body
    assert b"\r" not in body
    assert all(byte >= 0x20 for byte in body)
    for raw in ("\x7f", "\x85", "\x9b", "\u2028", "\u2029"):
        assert raw.encode() not in body
    decoded = json.loads(line)
    assert (value, "as key") == (decoded["message"], decoded[value])


def test_json_nan_becomes_null() -> None:
    """NaN and infinities are written as null (strict RFC 8259 JSON)."""
    line = JsonRenderer()({**_BASE, "x": float("nan"), "y": float("inf")})
    assert (None, None) == (json.loads(line)["x"], json.loads(line)["y"])


def test_json_default_scrubs_opaque_values() -> None:
    """Mappings, reprs and bytes found only at render time pass through the scrubbers."""
    from types import MappingProxyType

    def scrub(mapping: dict[str, Any]) -> dict[str, Any]:
        return {k: "[X]" if k == "secret" else v for k, v in mapping.items()}

    render = JsonRenderer(scrub=scrub, scrub_text=lambda text: text.replace("tok", "[T]"))
    event = {
        **_BASE,
        "m": MappingProxyType({"secret": 1, "ok": 2}),
        "b": b"tok",
        "o": type("O", (), {"__repr__": lambda self: "tok!"})(),
        "e": ValueError("tok"),
    }
    decoded = orjson.loads(render(event))
    assert ({"secret": "[X]", "ok": 2}, "[T]", "[T]!", "ValueError: [T]") == (
        decoded["m"],
        decoded["b"],
        decoded["o"],
        decoded["e"],
    )


@pytest.mark.parametrize("value", _HOSTILE)
def test_console_escapes_hostile_values_and_keys(value: str) -> None:
    """Console output is one line with no raw control/format characters, in values and keys."""
    text = ConsoleRenderer()({**_BASE, "message": value, "field": value, value: "k"})
    assert "\n" not in text
    assert all(ch.isprintable() for ch in text)


def test_console_shows_escapes_visibly() -> None:
    """Escapes are rendered as readable backslash sequences."""
    text = ConsoleRenderer()(
        {**_BASE, "message": "a\r\nb", "x": "\x1b[31m", "y": "\x1b]0;pwned\x07", "z": "\u2028"}
    )
    assert "a\\r\\nb" in text
    assert "x=\\x1b[31m" in text
    assert "y=\\x1b]0;pwned\\x07" in text
    assert "z=\\u2028" in text


def test_console_colours_only_when_asked() -> None:
    """Level colours (our own escape codes) appear only with colors=True."""
    plain = ConsoleRenderer(colors=False)({**_BASE, "level": "error"})
    coloured = ConsoleRenderer(colors=True)({**_BASE, "level": "error"})
    assert ("\x1b" in plain, "\x1b[31merror" in coloured) == (False, True)


def test_console_layout() -> None:
    """time, level, [service], event, message, then key=value fields (event_id omitted)."""
    text = ConsoleRenderer()(
        {**_BASE, "message": "hello", "event_id": "x", "n": 3, "s": "two words", "d": {"a": 1}}
    )
    assert '12:00:01.123 info     [api] login hello n=3 s="two words" d={"a":1}' == text


def test_console_error_stack_lines_are_indented_and_escaped() -> None:
    """An error prints its head and stack on indented lines, each escaped."""
    error = {"type": "ValueError", "message": "bad\x1b[2J", "stack": ["File x\r\n, line 1"]}
    text = ConsoleRenderer()({**_BASE, "error": error})
    first, head, frame = text.split("\n")
    assert "    error: ValueError: bad\\x1b[2J" == head
    assert "      File x\\r\\n, line 1" == frame
    assert first.endswith("login")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain", "plain"),
        ("tab\there", "tab\\there"),
        ("\x00", "\\x00"),
        ("\u2066", "\\u2066"),
        ("\U000e0001", "\\U000e0001"),
        ("ünïcödé ok", "ünïcödé ok"),
    ],
)
def test_escape_text(raw: str, shown: str) -> None:
    """escape_text keeps printable text and escapes everything else."""
    assert shown == escape_text(raw)
