"""The CLI tests' installations: made by ``certgate init``, one per module and database.

Each test module shares one initialised home per database (module scope): a ``certgate``
process costs a noticeable fraction of a second, and tests that only add users, grant and
revoke do not interfere when each uses its own user names.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cli_runner import Certgate, database_url_for, initialised


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def certgate(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certgate]:
    """One installation made by ``certgate init``, shared by the tests of a module."""
    tmp = tmp_path_factory.mktemp(f"cli-{request.param}")
    yield initialised(tmp, database_url_for(request.param, request))
