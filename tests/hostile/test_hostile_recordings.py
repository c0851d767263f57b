"""Findings 4 and 7 for recordings: replay strips what acts on the viewer's terminal (unless
--raw), a malformed recording is one error line, and recordings stop at their size limit
with a note (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from hostile_cli import HostileHome

from certgate.audit.recording import AsciicastWriter, recording_path
from certgate.audit.replay import read_cast
from certgate.audit.sessions import end_session, start_session

GUEST_OUTPUT = ("login: \x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07"
                "\x1b]0;PWNED\x07\x1bP+q544e\x1b\\\x1b[6n\x1b[1;32mok\x1b[0m\r\n")
SAFE_OUTPUT = "login: \x1b[1;32mok\x1b[0m\r\n"


def _recorded_session(hostile: HostileHome, output: str | bytes) -> tuple[str, Path]:
    database = hostile.database()
    try:
        session_id = str(uuid.uuid4())
        path = recording_path(hostile.home.recordings_dir, session_id)
        start_session(database, user="holder", vm="vm01", identity_serial="0a", source=None,
                      privileges=["console.view"], gateway_id="gw", session_id=session_id,
                      recording_path=str(path))
        if isinstance(output, str):
            with AsciicastWriter(path, width=80, height=24) as writer:
                writer.output(output.encode())
            digest: str | None = writer.sha256
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(output)
            digest = None
        end_session(database, session_id, reason="logout", bytes_in=0, bytes_out=0,
                    recording_sha256=digest)
        return session_id, path
    finally:
        database.dispose()


def test_replay_strips_clipboard_writes_titles_and_queries(hostile: HostileHome) -> None:
    session_id, _ = _recorded_session(hostile, GUEST_OUTPUT)
    played = hostile.ok("audit", "replay", session_id, "--speed", "1000")
    assert played.stdout_bytes == SAFE_OUTPUT.encode()
    raw = hostile.ok("audit", "replay", session_id, "--speed", "1000", "--raw")
    assert raw.stdout_bytes == GUEST_OUTPUT.encode()
    hostile.assert_chain_intact()


def test_a_malformed_recording_is_one_error_line(hostile: HostileHome) -> None:
    header = json.dumps({"version": 2, "width": 80, "height": 24}).encode()
    for body in (b"\n" + b"[" * 100_000 + b"\n",  # used to raise RecursionError
                 b'\n{"a": 1, "b": 2, "c": 3}\n',  # unpacked into three keys
                 b'\n["x", "o", "text"]\n'):
        session_id, _ = _recorded_session(hostile, header + body)
        message = hostile.cli("audit", "replay", session_id, "--speed", "1000").refusal
        assert "malformed event" in message, message
    hostile.assert_chain_intact()


def test_a_recording_stops_at_its_size_limit_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "s.cast"
    with AsciicastWriter(path, width=80, height=24, max_bytes=4096) as writer:
        for _ in range(200):
            writer.output(b"x" * 100 + b"\r\n")
    assert writer.limit_reached
    assert path.stat().st_size <= 4096
    _header, events = read_cast(path)
    texts = [event.data for event in events]
    assert "recording limit of 4096 bytes reached" in texts[-1]
    assert sum(len(t) for t in texts[:-1]) > 2000, "what fitted was recorded"
