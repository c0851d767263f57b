"""Console logs in the search index: segments written by the real console-log writer,
indexed incrementally while open, dropped when retention removes them, and an index file
of an older schema rebuilt rather than refused."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from certgate.consolelog.settings import ConsoleLogSettings
from certgate.consolelog.writer import ConsoleLogWriter
from certgate.web.console_log_index import SegmentListings, catch_up_console_logs
from certgate.web.search_index import SCHEMA_VERSION, SearchIndex


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _writer(logs: Path, vm: str, clock: Clock, **settings: int) -> ConsoleLogWriter:
    return ConsoleLogWriter(logs / vm, vm, ConsoleLogSettings(**settings), clock=clock)  # type: ignore[arg-type]


def _segment_row(index: SearchIndex, vm: str, segment: str) -> tuple[int, int] | None:
    with sqlite3.connect(index.path) as connection:
        row = connection.execute(
            "SELECT indexed_bytes, chunks FROM console_segments WHERE vm=? AND segment=?",
            (vm, segment)).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def test_open_segment_is_indexed_up_to_its_last_complete_line(tmp_path: Path) -> None:
    logs, clock = tmp_path / "console-logs", Clock()
    index = SearchIndex(tmp_path / "search.sqlite")
    writer = _writer(logs, "lab01", clock)
    writer.output(b"booting kernel\r\nlogin: ")
    clock.now += 2
    writer.output(b"root\r\n")
    clock.now += 1
    writer.tick()

    first = catch_up_console_logs(index, logs, now=time.time())
    hits = index.search("kernel", ["lab01"])
    assert [(h.vm, h.segment, h.session_id) for h in hits] == [("lab01", "00000001.cast", "")]
    assert hits[0].segment_started == 1_800_000_000.0
    assert first.chunks_added == 1

    # A half-typed line waits while the segment is being written ...
    clock.now += 10
    writer.output(b"$ echo platypus")
    writer.tick()
    catch_up_console_logs(index, logs, now=time.time())
    assert index.search("platypus", ["lab01"]) == []
    indexed, _ = _segment_row(index, "lab01", "00000001.cast") or (0, 0)
    content = writer.current_path.read_bytes()
    assert 0 < indexed < len(content) and content[:indexed].endswith(b"\n")

    # ... and is indexed, whole, once its line ends; nothing is indexed twice.
    clock.now += 1
    writer.output(b"-wombat\r\nplatypus-wombat\r\n")
    writer.tick()
    catch_up_console_logs(index, logs, now=time.time())
    hits = index.search("platypus-wombat", ["lab01"])
    assert len(hits) == 1 and hits[0].t_start == 10.0 + 3
    assert hits[0].at is not None and hits[0].at.timestamp() == 1_800_000_013.0
    assert len(index.search("kernel", ["lab01"])) == 1
    assert _segment_row(index, "lab01", "00000001.cast") == (
        len(writer.current_path.read_bytes()), 2)


def test_a_quiet_or_sealed_segment_is_indexed_to_its_end(tmp_path: Path) -> None:
    logs, clock = tmp_path / "console-logs", Clock()
    index = SearchIndex(tmp_path / "search.sqlite")
    writer = _writer(logs, "lab01", clock)
    writer.output(b"# prompt-without-newline")
    writer.tick()
    catch_up_console_logs(index, logs, now=time.time())
    assert index.search("prompt-without-newline", ["lab01"]) == []
    catch_up_console_logs(index, logs, now=time.time() + 60)  # quiet for a minute
    assert len(index.search("prompt-without-newline", ["lab01"])) == 1

    writer.output(b" then-more")
    writer.rotate()  # sealed: a newer segment exists
    catch_up_console_logs(index, logs, now=time.time())
    assert [h.segment for h in index.search("then-more", ["lab01"])] == ["00000001.cast"]


def test_segments_removed_by_retention_leave_the_index(tmp_path: Path) -> None:
    logs, clock = tmp_path / "console-logs", Clock()
    index = SearchIndex(tmp_path / "search.sqlite")
    writer = _writer(logs, "lab01", clock, segment_bytes=4096, retain_bytes=4096)
    writer.output(b"aardvark in the first segment\r\n" + b"x" * 1000 + b"\r\n")
    writer.rotate()
    writer.output(b"badger in the second segment\r\n" + b"y" * 1000 + b"\r\n")
    writer.tick()
    catch_up_console_logs(index, logs, now=time.time() + 60)
    assert [h.segment for h in index.search("aardvark", ["lab01"])] == ["00000001.cast"]

    writer.output(b"z" * 2000 + b"\r\n")
    writer.rotate()  # over retain_bytes: retention removes 00000001.cast
    assert not (logs / "lab01" / "00000001.cast").exists()
    outcome = catch_up_console_logs(index, logs, now=time.time() + 60)
    assert outcome.segments_removed == 1
    assert index.search("aardvark", ["lab01"]) == []
    assert [h.segment for h in index.search("badger", ["lab01"])] == ["00000002.cast"]
    assert _segment_row(index, "lab01", "00000001.cast") is None
    with sqlite3.connect(index.path) as connection:
        assert connection.execute(
            "SELECT count(*) FROM console_batches WHERE segment='00000001.cast'"
        ).fetchone() == (0,)


def test_a_log_restarted_under_the_same_segment_name_is_indexed_afresh(
        tmp_path: Path) -> None:
    logs, clock = tmp_path / "console-logs", Clock()
    index = SearchIndex(tmp_path / "search.sqlite")
    first = _writer(logs, "lab01", clock)
    first.output(b"old-incarnation text\r\n")
    first.close()
    catch_up_console_logs(index, logs, now=time.time())
    assert len(index.search("old-incarnation", ["lab01"])) == 1

    (logs / "lab01" / "00000001.cast").unlink()
    clock.now += 100
    second = _writer(logs, "lab01", clock)
    second.output(b"new-incarnation text\r\n")
    second.close()
    catch_up_console_logs(index, logs, now=time.time())
    assert index.search("old-incarnation", ["lab01"]) == []
    assert [h.segment_started for h in index.search("new-incarnation", ["lab01"])] == [
        1_800_000_100.0]


def test_hits_only_for_vms_in_scope_and_hostile_lines_are_skipped(tmp_path: Path) -> None:
    logs, clock = tmp_path / "console-logs", Clock()
    index = SearchIndex(tmp_path / "search.sqlite")
    for vm in ("lab01", "prod01"):
        writer = _writer(logs, vm, clock)
        writer.output(f"secret-word on {vm}\r\n".encode())
        writer.close()
    segment = logs / "prod01" / "00000001.cast"
    with segment.open("ab") as handle:  # not events: skipped, not fatal
        handle.write(b"not json\n[1, \"o\"]\n" + b"[2.0, \"o\", \"after-garbage\\r\\n\"]\n"
                     + b"[3.0, \"o\", \"lone \\ud800 surrogate-line\\r\\n\"]\n"
                     + b"[1e999, \"o\", \"overflow\\r\\n\"]\n\xff\xfe\n")
    (logs / "not a vm").mkdir()
    elsewhere = tmp_path / "elsewhere"
    outside = _writer(elsewhere, "lab02", clock)
    outside.output(b"outside-secret\r\n")
    outside.close()
    (logs / "lab01" / "00000007.cast").symlink_to(elsewhere / "lab02" / "00000001.cast")
    (logs / "lab02").symlink_to(elsewhere / "lab02", target_is_directory=True)
    catch_up_console_logs(index, logs, now=time.time() + 60)
    assert index.search("outside-secret", ["lab01", "lab02"]) == []  # links not followed
    assert [h.vm for h in index.search("secret-word", ["lab01"])] == ["lab01"]
    assert {h.vm for h in index.search("secret-word", ["lab01", "prod01"])} == {
        "lab01", "prod01"}
    assert index.search("secret-word", []) == []
    assert [h.vm for h in index.search("after-garbage", ["prod01"])] == ["prod01"]
    assert [h.vm for h in index.search("surrogate-line", ["prod01"])] == ["prod01"]


_VERSION_1 = """
CREATE TABLE recordings (session_id TEXT PRIMARY KEY, vm TEXT NOT NULL,
    user_name TEXT NOT NULL, ended_at TEXT NOT NULL, chunks INTEGER NOT NULL,
    indexed_at TEXT NOT NULL);
CREATE VIRTUAL TABLE chunks USING fts5(text, session_id UNINDEXED, vm UNINDEXED,
    t_start UNINDEXED, t_end UNINDEXED);
INSERT INTO recordings VALUES ('s1', 'lab01', 'u', '2026-01-01T00:00:00+00:00', 1, 'x');
INSERT INTO chunks VALUES ('stale words', 's1', 'lab01', 0, 1);
"""


def test_an_index_of_an_older_schema_version_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "search.sqlite"
    with sqlite3.connect(path) as connection:
        connection.executescript(_VERSION_1)
    index = SearchIndex(path)
    assert index.rebuilt_from == 0
    assert index.stats().recordings == 0
    assert index.search("stale", ["lab01"]) == []
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    logs, clock = tmp_path / "console-logs", Clock()
    writer = _writer(logs, "lab01", clock)
    writer.output(b"fresh words\r\n")
    writer.close()
    catch_up_console_logs(index, logs, now=time.time())
    assert len(index.search("fresh", ["lab01"])) == 1
    assert SearchIndex(path).rebuilt_from is None  # the current version is kept as it is
    assert len(index.search("fresh", ["lab01"])) == 1


def test_a_kept_directory_listing_still_notices_new_segments(tmp_path: Path) -> None:
    logs, clock = tmp_path / "console-logs", Clock()
    index = SearchIndex(tmp_path / "search.sqlite")
    listings = SegmentListings()
    writer = _writer(logs, "lab01", clock)
    writer.output(b"in-the-first segment\r\n")
    writer.tick()
    catch_up_console_logs(index, logs, listings=listings)
    writer.rotate()
    writer.output(b"in-the-second segment\r\n")
    writer.tick()
    catch_up_console_logs(index, logs, listings=listings)  # the directory changed
    assert [h.segment for h in index.search("in-the-second", ["lab01"])] == ["00000002.cast"]

    # A segment created in the same file-system clock tick as the last scan leaves the
    # directory's mtime as it was: a listing that young is not trusted.
    directory = logs / "lab01"
    stamp = directory.stat()
    catch_up_console_logs(index, logs, listings=listings, now=stamp.st_mtime + 0.5)
    writer.rotate()
    writer.output(b"in-the-third segment\r\n")
    writer.tick()
    os.utime(directory, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    catch_up_console_logs(index, logs, listings=listings, now=stamp.st_mtime + 60)
    assert [h.segment for h in index.search("in-the-third", ["lab01"])] == ["00000003.cast"]


def test_the_fast_line_reader_reads_what_the_line_by_line_reader_reads(
        tmp_path: Path) -> None:
    from certgate.web.console_log_index import _lines_one_by_one, _plain_lines

    logs, clock = tmp_path / "console-logs", Clock()
    writer = _writer(logs, "lab01", clock)
    samples = ["plain\r\n", "quote \" and back\\slash\r\n", "ümlaut 日本語 \u2028 line\n",
               "\x1b[31mred\x1b[0m \x1b]0;title\x07\r\n", "\x00\x07\x7f controls", "\ud7ff",
               "tab\there\r"]
    for text in samples:
        clock.now += 0.5
        writer.output(text.encode())
    writer.note("a gateway note")
    writer.close()
    content = (logs / "lab01" / "00000001.cast").read_bytes()
    block = content[content.index(b"\n") + 1:]
    fast = _plain_lines(block)
    assert fast is not None and len(fast) == len(samples) + 1
    assert fast == _lines_one_by_one(block)
    assert _plain_lines(block + b"not an event\n") is None  # falls back, line by line
