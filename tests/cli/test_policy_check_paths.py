"""``certgate policy check`` opens the store with its driver alone (no SQLAlchemy), on SQLite
and PostgreSQL, and must say exactly what it said through SQLAlchemy: the same lines, exit
code and ``policy.check`` (or ``cli.refused``) audit event, for allowed and refused requests,
revoked and expired ACs, a disabled user, ``from_group`` sources and unknown names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path

import pytest
from click.testing import CliRunner

from ca import keys
from ca.attributes import AttributeSet, ClearanceLevel
from certgate.audit.chain import ChainEntry
from certgate.cli.main import register_all
from certgate.firewall import operations as firewall
from certgate.fleet import add_vm, apply_policy
from certgate.installation import Installation
from certgate.secgroups.model import Direction, Protocol, SecurityRule
from certgate.store import direct

POLICY = """\
version: 1
rules:
  - name: ops-web
    effect: allow
    vms: {labels: {env: prod}}
    require: {roles: [ops], clearance: secret}
    privileges: [console.view, console.interact]
  - name: admins-from-office
    effect: allow
    vms: {names: ["*"]}
    require: {roles: [admin]}
    privileges: [console.interact, console.break]
    when: {from_group: office}
  - name: weekday-viewers
    effect: allow
    vms: {names: ["db*"]}
    require: {groups: [viewers]}
    privileges: [console.view]
    when: {time: {days: [mon-fri], hours: "08:00-18:00"}}
  - name: no-lab-from-outside
    effect: deny
    vms: {names: ["lab*"]}
    when: {sources: ["192.0.2.0/24"]}
"""

CHECKS = [
    ("alice", "web1", "10.1.2.3"),
    ("alice", "web1", None),
    ("alice", "db1", "10.1.2.3"),
    ("alice", "lab1", "192.0.2.9"),
    ("bob", "web1", "10.1.2.3"),  # disabled
    ("carol", "web1", "10.9.0.7"),  # admin, from the office group
    ("carol", "web1", "203.0.113.5"),  # admin, from elsewhere
    ("carol", "db1", None),
    ("dave", "db1", "10.1.2.3"),  # viewers, time window
    ("erin", "web1", "10.1.2.3"),  # no AC at all
    ("nobody", "web1", "10.1.2.3"),  # unknown user
    ("alice", "no-such-vm", "10.1.2.3"),  # unknown VM
]


def new_key() -> keys.PublicKey:
    return keys.generate_private_key("ed25519").public_key()


@pytest.fixture
def populated(installation: Installation) -> Installation:
    ca = installation.ca
    for name in ("alice", "bob", "carol", "dave", "erin"):
        ca.add_user(name, email=None, public_key=new_key(), days=2)
    ca.grant("alice", AttributeSet(roles=("ops",), clearance=ClearanceLevel.SECRET),
             valid_for=timedelta(hours=6))
    revoked = ca.grant("alice", AttributeSet(roles=("admin",)), valid_for=timedelta(hours=6))
    ca.revoke(revoked.serial, reason="superseded")
    ca.grant("alice", AttributeSet(groups=("viewers",)), valid_for=timedelta(seconds=1))
    ca.grant("bob", AttributeSet(roles=("ops",), clearance=ClearanceLevel.SECRET),
             valid_for=timedelta(hours=6))
    ca.disable_user("bob")
    ca.grant("carol", AttributeSet(roles=("admin",)), valid_for=timedelta(hours=6),
             targets=("web1",))
    ca.grant("dave", AttributeSet(groups=("viewers",)), valid_for=timedelta(hours=6))
    add_vm(installation, "web1", "tcp:127.0.0.1:1", {"env": "prod"})
    add_vm(installation, "db1", "tcp:127.0.0.1:1", {"env": "prod"})
    add_vm(installation, "lab1", "tcp:127.0.0.1:1", {})
    firewall.create_group(installation, "office", description=None, restrict_egress=False)
    firewall.add_rule(installation, "office", SecurityRule(
        Direction.INGRESS, Protocol.TCP, cidr=ip_network("10.9.0.0/16")))
    apply_policy(installation, POLICY, "policy.yaml")
    return installation


def run_check(home: Path, user: str, vm: str, source: str | None, at: datetime,
              *extra: str) -> tuple[int, str]:
    args = ["policy", "check", user, vm, "--at", at.isoformat(), *extra]
    if source:
        args += ["--from", source]
    result = CliRunner().invoke(register_all(), args, env={"CERTGATE_HOME": str(home)},
                                catch_exceptions=False)
    return result.exit_code, result.output


def new_entries(installation: Installation, after: int) -> list[ChainEntry]:
    return list(installation.audit.entries(after_seq=after))


def comparable(entry: ChainEntry) -> tuple[object, ...]:
    return (entry.event_type, entry.actor, entry.outcome, entry.user, entry.vm, entry.serial,
            entry.source, entry.session_id, entry.details)


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_policy_check_says_and_records_what_it_said_through_sqlalchemy(
    populated: Installation, monkeypatch: pytest.MonkeyPatch, as_json: bool,
) -> None:
    home = populated.home.root
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    extra = ("--json",) if as_json else ()
    last = new_entries(populated, 0)[-1].seq
    direct_runs = []
    for user, vm, source in CHECKS:
        code, output = run_check(home, user, vm, source, at, *extra)
        entries = new_entries(populated, last)
        assert len(entries) == 1, (user, vm, entries)
        last = entries[-1].seq
        direct_runs.append((code, output, comparable(entries[0])))

    monkeypatch.setattr(direct, "direct_dialect", lambda url: None)
    for (user, vm, source), expected in zip(CHECKS, direct_runs, strict=True):
        code, output = run_check(home, user, vm, source, at, *extra)
        entries = new_entries(populated, last)
        last = entries[-1].seq
        assert (code, output, comparable(entries[0])) == expected, (user, vm, source)

    outcomes = {(u, v, s): (code, event[2]) for (u, v, s), (code, _, event)
                in zip(CHECKS, direct_runs, strict=True)}
    # The cases mean what they say (so the comparison above covers both answers).
    assert outcomes[("alice", "web1", "10.1.2.3")] == (0, "allow")
    assert outcomes[("bob", "web1", "10.1.2.3")] == (1, "deny")
    assert outcomes[("carol", "web1", "10.9.0.7")] == (0, "allow")
    assert outcomes[("carol", "web1", "203.0.113.5")] == (1, "deny")
    assert outcomes[("alice", "lab1", "192.0.2.9")] == (1, "deny")
    assert outcomes[("nobody", "web1", "10.1.2.3")] == (1, "error")
    assert outcomes[("alice", "no-such-vm", "10.1.2.3")] == (1, "error")
    refused = [event for _, _, event in direct_runs if event[0] == "cli.refused"]
    assert len(refused) == 2
    allowed = direct_runs[0]
    if as_json:
        assert json.loads(allowed[1])["matched_rules"] == ["ops-web"]
    else:
        assert "allowed by rule ops-web" in allowed[1]
    assert any("revoked" in reason for reason in allowed[2][8]["rejected_attribute_certificates"])

    # Appends through the driver and through SQLAlchemy extend one unbroken chain.
    verified = CliRunner().invoke(register_all(), ["audit", "verify"],
                                  env={"CERTGATE_HOME": str(home)}, catch_exceptions=False)
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith("audit chain intact: ")


def modules_after_policy_check(home: Path, *args: str, env: dict[str, str] | None = None,
                               ) -> tuple[int, set[str], str]:
    """Run ``certgate policy check`` in a fresh interpreter; its exit code, the modules it
    had loaded at exit, and its output."""
    script = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print('\\nMODULES ' + json.dumps(sorted(sys.modules))))\n"
        f"sys.argv = ['certgate', 'policy', 'check', *{list(args)!r}]\n"
        "from certgate.cli.main import main\n"
        "main()\n"
    )
    full_env = {**os.environ, "CERTGATE_HOME": str(home), **(env or {})}
    if not env or "CERTGATE_DATABASE_URL" not in env:
        full_env.pop("CERTGATE_DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=full_env, timeout=120)
    head, _, modules = result.stdout.rpartition("\nMODULES ")
    return result.returncode, set(json.loads(modules)), head + result.stderr


def test_policy_check_imports_no_sqlalchemy_orm_or_yaml_parser(populated: Installation) -> None:
    home = populated.home.root
    # The first run parses the policy and fills the cache; every later one reads the cache.
    for expected_yaml in (True, False):
        code, loaded, output = modules_after_policy_check(home, "alice", "web1", "--from",
                                                          "10.1.2.3")
        assert code == 0, output
        assert "allowed by rule ops-web" in output
        assert ("yaml" in loaded) is expected_yaml
        assert not {m for m in loaded if m.split(".")[0] in ("sqlalchemy", "alembic",
                                                             "asyncssh")}
        assert {"certgate.store.database", "certgate.store.repositories",
                "certgate.store.schema", "certgate.audit.log"}.isdisjoint(loaded)
        driver = "sqlite3" if populated.database.dialect == "sqlite" else "psycopg"
        assert {"certgate.store.direct", driver} <= loaded


def test_a_password_kept_apart_reaches_the_driver_without_sqlalchemy(
    populated: Installation,
) -> None:
    # The test cluster trusts local connections, so the password is not checked there: what
    # this shows is that combining it with the URL no longer needs SQLAlchemy.
    code, loaded, output = modules_after_policy_check(
        populated.home.root, "alice", "web1", "--from", "10.1.2.3",
        env={"CERTGATE_DATABASE_PASSWORD": "s3cret:/@"})
    assert code == 0, output
    assert "allowed by rule ops-web" in output
    assert "sqlalchemy" not in loaded


def test_a_refused_policy_check_is_recorded_without_sqlalchemy(populated: Installation) -> None:
    home = populated.home.root
    before = new_entries(populated, 0)[-1].seq
    code, loaded, output = modules_after_policy_check(home, "nobody", "web1")
    assert code == 1
    assert output.strip().splitlines()[-1] == "certgate: error: no user named nobody"
    assert "sqlalchemy" not in loaded
    (entry,) = new_entries(populated, before)
    assert (entry.event_type, entry.outcome, entry.details["error"]) == (
        "cli.refused", "error", "no user named nobody")


def test_a_database_url_the_driver_cannot_open_is_opened_through_sqlalchemy(
    populated: Installation, monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = populated.database.url
    if not url.startswith("sqlite:///"):
        pytest.skip("the PostgreSQL URLs of these tests are all ones psycopg opens directly")
    explicit_driver = url.replace("sqlite://", "sqlite+pysqlite://", 1)
    assert direct.direct_dialect(url) == "sqlite"
    assert direct.direct_dialect(explicit_driver) is None
    monkeypatch.setenv("CERTGATE_DATABASE_URL", explicit_driver)
    at = datetime.now(UTC) + timedelta(minutes=5)
    code, output = run_check(populated.home.root, "alice", "web1", "10.1.2.3", at)
    assert code == 0, output
    assert "allowed by rule ops-web" in output
    inst = Installation(populated.home, direct_store=True)
    try:
        assert inst.store is inst.database  # SQLAlchemy's Database, same statements
    finally:
        inst.close()
