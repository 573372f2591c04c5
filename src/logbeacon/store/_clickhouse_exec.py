"""The two ways `ClickHouseStore` reaches a ClickHouse engine, behind one small interface.

- `ChdbExecutor`: ClickHouse in-process through `chdb` (`--store chdb:///path`), one data
  directory, no server. chdb allows one embedded engine per process and its connection is not
  thread-safe, so every call runs on one dedicated worker thread.
- `HttpExecutor`: a ClickHouse server or cluster through `clickhouse-connect`
  (`--store clickhouse://user:pass@host:8123/db`, TLS with `clickhouses://` or `?secure=1`).

Both are *blocking*; the store calls them from worker threads (`asyncio` never waits on
them). SQL uses ClickHouse's typed query parameters (`{name:Type}`), so values never become
SQL text; inserts send `JSONEachRow` blocks.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from logbeacon.exceptions import ConfigError

__all__ = [
    "ChdbExecutor",
    "ClickHouseTarget",
    "Executor",
    "HttpExecutor",
    "Row",
    "parse_target",
    "render_param",
]

Row = Sequence[Any]
Params = Mapping[str, Any]

INSTALL_HINT: Final = (
    "the ClickHouse store needs extra packages: pip install 'logbeacon[clickhouse]'"
)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_DATABASE_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
)


class Executor(Protocol):
    """What the store needs from an engine: typed queries, statements and block inserts."""

    kind: str

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        """Rows of a SELECT; values are ints, floats, strings, None and lists."""

    def command(self, sql: str, params: Params | None = None) -> None:
        """Run a statement that returns nothing useful (DDL, DELETE)."""

    def insert(self, table: str, block: bytes) -> None:
        """Insert one `JSONEachRow` block (one part per partition, atomic per partition)."""

    def close(self) -> None:
        """Release the connection; idempotent."""


# --------------------------------------------------------------------------- parameters


def _escape(text: str) -> str:
    """A String parameter in ClickHouse's escaped text form (how chdb hands them over)."""
    return (
        text.replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\0", "\\0")
    )


def _quoted(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"cannot send {type(value).__name__} as a ClickHouse array element")


def render_param(value: Any) -> str:
    """A query parameter as the text ClickHouse parses for `{name:Type}`."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_quoted(item) for item in value) + "]"
    raise TypeError(f"cannot send {type(value).__name__} as a ClickHouse query parameter")


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True, slots=True)
class ClickHouseTarget:
    """Where a `--store` URL points: a chdb directory or a server (password kept out of repr)."""

    scheme: str
    database: str
    path: str | None = None
    host: str = "localhost"
    port: int | None = None
    username: str = "default"
    password: str = field(default="", repr=False)
    secure: bool = False
    options: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """The target without credentials, for health details and logs."""
        if self.scheme == "chdb":
            return f"chdb://{self.path}"
        scheme = "clickhouses" if self.secure else "clickhouse"
        port = f":{self.port}" if self.port is not None else ""
        return f"{scheme}://{self.host}{port}/{self.database}"


def parse_target(url: str, *, data_dir: str) -> ClickHouseTarget:
    """Parse `chdb:///abs/dir`, `chdb://relative` (inside the data dir), `chdb:` and
    `clickhouse[s]://user:pass@host:port/database?secure=1&database=...`."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    database = options.pop("database", "logbeacon")
    if scheme == "chdb":
        raw = unquote(parts.netloc + parts.path)
        if not raw:
            path = f"{data_dir}/chdb"
        elif raw.startswith("/"):
            path = raw
        else:
            path = f"{data_dir}/{raw}"
        _check_database(url, database)
        return ClickHouseTarget(scheme="chdb", database=database, path=path)
    if scheme not in ("clickhouse", "clickhouses"):
        raise ConfigError(f"--store {url!r}: not a ClickHouse URL")
    if not parts.hostname:
        raise ConfigError(f"--store {url!r}: a clickhouse URL needs a host")
    path_db = unquote(parts.path.strip("/"))
    if path_db:
        database = path_db
    _check_database(url, database)
    secure = scheme == "clickhouses" or options.pop("secure", "").lower() in _TRUE
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--store {url!r}: invalid port") from exc
    return ClickHouseTarget(
        scheme="clickhouse",
        database=database,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
        secure=secure,
        options=options,
    )


def _check_database(url: str, database: str) -> None:
    # The name is part of every statement (identifiers cannot be query parameters).
    if not database or not set(database) <= _DATABASE_CHARS or database[0].isdigit():
        raise ConfigError(
            f"--store {url!r}: the database name must be letters, digits and underscores"
        )


# --------------------------------------------------------------------------- chdb

# One embedded engine per process (a chdb rule): stores sharing a path share it.
_CHDB_LOCK = threading.Lock()
_CHDB_OPEN: dict[str, tuple[Any, int]] = {}


class ChdbExecutor:
    """ClickHouse in this process (chdb). Not thread-safe: call it from one thread."""

    kind = "chdb"

    def __init__(self, path: str) -> None:
        try:
            import chdb
        except ImportError as exc:
            raise ConfigError(f"--store chdb://…: {INSTALL_HINT}") from exc
        self.path = path
        with _CHDB_LOCK:
            shared = _CHDB_OPEN.get(path)
            if shared is None:
                try:
                    conn = chdb.connect(path)  # type: ignore[no-untyped-call]
                except Exception as exc:
                    raise ConfigError(
                        f"cannot open chdb at {path}: {exc} (chdb runs one data directory per "
                        "process)"
                    ) from exc
                _CHDB_OPEN[path] = (conn, 1)
            else:
                conn = shared[0]
                _CHDB_OPEN[path] = (conn, shared[1] + 1)
        self._conn: Any = conn
        self._closed = False

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        rendered = {name: render_param(value) for name, value in (params or {}).items()}
        result = self._conn.query(sql, "JSONCompactEachRow", params=rendered)
        return [orjson.loads(line) for line in result.bytes().splitlines() if line]

    def command(self, sql: str, params: Params | None = None) -> None:
        rendered = {name: render_param(value) for name, value in (params or {}).items()}
        self._conn.query(sql, "CSV", params=rendered)

    def insert(self, table: str, block: bytes) -> None:
        self._conn.query(f"INSERT INTO {table} FORMAT JSONEachRow\n" + block.decode())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _CHDB_LOCK:
            conn, users = _CHDB_OPEN[self.path]
            if users > 1:
                _CHDB_OPEN[self.path] = (conn, users - 1)
                return
            del _CHDB_OPEN[self.path]
        with contextlib.suppress(Exception):
            conn.close()


# --------------------------------------------------------------------------- server


class HttpExecutor:
    """A ClickHouse server through clickhouse-connect's HTTP client (thread-safe)."""

    kind = "clickhouse"

    def __init__(self, target: ClickHouseTarget, *, client: Any = None) -> None:
        if client is None:
            try:
                import clickhouse_connect
            except ImportError as exc:
                raise ConfigError(f"--store clickhouse://…: {INSTALL_HINT}") from exc
            client = clickhouse_connect.get_client(**client_arguments(target))
        self._client = client

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        result = self._client.query(sql, parameters=dict(params or {}))
        return [list(row) for row in result.result_rows]

    def command(self, sql: str, params: Params | None = None) -> None:
        self._client.command(sql, parameters=dict(params or {}))

    def insert(self, table: str, block: bytes) -> None:
        self._client.raw_insert(table, insert_block=block, fmt="JSONEachRow")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


def client_arguments(target: ClickHouseTarget) -> dict[str, Any]:
    """`clickhouse_connect.get_client` keyword arguments of a target.

    The database is not selected at connect time (it may not exist yet: the store creates
    it); every statement names it. Extra URL options pass through as client settings.
    """
    arguments: dict[str, Any] = {
        "host": target.host,
        "username": target.username,
        "password": target.password,
        "secure": target.secure,
        # Synchronous inserts: the 200 of an ingest request waits for the data to be written.
        "settings": {"async_insert": 0, **target.options},
    }
    if target.port is not None:
        arguments["port"] = target.port
    return arguments
