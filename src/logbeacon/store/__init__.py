"""Event stores behind one protocol (`base.Store`), chosen by a URL.

`open_store("sqlite:///path/events.db", ...)` returns an unopened store; the caller awaits
`store.open()` (the server does it in its lifespan) and `store.close()`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from logbeacon.exceptions import ConfigError
from logbeacon.store.base import MAX_LIMIT, AppendResult, Page, Query, Store, StoreStats
from logbeacon.store.sqlite import SqliteStore

__all__ = [
    "MAX_LIMIT",
    "AppendResult",
    "Page",
    "Query",
    "SqliteStore",
    "Store",
    "StoreStats",
    "open_store",
]

DEFAULT_SQLITE_FILE: Final = "events.db"
# URL scheme -> the package it needs (imported only when such a store is opened).
_CLICKHOUSE_SCHEMES: Final = {
    "clickhouse": "clickhouse_connect",
    "clickhouses": "clickhouse_connect",
    "chdb": "chdb",
}


def open_store(
    url: str,
    *,
    data_dir: Path,
    durability: str,
    retention_days: float | None,
    writer_process: bool = False,
) -> Store:
    """Build the store a `--store` URL names (not yet opened).

    `sqlite:///abs/path.db` is an absolute path, `sqlite://relative.db` or a bare `sqlite:`
    resolve inside `data_dir` (the default file is `events.db` there).
    `chdb:///abs/dir` (or `chdb://relative` inside `data_dir`) runs ClickHouse in-process;
    `clickhouse://user:pass@host:8123/db` (`clickhouses://` or `?secure=1` for TLS) uses a
    server. Both need `pip install 'logbeacon[clickhouse]'`; they are imported only here.
    `writer_process` puts a SQLite store's writer in a child process (`SqliteStore`).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.query or parts.fragment:
            raise ConfigError(f"--store {url!r}: a sqlite URL takes no ?query or #fragment")
        raw = unquote(parts.netloc + parts.path)
        if not raw:
            path = data_dir / DEFAULT_SQLITE_FILE
        elif raw.startswith("/"):
            path = Path(raw)
        else:
            path = data_dir / raw
        if durability not in ("normal", "full"):
            raise ConfigError(f"--durability must be 'normal' or 'full', not {durability!r}")
        return SqliteStore(
            path,
            durability="full" if durability == "full" else "normal",
            retention_days=retention_days,
            writer_process=writer_process,
        )
    if scheme in _CLICKHOUSE_SCHEMES:
        return _clickhouse_store(
            url, scheme, data_dir=data_dir, durability=durability, retention_days=retention_days
        )
    raise ConfigError(
        f"--store {url!r}: unknown store URL; use sqlite:///path/to/events.db,"
        " chdb:///path/to/dir or clickhouse://user:password@host:8123/database"
    )


def _clickhouse_store(
    url: str, scheme: str, *, data_dir: Path, durability: str, retention_days: float | None
) -> Store:
    module = _CLICKHOUSE_SCHEMES[scheme]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"--store {url!r}: the {scheme} store needs the {module} package;"
            " install it with: pip install 'logbeacon[clickhouse]'"
        )
    if durability not in ("normal", "full"):
        raise ConfigError(f"--durability must be 'normal' or 'full', not {durability!r}")
    from logbeacon.store._clickhouse_exec import parse_target
    from logbeacon.store.clickhouse import ClickHouseStore

    return ClickHouseStore(
        parse_target(url, data_dir=str(data_dir)),
        durability="full" if durability == "full" else "normal",
        retention_days=retention_days,
    )
