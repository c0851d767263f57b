"""``certgate doctor`` finds what is wrong with an installation and says how to fix it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from certgate.doctor import FAIL, OK, WARN, Finding, diagnose
from certgate.fleet import add_vm
from certgate.installation import Installation


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def test_a_fresh_installation_is_healthy_but_has_no_consoles(
        installation: Installation) -> None:
    findings = by_check(diagnose(installation.home, installation.database))
    assert all(f.status == OK for name, f in findings.items() if name != "consoles"), findings
    assert findings["consoles"].status == WARN
    assert findings["schema"].message == "at the newest migration"
    assert findings["clock"].status == OK
    assert findings["root CA certificate"].message.startswith("valid until")


def test_a_key_file_others_can_read_fails_with_the_chmod_to_run(
        installation: Installation) -> None:
    installation.home.aa_key.chmod(0o640)
    finding = by_check(diagnose(installation.home, installation.database))["key files"]
    assert finding.status == FAIL
    assert finding.fix == f"chmod 600 {installation.home.aa_key}"


def test_certificates_close_to_expiry_warn_and_expired_ones_fail(
        installation: Installation) -> None:
    host_until = installation.root_certificate.not_valid_after_utc
    soon = by_check(diagnose(installation.home, installation.database,
                             now=host_until - timedelta(days=10)))
    assert soon["root CA certificate"].status == WARN
    assert "in 9 days" in soon["root CA certificate"].message or "in 10 days" in soon[
        "root CA certificate"].message
    late = by_check(diagnose(installation.home, installation.database,
                             now=host_until + timedelta(days=1)))
    assert late["root CA certificate"].status == FAIL
    assert late["gateway host certificate"].status == FAIL


def test_a_clock_behind_the_audit_log_fails(installation: Installation) -> None:
    finding = by_check(diagnose(installation.home, installation.database,
                                now=datetime.now(UTC) - timedelta(hours=1)))["clock"]
    assert finding.status == FAIL and "NTP" in (finding.fix or "")


def test_consoles_are_tried_one_by_one(installation: Installation) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        listening = Path(directory) / "up.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(listening))
        server.listen(1)
        try:
            add_vm(installation, "up", f"unix:{listening}", {})
            add_vm(installation, "down", f"unix:{Path(directory) / 'gone.sock'}", {})
            add_vm(installation, "xen", "exec:xl-not-installed console dom1", {})
            add_vm(installation, "pty", f"exec:{sys.executable} -c pass", {})
            findings = by_check(diagnose(installation.home, installation.database))
        finally:
            server.close()
    assert findings["console up"].status == OK
    assert findings["console down"].status == FAIL
    assert "No such file" in findings["console down"].message
    assert findings["console xen"].status == FAIL
    assert findings["console pty"].status == OK


def test_the_command_prints_one_line_per_check_and_fails_on_a_failure(
        installation: Installation) -> None:
    env = {**os.environ, "CERTGATE_HOME": str(installation.home.root)}
    env.pop("CERTGATE_DATABASE_URL", None)
    run = subprocess.run([sys.executable, "-m", "certgate", "doctor"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("OK   home: ")
    assert any(line.startswith("WARN consoles: no VMs registered — fix: ") for line in lines)
    installation.home.root.chmod(0o755)
    run = subprocess.run([sys.executable, "-m", "certgate", "doctor"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1
    assert f"FAIL home: {installation.home.root} is mode 0755" in run.stdout
    assert "Traceback" not in run.stderr
