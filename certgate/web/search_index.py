"""Full-text search over session recordings and console logs: SQLite FTS5 in a file of its own.

Why FTS5 in a separate file, on either database backend: recordings are files in the home,
not rows in the database, and their text is derived data that can always be rebuilt from
them. Keeping it out of the main database keeps gigabytes of terminal text out of
PostgreSQL's WAL and backups, and keeps index writes off the SQLite write lock the gateway's
audit appends need. FTS5's unicode61 tokenizer splits on punctuation without stemming,
which suits terminal output (paths, host names, hex) better than PostgreSQL's language
stemmers, and rowid-ordered matches ("newest first") stay fast as the corpus grows.

The index is eventually consistent: recordings are added when their session has ended,
by ``catch_up``, and console log segments (``console_log_index``) up to the last complete
output line, both of which the review site runs at start-up and before a search.

The file is derived data: when its ``PRAGMA user_version`` is not ``SCHEMA_VERSION`` it is
emptied and rebuilt from the recordings and logs rather than refused.
"""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from certgate.audit.replay import read_cast
from certgate.errors import CertgateError
from certgate.store.database import Database
from certgate.store.schema import ConsoleSessionRow
from certgate.web.terminal_text import chunks, recording_chunks

MAX_QUERY_CHARS = 200
MAX_TERMS = 8
CATCH_UP_OVERLAP = timedelta(minutes=5)
"""Sessions that ended this long before the newest indexed one are looked at again: a
slower gateway may commit its ``session.end`` after a faster one's."""

PARALLEL_FROM = 64
"""Fewer new recordings than this are read in the writing process itself."""
TRANSACTION_CHARS = 32 << 20
"""Chunk text per write transaction: fewer, larger FTS5 segments and commits in a backfill;
a crash loses at most that much work (each recording commits with its chunks)."""
WRITER_CACHE_KIB = 64 << 10
WHOLE_FILE_BYTES = 64 << 20
"""Recordings up to this size are parsed in one piece (fast); larger ones are streamed."""

SCHEMA_VERSION = 2
"""1: recordings only; 2: console log segments too (``chunks.segment``, ``console_*``)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    session_id TEXT PRIMARY KEY,
    vm TEXT NOT NULL,
    user_name TEXT NOT NULL,
    ended_at TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    indexed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_ended ON recordings(ended_at);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(
    text, session_id UNINDEXED, vm UNINDEXED, t_start UNINDEXED, t_end UNINDEXED,
    segment UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS console_segments (
    vm TEXT NOT NULL,
    segment TEXT NOT NULL,
    started REAL NOT NULL,
    header_sha256 TEXT NOT NULL,
    indexed_bytes INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    file_stamp TEXT NOT NULL,
    PRIMARY KEY (vm, segment)
);
CREATE TABLE IF NOT EXISTS console_batches (
    vm TEXT NOT NULL,
    segment TEXT NOT NULL,
    first_rowid INTEGER NOT NULL,
    last_rowid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS console_batches_segment ON console_batches(vm, segment);
"""
"""``chunks``: a recording's chunk has ``session_id`` and no ``segment``; a console log's
chunk has ``segment`` (its file name) and no ``session_id``; times are seconds from the
start of the recording or segment. ``console_segments.indexed_bytes`` is how far (a line
boundary) a segment was indexed, ``file_stamp`` (inode, size, mtime) when it was last
looked at; ``console_batches`` are the rowid ranges each catch-up
added, so a segment removed by retention takes its rows with it."""
_TABLES = ("chunks", "recordings", "console_segments", "console_batches")

_TERM = re.compile(r"[^\s\"]+")


class SearchQueryError(CertgateError):
    """The search text cannot be used (empty, too long)."""


def fts_query(text: str) -> str:
    """The reviewer's words as an FTS5 query: every word must occur, each taken literally.

    Each word becomes a quoted phrase, so FTS5 operators (``OR``, ``NEAR``, ``*``, column
    filters) typed by a reviewer are searched for as text, never interpreted.
    """
    if len(text) > MAX_QUERY_CHARS:
        raise SearchQueryError(f"search text is longer than {MAX_QUERY_CHARS} characters")
    terms = _TERM.findall(text)
    if not terms:
        raise SearchQueryError("type a word to search for")
    if len(terms) > MAX_TERMS:
        raise SearchQueryError(f"search for at most {MAX_TERMS} words")
    return " ".join(f'"{term}"' for term in terms)


@dataclass(frozen=True)
class SearchHit:
    session_id: str
    """Empty for a console log hit."""
    vm: str
    t_start: float
    t_end: float
    snippet: str
    """Text with matches between \\x02 and \\x03 (control characters cannot occur in it)."""
    segment: str | None = None
    """The console log segment's file name, for a console log hit."""
    segment_started: float | None = None
    """Unix time the segment began (its header), for a console log hit."""

    @property
    def in_console_log(self) -> bool:
        return self.segment is not None

    @property
    def at(self) -> datetime | None:
        """When the matched text was shown, for a console log hit."""
        if self.segment_started is None:
            return None
        return datetime.fromtimestamp(self.segment_started + self.t_start, UTC)


@dataclass(frozen=True)
class IndexStats:
    recordings: int
    chunks: int
    console_segments: int = 0
    console_chunks: int = 0


class SearchIndex:
    """One FTS5 file; any thread may search, one catch-up runs at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._writer_lock = threading.Lock()
        self.rebuilt_from: int | None = None
        """The older schema version this process found and emptied, if any."""
        with self._connect() as connection:
            self._ensure_schema(connection)
        path.chmod(0o600)

    def _ensure_schema(self, connection: sqlite3.Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = int(connection.execute("PRAGMA user_version").fetchone()[0])
            existing = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
            stale = version != SCHEMA_VERSION and bool(existing & set(_TABLES))
            if stale:
                for table in _TABLES:
                    connection.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        if stale:
            self.rebuilt_from = version
            connection.execute("VACUUM")

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A connection for a writer (catch-up), one writer at a time in this process."""
        with self._writer_lock, self._connect() as connection:
            yield connection

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            yield connection
        finally:
            connection.close()

    # -- reading ------------------------------------------------------------------------------

    def search(self, text: str, vms: Sequence[str], *, limit: int = 50) -> list[SearchHit]:
        """Newest matches first, in recordings and console logs of ``vms`` only."""
        query = fts_query(text)
        if not vms:
            return []
        marks = ",".join("?" * len(vms))
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT session_id, vm, t_start, t_end, "
                "snippet(chunks, 0, char(2), char(3), '…', 16), segment FROM chunks "
                f"WHERE chunks MATCH ? AND vm IN ({marks}) ORDER BY rowid DESC LIMIT ?",
                (query, *vms, limit),
            ).fetchall()
            starts = {}
            for vm, segment in {(str(r[1]), r[5]) for r in rows if r[5] is not None}:
                found = connection.execute(
                    "SELECT started FROM console_segments WHERE vm = ? AND segment = ?",
                    (vm, segment)).fetchone()
                if found is not None:
                    starts[vm, segment] = float(found[0])
        return [SearchHit(str(r[0] or ""), str(r[1]), float(r[2]), float(r[3]), str(r[4]),
                          None if r[5] is None else str(r[5]),
                          starts.get((str(r[1]), r[5])))
                for r in rows if r[5] is None or (str(r[1]), r[5]) in starts]

    def stats(self) -> IndexStats:
        with self._connect() as connection:
            recordings, total = connection.execute(
                "SELECT count(*), coalesce(sum(chunks), 0) FROM recordings").fetchone()
            segments, console_total = connection.execute(
                "SELECT count(*), coalesce(sum(chunks), 0) FROM console_segments").fetchone()
        return IndexStats(int(recordings), int(total), int(segments), int(console_total))

    # -- writing ------------------------------------------------------------------------------

    def catch_up(self, database: Database, recordings_dir: Path, *, workers: int = 0) -> int:
        """Index the recordings of sessions that ended since the last catch-up; returns how
        many were added. Unreadable recordings are skipped (the session page says why).

        ``workers`` >= 1 reads recordings in that many other processes while this one writes
        (a first backfill of gigabytes: on two CPUs, one reader and the writer overlap); 0,
        or only a few new recordings, reads them here.
        """
        with self._writer_lock:
            with self._connect() as connection:
                newest = connection.execute("SELECT max(ended_at) FROM recordings").fetchone()[0]
            since = (datetime.fromisoformat(newest) - CATCH_UP_OVERLAP) if newest else None
            with database.read() as session:
                query = select(ConsoleSessionRow.id, ConsoleSessionRow.vm,
                               ConsoleSessionRow.user_name, ConsoleSessionRow.ended_at,
                               ConsoleSessionRow.recording_path).where(
                    ConsoleSessionRow.ended_at.is_not(None),
                    ConsoleSessionRow.recording_path.is_not(None))
                if since is not None:
                    query = query.where(ConsoleSessionRow.ended_at >= since)
                candidates = session.execute(query.order_by(ConsoleSessionRow.ended_at)).all()
            with self._connect() as connection:
                known = {row[0] for row in connection.execute(
                    "SELECT session_id FROM recordings WHERE ended_at >= ?",
                    ((since or datetime.min.replace(tzinfo=UTC)).isoformat(),))}
                todo: list[_Pending] = []
                for session_id, vm, user, ended_at, path in candidates:
                    if session_id in known or ended_at is None:
                        continue
                    cast = contained(recordings_dir, path)
                    if cast is not None:
                        todo.append(_Pending(session_id, vm, user, ended_at, cast))
                if len(todo) < PARALLEL_FROM:
                    workers = 0
                self._store(connection, todo, _read_all(todo, workers))
            return len(todo)

    def _store(self, connection: sqlite3.Connection, todo: list[_Pending],
               found: Iterator[list[_Row]]) -> None:
        """Write recordings' chunks in ended-at order (rowids newest last), many recordings
        per transaction: a recording and its chunks always commit together."""
        connection.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        pending = 0
        connection.execute("BEGIN IMMEDIATE")
        try:
            for item, chunk_list in zip(todo, found, strict=True):
                connection.executemany(
                    "INSERT INTO chunks(text, session_id, vm, t_start, t_end) "
                    "VALUES (?,?,?,?,?)",
                    [(text, item.session_id, item.vm, t_start, t_end)
                     for text, t_start, t_end in chunk_list])
                connection.execute(
                    "INSERT OR REPLACE INTO recordings VALUES (?,?,?,?,?,?)",
                    (item.session_id, item.vm, item.user, item.ended_at.isoformat(),
                     len(chunk_list), datetime.now(UTC).isoformat()))
                pending += sum(len(row[0]) for row in chunk_list) + 1
                if pending >= TRANSACTION_CHARS:
                    connection.execute("COMMIT")
                    connection.execute("BEGIN IMMEDIATE")
                    pending = 0
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def optimize(self) -> float:
        """Merge FTS5 segments (after a bulk load); returns the seconds it took."""
        started = time.monotonic()
        with self._writer_lock, self._connect() as connection:
            connection.execute("INSERT INTO chunks(chunks) VALUES ('optimize')")
        return time.monotonic() - started


@dataclass(frozen=True)
class _Pending:
    session_id: str
    vm: str
    user: str
    ended_at: datetime
    cast: Path


_Row = tuple[str, float, float]
"""A chunk as stored: text, t_start, t_end (tuples cross between processes cheaply)."""


def recording_file_chunks(cast: Path) -> list[_Row]:
    """The chunks of one recording file; none if it cannot be read or is not a recording.

    A file up to ``WHOLE_FILE_BYTES`` is read at once (``recording_chunks``); a larger one
    is streamed event by event, so memory stays bounded (same chunks either way).
    """
    try:
        with cast.open("rb") as handle:
            data = handle.read(WHOLE_FILE_BYTES + 1)
        if len(data) <= WHOLE_FILE_BYTES:
            found = recording_chunks(data, str(cast))
        else:
            found = list(chunks(read_cast(cast)[1]))
        return [(c.text, c.t_start, c.t_end) for c in found]
    except (CertgateError, OSError, ValueError, TypeError):
        return []


def _read_all(todo: list[_Pending], workers: int) -> Iterator[list[_Row]]:
    """Each pending recording's chunks, in order; read by ``workers`` other processes when
    >= 1, at most a few recordings per worker ahead of the writer (memory stays bounded)."""
    if workers < 1:
        for item in todo:
            yield recording_file_chunks(item.cast)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a threaded web server
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        window: deque[Future[list[_Row]]] = deque()
        ahead = 8 * workers
        for item in todo:
            window.append(pool.submit(recording_file_chunks, item.cast))
            if len(window) >= ahead:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def contained(recordings_dir: Path, path: str | None) -> Path | None:
    """``path`` if it names a regular file inside ``recordings_dir``, else None."""
    if not path:
        return None
    try:
        root = recordings_dir.resolve()
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):
        return None
    if not resolved.is_relative_to(root) or not resolved.is_file():
        return None
    return resolved
