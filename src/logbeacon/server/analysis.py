"""`GET /v1/analysis`: what happened in a window, for a person or a language model.

`compute_analysis` builds the summary from the store's window primitives (counts by level
and service, an error-rate timeline, the top error groups, the slowest nodes and layers by
p95, failing runs); the WebSocket's `analysis_request` calls it too. `render_markdown` turns
it into compact text. Event text is untrusted: in Markdown every value that came from an
event is redacted again, stripped of control and line-break characters and shown only inside
a code span, so a crafted message cannot add headings, links, HTML or fake list items.
"""

from __future__ import annotations

import time
import unicodedata
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from logbeacon.event import LEVELS, normalize_level
from logbeacon.redact import Redactor, default_redactor
from logbeacon.server._read_params import (
    LEVEL_SCHEMA,
    TIME_HELP,
    TIME_SCHEMA,
    choice_param,
    collect_params,
    int_param,
    level_param,
    openapi_param,
    text_param,
    time_param,
)
from logbeacon.server.auth import ReadGrant, require_read
from logbeacon.server.errors import ApiResponse, error_responses
from logbeacon.server.state import get_state
from logbeacon.store.base import AnalysisWindow, RunQuery, RunSummary, Store

__all__ = ["DEFAULT_BUCKETS", "MAX_BUCKETS", "compute_analysis", "render_markdown", "router"]

DEFAULT_SINCE: Final = 3600.0
DEFAULT_BUCKETS: Final = 30
MAX_BUCKETS: Final = 200
TOP_ERRORS: Final = 10
SLOWEST_STEPS: Final = 10
FAILING_RUNS: Final = 10
TOP_SERVICES: Final = 20
MARKDOWN_TYPE: Final = "text/markdown; charset=utf-8"
_PARAMS: Final = ("since", "until", "service", "level", "format", "buckets")
_FORMATS: Final = ("json", "markdown")
_MAX_SNIPPET: Final = 200


# --------------------------------------------------------------------------- the summary


async def compute_analysis(
    store: Store,
    *,
    since: float,
    until: float | None = None,
    service: str | None = None,
    level: str | None = None,
    buckets: int = DEFAULT_BUCKETS,
) -> dict[str, Any]:
    """The analysis document of a window (epoch seconds; `until` defaults to now).

    The store may widen the window to its resolution (SQLite: whole minutes); `window` says
    which window was analysed and every part of the document uses that same window; an
    `until` at or before `since` leaves the minute of `since`. Raises ValueError for an
    unknown level.
    """
    until = max(since, time.time() if until is None else until)
    canonical = None if level is None else normalize_level(level)
    requested = AnalysisWindow(
        since=max(0.0, since),
        until=until,
        service=service,
        level=canonical,
        buckets=max(1, min(buckets, MAX_BUCKETS)),
    )
    counts = await store.window_counts(requested)
    window = AnalysisWindow(
        since=counts.since_epoch,
        until=counts.until_epoch,
        service=service,
        level=canonical,
        buckets=requested.buckets,
    )
    errors = await store.window_errors(window, TOP_ERRORS)
    steps = await store.window_steps(window, SLOWEST_STEPS)
    failing = await _failing_runs(store, window)
    total = sum(bucket.events for bucket in counts.timeline)
    error_total = sum(bucket.errors for bucket in counts.timeline)
    return {
        "window": {
            "since": counts.since,
            "until": counts.until,
            "bucket_seconds": counts.bucket_seconds,
        },
        "filters": {"service": service, "level": canonical},
        "totals": {
            "events": total,
            "errors": error_total,
            "error_rate": round(error_total / total, 6) if total else 0.0,
        },
        "by_level": counts.by_level,
        "by_service": [
            {"service": item.service, "events": item.events, "errors": item.errors}
            for item in counts.by_service[:TOP_SERVICES]
        ],
        "top_errors": [
            {
                "fingerprint": group.fingerprint,
                "type": group.type,
                "message": group.message,
                "category": group.category,
                "suggestions": group.suggestions,
                "count": group.count,
                "services": group.services,
                "first_seen": group.first_seen,
                "last_seen": group.last_seen,
                "sample_trace_ids": group.sample_trace_ids,
            }
            for group in errors
        ],
        "slowest_steps": [
            {
                "kind": step.kind,
                "name": step.name,
                "count": step.count,
                "errors": step.errors,
                "p50_ms": step.p50_ms,
                "p95_ms": step.p95_ms,
                "max_ms": step.max_ms,
            }
            for step in steps.steps
        ],
        "failing_runs": [
            {
                "run_id": run.run_id,
                "kind": run.kind,
                "name": run.name,
                "status": run.status,
                "service": run.service,
                "started_at": run.started_at,
                "duration_ms": run.duration_ms,
                "error_count": run.error_count,
            }
            for run in failing
        ],
        "timeline": [
            {"start": bucket.start, "events": bucket.events, "errors": bucket.errors}
            for bucket in counts.timeline
        ],
        "sampled": steps.sample_rate < 1.0,
        "step_sample_rate": steps.sample_rate,
    }


async def _failing_runs(store: Store, window: AnalysisWindow) -> list[RunSummary]:
    found: list[RunSummary] = []
    for status in ("error", "partial"):
        found += await store.runs(
            RunQuery(
                since=window.since,
                until=window.until,
                status=status,
                service=window.service,
                limit=FAILING_RUNS,
            )
        )
    found.sort(key=lambda run: (run.started_at, run.run_id), reverse=True)
    return found[:FAILING_RUNS]


# --------------------------------------------------------------------------- Markdown


def _clean(value: object, redactor: Redactor, limit: int = _MAX_SNIPPET) -> str:
    """One line of plain text: redacted, without control/format/line-break characters."""
    text = redactor.redact_text(str(value))
    kept = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in text
        if unicodedata.category(ch) not in ("Cf", "Cs", "Co", "Cn")
    )
    kept = " ".join(kept.split())
    return kept if len(kept) <= limit else kept[: limit - 1] + "…"


def _code(value: object, redactor: Redactor, limit: int = _MAX_SNIPPET) -> str:
    """Untrusted text as an inline code span (CommonMark: a fence longer than any backtick
    run inside; padded when the text touches a backtick), so it renders as literal text."""
    text = _clean(value, redactor, limit) or " "
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    if text.startswith("`") or text.endswith("`") or (text[0] == " " and text[-1] == " "):
        text = f" {text} "
    return f"{fence}{text}{fence}"


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.1f}"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "0 %"


def render_markdown(analysis: dict[str, Any], redactor: Redactor | None = None) -> str:
    """Compact Markdown of an analysis document: headline numbers, top errors with category
    and a suggestion, slowest steps, failing runs and the error-rate timeline."""
    r = redactor or default_redactor()
    window = analysis["window"]
    filters = analysis["filters"]
    totals = analysis["totals"]
    lines = ["# logbeacon analysis", ""]
    scope = f"Window {window['since']} to {window['until']}"
    if filters.get("service"):
        scope += f", service {_code(filters['service'], r)}"
    if filters.get("level"):
        scope += f", level {filters['level']} and above"
    lines += [
        scope + ".",
        "",
        f"**{_number(totals['events'])} events, {_number(totals['errors'])} errors "
        f"({_percent(totals['errors'], totals['events'])}).**",
        "",
        "Levels: "
        + ", ".join(
            f"{name} {_number(analysis['by_level'].get(name, 0))}"
            for name in reversed(LEVELS)
            if name in analysis["by_level"]
        )
        + ".",
    ]
    if analysis["by_service"]:
        lines += ["", "## Services", ""]
        lines += [
            f"- {_code(item['service'], r)}: {_number(item['events'])} events, "
            f"{_number(item['errors'])} errors ({_percent(item['errors'], item['events'])})"
            for item in analysis["by_service"]
        ]
    lines += ["", "## Top errors", ""]
    if not analysis["top_errors"]:
        lines.append("No errors in this window.")
    for rank, group in enumerate(analysis["top_errors"], 1):
        label = group["type"] or "error"
        services = ", ".join(_code(name, r, 64) for name in group["services"])
        lines.append(
            f"{rank}. {_code(label, r, 80)} {_code(group['message'] or '', r)}: "
            f"{_number(group['count'])} times in {services}; category "
            f"{_code(group['category'] or 'unknown', r, 40)}; last seen {group['last_seen']}; "
            f"fingerprint {_code(group['fingerprint'], r, 64)}"
        )
        if group["suggestions"]:
            lines.append(f"   - Suggestion: {_code(group['suggestions'][0], r, 300)}")
    if analysis["slowest_steps"]:
        lines += ["", "## Slowest steps (by p95)", ""]
        lines += [
            f"- {step['kind']} {_code(step['name'], r, 80)}: p50 {_number(step['p50_ms'])} ms, "
            f"p95 {_number(step['p95_ms'])} ms, max {_number(step['max_ms'])} ms over "
            f"{_number(step['count'])} executions, {_number(step['errors'])} failed"
            for step in analysis["slowest_steps"]
        ]
        if analysis.get("sampled"):
            rate = analysis.get("step_sample_rate", 1.0)
            lines.append(f"- (percentiles from a {100 * rate:.1f} % sample of step durations)")
    if analysis["failing_runs"]:
        lines += ["", "## Failing runs", ""]
        for run in analysis["failing_runs"]:
            name = f" {_code(run['name'], r, 80)}" if run["name"] else ""
            lines.append(
                f"- {run['kind']}{name}, run {_code(run['run_id'], r, 128)}: {run['status']}, "
                f"{_number(run['error_count'])} failed steps, started {run['started_at']}"
            )
    lines += ["", f"## Timeline ({_number(window['bucket_seconds'])} s buckets)", ""]
    busy = [bucket for bucket in analysis["timeline"] if bucket["events"]]
    if not busy:
        lines.append("No events in this window.")
    lines += [
        f"- {bucket['start']}: {_number(bucket['events'])} events, "
        f"{_number(bucket['errors'])} errors"
        for bucket in busy
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the route

_PARAMETERS: Final = [
    openapi_param("since", f"window start (default 1h); {TIME_HELP}", TIME_SCHEMA),
    openapi_param("until", f"window end (default now); {TIME_HELP}", TIME_SCHEMA),
    openapi_param("service", "only this service"),
    openapi_param("level", "minimum level of the counted events", LEVEL_SCHEMA),
    openapi_param(
        "format", "json (default) or markdown", {"type": "string", "enum": list(_FORMATS)}
    ),
    openapi_param(
        "buckets",
        f"timeline buckets wanted, 1-{MAX_BUCKETS} (default {DEFAULT_BUCKETS}; fewer when the "
        "window has fewer whole minutes)",
        {"type": "integer", "minimum": 1, "maximum": MAX_BUCKETS},
    ),
]

_COUNT: Final = {"type": "integer", "minimum": 0}
_ANALYSIS_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": [
        "window",
        "filters",
        "totals",
        "by_level",
        "by_service",
        "top_errors",
        "slowest_steps",
        "failing_runs",
        "timeline",
        "sampled",
    ],
    "properties": {
        "window": {
            "type": "object",
            "required": ["since", "until", "bucket_seconds"],
            "properties": {
                "since": {"type": "string"},
                "until": {"type": "string"},
                "bucket_seconds": {"type": "number", "exclusiveMinimum": 0},
            },
        },
        "totals": {
            "type": "object",
            "required": ["events", "errors", "error_rate"],
            "properties": {"events": _COUNT, "errors": _COUNT, "error_rate": {"type": "number"}},
        },
        "by_level": {"type": "object", "additionalProperties": _COUNT},
        "by_service": {"type": "array", "items": {"type": "object"}},
        "top_errors": {"type": "array", "items": {"type": "object"}},
        "slowest_steps": {"type": "array", "items": {"type": "object"}},
        "failing_runs": {"type": "array", "items": {"type": "object"}},
        "timeline": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["start", "events", "errors"],
                "properties": {"start": {"type": "string"}, "events": _COUNT, "errors": _COUNT},
            },
        },
        "sampled": {"type": "boolean"},
    },
}

router = APIRouter(tags=["analysis"])


@router.get(
    "/v1/analysis",
    summary="Summary of a window",
    responses={
        200: {
            "description": "The analysis (JSON), or compact Markdown with format=markdown",
            "content": {
                "application/json": {"schema": _ANALYSIS_SCHEMA},
                "text/markdown": {"schema": {"type": "string"}},
            },
        },
        **error_responses(400, 401, 403, 422),
    },
    openapi_extra={"parameters": _PARAMETERS},
)
async def get_analysis(
    request: Request, grant: Annotated[ReadGrant, Depends(require_read)]
) -> Response:
    """Counts by level and service, top error groups, slowest nodes and layers (p50/p95),
    failing runs and an error-rate timeline for a window (default: the last hour)."""
    state = get_state(request)
    values = collect_params(request.query_params.multi_items(), _PARAMS, ignored=("token",))
    now = state.clock()
    since = (
        time_param("since", values["since"], now=now) if "since" in values else now - DEFAULT_SINCE
    )
    until = time_param("until", values["until"], now=now) if "until" in values else now
    service = text_param("service", values["service"]) if "service" in values else None
    level = level_param(values["level"]) if "level" in values else None
    output = choice_param("format", values["format"], _FORMATS) if "format" in values else "json"
    buckets = (
        int_param("buckets", values["buckets"], low=1, high=MAX_BUCKETS)
        if "buckets" in values
        else DEFAULT_BUCKETS
    )
    analysis = await compute_analysis(
        state.store, since=since, until=until, service=service, level=level, buckets=buckets
    )
    if output == "markdown":
        text = render_markdown(analysis, state.redactor)
        return grant.apply(Response(text, media_type=MARKDOWN_TYPE))
    return grant.apply(ApiResponse(analysis))
