"""Full-text search over session recordings: SQLite FTS5 in a file of its own.

Why FTS5 in a separate file, on either database backend: recordings are files in the home,
not rows in the database, and their text is derived data that can always be rebuilt from
them. Keeping it out of the main database keeps gigabytes of terminal text out of
PostgreSQL's WAL and backups, and keeps index writes off the SQLite write lock the gateway's
audit appends need. FTS5's unicode61 tokenizer splits on punctuation without stemming,
which suits terminal output (paths, host names, hex) better than PostgreSQL's language
stemmers, and rowid-ordered matches ("newest first") stay fast as the corpus grows.

The index is eventually consistent: recordings are added when their session has ended,
by ``catch_up``, which the review site runs at start-up and before a search.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from certgate.audit.replay import read_cast
from certgate.errors import CertgateError
from certgate.store.database import Database
from certgate.store.schema import ConsoleSessionRow
from certgate.web.terminal_text import chunks

MAX_QUERY_CHARS = 200
MAX_TERMS = 8
CATCH_UP_OVERLAP = timedelta(minutes=5)
"""Sessions that ended this long before the newest indexed one are looked at again: a
slower gateway may commit its ``session.end`` after a faster one's."""

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
    tokenize = 'unicode61 remove_diacritics 2'
);
"""

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
    vm: str
    t_start: float
    t_end: float
    snippet: str
    """Text with matches between \\x02 and \\x03 (control characters cannot occur in it)."""


@dataclass(frozen=True)
class IndexStats:
    recordings: int
    chunks: int


class SearchIndex:
    """One FTS5 file; any thread may search, one catch-up runs at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._writer_lock = threading.Lock()
        with self._connect() as connection:
            connection.executescript(_SCHEMA)
        path.chmod(0o600)

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
        """Newest matches first, only in recordings of ``vms``."""
        query = fts_query(text)
        if not vms:
            return []
        marks = ",".join("?" * len(vms))
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT session_id, vm, t_start, t_end, "
                "snippet(chunks, 0, char(2), char(3), '…', 16) FROM chunks "
                f"WHERE chunks MATCH ? AND vm IN ({marks}) ORDER BY rowid DESC LIMIT ?",
                (query, *vms, limit),
            ).fetchall()
        return [SearchHit(str(r[0]), str(r[1]), float(r[2]), float(r[3]), str(r[4]))
                for r in rows]

    def stats(self) -> IndexStats:
        with self._connect() as connection:
            recordings, total = connection.execute(
                "SELECT count(*), coalesce(sum(chunks), 0) FROM recordings").fetchone()
        return IndexStats(int(recordings), int(total))

    # -- writing ------------------------------------------------------------------------------

    def catch_up(self, database: Database, recordings_dir: Path) -> int:
        """Index the recordings of sessions that ended since the last catch-up; returns how
        many were added. Unreadable recordings are skipped (the session page says why)."""
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
            added = 0
            with self._connect() as connection:
                known = {row[0] for row in connection.execute(
                    "SELECT session_id FROM recordings WHERE ended_at >= ?",
                    ((since or datetime.min.replace(tzinfo=UTC)).isoformat(),))}
                for session_id, vm, user, ended_at, path in candidates:
                    if session_id in known or ended_at is None:
                        continue
                    cast = contained(recordings_dir, path)
                    if cast is None:
                        continue
                    self._add(connection, session_id, vm, user, ended_at, cast)
                    added += 1
            return added

    def _add(self, connection: sqlite3.Connection, session_id: str, vm: str, user: str,
             ended_at: datetime, cast: Path) -> None:
        try:
            _, events = read_cast(cast)
            rows = [(c.text, session_id, vm, c.t_start, c.t_end) for c in chunks(events)]
        except (CertgateError, OSError, ValueError, TypeError):
            rows = []
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(
                "INSERT INTO chunks(text, session_id, vm, t_start, t_end) VALUES (?,?,?,?,?)",
                rows)
            connection.execute(
                "INSERT OR REPLACE INTO recordings VALUES (?,?,?,?,?,?)",
                (session_id, vm, user, ended_at.isoformat(), len(rows),
                 datetime.now(UTC).isoformat()))
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
