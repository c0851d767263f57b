"""Session recordings in asciicast v2, written as the session runs.

Events are buffered and handed to the kernel (one ``write``) at least once a second: on each
event when the oldest unwritten one is a second old, and on ``tick()``, which the gateway calls
every second so a quiet session is written out too. A crashed gateway process therefore loses
at most about a second of a recording; ``close()`` fsyncs. The SHA-256 of the bytes as written
goes into the ``session.end`` audit event, which makes later edits to the file detectable.

Console bytes are decoded as UTF-8 with one incremental decoder per direction, so a character
split across two reads stays one character; bytes that are not UTF-8 become U+FFFD (asciicast
is JSON text and cannot hold them). Each read is one event, stamped to the microsecond: events
are never merged, so the timing is what the gateway saw.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from certgate.errors import CertgateError

FLUSH_INTERVAL = 1.0
MAX_BUFFER = 64 * 1024
JOIN_BELOW = 4096
"""An event line whose text escapes to fewer bytes than this is queued as one joined part;
larger texts are queued as they came from the escaper (no copy) and written with ``writev``."""
IOV_MAX = os.sysconf("SC_IOV_MAX")
"""``writev`` takes at most this many parts at once (Linux: 1024)."""
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def recording_path(recordings_dir: Path, session_id: str) -> Path:
    """Where a session's recording lives; the id must be a plain file name."""
    if not _SESSION_ID.fullmatch(session_id):
        raise CertgateError(f"session id {session_id!r} cannot name a recording file")
    return recordings_dir / f"{session_id}.cast"


LIMIT_NOTE_ROOM = 256
"""Bytes kept free under ``max_bytes`` for the note that says the limit was reached."""


def json_string(text: str) -> bytes:
    """``text`` as a JSON string, quotes included, byte for byte as
    ``json.dumps(text, ensure_ascii=False)`` writes it, in UTF-8.

    Why orjson: recording bulk output is the gateway's largest cost above a bare SSH hop, and
    orjson's escaper (SIMD) took 10 ms per 32 MiB of console text here, escaping the bytes
    with ``bytes.replace`` passes 31-46 ms and ``json``'s own C encoder 87 ms. Its output for
    any text without lone surrogates is the same as ``json``'s (tests check every code
    point); text decoded from bytes never holds one.
    """
    return orjson.dumps(text)


class AsciicastWriter:
    """Streams one session to ``path`` (created 0600, never overwritten)."""

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        term: str = "xterm",
        title: str | None = None,
        record_input: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_time: float | None = None,
        flush_interval: float = FLUSH_INTERVAL,
        max_bytes: int | None = None,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.limit_reached = False
        self.record_input = record_input
        self._clock = clock
        self._start = clock()
        self._flush_interval = flush_interval
        self._hash = hashlib.sha256()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._oldest_pending: float | None = None
        self._decoders = {
            "o": codecs.getincrementaldecoder("utf-8")(errors="replace"),
            "i": codecs.getincrementaldecoder("utf-8")(errors="replace"),
        }
        self.bytes_written = 0
        self._closed = False
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        header: dict[str, Any] = {
            "version": 2,
            "width": width,
            "height": height,
            "timestamp": int(wall_time if wall_time is not None else time.time()),
            "env": {"TERM": term},
        }
        if title is not None:
            header["title"] = title
        self._queue(header)
        self._write_out()

    # -- events -------------------------------------------------------------------------------

    def output(self, data: bytes) -> None:
        """Bytes the guest sent towards the user."""
        self._event("o", data)

    def input(self, data: bytes) -> None:
        """Bytes the user typed; kept only when the policy asked for input recording."""
        if self.record_input:
            self._event("i", data)

    def resize(self, columns: int, rows: int) -> None:
        self._append([self._elapsed(), "r", f"{columns}x{rows}"])

    def tick(self) -> None:
        """Called once a second by the gateway: writes out whatever is pending, so no event
        waits longer than the tick period even when the session goes quiet."""
        self._write_out()

    def close(self) -> str:
        """Write everything, fsync, close; returns the SHA-256 (hex) of the file."""
        if not self._closed:
            for code, decoder in self._decoders.items():
                tail = decoder.decode(b"", final=True)
                if tail:
                    self._append([self._elapsed(), code, tail])
            self._write_out()
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._closed = True
        return self._hash.hexdigest()

    @property
    def sha256(self) -> str:
        """Digest of what has been written so far (final after ``close()``)."""
        return self._hash.hexdigest()

    def __enter__(self) -> AsciicastWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return round(max(0.0, self._clock() - self._start), 6)

    def _event(self, code: str, data: bytes) -> None:
        decoder = self._decoders[code]
        if data.isascii() and not decoder.getstate()[0]:
            text = data.decode("ascii")  # a copy at memory speed, no UTF-8 state to keep
        else:
            text = decoder.decode(data)
            if not text:
                return
        self._append([self._elapsed(), code, text])

    def _append(self, event: list[Any]) -> None:
        """``event``: elapsed seconds, code, text."""
        if self._closed:
            raise CertgateError(f"recording {self.path} is already closed")
        if self.limit_reached:
            return
        parts, size = len(self._pending), self._pending_size
        self._queue(event)
        if (self.max_bytes is not None
                and self.bytes_written + self._pending_size > self.max_bytes - LIMIT_NOTE_ROOM):
            del self._pending[parts:]  # the whole line, however many parts it was queued in
            self._pending_size = size
            self.limit_reached = True
            self._queue([event[0], "o", f"\r\n[certgate: recording limit of {self.max_bytes} "
                                        "bytes reached; the rest of this session is not "
                                        "recorded]\r\n"])
            self._write_out()
            return
        now = self._clock()
        if self._oldest_pending is None:
            self._oldest_pending = now
        if (now - self._oldest_pending >= self._flush_interval
                or self._pending_size >= MAX_BUFFER):
            self._write_out()

    def _queue(self, value: Any) -> None:
        """Queue one line: a large one as three parts, its text not copied again."""
        if isinstance(value, list):
            elapsed, code, text = value
            head = b'[%s, "%s", ' % (repr(float(elapsed)).encode(), code.encode())
            body = json_string(text)
            parts = ([head + body + b"]\n"] if len(body) < JOIN_BELOW
                     else [head, body, b"]\n"])
        else:
            parts = [(json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
                      + "\n").encode()]
        self._pending.extend(parts)
        self._pending_size += sum(len(part) for part in parts)

    def _write_out(self) -> None:
        if not self._pending:
            return
        parts = self._pending
        for part in parts:
            self._hash.update(part)
        for start in range(0, len(parts), IOV_MAX):
            batch = parts[start:start + IOV_MAX]
            size = sum(len(part) for part in batch)
            written = os.writev(self._fd, batch)
            if written < size:  # a short write: the rest one buffer at a time
                view = memoryview(b"".join(batch))[written:]
                while view:
                    view = view[os.write(self._fd, view):]
        self.bytes_written += self._pending_size
        self._pending = []
        self._pending_size = 0
        self._oldest_pending = None
