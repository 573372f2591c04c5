"""ClickHouse tables of the event store (docs/scale-out.md shows the clustered variant).

`events` — one row per event:

- `PARTITION BY toDate(ts)`: one partition per day, so retention drops whole days and time
  filters skip whole days.
- `ORDER BY (ts, tie, event_id)`: the read order of every event query is newest first by
  time, so the primary index both prunes time ranges and lets `ORDER BY ... DESC LIMIT n`
  read the newest granules only (read-in-order) and stop; the keyset cursor is this very
  key. `tie` (CRC32 of the id, 10 bits: the SQLite store's tie-break) orders events sharing
  a microsecond like SQLite does, and the trailing `event_id` makes the key unique, which
  lets `ReplacingMergeTree` collapse a re-sent copy of an event (same id, same timestamp)
  that two ingest nodes raced to store. A service-first key would speed up one-service
  scans but turn the common "newest N everywhere" and id lookups into whole-day scans.
- `LowCardinality` dictionary columns for level, service, environment, event name, node.
- Bloom-filter skip indexes for the correlation ids and `event_id` (exact lookups among
  millions of distinct values), a `tokenbf_v1` index over `words` (the full-text tokens,
  folded like SQLite's unicode61 tokenizer, space separated) for `q`.
- `body`: the whole event as JSON, ZSTD-compressed; it is what reads return.
- `TTL` deletes rows past the retention; `ingest` is the commit group's stamp (µs), which
  cursors use to hide events that arrived after the first page.

`errors` and `steps` are slim per-occurrence rows of error events and timed node/layer ends
(error groups and window analysis aggregate them); `run_events` keeps each run's events by
run id (runs are derived by replaying them) and `runs` the derived summary of each run
(`ReplacingMergeTree(version)`: the version is the number of events the summary folded, so
the most complete derivation wins whatever order two nodes write in). `meta` holds the cursor
secret: nodes racing to create it each read the smallest value, so they agree.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SCHEMA_VERSION", "TABLES", "statements"]

SCHEMA_VERSION: Final = 1
TABLES: Final = ("events", "errors", "steps", "run_events", "runs", "meta")

_ID_COLUMNS: Final = (
    "trace_id",
    "request_id",
    "session_id",
    "run_id",
    "job_id",
    "correlation_id",
    "event_id",
)


def _ttl(column: str, retention_days: float | None) -> str:
    if retention_days is None:
        return ""
    seconds = max(1, round(retention_days * 86_400))
    return f"\nTTL toDateTime({column}) + toIntervalSecond({seconds})"


def _settings(durability: str) -> str:
    fsync = ", fsync_after_insert = 1, fsync_part_directory = 1" if durability == "full" else ""
    return f"\nSETTINGS index_granularity = 8192{fsync}"


def statements(db: str, *, retention_days: float | None, durability: str) -> list[str]:
    """`CREATE ... IF NOT EXISTS` statements of the single-node schema, in order."""
    settings = _settings(durability)
    ts_ttl = _ttl("ts", retention_days)
    indexes = ",\n    ".join(
        f"INDEX ix_{name} {name} TYPE bloom_filter(0.001) GRANULARITY 1" for name in _ID_COLUMNS
    )
    return [
        f"CREATE DATABASE IF NOT EXISTS {db}",
        f"""CREATE TABLE IF NOT EXISTS {db}.events (
    ts DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    tie UInt16,
    event_id String,
    ingest UInt64 CODEC(Delta, ZSTD(1)),
    level LowCardinality(String),
    service LowCardinality(String),
    environment LowCardinality(String),
    event LowCardinality(String),
    node LowCardinality(String),
    trace_id String,
    request_id String,
    session_id String,
    run_id String,
    job_id String,
    correlation_id String,
    words String CODEC(ZSTD(1)),
    body String CODEC(ZSTD(3)),
    {indexes},
    INDEX ix_words words TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (ts, tie, event_id){ts_ttl}{settings}""",
        f"""CREATE TABLE IF NOT EXISTS {db}.errors (
    ts DateTime64(6, 'UTC'),
    event_id String,
    batch UInt64,
    pos UInt32,
    fingerprint String,
    type Nullable(String),
    message Nullable(String),
    category LowCardinality(String),
    suggestions Nullable(String),
    level LowCardinality(String),
    service LowCardinality(String),
    environment LowCardinality(String),
    trace_id String
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (ts, event_id){ts_ttl}{settings}""",
        f"""CREATE TABLE IF NOT EXISTS {db}.steps (
    ts DateTime64(6, 'UTC'),
    event_id String,
    kind LowCardinality(String),
    name String,
    service LowCardinality(String),
    duration_ms Float64,
    failed UInt8
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (ts, event_id){ts_ttl}{settings}""",
        f"""CREATE TABLE IF NOT EXISTS {db}.run_events (
    run_key String,
    event_id String,
    batch UInt64,
    pos UInt32,
    ts Int64,
    body String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree
ORDER BY (run_key, event_id){settings}""",
        f"""CREATE TABLE IF NOT EXISTS {db}.runs (
    run_id String,
    version UInt64,
    visible UInt8,
    kind Nullable(String),
    status String,
    service Nullable(String),
    name Nullable(String),
    started_at Int64,
    ended_at Nullable(Int64),
    duration_ms Nullable(Float64),
    step_count UInt32,
    error_count UInt32,
    environment Nullable(String),
    last_ts Int64
) ENGINE = ReplacingMergeTree(version)
ORDER BY run_id{settings}""",
        f"""CREATE TABLE IF NOT EXISTS {db}.meta (
    key String,
    value String
) ENGINE = MergeTree
ORDER BY key""",
    ]
