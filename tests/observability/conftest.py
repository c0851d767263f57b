"""Fixtures for operability tests: no ssh client outlives its test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))

from gateway_testing import close_ssh_clients


@pytest.fixture(autouse=True)
def _close_ssh_clients() -> Iterator[None]:
    yield
    close_ssh_clients()
