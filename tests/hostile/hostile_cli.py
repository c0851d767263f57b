"""Helpers of the hostile-input corpus: an installation driven through the CLI in-process.

Every refusal is checked three ways: the one-line message a person sees, that the store is
exactly as it was (every table but the audit log), and that the audit chain still verifies.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from cryptography import x509
from sqlalchemy import select

from certgate.audit.checkpoints import CheckpointVerifier
from certgate.audit.log import AuditLog
from certgate.audit.verification import verify_chain
from certgate.home import Home
from certgate.provisioning import InitOptions, create_installation
from certgate.store.database import Database
from certgate.store.schema import Base

PASSPHRASE = "correct horse battery staple"
AUDIT_TABLES = {"audit_events", "audit_head", "audit_checkpoints"}


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None
    stdout_bytes: bytes = b""

    @property
    def refusal(self) -> str:
        """The one error line, without its prefix; fails unless the CLI refused properly."""
        assert self.exception is None or isinstance(self.exception, SystemExit), (
            f"uncaught {type(self.exception).__name__}: {self.exception}")
        assert self.code not in (0, 70), (self.code, self.stdout, self.stderr)
        assert "Traceback" not in self.stdout + self.stderr
        lines = self.stderr.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got {self.stderr!r}"
        assert lines[0].startswith("certgate: error: "), lines[0]
        return lines[0].removeprefix("certgate: error: ")


@dataclass
class HostileHome:
    home: Home
    work: Path
    env: dict[str, str]

    def cli(self, *args: str, stdin: bytes | None = None) -> Outcome:
        """Run a ``certgate`` command in this process, as ``main`` would."""
        from certgate.cli.main import register_all

        result = CliRunner().invoke(register_all(), list(args), env=self.env, input=stdin)
        return Outcome(result.exit_code, result.stdout, result.stderr, result.exception,
                       result.stdout_bytes)

    def ok(self, *args: str, stdin: bytes | None = None) -> Outcome:
        outcome = self.cli(*args, stdin=stdin)
        assert outcome.code == 0 and outcome.exception is None, (
            args, outcome.stdout, outcome.stderr, outcome.exception)
        return outcome

    def file(self, name: str, data: bytes) -> str:
        path = self.work / name
        path.write_bytes(data)
        return str(path)

    def database(self) -> Database:
        return Database(self.home.database_url())

    def store_state(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table except the audit log's."""
        database = self.database()
        try:
            state: dict[str, list[tuple[Any, ...]]] = {}
            with database.read() as session:
                for name, table in sorted(Base.metadata.tables.items()):
                    if name in AUDIT_TABLES:
                        continue
                    rows = session.execute(select(table)).all()
                    state[name] = sorted(tuple(map(repr, row)) for row in rows)
            return state
        finally:
            database.dispose()

    def audit_head(self) -> int:
        database = self.database()
        try:
            entries = list(AuditLog(database).entries())
            return entries[-1].seq if entries else 0
        finally:
            database.dispose()

    def audit_since(self, seq: int) -> list[Any]:
        database = self.database()
        try:
            return list(AuditLog(database).entries(after_seq=seq))
        finally:
            database.dispose()

    def assert_chain_intact(self) -> None:
        database = self.database()
        try:
            audit_cert = x509.load_pem_x509_certificate(self.home.audit_cert.read_bytes())
            root = x509.load_pem_x509_certificate(self.home.root_cert.read_bytes())
            report = verify_chain(database, CheckpointVerifier(audit_cert, root))
            assert report.intact, report.summary()
        finally:
            database.dispose()

    def assert_refused(self, *args: str, expect: str, stdin: bytes | None = None) -> str:
        """Refused with ``expect`` in the message, the store unchanged, the refusal audited,
        the chain intact."""
        before, head = self.store_state(), self.audit_head()
        message = self.cli(*args, stdin=stdin).refusal
        assert expect in message, message
        assert self.store_state() == before, "the refused command changed the store"
        refusals = [e for e in self.audit_since(head) if e.event_type == "cli.refused"]
        assert refusals, "the refusal was not audited"
        self.assert_chain_intact()
        return message


def make_home(root: Path, database_url: str | None, config_extra: str = "") -> HostileHome:
    home = Home(root / "home")
    create_installation(home, InitOptions(gateway_name="gw.test", database_url=database_url),
                        passphrase=PASSPHRASE.encode(), actor="test")
    if config_extra:
        with home.config_path.open("a", encoding="utf-8") as handle:
            handle.write(config_extra)
    work = root / "work"
    work.mkdir()
    env = {"CERTGATE_HOME": str(home.root), "CERTGATE_CA_PASSPHRASE": PASSPHRASE}
    return HostileHome(home, work, env)


def ssh_keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)
    return path
