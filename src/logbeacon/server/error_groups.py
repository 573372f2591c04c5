"""`GET /v1/errors`: error groups by `error.fingerprint` (DESIGN.md §8), most recently seen
first.

The store keeps the groups up to date as events are committed; which events count, and what
`since`, `service` and `environment` mean, is in docs/server.md ("Error groups").
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request

from logbeacon.server._read_params import (
    TIME_HELP,
    TIME_SCHEMA,
    collect_params,
    int_param,
    openapi_param,
    text_param,
    time_param,
)
from logbeacon.server.auth import ReadGrant, require_read
from logbeacon.server.errors import ApiResponse, error_responses
from logbeacon.server.state import get_state
from logbeacon.store.base import ErrorGroup, ErrorGroupQuery

__all__ = ["MAX_GROUPS", "group_document", "router"]

DEFAULT_LIMIT: Final = 50
MAX_GROUPS: Final = 200  # each group carries a whole sample event
_PARAMS: Final = ("since", "service", "environment", "limit")
_NULLABLE_TEXT: Final = {"type": ["string", "null"]}

_GROUP_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": [
        "fingerprint",
        "type",
        "message",
        "category",
        "suggestions",
        "count",
        "first_seen",
        "last_seen",
        "services",
        "sample_event",
        "sample_trace_ids",
    ],
    "properties": {
        "fingerprint": {"type": "string"},
        "type": _NULLABLE_TEXT,
        "message": _NULLABLE_TEXT,
        "category": _NULLABLE_TEXT,
        "suggestions": {"type": "array", "items": {"type": "string"}},
        "count": {"type": "integer", "minimum": 1},
        "first_seen": {"type": "string"},
        "last_seen": {"type": "string"},
        "services": {"type": "array", "items": {"type": "string"}},
        "sample_event": {"type": ["object", "null"]},
        "sample_trace_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
    },
}

_PARAMETERS: Final = [
    openapi_param("since", f"groups last seen at or after this time; {TIME_HELP}", TIME_SCHEMA),
    openapi_param("service", "only occurrences from this service"),
    openapi_param("environment", "only occurrences from this environment"),
    openapi_param(
        "limit",
        f"most groups to return, 1-{MAX_GROUPS} (default {DEFAULT_LIMIT})",
        {"type": "integer", "minimum": 1, "maximum": MAX_GROUPS},
    ),
]

router = APIRouter(tags=["errors"])


def group_document(group: ErrorGroup) -> dict[str, Any]:
    """One entry of `GET /v1/errors`, the fields DESIGN.md §8 names."""
    return {
        "fingerprint": group.fingerprint,
        "type": group.type,
        "message": group.message,
        "category": group.category,
        "suggestions": group.suggestions,
        "count": group.count,
        "first_seen": group.first_seen,
        "last_seen": group.last_seen,
        "services": group.services,
        "sample_event": group.sample_event,
        "sample_trace_ids": group.sample_trace_ids,
    }


@router.get(
    "/v1/errors",
    summary="Error groups",
    responses={
        200: {
            "description": "Error groups, most recently seen first",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["groups"],
                        "properties": {"groups": {"type": "array", "items": _GROUP_SCHEMA}},
                    }
                }
            },
        },
        **error_responses(400, 401, 403, 422),
    },
    openapi_extra={"parameters": _PARAMETERS},
)
async def list_error_groups(
    request: Request, grant: Annotated[ReadGrant, Depends(require_read)]
) -> ApiResponse:
    """Occurrences of each bug (one fingerprint): count, first/last seen, services, category,
    suggestions, the latest sample event and up to five recent trace ids."""
    state = get_state(request)
    values = collect_params(request.query_params.multi_items(), _PARAMS, ignored=("token",))
    since = values.get("since")
    service = values.get("service")
    environment = values.get("environment")
    limit = values.get("limit")
    query = ErrorGroupQuery(
        since=None if since is None else time_param("since", since, now=state.clock()),
        service=None if service is None else text_param("service", service),
        environment=None if environment is None else text_param("environment", environment),
        limit=DEFAULT_LIMIT if limit is None else int_param("limit", limit, low=1, high=MAX_GROUPS),
    )
    groups = await state.store.error_groups(query)
    return grant.apply(ApiResponse({"groups": [group_document(group) for group in groups]}))
