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
symbolic links are not followed (so every file read is inside the console logs directory),
reads are bounded (``MAX_BATCH_BYTES`` at a time, event lines of at most
``MAX_EVENT_BYTES``), and a line that is not an asciicast event is skipped, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from certgate.audit.replay import PLAIN_EVENT_LINE, CastEvent, parse_event
from certgate.web.console_logs import (
    MAX_HEADER_BYTES,
    header_start,
    segment_name_ok,
    vm_name_ok,
)
from certgate.web.search_index import SearchIndex
from certgate.web.terminal_text import output_chunks

MAX_BATCH_BYTES = 16 * 1024 * 1024
MAX_EVENT_BYTES = 1024 * 1024
QUIET_SECONDS = 5.0
COMMIT_BYTES = 32 * 1024 * 1024
RACY_SECONDS = 2.0
SEALED = ":sealed"
"""Suffix of ``console_segments.file_stamp`` (inode:size:mtime_ns) when a newer segment
existed as the file was looked at: it will not grow again."""


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


_OnDisk = tuple[str, bool]
"""A segment found on disk: its VM directory's path, and whether it is the newest there."""


class SegmentListings:
    """Segment names per VM directory, kept between catch-ups in one process.

    A directory's mtime moves when a segment is created or removed, so its listing is reused
    while the mtime is unchanged, which leaves one ``stat`` per VM per search. A listing
    made less than ``RACY_SECONDS`` after that mtime is never reused: file systems stamp
    with a coarse clock, so a segment created in the same tick as the scan would not move
    the mtime again.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, list[str]]] = {}

    def names(self, directory: os.DirEntry[str], now: float,
              seen: dict[str, tuple[int, list[str]]]) -> list[str]:
        stat = directory.stat(follow_symlinks=False)
        cached = self._seen.get(directory.path)
        if cached is not None and cached[0] == stat.st_mtime_ns:
            names = cached[1]
        else:
            names = sorted(entry.name for entry in os.scandir(directory.path)
                           if segment_name_ok(entry.name)
                           and entry.is_file(follow_symlinks=False))
        if now - stat.st_mtime > RACY_SECONDS:
            seen[directory.path] = (stat.st_mtime_ns, names)
        return names

    def replace(self, seen: dict[str, tuple[int, list[str]]]) -> None:
        self._seen = seen


def segments_on_disk(logs_dir: Path, listings: SegmentListings | None = None,
                     now: float | None = None) -> dict[tuple[str, str], _OnDisk]:
    """Every (VM, segment name) under ``logs_dir``: regular files in real directories.

    Symbolic links (a VM directory or a segment) are not followed, so everything found is
    inside ``logs_dir``; no path is resolved.
    """
    listings = listings or SegmentListings()
    now = time.time() if now is None else now
    found: dict[tuple[str, str], _OnDisk] = {}
    seen: dict[str, tuple[int, list[str]]] = {}
    try:
        directories = sorted(os.scandir(logs_dir), key=lambda entry: entry.name)
    except OSError:
        return found
    for directory in directories:
        try:
            if not vm_name_ok(directory.name) or not directory.is_dir(follow_symlinks=False):
                continue
            names = listings.names(directory, now, seen)
        except OSError:
            continue
        newest = names[-1] if names else ""
        for name in names:
            found[directory.name, name] = (directory.path, name == newest)
    listings.replace(seen)
    return found


def catch_up_console_logs(index: SearchIndex, logs_dir: Path, *, now: float | None = None,
                          listings: SegmentListings | None = None) -> ConsoleCatchUp:
    """Bring the index up to date with ``logs_dir``: new output in, removed segments out.

    ``listings``: keep one per process (the review site does) to skip rescanning VM
    directories that did not change."""
    now = time.time() if now is None else now
    added = touched = removed = 0
    with index.writing() as connection, _Writes(connection) as writes:
        finished: set[tuple[str, str]] = set()
        progress: dict[tuple[str, str], tuple[int, str]] = {}
        for vm, segment, indexed_bytes, stamp, done in connection.execute(_PROGRESS):
            if done:
                finished.add((vm, segment))
            else:
                progress[vm, segment] = (indexed_bytes, stamp)
        on_disk = segments_on_disk(logs_dir, listings, now)
        for vm, segment in sorted((finished | progress.keys()) - on_disk.keys()):
            _forget(writes, vm, segment)
            removed += 1
        for (vm, segment), (directory, newest) in on_disk.items():
            if (vm, segment) in finished:
                continue  # sealed segments do not change (audit verify notices if they do)
            seen = progress.get((vm, segment))
            path = os.path.join(directory, segment)
            try:
                stat = os.lstat(path)
            except OSError:
                continue  # removed while we looked: the next catch-up forgets it
            stamp = f"{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"
            if not newest:
                stamp += SEALED
            if seen is not None and seen[1] == stamp and _complete(seen[0], stamp):
                continue
            state = _known(writes, vm, segment)  # read again inside the write transaction
            count = _index_segment(writes, vm, segment, path, stat, stamp, newest, state, now)
            if count is not None:
                added += count
                touched += 1
    return ConsoleCatchUp(added, touched, removed)


_PROGRESS = (
    "SELECT vm, segment, indexed_bytes, file_stamp, "
    # finished: sealed when last looked at, and indexed up to the size it had then
    # (file_stamp is inode:size:mtime_ns[:sealed]; CAST reads the leading digits)
    f"file_stamp LIKE '%{SEALED}' AND indexed_bytes = "
    "CAST(substr(file_stamp, instr(file_stamp, ':') + 1) AS INTEGER) "
    "FROM console_segments")


def _known(writes: _Writes, vm: str, segment: str) -> _Known | None:
    row = writes.execute(
        "SELECT started, header_sha256, indexed_bytes, chunks, file_stamp "
        "FROM console_segments WHERE vm = ? AND segment = ?", (vm, segment)).fetchone()
    if row is None:
        return None
    return _Known(float(row[0]), str(row[1]), int(row[2]), int(row[3]), str(row[4]))


def _index_segment(writes: _Writes, vm: str, segment: str, path: str,
                   stat: os.stat_result, stamp: str, newest: bool, state: _Known | None,
                   now: float) -> int | None:
    """Index what is new in one segment; the number of chunks added, None if unchanged."""
    try:
        if state is not None and state.file_stamp == stamp \
                and _complete(state.indexed_bytes, stamp):
            return None
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb") as handle:
            header_line = handle.readline(MAX_HEADER_BYTES)
            if not header_line.endswith(b"\n"):
                return None  # a segment being created, or not a console log at all
            header_sha256 = hashlib.sha256(header_line).hexdigest()
            if state is not None and (state.header_sha256 != header_sha256
                                      or state.indexed_bytes > stat.st_size):
                _forget(writes, vm, segment)  # replaced under the same name
                state = None
            started = header_start(header_line)
            if started is None:
                _remember(writes, vm, segment, 0.0, header_sha256, stat.st_size, 0, stamp)
                return 0
            offset = state.indexed_bytes if state is not None else len(header_line)
            total = state.chunks if state is not None else 0
            quiet = not newest or now - stat.st_mtime >= QUIET_SECONDS
            count = 0
            while True:
                handle.seek(offset)
                data = handle.read(MAX_BATCH_BYTES)
                times, texts, end = _complete_events(data, offset,
                                                     hold_back_open_line=not quiet)
                if end == offset:
                    break
                rows = [(c.text, vm, c.t_start, c.t_end, segment)
                        for c in output_chunks(times, texts)]
                _store(writes, vm, segment, rows, started, header_sha256, end,
                       total + count + len(rows), stamp)
                writes.read(end - offset)
                count += len(rows)
                offset = end
                if len(data) < MAX_BATCH_BYTES:
                    break
            if state is None and count == 0:
                _remember(writes, vm, segment, started, header_sha256, offset, 0, stamp)
            return count
    except OSError:
        return None  # removed while we looked: the next catch-up forgets it


def _complete(indexed_bytes: int, stamp: str) -> bool:
    """Indexed up to the size the file had when it was last looked at."""
    parts = stamp.split(":")
    return len(parts) >= 3 and parts[1].isdigit() and indexed_bytes == int(parts[1])


_Line = tuple[float | None, str, str, int]
"""One line of a segment: time, code and text of its event (time None: not an event), and
its length in bytes with the line end."""


def _complete_events(data: bytes, offset: int, *, hold_back_open_line: bool
                     ) -> tuple[list[float], list[str], int]:
    """Times and texts of the output events in ``data`` (read at ``offset``), and the
    offset after the last line used.

    Only whole lines count. With ``hold_back_open_line`` the events after the last output
    containing a line end wait for the next catch-up. A block without any line end (an
    over-long line) is skipped whole; a line that is not an event is skipped unless
    something before it is held back.
    """
    cut = data.rfind(b"\n") + 1
    if cut == 0:
        return [], [], offset + len(data) if len(data) >= MAX_BATCH_BYTES else offset
    block = data[:cut]
    times: list[float] = []
    texts: list[str] = []
    kept = 0
    used = position = offset
    holding = False
    for at, code, text, length in _plain_lines(block) or _lines_one_by_one(block):
        position += length
        if at is None:
            if not holding:
                used = position
            continue
        if code == "o":
            times.append(at)
            texts.append(text)
        if not hold_back_open_line or (code == "o" and ("\n" in text or "\r" in text)):
            kept, used, holding = len(times), position, False
        else:
            holding = True
    return times[:kept], texts[:kept], used


def _plain_lines(block: bytes) -> list[_Line] | None:
    """Every line of ``block`` when all are events in the writer's own plain shape (one
    regular-expression pass and one JSON decode for all texts); None otherwise."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lengths = [len(line) + 1 for line in block.split(b"\n")[:-1]]
    if len(block) > MAX_EVENT_BYTES and max(lengths) > MAX_EVENT_BYTES:
        return None
    found = PLAIN_EVENT_LINE.findall(text)
    if len(found) != len(lengths):
        return None
    decoded = json.loads('["' + '","'.join([escaped for _, _, escaped in found]) + '"]')
    return [(float(at), code, data, length)
            for (at, code, _), data, length in zip(found, decoded, lengths, strict=True)]


def _lines_one_by_one(block: bytes) -> list[_Line]:
    lines: list[_Line] = []
    for line in block.split(b"\n")[:-1]:
        event = _event(line)
        if event is None:
            lines.append((None, "", "", len(line) + 1))
        else:
            lines.append((event.time, event.code, event.data, len(line) + 1))
    return lines


def _event(line: bytes) -> CastEvent | None:
    if len(line) > MAX_EVENT_BYTES or not line.strip():
        return None
    try:
        return parse_event(json.loads(line))
    except ValueError:
        return None


def _store(writes: _Writes, vm: str, segment: str,
           rows: list[tuple[str, str, float, float, str]], started: float,
           header_sha256: str, indexed_bytes: int, total: int, stamp: str) -> None:
    if rows:
        top = writes.execute("SELECT rowid FROM chunks ORDER BY rowid DESC LIMIT 1").fetchone()
        first = (int(top[0]) if top else 0) + 1
        writes.executemany(
            "INSERT INTO chunks(rowid, text, session_id, vm, t_start, t_end, segment) "
            "VALUES (?, ?, NULL, ?, ?, ?, ?)",
            [(first + n, *row) for n, row in enumerate(rows)])
        writes.execute("INSERT INTO console_batches VALUES (?, ?, ?, ?)",
                       (vm, segment, first, first + len(rows) - 1))
    _remember(writes, vm, segment, started, header_sha256, indexed_bytes, total, stamp)


def _remember(writes: _Writes, vm: str, segment: str, started: float,
              header_sha256: str, indexed_bytes: int, total: int, stamp: str) -> None:
    writes.execute(
        "INSERT OR REPLACE INTO console_segments VALUES (?, ?, ?, ?, ?, ?, ?)",
        (vm, segment, started, header_sha256, indexed_bytes, total, stamp))


def _forget(writes: _Writes, vm: str, segment: str) -> None:
    """Remove a segment's rows (retention removed it, or it was replaced)."""
    for first, last in writes.execute(
            "SELECT first_rowid, last_rowid FROM console_batches "
            "WHERE vm = ? AND segment = ?", (vm, segment)).fetchall():
        writes.execute("DELETE FROM chunks WHERE rowid >= ? AND rowid <= ?", (first, last))
    writes.execute("DELETE FROM console_batches WHERE vm = ? AND segment = ?", (vm, segment))
    writes.execute("DELETE FROM console_segments WHERE vm = ? AND segment = ?",
                   (vm, segment))


class _Writes:
    """A catch-up's writes: one transaction, committed whenever ``COMMIT_BYTES`` of logs
    have been read (so a first backfill does not hold the write lock for minutes) and at
    the end; rolled back on an error, so what was committed is always consistent (rows,
    batches and offsets move together)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self._open = False
        self._read = 0

    def __enter__(self) -> _Writes:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if not self._open:
            return
        self._open = False
        self.connection.execute("COMMIT" if kind is None else "ROLLBACK")

    def execute(self, sql: str, parameters: tuple[object, ...] = ()) -> sqlite3.Cursor:
        self._begin()
        return self.connection.execute(sql, parameters)

    def executemany(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        self._begin()
        self.connection.executemany(sql, rows)

    def read(self, size: int) -> None:
        self._read += size
        if self._open and self._read >= COMMIT_BYTES:
            self.connection.execute("COMMIT")
            self._open = False
            self._read = 0

    def _begin(self) -> None:
        if not self._open:
            self.connection.execute("BEGIN IMMEDIATE")
            self._open = True
