"""The console keeper on a real QEMU guest, through stock OpenSSH clients.

One guest is booted for the whole module and registered as ``vmk`` (a kept ``unix:``
console). The tests run in file order and share the guest's root shell on the serial line:
the first logs in, later ones find the ``# `` prompt.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest
from gateway_testing import Gateway, User, details

from certgate.consolelog.reader import ConsoleLogReader
from certgate.demo.guest import GuestImage, start_guest

pytestmark = pytest.mark.slow

BOOT_TIMEOUT = 90.0
CTRL_E = "\x05"

POLICY = """version: 1
rules:
  - name: operators
    effect: allow
    vms: {names: ["vmk"]}
    require: {roles: [operator]}
    privileges: [console.interact, console.log]
  - name: leads
    effect: allow
    vms: {names: ["vmk"]}
    require: {roles: [lead]}
    privileges: [console.force]
    session: {write_mode: WRITE_MODE}
  - name: contractors
    effect: allow
    vms: {names: ["vmk"]}
    require: {groups: [contractors]}
    privileges: [console.interact]
    session:
      moderated: {observer: role=security, on_observer_leave: pause}
  - name: security
    effect: allow
    vms: {names: ["vmk"]}
    require: {roles: [security]}
    privileges: [console.view]
"""


class Guest:
    """The module's QEMU guest; ``restart`` kills QEMU and boots a fresh one."""

    def __init__(self, image: GuestImage, socket_path: Path) -> None:
        self.image = image
        self.socket_path = socket_path
        self._stack: list[object] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        context = start_guest(self.image, self.socket_path)
        self.proc = context.__enter__()
        self._stack.append(context)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        while self._stack:
            context = self._stack.pop()
            context.__exit__(None, None, None)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def guest(guest_image: GuestImage) -> Iterator[Guest]:
    with tempfile.TemporaryDirectory(prefix="cgk-", dir="/tmp") as directory:
        running = Guest(guest_image, Path(directory) / "vmk.sock")
        running.start()
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def users(gateway: Gateway, guest: Guest) -> dict[str, User]:
    gateway.add_vm("vmk", f"unix:{guest.socket_path}")
    gateway.apply_policy(POLICY.replace("WRITE_MODE", "shared"))
    return {
        "olga": gateway.add_user("olga", "role=operator"),
        "lena": gateway.add_user("lena", "role=lead"),
        "carl": gateway.add_user("carl", "group=contractors"),
        "sam": gateway.add_user("sam", "role=security"),
    }


def log_text(gateway: Gateway) -> str:
    directory = gateway.home.console_logs_dir / "vmk"
    return "\n".join(line.render() for line in ConsoleLogReader(directory).lines())


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def shell(gateway: Gateway, user: User, *command: str) -> pexpect.spawn:
    """An interactive session on vmk at the guest's root prompt."""
    client = gateway.ssh(user, "vmk", "-t", *command)
    client.expect("connected to vmk")
    return client


_TOKENS = itertools.count(int(time.time()) % 100_000)


def prompt(client: pexpect.spawn) -> None:
    """Get to a live root prompt. A ``# `` seen may be replayed history (after a restart
    the guest is back at ``login:``), so a shell is proven by running something."""
    for attempt in range(3):
        client.send("\r")
        if client.expect(["login: ", "# "], timeout=BOOT_TIMEOUT) == 0:
            client.send("root\r")
            client.expect("# ")
        token = next(_TOKENS) * 10 + attempt  # never seen before, not even in replayed lines
        client.send(f"echo READY-$(({token}+1))\r")
        if client.expect([f"READY-{token + 1}", "login: "], timeout=BOOT_TIMEOUT) == 0:
            client.expect("# ")
            return
    raise AssertionError("no root prompt on the guest")


def test_output_printed_while_nobody_watches_is_logged_and_replayed(
        gateway: Gateway, users: dict[str, User]) -> None:
    wait_until(lambda: "console kept by the gateway" in log_text(gateway), "the keeper")
    client = shell(gateway, users["olga"])
    prompt(client)
    client.send("(sleep 3; echo KEEPER-MARK-$((6*7)) > /dev/ttyS0) &\r")
    client.expect("# ")
    client.send("\x1d")
    client.expect(pexpect.EOF)
    # Nobody is attached now; the guest prints the marker three seconds later.
    wait_until(lambda: "KEEPER-MARK-42" in log_text(gateway), "the marker in the log")

    code, output = gateway.cli("console", "log", "vmk", "--grep", "KEEPER-MARK-42")
    assert code == 0, output
    # The typed command shows $((6*7)), not 42: only the guest's own output matches.
    assert [line.split("  ", 1)[1].removeprefix("# ") for line in output.splitlines()] == [
        "KEEPER-MARK-42"]
    read = gateway.audit(event_type="console.log.read")[-1]
    assert read.vm == "vmk" and details(read)["grep"] == "KEEPER-MARK-42"

    later = shell(gateway, users["olga"])
    later.expect("KEEPER-MARK-42")  # replayed: the last lines come before the live stream
    later.send("\x1d")
    later.expect(pexpect.EOF)


def test_console_log_over_ssh_needs_the_log_privilege(
        gateway: Gateway, users: dict[str, User]) -> None:
    allowed = gateway.ssh(users["olga"], "vmk", command="log --grep KEEPER-MARK-42")
    allowed.expect("KEEPER-MARK-42")
    allowed.expect(pexpect.EOF)
    refused = gateway.ssh(users["sam"], "vmk", command="log")
    refused.expect("needs the console.log privilege")
    refused.expect(pexpect.EOF)
    reads = gateway.audit(event_type="console.log.read")
    assert [(e.user, e.outcome) for e in reads[-2:]] == [("olga", "allow"), ("sam", "deny")]


def test_view_without_a_terminal_says_to_use_ssh_t(
        gateway: Gateway, users: dict[str, User]) -> None:
    client = gateway.ssh(users["sam"], "vmk", "-T")
    client.expect("connected to vmk \\(view-only\\)")
    client.expect("no terminal requested: .* use ssh -t")
    client.close(force=True)


def test_exclusive_mode_only_the_writer_types_until_force(
        gateway: Gateway, users: dict[str, User]) -> None:
    gateway.apply_policy(POLICY.replace("WRITE_MODE", "exclusive"))
    writer = shell(gateway, users["olga"])
    writer.expect("exclusive console: you have the keyboard")
    prompt(writer)
    other = shell(gateway, users["lena"])
    other.expect("exclusive console: olga has the keyboard; you are watching")
    head = gateway.audit_head()

    other.send("echo LENA-$((1+1))\r")
    writer.send("echo OLGA-$((2+2))\r")
    writer.expect("OLGA-4")
    other.expect("OLGA-4")
    assert "LENA-2" not in writer.before.decode(errors="replace")

    other.send(CTRL_E + "cf")  # the escape menu: take the keyboard by force
    writer.expect(r"\[certgate: lena took the keyboard; you are now watching\]")
    other.expect(r"\[certgate: lena took the keyboard from olga\]")
    writer.send("echo OLGA-$((3+3))\r")
    other.send("\recho LENA-$((4+4))\r")
    other.expect("LENA-8")
    writer.expect("LENA-8")
    assert "OLGA-6" not in other.before.decode(errors="replace")
    forced = gateway.wait_for_audit("console.keyboard.force", after=head)
    assert forced.user == "lena" and details(forced)["from_user"] == "olga"
    for client in (writer, other):
        client.send("\x1d")
        client.expect(pexpect.EOF)
    gateway.apply_policy(POLICY.replace("WRITE_MODE", "shared"))


def test_moderated_input_is_held_until_a_security_viewer_attaches(
        gateway: Gateway, users: dict[str, User]) -> None:
    head = gateway.audit_head()
    contractor = shell(gateway, users["carl"])
    contractor.expect(r"input is held until an observer \(role=security\) is attached")
    contractor.send("echo HELD-$((5+5))\r")
    observer = gateway.ssh(users["sam"], "vmk", command="view")
    observer.expect("connected to vmk \\(view-only\\)")
    contractor.expect(r"an observer \(role=security\) is watching: input is enabled")
    contractor.send("\recho FREE-$((6+6))\r")
    contractor.expect("FREE-12")
    observer.expect("FREE-12")
    assert "HELD-10" not in contractor.before.decode(errors="replace")
    assert "HELD-10" not in observer.before.decode(errors="replace")
    gateway.wait_for_audit("console.moderation.held", after=head)
    released = gateway.wait_for_audit("console.moderation.released", after=head)
    assert released.user == "carl"

    observer.send("\x1d")
    observer.expect(pexpect.EOF)
    contractor.expect(r"the observer \(role=security\) left: input is held")
    contractor.send("\x1d")
    contractor.expect(pexpect.EOF)


def test_keeper_reconnects_after_qemu_is_killed_and_notes_the_gap(
        gateway: Gateway, users: dict[str, User], guest: Guest) -> None:
    head = gateway.audit_head()
    watcher = gateway.ssh(users["sam"], "vmk", command="view")
    watcher.expect("connected to vmk")
    guest.kill()
    watcher.expect(r"console connection lost \(vm console unix:\S+ hung up\); reconnecting")
    gateway.wait_for_audit("console.keeper.lost", after=head)
    guest.start()
    restored = gateway.wait_for_audit("console.keeper.restored", after=head, timeout=60)
    assert restored.vm == "vmk" and details(restored)["gap_seconds"] > 0
    watcher.expect(r"console reconnected after \d+\.\ds")
    operator = shell(gateway, users["olga"])
    prompt(operator)  # the new guest answers through the keeper's new connection
    operator.send("echo AFTER-$((7*7))\r")
    operator.expect("AFTER-49")
    watcher.expect("AFTER-49")
    operator.send("\x1d")
    operator.expect(pexpect.EOF)
    text = log_text(gateway)
    assert "[certgate: console connection lost: vm console unix:" in text
    assert "[certgate: console reconnected after " in text
    watcher.send("\x1d")
    watcher.expect(pexpect.EOF)
