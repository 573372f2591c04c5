"""Schemathesis against the app's own OpenAPI document (FUZ-01..04): no 5xx, every status and
body declared, unauthenticated calls never succeed, schema-violating input is refused."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from logbeacon.server import Settings, create_app
from tests.server.conftest import ADMIN_TOKEN, INGEST_KEY, READ_TOKEN

# Module level because schemathesis' parametrisation needs the schema at collection time.
# The app's lifespan (started by schemathesis on the first call) lasts until interpreter
# exit; the directory is removed after it (atexit runs handlers in reverse order).
_DATA_DIR = Path(tempfile.mkdtemp(prefix="logbeacon-contract-"))
atexit.register(shutil.rmtree, _DATA_DIR, ignore_errors=True)
_APP = create_app(
    Settings(
        data_dir=_DATA_DIR,
        ingest_keys=(INGEST_KEY,),
        read_tokens=(READ_TOKEN,),
        admin_token=ADMIN_TOKEN,
        burst=1_000,
        rate=1_000_000.0,
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)

_CREDENTIALS = {
    ("POST", "/v1/logs"): INGEST_KEY,
    ("POST", "/v1/diagnostics"): ADMIN_TOKEN,
}


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: Any) -> None:
    """Every operation: no server error, declared statuses/content types/bodies, auth enforced."""
    token = _CREDENTIALS.get((case.method.upper(), case.path), READ_TOKEN)
    excluded = []
    if "cursor" in (case.query or {}):
        # A cursor is opaque (MAC-protected): no schema can describe the valid ones, so a
        # generated cursor is rightly refused with 422.
        excluded.append(positive_data_acceptance)
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, excluded_checks=excluded)


def test_integral_float_ttl_is_accepted_but_fractional_and_bool_are_not() -> None:
    """Regression (schemathesis): ttl_minutes 42.0 is the integer 42; 42.5 and true are 422."""
    from logbeacon.server.diagnostics import DiagnosticRequest

    assert (
        42
        == DiagnosticRequest.model_validate_json(
            b'{"session_id":"s","ttl_minutes":42.0}'
        ).ttl_minutes
    )
    for bad in (b"42.5", b"true", b'"42"'):
        with pytest.raises(ValueError, match="ttl_minutes"):
            DiagnosticRequest.model_validate_json(b'{"session_id":"s","ttl_minutes":' + bad + b"}")
