"""Property tests of the redactor on generated JSON trees (RELIABILITY.md FUZ-06/07/08)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from logbeacon.redact import Redactor
from tests.redaction_corpus import LOOKALIKES, SECRETS, LookAlike, Secret

_REDACTOR = Redactor()

_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what JSON encoders round-trip
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_TREES = st.recursive(
    _LEAVES,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=50,
)
# Text next to an inserted look-alike: words only, so the neighbours cannot themselves form
# a secret (a random "+1 " before an epoch number would rightly make it a phone number).
_NEUTRAL_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", max_size=20)

_PROPERTY_SETTINGS = settings(derandomize=True, deadline=None, max_examples=200)


def _strings(tree: Any) -> list[str]:
    found: list[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                stack.append(key)
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _insert(tree: Any, text: str, data: st.DataObject, surround: st.SearchStrategy[str]) -> Any:
    """Return `tree` with `text` placed at a drawn container, as a value, key or substring."""
    root: Any = {"root": copy.deepcopy(tree)}
    node: Any = root
    while True:
        children = [
            c
            for c in (node.values() if isinstance(node, dict) else node)
            if isinstance(c, dict | list)
        ]
        if not children or data.draw(st.booleans(), label="stop here"):
            break
        node = data.draw(st.sampled_from(children), label="descend")
    mode = data.draw(st.sampled_from(["value", "key", "substring"]), label="mode")
    if mode == "substring":
        before = data.draw(surround, label="before")
        after = data.draw(surround, label="after")
        text = f"{before} {text} {after}"
    if isinstance(node, list):
        node.insert(data.draw(st.integers(0, len(node)), label="index"), text)
    elif mode == "key":
        node[text] = data.draw(_LEAVES, label="value under inserted key")
    else:
        # Numbered so it never replaces an existing key; "note" is never sensitive.
        node[f"note_{len(node)}"] = text
    return root


@_PROPERTY_SETTINGS
@given(tree=JSON_TREES)
def test_redact_never_raises_and_is_idempotent(tree: Any) -> None:
    """FUZ-08: any JSON tree redacts without error, and a second pass changes nothing."""
    once = _REDACTOR.redact(tree)
    assert once == _REDACTOR.redact(once)
    orjson.dumps(once)


@_PROPERTY_SETTINGS
@given(tree=JSON_TREES)
def test_redact_does_not_mutate_its_input(tree: Any) -> None:
    """The input tree compares equal to a deep copy taken before redaction."""
    snapshot = copy.deepcopy(tree)
    _REDACTOR.redact_event({"attrs": tree})
    assert snapshot == tree


@_PROPERTY_SETTINGS
@given(text=st.text())
@example(text="+44 20 7946 0958 12 34 56 78")
@example(text="qty 42 4111 1111 1111 1111")
def test_redact_text_is_idempotent(text: str) -> None:
    """FUZ-08 on free text: markers never match a rule, so redacting twice equals once."""
    once = _REDACTOR.redact_text(text)
    assert once == _REDACTOR.redact_text(once)


@_PROPERTY_SETTINGS
@given(tree=JSON_TREES, secret=st.sampled_from(SECRETS), data=st.data())
def test_inserted_secret_is_absent(tree: Any, secret: Secret, data: st.DataObject) -> None:
    """FUZ-06: a corpus secret placed anywhere (value, key, inside text) is gone from the output."""
    planted = _insert(tree, secret.text, data, st.text(max_size=20))
    out = _REDACTOR.redact(planted)
    leaked = [s for s in _strings(out) if secret.secret in s]
    assert [] == leaked, f"corpus secret {secret.id!r} leaked"
    if "\n" not in secret.secret and "\\" not in secret.secret:
        assert secret.secret.encode() not in orjson.dumps(out)


@_PROPERTY_SETTINGS
@given(tree=JSON_TREES, item=st.sampled_from(LOOKALIKES), data=st.data())
def test_inserted_lookalike_is_present(tree: Any, item: LookAlike, data: st.DataObject) -> None:
    """FUZ-07: a look-alike placed anywhere survives byte for byte in the serialised output."""
    planted = _insert(tree, item.text, data, _NEUTRAL_TEXT)
    out = orjson.dumps(_REDACTOR.redact(planted))
    assert orjson.dumps(item.text)[1:-1] in out, f"look-alike {item.id!r} was altered"
