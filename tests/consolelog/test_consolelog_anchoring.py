"""Console log seals in the audit chain: an edit or a cut is found by verification."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

from cli_runner import Certgate

from certgate.consolelog.anchoring import anchored_segments, audit_event, verify_console_logs
from certgate.consolelog.settings import ConsoleLogSettings
from certgate.consolelog.writer import ConsoleLogWriter
from certgate.installation import Installation


def write_log(installation: Installation, segments: int) -> Path:
    logs = installation.home.console_logs_dir
    log = ConsoleLogWriter(logs / "vm01", "vm01", ConsoleLogSettings())
    for n in range(segments):
        log.output(b"segment %d says hello\r\n" % n)
        log.rotate()
    log.close()
    for record in log.drain_records():
        installation.audit.record(audit_event(record, "gateway:test"))
    return logs


def test_sealed_segments_verify_and_are_known_as_anchored(installation: Installation):
    logs = write_log(installation, 3)
    result = verify_console_logs(installation.database, logs)
    assert result.intact, result.problems
    assert result.segments_checked == 4  # three rotations and the final seal
    assert set(anchored_segments(installation.database)["vm01"]) == {
        "00000001.cast", "00000002.cast", "00000003.cast", "00000004.cast"}


def test_an_edited_segment_is_caught(installation: Installation):
    logs = write_log(installation, 2)
    path = logs / "vm01" / "00000002.cast"
    path.write_text(path.read_text().replace("segment 1 says hello", "segment 1 says HELLO"))
    result = verify_console_logs(installation.database, logs)
    assert result.problems == (
        "console log of vm01: segment 00000002.cast was altered after it was sealed "
        f"(audit entry {_seal_seq(installation, '00000002.cast')})",)


def test_a_removed_segment_is_caught_unless_retention_recorded_it(installation: Installation):
    logs = write_log(installation, 2)
    (logs / "vm01" / "00000001.cast").unlink()
    result = verify_console_logs(installation.database, logs)
    assert not result.intact
    assert "segment 00000001.cast sealed in audit entry" in result.problems[0]
    assert "is missing (cut without a retention record)" in result.problems[0]


def test_a_segment_expired_by_retention_is_not_a_problem(installation: Installation):
    logs = installation.home.console_logs_dir
    log = ConsoleLogWriter(logs / "vm01", "vm01",
                           ConsoleLogSettings(segment_bytes=400, retain_bytes=1200))
    for n in range(100):
        log.output(b"line %03d\r\n" % n)
    log.close()
    records = log.drain_records()
    for record in records:
        installation.audit.record(audit_event(record, "gateway:test"))
    assert any(type(r).__name__ == "ExpiredSegment" for r in records)
    assert verify_console_logs(installation.database, logs).intact


def test_audit_verify_command_reports_a_console_log_edit(installation: Installation,
                                                          tmp_path: Path):
    logs = write_log(installation, 1)
    certgate = Certgate(installation.home.root, tmp_path)
    ok = certgate.run("audit", "verify")
    assert ok.code == 0, ok.stderr
    assert "console logs intact: 2 sealed segments checked" in ok.stdout
    with (logs / "vm01" / "00000001.cast").open("a") as handle:
        handle.write('[99.0, "o", "forged"]\n')
    bad = certgate.run("audit", "verify")
    assert bad.code == 1
    assert "segment 00000001.cast was altered after it was sealed" in bad.stderr


def _seal_seq(installation: Installation, name: str) -> int:
    from certgate.audit.log import stream_entries

    return next(e.seq for e in stream_entries(installation.database)
                if e.event_type == "console.log.seal" and e.details["segment"] == name)
