"""The shipper's optional disk spool: batches the server could not take survive a restart.

One batch per segment file, written to a temporary name, fsynced and renamed into place, so a
crash leaves either a whole segment or none; each segment also carries a CRC-32 of its
payload, so a torn or bit-flipped file (a disk that lied about fsync, a copy that was cut
short) is detected, deleted and counted instead of being sent half-read or blocking the
rest. Names start with a nanosecond timestamp, so sorting them gives oldest first.

Several processes may share a spool directory (gunicorn workers, a forked child, an app
restarted while the old one still drains): a segment is *claimed* with a non-blocking
`flock` before it is sent, so two processes never send the same segment at once; the lock
dies with its process, so a crash never leaves a segment claimed. The server deduplicates by
`event_id`, which keeps the rare double send (a lost response) harmless.

The total size is bounded: writing past `max_bytes` deletes the oldest segments first and
reports how many events that dropped. Any write error (disk full, permissions) disables the
spool for this process: the application keeps running and the shipper falls back to memory,
unlike Vector, which stops itself on an I/O error.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: segments are simply not claimed
    fcntl = None  # type: ignore[assignment]

__all__ = ["DEFAULT_SPOOL_BYTES", "Segment", "Spool"]

DEFAULT_SPOOL_BYTES: Final = 64 * 1024 * 1024

_MAGIC: Final = b"LBSPOOL1"
# magic, event count, payload length, CRC-32 of the payload
_HEADER: Final = struct.Struct(">8sIQI")
_LEN: Final = struct.Struct(">I")
_SUFFIX: Final = ".seg"
_TMP_SUFFIX: Final = ".tmp"
_STALE_TMP_S: Final = 300.0
_counter = itertools.count()


@dataclass(slots=True)
class Segment:
    """A claimed segment: its path and the open descriptor that holds the claim."""

    path: Path
    fd: int
    count: int


class Spool:
    """Segment files in one directory; thread-safe within a process."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_SPOOL_BYTES):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.enabled = True
        self.error: str | None = None
        self._lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._remove_stale_tmp()

    def after_fork(self) -> None:
        """A forked child must not inherit a lock another thread held at fork time."""
        self._lock = threading.Lock()

    def _remove_stale_tmp(self) -> None:
        # A temp file is a write that never finished; a young one may belong to a live writer.
        cutoff = time.time() - _STALE_TMP_S
        for path in self.directory.glob(f"*{_TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()

    # ------------------------------------------------------------------ writing

    def write(self, lines: list[bytes]) -> tuple[bool, int]:
        """Persist one batch; return (written, events evicted to make room).

        `written` is False when the spool is (or just became) disabled; the caller keeps the
        batch in memory then.
        """
        if not self.enabled or not lines:
            return False, 0
        payload = zlib.compress(b"".join(_LEN.pack(len(line)) + line for line in lines), 6)
        data = _HEADER.pack(_MAGIC, len(lines), len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            evicted = self._make_room(len(data))
            name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}"
            tmp = self.directory / (name + _TMP_SUFFIX)
            final = self.directory / (name + _SUFFIX)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, final)
                self._fsync_dir()
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                self.enabled = False
                self.error = f"{type(exc).__name__}: {exc.strerror or exc}"
                return False, evicted
        return True, evicted

    def _fsync_dir(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass  # some filesystems refuse fsync on directories; the rename still happened
        finally:
            os.close(fd)

    def _segments(self) -> list[Path]:
        try:
            return sorted(self.directory.glob(f"*{_SUFFIX}"))
        except OSError:
            return []

    def _make_room(self, incoming: int) -> int:
        sizes: list[tuple[Path, int]] = []
        for path in self._segments():
            with contextlib.suppress(OSError):
                sizes.append((path, path.stat().st_size))
        total = sum(size for _, size in sizes) + incoming
        evicted = 0
        for path, size in sizes:
            if total <= self.max_bytes:
                break
            # Only a segment nobody is sending can go: one being sent may yet be delivered,
            # and counting it both delivered and dropped would break the accounting.
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                if not _try_lock(fd) or os.fstat(fd).st_nlink == 0:
                    continue
                evicted += _count_of(path)
                with contextlib.suppress(OSError):
                    path.unlink()
                total -= size
            finally:
                os.close(fd)
        return evicted

    # ------------------------------------------------------------------ reading

    def has_pending(self) -> bool:
        """Whether any segment exists (claimed by someone or not)."""
        return bool(self._segments())

    def claim_oldest(self) -> tuple[Segment | None, list[bytes], int]:
        """Claim the oldest unclaimed segment and read it.

        Returns (segment, lines, corrupt_events_dropped). A corrupt segment is deleted and
        skipped; `segment` is None when nothing is left to send.
        """
        corrupt = 0
        for path in self._segments():
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue  # deleted by another process since the listing
            if not _try_lock(fd) or os.fstat(fd).st_nlink == 0:
                os.close(fd)
                continue
            lines, count = _read(fd)
            if lines is None:
                corrupt += max(count, 1)
                with contextlib.suppress(OSError):
                    path.unlink()
                os.close(fd)
                continue
            return Segment(path, fd, len(lines)), lines, corrupt
        return None, [], corrupt

    def release(self, segment: Segment, *, delete: bool) -> None:
        """Give up a claim; with `delete`, the segment was delivered and is removed first."""
        if delete:
            with contextlib.suppress(OSError):
                segment.path.unlink()
        with contextlib.suppress(OSError):
            os.close(segment.fd)

    def pending_events(self) -> int:
        """Events waiting in segments (headers only; cheap enough for stats)."""
        return sum(_count_of(path) for path in self._segments())


def _try_lock(fd: int) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _count_of(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            header = handle.read(_HEADER.size)
    except OSError:
        return 0
    if len(header) != _HEADER.size:
        return 0
    magic, count, _, _ = _HEADER.unpack(header)
    return int(count) if magic == _MAGIC else 0


def _read(fd: int) -> tuple[list[bytes] | None, int]:
    """(lines, count from header); lines is None when the segment does not check out."""
    try:
        size = os.fstat(fd).st_size
        raw = os.pread(fd, size, 0)
    except OSError:
        return None, 0
    if len(raw) < _HEADER.size:
        return None, 0
    magic, count, length, crc = _HEADER.unpack_from(raw)
    if magic != _MAGIC:
        return None, 0
    payload = raw[_HEADER.size :]
    if len(payload) != length or zlib.crc32(payload) != crc:
        return None, int(count)
    try:
        records = zlib.decompress(payload)
    except zlib.error:
        return None, int(count)
    lines: list[bytes] = []
    pos = 0
    while pos + _LEN.size <= len(records):
        (size,) = _LEN.unpack_from(records, pos)
        pos += _LEN.size
        lines.append(records[pos : pos + size])
        pos += size
    if pos != len(records) or len(lines) != count:
        return None, int(count)
    return lines, int(count)
