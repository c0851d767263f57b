"""Console logs in the search index: each VM's asciicast segments, indexed as they grow.

A console log (``HOME/console-logs/VM/NNNNNNNN.cast``, written by the console keeper) is
append-only while its segment is open and never changes once sealed, so each segment is
indexed once, from where the last catch-up stopped: ``console_segments.indexed_bytes`` is a
byte offset at an event-line boundary. While a segment is still being written, output after
its last line end is held back (the line may be half-typed; indexing it now would split a
word across two chunks) unless the file has been quiet for ``QUIET_SECONDS`` or a newer
segment exists. A segment is recognised by the SHA-256 of its header line (VM, index,
previous segment's hash, start time), so a log that was deleted and restarted at
``00000001.cast`` is indexed afresh. Segments that retention (or a person) removed lose
their rows at the next catch-up.

The files are outside data as far as this code is concerned: names are matched in full,
paths must resolve inside the console logs directory, reads are bounded (``MAX_BATCH_BYTES``
at a time, event lines of at most ``MAX_EVENT_BYTES``), and a line that is not an asciicast
event is skipped, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from certgate.audit.replay import CastEvent, parse_event
from certgate.consolelog.writer import list_segments
from certgate.web.console_logs import MAX_HEADER_BYTES, header_start, vm_name_ok
from certgate.web.search_index import SearchIndex, contained
from certgate.web.terminal_text import chunks

MAX_BATCH_BYTES = 16 * 1024 * 1024
MAX_EVENT_BYTES = 1024 * 1024
QUIET_SECONDS = 5.0


@dataclass(frozen=True)
class ConsoleCatchUp:
    chunks_added: int
    segments_touched: int
    segments_removed: int


@dataclass(frozen=True)
class _Known:
    started: float
    header_sha256: str
    indexed_bytes: int
    chunks: int
    file_stamp: str


@dataclass(frozen=True)
class _OnDisk:
    path: Path
    newest: bool


def segments_on_disk(logs_dir: Path) -> dict[tuple[str, str], _OnDisk]:
    """Every (VM, segment name) under ``logs_dir`` that is a regular file inside it."""
    found: dict[tuple[str, str], _OnDisk] = {}
    try:
        root = logs_dir.resolve()
        directories = sorted(logs_dir.iterdir())
    except OSError:
        return found
    for directory in directories:
        if not vm_name_ok(directory.name):
            continue
        try:
            if not directory.is_dir() or not directory.resolve().is_relative_to(root):
                continue
            segments = list_segments(directory)
        except OSError:
            continue
        for position, (_, path) in enumerate(segments):
            if contained(logs_dir, str(path)) is None:
                continue
            found[directory.name, path.name] = _OnDisk(path, position == len(segments) - 1)
    return found


def catch_up_console_logs(index: SearchIndex, logs_dir: Path, *,
                          now: float | None = None) -> ConsoleCatchUp:
    """Bring the index up to date with ``logs_dir``: new output in, removed segments out."""
    now = time.time() if now is None else now
    added = touched = removed = 0
    with index.writing() as connection:
        known = {(str(r[0]), str(r[1])): _Known(float(r[2]), str(r[3]), int(r[4]), int(r[5]),
                                                str(r[6]))
                 for r in connection.execute(
                     "SELECT vm, segment, started, header_sha256, indexed_bytes, chunks, "
                     "file_stamp FROM console_segments")}
        on_disk = segments_on_disk(logs_dir)
        for vm, segment in sorted(known.keys() - on_disk.keys()):
            _forget(connection, vm, segment)
            removed += 1
        for (vm, segment), found in sorted(on_disk.items()):
            count = _index_segment(connection, vm, segment, found, known.get((vm, segment)),
                                   now)
            if count is not None:
                added += count
                touched += 1
    return ConsoleCatchUp(added, touched, removed)


def _index_segment(connection: sqlite3.Connection, vm: str, segment: str, found: _OnDisk,
                   state: _Known | None, now: float) -> int | None:
    """Index what is new in one segment; the number of chunks added, None if unchanged."""
    try:
        stat = found.path.stat()
        stamp = f"{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"
        if state is not None and state.file_stamp == stamp \
                and state.indexed_bytes == stat.st_size:
            return None
        with found.path.open("rb") as handle:
            header_line = handle.readline(MAX_HEADER_BYTES)
            if not header_line.endswith(b"\n"):
                return None  # a segment being created, or not a console log at all
            header_sha256 = hashlib.sha256(header_line).hexdigest()
            if state is not None and (state.header_sha256 != header_sha256
                                      or state.indexed_bytes > stat.st_size):
                _forget(connection, vm, segment)  # replaced under the same name
                state = None
            started = header_start(header_line)
            if started is None:
                _remember(connection, vm, segment, 0.0, header_sha256, stat.st_size, 0, stamp)
                return 0
            offset = state.indexed_bytes if state is not None else len(header_line)
            total = state.chunks if state is not None else 0
            quiet = not found.newest or now - stat.st_mtime >= QUIET_SECONDS
            count = 0
            while True:
                handle.seek(offset)
                data = handle.read(MAX_BATCH_BYTES)
                events, end = _complete_events(data, offset, hold_back_open_line=not quiet)
                if end == offset:
                    break
                rows = [(c.text, vm, c.t_start, c.t_end, segment) for c in chunks(events)]
                _store(connection, vm, segment, rows, started, header_sha256, end,
                       total + count + len(rows), stamp)
                count += len(rows)
                offset = end
                if len(data) < MAX_BATCH_BYTES:
                    break
            if state is None and count == 0:
                _remember(connection, vm, segment, started, header_sha256, offset, 0, stamp)
            return count
    except OSError:
        return None  # removed while we looked: the next catch-up forgets it


def _complete_events(data: bytes, offset: int, *, hold_back_open_line: bool
                     ) -> tuple[list[CastEvent], int]:
    """The events in ``data`` (read at ``offset``) and the offset after the last one used.

    Only whole lines count. With ``hold_back_open_line`` the events after the last output
    containing a line end wait for the next catch-up. A block without any line end (an
    over-long line) is skipped whole.
    """
    cut = data.rfind(b"\n") + 1
    if cut == 0:
        return [], offset + len(data) if len(data) >= MAX_BATCH_BYTES else offset
    events: list[CastEvent] = []
    used = offset
    kept_through = -1
    position = offset
    for line in _lines(data[:cut]):
        position += len(line) + 1
        event = _event(line)
        if event is None:
            if not events or kept_through == len(events) - 1:
                used = position  # nothing held back before it: skip it for good
            continue
        events.append(event)
        if not hold_back_open_line or (event.code == "o" and ("\n" in event.data
                                                              or "\r" in event.data)):
            kept_through = len(events) - 1
            used = position
    return events[:kept_through + 1], used


def _lines(data: bytes) -> Iterator[bytes]:
    start = 0
    while start < len(data):
        end = data.index(b"\n", start)
        yield data[start:end]
        start = end + 1


def _event(line: bytes) -> CastEvent | None:
    if len(line) > MAX_EVENT_BYTES or not line.strip():
        return None
    try:
        return parse_event(json.loads(line))
    except ValueError:
        return None


def _store(connection: sqlite3.Connection, vm: str, segment: str,
           rows: list[tuple[str, str, float, float, str]], started: float,
           header_sha256: str, indexed_bytes: int, total: int, stamp: str) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        if rows:
            top = connection.execute(
                "SELECT rowid FROM chunks ORDER BY rowid DESC LIMIT 1").fetchone()
            first = (int(top[0]) if top else 0) + 1
            connection.executemany(
                "INSERT INTO chunks(rowid, text, session_id, vm, t_start, t_end, segment) "
                "VALUES (?, ?, NULL, ?, ?, ?, ?)",
                [(first + n, *row) for n, row in enumerate(rows)])
            connection.execute("INSERT INTO console_batches VALUES (?, ?, ?, ?)",
                               (vm, segment, first, first + len(rows) - 1))
        _remember(connection, vm, segment, started, header_sha256, indexed_bytes, total,
                  stamp)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _remember(connection: sqlite3.Connection, vm: str, segment: str, started: float,
              header_sha256: str, indexed_bytes: int, total: int, stamp: str) -> None:
    connection.execute(
        "INSERT OR REPLACE INTO console_segments VALUES (?, ?, ?, ?, ?, ?, ?)",
        (vm, segment, started, header_sha256, indexed_bytes, total, stamp))


def _forget(connection: sqlite3.Connection, vm: str, segment: str) -> None:
    """Remove a segment's rows (retention removed it, or it was replaced)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        for first, last in connection.execute(
                "SELECT first_rowid, last_rowid FROM console_batches "
                "WHERE vm = ? AND segment = ?", (vm, segment)).fetchall():
            connection.execute("DELETE FROM chunks WHERE rowid >= ? AND rowid <= ?",
                               (first, last))
        connection.execute("DELETE FROM console_batches WHERE vm = ? AND segment = ?",
                           (vm, segment))
        connection.execute("DELETE FROM console_segments WHERE vm = ? AND segment = ?",
                           (vm, segment))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
