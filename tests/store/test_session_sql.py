"""SQL run on a session's driver connection (``certgate.store.session_sql``) behaves as
SQLAlchemy's own execution would, on both databases: same values back, pending ORM changes
seen, errors as SQLAlchemy's types without the parameters, and PostgreSQL's change
notification on commit only."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError

from ca.attributes import AttributeSet
from certgate.errors import StoreError
from certgate.installation import Installation
from certgate.store import repositories as repo
from certgate.store.changes import CHANNEL
from certgate.store.schema import UserRow
from certgate.store.session_sql import SessionSQL

ATTRIBUTES = AttributeSet(roles=("operator",), groups=("ops", "db"), grants=("console.break",))
_USER_NAMED = "SELECT name, email FROM users WHERE name = ?"


@pytest.fixture
def alice(installation: Installation) -> Installation:
    installation.ca.add_user("alice", email="alice@example.org",
                             public_key=ed25519.Ed25519PrivateKey.generate().public_key(),
                             days=30)
    return installation


def test_reads_on_the_driver_return_what_the_orm_reads(alice: Installation) -> None:
    issued = alice.ca.grant("alice", ATTRIBUTES, valid_for=timedelta(hours=2),
                            targets=("vm1", "web-2"))
    with alice.database.read() as session:
        by_orm = repo.get_certificate(session, issued.serial)
        on_driver = repo.find_certificate(session, issued.serial)
        identity_by_orm = repo.certificates_of(session, "alice", repo.IDENTITY)[0]
        holder = repo.current_holder(session, "alice", issued.issued_at)
    assert on_driver == by_orm == issued
    assert on_driver.not_after.tzinfo is not None
    assert on_driver.not_after - on_driver.not_before == timedelta(hours=2)
    assert on_driver.attributes == ATTRIBUTES.as_dict()
    assert on_driver.targets == ["vm1", "web-2"]
    assert holder == repo.Holder(identity_by_orm.serial, identity_by_orm.der,
                                 identity_by_orm.user_id)


def test_pending_orm_changes_are_flushed_before_a_statement_runs(
        installation: Installation) -> None:
    with installation.database.write() as session:
        session.add(UserRow(name="carol", email="carol@example.org",
                            created_at=datetime.now(UTC)))
        assert SessionSQL(session).rows(_USER_NAMED, ("carol",)) == [
            ("carol", "carol@example.org")]
        session.rollback()
    with installation.database.read() as session:
        assert SessionSQL(session).rows(_USER_NAMED, ("carol",)) == []


def test_a_driver_error_comes_back_as_sqlalchemys_without_the_parameters(
        alice: Installation) -> None:
    issued = alice.ca.grant("alice", ATTRIBUTES, valid_for=timedelta(hours=1))
    with pytest.raises(IntegrityError) as raised, alice.database.write() as session:
        repo.add_certificates(session, [replace(issued, subject="secret-subject-text")])
    assert "secret-subject-text" not in str(raised.value)
    assert issued.der.hex() not in str(raised.value)
    with alice.database.read() as session:
        assert len(repo.certificates_of(session, "alice", repo.ATTRIBUTE)) == 1


def test_a_failing_begin_is_a_store_error(alice: Installation) -> None:
    """BEGIN runs on the driver too; its failure must still reach the caller as one line."""
    engine = alice.database.engine

    def refuse(_connection: object) -> None:
        raise OperationalError("BEGIN", None, sqlite3.OperationalError("database is locked"))

    event.listen(engine, "begin", refuse, insert=True)
    try:
        with pytest.raises(StoreError, match="database is locked"):
            alice.ca.grant("alice", ATTRIBUTES, valid_for=timedelta(hours=1))
    finally:
        event.remove(engine, "begin", refuse)
    with alice.database.read() as session:
        assert repo.certificates_of(session, "alice", repo.ATTRIBUTE) == []


@pytest.mark.postgres
def test_a_grant_notifies_listeners_when_it_commits_and_not_before(
        alice: Installation) -> None:
    if alice.database.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    import psycopg

    url = alice.database.engine.url.set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False),
                         autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        engine = alice.database.engine

        def refuse(_connection: object) -> None:
            raise OperationalError("COMMIT", None, RuntimeError("commit refused"))

        event.listen(engine, "commit", refuse)
        try:
            with pytest.raises(StoreError, match="commit refused"):
                alice.ca.grant("alice", ATTRIBUTES, valid_for=timedelta(hours=1))
        finally:
            event.remove(engine, "commit", refuse)
        assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
        alice.ca.grant("alice", ATTRIBUTES, valid_for=timedelta(hours=1))
        [notification] = list(listener.notifies(timeout=10, stop_after=1))
    assert notification.channel == CHANNEL
