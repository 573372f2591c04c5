"""The SQLite schema, its forward migrations, connection pragmas and the time-ordered key.

Layout (docs/storage.md has the reasoning and the measured sizes):

- `events`: one row per event. Its INTEGER PRIMARY KEY is a *time key* —
  `timestamp_µs << 10 | slot` — so the table itself is the time index: newest-first reads,
  time ranges and retention are range scans of the table b-tree, and the full-text indexes,
  which store this key, list their events in time order too. Filterable fields are small
  columns; the rest of the event is a JSON body.
- `fts`: one contentless FTS5 index (rowid = time key, detail=none) holding the words of
  event name, message and error type/message (`q`) *and* one hashed key token per
  correlation id, service, event name, node and warn+ level — the index every exact filter
  uses. FTS5 writes sorted, delta-compressed segments and merges them in the background: far
  cheaper than one random b-tree insert per id per event, and a fraction of the size.
- `names`: dictionary of low-cardinality strings (service, environment, event, node, logger,
  release); `events` stores their integer codes.
- `state`: one row of counters kept in the same transactions as the data they count;
  `fts_gen` is the commit generation up to which `fts` is complete (it trails the commits by
  up to a quarter second, and readers flush it first: see `_sqlite_writer`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Final

from logbeacon.exceptions import StoreError

__all__ = [
    "KEY_SHIFT",
    "SCHEMA_VERSION",
    "configure_connection",
    "key_micros",
    "migrate",
    "schema_version",
]

KEY_SHIFT: Final = 10  # 1024 slots per microsecond
_KEY_MAX_MICROS: Final = 1 << 52  # year 2112; later timestamps share the last slots


def key_micros(micros: int) -> int:
    """The microsecond a timestamp occupies in the key space (clamped to what fits)."""
    if micros < 0:
        return 0
    return min(micros, _KEY_MAX_MICROS)


_V1: Final = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    gen INTEGER NOT NULL,
    lvl INTEGER NOT NULL,
    svc INTEGER,
    env INTEGER,
    evt INTEGER,
    node INTEGER,
    lg INTEGER,
    rel INTEGER,
    eid NOT NULL,
    trace,
    span,
    req,
    sess,
    run,
    msg TEXT,
    body BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_eid ON events (eid);
CREATE TABLE IF NOT EXISTS names (
    code INTEGER PRIMARY KEY,
    value TEXT NOT NULL UNIQUE
);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5 (
    text, content='', detail=none, columnsize=0, tokenize='unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS state (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    gen INTEGER NOT NULL,
    events INTEGER NOT NULL,
    max_bump INTEGER NOT NULL,
    secret BLOB NOT NULL
);
INSERT OR IGNORE INTO state (one, gen, events, max_bump, secret)
    VALUES (1, 0, 0, 0, randomblob(16));
"""


def _v2_derived(conn: sqlite3.Connection) -> None:
    """Runs, error groups and analysis rollups, backfilled from existing events."""
    from logbeacon.store._sqlite_derived import migrate_v2  # it imports this module

    migrate_v2(conn)


def _v3_trailing_index(conn: sqlite3.Connection) -> None:
    """The full-text index trails commits: `fts_gen` is the generation up to which it is
    complete. Every earlier database indexed in the commit itself, so it is complete."""
    conn.execute("ALTER TABLE state ADD COLUMN fts_gen INTEGER NOT NULL DEFAULT 0")
    conn.execute("UPDATE state SET fts_gen = gen")


_MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (
    lambda conn: _script(conn, _V1),
    _v2_derived,
    _v3_trailing_index,
)

SCHEMA_VERSION: Final = len(_MIGRATIONS)


def _script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def schema_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema forward to `target`, one version per transaction; return the old one.

    A database from a newer logbeacon is refused rather than guessed at.
    """
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the database schema is version {current} but this logbeacon knows only up to "
            f"{SCHEMA_VERSION}; upgrade logbeacon or point --data-dir somewhere else"
        )
    for version in range(current, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            _MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return current


def configure_connection(
    conn: sqlite3.Connection,
    *,
    synchronous: str,
    busy_timeout_ms: int,
    writer: bool,
    max_db_bytes: int | None = None,
) -> None:
    """Apply the pragmas documented in docs/storage.md (pinned by tests, DUR-01)."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    if writer:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(
                f"SQLite refused WAL mode (got {mode!r}); put the data directory on a local "
                "file system that supports shared memory"
            )
        conn.execute("PRAGMA cache_size = -32768")  # 32 MiB
        conn.execute("PRAGMA wal_autocheckpoint = 2000")  # pages (8 MiB) between checkpoints
        conn.execute("PRAGMA journal_size_limit = 67108864")  # truncate the WAL back to 64 MiB
        conn.execute("PRAGMA secure_delete = FAST")
        if max_db_bytes is not None:
            page_size: int = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(1, max_db_bytes // page_size)}")
    else:
        conn.execute("PRAGMA cache_size = -16384")  # 16 MiB
        conn.execute("PRAGMA mmap_size = 268435456")
        conn.execute("PRAGMA query_only = ON")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA temp_store = MEMORY")
