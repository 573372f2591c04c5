"""`GET /v1/runs` and `GET /v1/runs/{run_id}`: LangGraph invocations and pipeline jobs with
their status and steps (DESIGN.md §8 "Runs").

The store derives runs from node/layer/graph/pipeline events as they are committed; these
routes only read. docs/server.md ("Runs") has the status rules.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Request

from logbeacon.server._read_params import (
    TIME_HELP,
    TIME_SCHEMA,
    choice_param,
    collect_params,
    int_param,
    openapi_param,
    text_param,
    time_param,
)
from logbeacon.server.auth import ReadGrant, require_read
from logbeacon.server.errors import ApiError, ApiResponse, error_responses
from logbeacon.server.state import get_state
from logbeacon.store.base import (
    MAX_LIMIT,
    RUN_KINDS,
    RUN_STATUSES,
    STEP_STATUSES,
    Run,
    RunQuery,
    RunStep,
    RunSummary,
)

__all__ = ["router", "run_document", "run_summary_document"]

DEFAULT_LIMIT: Final = 50
_PARAMS: Final = ("since", "status", "service", "limit")
_NULLABLE_TEXT: Final = {"type": ["string", "null"]}
_NULLABLE_NUMBER: Final = {"type": ["number", "null"], "minimum": 0}

_SUMMARY_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": [
        "run_id",
        "kind",
        "status",
        "service",
        "started_at",
        "duration_ms",
        "step_count",
        "error_count",
        "name",
    ],
    "properties": {
        "run_id": {"type": "string"},
        "kind": {"type": "string", "enum": list(RUN_KINDS)},
        "status": {"type": "string", "enum": list(RUN_STATUSES)},
        "service": _NULLABLE_TEXT,
        "started_at": {"type": "string"},
        "duration_ms": _NULLABLE_NUMBER,
        "step_count": {"type": "integer", "minimum": 0},
        "error_count": {"type": "integer", "minimum": 0},
        "name": _NULLABLE_TEXT,
    },
}
_STEP_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["name", "kind", "index", "status", "started_at", "duration_ms", "error"],
    "properties": {
        "name": {"type": "string"},
        "kind": {"type": "string", "enum": ["node", "layer"]},
        "index": {"type": ["integer", "null"]},
        "status": {"type": "string", "enum": list(STEP_STATUSES)},
        "started_at": {"type": "string"},
        "duration_ms": _NULLABLE_NUMBER,
        "error": {"type": ["object", "null"]},
    },
}
_RUN_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["run_id", "kind", "status", "service", "started_at", "duration_ms", "steps"],
    "properties": {
        "run_id": {"type": "string"},
        "kind": {"type": "string", "enum": list(RUN_KINDS)},
        "status": {"type": "string", "enum": list(RUN_STATUSES)},
        "service": _NULLABLE_TEXT,
        "started_at": {"type": "string"},
        "duration_ms": _NULLABLE_NUMBER,
        "steps": {"type": "array", "items": _STEP_SCHEMA},
    },
}

_LIST_PARAMETERS: Final = [
    openapi_param("since", f"runs started at or after this time; {TIME_HELP}", TIME_SCHEMA),
    openapi_param("status", "exact run status", {"type": "string", "enum": list(RUN_STATUSES)}),
    openapi_param("service", "exact service of the run"),
    openapi_param(
        "limit",
        f"most runs to return, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT})",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    ),
]

router = APIRouter(tags=["runs"])


def run_summary_document(run: RunSummary) -> dict[str, Any]:
    """One entry of `GET /v1/runs`."""
    return {
        "run_id": run.run_id,
        "kind": run.kind,
        "status": run.status,
        "service": run.service,
        "started_at": run.started_at,
        "duration_ms": run.duration_ms,
        "step_count": run.step_count,
        "error_count": run.error_count,
        "name": run.name,
    }


def _step_document(step: RunStep) -> dict[str, Any]:
    return {
        "name": step.name,
        "kind": step.kind,
        "index": step.index,
        "status": step.status,
        "started_at": step.started_at,
        "duration_ms": step.duration_ms,
        "error": step.error,
    }


def run_document(run: Run) -> dict[str, Any]:
    """`GET /v1/runs/{run_id}`: exactly the shape DESIGN.md §8 names."""
    return {
        "run_id": run.run_id,
        "kind": run.kind,
        "status": run.status,
        "service": run.service,
        "started_at": run.started_at,
        "duration_ms": run.duration_ms,
        "steps": [_step_document(step) for step in run.steps],
    }


@router.get(
    "/v1/runs",
    summary="Recent runs",
    responses={
        200: {
            "description": "Runs, newest start first",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["runs"],
                        "properties": {"runs": {"type": "array", "items": _SUMMARY_SCHEMA}},
                    }
                }
            },
        },
        **error_responses(400, 401, 403, 422),
    },
    openapi_extra={"parameters": _LIST_PARAMETERS},
)
async def list_runs(
    request: Request, grant: Annotated[ReadGrant, Depends(require_read)]
) -> ApiResponse:
    """LangGraph invocations and pipeline jobs, newest first, with status and step counts."""
    state = get_state(request)
    values = collect_params(request.query_params.multi_items(), _PARAMS, ignored=("token",))
    since = values.get("since")
    status = values.get("status")
    service = values.get("service")
    limit = values.get("limit")
    query = RunQuery(
        since=None if since is None else time_param("since", since, now=state.clock()),
        status=None if status is None else choice_param("status", status, RUN_STATUSES),
        service=None if service is None else text_param("service", service),
        limit=DEFAULT_LIMIT if limit is None else int_param("limit", limit, low=1, high=MAX_LIMIT),
    )
    runs = await state.store.runs(query)
    return grant.apply(ApiResponse({"runs": [run_summary_document(run) for run in runs]}))


@router.get(
    "/v1/runs/{run_id}",
    summary="One run with its steps",
    responses={
        200: {
            "description": "The run and its nodes/layers in start order",
            "content": {"application/json": {"schema": _RUN_SCHEMA}},
        },
        **error_responses(400, 401, 403, 404, 422),
    },
)
async def get_run(
    request: Request,
    run_id: Annotated[
        str, Path(description="the run's id (a pipeline's job id)", min_length=1, max_length=128)
    ],
    grant: Annotated[ReadGrant, Depends(require_read)],
) -> ApiResponse:
    """A run's status and its steps (node executions or layers) with timings and errors."""
    state = get_state(request)
    run = await state.store.run(run_id)
    if run is None:
        raise ApiError(404, "run_not_found", "no run with this run_id is stored")
    return grant.apply(ApiResponse(run_document(run)))
