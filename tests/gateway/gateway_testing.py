"""The gateway under test: a real ``certgate serve`` subprocess, real users with ssh-keygen
keys, and the stock OpenSSH client driven through a pty (pexpect).

A uniquely named module (``conftest`` is ambiguous with several test directories). Only
127.0.0.1 and Unix sockets are ever contacted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pexpect
from click.testing import CliRunner

from ca import keys
from certgate.audit.chain import ChainEntry
from certgate.audit.log import AuditLog
from certgate.fleet import add_vm, apply_policy
from certgate.home import Home
from certgate.installation import Installation
from certgate.provisioning import InitOptions, create_installation

TEST_PASSPHRASE = b"correct horse battery staple"
GATEWAY_ID = "gw-test"
STANDIN = Path(__file__).resolve().parents[1] / "consoles" / "pty_standin.py"
SSH_TIMEOUT = 15.0


@dataclass
class User:
    name: str
    key: Path
    identity_serial: str
    ac_serials: list[str] = field(default_factory=list)


class GatewayProcess:
    """``certgate serve`` as a child process; stderr is collected for failure messages."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: list[str] = []

    def start(self, timeout: float = 30.0) -> None:
        self.log = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "certgate", "serve", "--gateway-id", GATEWAY_ID],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
        )
        ready = threading.Event()
        stderr = self.proc.stderr
        assert stderr is not None

        def drain() -> None:
            for raw in stderr:
                line = raw.decode(errors="replace").rstrip()
                self.log.append(line)
                if "listening on" in line:
                    ready.set()

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("certgate serve did not start:\n" + "\n".join(self.log))

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


@dataclass
class Gateway:
    """A running gateway and the administrator's handle on its installation."""

    home: Home
    port: int
    inst: Installation
    process: GatewayProcess
    workdir: Path
    known_hosts: Path

    # -- administration (the same operations the CLI runs) ---------------------------------

    def cli(self, *args: str) -> tuple[int, str]:
        """Run a ``certgate`` command in-process against this installation."""
        from certgate.cli.main import register_all

        result = CliRunner().invoke(register_all(), list(args), env=self.process.env)
        return result.exit_code, result.output

    def add_user(self, name: str, *attributes: str, valid: str = "1h",
                 targets: tuple[str, ...] = ()) -> User:
        key = self.workdir / f"{name}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                        "-f", str(key)], check=True)
        public_key = keys.load_public_key((key.parent / f"{key.name}.pub").read_bytes())
        issued = self.inst.ca.add_user(name, email=None, public_key=public_key, days=1)
        user = User(name, key, issued.serial)
        if attributes:
            user.ac_serials.append(self.grant(name, *attributes, valid=valid, targets=targets))
        return user

    def grant(self, name: str, *attributes: str, valid: str = "1h",
              targets: tuple[str, ...] = ()) -> str:
        args = ["attr", "grant", name, *attributes, "--valid", valid]
        for target in targets:
            args += ["--target", target]
        code, output = self.cli(*args)
        assert code == 0, output
        return output.strip().splitlines()[-1]

    def add_vm(self, name: str, console: str) -> None:
        add_vm(self.inst, name, console, {})

    def apply_policy(self, text: str) -> None:
        apply_policy(self.inst, text, "test-policy.yaml")

    def audit(self, *, event_type: str | None = None, after: int = 0) -> list[ChainEntry]:
        entries = list(AuditLog(self.inst.database).entries(after_seq=after))
        return [e for e in entries if event_type is None or e.event_type == event_type]

    def audit_head(self) -> int:
        entries = self.audit()
        return entries[-1].seq if entries else 0

    def wait_for_audit(self, event_type: str, *, after: int,
                       match: Callable[[ChainEntry], bool] = lambda e: True,
                       timeout: float = 10.0) -> ChainEntry:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.audit(event_type=event_type, after=after) if match(e)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                seen = [(e.event_type, e.details_json) for e in self.audit(after=after)]
                raise AssertionError(f"no {event_type} audit event; saw {seen}")
            time.sleep(0.1)

    # -- the user's side: stock OpenSSH ------------------------------------------------------

    def ssh_args(self, user: User | Path, target: str, *extra: str,
                 known_hosts: Path | None = None) -> list[str]:
        key = user.key if isinstance(user, User) else user
        return [
            "-F", "/dev/null",
            "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR",
            "-i", str(key),
            "-p", str(self.port),
            *extra,
            f"{target}@127.0.0.1",
        ]

    def ssh(self, user: User | Path, target: str, *extra: str, command: str | None = None,
            known_hosts: Path | None = None, dimensions: tuple[int, int] = (24, 80)
            ) -> pexpect.spawn:
        """Start ``ssh`` in a pty (as a person would); the caller expects on the result."""
        args = self.ssh_args(user, target, *extra, known_hosts=known_hosts)
        if command is not None:
            args += ["-t", command]
        child = pexpect.spawn("ssh", args, timeout=SSH_TIMEOUT, dimensions=dimensions)
        _SPAWNED.append(child)
        return child


_SPAWNED: list[pexpect.spawn] = []


def close_ssh_clients() -> None:
    """Close (SIGKILL if need be) every ssh client the tests started."""
    for child in _SPAWNED:
        with contextlib.suppress(Exception):
            child.close(force=True)
    _SPAWNED.clear()


def details(entry: ChainEntry) -> dict[str, Any]:
    """An audit entry's details as a dict."""
    value: dict[str, Any] = json.loads(entry.details_json or "{}")
    return value


def finish(child: pexpect.spawn, timeout: float = SSH_TIMEOUT) -> tuple[str, int | None]:
    """Read the rest of a client's output and its exit status."""
    child.expect(pexpect.EOF, timeout=timeout)
    output = child.before.decode(errors="replace") if isinstance(child.before, bytes) else ""
    child.close()
    return output, child.exitstatus


def hours_excluding_now() -> str:
    """A one-hour UTC window that starts two hours from now, so now is outside it."""
    start = (datetime.now(UTC) + timedelta(hours=2)).hour
    return f"{start:02d}:00-{(start + 1) % 24:02d}:00"


def default_policy(*, without: tuple[str, ...] = ()) -> str:
    """Operators interact with and viewers watch every ``vm*``; ``x-office`` only from
    10.0.0.0/8; ``x-night`` only in an hour that is not now."""
    rules = {
        "operators": """\
  - name: operators
    effect: allow
    vms: {names: ["vm*"]}
    require: {roles: [operator]}
    privileges: [console.view, console.interact]
""",
        "watchers": """\
  - name: watchers
    effect: allow
    vms: {names: ["vm*"]}
    require: {roles: [viewer]}
    privileges: [console.view]
""",
        "office-network": """\
  - name: office-network
    effect: allow
    vms: {names: ["x-office"]}
    require: {roles: [operator]}
    privileges: [console.view, console.interact]
    when: {sources: ["10.0.0.0/8"]}
""",
        "night-shift": f"""\
  - name: night-shift
    effect: allow
    vms: {{names: ["x-night"]}}
    require: {{roles: [operator]}}
    privileges: [console.view, console.interact]
    when: {{time: {{hours: "{hours_excluding_now()}"}}}}
""",
    }
    return "version: 1\nrules:\n" + "".join(
        text for name, text in rules.items() if name not in without)


def start_gateway(root: Path, database_url: str | None = None,
                  config_extra: str = "") -> Gateway:
    """Create an installation under ``root`` and run ``certgate serve`` on a free port;
    ``config_extra`` is appended to certgate.toml first (a ``[limits]`` table, say)."""
    port = free_port()
    home = Home(root / "home")
    create_installation(
        home,
        InitOptions(gateway_name="gw.test", database_url=database_url, listen_port=port),
        passphrase=TEST_PASSPHRASE, actor="test",
    )
    if config_extra:
        with home.config_path.open("a", encoding="utf-8") as config:
            config.write(config_extra)
    env = {**os.environ, "CERTGATE_HOME": str(home.root),
           "CERTGATE_CA_PASSPHRASE": TEST_PASSPHRASE.decode()}
    env.pop("CERTGATE_DATABASE_URL", None)
    inst = Installation(home, actor="test", passphrase=lambda: TEST_PASSPHRASE)
    process = GatewayProcess(home.root, env)
    gateway = Gateway(home, port, inst, process, root, root / "known_hosts")
    code, line = gateway.cli("ca", "export", "--known-hosts")
    assert code == 0, line
    gateway.known_hosts.write_text(line)
    process.start()
    return gateway


def stop_gateway(gateway: Gateway) -> None:
    close_ssh_clients()
    gateway.process.stop()
    gateway.inst.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unused_socket_path(directory: Path, name: str) -> Path:
    path = directory / name
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return path


class RecordingConsole:
    """A console on a Unix socket that records every byte it receives from the gateway.

    It greets each connection with a banner and answers nothing else, so what it received
    is exactly what users' keystrokes became on the console side.
    """

    def __init__(self, path: Path, banner: bytes = b"recording console ready\r\n") -> None:
        self.path = path
        self.banner = banner
        self.received = bytearray()
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(4)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.sendall(self.banner)
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                with self._lock:
                    self.received += data

    def wait_for(self, data: bytes, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while data not in self.snapshot():
            if time.monotonic() > deadline:
                raise AssertionError(f"console never received {data!r}; got {self.snapshot()!r}")
            time.sleep(0.05)

    def snapshot(self) -> bytes:
        with self._lock:
            return bytes(self.received)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
