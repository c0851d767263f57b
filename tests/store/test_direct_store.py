"""The store opened with its driver alone (``certgate.store.direct``) reads and writes what
SQLAlchemy reads and writes: the same values, the same stored text, the same snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import ArgumentError

from ca import keys
from ca.attributes import AttributeSet
from certgate.access.snapshot import read_snapshot
from certgate.fleet import add_vm, apply_policy
from certgate.home import _may_hold_password
from certgate.installation import Installation
from certgate.store import access_reads
from certgate.store.direct import DirectDatabase, direct_dialect
from certgate.store.schema import UTCDateTime
from certgate.store.sql import time_param, time_value

AWARE = st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(9998, 12, 30),
                     timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                timezone(timedelta(hours=-8))]))


def sqlalchemy_stored(value: datetime, dialect: Dialect) -> object:
    """What SQLAlchemy hands the driver for a ``UTCDateTime`` column on ``dialect``."""
    processor = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    return processor(value) if processor else value


def sqlalchemy_loaded(stored: object, dialect: Dialect) -> object:
    processor = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    return processor(stored) if processor else stored


@given(AWARE)
def test_times_are_stored_as_sqlalchemy_stores_them(value: datetime) -> None:
    assert time_param(value, "sqlite") == sqlalchemy_stored(value, sqlite.dialect())
    assert time_param(value, "postgresql") == sqlalchemy_stored(value, postgresql.dialect())
    stored = time_param(value, "sqlite")
    assert time_value(stored) == sqlalchemy_loaded(stored, sqlite.dialect()) == value


def test_a_naive_time_is_refused_as_sqlalchemy_refuses_it() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        time_param(datetime(2026, 1, 1), "sqlite")


URL_TEXT = st.text(alphabet="ab:/@?=%+.0123456789_", max_size=40)


@given(st.one_of(URL_TEXT, st.builds("{}://{}".format, st.sampled_from(
    ["postgresql", "postgresql+psycopg", "sqlite"]), URL_TEXT)))
def test_a_url_judged_passwordless_without_sqlalchemy_has_no_password(url: str) -> None:
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        password = None
    if not _may_hold_password(url):
        assert password is None


@pytest.mark.parametrize("url, dialect", [
    ("sqlite:////var/lib/certgate/certgate.db", "sqlite"),
    ("postgresql+psycopg://certgate@db:5432/certgate", "postgresql"),
    ("sqlite+pysqlite:////tmp/x.db", None),
    ("postgresql://certgate@db/certgate", None),  # SQLAlchemy's default driver: psycopg2
    ("sqlite:///x.db?mode=ro", None),
])
def test_only_urls_the_driver_opens_as_sqlalchemy_would_are_opened_directly(
        url: str, dialect: str | None) -> None:
    assert direct_dialect(url) == dialect


def test_the_password_is_hidden_as_sqlalchemy_hides_it() -> None:
    url = "postgresql+psycopg://u:pa%3Ass%2Fw%40rd@127.0.0.1:5432/db"
    assert DirectDatabase(url).safe_url == make_url(url).render_as_string(hide_password=True)


def test_a_snapshot_read_directly_equals_the_one_read_through_sqlalchemy(
    installation: Installation,
) -> None:
    ca = installation.ca
    identity = ca.add_user("alice", email=None,
                           public_key=keys.generate_private_key("ed25519").public_key(), days=1)
    ca.grant("alice", AttributeSet(roles=("ops",), groups=("web",)),
             valid_for=timedelta(hours=1), targets=("vm1",))
    revoked = ca.grant("alice", AttributeSet(roles=("admin",)), valid_for=timedelta(hours=1))
    ca.revoke(revoked.serial, reason="superseded")
    add_vm(installation, "vm1", "tcp:127.0.0.1:1", {"env": "prod", "tier": "1"})
    apply_policy(installation, "version: 1\nrules: []\n", "p.yaml")
    direct = DirectDatabase(installation.database.url)
    at = datetime.now(UTC)
    snapshots = []
    try:
        for database in (installation.database, direct):
            with database.snapshot_sql() as sql:
                snapshots.append((
                    read_snapshot(sql, identity_serial=identity.serial, ssh_cert_serial=None,
                                  vm_names=["vm1", "nonesuch"],
                                  acs_unexpired_at=at - timedelta(days=1),
                                  cached_policy_version=0),
                    access_reads.current_identity(sql, "alice", at),
                    access_reads.list_vms(sql),
                ))
    finally:
        direct.dispose()
    assert snapshots[0] == snapshots[1]
    snapshot = snapshots[0][0]
    assert [ac.status for ac in snapshot.attribute_certificates] == ["valid", "revoked"]
    assert snapshot.attribute_certificates[0].targets == ["vm1"]
    assert snapshot.vms[0].labels == {"env": "prod", "tier": "1"}
    assert snapshot.policy is not None and snapshot.policy.source_name == "p.yaml"
    assert all(t.tzinfo is UTC for t in (snapshot.vms[0].created_at,
                                         snapshot.attribute_certificates[1].not_after))


def test_a_password_kept_apart_is_given_to_the_driver_beside_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg

    seen: list[tuple[tuple[object, ...], dict[str, object]]] = []

    class Stop(Exception):
        pass

    def connect(*args: object, **kwargs: object) -> None:
        seen.append((args, kwargs))
        raise Stop

    monkeypatch.setattr(psycopg, "connect", connect)
    url = "postgresql+psycopg://certgate@db.example:5433/certgate?sslmode=require"
    with pytest.raises(Stop), DirectDatabase(url, password="pa:ss/w@rd").read_sql():
        pass
    assert seen == [(("postgresql://certgate@db.example:5433/certgate?sslmode=require",),
                     {"password": "pa:ss/w@rd"})]
