"""Hostile SSH behaviour against a real ``certgate serve`` (SQLite and PostgreSQL): what an
unauthenticated stranger can make the gateway do is bounded, audited in aggregate, and never
costs real users their login.

Strangers connect from their own loopback addresses (127.0.0.x, one per test) so the per-source
limits of one test never touch another, and real users connect from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pexpect
import pytest
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))

from gateway_testing import (
    STANDIN,
    Gateway,
    User,
    close_ssh_clients,
    default_policy,
    details,
    finish,
    start_gateway,
    stop_gateway,
)

from certgate.store.schema import Base

pytestmark = pytest.mark.slow

LIMITS = """
[limits]
max_auth_tries = 4
max_startups_per_source = 5
failure_burst = 8
window = 60
backoff = 60
login_grace = 2
idle_without_session = 2
"""


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def gateway(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database()
    gw = start_gateway(tmp_path_factory.mktemp(f"hostile-ssh-{request.param}"), url, LIMITS)
    gw.add_vm("vm01", f"exec:{sys.executable} {STANDIN}")
    gw.add_vm("broken", "unix:/nonexistent/secret-console-path.sock")
    gw.apply_policy(default_policy().replace('names: ["vm*"]', 'names: ["vm*", broken]'))
    try:
        yield gw
    finally:
        stop_gateway(gw)


@pytest.fixture(scope="module")
def real_user(gateway: Gateway) -> User:
    return gateway.add_user("realuser", "role=operator")


def store_rows(gateway: Gateway) -> dict[str, list[str]]:
    """Users, certificates, VMs and policies: what no stranger may change."""
    with gateway.inst.database.read() as session:
        return {name: sorted(repr(tuple(row)) for row in session.execute(select(table)).all())
                for name, table in Base.metadata.tables.items()
                if name in ("users", "certificates", "vms", "policy_versions")}


@pytest.fixture(autouse=True)
def _store_unchanged_and_chain_intact(gateway: Gateway, real_user: User) -> Iterator[None]:
    """Around every test: the store is as it was, and ``certgate audit verify`` passes."""
    before = store_rows(gateway)
    yield
    close_ssh_clients()
    assert store_rows(gateway) == before
    code, output = gateway.cli("audit", "verify")
    assert code == 0, output


def stranger_keys(count: int) -> list[asyncssh.SSHKey]:
    return [asyncssh.generate_private_key("ssh-ed25519") for _ in range(count)]


async def attempt(gateway: Gateway, username: str, client_keys: list[asyncssh.SSHKey],
                  source: str, command: str | None = "whoami",
                  term_size: tuple[int, int] | None = None) -> str:
    """One connection; returns the command's output, or the error that ended it."""
    try:
        async with asyncssh.connect(
                "127.0.0.1", gateway.port, username=username, client_keys=client_keys,
                known_hosts=None, local_addr=(source, 0), agent_path=None,
                login_timeout=20) as conn:
            if term_size is not None:
                process = await conn.create_process(
                    term_type="xterm", term_size=term_size, encoding=None)
                output = await asyncio.wait_for(process.stdout.read(200), 15)
                process.close()
                return output.decode(errors="replace")
            result = await asyncio.wait_for(conn.run(command), 15)
            return str(result.stdout)
    except (asyncssh.Error, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def dropped(outcome: str) -> bool:
    """The server closed the connection before any SSH exchange."""
    return outcome.startswith(("ConnectionLost", "ConnectionResetError", "BrokenPipeError"))


def audit_rows(gateway: Gateway, after: int, source: str) -> list[object]:
    return [e for e in gateway.audit(after=after) if e.source == source]


def test_one_connection_may_try_only_max_auth_tries_keys(gateway: Gateway) -> None:
    head = gateway.audit_head()
    outcome = asyncio.run(attempt(gateway, "vm01", stranger_keys(12), "127.0.0.11"))
    assert "PermissionDenied" in outcome or "too many authentication failures" in outcome
    rows = audit_rows(gateway, head, "127.0.0.11")
    refusals = [e for e in rows if e.event_type == "auth.login"]
    reasons = [details(e)["reason"] for e in refusals]
    assert len(refusals) <= 5 and "too many authentication attempts" in reasons, reasons


def test_a_source_that_keeps_failing_is_blocked_and_audited_in_aggregate(
        gateway: Gateway, real_user: User) -> None:
    head = gateway.audit_head()
    source = "127.0.0.12"

    async def flood() -> list[str]:
        return [await attempt(gateway, "vm01", stranger_keys(3), source) for _ in range(8)]

    outcomes = asyncio.run(flood())
    throttled = gateway.wait_for_audit("auth.throttled", after=head,
                                       match=lambda e: e.source == source)
    assert details(throttled)["blocked_seconds"] > 0
    # the connection that crossed the limit hears why; later ones are dropped at connect,
    # before any key exchange (as sshd drops connections beyond MaxStartups)
    assert any("too many failed logins" in o for o in outcomes), outcomes
    assert all(dropped(o) for o in outcomes[-3:]), outcomes
    rows = audit_rows(gateway, head, source)
    assert len(rows) <= 8 + 1 + 5, [e.event_type for e in rows]
    # the blocked source is refused at connect, with nothing written per attempt
    before = len(audit_rows(gateway, head, source))
    later = asyncio.run(attempt(gateway, "vm01", stranger_keys(1), source))
    assert dropped(later), later
    assert len(audit_rows(gateway, head, source)) == before
    # and a real user elsewhere is not affected
    key = asyncssh.read_private_key(str(real_user.key))
    assert "realuser" in asyncio.run(attempt(gateway, "vm01", [key], "127.0.0.1"))


def test_unauthenticated_connections_per_source_are_capped(gateway: Gateway) -> None:
    source = "127.0.0.13"
    held = []
    try:
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", gateway.port),
                                            source_address=(source, 0))
            assert sock.recv(64).startswith(b"SSH-2.0-")
            held.append(sock)
        outcome = asyncio.run(attempt(gateway, "vm01", stranger_keys(1), source))
        assert dropped(outcome), outcome
        other = asyncio.run(attempt(gateway, "vm01", stranger_keys(1), "127.0.0.16"))
        assert other.startswith("PermissionDenied"), "another source is not capped"
    finally:
        for sock in held:
            sock.close()


def test_a_silent_connection_is_closed_after_the_login_grace_time(gateway: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port),
                                  source_address=("127.0.0.14", 0)) as sock:
        sock.settimeout(15)
        assert sock.recv(64).startswith(b"SSH-2.0-")
        started = time.monotonic()
        while sock.recv(4096):
            pass  # the server's key exchange offer, then the close
        assert time.monotonic() - started < 12


def test_an_authenticated_connection_without_a_session_is_closed(
        gateway: Gateway, real_user: User) -> None:
    head = gateway.audit_head()
    _output, status = finish(gateway.ssh(real_user, "vm01", "-N"), timeout=20)
    assert status == 255
    idle = gateway.wait_for_audit("auth.idle", after=head, match=lambda e: e.user == "realuser")
    assert "no session opened" in details(idle)["reason"]


def test_an_unknown_subsystem_is_refused(gateway: Gateway, real_user: User) -> None:
    head = gateway.audit_head()
    child = pexpect.spawn("ssh", [*gateway.ssh_args(real_user, "vm01", "-s"), "foo"],
                          timeout=20)
    output, status = finish(child)
    assert status == 1 and "subsystem 'foo' is not offered" in output, output
    refused = gateway.wait_for_audit("session.refused", after=head)
    assert details(refused)["subsystem"] == "foo"
    assert not gateway.audit(event_type="session.start", after=head)


def test_a_failed_console_says_only_console_unavailable(gateway: Gateway,
                                                        real_user: User) -> None:
    head = gateway.audit_head()
    output, status = finish(gateway.ssh(real_user, "broken"))
    assert status == 1 and "console unavailable" in output, output
    assert "secret-console-path" not in output
    ended = gateway.wait_for_audit("session.end", after=head)
    assert "secret-console-path" in details(ended)["reason"]


def test_a_huge_window_size_on_an_exec_console_is_not_an_internal_error(
        gateway: Gateway, real_user: User) -> None:
    key = asyncssh.read_private_key(str(real_user.key))
    output = asyncio.run(attempt(gateway, "vm01", [key], "127.0.0.1", command=None,
                                 term_size=(70000, 70000)))
    assert "connected to vm01" in output, output
    assert "internal error" not in output


def test_a_flood_of_strangers_leaves_real_logins_working(gateway: Gateway,
                                                         real_user: User) -> None:
    """50 connections x 20 keys from one source while a real user logs in: real logins stay
    within 2x their unloaded time, the audit log grows by no more than the documented
    per-source bound, and the throttling is audited."""
    from certgate.limits import LoginLimits

    limits = LoginLimits(max_auth_tries=4, max_startups_per_source=5, failure_burst=8)
    key = asyncssh.read_private_key(str(real_user.key))
    source = "127.0.0.15"
    strangers = stranger_keys(20)

    async def real_login() -> float:
        started = time.perf_counter()
        output = await attempt(gateway, "vm01", [key], "127.0.0.1")
        assert "realuser" in output, output
        return time.perf_counter() - started

    async def scenario() -> tuple[list[float], list[float], list[str]]:
        unloaded = [await real_login() for _ in range(7)]
        flood = [asyncio.create_task(attempt(gateway, f"f1-{'v' * 70}", strangers, source))
                 for _ in range(50)]
        loaded = []
        while not all(task.done() for task in flood) or len(loaded) < 7:
            loaded.append(await real_login())
        return unloaded, loaded, [task.result() for task in flood]

    head = gateway.audit_head()
    started = time.monotonic()
    unloaded, loaded, outcomes = asyncio.run(scenario())
    elapsed = time.monotonic() - started
    assert all("realuser" not in o for o in outcomes)
    print(f"flood: unloaded median {statistics.median(unloaded):.3f} s, loaded median "
          f"{statistics.median(loaded):.3f} s over {len(loaded)} logins; "
          f"{len(audit_rows(gateway, head, source))} hostile audit rows in {elapsed:.1f} s")
    assert statistics.median(loaded) <= 2 * statistics.median(unloaded) + 0.05, (
        unloaded, loaded)
    hostile_rows = audit_rows(gateway, head, source)
    assert len(hostile_rows) <= limits.audit_rows_per_source_bound(elapsed), len(hostile_rows)
    assert any(e.event_type == "auth.throttled" for e in hostile_rows)
