"""Small, safe descriptions of agent state for node/tool/LLM events.

Graph state is often huge (message histories, retrieved documents, whole files) and full of
user data. Copying it into every event makes logs slow, expensive and a privacy liability, so
by default events carry a *summary*: the keys, the type of each value, string lengths and list
lengths — never the values themselves. The cost is bounded by `max_items`, not by the size of
the state: a 10 000-item list or a 1 MB string is described in a few dozen bytes.

`bounded_content` is for the opt-in raw mode (`log_inputs=True`): it turns a value into plain
JSON data under a character budget, so even raw content stays small; the caller must still run
the result through the redactor before it leaves the process.

Nothing here calls `repr()` or `str()` on unknown objects: either could be huge, slow, or leak
exactly what summaries exist to keep out.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["bounded_content", "describe", "summarize"]

_NAME_MAX: Final = 64
_SAMPLE: Final = 50  # elements inspected to name the item types of a sequence
_TYPES_SHOWN: Final = 3
_SEQUENCES: Final = (list, tuple, set, frozenset, deque)
_MAX_DEPTH: Final = 6


def _type_name(value: object) -> str:
    return type(value).__name__[:_NAME_MAX]


def _key(key: object) -> str:
    # Non-string keys get only cheap, bounded renderings (numbers, else the type), never repr().
    if isinstance(key, str):
        return key[:_NAME_MAX]
    if isinstance(key, bool | int | float):
        return str(key)[:_NAME_MAX]
    return f"<{_type_name(key)}>"


def _is_empty(value: object) -> bool:
    # Explicit checks: `==` on arbitrary objects can be costly or raise (array types).
    return value is None or (isinstance(value, str | list | dict | tuple) and not value)


def _is_message(value: object) -> bool:
    """LangChain messages and look-alikes: a `content` plus a string `type` (no import needed)."""
    return hasattr(value, "content") and isinstance(getattr(value, "type", None), str)


def _model_fields(value: object) -> tuple[str, ...] | None:
    """Field names of a pydantic model or dataclass instance, else None."""
    fields = getattr(type(value), "model_fields", None)
    if isinstance(fields, Mapping):
        return tuple(str(name) for name in fields)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(field.name for field in dataclasses.fields(value))
    return None


def _content_size(content: object) -> str:
    if isinstance(content, str):
        return f"len={len(content)}"
    if isinstance(content, list):
        return f"blocks={len(content)}"
    return f"content={_type_name(content)}"


def _item_types(values: Any) -> str:
    names: list[str] = []
    for index, item in enumerate(values):
        if index >= _SAMPLE:
            break
        name = _type_name(item)
        if name not in names:
            names.append(name)
    shown = "|".join(names[:_TYPES_SHOWN])
    return shown + ("|…" if len(names) > _TYPES_SHOWN else "")


def describe(value: object) -> str:
    """One short string saying what `value` is and how big, e.g. ``list(len=3, items=str)``."""
    if value is None or isinstance(value, bool | int | float):
        return "None" if value is None else _type_name(value)
    if isinstance(value, str | bytes | bytearray):
        return f"{_type_name(value)}(len={len(value)})"
    if isinstance(value, Mapping):
        return f"{_type_name(value)}(keys={len(value)})"
    if isinstance(value, _SEQUENCES):
        if not value:
            return f"{_type_name(value)}(len=0)"
        return f"{_type_name(value)}(len={len(value)}, items={_item_types(value)})"
    if _is_message(value):
        text = f"{_type_name(value)}({_content_size(getattr(value, 'content', None))}"
        tool_calls = getattr(value, "tool_calls", None)
        if isinstance(tool_calls, list) and tool_calls:
            text += f", tool_calls={len(tool_calls)}"
        return text + ")"
    fields = _model_fields(value)
    if fields is not None:
        return f"{_type_name(value)}(fields={len(fields)})"
    return _type_name(value)


def summarize(value: object, max_items: int = 20) -> dict[str, Any]:
    """A bounded structural summary: type, size and (for mappings/models) a description per key.

    At most `max_items` keys are described; `truncated` says more were left out. Values are
    never included, only what `describe` says about them.
    """
    if isinstance(value, Mapping):
        items: Any = value.items()
        size = len(value)
    elif (names := _model_fields(value)) is not None and not _is_message(value):
        items = ((name, getattr(value, name, None)) for name in names)
        size = len(names)
    elif isinstance(value, (str, bytes, bytearray, *_SEQUENCES)):
        summary: dict[str, Any] = {"type": _type_name(value), "size": len(value)}
        if isinstance(value, _SEQUENCES) and value:
            summary["items"] = _item_types(value)
        return summary
    else:
        return {"type": describe(value)}
    fields: dict[str, str] = {}
    for index, (key, item) in enumerate(items):
        if index >= max_items:
            break
        fields[_key(key)] = describe(item)
    summary = {"type": _type_name(value), "size": size, "fields": fields}
    if size > len(fields):
        summary["truncated"] = True
    return summary


class _Budget:
    """Characters left for raw content, and the per-container/per-string limits of one pass."""

    __slots__ = ("max_items", "max_string", "prepare", "remaining")

    def __init__(
        self,
        chars: int,
        max_items: int,
        max_string: int,
        prepare: Callable[[str], str] | None,
    ) -> None:
        self.remaining = chars
        self.max_items = max_items
        self.max_string = max_string
        self.prepare = prepare


def bounded_content(
    value: object,
    *,
    max_items: int = 20,
    max_chars: int = 4000,
    max_string: int = 1000,
    prepare_string: Callable[[str], str] | None = None,
) -> Any:
    """Plain JSON data for `value`, cut to `max_items` per container and `max_chars` overall.

    `prepare_string` runs on a string *before* it is cut (pass the redactor's string scrubber):
    cutting first could split a secret so that its pattern no longer matches and half of it
    survives. Strings are cut to `max_string` characters with a marker saying how many were left
    out; containers beyond the limits end in a marker naming how many entries were dropped.
    """
    return _content(value, _Budget(max_chars, max_items, max_string, prepare_string), 0)


def _cut_string(text: str, budget: _Budget) -> str:
    total = len(text)
    if budget.prepare is not None:
        # Bounded work even for megabyte strings: only a head of 16x the limit can survive the
        # cut below, so only that head is scrubbed (whole, so no secret is split before it).
        head = text[: budget.max_string * 16]
        text = budget.prepare(head)
        total += len(text) - len(head)
    limit = max(0, min(budget.max_string, budget.remaining))
    if total <= limit:
        budget.remaining -= total
        return text
    budget.remaining -= limit
    return f"{text[:limit]}…[+{total - limit} chars]"


def _content(value: object, budget: _Budget, depth: int) -> Any:
    if value is None or isinstance(value, bool | int | float):
        budget.remaining -= 8
        return value
    if isinstance(value, str):
        return _cut_string(value, budget)
    if depth >= _MAX_DEPTH or budget.remaining <= 0:
        return f"[{describe(value)}]"
    if isinstance(value, Mapping):
        pairs: Any = value.items()
        size = len(value)
        out: dict[str, Any] = {}
    elif (names := _model_fields(value)) is not None:
        pairs = ((name, getattr(value, name, None)) for name in names)
        size = len(names)
        out = {"_type": _type_name(value)}
    elif isinstance(value, _SEQUENCES):
        return _sequence(value, budget, depth)
    else:
        return f"[{describe(value)}]"
    kept = 0
    for key, item in pairs:
        if kept >= budget.max_items or budget.remaining <= 0:
            out["…"] = f"+{size - kept} more"
            break
        kept += 1
        if "_type" in out and _is_empty(item):
            continue  # model fields left at their empty defaults only add noise
        name = _key(key)
        budget.remaining -= len(name) + 4
        out[name] = _content(item, budget, depth + 1)
    return out


def _sequence(value: Any, budget: _Budget, depth: int) -> list[Any]:
    out: list[Any] = []
    size = len(value)
    for item in value:
        if len(out) >= budget.max_items or budget.remaining <= 0:
            out.append(f"…+{size - len(out)} more")
            break
        budget.remaining -= 2
        out.append(_content(item, budget, depth + 1))
    return out
