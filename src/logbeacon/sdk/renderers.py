"""Turning a finished event into output: compact JSON lines and a readable console line.

JSON is rendered once per event with orjson and shared by every sink. The console renderer is
for people at a terminal, which makes it an attack surface (CWE-117, CVE-2009-4487): a value
must never be able to move the cursor, retitle the window, hide text or start a new line. So
every character that is not printable — C0/C1 controls, DEL, ESC sequences, CR/LF, U+0085,
U+2028/2029, bidi and zero-width format characters — is shown as a visible escape such as
``\\x1b`` or ``\\u2028``, in keys as well as values.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from os import PathLike
from typing import Any, Final

import orjson

__all__ = [
    "CANONICAL_ORDER",
    "ConsoleRenderer",
    "JsonRenderer",
    "escape_text",
]

# The fields a reader looks for first; the JSON renderer relies on the bound logger seeding
# them in this order (dicts keep insertion order), the console renderer prints them as columns.
CANONICAL_ORDER: Final = ("timestamp", "level", "service", "event", "message")

# OPT_NON_STR_KEYS takes orjson off its fastest path for every dict, so events whose keys are
# all strings (nearly all) are rendered without it; any other key makes orjson raise and the
# event is rendered again with it. Both give the same bytes for string keys.
_FAST_JSON_OPTIONS: Final = orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATACLASS
_JSON_OPTIONS: Final = _FAST_JSON_OPTIONS | orjson.OPT_NON_STR_KEYS
# Characters orjson leaves raw that are still dangerous when a JSON line reaches a terminal or
# a JavaScript-era parser: DEL, C1 controls (U+0080-U+009F, incl. the 8-bit CSI U+009B) and the
# Unicode line/paragraph separators. Matched on UTF-8 bytes; \u-escaping them keeps the JSON
# value identical.
_UNSAFE_JSON_BYTES: Final = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]")


def _json_escape_match(match: re.Match[bytes]) -> bytes:
    return f"\\u{ord(match.group().decode()):04x}".encode()


def _unrepresentable(value: object) -> str:
    return f"<unrepresentable {type(value).__name__}>"


def safe_repr(value: object) -> str:
    """`repr` that cannot fail: a broken `__repr__` must not lose the whole event."""
    try:
        return repr(value)
    except Exception:
        return _unrepresentable(value)


class JsonRenderer:
    """Event dict → one compact, newline-terminated UTF-8 JSON line.

    Values orjson cannot serialise natively are converted by `default`: sets and tuples to
    lists, bytes to text, exceptions to ``Type: message``, paths to strings, dataclasses and
    other mappings to dicts that first pass through `scrub` (the redactor's mapping scrubber,
    since these values were opaque objects when redaction walked the event), anything else to
    its `repr` passed through `scrub_text`. NaN and infinities become `null`.
    """

    __slots__ = ("_default",)

    def __init__(
        self,
        scrub: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        scrub_text: Callable[[str], str] | None = None,
    ) -> None:
        scrub_map = scrub or (lambda mapping: mapping)
        scrub_str = scrub_text or (lambda text: text)

        def default(value: object) -> Any:
            if isinstance(value, set | frozenset):
                return list(value)
            if isinstance(value, bytes | bytearray | memoryview):
                return scrub_str(bytes(value).decode("utf-8", "replace"))
            if isinstance(value, BaseException):
                return scrub_str(f"{type(value).__name__}: {_safe_str(value)}")
            if isinstance(value, PathLike):
                return str(value.__fspath__())
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return scrub_map(
                    {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
                )
            if isinstance(value, Mapping):
                return scrub_map({str(k): v for k, v in value.items()})
            return scrub_str(safe_repr(value))

        self._default = default

    def __call__(self, event: Mapping[str, Any]) -> bytes:
        try:
            line = orjson.dumps(event, default=self._default, option=_FAST_JSON_OPTIONS)
        except TypeError:
            line = self._render_unusual(event)
        # `127 in` is a memchr; `b"\x7f" in` would take the much slower substring path.
        if line.isascii() and 127 not in line:
            return line
        return _UNSAFE_JSON_BYTES.sub(_json_escape_match, line)

    def _render_unusual(self, event: Mapping[str, Any]) -> bytes:
        try:
            return orjson.dumps(event, default=self._default, option=_JSON_OPTIONS)
        except TypeError:
            # Integers beyond 64 bits, circular references, str subclasses orjson rejects:
            # rebuild the event from JSON-safe pieces rather than dropping it.
            return orjson.dumps(_json_safe(event, 0), default=self._default, option=_JSON_OPTIONS)


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return _unrepresentable(value)


_MAX_SAFE_DEPTH: Final = 32


def _json_safe(value: Any, depth: int) -> Any:
    """A copy of `value` made only of types orjson always accepts (slow path only)."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, str):
        return str.__str__(value)
    if depth >= _MAX_SAFE_DEPTH:
        return "[depth limit]"
    if isinstance(value, Mapping):
        return {_safe_str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v, depth + 1) for v in value]
    return safe_repr(value)


# --------------------------------------------------------------------------- console

_NAMED_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_text(text: str) -> str:
    """Make `text` safe to print on a terminal on one line: non-printables become escapes."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape_char(char) for char in text)


_RESET: Final = "\x1b[0m"
_LEVEL_STYLES: Final = {
    "debug": "\x1b[2m",
    "info": "\x1b[32m",
    "warn": "\x1b[33m",
    "error": "\x1b[31m",
    "critical": "\x1b[1;31m",
}
_DIM: Final = "\x1b[2m"
_BOLD: Final = "\x1b[1m"
_CONSOLE_SKIP: Final = frozenset({*CANONICAL_ORDER, "event_id", "error"})
_NEEDS_QUOTES: Final = re.compile(r"[\s=\"']")


def _console_value(value: Any) -> str:
    if isinstance(value, str):
        text = escape_text(value)
        if not text or _NEEDS_QUOTES.search(text):
            return '"' + text.replace('"', '\\"') + '"'
        return text
    try:
        rendered = orjson.dumps(value, default=safe_repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        rendered = orjson.dumps(_json_safe(value, 0), default=safe_repr).decode()
    return escape_text(rendered)


class ConsoleRenderer:
    """Event dict → one human-readable line (plus indented stack lines for errors).

    ``12:00:01.123 info  api  node_start  message  key=value …``; colours only when `colors`
    is true (a TTY). Colour codes are ours; nothing from the event is ever written raw.
    """

    __slots__ = ("_colors",)

    def __init__(self, colors: bool = False) -> None:
        self._colors = colors

    def __call__(self, event: Mapping[str, Any]) -> str:
        colors = self._colors
        timestamp = event.get("timestamp")
        clock = timestamp[11:23] if isinstance(timestamp, str) and len(timestamp) >= 23 else ""
        level = str(event.get("level", ""))
        level_text = f"{escape_text(level):<8}"
        if colors:
            style = _LEVEL_STYLES.get(level, "")
            level_text = f"{style}{level_text}{_RESET}"
            clock = f"{_DIM}{clock}{_RESET}"
        parts = [clock, level_text]
        service = event.get("service")
        if service is not None:
            parts.append(f"[{escape_text(str(service))}]")
        name = escape_text(str(event.get("event", "")))
        parts.append(f"{_BOLD}{name}{_RESET}" if colors else name)
        message = event.get("message")
        if message is not None:
            parts.append(escape_text(str(message)))
        parts.extend(
            f"{escape_text(str(key))}={_console_value(value)}"
            for key, value in event.items()
            if key not in _CONSOLE_SKIP
        )
        lines = [" ".join(part for part in parts if part)]
        error = event.get("error")
        if isinstance(error, Mapping):
            lines.extend(_console_error(error))
        elif error is not None:
            lines.append(f"    error={_console_value(error)}")
        return "\n".join(lines)


def _console_error(error: Mapping[str, Any]) -> list[str]:
    head = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    lines = [f"    error: {escape_text(head)}"]
    lines.extend(
        f"    {escape_text(str(key))}={_console_value(value)}"
        for key, value in error.items()
        if key not in ("type", "message", "stack")
    )
    stack = error.get("stack")
    if isinstance(stack, list | tuple):
        lines.extend(f"      {escape_text(str(frame))}" for frame in stack)
    return lines
