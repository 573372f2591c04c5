"""Stream and rotating-file sinks: output, rotation, thread safety, failures."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from logbeacon.sdk import configure, flush, get_logger, internal_errors
from logbeacon.sdk.renderers import ConsoleRenderer
from logbeacon.sdk.sinks import RotatingFileSink, Sink, StreamSink

_EVENT = {"timestamp": "2026-01-01T00:00:00.000000Z", "level": "info", "event": "e"}


def test_sinks_satisfy_protocol(tmp_path: Path) -> None:
    """StreamSink and RotatingFileSink implement the Sink protocol."""
    file_sink = RotatingFileSink(tmp_path, "x.jsonl")
    try:
        assert (True, True) == (
            isinstance(StreamSink(io.StringIO()), Sink),
            isinstance(file_sink, Sink),
        )
    finally:
        file_sink.close()


def test_stream_sink_text_and_binary() -> None:
    """Text streams get decoded lines, binary streams the bytes unchanged."""
    text, binary = io.StringIO(), io.BytesIO()
    StreamSink(text).emit(_EVENT, b'{"a":"\xc3\xa9"}\n')
    StreamSink(binary).emit(_EVENT, b'{"a":"\xc3\xa9"}\n')
    assert ('{"a":"é"}\n', b'{"a":"\xc3\xa9"}\n') == (text.getvalue(), binary.getvalue())


def test_stream_sink_console_renderer() -> None:
    """With a console renderer the stream gets the readable line instead of JSON."""
    stream = io.StringIO()
    StreamSink(stream, ConsoleRenderer()).emit({**_EVENT, "service": "api"}, b"{}\n")
    assert "00:00:00.000 info     [api] e\n" == stream.getvalue()


def test_stream_sink_default_follows_sys_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """Without an explicit stream, each write goes to the sys.stdout of that moment."""
    sink = StreamSink()
    sink.emit(_EVENT, b"first\n")
    assert "first\n" == capsys.readouterr().out


def test_closed_sink_ignores_writes() -> None:
    """After close() a sink drops events instead of writing to a released stream."""
    stream = io.StringIO()
    sink = StreamSink(stream)
    sink.close()
    sink.emit(_EVENT, b"late\n")
    assert "" == stream.getvalue()


def test_file_sink_rotates_and_keeps_n_backups(tmp_path: Path) -> None:
    """At the size limit the file rotates to .1, .2 …, keeping exactly `backups` old files."""
    sink = RotatingFileSink(tmp_path, "svc.jsonl", max_bytes=1024, backups=2)
    line = b'{"event":"' + b"x" * 200 + b'"}\n'  # 214 bytes: 4 per file
    for _ in range(30):
        sink.emit(_EVENT, line)
    sink.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert ["svc.jsonl", "svc.jsonl.1", "svc.jsonl.2"] == names
    sizes = [(tmp_path / n).stat().st_size for n in names]
    assert all(size <= 1024 for size in sizes)
    assert [4 * len(line), 4 * len(line)] == sizes[1:]


def test_file_sink_backups_zero_truncates(tmp_path: Path) -> None:
    """backups=0 starts the file afresh instead of keeping old ones."""
    sink = RotatingFileSink(tmp_path, "svc.jsonl", max_bytes=1024, backups=0)
    line = b"y" * 299 + b"\n"
    for _ in range(5):
        sink.emit(_EVENT, line)
    sink.close()
    assert (["svc.jsonl"], 600) == (
        [p.name for p in tmp_path.iterdir()],
        (tmp_path / "svc.jsonl").stat().st_size,
    )


def test_file_sink_appends_to_existing_file(tmp_path: Path) -> None:
    """A restart appends to the existing file and counts its size toward rotation."""
    (tmp_path / "svc.jsonl").write_bytes(b"a" * 1000 + b"\n")
    sink = RotatingFileSink(tmp_path, "svc.jsonl", max_bytes=1024, backups=1)
    sink.emit(_EVENT, b"b" * 99 + b"\n")
    sink.close()
    assert (100, 1001) == (
        (tmp_path / "svc.jsonl").stat().st_size,
        (tmp_path / "svc.jsonl.1").stat().st_size,
    )


def test_configure_log_dir_writes_service_file(tmp_path: Path) -> None:
    """configure(log_dir=...) creates the directory (with parents) and <service>.jsonl."""
    log_dir = tmp_path / "deep" / "logs"
    configure(service="billing", log_dir=log_dir, stream=io.StringIO(), format="console")
    get_logger().info("to_file", n=1)
    assert flush(1.0)
    [event] = [json.loads(x) for x in (log_dir / "billing.jsonl").read_text().splitlines()]
    assert ("to_file", 1, "billing") == (event["event"], event["n"], event["service"])


def test_configured_rotation_size(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """LOGBEACON_LOG_MAX_BYTES and LOGBEACON_LOG_BACKUPS drive the file sink's rotation."""
    monkeypatch.setenv("LOGBEACON_LOG_MAX_BYTES", "2048")
    monkeypatch.setenv("LOGBEACON_LOG_BACKUPS", "1")
    configure(log_dir=tmp_path, stream=io.StringIO(), format="json")
    log = get_logger()
    for i in range(100):
        log.info("fill", i=i, pad="p" * 100)
    assert ["app.jsonl", "app.jsonl.1"] == sorted(p.name for p in tmp_path.iterdir())


def test_concurrent_writes_never_interleave(tmp_path: Path) -> None:
    """Lines written from many threads arrive whole, each parseable on its own."""
    configure(log_dir=tmp_path, stream=io.StringIO(), format="json")
    log = get_logger()

    def worker(i: int) -> None:
        for j in range(50):
            log.info("w", i=i, j=j, pad="z" * 300)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = [json.loads(x) for x in (tmp_path / "app.jsonl").read_text().splitlines()]
    assert 300 == len(events)
    assert {(i, j) for i in range(6) for j in range(50)} == {(e["i"], e["j"]) for e in events}


def test_unopenable_file_is_counted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """When the log file cannot be reopened (its path became a directory) writes are counted."""
    monkeypatch.setenv("LOGBEACON_RAISE_INTERNAL", "0")
    sink = RotatingFileSink(tmp_path, "svc.jsonl")
    sink._drop_handle()
    sink._next_open = 0.0
    (tmp_path / "svc.jsonl").unlink()
    (tmp_path / "svc.jsonl").mkdir()
    configure(stream=io.StringIO(), format="json")
    from logbeacon.sdk import config

    pipeline = config._state.pipeline
    assert pipeline is not None
    pipeline.sinks = (*pipeline.sinks, sink)
    get_logger().info("denied")
    get_logger().info("retry_too_soon")
    sink.close()
    assert {"sink.file:IsADirectoryError": 1} == internal_errors()


def test_full_disk_is_counted_and_recovers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A write failing with ENOSPC (/dev/full) is counted; the sink reopens later and recovers."""
    monkeypatch.setenv("LOGBEACON_RAISE_INTERNAL", "0")
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    sink = RotatingFileSink(tmp_path, "svc.jsonl")
    sink.path = Path("/dev/full")
    sink._drop_handle()
    sink._next_open = 0.0
    stream = io.StringIO()
    configure(stream=stream, format="json")
    from logbeacon.sdk import config

    pipeline = config._state.pipeline
    assert pipeline is not None
    pipeline.sinks = (*pipeline.sinks, sink)
    get_logger().info("no_space")
    assert {"sink.file:OSError": 1} == internal_errors()
    assert '"event":"no_space"' in stream.getvalue()
    sink.path = tmp_path / "svc.jsonl"
    sink._next_open = 0.0
    get_logger().info("recovered")
    sink.close()
    assert "recovered" in (tmp_path / "svc.jsonl").read_text()
