"""The gateway in this process: ``certgate.gateway.server.Gateway`` on a loopback port, with a
fake clock, and asyncssh clients, for fast tests of decisions through real SSH.

The gateway and the clients share one event loop, run in a background thread; tests call
``harness.run(coroutine)`` from plain synchronous code. Stock OpenSSH clients stay in the
end-to-end tests (``gateway_testing.py``). Only 127.0.0.1 and Unix sockets are contacted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from ca import keys
from certgate.access import FakeClock
from certgate.audit.chain import ChainEntry
from certgate.audit.log import AuditLog
from certgate.fleet import add_vm, apply_policy
from certgate.gateway.server import Gateway, ServeOptions
from certgate.installation import Installation
from certgate.policy.values import parse_duration

T = TypeVar("T")
TIMEOUT = 15.0


@dataclass
class Person:
    name: str
    key: asyncssh.SSHKey
    identity_serial: str
    ac_serials: list[str] = field(default_factory=list)


class ClientSession:
    """One SSH session from an asyncssh client: what it has read and how it ended."""

    def __init__(self, conn: asyncssh.SSHClientConnection,
                 process: asyncssh.SSHClientProcess[bytes]) -> None:
        self.conn = conn
        self.process = process
        self.output = b""

    async def read_until(self, text: bytes, timeout: float = TIMEOUT) -> bytes:
        async with asyncio.timeout(timeout):
            while text not in self.output:
                chunk = await self.process.stdout.read(65536)
                if not chunk:
                    raise AssertionError(f"session ended before {text!r}; got {self.output!r}")
                self.output += chunk
        return self.output

    async def finish(self, timeout: float = TIMEOUT) -> tuple[bytes, int | None]:
        """Read to the end; the output and the exit status."""
        async with asyncio.timeout(timeout):
            while chunk := await self.process.stdout.read(65536):
                self.output += chunk
            await self.process.wait_closed()
        self.conn.close()
        return self.output, self.process.exit_status

    def text(self) -> str:
        return self.output.decode(errors="replace")


class InProcessGateway:
    """A running in-process gateway; ``clock`` is the only time its decisions see."""

    def __init__(self, installation: Installation, clock: FakeClock | None = None,
                 *, gateway_id: str = "gw-inproc") -> None:
        self.inst = installation
        self.clock = clock or FakeClock()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.gateway = Gateway(installation, ServeOptions("127.0.0.1", 0, gateway_id),
                               clock=self.clock)
        self.port = self.run(self.gateway.start())[0]

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = TIMEOUT * 2) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.run(self.gateway.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    # -- administration ------------------------------------------------------------------------

    def add_person(self, name: str, *attributes: str, valid: str = "1h",
                   targets: tuple[str, ...] = ()) -> Person:
        key = asyncssh.generate_private_key("ssh-ed25519")
        public = keys.load_public_key(key.export_public_key("openssh"))
        issued = self.inst.ca.add_user(name, email=None, public_key=public, days=1)
        person = Person(name, key, issued.serial)
        if attributes:
            person.ac_serials.append(self.grant(name, *attributes, valid=valid, targets=targets))
        self.catch_up()
        return person

    def catch_up(self) -> None:
        """Certificates are issued at the real time: never let the fake clock lag behind."""
        real = datetime.now(UTC)
        if self.clock.now() < real:
            self.clock.set(real)

    def grant(self, name: str, *attributes: str, valid: str = "1h",
              targets: tuple[str, ...] = ()) -> str:
        from ca.attributes import parse_attribute_assignments

        serial = self.inst.ca.grant(name, parse_attribute_assignments(list(attributes)),
                                    valid_for=parse_duration(valid), targets=targets).serial
        self.catch_up()
        return serial

    def add_vm(self, name: str, console: str) -> None:
        add_vm(self.inst, name, console, {})

    def apply_policy(self, text: str) -> None:
        apply_policy(self.inst, text, "test-policy.yaml")

    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)

    def audit(self, event_type: str | None = None, after: int = 0) -> list[ChainEntry]:
        entries = list(AuditLog(self.inst.database).entries(after_seq=after))
        return [e for e in entries if event_type is None or e.event_type == event_type]

    def audit_head(self) -> int:
        entries = self.audit()
        return entries[-1].seq if entries else 0

    # -- the user's side ---------------------------------------------------------------------

    async def open(self, person: Person | asyncssh.SSHKey, target: str,
                   command: str | None = None, *, term: bool = True) -> ClientSession:
        key = person.key if isinstance(person, Person) else person
        conn = await asyncssh.connect(
            "127.0.0.1", self.port, username=target, client_keys=[key], known_hosts=None,
            agent_path=None, config=None, preferred_auth="publickey")
        process = await conn.create_process(
            command, term_type="xterm" if term else None,
            term_size=(80, 24) if term else None, encoding=None)
        return ClientSession(conn, process)

    def session(self, person: Person | asyncssh.SSHKey, target: str,
                command: str | None = None) -> ClientSession:
        return self.run(self.open(person, target, command))

    def login_output(self, person: Person, target: str,
                     command: str | None = None) -> tuple[str, int | None]:
        """Open a session and read it to the end (for refusals and listings)."""
        async def go() -> tuple[str, int | None]:
            session = await self.open(person, target, command)
            output, status = await session.finish()
            return output.decode(errors="replace"), status

        return self.run(go())


def console_path(directory: Path, name: str) -> Path:
    path = directory / name
    path.unlink(missing_ok=True)
    return path


@contextmanager
def gateway_with_console(root: Path, vms: Sequence[str]) -> Iterator[InProcessGateway]:
    """A fresh installation under ``root`` whose ``vms`` share one recording console, with
    the default policy applied: what a test module's ``harness`` fixture starts from."""
    from gateway_testing import TEST_PASSPHRASE, RecordingConsole, default_policy

    from certgate.home import Home
    from certgate.provisioning import InitOptions, create_installation

    home = Home(root / "home")
    create_installation(home, InitOptions(gateway_name="gw.test"), passphrase=TEST_PASSPHRASE,
                        actor="test")
    inst = Installation(home, actor="test", passphrase=lambda: TEST_PASSPHRASE)
    short = Path(f"/tmp/cgi-{root.name[-12:]}")  # a Unix socket path must stay short
    short.mkdir(exist_ok=True)
    console = RecordingConsole(console_path(short, "c.sock"))
    gateway = InProcessGateway(inst)
    try:
        for vm in vms:
            gateway.add_vm(vm, f"unix:{console.path}")
        gateway.apply_policy(default_policy())
        yield gateway
    finally:
        gateway.close()
        console.close()
        inst.close()
