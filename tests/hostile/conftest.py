"""The hostile-input corpus: one installation per module and database, driven through the CLI.

Every refusal is checked three ways: the one-line message a person sees, that the store is
exactly as it was (every table but the audit log), and that the audit chain still verifies.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_cli import HostileHome, make_home, ssh_keygen


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def hostile(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileHome]:
    """One installation per module and database, with a user ``holder`` and a VM ``vm01``."""
    os.environ.pop("CERTGATE_DATABASE_URL", None)
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database()
    target = make_home(tmp_path_factory.mktemp(f"hostile-{request.param}"), url)
    key = ssh_keygen(target.work / "holder")
    target.ok("user", "add", "holder", "--pubkey", f"{key}.pub")
    target.ok("vm", "add", "vm01", "--console", "exec:/bin/cat", "--label", "env=prod")
    yield target
