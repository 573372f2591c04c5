"""ClickHouse-specific behaviour: URL wiring, the two executors, parameters and failures.

No ClickHouse server can be installed on the machines these tests run on, so the
clickhouse-connect path (`HttpExecutor`) is exercised with a *fake* clickhouse-connect
client that forwards its calls to in-process ClickHouse (chdb); the wire protocol itself
is not tested here.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from logbeacon.exceptions import ConfigError, StoreUnavailable
from logbeacon.store import open_store
from logbeacon.store._clickhouse_exec import (
    ChdbExecutor,
    HttpExecutor,
    client_arguments,
    parse_target,
)
from logbeacon.store.base import Query, RunQuery
from logbeacon.store.clickhouse import ClickHouseStore

from .test_sqlite_derived import graph_run

pytest.importorskip("chdb")

Event = dict[str, Any]


class FakeClickHouseConnectClient:
    """The slice of `clickhouse_connect` Client the store uses, answered by chdb."""

    def __init__(self, path: str) -> None:
        self.engine = ChdbExecutor(path)
        self.calls: list[str] = []

    def query(self, sql: str, parameters: Mapping[str, Any]) -> SimpleNamespace:
        self.calls.append("query")
        return SimpleNamespace(
            result_rows=[tuple(row) for row in self.engine.query(sql, parameters)]
        )

    def command(self, sql: str, parameters: Mapping[str, Any]) -> None:
        self.calls.append("command")
        self.engine.command(sql, parameters)

    def raw_insert(self, table: str, *, insert_block: bytes, fmt: str) -> None:
        assert "JSONEachRow" == fmt
        self.calls.append("raw_insert")
        self.engine.insert(table, insert_block)

    def close(self) -> None:
        self.engine.close()


@pytest.fixture
async def http_store(tmp_path: Path) -> AsyncIterator[tuple[ClickHouseStore, Any]]:
    """A store on the clickhouse-connect executor with the fake client above."""
    target = parse_target("clickhouse://logbeacon:secret@db.example:8123/lb_test", data_dir="/x")
    client = FakeClickHouseConnectClient(str(tmp_path / "chdb"))
    store = ClickHouseStore(
        target, retention_days=None, executor_factory=lambda: HttpExecutor(target, client=client)
    )
    await store.open()
    yield store, client
    await store.close()


async def test_clickhouse_connect_executor_serves_the_store(
    http_store: tuple[ClickHouseStore, Any], make_event: Callable[..., Event]
) -> None:
    """Through the clickhouse-connect executor (fake client) appends, dedup, queries and runs
    work, with one insert per table per commit group."""
    store, client = http_store
    events = [make_event() for _ in range(5)] + graph_run("r-http")
    first = await store.append(events)
    client.calls.clear()
    again = await store.append(events[:2])
    page = await store.query(Query(limit=3))
    assert (
        (len(events), 0),
        (0, 2),
        3,
        ["r-http"],
        "clickhouse",
    ) == (
        (first.accepted, first.duplicates),
        (again.accepted, again.duplicates),
        len(page.events),
        [run.run_id for run in await store.runs(RunQuery())],
        (await store.stats()).kind,
    )
    assert "raw_insert" not in client.calls[:2]  # the duplicate check came first


def test_server_urls_become_client_arguments() -> None:
    """clickhouse:// and clickhouses:// URLs give host, port, credentials, TLS and database."""
    plain = parse_target("clickhouse://u:p%40ss@ch.internal:8123/logs", data_dir="/d")
    tls = parse_target("clickhouses://ch.example/logs2?connect_timeout=5", data_dir="/d")
    flagged = parse_target("clickhouse://ch.example:8443/?secure=1&database=lb", data_dir="/d")
    assert (
        ("ch.internal", 8123, "u", "p@ss", False, "logs"),
        ("ch.example", None, "default", True, "logs2", {"async_insert": 0, "connect_timeout": "5"}),
        (True, "lb", 8443),
        "clickhouse://ch.internal:8123/logs",
    ) == (
        (plain.host, plain.port, plain.username, plain.password, plain.secure, plain.database),
        (tls.host, tls.port, tls.username, tls.secure, tls.database,
         client_arguments(tls)["settings"]),
        (flagged.secure, flagged.database, client_arguments(flagged)["port"]),
        plain.describe(),
    )  # fmt: skip
    assert "p@ss" not in repr(plain)


@pytest.mark.parametrize(
    "url",
    [
        "clickhouse://host/bad-name",
        "clickhouse:///db",
        "chdb:///x?database=1x",
        "clickhouse://h:x/d",
    ],
)
def test_bad_clickhouse_urls_are_config_errors(url: str, tmp_path: Path) -> None:
    """A URL without host, with a bad port or a database name that is not an identifier is
    refused before anything connects."""
    with pytest.raises(ConfigError):
        open_store(url, data_dir=tmp_path, durability="normal", retention_days=14)


def test_open_store_builds_chdb_stores_in_the_data_dir(tmp_path: Path) -> None:
    """chdb:// with a relative path, an absolute path or none resolves like sqlite:// does."""
    stores = [
        open_store(url, data_dir=tmp_path, durability="full", retention_days=3)
        for url in ("chdb:", "chdb://rel", "chdb:///abs/dir")
    ]
    assert [
        (ClickHouseStore, f"{tmp_path}/chdb", "full", 3),
        (ClickHouseStore, f"{tmp_path}/rel", "full", 3),
        (ClickHouseStore, "/abs/dir", "full", 3),
    ] == [
        (type(s), s.target.path, s.durability, s.retention_days)  # type: ignore[attr-defined]
        for s in stores
    ]


def test_missing_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without chdb or clickhouse-connect installed the error says which extra to install."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("chdb", "clickhouse_connect") else real(name, *a),
    )
    for url in ("chdb:///tmp/x", "clickhouse://h/db"):
        with pytest.raises(ConfigError, match=r"logbeacon\[clickhouse\]"):
            open_store(url, data_dir=tmp_path, durability="normal", retention_days=14)


def test_import_logbeacon_does_not_load_clickhouse_packages() -> None:
    """`import logbeacon` and `logbeacon.store` stay light: no chdb, no clickhouse_connect."""
    code = (
        "import sys, logbeacon, logbeacon.store; "
        "print(sorted(m for m in ('chdb', 'clickhouse_connect') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[]" == out.stdout.strip()


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "it's",
        "back\\slash",
        "tab\tnew\nline\r",
        "nul\x00byte",
        "\\N",
        "日本 🚀",
        "{x:String}",
    ],
)
def test_query_parameters_arrive_verbatim(tmp_path: Path, value: str) -> None:
    """Hostile strings sent as typed parameters come back unchanged, alone and in arrays."""
    engine = ChdbExecutor(str(tmp_path / "chdb"))
    try:
        rows = engine.query(
            "SELECT {v:String}, {a:Array(String)}", {"v": value, "a": [value, "x'y"]}
        )
    finally:
        engine.close()
    assert [[value, [value, "x'y"]]] == rows


class _FailingInserts:
    """An executor whose inserts fail (a server that went away mid-batch)."""

    kind = "clickhouse"

    def __init__(self, real: ChdbExecutor) -> None:
        self.real = real

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        return self.real.query(sql, params)

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.real.command(sql, params)

    def insert(self, table: str, block: bytes) -> None:
        if table.endswith(".events"):
            raise ConnectionResetError("connection reset by peer")
        self.real.insert(table, block)

    def close(self) -> None:
        self.real.close()


async def test_failed_insert_is_store_unavailable_and_stores_nothing(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """When ClickHouse fails the insert, append raises StoreUnavailable and no event is
    visible; the retried batch is then stored in full."""
    target = parse_target(f"chdb://{tmp_path / 'chdb'}", data_dir=str(tmp_path))
    failing = {"on": True}

    def factory() -> Any:
        real = ChdbExecutor(str(tmp_path / "chdb"))
        return _FailingInserts(real) if failing["on"] else real

    events = [make_event() for _ in range(3)]
    async with ClickHouseStore(target, retention_days=None, executor_factory=factory) as store:
        with pytest.raises(StoreUnavailable):
            await store.append(events)
        assert 0 == (await store.stats()).events
    failing["on"] = False
    async with ClickHouseStore(target, retention_days=None, executor_factory=factory) as store:
        result = await store.append(events)
        assert (3, 3) == (result.accepted, (await store.stats()).events)
