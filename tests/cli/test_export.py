"""`logbeacon export` / `logbeacon import`: JSON lines out of one store and into another."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from logbeacon.cli.main import app
from logbeacon.event import format_timestamp, normalize_event
from logbeacon.redact import default_redactor
from logbeacon.store import open_store
from logbeacon.store.base import ErrorGroupQuery, Query, RunQuery, Store
from logbeacon.store.sqlite import SqliteStore

Event = dict[str, Any]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _stored(raw: dict[str, Any], received: float) -> Event:
    """An event as the server stores it: normalised, redacted, stamped with `received_at`."""
    event = default_redactor().redact_event(normalize_event(raw, now=received))
    event["received_at"] = format_timestamp(received)
    return event


def _mixed_events(now: float) -> list[Event]:
    """Requests, a LangGraph run with a failing node, errors, long and odd text."""
    events: list[Event] = []
    for i in range(120):
        t = now - 600 + i
        events.append(
            _stored(
                {
                    "event": "http_request",
                    "service": "api" if i % 3 else "web",
                    "level": "warn" if i % 7 == 0 else "info",
                    "trace_id": TRACE if i < 10 else None,
                    "http": {"method": "GET", "route": "/items/{id}", "status": 200},
                    "duration_ms": i * 1.5,
                    "message": f"request {i} for bob@example.com\u2028line two",
                    "timestamp": format_timestamp(t),
                    "fit_score": i,
                },
                t + 0.5,
            )
        )
    run = "run-42"
    for i, node in enumerate(("planner", "developer")):
        t = now - 300 + i
        events.append(
            _stored(
                {"event": "node_start", "service": "langgraph", "run_id": run, "node": node}
                | {"timestamp": format_timestamp(t)},
                t + 0.1,
            )
        )
        failed = node == "developer"
        end: dict[str, Any] = {
            "event": "node_failed" if failed else "node_complete",
            "service": "langgraph",
            "level": "error" if failed else "info",
            "run_id": run,
            "node": node,
            "duration_ms": 250.0,
            "timestamp": format_timestamp(t + 0.25),
        }
        if failed:
            end["error"] = {"type": "TimeoutError", "message": "LLM call timed out after 30s"}
        events.append(_stored(end, t + 0.3))
    events.append(_stored({"event": "log", "message": "x" * 10_000}, now - 10))
    return events


async def _seed(path: Path, events: list[Event], batch: int = 5000) -> None:
    store = SqliteStore(path, retention_days=None)
    await store.open()
    try:
        for start in range(0, len(events), batch):
            await store.append(events[start : start + batch])
    finally:
        await store.close()


async def _answers(store: Store) -> dict[str, Any]:
    """What the read APIs answer for the seeded events."""
    everything: list[Event] = []
    query = Query(limit=1000)
    while True:
        page = await store.query(query)
        everything.extend(page.events)
        if page.next_cursor is None:
            break
        query = Query(limit=1000, cursor=page.next_cursor)
    runs = await store.runs(RunQuery())
    return {
        "all": everything,
        "service": (await store.query(Query(service="web", limit=1000))).events,
        "level": (await store.query(Query(level="warn", limit=1000))).events,
        "text": (await store.query(Query(q="timed", limit=1000))).events,
        "trace": await store.trace(TRACE),
        "runs": runs,
        "run": await store.run("run-42"),
        "errors": await store.error_groups(ErrorGroupQuery()),
    }


async def _answers_of(url: str, data_dir: Path) -> dict[str, Any]:
    store = open_store(url, data_dir=data_dir, durability="normal", retention_days=None)
    await store.open()
    try:
        return await _answers(store)
    finally:
        await store.close()


def _cli(*args: str, input_bytes: bytes | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input_bytes)


def _logbeacon(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("logbeacon")
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_round_trip_from_sqlite_through_jsonl_into_chdb_answers_the_same(tmp_path: Path) -> None:
    """SQLite → `export` → `import` into chdb: every read API answers the same afterwards."""
    pytest.importorskip("chdb")
    data = tmp_path / "data"
    asyncio.run(_seed(data / "events.db", _mixed_events(time.time())))
    dump = tmp_path / "events.jsonl"

    exported = _logbeacon("export", "--data-dir", str(data), "-o", str(dump))
    imported = _logbeacon("import", str(dump), "--data-dir", str(data), "--store", "chdb://ch")

    assert (0, 0) == (exported.returncode, imported.returncode), exported.stderr + imported.stderr
    assert "imported 125 events, 0 duplicates" in imported.stderr
    source = asyncio.run(_answers_of("sqlite:", data))
    target = asyncio.run(_answers_of("chdb://ch", data))
    assert 125 == len(source["all"])
    assert source == target


def test_export_is_newest_first_one_json_object_per_line(tmp_path: Path) -> None:
    """Each line is one stored event, newest first; U+2028 is escaped so lines stay lines."""
    data = tmp_path / "data"
    events = _mixed_events(time.time())
    asyncio.run(_seed(data / "events.db", events))

    result = _cli("export", "--data-dir", str(data))

    assert 0 == result.exit_code, result.stderr
    lines = result.stdout_bytes.split(b"\n")
    assert b"" == lines.pop()
    assert all(b"\xe2\x80\xa8" not in line for line in lines)
    exported = [orjson.loads(line) for line in lines]
    stamps = [(e["timestamp"], e["event_id"]) for e in exported]
    assert sorted(stamps, reverse=True) == stamps
    by_id = {e["event_id"]: e for e in events}
    assert by_id == {e["event_id"]: e for e in exported}


def test_export_filters_by_time_and_service(tmp_path: Path) -> None:
    """`--since` and `--service` select like `logbeacon query` does."""
    data = tmp_path / "data"
    events = _mixed_events(time.time())
    asyncio.run(_seed(data / "events.db", events))
    since = format_timestamp(time.time() - 500)

    result = _cli("export", "--data-dir", str(data), "--since", since, "--service", "web")

    assert 0 == result.exit_code, result.stderr
    expected = sorted(
        e["event_id"] for e in events if e["service"] == "web" and e["timestamp"] >= since
    )
    actual = sorted(orjson.loads(line)["event_id"] for line in result.stdout_bytes.splitlines())
    assert expected == actual
    assert expected


def test_export_of_a_missing_store_fails_without_creating_one(tmp_path: Path) -> None:
    """Exporting from a data dir with no store is an error (exit 2), not an empty export."""
    result = _cli("export", "--data-dir", str(tmp_path / "nothing"), "-o", str(tmp_path / "x"))

    assert 2 == result.exit_code
    assert "no event store" in result.stderr
    assert [] == sorted(p.name for p in tmp_path.iterdir())


def test_reimporting_a_file_stores_nothing_twice_and_reports_duplicates(tmp_path: Path) -> None:
    """Event ids are kept: the second import of the same file reports every event duplicate."""
    source, target = tmp_path / "a", tmp_path / "b"
    asyncio.run(_seed(source / "events.db", _mixed_events(time.time())))
    dump = tmp_path / "events.jsonl"
    assert 0 == _cli("export", "--data-dir", str(source), "-o", str(dump)).exit_code

    first = _cli("import", str(dump), "--data-dir", str(target), "--batch", "50")
    second = _cli("import", str(dump), "--data-dir", str(target), "--batch", "50")

    assert (0, 0) == (first.exit_code, second.exit_code)
    assert "imported 125 events, 0 duplicates" in first.stderr
    assert "imported 0 events, 125 duplicates" in second.stderr
    assert asyncio.run(_answers_of("sqlite:", source)) == asyncio.run(
        _answers_of("sqlite:", target)
    )


def test_bad_lines_are_reported_by_number_and_skipped(tmp_path: Path) -> None:
    """A torn line, garbage, a non-object and an invalid event are each reported with their
    line number; every good line is still imported and the exit code is 1."""
    good = [orjson.dumps(e) for e in _mixed_events(time.time())[:3]]
    torn = good[2][: len(good[2]) // 2]
    body = b"\n".join(
        [good[0], b"not json at all", b"[1, 2]", good[1], b'{"level": "info"}', b"", torn]
    )

    result = _cli("import", "-", "--data-dir", str(tmp_path / "data"), input_bytes=body)

    assert 1 == result.exit_code
    reported = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert [
        "line 2: not valid JSON (torn or garbled line)",
        "line 3: not a JSON object",
        "line 5: invalid event (missing_event)",
        "line 7: not valid JSON (torn or garbled line)",
    ] == reported
    assert "imported 2 events, 0 duplicates (already stored), 4 bad lines skipped" in (
        result.stderr
    )


def test_import_redacts_and_skips_events_older_than_the_retention(tmp_path: Path) -> None:
    """Imported events pass the redactor, and expired ones are skipped and counted."""
    now = time.time()
    lines = [
        {"event": "login", "password": "hunter2-hunter2", "timestamp": format_timestamp(now)},
        {"event": "old", "timestamp": format_timestamp(now - 20 * 86_400)},
    ]
    body = b"\n".join(orjson.dumps(line) for line in lines) + b"\n"
    data = tmp_path / "data"

    result = _cli("import", "-", "--data-dir", str(data), input_bytes=body)

    assert 0 == result.exit_code, result.stderr
    assert "1 events older than the retention (14 days) were skipped" in result.stderr
    (stored,) = asyncio.run(_answers_of("sqlite:", data))["all"]
    assert ("login", "[REDACTED]") == (stored["event"], stored["password"])


def test_export_memory_stays_bounded_for_50000_events(tmp_path: Path) -> None:
    """Exporting 50,000 events holds about one page in memory, not the whole store."""
    data = tmp_path / "data"
    now = time.time()
    events = [
        _stored({"event": "tick", "message": f"event {i} " + "y" * 150}, now - i / 100)
        for i in range(50_000)
    ]
    asyncio.run(_seed(data / "events.db", events))
    del events
    dump = tmp_path / "events.jsonl"

    tracemalloc.start()
    try:
        result = _cli("export", "--data-dir", str(data), "-o", str(dump))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert 0 == result.exit_code, result.stderr
    size = dump.stat().st_size
    with dump.open("rb") as lines:
        assert 50_000 == sum(1 for _ in lines)
    assert size > 15_000_000
    assert peak < size / 4, f"peak {peak} bytes for a {size}-byte export"
