"""An opened installation: the wiring of home, config, database and audit log.

Everything that acts on an installation (the CA service, the access core, the gateway, the
CLI) starts from one of these. It holds no signing keys itself: the CA service
(``certgate.ca_service``) loads them, and only for operations that sign.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from certgate.audit.appending import AuditLog
from certgate.audit.chain import AuditEvent
from certgate.home import Home, HomeConfig, read_passphrase
from certgate.store.sql import SQLDatabase

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from certgate.ca_service import CAService
    from certgate.store.database import Database
    from certgate.store.session_sql import ConnectionSQL


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def load_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


class Installation:
    """An opened home: config, database, audit log, trust anchors and the acting person.

    ``direct_store`` opens the store with its driver alone (``certgate.store.direct``) for the
    access core and the audit log (``store``, ``audit``), so a short command that only decides
    and records (``policy check``) does not import SQLAlchemy; ``database`` (SQLAlchemy) is
    then opened only if something asks for it.
    """

    def __init__(
        self,
        home: Home,
        *,
        actor: str | None = None,
        passphrase: Callable[[], bytes] = read_passphrase,
        database: Database | None = None,
        direct_store: bool = False,
    ) -> None:
        home.require()
        self.home = home
        self.config: HomeConfig = home.config()
        self._store: SQLDatabase | None = None
        if database is not None:
            self.__dict__["database"] = database
        elif direct_store:
            from certgate.store.direct import DirectDatabase, direct_dialect

            url, password = home.database_location()
            if direct_dialect(url) is not None:
                self._store = DirectDatabase(url, password=password)
        self.actor = actor or cli_actor()
        self._passphrase_source = passphrase
        self._passphrase: bytes | None = None

    @cached_property
    def database(self) -> Database:
        """The store through SQLAlchemy: what every unit of work with the ORM uses."""
        from certgate.store.database import Database

        return Database(self.home.database_url())

    @property
    def store(self) -> SQLDatabase:
        """The store for plain-SQL units of work (the access core, the audit log)."""
        return self._store if self._store is not None else self.database

    @cached_property
    def audit(self) -> AuditLog:
        return AuditLog(self.store)

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
        if "database" in self.__dict__:
            self.database.dispose()

    # -- key material --------------------------------------------------------------------------

    def passphrase(self) -> bytes | None:
        if not self.config.encrypted_keys:
            return None
        if self._passphrase is None:
            self._passphrase = self._passphrase_source()
        return self._passphrase

    @cached_property
    def root_certificate(self) -> x509.Certificate:
        return load_certificate(self.home.root_cert)

    @cached_property
    def aa_certificate(self) -> x509.Certificate:
        return load_certificate(self.home.aa_cert)

    @cached_property
    def ca(self) -> CAService:
        """Issuing and revoking for this installation (keys are loaded on first signature)."""
        from certgate.ca_service import CAService

        return CAService(self)

    # -- units of work -------------------------------------------------------------------------

    @contextmanager
    def admin_write(self) -> Iterator[Session]:
        """A write transaction that first takes the audit head lock.

        Taking the one lock up front serialises admin operations across processes (on
        PostgreSQL too), so policy versions and CRL numbers never race.
        """
        from certgate.audit.log import lock_head_for_admin

        with self.database.write() as session:
            lock_head_for_admin(session)
            yield session

    @contextmanager
    def admin_write_sql(self) -> Iterator[ConnectionSQL]:
        """``admin_write`` as a plain-SQL unit on a Core connection, no ORM session: for
        ``attr grant``, where the session's bookkeeping cost more than the commit."""
        from certgate.audit.log import lock_head_for_admin_sql

        with self.database.write_sql() as sql:
            lock_head_for_admin_sql(sql)
            yield sql

    def event(self, event_type: str, **fields: Any) -> AuditEvent:
        return AuditEvent(event_type=event_type, actor=self.actor, **fields)

    def record_failure(
        self, event_type: str, message: str, *, details: dict[str, Any] | None = None
    ) -> None:
        """Audit a refused admin operation; the refusal itself must not be lost."""
        self.audit.record(
            self.event(event_type, outcome="error", details={**(details or {}), "error": message})
        )
