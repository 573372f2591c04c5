"""Event stores behind one protocol (`base.Store`), chosen by a URL.

`open_store("sqlite:///path/events.db", ...)` returns an unopened store; the caller awaits
`store.open()` (the server does it in its lifespan) and `store.close()`.
"""

from __future__ import annotations

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
_LATER_SCHEMES: Final = ("clickhouse", "clickhouses", "chdb")


def open_store(
    url: str,
    *,
    data_dir: Path,
    durability: str,
    retention_days: float,
) -> Store:
    """Build the store a `--store` URL names (not yet opened).

    `sqlite:///abs/path.db` is an absolute path, `sqlite://relative.db` or a bare `sqlite:`
    resolve inside `data_dir` (the default file is `events.db` there).
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
        )
    if scheme in _LATER_SCHEMES:
        raise ConfigError(
            f"--store {url!r}: the {scheme} store is not available yet in this version of "
            "logbeacon; use sqlite:///path/to/events.db (the default)"
        )
    raise ConfigError(f"--store {url!r}: unknown store URL; use sqlite:///path/to/events.db")
