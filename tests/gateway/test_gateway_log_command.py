"""Parsing ``ssh VM@gw log ...``: options, bounds and one-line errors (no server needed)."""

from datetime import UTC, datetime

import pytest

from certgate.errors import CertgateError
from certgate.gateway.log_command import LogRequest, parse_log_command


def test_plain_log_reads_everything():
    assert parse_log_command("log") == LogRequest()


def test_options_are_parsed_with_shell_quoting():
    request = parse_log_command("log --since 2026-11-28T07:00Z --grep 'kernel panic'")
    assert request.since == datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    assert request.grep == "kernel panic" and request.until is None
    assert request.details()["via"] == "ssh"


@pytest.mark.parametrize(("command", "message"), [
    ("log --follow", "usage: log [--since TIME] [--until TIME] [--grep REGEX]"),
    ("log --since", "usage: log"),
    ("log --grep '('", "--grep: invalid pattern"),
    ("log --until never", "--until: invalid time 'never'"),
    ("log 'unclosed", "log: No closing quotation"),
    ("log --grep " + "x" * 2000, "log: command longer than 1024 characters"),
])
def test_bad_log_commands_get_one_line(command, message):
    with pytest.raises(CertgateError) as raised:
        parse_log_command(command)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
