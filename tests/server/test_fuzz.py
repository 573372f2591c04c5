"""Hypothesis against the ingest path: arbitrary attribute trees never cause a 5xx, and what
is stored comes back as strict JSON that renders on one terminal line (FUZ-05)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logbeacon.cli._common import escape_terminal
from logbeacon.server import Settings, create_app
from tests.server.conftest import INGEST_KEY, READ_TOKEN

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=50,
)

HEADERS = {"Authorization": f"Bearer {INGEST_KEY}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    app = create_app(
        Settings(
            data_dir=data_dir,
            ingest_keys=(INGEST_KEY,),
            read_tokens=(READ_TOKEN,),
            burst=1000,
            rate=1_000_000.0,
        )
    )
    with TestClient(app) as test_client:
        yield test_client


def _strict(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"non-finite number {constant}")

    return json.loads(text, parse_constant=refuse)


@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(attrs=json_values, message=st.text(max_size=200))
def test_arbitrary_attributes_round_trip(client: TestClient, attrs: Any, message: str) -> None:
    """Any JSON tree as attributes is stored or rejected per event, never a 5xx, and reads back
    as strict JSON whose terminal rendering has no raw control characters."""
    event = {"event": "fuzz", "level": "error", "message": message, "attrs": attrs}
    response = client.post("/v1/logs", json=[event], headers=HEADERS)
    assert 200 == response.status_code
    body = response.json()
    assert 1 == body["accepted"] + body["duplicates"] + len(body["rejected"])
    page = client.get("/v1/logs", params={"limit": 1, "event": "fuzz"}, headers=READ)
    assert 200 == page.status_code
    stored = _strict(page.text)["events"][0]
    rendered = escape_terminal(stored.get("message", ""))
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in rendered)
    assert "\u2028" not in rendered
