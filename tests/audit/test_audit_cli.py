"""The `certgate audit` commands as a person uses them: output, exit codes, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

import pytest
from audit_samples import sample_event
from click.testing import CliRunner, Result
from sqlalchemy import update

from certgate.audit.recording import AsciicastWriter, recording_path
from certgate.audit.sessions import end_session, start_session
from certgate.cli.main import register_all
from certgate.home import PASSPHRASE_ENV, Home
from certgate.installation import Installation
from certgate.store.schema import AuditEventRow

cli = register_all()


@pytest.fixture
def run(home: Home):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(
            cli, ["--home", str(home.root), "audit", *args],
            env={PASSPHRASE_ENV: "correct horse battery staple"}, catch_exceptions=False)

    return invoke


def _one_line_error(result: Result) -> str:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("certgate: error: ")
    return lines[0]


def test_verify_reports_an_intact_chain_and_names_tampering(
        run, installation: Installation, filled: int) -> None:  # type: ignore[no-untyped-def]
    assert run("checkpoint").output.startswith("checkpoint 1 signed entry 21 (")
    result = run("verify")
    assert result.exit_code == 0, result.output
    assert result.stdout == "audit chain intact: 21 entries checked, 1 checkpoints\n"
    with installation.database.engine.begin() as connection:
        connection.execute(update(AuditEventRow).where(AuditEventRow.seq == 9)
                           .values(vm="other"))
    broken = run("verify")
    assert _one_line_error(broken) == ("certgate: error: entry 9 was altered (its content does "
                                       "not match its hash)")
    as_json = run("verify", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["failed_seq"] == 9


def test_list_filters_and_json(run, installation: Installation,  # type: ignore[no-untyped-def]
                               filled: int) -> None:
    installation.audit.record(sample_event(1, outcome="deny"))
    result = run("list", "--user", "user1", "--outcome", "deny", "--since", "1h", "--json")
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)
    assert (entry["seq"], entry["user"], entry["outcome"]) == (22, "user1", "deny")
    table = run("list", "--type", "console.*", "--limit", "3")
    assert table.exit_code == 0
    rows = table.stdout.splitlines()
    assert rows[0].split()[:3] == ["SEQ", "TIME", "(UTC)"]
    assert [row.split()[0] for row in rows[1:]] == ["20", "21", "22"]


def test_bad_input_gets_a_one_line_error(run, filled: int) -> None:  # type: ignore[no-untyped-def]
    assert "invalid time 'yesterday'" in _one_line_error(run("list", "--since", "yesterday"))
    assert _one_line_error(run("show", "9999")) == (
        "certgate: error: no audit entry 9999 (pruned, or not written yet)")
    assert "must be a number" in _one_line_error(run("show", "abc"))
    assert _one_line_error(run("replay", "ffffffff")) == (
        "certgate: error: no console session ffffffff")
    assert "invalid time" in _one_line_error(run("prune", "--before", "2026-13-01"))


def test_show_prints_every_field(run, filled: int) -> None:  # type: ignore[no-untyped-def]
    result = run("show", "5")
    assert result.exit_code == 0
    text = result.stdout
    for field in ("seq         5", "type        console.attach", "user        user0",
                  "source      192.0.2.7:50000", "hash        matches content",
                  '"text": "grüße"'):
        assert field in text
    data = json.loads(run("show", "5", "--json").stdout)
    assert data["details"] == {"n": 3, "text": "grüße"} and data["hash_matches_content"]


def test_export_jsonl_and_csv(run, tmp_path: Path, filled: int) -> None:  # type: ignore[no-untyped-def]
    result = run("export", "--vm", "vm1")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["seq"] for line in lines] == list(range(2, 22))
    out = tmp_path / "audit.csv"
    assert run("export", "--format", "csv", "--user", "user2", "--out", str(out)).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text("utf-8"))))
    assert {row["user"] for row in rows} == {"user2"} and len(rows) == 6
    assert json.loads(rows[0]["details"])["text"] == "grüße"


def test_sessions_and_replay(run, installation: Installation,  # type: ignore[no-untyped-def]
                             home: Home) -> None:
    database = installation.database
    live = start_session(database, user="alice", vm="vm1", identity_serial="0a",
                         source="192.0.2.1:5000", privileges=["console.write"], gateway_id="gw")
    session_id = str(uuid.uuid4())
    path = recording_path(home.recordings_dir, session_id)
    done = start_session(database, user="bob", vm="vm2", identity_serial="0b", source=None,
                         privileges=[], gateway_id="gw", session_id=session_id,
                         recording_path=str(path))
    with AsciicastWriter(path, width=80, height=24, record_input=True) as writer:
        writer.output(b"hello ")
        writer.input(b"typed")
        writer.output("w\u00f6rld\r\n".encode())
    end_session(database, done.id, reason="logout", bytes_in=5, bytes_out=13,
                recording_sha256=writer.sha256)

    listing = json.loads(run("sessions", "--live", "--json").stdout)
    assert [(s["id"], s["user"], s["source"], s["privileges"]) for s in listing] == [
        (live.id, "alice", "192.0.2.1:5000", ["console.write"])]
    table = run("sessions").stdout
    assert "alice" in table and "logout" in table

    played = run("replay", done.id[:8], "--speed", "100")
    assert played.exit_code == 0, played.output
    assert played.stdout_bytes == "hello w\u00f6rld\r\n".encode()
    assert played.stderr == ""
    path.write_text(path.read_text().replace("hello", "HELLO"))
    altered = run("replay", done.id[:8], "--skip-idle")
    assert altered.stdout_bytes == "HELLO w\u00f6rld\r\n".encode()
    assert "the recording was altered" in altered.stderr
    assert "has no recording" in _one_line_error(run("replay", live.id))


def test_prune_from_the_command_line_keeps_verify_passing(
        run, installation: Installation, filled: int) -> None:  # type: ignore[no-untyped-def]
    result = run("prune", "--before", "0s")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"pruned {filled} entries; the chain now starts after entry {filled}\n"
    verified = run("verify")
    assert verified.exit_code == 0, verified.output
    assert verified.stdout == "audit chain intact: 1 entries checked, 2 checkpoints\n"
