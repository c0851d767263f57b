"""Fixtures for end-to-end gateway tests (helpers live in ``gateway_testing.py``)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_testing import (
    STANDIN,
    Gateway,
    close_ssh_clients,
    default_policy,
    start_gateway,
    stop_gateway,
)

from certgate.demo.guest import GuestImage, GuestUnavailable, build_test_guest, default_cache_dir


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory for Unix sockets (sun_path is limited to 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="cgg-", dir="/tmp") as path:
        yield Path(path)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway per test module (SQLite); tests use their own users and VMs."""
    gw = start_gateway(tmp_path_factory.mktemp("gateway"))
    gw.add_vm("vm01", f"exec:{sys.executable} {STANDIN}")
    gw.add_vm("vm02", f"exec:{sys.executable} {STANDIN}")
    gw.add_vm("x-office", f"exec:{sys.executable} {STANDIN}")
    gw.add_vm("x-night", f"exec:{sys.executable} {STANDIN}")
    gw.apply_policy(default_policy())
    try:
        yield gw
    finally:
        stop_gateway(gw)


@pytest.fixture
def own_gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway of the test's own, for tests that change policy or kill the gateway."""
    gw = start_gateway(tmp_path)
    gw.add_vm("vm01", f"exec:{sys.executable} {STANDIN}")
    gw.apply_policy(default_policy())
    try:
        yield gw
    finally:
        stop_gateway(gw)


@pytest.fixture(autouse=True)
def _close_ssh_clients() -> Iterator[None]:
    """No ssh client outlives its test, whatever the test left open."""
    yield
    close_ssh_clients()


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    """The QEMU test guest (kernel + busybox initramfs); required in CI, skipped elsewhere."""
    try:
        return build_test_guest(default_cache_dir())
    except GuestUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the QEMU test guest is required in CI: {exc}")
        pytest.skip(f"QEMU test guest unavailable: {exc}")
