"""Writing one VM's console log: asciicast v2 segments, rotated by size and age.

A segment is an ordinary asciicast v2 file (``asciinema cat`` plays it) named by its index,
``00000042.cast``, in the VM's log directory. Its header names the VM, the index and the
SHA-256 of the previous segment, so the segments form a hash chain; each segment is
*sealed* when it rotates or the gateway stops, and the glue anchors the seal (index, SHA-256)
in the audit chain, which is what makes a cut or an edit show up in ``audit verify``.

Output events carry the guest's bytes (UTF-8, invalid bytes as U+FFFD); marker events
(``"m"``) carry the gateway's own notes -- a gap while the VM was away, output dropped by the
rate limit, segments removed by retention -- so they can never be mistaken for guest output.

Events are buffered and written out at least once a second (``tick``) or when 64 KiB
accumulate: a crash loses about a second. Nothing here touches the event loop or the store.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certgate.audit.recording import json_string
from certgate.consolelog.settings import ConsoleLogSettings
from certgate.errors import CertgateError

GENESIS_SHA256 = "0" * 64
SEGMENT_NAME = re.compile(r"(\d{8})\.cast")
MAX_BUFFER = 64 * 1024
_RETENTION_CHECK_SECONDS = 60.0


@dataclass(frozen=True)
class SealedSegment:
    """A finished segment, to be anchored in the audit chain."""

    vm: str
    name: str
    index: int
    sha256: str
    previous_sha256: str
    size: int
    started: float
    ended: float
    recovered: bool = False


@dataclass(frozen=True)
class ExpiredSegment:
    """A sealed segment retention removed (recorded so verification expects it gone)."""

    vm: str
    name: str
    reason: str


LogRecord = SealedSegment | ExpiredSegment


def segment_name(index: int) -> str:
    return f"{index:08d}.cast"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segments in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = SEGMENT_NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


class ConsoleLogWriter:
    """Appends one VM's console output to its current segment; rotates; applies retention."""

    def __init__(
        self,
        directory: Path,
        vm: str,
        settings: ConsoleLogSettings,
        *,
        anchored: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``anchored``: segment name -> SHA-256 as sealed in the audit chain, so a restart
        need not re-read old segments to continue the hash chain."""
        self.directory = directory
        self.vm = vm
        self.settings = settings
        self._clock = clock
        self._records: list[LogRecord] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._oldest_pending: float | None = None
        self._tokens = float(settings.burst)
        self._refilled = clock()
        self._dropped = 0
        self._next_retention = 0.0
        self._fd: int | None = None
        self._closed = False
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._anchored = dict(anchored or {})
        existing = list_segments(directory)
        self._index = existing[-1][0] + 1 if existing else 1
        self._previous = self._digest(existing[-1][1]) if existing else GENESIS_SHA256
        self._open_segment()

    # -- what the keeper reports ----------------------------------------------------------------

    def output(self, data: bytes) -> None:
        """Console output (the guest's bytes), subject to the rate limit."""
        if not data:
            return
        now = self._clock()
        self._refill(now)
        if len(data) > self._tokens:
            self._dropped += len(data)
            return
        self._tokens -= len(data)
        self._note_dropped()
        text = self._decoder.decode(data)
        if text:
            self._append([self._elapsed(now), "o", text], now)

    def note(self, text: str) -> None:
        """A gateway note (a marker event), e.g. a gap while the VM was away."""
        now = self._clock()
        self._append([self._elapsed(now), "m", f"certgate: {text}"], now)

    def tick(self) -> None:
        """Called about once a second: write out, rotate an old segment, apply retention."""
        now = self._clock()
        self._refill(now)
        if self._dropped and self._tokens > 0:
            self._note_dropped()
        self._write_out()
        if now - self._started >= self.settings.segment_seconds and self._size > 0:
            self.rotate()
        if now >= self._next_retention:
            self._next_retention = now + _RETENTION_CHECK_SECONDS
            self._apply_retention(now)

    def rotate(self) -> SealedSegment:
        """Seal the current segment and start the next one."""
        sealed = self._seal()
        self._open_segment()
        self._apply_retention(self._clock())
        return sealed

    def close(self) -> SealedSegment | None:
        """Seal the current segment (the gateway stops); None if already closed."""
        if self._closed:
            return None
        self._note_dropped()
        sealed = self._seal()
        self._closed = True
        return sealed

    def drain_records(self) -> list[LogRecord]:
        """Segments sealed or expired since the last call, for the audit chain."""
        records, self._records = self._records, []
        return records

    def recover(self) -> list[SealedSegment]:
        """Seal records for earlier segments that were never anchored (a crash)."""
        recovered = []
        previous: Path | None = None
        for index, path in list_segments(self.directory):
            if index >= self._index:
                break
            if path.name not in self._anchored:
                stat = path.stat()
                sealed = SealedSegment(
                    self.vm, path.name, index, self._digest(path),
                    self._digest(previous) if previous is not None else GENESIS_SHA256,
                    stat.st_size, stat.st_mtime, stat.st_mtime, recovered=True)
                self._anchored[path.name] = sealed.sha256
                recovered.append(sealed)
                self._records.append(sealed)
            previous = path
        return recovered

    def _digest(self, path: Path) -> str:
        return self._anchored.get(path.name) or file_sha256(path)

    @property
    def current_path(self) -> Path:
        return self.directory / segment_name(self._index)

    @property
    def dropped_bytes(self) -> int:
        return self._dropped

    # -- internals ------------------------------------------------------------------------------

    def _open_segment(self) -> None:
        path = self.current_path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
                           | os.O_CLOEXEC, 0o600)
        self._hash = hashlib.sha256()
        self._size = 0
        self._start_wall = int(self._clock())
        self._started = float(self._start_wall)
        header: dict[str, Any] = {
            "version": 2,
            "width": 80,
            "height": 24,
            "timestamp": self._start_wall,
            "title": f"console of {self.vm}",
            "env": {"TERM": "xterm"},
            "certgate": {"vm": self.vm, "segment": self._index,
                         "previous_sha256": self._previous},
        }
        self._queue(header)
        self._write_out()

    def _seal(self) -> SealedSegment:
        tail = self._decoder.decode(b"", final=True)
        now = self._clock()
        if tail:
            self._queue([self._elapsed(now), "o", tail])
        self._write_out()
        assert self._fd is not None
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None
        sealed = SealedSegment(self.vm, segment_name(self._index), self._index,
                               self._hash.hexdigest(), self._previous, self._size,
                               self._started, now)
        self._records.append(sealed)
        self._previous = sealed.sha256
        self._index += 1
        return sealed

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._refilled)
        self._refilled = now
        self._tokens = min(float(self.settings.burst),
                           self._tokens + elapsed * self.settings.rate_limit)

    def _note_dropped(self) -> None:
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            self.note(f"{dropped} bytes of console output not logged: over the log limit of "
                      f"{self.settings.rate_limit} bytes/s")

    def _elapsed(self, now: float) -> float:
        return round(max(0.0, now - self._started), 6)

    def _append(self, event: list[Any], now: float) -> None:
        if self._closed:
            raise CertgateError(f"the console log of {self.vm} is closed")
        self._queue(event)
        if self._oldest_pending is None:
            self._oldest_pending = now
        if now - self._oldest_pending >= 1.0 or self._pending_size >= MAX_BUFFER:
            self._write_out()
        if self._size + self._pending_size >= self.settings.segment_bytes:
            self.rotate()

    def _queue(self, value: Any) -> None:
        if isinstance(value, list):
            # An event: the bytes json.dumps writes, without its cost (the recorder's escaping;
            # bulk output spent most of this writer's time in json.dumps).
            elapsed, code, text = value
            line = b'[%s, %s, %s]\n' % (repr(float(elapsed)).encode(), json_string(code),
                                        json_string(text))
        else:
            line = (json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
                    + "\n").encode()
        self._pending.append(line)
        self._pending_size += len(line)

    def _write_out(self) -> None:
        if not self._pending or self._fd is None:
            return
        data = b"".join(self._pending)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._hash.update(data)
        self._size += len(data)
        self._pending.clear()
        self._pending_size = 0
        self._oldest_pending = None

    def _apply_retention(self, now: float) -> None:
        sealed = [(i, p) for i, p in list_segments(self.directory) if i < self._index]
        sizes = {p: p.stat().st_size for _, p in sealed}
        total = sum(sizes.values()) + self._size
        max_age = self.settings.retain_days * 86400
        for _, path in sealed:
            reason = None
            if now - path.stat().st_mtime > max_age:
                reason = f"older than {self.settings.retain_days:g} days"
            elif total > self.settings.retain_bytes:
                reason = f"log above {self.settings.retain_bytes} bytes"
            if reason is None:
                continue
            path.unlink()
            total -= sizes[path]
            self._records.append(ExpiredSegment(self.vm, path.name, reason))
            self.note(f"segment {path.name} removed by retention ({reason})")
