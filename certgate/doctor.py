"""``certgate doctor``: is this installation fit to serve? One finding per check, each with
a fix a person can apply.

Checks read only: file modes, the database (reachability, schema level, clock), the
certificates' validity dates, and whether each VM's console can be reached. Nothing here
needs the CA passphrase, and a console check only opens and closes a connection (QEMU
queues a second client silently, so a gateway holding the console is not disturbed).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from sqlalchemy import func, select, text

from certgate.consoles.uri import (
    ExecConsole,
    SshConsole,
    TcpConsole,
    UnixSocketConsole,
    parse_console_uri,
)
from certgate.errors import CertgateError
from certgate.home import Home
from certgate.store import repositories as repo
from certgate.store.database import Database
from certgate.store.schema import AuditEventRow

OK, WARN, FAIL = "ok", "warn", "fail"
EXPIRY_WARNING = timedelta(days=30)
MAX_SKEW = timedelta(seconds=5)
CONNECT_TIMEOUT = 2.0


@dataclass(frozen=True)
class Finding:
    status: str
    check: str
    message: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.status.upper():<4} {self.check}: {self.message}"
        return text + (f" — fix: {self.fix}" if self.fix else "")

    def as_dict(self) -> dict[str, str | None]:
        return {"status": self.status, "check": self.check, "message": self.message,
                "fix": self.fix}


def check_home(home: Home) -> Iterator[Finding]:
    """The home must be private: directory 0700 and every key file 0600, owned by us."""
    if not home.exists():
        yield Finding(FAIL, "home", f"no installation at {home.root}",
                      "run `certgate init` or pass --home / set CERTGATE_HOME")
        return
    mode = stat.S_IMODE(home.root.stat().st_mode)
    if mode & 0o077:
        yield Finding(FAIL, "home", f"{home.root} is mode {mode:04o} (others can look in)",
                      f"chmod 700 {home.root}")
    else:
        yield Finding(OK, "home", f"{home.root} is mode {mode:04o}")
    keys = sorted(p for d in (home.ca_dir, home.gateway_dir) if d.is_dir()
                  for p in d.glob("*.key"))
    loose = [p for p in keys if stat.S_IMODE(p.stat().st_mode) & 0o077]
    foreign = [p for p in keys if p.stat().st_uid != os.geteuid()]
    if loose:
        yield Finding(FAIL, "key files", f"{len(loose)} readable by others: "
                      + ", ".join(str(p) for p in loose), "chmod 600 " + " ".join(
                          str(p) for p in loose))
    elif foreign:
        yield Finding(WARN, "key files", f"{len(foreign)} owned by another user: "
                      + ", ".join(str(p) for p in foreign),
                      "chown them to the user certgate runs as")
    else:
        yield Finding(OK, "key files", f"{len(keys)} key files, all mode 0600")


def check_database(database: Database, now: datetime) -> Iterator[Finding]:
    try:
        with database.read() as session:
            session.execute(text("SELECT 1"))
    except CertgateError as exc:
        yield Finding(FAIL, "database", f"{database.safe_url} unreachable: {exc}",
                      "check database_url in certgate.toml and that the server runs")
        return
    yield Finding(OK, "database", f"{database.safe_url} reachable")
    try:
        database.check_schema()
    except CertgateError as exc:
        yield Finding(FAIL, "schema", str(exc), "run `certgate db upgrade`")
    else:
        yield Finding(OK, "schema", "at the newest migration")
        yield from _clock(database, now)


def _clock(database: Database, now: datetime) -> Iterator[Finding]:
    """Skew against the database server's clock (PostgreSQL), and a clock that went back
    (the newest audit entry lies in the future)."""
    with database.read() as session:
        newest = session.execute(select(func.max(AuditEventRow.ts))).scalar_one_or_none()
        server_now = (session.execute(text("SELECT now()")).scalar_one()
                      if database.dialect == "postgresql" else None)
    if server_now is not None:
        skew = abs(server_now - now)
        if skew > MAX_SKEW:
            yield Finding(FAIL, "clock", f"{skew.total_seconds():.1f} s off the database "
                          "server's clock", "run NTP (systemd-timesyncd, chrony) on both hosts")
            return
        yield Finding(OK, "clock", f"within {skew.total_seconds():.2f} s of the database "
                      "server")
    if newest is not None and newest.replace(tzinfo=UTC) - now > MAX_SKEW:
        yield Finding(FAIL, "clock", f"the newest audit entry is from {newest.isoformat()}, "
                      "in the future: this clock went back or another writer's runs ahead",
                      "run NTP on every host that writes to this database")
    elif server_now is None:
        yield Finding(OK, "clock", "no audit entry lies in the future")


def _certificates(home: Home) -> Iterator[tuple[str, Path]]:
    yield "root CA", home.root_cert
    yield "attribute authority", home.aa_cert
    yield "gateway host", home.host_cert
    yield "audit signer", home.audit_cert
    web = home.gateway_dir / "web.pem"
    if web.exists():
        yield "review site", web


def check_certificates(home: Home, now: datetime) -> Iterator[Finding]:
    for label, path in _certificates(home):
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as exc:
            yield Finding(FAIL, f"{label} certificate", f"{path}: {exc}",
                          "restore it from the backup of the home")
            continue
        yield _expiry(f"{label} certificate", cert.not_valid_after_utc, now, path)


def _expiry(check: str, not_after: datetime, now: datetime, path: Path) -> Finding:
    left = not_after - now
    when = not_after.strftime("%Y-%m-%d")
    renew = ("`certgate web` re-issues it at start" if path.name == "web.pem"
             else "issue a new one with the CA (see docs/operations.md)")
    if left <= timedelta(0):
        return Finding(FAIL, check, f"expired on {when}", renew)
    if left < EXPIRY_WARNING:
        return Finding(WARN, check, f"expires on {when} (in {left.days} days)", renew)
    return Finding(OK, check, f"valid until {when}")


def check_consoles(database: Database,
                   connect: Callable[[UnixSocketConsole | TcpConsole | SshConsole], None]
                   ) -> Iterator[Finding]:
    with database.read() as session:
        vms = repo.list_vms(session)
    if not vms:
        yield Finding(WARN, "consoles", "no VMs registered", "certgate vm add NAME --console URI")
    for vm in vms:
        check = f"console {vm.name}"
        try:
            target = parse_console_uri(vm.console_uri)
        except CertgateError as exc:
            yield Finding(FAIL, check, str(exc), f"certgate vm rm {vm.name}; certgate vm add")
            continue
        if isinstance(target, ExecConsole):
            program = shutil.which(target.argv[0])
            if program is None:
                yield Finding(FAIL, check, f"{target.argv[0]} is not an executable on PATH",
                              "install it or give its full path in the console URI")
            else:
                yield Finding(OK, check, f"{program} found")
            continue
        try:
            connect(target)
        except OSError as exc:
            yield Finding(FAIL, check, f"{target}: {exc.strerror or exc}",
                          "start the VM, or fix its console URI")
        else:
            yield Finding(OK, check, f"{target} accepts connections")


def connect_once(target: UnixSocketConsole | TcpConsole | SshConsole) -> None:
    if isinstance(target, UnixSocketConsole):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(target.path)
        return
    with socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT):
        pass


def diagnose(home: Home, database: Database | None, *, now: datetime | None = None,
             connect: Callable[[UnixSocketConsole | TcpConsole | SshConsole], None]
             = connect_once) -> list[Finding]:
    """Every finding, in a fixed order; ``database`` None when the config cannot be read."""
    now = now or datetime.now(UTC)
    findings = list(check_home(home))
    if not home.exists():
        return findings
    if database is None:
        findings.append(Finding(FAIL, "config", f"{home.config_path} cannot be read",
                                "fix certgate.toml"))
        return findings
    findings += check_certificates(home, now)
    database_findings = list(check_database(database, now))
    findings += database_findings
    if all(f.status != FAIL for f in database_findings):
        findings += check_consoles(database, connect)
    return findings
