"""The systemd units pass ``systemd-analyze verify`` and score as well hardened."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
CERTGATE = Path(sys.executable).with_name("certgate")


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is required in CI (scripts/setup.sh installs systemd)")
        pytest.skip("systemd-analyze is not installed (scripts/setup.sh installs systemd)")
    return tool


def local_copy(unit: str, tmp_path: Path, *extra: str) -> Path:
    """The unit with ExecStart pointing at this checkout's certgate (verify insists that the
    program exists) and, as this test runs as root, User=root."""
    text = (UNITS / unit).read_text()
    text = text.replace("/opt/certgate/.venv/bin/certgate", str(CERTGATE))
    text = re.sub(r"(?m)^(User|Group)=certgate$", r"\1=root", text)
    for line in extra:
        text = text.replace("[Service]\n", f"[Service]\n{line}\n", 1)
    path = tmp_path / unit
    path.write_text(text)
    return path


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([analyze(), "verify", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize("unit", ["certgate.service", "certgate-web.service"])
def test_unit_verifies_without_a_single_warning(unit: str, tmp_path: Path) -> None:
    result = verify(local_copy(unit, tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_would_notice_a_mistake(tmp_path: Path) -> None:
    result = verify(local_copy("certgate.service", tmp_path, "NoNewPrivilege=yes"))
    assert "Unknown key 'NoNewPrivilege'" in result.stderr


@pytest.mark.parametrize("unit", ["certgate.service", "certgate-web.service"])
def test_unit_is_hardened(unit: str, tmp_path: Path) -> None:
    text = (UNITS / unit).read_text()
    for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict",
                    "ReadWritePaths=/var/lib/certgate", "CapabilityBoundingSet=\n"):
        assert setting in text
    result = subprocess.run(
        [analyze(), "security", "--offline=true", str(local_copy(unit, tmp_path))],
        capture_output=True, text=True, timeout=60, check=False)
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert score is not None, result.stdout + result.stderr
    assert float(score.group(1)) <= 2.0, result.stdout


def test_example_environment_file_names_the_home_and_no_passphrase() -> None:
    text = (UNITS / "certgate.env.example").read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines()
                    if line and not line.startswith("#"))
    assert settings["CERTGATE_HOME"] == "/var/lib/certgate"
    assert "CERTGATE_CA_PASSPHRASE" not in settings
