"""Session recordings made through a real OpenSSH client session, played by asciinema.

The console is the pty stand-in for ``xl console`` (Xen cannot run here).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_testing import Gateway, default_policy, details, finish

from certgate.audit.sessions import find_session

pytestmark = pytest.mark.slow

RECORD_INPUT_RULE = """\
  - name: recorded
    effect: allow
    vms: {names: ["rec*"]}
    require: {roles: [operator]}
    privileges: [console.interact]
    session: {record_input: true}
"""


def _asciinema() -> list[str]:
    found = shutil.which("asciinema")
    return [found] if found else [sys.executable, "-m", "asciinema"]


def _session_for(gateway: Gateway, user: str, after: int) -> tuple[str, str]:
    end = gateway.wait_for_audit("session.end", after=after, match=lambda e: e.user == user)
    assert end.session_id is not None
    return end.session_id, details(end)["recording_sha256"]


def test_a_session_recording_plays_back_with_asciinema_and_shows_what_the_client_saw(
    gateway: Gateway,
) -> None:
    olga = gateway.add_user("olga", "role=operator")
    head = gateway.audit_head()
    client = gateway.ssh(olga, "vm01", dimensions=(24, 80))
    client.logfile_read = io.BytesIO()
    client.expect("SIZE 80x24")
    client.sendline("first line for the record")
    client.expect("GOT first line for the record")
    client.setwinsize(40, 120)
    client.expect("SIZE 120x40")
    client.send("\x1d")
    _, status = finish(client)
    assert status == 0
    seen = client.logfile_read.getvalue().decode(errors="replace")
    guest_lines = [line.strip() for line in seen.splitlines()
                   if line.strip().startswith(("TTY ", "SIZE ", "GOT ", "TERM ", "CHILD "))]
    assert len(guest_lines) >= 5

    session_id, sha256 = _session_for(gateway, "olga", head)
    session = find_session(gateway.inst.database, session_id)
    cast = Path(session.recording_path or "")
    assert cast.exists() and cast.stat().st_mode & 0o777 == 0o600
    assert hashlib.sha256(cast.read_bytes()).hexdigest() == sha256 == session.recording_sha256

    lines = cast.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and (header["width"], header["height"]) == (80, 24)
    events = [json.loads(line) for line in lines[1:]]
    assert ["r", "120x40"] in [[e[1], e[2]] for e in events]
    assert not [e for e in events if e[1] == "i"]  # keystrokes are not recorded by default

    played = subprocess.run([*_asciinema(), "cat", str(cast)], capture_output=True,
                            timeout=30, check=False)
    assert played.returncode == 0, played.stderr
    output = played.stdout.decode(errors="replace")
    for line in guest_lines:  # everything the guest showed the client is in the recording
        assert line in output

    replay = subprocess.run([*_asciinema(), "play", "-s", "50", str(cast)],
                            capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert replay.returncode == 0, replay.stderr
    assert "GOT first line for the record" in replay.stdout.decode(errors="replace")

    code, ours = gateway.cli("audit", "replay", session_id[:8], "--speed", "100")
    assert code == 0 and "GOT first line for the record" in ours


def test_a_policy_that_asks_for_it_gets_the_keystrokes_recorded(
    own_gateway: Gateway,
) -> None:
    own_gateway.add_vm("rec01", f"exec:{sys.executable} "
                       f"{Path(__file__).resolve().parents[1] / 'consoles' / 'pty_standin.py'}")
    own_gateway.apply_policy(default_policy() + RECORD_INPUT_RULE)
    pia = own_gateway.add_user("pia", "role=operator")
    head = own_gateway.audit_head()
    client = own_gateway.ssh(pia, "rec01")
    client.expect("CHILD")
    client.sendline("typed by pia")
    client.expect("GOT typed by pia")
    client.send("\x1d")
    finish(client)

    session_id, _ = _session_for(own_gateway, "pia", head)
    cast = Path(find_session(own_gateway.inst.database, session_id).recording_path or "")
    typed = "".join(json.loads(line)[2] for line in cast.read_text().splitlines()[1:]
                    if json.loads(line)[1] == "i")
    assert "typed by pia" in typed
