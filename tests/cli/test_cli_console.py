"""``certgate vm add/set --keep/--escape`` and ``certgate console log``, as a person runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cli_runner import Certgate

from certgate.consolelog.settings import ConsoleLogSettings
from certgate.consolelog.writer import ConsoleLogWriter
from certgate.home import Home


def test_socket_consoles_are_kept_by_default_and_commands_on_demand(certgate: Certgate) -> None:
    added = certgate.ok("vm", "add", "kept01", "--console", "unix:/run/kept01.sock")
    assert "console kept: always" in added.stdout
    certgate.ok("vm", "add", "cmd01", "--console", "exec:virsh console cmd01")
    listing = {v["name"]: v for v in json.loads(certgate.ok("vm", "list", "--json").stdout)}
    assert (listing["kept01"]["keep"], listing["cmd01"]["keep"]) == ("always", "on-demand")
    assert listing["kept01"]["escape"] == "^Ec"
    event = next(e for e in reversed(certgate.audit()) if e.event_type == "vm.add")
    assert event.details["keep"] == "on-demand"


def test_vm_set_changes_keep_and_escape_and_is_audited(certgate: Certgate) -> None:
    certgate.ok("vm", "add", "kept02", "--console", "tcp:127.0.0.1:4555")
    changed = certgate.ok("vm", "set", "kept02", "--keep", "on-demand", "--escape", "^Ak")
    assert changed.stdout.strip() == "VM kept02: console kept: on-demand, escape ^Ak"
    event = certgate.audit()[-1]
    assert (event.event_type, event.vm, event.details) == (
        "vm.set", "kept02", {"keep": "on-demand", "escape": "^Ak"})


def test_keeping_a_command_console_is_refused_in_one_line(certgate: Certgate) -> None:
    certgate.ok("vm", "add", "cmd02", "--console", "exec:xl console cmd02")
    message = certgate.refused("vm", "set", "cmd02", "--keep", "always")
    assert message == ("console exec:xl console cmd02 cannot be kept: only unix: and tcp: "
                       "consoles can (exec: and ssh:// consoles are opened on demand)")
    assert "escape sequence '^E' must be" in certgate.refused(
        "vm", "add", "bad01", "--console", "unix:/x.sock", "--escape", "^E")
    assert certgate.refused("vm", "set", "cmd02") == (
        "nothing to change: give --keep and/or --escape")


def _write_log(home: Path, vm: str) -> None:
    writer = ConsoleLogWriter(Home(home).console_logs_dir / vm, vm, ConsoleLogSettings())
    writer.output(b"Booting\r\n\x1b[31mred alert\x1b[0m\r\nkernel panic: oops\r\n")
    writer.note("console connection lost: hung up; reconnecting")
    writer.close()


def test_console_log_prints_searches_and_is_audited(certgate: Certgate) -> None:
    certgate.ok("vm", "add", "logged01", "--console", "unix:/run/logged01.sock")
    _write_log(certgate.home, "logged01")
    before = certgate.last_seq()
    printed = certgate.ok("console", "log", "logged01").stdout.splitlines()
    assert [line.split("  ", 1)[1] for line in printed] == [
        "Booting", "red alert", "kernel panic: oops",
        "[certgate: console connection lost: hung up; reconnecting]"]
    assert "\x1b" not in "".join(printed)
    found = certgate.ok("console", "log", "logged01", "--grep", "panic", "--since", "1h")
    assert [line.split("  ", 1)[1] for line in found.stdout.splitlines()] == [
        "kernel panic: oops"]
    reads = [e for e in certgate.audit_since(before) if e.event_type == "console.log.read"]
    assert [(e.vm, e.details["grep"], e.details["via"]) for e in reads] == [
        ("logged01", None, "cli"), ("logged01", "panic", "cli")]
    assert certgate.ok("console", "log", "logged01", "--until", "2000-01-01").stdout == ""


def test_console_log_raw_replays_every_sequence_and_the_default_none(
    certgate: Certgate,
) -> None:
    certgate.ok("vm", "add", "logged03", "--console", "unix:/run/logged03.sock")
    writer = ConsoleLogWriter(Home(certgate.home).console_logs_dir / "logged03", "logged03",
                              ConsoleLogSettings())
    hostile = "\x1b]52;c;cHduZWQ=\x07\x1b]0;PWNED\x07\x1b[2Jprompt# "
    writer.output(b"ok\r\n" + hostile.encode())
    writer.note("a gateway note, not console output")
    writer.close()
    before = certgate.last_seq()
    cleaned = certgate.ok("console", "log", "logged03").stdout
    assert "\x1b" not in cleaned and "\x07" not in cleaned and "prompt# " in cleaned
    raw = certgate.ok("console", "log", "logged03", "--raw").stdout
    assert raw == "ok\n" + hostile  # the runner reads text: \r\n arrives as \n
    reads = [e for e in certgate.audit_since(before) if e.event_type == "console.log.read"]
    assert [e.details["raw"] for e in reads] == [False, True]
    assert certgate.refused("console", "log", "logged03", "--raw", "--grep", "ok") == (
        "--raw replays the output as it was: it takes no --grep, --follow or --json")


def test_console_log_refuses_bad_input_in_one_line(certgate: Certgate) -> None:
    assert certgate.refused("console", "log", "../etc") == "'../etc' is not a VM name"
    assert certgate.refused("console", "log", "nosuchvm") == (
        "no VM named nosuchvm and no console log for it")
    certgate.ok("vm", "add", "logged02", "--console", "unix:/run/logged02.sock")
    assert certgate.refused("console", "log", "logged02", "--grep", "(").startswith(
        "--grep: invalid pattern: ")
    assert certgate.refused("console", "log", "logged02", "--since", "yesterday").startswith(
        "--since: invalid time 'yesterday'")


def test_console_log_follow_prints_new_lines(certgate: Certgate, tmp_path: Path) -> None:
    certgate.ok("vm", "add", "followed01", "--console", "unix:/run/followed01.sock")
    directory = Home(certgate.home).console_logs_dir / "followed01"
    writer = ConsoleLogWriter(directory, "followed01", ConsoleLogSettings())
    writer.output(b"first line\r\n")
    writer.tick()
    env = {**os.environ, "CERTGATE_HOME": str(certgate.home),
           "CERTGATE_CA_PASSPHRASE": "correct horse battery staple"}
    env.pop("CERTGATE_DATABASE_URL", None)
    follower = subprocess.Popen([sys.executable, "-m", "certgate", "console", "log",
                                 "followed01", "--follow"], env=env, stdout=subprocess.PIPE,
                                text=True)
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline().rstrip().endswith("  first line")
        writer.output(b"second line\r\n")
        writer._write_out()  # what the gateway's once-a-second tick does
        assert follower.stdout.readline().rstrip().endswith("  second line")
    finally:
        follower.kill()
        follower.wait()
        writer.close()
