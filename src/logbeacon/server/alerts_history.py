"""Alert history and fingerprint memory in their own small SQLite file (`alerts.db` in the
data dir), apart from the event store so the Store protocol stays as it is.

Tables: `alerts` (the last `history_size` alerts, as JSON documents), `deliveries` (one row
per alert and webhook: status, attempts, last error), `fingerprints` (when each
environment+fingerprint was first and last seen: what makes "new" survive a restart) and
`meta`. Every call is synchronous and short; the engine runs them in a worker thread
(`asyncio.to_thread`) so the event loop, and with it ingestion, never waits on this file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import orjson

__all__ = ["HISTORY_FILE", "AlertHistory"]

HISTORY_FILE: Final = "alerts.db"
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    rule TEXT NOT NULL,
    fired_at REAL NOT NULL,
    document BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id TEXT NOT NULL,
    webhook TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (alert_id, webhook)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fingerprints (
    key TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fingerprints_last_seen ON fingerprints (last_seen);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
# `{marks}` becomes "?,?,…": only placeholders are formatted into the statement.
_DELIVERIES_SQL: Final = (
    "SELECT alert_id, webhook, status, attempts, last_error, updated_at "
    "FROM deliveries WHERE alert_id IN ({marks}) ORDER BY webhook"
)


class AlertHistory:
    """The `alerts.db` file; thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path, *, history_size: int, max_fingerprints: int) -> None:
        self.path = path
        self.history_size = history_size
        self.max_fingerprints = max_fingerprints
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            # Deliveries a previous process did not finish will not be retried by this one.
            self._conn.execute(
                "UPDATE deliveries SET status = 'interrupted' WHERE status = 'pending'"
            )
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ meta

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # ------------------------------------------------------------------ fingerprints

    def fingerprints(self) -> list[tuple[str, float, float]]:
        """Every remembered (key, first_seen, last_seen), least recently seen first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, first_seen, last_seen FROM fingerprints ORDER BY last_seen"
            ).fetchall()
        return [(str(k), float(f), float(last)) for k, f, last in rows]

    def save_fingerprints(self, entries: Mapping[str, tuple[float, float]]) -> None:
        """Upsert first/last seen times, then forget the least recently seen beyond the cap."""
        if not entries:
            return
        with self._lock, self._transaction():
            self._conn.executemany(
                "INSERT INTO fingerprints (key, first_seen, last_seen) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET "
                "first_seen = min(first_seen, excluded.first_seen), "
                "last_seen = max(last_seen, excluded.last_seen)",
                [(key, first, last) for key, (first, last) in entries.items()],
            )
            (count,) = self._conn.execute("SELECT count(*) FROM fingerprints").fetchone()
            excess = int(count) - self.max_fingerprints
            if excess > 0:
                self._conn.execute(
                    "DELETE FROM fingerprints WHERE key IN "
                    "(SELECT key FROM fingerprints ORDER BY last_seen LIMIT ?)",
                    (excess,),
                )

    # ------------------------------------------------------------------ alerts

    def add_alert(self, document: Mapping[str, Any], webhooks: Iterable[str]) -> None:
        """Record a fired alert (deliveries pending), keeping only the newest `history_size`."""
        now = float(document["fired_epoch"])
        with self._lock, self._transaction():
            self._conn.execute(
                "INSERT INTO alerts (id, rule, fired_at, document) VALUES (?, ?, ?, ?)",
                (document["id"], document["rule"], now, orjson.dumps(dict(document))),
            )
            self._conn.executemany(
                "INSERT INTO deliveries (alert_id, webhook, status, attempts, updated_at) "
                "VALUES (?, ?, 'pending', 0, ?)",
                [(document["id"], name, now) for name in webhooks],
            )
            cutoff = self._conn.execute(
                "SELECT seq FROM alerts ORDER BY seq DESC LIMIT 1 OFFSET ?", (self.history_size,)
            ).fetchone()
            if cutoff is not None:
                self._conn.execute(
                    "DELETE FROM deliveries WHERE alert_id IN "
                    "(SELECT id FROM alerts WHERE seq <= ?)",
                    (cutoff[0],),
                )
                self._conn.execute("DELETE FROM alerts WHERE seq <= ?", (cutoff[0],))

    def update_delivery(
        self,
        alert_id: str,
        webhook: str,
        *,
        status: str,
        attempts: int,
        last_error: str | None,
        at: float,
    ) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE deliveries SET status = ?, attempts = ?, last_error = ?, updated_at = ? "
                "WHERE alert_id = ? AND webhook = ?",
                (status, attempts, last_error, at, alert_id, webhook),
            )

    def alerts(self, *, limit: int, rule: str | None = None) -> list[dict[str, Any]]:
        """The newest alerts first, each with its `deliveries`."""
        sql = "SELECT id, document FROM alerts"
        params: list[Any] = []
        if rule is not None:
            sql += " WHERE rule = ?"
            params.append(rule)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
            ids = [row[0] for row in rows]
            deliveries: dict[str, list[dict[str, Any]]] = {alert_id: [] for alert_id in ids}
            if ids:
                marks = ",".join("?" * len(ids))
                for alert_id, webhook, status, attempts, last_error, updated in self._conn.execute(
                    _DELIVERIES_SQL.format(marks=marks),
                    ids,
                ):
                    deliveries[alert_id].append(
                        {
                            "webhook": webhook,
                            "status": status,
                            "attempts": attempts,
                            "last_error": last_error,
                            "updated_epoch": updated,
                        }
                    )
        documents = []
        for alert_id, raw in rows:
            document = orjson.loads(raw)
            document["deliveries"] = deliveries[alert_id]
            documents.append(document)
        return documents

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error (the connection is in autocommit)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self._conn.execute("COMMIT" if kind is None else "ROLLBACK")
