"""The fast recording reader and chunk builder give exactly what the reference gives.

The reference is ``chunks(read_cast(path)[1])``: one JSON parse and one regex pass per
event, easy to check by eye. The search index uses ``recording_chunks(bytes)``, which reads
a whole recording at once; these properties compare the two on generated recordings: the
recorder's own lines, every other JSON spelling of an event, escape sequences cut between
events, CR/LF split across events, non-BMP and lone-surrogate text, invalid UTF-8, torn
and malformed lines. Where the reference refuses a recording (``CertgateError``), the fast
path must refuse it too; no other exception may come out of either.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from review_samples import add_person, recorded_session, setup_fleet

from certgate.audit import replay
from certgate.audit.replay import cast_output, read_cast
from certgate.errors import CertgateError
from certgate.installation import Installation
from certgate.web import search_index
from certgate.web.search_index import SearchIndex
from certgate.web.terminal_text import (
    MAX_CHARS,
    TextChunk,
    chunks,
    output_chunks,
    plain_text,
    plain_texts,
    recording_chunks,
)

# Pieces of terminal output that exercise every rule of plain_text and the chunk builder.
_PIECES = st.sampled_from([
    "\r\n", "\n", "\r", "\r\r\n", "\n\r", "\x1b[32m", "\x1b[0m", "\x1b[", "\x1b", "[31m",
    "\x1b]0;title\x07", "\x1b]0;unterminated", "\x1b\\", "\x1bP+q\x1b\\", "\x1bPdcs",
    "\x9b1;2H", "\x9b", "\x07", "\x00", "\x7f", "\x85", "\t", "\u2028", "\uffff", "\ufffe",
    "\U0010ffff", "\ud800", "\udfff", "é", "日本", "\U0001f600", "  ", "<script>", "\\",
    '"', "status", "root@vm:~# ", "x" * 400, "y" * 999, "ab\r\n" * 5, "l\n" * 11, "\r\n" * 12,
])
_TEXT = st.lists(st.one_of(_PIECES, st.text(max_size=12)), max_size=8).map("".join)
_TIME = st.one_of(
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from([0, 0.5, 1e-06, 5.000001, 10.0, 10.1, 1e20, -0.0, -1, 1e400, 10**400]),
)

# Spellings of a time at the edges of the single-pass reader's number pattern.
_TIME_TOKENS = st.sampled_from([
    "01", "1.", ".5", "-1", "-0", "-0.0", "-1e2", "1e400", "1E+2", "0.5e-3", str(10**400),
    "1" * 16, "1" * 17, "1." + "5" * 30, "1." + "5" * 31, "1e99", "1e100", "9" * 16 + "e99",
    "true", "null", '"1"',
])


def _number(value: float | int) -> str:
    if isinstance(value, int) and abs(value) > 10**300:
        return str(value)  # json.dumps would write it too; keep it explicit
    return json.dumps(value)


@st.composite
def _event_line(draw: st.DrawFn, t: float, clean: bool) -> str:
    """One event line in one of the spellings a file may hold; ``clean``: a valid event."""
    if clean:
        code = draw(st.sampled_from(["o", "o", "o", "i", "m"]))
        time_text = _number(t)
        style = draw(st.sampled_from(["recorder", "recorder", "ascii", "compact", "spaced"]))
    else:
        code = draw(st.sampled_from(["o", "o", "o", "o", "i", "m", "r", "\\u006f", "oo"]))
        time_text = draw(st.one_of(st.just(t).map(_number), _TIME.map(_number), _TIME_TOKENS))
        style = draw(st.sampled_from(["recorder", "ascii", "compact", "spaced", "odd"]))
    text = draw(_TEXT)
    if style == "recorder":
        # The recorder's spelling (json_string), with any lone surrogate left raw as json
        # leaves it.
        return f'[{time_text}, "{code}", {json.dumps(text, ensure_ascii=False)}]'
    if style == "ascii":
        return f'[{time_text}, "{code}", {json.dumps(text)}]'
    if style == "compact":
        return f'[{time_text},"{code}",{json.dumps(text, ensure_ascii=False)}]'
    if style == "spaced":
        return f' \t[ {time_text} ,\t"{code}" , {json.dumps(text)} ]  '
    return draw(st.sampled_from([
        f'[{time_text}, "{code}"]', f'[{time_text}, "{code}", 5]', '[true, "o", "x"]',
        f'[{time_text}, "o", "x", 1]', f'{{"t": {time_text}}}', "[01, \"o\", \"x\"]",
        '[1, "o", "\\x"]', '[1, "o", "a\tb"]', "[1, \"o\", \"x\"", "", " ", "garbage",
        '[NaN, "o", "x"]', '[Infinity, "o", "x"]', '[1.5e5, "o", "e"]', '[1E2, "o", "E"]',
        '[-0, "o", "neg zero"]', '[-0.0, "o", "neg zero"]', '[1.0, "o", "\\ud83d\\ude00"]',
        '[2, "o", "a"], [3, "o", "b"]', '[[1, "o", "nested"]]',
    ]))


@st.composite
def recordings(draw: st.DrawFn) -> bytes:
    """Mostly valid recordings (the single-pass reader), some with exactly one bad line
    (where it must notice and fall back), some with anything."""
    header = draw(st.sampled_from([
        '{"version": 2, "width": 80, "height": 24}', '{"version": 2.0}', '{"version": 1}',
        "[2]", "not json", "",
    ]) if draw(st.integers(0, 9)) == 0 else st.just('{"version": 2, "width": 80, "height": 24}'))
    mode = draw(st.sampled_from(["clean", "clean", "one bad line", "messy"]))
    count = draw(st.integers(0, 30))
    bad = draw(st.integers(0, count)) if mode == "one bad line" else -1
    lines = [header]
    t = 0.0
    for number in range(count):
        t += draw(st.sampled_from([0.0, 0.01, 0.5, 4.9, 5.0, 5.5, 30.0]))
        lines.append(draw(_event_line(t, mode == "clean" or (mode == "one bad line"
                                      and number != bad))))
    newline = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    text = newline.join(lines)
    if draw(st.booleans()):
        text += newline
    elif draw(st.booleans()):
        text += newline + '[99, "o", "torn'  # a crash mid-write
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 7)) == 0:  # invalid UTF-8 somewhere
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + data[at:]
    return data


def _reference(data: bytes) -> list[TextChunk] | str:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "r.cast"
        path.write_bytes(data)
        try:
            return list(chunks(read_cast(path)[1]))
        except CertgateError:
            return "refused"


def _fast(data: bytes) -> list[TextChunk] | str:
    try:
        return recording_chunks(data, "r.cast")
    except CertgateError:
        return "refused"


@settings(max_examples=250, deadline=None)
@given(recordings())
def test_fast_chunks_equal_the_reference(data: bytes) -> None:
    assert _fast(data) == _reference(data)


@settings(max_examples=60, deadline=None)
@given(recordings())
def test_line_length_limit_is_the_same(data: bytes) -> None:
    """Over-long lines are refused alike (the limit made small to reach it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay, "MAX_LINE_CHARS", 60)
        assert _fast(data) == _reference(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(_TEXT, max_size=20))
def test_plain_texts_equal_plain_text_one_by_one(texts: list[str]) -> None:
    assert plain_texts(texts) == [plain_text(text) for text in texts]


def test_plain_texts_without_a_free_separator_still_agree() -> None:
    texts = ["\x1b]0;a\uffff", "\ufffe\x1b]1;b", "\U0010ffff\U0010fffe", "\x1bPq", "tail"]
    assert plain_texts(texts) == [plain_text(text) for text in texts]


def test_the_recorders_own_shape_takes_the_fast_path() -> None:
    """A recording as the gateway writes it is read by the single regex pass: the
    line-by-line reader is not needed (checked by making it fail)."""
    lines = ['{"version": 2, "width": 80, "height": 24}']
    lines += [f'[{t / 10!r}, "o", "line {t} \\u001b[32mok\\u001b[0m\\r\\n"]' for t in range(50)]
    data = ("\n".join(lines) + "\n").encode()

    def no_fallback(text: str, name: str) -> tuple[list[float], list[str]]:
        raise AssertionError("fell back to line-by-line reading")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay, "_cast_output_by_line", no_fallback)
        times, texts = cast_output(data, "r.cast")
    assert len(times) == 50 and texts[3] == "line 3 \x1b[32mok\x1b[0m\r\n"
    assert recording_chunks(data, "r.cast") == _reference(data)


def test_long_output_is_cut_like_the_reference() -> None:
    times = [0.0, 0.1, 0.2, 9.0]
    texts = ["a" * (MAX_CHARS - 1), "bb\r\n" * 20, "c" * 3000, "\x1b]0;eats\r\nall"]
    events = [replay.CastEvent(t, "o", x) for t, x in zip(times, texts, strict=True)]
    found = output_chunks(times, texts)
    assert found == list(chunks(events))
    # 999 a + "bb" reach MAX_CHARS; then 11 lines of "bb" make 12 lines; then the rest; the
    # unterminated OSC of the last event eats all of it.
    assert [len(c.text) for c in found] == [MAX_CHARS + 1, 11 * 3 - 1, 8 * 3 + 3000]


def test_hostile_times_and_surrogates_are_refused_or_cleaned_not_raised() -> None:
    """Two inputs that used to escape as tracebacks: an integer time beyond a float
    (OverflowError) and a lone surrogate (SQLite cannot store it)."""
    header = '{"version": 2}\n'
    assert _fast(f'{header}[{10**400}, "o", "x"]\n'.encode()) == "refused"
    assert _reference(f'{header}[{10**400}, "o", "x"]\n'.encode()) == "refused"
    found = recording_chunks(f'{header}[1, "o", "a\\ud800b"]\n'.encode(), "r.cast")
    assert [c.text for c in found] == ["a b"]


@pytest.mark.parametrize("workers", [1, 2])
def test_parallel_backfill_writes_what_one_process_writes(installation: Installation,
                                                           tmp_path: Path, workers: int) -> None:
    """``catch_up(workers=N)`` reads recordings in N other processes (one reader beside the
    writer on two CPUs); the index it writes (rows, their order, per-recording counts, an
    unreadable recording) is what reading in the writer (the default, 0) writes."""
    setup_fleet(installation)
    person = add_person(installation, tmp_path, "olivia", "operator")
    for n in range(9):
        recorded_session(installation, person, "lab01" if n % 2 else "prod01",
                         [f"boot {n}\r\n", "\x1b[1mstatus\x1b[0m ok\r\n" * (n + 1)],
                         started=datetime.now(UTC) - timedelta(hours=10 - n))
    broken = recorded_session(installation, person, "lab01", ["fine\r\n"])
    Path(str(broken.recording_path)).write_text('{"version": 2}\n[1, "o", "x"\n[2, "o", "y"]\n')
    submitted = []

    class CountingPool(ProcessPoolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            submitted.append(args[1])
            return super().submit(*args, **kwargs)

    def contents(index: SearchIndex) -> tuple[list[Any], list[Any]]:
        with sqlite3.connect(index.path) as connection:
            return (connection.execute("SELECT text, session_id, vm, t_start, t_end FROM "
                                       "chunks ORDER BY rowid").fetchall(),
                    connection.execute("SELECT session_id, vm, user_name, ended_at, chunks "
                                       "FROM recordings ORDER BY session_id").fetchall())

    recordings = installation.home.recordings_dir
    one = SearchIndex(tmp_path / "one" / "index.sqlite")
    assert one.catch_up(installation.database, recordings) == 10
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search_index, "PARALLEL_FROM", 4)
        patch.setattr(search_index, "ProcessPoolExecutor", CountingPool)
        two = SearchIndex(tmp_path / "two" / "index.sqlite")
        assert two.catch_up(installation.database, recordings, workers=workers) == 10
    assert len(submitted) == 10
    rows, per_recording = contents(one)
    assert (rows, per_recording) == contents(two)
    assert len(rows) == 9  # one chunk (at most 10 lines) per readable recording
    assert {r[0]: r[4] for r in per_recording}[broken.id] == 0
    assert [hit.session_id for hit in two.search("status", ["lab01", "prod01"])]
