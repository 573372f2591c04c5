"""The Store contract, run against every store: SQLite (writer thread and writer process) and
ClickHouse (in-process via chdb).

The behaviour tests of `test_sqlite_query`, `test_sqlite_roundtrip` and `test_sqlite_derived`
that only use the Store protocol are collected here again with `store` parametrised over both
stores, and a differential test feeds one mixed corpus to both and compares every answer.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from logbeacon.store._clickhouse_exec import parse_target
from logbeacon.store.base import (
    EXACT_FILTERS,
    AnalysisWindow,
    ErrorGroupQuery,
    Query,
    RunQuery,
    Store,
)
from logbeacon.store.clickhouse import ClickHouseStore
from logbeacon.store.sqlite import SqliteStore

# Re-collected here so they run against every store (they use only the Store protocol).
from tests.store.test_sqlite_derived import (  # noqa: F401
    failure,
    graph_run,
    pipeline_run,
    test_command_exit_finishes_a_pipeline_without_completion,
    test_duplicate_events_are_not_counted_twice,
    test_error_group_counts_times_services_and_samples,
    test_error_group_filters,
    test_failed_node_in_a_completed_graph_is_partial,
    test_failing_node_and_graph_failed_make_an_error_run,
    test_langgraph_run_that_completes_is_success,
    test_missing_analysis_is_filled_and_plain_error_events_group,
    test_pipeline_status_follows_its_layers_and_completion,
    test_retention_purges_derived_rows_with_their_events,
    test_retried_node_in_one_step_keeps_both_attempts,
    test_run_filters_and_order,
    test_run_without_start_event_still_forms,
    test_steps_per_run_are_capped,
    test_window_counts_timeline_sums_to_totals,
    test_window_errors_and_step_percentiles,
)
from tests.store.test_sqlite_query import (  # noqa: F401
    corpus,
    test_cursor_paging_is_stable_while_appending,
    test_each_exact_filter_alone,
    test_event_is_searchable_as_soon_as_append_returns,
    test_events_sharing_a_timestamp_page_without_loss,
    test_filters_combine_with_and,
    test_hostile_search_text_is_just_words,
    test_index_driven_queries_respect_time_range_and_paging,
    test_level_is_a_minimum,
    test_limit_bounds,
    test_non_ascii_search_uses_the_index_tokenizer,
    test_results_are_newest_first_by_timestamp,
    test_search_text_cannot_reach_key_tokens,
    test_since_is_inclusive_and_until_exclusive,
    test_tampered_cursor_is_rejected,
    test_text_search_combines_with_filters,
    test_text_search_is_all_words_case_insensitive,
    test_trace_is_oldest_first_and_exact,
    test_unknown_level_is_a_value_error,
    test_unknown_values_match_nothing,
)
from tests.store.test_sqlite_roundtrip import (  # noqa: F401
    test_duplicates_across_concurrent_batches_are_stored_once,
    test_duplicates_inside_one_batch_keep_the_first,
    test_empty_append_stores_nothing,
    test_event_without_event_id_is_rejected_with_its_batch,
    test_every_kind_of_event_round_trips_exactly,
    test_get_of_unknown_id_is_none,
    test_nul_in_message_is_not_truncated,
    test_query_and_trace_return_the_same_dicts,
    test_resent_batch_is_stored_once,
)

from .conftest import BASE_TIME

pytest.importorskip("chdb")

Event = dict[str, Any]
KINDS = ("sqlite", "sqlite-process", "chdb")


async def open_store(kind: str, directory: Path) -> Store:
    """An open store of `kind` in `directory`, retention off (tests use old timestamps)."""
    instance: Store
    if kind.startswith("sqlite"):
        # "sqlite-process": the same store with its writer in a child process.
        instance = SqliteStore(
            directory / "events.db", retention_days=None, writer_process=kind != "sqlite"
        )
    else:
        target = parse_target(f"chdb://{directory / 'chdb'}", data_dir=str(directory))
        instance = ClickHouseStore(target, retention_days=None)
    await instance.open()
    return instance


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An open store of each kind (overrides the SQLite-only fixture of conftest)."""
    instance = await open_store(request.param, tmp_path)
    yield instance
    await instance.close()


# --------------------------------------------------------------------------- differential


def _corpus(make_event: Callable[..., Event]) -> list[list[Event]]:
    """A mixed corpus in batches: plain events, runs, failures, odd values, shared
    timestamps, re-sent events."""
    rng = random.Random(7)
    plain = []
    for i in range(400):
        plain.append(
            make_event(
                service=("api", "web", "langgraph", "worker")[i % 4],
                environment=("prod", "staging")[i % 2],
                event=("http_request", "db_query", "llm_complete", "window_error")[i % 4],
                level=("debug", "info", "warn", "error", "critical")[i % 5],
                trace_id=f"{i // 8 + 1:032x}",
                request_id=f"req-{i // 4}",
                session_id=f"sess-{i % 9}",
                correlation_id=f"corr-{i % 11}",
                message=f"call {i} {'timeout exceeded' if i % 7 == 0 else 'fine'} café",
            )
        )
    same = [make_event(timestamp="2026-01-01T00:00:00.500000Z") for _ in range(30)]
    derived = (
        graph_run("r1", fail=True)
        + graph_run("r2")
        + pipeline_run("job-a", "partial")
        + pipeline_run("job-b", "error")
        + [failure(i, trace=i % 6 + 1, service=("api", "worker")[i % 2]) for i in range(25)]
    )
    everything = plain + same + derived
    rng.shuffle(everything)
    batches = [everything[i : i + 37] for i in range(0, len(everything), 37)]
    batches.append([*everything[:10], make_event()])  # re-sent events
    return batches


async def _answers(store: Store) -> list[Any]:
    """Every read of the protocol over the corpus, pages followed to the end."""
    out: list[Any] = []
    queries = [Query(limit=1000), Query(limit=23), Query(q="timeout", limit=7)]
    queries += [Query(level=level, limit=50) for level in ("warn", "error")]
    queries += [Query(**{name: value}) for name, value in (
        ("service", "web"), ("environment", "staging"), ("event", "db_query"),
        ("trace_id", f"{3:032x}"), ("request_id", "req-7"), ("session_id", "sess-2"),
        ("run_id", "r1"), ("job_id", "job-a"), ("correlation_id", "corr-3"), ("node", "plan"),
    )]  # fmt: skip
    queries.append(Query(since=BASE_TIME + 0.1, until=BASE_TIME + 0.3, service="api", limit=9))
    queries.append(Query(q="caf*", level="info", limit=40))
    assert set(EXACT_FILTERS) <= {
        name for query in queries for name in EXACT_FILTERS if getattr(query, name)
    }
    for query in queries:
        pages = []
        cursor = None
        while True:
            page = await store.query(replace(query, cursor=cursor))
            pages.append(page.events)
            cursor = page.next_cursor
            if cursor is None:
                break
        out.append(pages)
    out.append(await store.trace(f"{5:032x}"))
    out.append(await store.trace(f"{5:032x}", limit=3))
    runs = await store.runs(RunQuery(limit=1000))
    out.append(runs)
    out.append([await store.run(run.run_id) for run in runs])
    out.append(await store.runs(RunQuery(status="error")))
    for group_query in (
        ErrorGroupQuery(),
        ErrorGroupQuery(service="worker"),
        ErrorGroupQuery(environment="prod", limit=2),
        ErrorGroupQuery(since=BASE_TIME + 10),
    ):
        out.append(await store.error_groups(group_query))
    for window in (
        AnalysisWindow(since=BASE_TIME - 3600, until=BASE_TIME + 3600),
        AnalysisWindow(since=BASE_TIME, until=BASE_TIME + 20, service="api", level="error"),
    ):
        out.append(await store.window_counts(window))
        out.append(await store.window_errors(window, 100))
        out.append(await store.window_steps(window, 100))
    stats = await store.stats()
    out.append((stats.events, stats.oldest, stats.newest))
    return out


async def test_every_store_answers_every_read_identically(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """The same batches give equal pages, traces, runs, error groups, analysis and stats."""
    batches = _corpus(make_event)
    answers = []
    appended = []
    for kind in KINDS:
        directory = tmp_path / kind
        directory.mkdir()
        instance = await open_store(kind, directory)
        try:
            results = [await instance.append(batch) for batch in batches]
            appended.append([result.stored for result in results])
            answers.append(await _answers(instance))
        finally:
            await instance.close()
    assert all(stored == appended[0] for stored in appended[1:])
    assert [] == [index for index, answer in enumerate(answers[0]) if not answer]  # not vacuous
    for other in answers[1:]:
        for index, (first, second) in enumerate(zip(answers[0], other, strict=True)):
            assert (index, first) == (index, second)
