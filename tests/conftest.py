"""Shared fixtures: databases on SQLite and a throwaway PostgreSQL, and fresh installations."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pg import PostgresCluster, PostgresUnavailable, start_cluster

from certgate.home import Home
from certgate.installation import Installation
from certgate.provisioning import InitOptions, create_installation

TEST_PASSPHRASE = b"correct horse battery staple"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    if os.environ.get("CERTGATE_SKIP_POSTGRES"):
        pytest.skip("PostgreSQL tests disabled by CERTGATE_SKIP_POSTGRES")
    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One fresh, empty database per test, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database()


@pytest.fixture
def home(tmp_path: Path, database_url: str) -> Home:
    """A freshly initialised installation with an encrypted-key CA, on each backend."""
    home = Home(tmp_path / "home")
    options = InitOptions(
        gateway_name="gw.test",
        database_url=None if database_url.startswith("sqlite") else database_url,
    )
    create_installation(home, options, passphrase=TEST_PASSPHRASE, actor="test")
    return home


@pytest.fixture
def installation(home: Home) -> Iterator[Installation]:
    inst = Installation(home, actor="test", passphrase=lambda: TEST_PASSPHRASE)
    yield inst
    inst.close()
