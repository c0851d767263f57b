"""Session recordings: valid asciicast v2 that an independent player reads, written promptly."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certgate.audit.recording import (
    IOV_MAX,
    JOIN_BELOW,
    MAX_BUFFER,
    AsciicastWriter,
    json_string,
    recording_path,
)
from certgate.audit.replay import CastEvent, plan, play, read_cast
from certgate.errors import CertgateError


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(path: Path) -> list[object]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def _asciinema_cat(path: Path) -> subprocess.CompletedProcess[bytes]:
    command = ([binary, "cat", str(path)] if (binary := shutil.which("asciinema"))
               else [sys.executable, "-m", "asciinema", "cat", str(path)])
    return subprocess.run(command, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)


def test_recording_is_asciicast_v2_that_asciinema_prints(tmp_path: Path) -> None:
    clock = FakeClock()
    path = recording_path(tmp_path / "recordings", "3f2a-session")
    writer = AsciicastWriter(path, width=80, height=24, term="xterm-256color",
                             title="alice@vm1", clock=clock, wall_time=1_800_000_000)
    writer.output(b"login: ")
    clock.now += 0.5
    writer.input(b"secret\r")  # not recorded: input recording was not asked for
    writer.output(b"alice\r\n$ ")
    clock.now += 1.25
    writer.resize(120, 40)
    writer.output("h\u00e9llo \u2603\r\n".encode())
    digest = writer.close()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    lines = _lines(path)
    assert lines[0] == {"version": 2, "width": 80, "height": 24, "timestamp": 1_800_000_000,
                        "env": {"TERM": "xterm-256color"}, "title": "alice@vm1"}
    assert lines[1:] == [[0.0, "o", "login: "], [0.5, "o", "alice\r\n$ "],
                         [1.75, "r", "120x40"], [1.75, "o", "h\u00e9llo \u2603\r\n"]]
    result = _asciinema_cat(path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "login: alice\r\n$ h\u00e9llo \u2603\r\n"


def test_input_is_recorded_only_when_asked(tmp_path: Path) -> None:
    writer = AsciicastWriter(tmp_path / "s.cast", width=80, height=24, record_input=True,
                             clock=FakeClock())
    writer.input(b"ls\r")
    writer.close()
    assert _lines(tmp_path / "s.cast")[1:] == [[0.0, "i", "ls\r"]]


def test_utf8_split_across_chunks_survives(tmp_path: Path) -> None:
    writer = AsciicastWriter(tmp_path / "s.cast", width=80, height=24, clock=FakeClock())
    data = "\u00e9\u2603\U0001f600".encode()
    for byte in data:
        writer.output(bytes([byte]))
    writer.output(b"\xff!")  # not UTF-8 at all: replaced, not dropped
    writer.output(b"\xe2\x98")  # a torn character at the very end
    writer.close()
    text = "".join(str(event[2]) for event in _lines(tmp_path / "s.cast")[1:])
    assert text == "\u00e9\u2603\U0001f600\ufffd!\ufffd"


def test_events_reach_the_file_within_a_second(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "s.cast"
    writer = AsciicastWriter(path, width=80, height=24, clock=clock)
    header_only = path.read_bytes()
    writer.output(b"one")
    assert path.read_bytes() == header_only  # buffered
    clock.now += 0.4
    writer.tick()  # the gateway's once-a-second tick writes whatever waits
    assert path.read_bytes() == header_only + b'[0.0, "o", "one"]\n'
    writer.output(b"two")
    clock.now += 1.0
    writer.output(b"three")  # the oldest pending event is a second old: written now
    assert path.read_bytes().endswith(b'[1.4, "o", "three"]\n')
    assert writer.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    writer.close()


def test_an_existing_recording_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "s.cast").write_text("keep")
    with pytest.raises(FileExistsError):
        AsciicastWriter(tmp_path / "s.cast", width=80, height=24)
    assert (tmp_path / "s.cast").read_text() == "keep"


def test_session_ids_that_are_not_file_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CertgateError, match="cannot name a recording file"):
        recording_path(tmp_path, "../etc/passwd")


def test_replay_keeps_timing_and_compresses_idle(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "s.cast"
    with AsciicastWriter(path, width=80, height=24, clock=clock, record_input=True) as writer:
        writer.output(b"a")
        clock.now += 2.0
        writer.input(b"x")
        writer.output(b"b")
        clock.now += 30.0
        writer.output(b"c")
    _header, events = read_cast(path)
    recorded = list(events)
    assert [e.code for e in recorded] == ["o", "i", "o", "o"]
    assert list(plan(recorded)) == [(0.0, "a"), (2.0, "b"), (30.0, "c")]
    assert list(plan(recorded, speed=2.0, max_idle=1.0)) == [(0.0, "a"), (0.5, "b"),
                                                             (0.5, "c")]
    out: list[str] = []
    slept: list[float] = []
    assert play(plan(recorded, max_idle=5.0), out.append, slept.append) == 3
    assert (out, slept) == (["a", "b", "c"], [2.0, 5.0])


def test_a_torn_last_line_from_a_crash_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "s.cast"
    path.write_text('{"version": 2, "width": 80, "height": 24}\n[0.1, "o", "ok"]\n[0.2, "o", "to')
    _header, events = read_cast(path)
    assert list(events) == [CastEvent(0.1, "o", "ok")]


def test_recording_lines_are_json_with_the_house_separators(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "s.cast"
    text = 'a\x1b[1m"q"\\\b\f\t\x00\x7f\u2028\u00e9\U0001f600\r\n'
    with AsciicastWriter(path, width=80, height=24, clock=clock) as writer:
        clock.now += 0.000001
        writer.output(text.encode())
    last = path.read_bytes().splitlines()[-1].decode()
    assert last == json.dumps([1e-06, "o", text], ensure_ascii=False, separators=(", ", ": "))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40),
                          st.text(max_size=20).map(lambda t: t.encode()),
                          st.sampled_from([b"\xc3", b"\xa9", b"\xe2\x82", b"\xac", b"plain"])),
                max_size=12))
def test_any_chunking_of_any_bytes_records_what_one_utf8_decoder_reads(
        chunks: list[bytes]) -> None:
    """ASCII chunks skip decoding; around a character split across chunks, and for bytes
    that are not UTF-8, the recording still holds exactly what one decoder would read."""
    import tempfile

    clock = FakeClock()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "s.cast"
        with AsciicastWriter(path, width=80, height=24, clock=clock) as writer:
            for chunk in chunks:
                writer.output(chunk)
        # Lines end at "\n" only (str.splitlines would also split at U+0085 or U+2028).
        events = [json.loads(line) for line in path.read_bytes().split(b"\n")[1:] if line]
    recorded = "".join(text for _, code, text in events if code == "o")  # type: ignore[misc]
    assert recorded == b"".join(chunks).decode("utf-8", errors="replace")


def test_a_chunk_larger_than_the_write_buffer_is_one_exact_line(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "big.cast"
    unit = "x" * (JOIN_BELOW - 3) + '"\\\r\n\x1b\u00e9'
    text = unit * (MAX_BUFFER // JOIN_BELOW * 3) + "end"
    with AsciicastWriter(path, width=80, height=24, clock=clock) as writer:
        writer.output(b"small first\r\n")
        clock.now += 0.5
        writer.output(text.encode())
        writer.output(b"small after")
    lines = path.read_bytes().split(b"\n")
    assert lines[-3].decode() == json.dumps([0.5, "o", text], ensure_ascii=False,
                                            separators=(", ", ": "))
    assert [json.loads(line)[2] for line in (lines[1], lines[-2])] == [
        "small first\r\n", "small after"]
    assert writer.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_more_pending_events_than_writev_takes_are_all_written(tmp_path: Path) -> None:
    """A burst of tiny outputs within one flush interval queues more lines than one
    ``writev`` call accepts; every one of them reaches the file, in order."""
    clock = FakeClock()
    path = tmp_path / "burst.cast"
    count = IOV_MAX * 3 + 7
    with AsciicastWriter(path, width=80, height=24, clock=clock) as writer:
        for n in range(count):
            writer.output(b"%d " % n)
    events = _lines(path)[1:]
    assert "".join(e[2] for e in events) == "".join(f"{n} " for n in range(count))  # type: ignore[index]
    assert writer.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_json_string_is_json_dumps_for_every_code_point() -> None:
    """Every code point but the surrogates (which decoded bytes never hold), each beside
    characters that escape, as the recorder's escaper and json write them."""
    for block in range(0, 0x110000, 512):
        text = "".join(f"{chr(cp)}\x1b\"{chr(cp)}\\"
                       for cp in range(block, block + 512) if not 0xD800 <= cp < 0xE000)
        assert json_string(text) == json.dumps(text, ensure_ascii=False).encode(), hex(block)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_recorded_text_is_escaped_exactly_as_json_does(text: str) -> None:
    assert json_string(text) == json.dumps(text, ensure_ascii=False).encode()


def test_a_large_line_past_the_limit_is_dropped_whole(tmp_path: Path) -> None:
    path = tmp_path / "limited.cast"
    with AsciicastWriter(path, width=80, height=24, max_bytes=100_000) as writer:
        writer.output(b"a" * 1000)
        writer.output(b"b" * 300_000)
        writer.output(b"c" * 10)
    events = _lines(path)[1:]
    assert [e[2][:1] for e in events] == ["a", "\r"]  # type: ignore[index]
    assert "recording limit of 100000 bytes reached" in events[-1][2]  # type: ignore[index]
    assert path.stat().st_size <= 100_000
