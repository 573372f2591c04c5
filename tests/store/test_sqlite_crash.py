"""A process killed with SIGKILL loses no acknowledged event (DUR-03, scaled down)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from logbeacon.store.sqlite import SqliteStore

# The child appends batches from several concurrent tasks (so group commit is in play) and
# prints each event_id only after its append returned, i.e. after COMMIT.
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from logbeacon.event import normalize_event
    from logbeacon.store.sqlite import SqliteStore

    async def main() -> None:
        store = SqliteStore(sys.argv[1], retention_days=None)
        await store.open()
        print("ready", flush=True)

        async def client(n: int) -> None:
            i = 0
            while True:
                batch = [normalize_event({"event": "tick", "message": f"c{n} b{i} e{j}"})
                         for j in range(5)]
                await store.append(batch)
                sys.stdout.write("".join(e["event_id"] + "\\n" for e in batch))
                sys.stdout.flush()
                i += 1

        await asyncio.gather(*(client(n) for n in range(4)))

    asyncio.run(main())
    """
)


def _run_and_kill(path: Path, seconds: float) -> list[str]:
    """Start the child, let it ingest for `seconds`, SIGKILL it; return the acked ids."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert "ready\n" == child.stdout.readline(), child.stderr.read() if child.stderr else ""
        time.sleep(seconds)
        os.kill(child.pid, signal.SIGKILL)
        output, errors = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert -signal.SIGKILL == child.returncode, errors
    # A line cut off mid-write by the kill was never a complete acknowledgement.
    return [line for line in output.split("\n") if len(line) == 36]


@pytest.mark.slow
def test_sigkill_during_ingestion_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """After kill -9 at random moments, every acknowledged event is stored exactly once and
    the database passes integrity checks."""
    path = tmp_path / "events.db"
    rng = random.Random(3)
    acked: list[str] = []
    for _ in range(3):
        acked += _run_and_kill(path, rng.uniform(0.4, 1.2))
        assert acked  # the child made progress

        conn = sqlite3.connect(path)
        try:
            assert [("ok",)] == conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()

    async def check() -> None:
        store = SqliteStore(path, retention_days=None)
        await store.open()
        try:
            for event_id in acked:
                event = await store.get(event_id)
                assert event is not None, f"acknowledged event {event_id} was lost"
            assert (await store.stats()).events >= len(set(acked))
        finally:
            await store.close()

    asyncio.run(check())
    assert len(acked) == len(set(acked))
    conn = sqlite3.connect(path)
    try:
        ids = conn.execute("SELECT count(*), count(DISTINCT eid) FROM events").fetchone()
        assert ids[0] == ids[1]
        conn.execute("INSERT INTO fts (fts, rank) VALUES ('integrity-check', 0)")
        # The full-text index trails the commits; the starts after each kill caught it up.
        (searchable,) = conn.execute("SELECT count(*) FROM fts WHERE fts MATCH 'tick'").fetchone()
        assert ids[0] == searchable
    finally:
        conn.close()
