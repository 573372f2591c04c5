"""Runs, error groups and window analysis derived by the SQLite store, on real files."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from logbeacon.event import format_timestamp, normalize_event
from logbeacon.integrations.errors import analyze_error
from logbeacon.store._sqlite_derived import MAX_STEPS_PER_RUN
from logbeacon.store._sqlite_schema import SCHEMA_VERSION
from logbeacon.store.base import (
    AnalysisWindow,
    ErrorGroupQuery,
    Run,
    RunQuery,
    RunStep,
    RunSummary,
)
from logbeacon.store.sqlite import SqliteStore
from tests.store.conftest import BASE_TIME

Event = dict[str, Any]
Store = SqliteStore


def at(seconds: float) -> str:
    return format_timestamp(BASE_TIME + seconds)


def make(seconds: float, event: str, **fields: Any) -> Event:
    """One normalised event `seconds` after BASE_TIME."""
    raw: Event = {"timestamp": at(seconds), "event": event, "service": "langgraph"}
    raw.update(fields)
    return normalize_event(raw)


def graph_run(run_id: str = "r1", *, fail: bool = False, complete: bool = True) -> list[Event]:
    """A two-node LangGraph invocation as the callback handler logs it."""
    common = {"run_id": run_id, "thread_id": "t1", "graph": "agent"}
    events = [
        make(0, "graph_start", status="running", **common),
        make(0.1, "node_start", node="plan", step=1, status="running", **common),
        make(1.1, "node_complete", node="plan", step=1, status="success", duration_ms=1000,
             **common),
        make(1.2, "node_start", node="act", step=2, status="running", **common),
    ]  # fmt: skip
    if fail:
        error = {"type": "TimeoutError", "message": "upstream timed out after 30s"}
        events.append(
            make(3.2, "node_failed", node="act", step=2, status="error", duration_ms=2000,
                 level="error", error=error, **common)
        )  # fmt: skip
        if complete:
            events.append(
                make(3.3, "graph_failed", status="error", duration_ms=3300, level="error",
                     error=error, **common)
            )  # fmt: skip
    else:
        events.append(
            make(2.2, "node_complete", node="act", step=2, status="success", duration_ms=1000,
                 **common)
        )  # fmt: skip
        if complete:
            events.append(make(2.3, "graph_complete", status="success", duration_ms=2300, **common))
    return events


def pipeline_run(job: str, outcome: str) -> list[Event]:
    """A pipeline job as `logbeacon.pipeline` logs it: layer 1 ok, 2 per `outcome`, 3 skipped.

    `outcome`: "success" (layer 2 ok), "partial" (layer 2 failed, body went on),
    "error" (layer 2 failed and the body raised).
    """
    common = {"job_id": job, "run_id": job, "pipeline": "enrich", "service": "worker"}
    events = [
        make(0, "pipeline_start", status="running", **common),
        make(0.1, "layer_start", layer=1, layer_name="fetch", status="running", **common),
        make(0.6, "layer_complete", layer=1, layer_name="fetch", status="success",
             duration_ms=500, **common),
        make(0.7, "layer_start", layer=2, layer_name="score", status="running", **common),
    ]  # fmt: skip
    if outcome == "success":
        events.append(
            make(0.9, "layer_complete", layer=2, layer_name="score", status="success",
                 duration_ms=200, **common)
        )  # fmt: skip
    else:
        events.append(
            make(0.9, "layer_error", layer=2, layer_name="score", status="error",
                 duration_ms=200, level="error",
                 error={"type": "KeyError", "message": "'fit_score'"}, **common)
        )  # fmt: skip
    if outcome != "error":
        events.append(
            make(1.0, "layer_skip", layer=3, layer_name="publish", status="skipped",
                 reason="disabled", **common)
        )  # fmt: skip
    level = {"success": "info", "partial": "warn", "error": "error"}[outcome]
    events.append(
        make(1.1, "pipeline_complete", status=outcome, duration_ms=1100, level=level, **common)
    )
    return events


def steps_of(run: Run | None) -> list[tuple[str, int | None, str]]:
    assert run is not None
    return [(step.name, step.index, step.status) for step in run.steps]


async def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything the derived tables answer, for comparing two ways of building them."""
    runs = await store.runs(RunQuery(limit=1000))
    details = [await store.run(summary.run_id) for summary in runs]
    groups = await store.error_groups(ErrorGroupQuery(limit=1000))
    window = AnalysisWindow(since=BASE_TIME - 3600, until=BASE_TIME + 3600)
    return (
        runs,
        details,
        groups,
        await store.window_counts(window),
        await store.window_errors(window, 100),
        await store.window_steps(window, 100),
    )


# --------------------------------------------------------------------------- runs


async def test_langgraph_run_that_completes_is_success(store: Store) -> None:
    """graph_start, two nodes and graph_complete make a successful graph run in step order."""
    await store.append(graph_run())
    expected = Run(
        run_id="r1",
        kind="graph",
        status="success",
        service="langgraph",
        name="agent",
        started_at=at(0),
        ended_at=at(2.3),
        duration_ms=2300.0,
        step_count=2,
        error_count=0,
        steps=[
            RunStep("plan", "node", 1, "success", at(0.1), 1000.0, None),
            RunStep("act", "node", 2, "success", at(1.2), 1000.0, None),
        ],
    )
    assert expected == await store.run("r1")


async def test_failing_node_and_graph_failed_make_an_error_run(store: Store) -> None:
    """node_failed marks its step error with an error summary; graph_failed makes the run error."""
    await store.append(graph_run(fail=True))
    run = await store.run("r1")
    assert run is not None
    failed = run.steps[1]
    expected_error = {
        "type": "TimeoutError",
        "message": "upstream timed out after 30s",
        "category": "timeout",
        "fingerprint": analyze_error(
            {"type": "TimeoutError", "message": "upstream timed out after 30s"}
        ).fingerprint,
    }
    assert ("error", 1, "error", expected_error) == (
        run.status,
        run.error_count,
        failed.status,
        failed.error,
    )


async def test_failed_node_in_a_completed_graph_is_partial(store: Store) -> None:
    """A node that failed inside a graph that still completed makes the run partial."""
    events = graph_run(fail=True, complete=False)
    events.append(make(4, "graph_complete", run_id="r1", graph="agent", duration_ms=4000))
    await store.append(events)
    run = await store.run("r1")
    assert run is not None
    assert ("partial", 1) == (run.status, run.error_count)


@pytest.mark.parametrize(
    ("outcome", "status", "steps"),
    [
        ("success", "success", [("fetch", 1, "success"), ("score", 2, "success"),
                                ("publish", 3, "skipped")]),
        ("partial", "partial", [("fetch", 1, "success"), ("score", 2, "error"),
                                ("publish", 3, "skipped")]),
        ("error", "error", [("fetch", 1, "success"), ("score", 2, "error")]),
    ],
)  # fmt: skip
async def test_pipeline_status_follows_its_layers_and_completion(
    store: Store, outcome: str, status: str, steps: list[tuple[str, int, str]]
) -> None:
    """Skips keep a pipeline successful; a failed layer with completion is partial; a raise is
    error."""
    await store.append(pipeline_run("job-1", outcome))
    run = await store.run("job-1")
    assert run is not None
    assert ("pipeline", status, "enrich", "worker", steps) == (
        run.kind,
        run.status,
        run.name,
        run.service,
        steps_of(run),
    )


async def test_out_of_order_events_give_the_same_run(tmp_path: Path) -> None:
    """Events arriving in any order, one per batch or shuffled in one batch, derive the same
    run as in order."""
    events = graph_run(fail=True) + pipeline_run("job-9", "partial")
    results = []
    for name, order, one_by_one in (
        ("in-order", events, False),
        ("reversed", events[::-1], True),
        ("shuffled", random.Random(4).sample(events, len(events)), True),
        ("shuffled-batch", random.Random(5).sample(events, len(events)), False),
    ):
        async with SqliteStore(tmp_path / f"{name}.db", retention_days=None) as store:
            if one_by_one:
                for event in order:
                    await store.append([event])
            else:
                await store.append(order)
            results.append((await store.run("r1"), await store.run("job-9")))
    assert [results[0]] * 4 == results


async def test_run_without_start_event_still_forms(store: Store) -> None:
    """Node events without graph_start form a running graph run; a step whose start was lost
    has its start estimated from its end and duration."""
    common = {"run_id": "r2", "graph": "agent"}
    await store.append(
        [
            make(5, "node_complete", node="plan", step=1, duration_ms=1500, **common),
            make(6, "node_start", node="act", step=2, **common),
        ]
    )
    expected = RunSummary(
        run_id="r2",
        kind="graph",
        status="running",
        service="langgraph",
        name="agent",
        started_at=at(3.5),
        ended_at=None,
        duration_ms=None,
        step_count=2,
        error_count=0,
    )
    run = await store.run("r2")
    assert run is not None
    assert ([expected], [("plan", 1, "success"), ("act", 2, "running")], at(3.5)) == (
        await store.runs(RunQuery()),
        steps_of(run),
        run.steps[0].started_at,
    )


async def test_retried_node_in_one_step_keeps_both_attempts(store: Store) -> None:
    """A node retried in the same superstep (start, fail, start, complete) is two attempts."""
    common = {"run_id": "r3", "node": "fetch", "step": 1}
    await store.append(
        [
            make(0, "node_start", **common),
            make(1, "node_failed", level="error", error={"type": "OSError", "message": "x"},
                 duration_ms=1000, **common),
            make(2, "node_start", **common),
            make(3, "node_complete", duration_ms=1000, **common),
            make(4, "graph_complete", run_id="r3"),
        ]
    )  # fmt: skip
    run = await store.run("r3")
    assert [("fetch", 1, "error"), ("fetch", 1, "success")] == steps_of(run)
    assert run is not None
    assert "partial" == run.status


async def test_duplicate_events_are_not_counted_twice(store: Store) -> None:
    """Re-sent events (same event_id), across and within batches, change no step or count."""
    events = graph_run(fail=True) + pipeline_run("job-2", "partial")
    await store.append(events)
    before = await snapshot(store)
    await store.append(events)
    await store.append(events[:3] + events[:3])
    assert before == await snapshot(store)


async def test_command_exit_finishes_a_pipeline_without_completion(store: Store) -> None:
    """`logbeacon run`'s command_exit ends a pipeline that never logged pipeline_complete;
    command events alone form no visible run."""
    common = {"job_id": "job-3", "run_id": "job-3", "service": "run"}
    await store.append(
        [
            make(0, "command_start", command="python", **common),
            make(1, "layer_start", layer=1, **common),
            make(2, "command_exit", exit_code=137, level="error", **common),
            make(0, "command_start", command="make", job_id="job-4", run_id="job-4"),
            make(3, "command_exit", exit_code=0, job_id="job-4", run_id="job-4"),
        ]
    )
    run = await store.run("job-3")
    assert run is not None
    assert (("pipeline", "error", [("layer 1", 1, "running")]), None, ["job-3"]) == (
        (run.kind, run.status, steps_of(run)),
        await store.run("job-4"),
        [summary.run_id for summary in await store.runs(RunQuery())],
    )


async def test_run_filters_and_order(store: Store) -> None:
    """Run filters: since (on the start), status, service, limit; newest start first, ties by
    run_id descending."""
    late = [dict(e, timestamp=at(100 + i)) for i, e in enumerate(graph_run("r-late"))]
    await store.append(graph_run("r-ok") + graph_run("r-bad", fail=True))
    await store.append([normalize_event(e) for e in late])
    await store.append(pipeline_run("job-5", "error"))

    async def ids(**filters: Any) -> list[str]:
        return [run.run_id for run in await store.runs(RunQuery(**filters))]

    assert (
        ["r-late", "r-ok", "r-bad", "job-5"],
        ["r-late"],
        ["r-bad", "job-5"],
        ["job-5"],
        ["r-late", "r-ok"],
    ) == (
        await ids(),
        await ids(since=BASE_TIME + 50),
        await ids(status="error"),
        await ids(service="worker"),
        await ids(limit=2, status="success"),
    )


async def test_steps_per_run_are_capped(store: Store) -> None:
    """A run that reuses one run_id forever stops growing at MAX_STEPS_PER_RUN steps."""
    events = [
        make(i / 1000, "node_complete", run_id="forever", node="n", step=i, duration_ms=1)
        for i in range(MAX_STEPS_PER_RUN + 5)
    ]
    await store.append(events)
    run = await store.run("forever")
    assert run is not None
    assert (MAX_STEPS_PER_RUN, MAX_STEPS_PER_RUN) == (run.step_count, len(run.steps))


# --------------------------------------------------------------------------- error groups


def failure(seconds: float, *, service: str = "api", trace: int = 1, **fields: Any) -> Event:
    error = {"type": "ConnectionError", "message": f"connection refused by db-{trace}.internal"}
    raw: dict[str, Any] = {
        "level": "error",
        "service": service,
        "environment": "prod",
        "trace_id": f"{trace:032x}",
        "error": error,
    }
    raw.update(fields)
    return make(seconds, "db_failed", **raw)


async def test_error_group_counts_times_services_and_samples(store: Store) -> None:
    """A group counts every occurrence, spans first to last seen, lists its services (most
    occurrences first), keeps the latest event as sample and the five latest distinct traces."""
    events = [failure(i, service="api" if i < 5 else "worker", trace=i % 7 + 1) for i in range(8)]
    events.append(failure(-5, trace=9))  # an older occurrence arriving last
    await store.append(events[:4])
    await store.append(events[4:])
    (group,) = await store.error_groups(ErrorGroupQuery())
    expected_traces = [f"{t:032x}" for t in (1, 7, 6, 5, 4)]
    assert (9, at(-5), at(7), ["api", "worker"], events[7], expected_traces, "network") == (
        group.count,
        group.first_seen,
        group.last_seen,
        group.services,
        group.sample_event,
        group.sample_trace_ids,
        group.category,
    )


async def test_missing_analysis_is_filled_and_plain_error_events_group(store: Store) -> None:
    """A browser error without category/fingerprint gets them from analyze_error; an error-level
    event without an error object groups by event name and message."""
    browser = make(0, "window_error", service="web", level="error",
                   error={"type": "TypeError", "message": "x is undefined"})  # fmt: skip
    plain = [make(i, "payment_failed", service="api", level="error", message=f"order {i}")
             for i in (1, 2)]  # fmt: skip
    await store.append([browser, *plain])
    groups = {g.services[0]: g for g in await store.error_groups(ErrorGroupQuery())}
    analysis = analyze_error({"type": "TypeError", "message": "x is undefined"})
    assert (
        (analysis.fingerprint, analysis.category, list(analysis.suggestions), 1),
        (None, "order 2", 2),
    ) == (
        (groups["web"].fingerprint, groups["web"].category, groups["web"].suggestions,
         groups["web"].count),
        (groups["api"].type, groups["api"].message, groups["api"].count),
    )  # fmt: skip


async def test_error_group_filters(store: Store) -> None:
    """since keeps groups last seen at/after it; service and environment restrict the counts,
    services, times and sample to those occurrences; limit caps the list."""
    other = {"type": "ValueError", "message": "bad input"}
    await store.append(
        [
            failure(0, service="api"),
            failure(1, service="worker"),
            failure(2, service="worker", environment="staging"),
            failure(50, service="api", error=other),
        ]
    )
    network = (await store.error_groups(ErrorGroupQuery(service="worker")))[0]
    staged = await store.error_groups(ErrorGroupQuery(environment="staging"))
    assert (
        ["bad input"],
        (2, ["worker"], at(1), at(2)),
        [(1, at(2))],
        ["bad input", "connection refused by db-1.internal"],
        [],
    ) == (
        [g.message for g in await store.error_groups(ErrorGroupQuery(since=BASE_TIME + 10))],
        (network.count, network.services, network.first_seen, network.last_seen),
        [(g.count, g.last_seen) for g in staged],
        [g.message for g in await store.error_groups(ErrorGroupQuery(limit=5))],
        await store.error_groups(ErrorGroupQuery(service="api", since=BASE_TIME + 100)),
    )


# --------------------------------------------------------------------------- window analysis


async def test_window_counts_timeline_sums_to_totals(store: Store) -> None:
    """Counts by level and service match the events, and the timeline buckets sum to them."""
    events = [
        make(i * 7.0, "tick", service="api" if i % 3 else "web",
             level=("info", "warn", "error")[i % 3])
        for i in range(100)
    ]  # fmt: skip
    await store.append(events)
    counts = await store.window_counts(
        AnalysisWindow(since=BASE_TIME, until=BASE_TIME + 700, buckets=5)
    )
    events_by_service = {c.service: (c.events, c.errors) for c in counts.by_service}
    assert (
        {"debug": 0, "info": 34, "warn": 33, "error": 33, "critical": 0},
        {"api": (66, 33), "web": (34, 0)},
        (100, 33),
        (4, 180.0, at(0), at(720)),  # 12 whole minutes in buckets of 3
    ) == (
        counts.by_level,
        events_by_service,
        (sum(b.events for b in counts.timeline), sum(b.errors for b in counts.timeline)),
        (len(counts.timeline), counts.bucket_seconds, counts.since, counts.until),
    )


async def test_window_errors_and_step_percentiles(store: Store) -> None:
    """Top errors count only the window's occurrences; p50/p95 are nearest-rank over the
    window's step durations."""
    await store.append([failure(i) for i in range(5)] + [failure(600 + i) for i in range(3)])
    await store.append(
        [
            make(i, "node_complete", node="slow", duration_ms=float(d), run_id="rw")
            for i, d in enumerate(range(10, 210, 10))
        ]
        + [make(30, "layer_error", layer=2, layer_name="score", duration_ms=5.0, level="error",
                job_id="j")]
    )  # fmt: skip
    window = AnalysisWindow(since=BASE_TIME, until=BASE_TIME + 60)
    errors = await store.window_errors(window)
    steps = await store.window_steps(window)
    assert (
        [(5, at(0), at(4))],
        [("node", "slow", 20, 0, 100.0, 190.0, 200.0), ("layer", "score", 1, 1, 5.0, 5.0, 5.0)],
    ) == (
        [(g.count, g.first_seen, g.last_seen) for g in errors if g.type == "ConnectionError"],
        [(s.kind, s.name, s.count, s.errors, s.p50_ms, s.p95_ms, s.max_ms) for s in steps.steps],
    )


# --------------------------------------------------------------------------- schema and retention


async def test_migration_backfills_an_older_database(tmp_path: Path) -> None:
    """A version-1 database with events gets its runs, groups and rollups when the new code
    opens it, equal to what incremental derivation builds."""
    path = tmp_path / "events.db"
    events = (
        graph_run("r1", fail=True)
        + graph_run("r2")
        + pipeline_run("job-6", "partial")
        + [failure(i, trace=i) for i in range(7)]
        + [make(i, "http_request", service="api") for i in range(50)]
    )
    async with SqliteStore(path, retention_days=None) as store:
        await store.append(events[::2])
        await store.append(events[1::2])
        expected = await snapshot(store)
    with sqlite3.connect(path) as conn:  # make it the version-1 database an older release left
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN"
                " ('events', 'names', 'state') AND name NOT LIKE 'fts%'"
            )
        ]
        for table in tables:
            conn.execute(f"DROP TABLE {table}")
        conn.execute("ALTER TABLE state DROP COLUMN fts_gen")  # added by version 3
        conn.execute("PRAGMA user_version = 1")
    async with SqliteStore(path, retention_days=None) as store:
        stats = await store.stats()
        assert (SCHEMA_VERSION, expected) == (stats.schema_version, await snapshot(store))


async def test_retention_purges_derived_rows_with_their_events(store: Store) -> None:
    """Purging old events also drops runs, groups, rollups and window rows of that age."""
    await store.append(graph_run("old", fail=True))
    fresh = [
        normalize_event(dict(e, timestamp=at(7200 + i))) for i, e in enumerate(graph_run("new"))
    ]
    await store.append(fresh)
    await store.purge(BASE_TIME + 3600)
    window = AnalysisWindow(since=BASE_TIME - 60, until=BASE_TIME + 10_000)
    counts = await store.window_counts(window)
    assert (["new"], [], [], len(fresh)) == (
        [run.run_id for run in await store.runs(RunQuery())],
        await store.error_groups(ErrorGroupQuery()),
        await store.window_errors(window),
        sum(bucket.events for bucket in counts.timeline),
    )


def test_store_satisfies_the_protocol_with_derived_reads(tmp_path: Path) -> None:
    """SqliteStore offers every derived read of the Store protocol."""
    from logbeacon.store.base import Store as StoreProtocol

    names = ("runs", "run", "error_groups", "window_counts", "window_errors", "window_steps")
    store = SqliteStore(tmp_path / "x.db")
    assert (True, [True] * len(names)) == (
        isinstance(store, StoreProtocol),
        [callable(getattr(store, name, None)) for name in names],
    )
