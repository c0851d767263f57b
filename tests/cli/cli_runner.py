"""Driving the real ``certgate`` command in a subprocess, and looking behind it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pg import PostgresCluster

from certgate.audit.chain import ChainEntry
from certgate.audit.log import AuditLog
from certgate.home import Home
from certgate.store import repositories as repo
from certgate.store.database import Database

CA_PASSPHRASE = "correct horse battery staple"
KEY_PASSPHRASE = "user key passphrase"


@dataclass(frozen=True)
class Outcome:
    """What a person sees after running one command."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.splitlines()


@dataclass
class Certgate:
    """The ``certgate`` command bound to one home, with the CA passphrase in the environment."""

    home: Path
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, env: dict[str, str | None] | None = None,
            stdin: str | None = None) -> Outcome:
        full_env = {**os.environ, "CERTGATE_HOME": str(self.home),
                    "CERTGATE_CA_PASSPHRASE": CA_PASSPHRASE, **self.env}
        for name in ("CERTGATE_DATABASE_URL", "CERTGATE_KEY_PASSPHRASE"):
            full_env.pop(name, None)
        for name, value in (env or {}).items():
            if value is None:
                full_env.pop(name, None)
            else:
                full_env[name] = value
        done = subprocess.run(
            [sys.executable, "-m", "certgate", *args],
            env=full_env, cwd=self.workdir, capture_output=True, text=True, timeout=120,
            input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
        )
        return Outcome(tuple(args), done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, **kwargs: object) -> Outcome:
        """Run a command that must succeed."""
        outcome = self.run(*args, **kwargs)  # type: ignore[arg-type]
        assert outcome.code == 0, f"certgate {' '.join(args)} failed:\n{outcome.stderr}"
        assert "Traceback" not in outcome.stderr
        return outcome

    def refused(self, *args: str, **kwargs: object) -> str:
        """Run a command that must be refused the way the CLI promises; return the message."""
        outcome = self.run(*args, **kwargs)  # type: ignore[arg-type]
        assert outcome.code != 0, f"certgate {' '.join(args)} unexpectedly succeeded"
        assert "Traceback" not in outcome.stderr + outcome.stdout
        assert len(outcome.error_lines) == 1, f"expected one line on stderr:\n{outcome.stderr}"
        line = outcome.error_lines[0]
        assert line.startswith("certgate: error: "), line
        return line.removeprefix("certgate: error: ")

    # -- looking behind the CLI ------------------------------------------------------------

    def database(self) -> Database:
        return Database(Home(self.home).database_url())

    def audit(self) -> list[ChainEntry]:
        database = self.database()
        try:
            return list(AuditLog(database).entries())
        finally:
            database.dispose()

    def audit_since(self, seq: int) -> list[ChainEntry]:
        return [e for e in self.audit() if e.seq > seq]

    def last_seq(self) -> int:
        entries = self.audit()
        return entries[-1].seq if entries else 0

    def users(self) -> list[str]:
        database = self.database()
        try:
            with database.read() as session:
                return [u.name for u in repo.list_users(session)]
        finally:
            database.dispose()

    def certificates(self, kind: str | None = None) -> list[repo.IssuedCertificate]:
        database = self.database()
        try:
            with database.read() as session:
                return repo.certificates_of(session, None, kind)
        finally:
            database.dispose()

    def user(self, prefix: str) -> str:
        """A user name no other test in the module uses."""
        return f"{prefix}-{uuid.uuid4().hex[:8]}"


def database_url_for(backend: str, request: pytest.FixtureRequest) -> str | None:
    """None for the default SQLite in the home; a fresh PostgreSQL database otherwise."""
    if backend == "sqlite":
        return None
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database()


def initialised(tmp: Path, database_url: str | None, *extra: str) -> Certgate:
    """A home made by ``certgate init`` (the way a person makes one)."""
    workdir = tmp / "work"
    workdir.mkdir()
    certgate = Certgate(tmp / "home", workdir)
    args = ["init", "--gateway-name", "gw.test", *extra]
    if database_url:
        args += ["--database-url", database_url]
    certgate.ok(*args)
    return certgate
