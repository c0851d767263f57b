"""``Database.write_sql``: the plain-SQL write unit on a Core connection (no ORM session) that
``attr grant`` runs in. It must be the same transaction discipline as ``Database.write``:
everything or nothing, the change counter moved (once) only by a commit, errors as one-line
store errors without the parameters, and the audit chain shared with the session path."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError

from ca.attributes import AttributeSet
from certgate.audit.checkpoints import CheckpointVerifier
from certgate.audit.verification import verify_chain
from certgate.errors import StoreError
from certgate.installation import Installation
from certgate.store import repositories as repo

ATTRIBUTES = AttributeSet(roles=("operator",), groups=("ops",))
_USERS = "SELECT count(*) FROM users WHERE name = ?"
_ADD_USER = "INSERT INTO users (name, email, created_at) VALUES (?, NULL, '2026-01-01 00:00:00')"


def counter(installation: Installation) -> int:
    with installation.database.read() as session:
        return repo.change_counter(session)


def users_named(installation: Installation, name: str) -> int:
    with installation.database.read_sql() as sql:
        return int(sql.rows(_USERS, (name,))[0][0])


def test_a_marked_unit_moves_the_counter_once_when_it_commits(
        installation: Installation) -> None:
    start = counter(installation)
    with installation.database.write_sql() as sql:
        sql.run(_ADD_USER, ("carol",))
        sql.mark_changed()
        sql.mark_changed()
        assert int(sql.rows("SELECT counter FROM store_changes WHERE id = 1")[0][0]) == start
    assert counter(installation) == start + 1
    assert users_named(installation, "carol") == 1
    with installation.database.write_sql() as sql:  # not marked: no move
        sql.run(_ADD_USER, ("dave",))
    assert counter(installation) == start + 1


def test_an_error_inside_the_unit_leaves_nothing(installation: Installation) -> None:
    start = counter(installation)
    with pytest.raises(RuntimeError, match="stop"), installation.database.write_sql() as sql:
        sql.run(_ADD_USER, ("carol",))
        sql.mark_changed()
        raise RuntimeError("stop")
    assert (counter(installation), users_named(installation, "carol")) == (start, 0)


def test_a_driver_error_is_sqlalchemys_without_its_parameters(
        installation: Installation) -> None:
    with installation.database.write_sql() as sql:
        sql.run(_ADD_USER, ("carol",))
    with pytest.raises(IntegrityError) as raised, installation.database.write_sql() as sql:
        sql.run(_ADD_USER, ("secret-name-xyz",))
        sql.run(_ADD_USER, ("carol",))  # names are unique
    assert "secret-name-xyz" not in str(raised.value)
    assert users_named(installation, "secret-name-xyz") == 0


def test_a_failed_commit_is_a_store_error_and_moves_nothing(installation: Installation) -> None:
    start = counter(installation)
    engine = installation.database.engine

    def refuse(_connection: object) -> None:
        raise OperationalError("COMMIT", None, sqlite3.OperationalError("disk I/O error"))

    event.listen(engine, "commit", refuse)
    try:
        with pytest.raises(StoreError, match="disk I/O error"), \
                installation.database.write_sql() as sql:
            sql.run(_ADD_USER, ("carol",))
            sql.mark_changed()
    finally:
        event.remove(engine, "commit", refuse)
    assert (counter(installation), users_named(installation, "carol")) == (start, 0)


def test_a_store_without_the_counter_row_gets_it_on_the_first_change(
        installation: Installation) -> None:
    with installation.database.write() as session:
        session.execute(text("DELETE FROM store_changes"))
    with installation.database.write_sql() as sql:
        sql.mark_changed()
    assert counter(installation) == 1


def test_grants_and_session_path_admin_writes_interleave_in_one_chain(
        installation: Installation) -> None:
    """The grant appends through ``write_sql``, user.disable/enable through an ORM session;
    both guess the head from the same pooled connection's record, so a stale guess from
    either side must fall back to the locked head, never fork the chain."""
    installation.ca.add_user("alice", email=None,
                             public_key=ed25519.Ed25519PrivateKey.generate().public_key(),
                             days=30)
    installation.ca.add_user("bob", email=None,
                             public_key=ed25519.Ed25519PrivateKey.generate().public_key(),
                             days=30)
    start = counter(installation)
    for _ in range(3):
        installation.ca.grant("alice", ATTRIBUTES, valid_for=timedelta(hours=1))
        installation.ca.disable_user("bob")
        installation.ca.grant("alice", ATTRIBUTES, valid_for=timedelta(hours=1))
        installation.ca.enable_user("bob")
    assert counter(installation) == start + 12
    verifier = CheckpointVerifier(
        x509.load_pem_x509_certificate(installation.home.audit_cert.read_bytes()),
        installation.root_certificate)
    report = verify_chain(installation.database, verifier, batch=5)
    assert report.intact, report.problem
    with installation.database.read_sql() as sql:
        stored = int(sql.rows("SELECT count(*) FROM audit_events")[0][0])
        head = int(sql.rows("SELECT seq FROM audit_head WHERE id = 1")[0][0])
    assert report.entries_checked == stored == head
