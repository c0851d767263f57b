"""Console log segments: asciicast v2 on disk, rotation, retention, rate limit, reading back."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certgate.consolelog.reader import ConsoleLogReader, clean
from certgate.consolelog.settings import ConsoleLogSettings, load_settings
from certgate.consolelog.writer import (
    GENESIS_SHA256,
    ConsoleLogWriter,
    ExpiredSegment,
    SealedSegment,
    file_sha256,
    list_segments,
)
from certgate.errors import HomeError

T0 = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def writer(tmp_path: Path, clock: Clock, **settings: object) -> ConsoleLogWriter:
    return ConsoleLogWriter(tmp_path / "vm01", "vm01", ConsoleLogSettings(**settings),  # type: ignore[arg-type]
                            clock=clock)


def read_all(directory: Path, **kwargs: object) -> list[str]:
    return [line.render() for line in ConsoleLogReader(directory, **kwargs).lines()]  # type: ignore[arg-type]


def test_output_is_logged_as_asciicast_with_its_time(tmp_path):
    clock = Clock()
    log = writer(tmp_path, clock)
    clock.now += 1.5
    log.output(b"Booting\r\nlogin: ")
    clock.now += 2
    log.output(b"root\r\n")
    sealed = log.close()
    assert isinstance(sealed, SealedSegment)
    lines = (tmp_path / "vm01" / "00000001.cast").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and header["timestamp"] == int(T0)
    assert header["certgate"] == {"vm": "vm01", "segment": 1, "previous_sha256": GENESIS_SHA256}
    assert json.loads(lines[1]) == [1.5, "o", "Booting\r\nlogin: "]
    assert read_all(tmp_path / "vm01") == [
        "2026-09-21T14:13:21.500Z  Booting",
        "2026-09-21T14:13:21.500Z  login: root",
    ]
    assert sealed.sha256 == file_sha256(tmp_path / "vm01" / "00000001.cast")


def test_a_segment_plays_in_asciinema(tmp_path):
    clock = Clock()
    log = writer(tmp_path, clock)
    log.output(b"hello from the guest\r\n")
    log.note("console connection lost")
    log.close()
    path = str(tmp_path / "vm01" / "00000001.cast")
    command = ([binary, "cat", path] if (binary := shutil.which("asciinema"))
               else [sys.executable, "-m", "asciinema", "cat", path])
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "hello from the guest" in out.stdout


def test_segments_rotate_by_size_and_chain_their_hashes(tmp_path):
    clock = Clock()
    log = writer(tmp_path, clock, segment_bytes=1000, retain_bytes=10**9)
    for n in range(100):
        clock.now += 0.01
        log.output(b"line %03d of output\r\n" % n)
    log.close()
    records = log.drain_records()
    sealed = [r for r in records if isinstance(r, SealedSegment)]
    assert len(sealed) >= 3
    assert sealed[0].previous_sha256 == GENESIS_SHA256
    for before, after in itertools.pairwise(sealed):
        assert after.previous_sha256 == before.sha256
        assert after.index == before.index + 1
    for record in sealed:
        assert file_sha256(tmp_path / "vm01" / record.name) == record.sha256
    text = [line.split("  ", 1)[1] for line in read_all(tmp_path / "vm01")]
    assert text == [f"line {n:03d} of output" for n in range(100)]


def test_an_old_segment_rotates_on_tick(tmp_path):
    clock = Clock()
    log = writer(tmp_path, clock, segment_seconds=60.0)
    log.output(b"x\r\n")
    clock.now += 61
    log.tick()
    assert [r.name for r in log.drain_records() if isinstance(r, SealedSegment)] == [
        "00000001.cast"]
    assert log.current_path.name == "00000002.cast"


def test_retention_removes_the_oldest_sealed_segments_and_says_so(tmp_path):
    clock = Clock()
    log = writer(tmp_path, clock, segment_bytes=500, retain_bytes=1500)
    for n in range(200):
        log.output(b"line %03d\r\n" % n)
    expired = [r for r in log.drain_records() if isinstance(r, ExpiredSegment)]
    assert expired and expired[0].name == "00000001.cast"
    total = sum(p.stat().st_size for _, p in list_segments(tmp_path / "vm01"))
    assert total <= 1500 + 500
    log.close()
    notes = [line for line in read_all(tmp_path / "vm01") if "removed by retention" in line]
    assert notes


def test_retention_by_age(tmp_path):
    clock = Clock()
    log = writer(tmp_path, clock, retain_days=1.0)
    log.output(b"old\r\n")
    log.rotate()
    old = tmp_path / "vm01" / "00000001.cast"
    import os
    os.utime(old, (T0 - 2 * 86400, T0 - 2 * 86400))
    log.tick()
    assert not old.exists()
    assert [r.reason for r in log.drain_records() if isinstance(r, ExpiredSegment)] == [
        "older than 1 days"]


def test_a_flooding_console_is_cut_at_the_rate_limit_with_a_note(tmp_path):
    clock = Clock()
    log = writer(tmp_path, clock, rate_limit=1000, burst=2000)
    for _ in range(10):
        log.output(b"y" * 500)  # 5000 bytes at once: 2000 fit the burst
    clock.now += 5
    log.output(b"after the flood\r\n")
    log.close()
    lines = read_all(tmp_path / "vm01")
    assert any("[certgate: 3000 bytes of console output not logged: over the log limit of "
               "1000 bytes/s]" in line for line in lines)
    assert lines[-1].endswith("after the flood")


def test_reader_filters_by_time_and_pattern(tmp_path):
    clock = Clock()
    log = writer(tmp_path, clock)
    for n in range(10):
        clock.now = T0 + 60 * n
        log.output(b"minute %d\r\n" % n)
    log.close()
    since = datetime.fromtimestamp(T0 + 120, UTC)
    until = datetime.fromtimestamp(T0 + 300, UTC)
    texts = [line.text for line in ConsoleLogReader(tmp_path / "vm01", since=since,
                                                    until=until).lines()]
    assert texts == ["minute 2", "minute 3", "minute 4", "minute 5"]
    grep = re.compile(r"minute [79]")
    assert [line.text for line in ConsoleLogReader(tmp_path / "vm01", grep=grep).lines()] == [
        "minute 7", "minute 9"]


def test_hostile_console_output_is_made_terminal_safe():
    assert clean("\x1b[2J\x1b]0;pwned\x07ok\x1b[31mred\r\x07") == "okred?"


def test_a_restarted_writer_continues_the_chain_and_recovers_unanchored_segments(tmp_path):
    clock = Clock()
    first = writer(tmp_path, clock)
    first.output(b"before the crash\r\n")
    first._write_out()  # the gateway dies here: no seal
    second = writer(tmp_path, clock)
    recovered = second.recover()
    assert [r.name for r in recovered] == ["00000001.cast"] and recovered[0].recovered
    assert recovered[0].sha256 == file_sha256(tmp_path / "vm01" / "00000001.cast")
    sealed = second.close()
    assert sealed is not None and sealed.previous_sha256 == recovered[0].sha256


def test_settings_come_from_the_console_log_table(tmp_path):
    config = tmp_path / "certgate.toml"
    config.write_text("[certgate]\ngateway_name = 'x'\n[console_log]\nsegment_bytes = 2000000\n"
                      "retain_days = 7\nreplay_lines = 50\n")
    settings = load_settings(config)
    assert (settings.segment_bytes, settings.retain_days, settings.replay_lines) == (
        2_000_000, 7.0, 50)
    config.write_text("[console_log]\nsegment_byte = 1\n")
    with pytest.raises(HomeError, match="unknown console_log setting"):
        load_settings(config)
    config.write_text("[console_log]\nrate_limit = 'fast'\n")
    with pytest.raises(HomeError, match="rate_limit must be int"):
        load_settings(config)
    config.write_text("[console_log]\nburst = 0\n")
    with pytest.raises(HomeError, match="burst must be greater than 0"):
        load_settings(config)


def test_event_lines_are_byte_for_byte_what_json_dumps_writes(tmp_path: Path) -> None:
    clock = Clock()
    log = writer(tmp_path, clock)
    text = 'a\x1b[1m"q"\\\b\f\t\x00\x7f\u2028\u00e9\U0001f600\r\n'
    clock.now += 0.25
    log.output(text.encode())
    log.note('gap "of" 1.5s\\')
    log.close()
    lines = next((tmp_path / "vm01").glob("*.cast")).read_bytes().split(b"\n")
    events = [line for line in lines[1:] if line]
    assert events[0].decode() == json.dumps([0.25, "o", text], ensure_ascii=False,
                                            separators=(", ", ": "))
    for line in events:
        assert line.decode() == json.dumps(json.loads(line), ensure_ascii=False,
                                           separators=(", ", ": "))
