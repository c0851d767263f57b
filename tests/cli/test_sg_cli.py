"""``certgate sg`` and ``certgate vm nic``: stored groups, bad input and the audit trail.

These never load a ruleset (that needs a namespace; see tests/secgroups), so they run as any
user, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import uuid

from cli_runner import Certgate


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_groups_rules_and_interfaces_are_stored_and_audited(certgate: Certgate) -> None:
    web, admins, vm = name("web"), name("adm"), name("vm")
    seq = certgate.last_seq()
    certgate.ok("vm", "add", vm, "--console", "tcp:127.0.0.1:5900")
    certgate.ok("sg", "create", admins)
    certgate.ok("sg", "create", web, "--description", "web servers")
    added = certgate.ok("sg", "rule", "add", web, "-p", "tcp", "--port", "443",
                        "--from", "0.0.0.0/0").stdout
    assert f"to {web}: ingress tcp port 443 from 0.0.0.0/0" in added
    certgate.ok("sg", "rule", "add", web, "-p", "tcp", "--port", "22", "--from-group", admins)
    tap = f"t{uuid.uuid4().hex[:8]}"
    certgate.ok("vm", "nic", "add", vm, tap, "--addr", "10.77.0.0/30",
                "--addr", "2001:db8:77::5", "--sg", web, "--sg", admins)
    shown = json.loads(certgate.ok("sg", "show", web, "--json").stdout)
    assert shown["description"] == "web servers"
    assert [(r["protocol"], r["ports"], r["cidr"], r["group"]) for r in shown["rules"]] == [
        ("tcp", "443", "0.0.0.0/0", None), ("tcp", "22", None, admins)]
    assert shown["interfaces"] == [tap]
    nics = json.loads(certgate.ok("vm", "nic", "list", "--json").stdout)
    assert {"vm": vm, "interface": tap, "addresses": ["10.77.0.0/30", "2001:db8:77::5/128"],
            "groups": [web, admins]} in nics
    events = certgate.audit_since(seq)
    kinds = [e.event_type for e in events]
    assert kinds == ["vm.add", "sg.create", "sg.create", "sg.rule.add", "sg.rule.add",
                     "vm.nic.add"]
    hashes = [e.details["ruleset_sha256"] for e in events[1:]]
    assert all(len(h) == 64 for h in hashes) and len(set(hashes)) == len(hashes)
    rule_id = str(shown["rules"][0]["id"])
    certgate.ok("sg", "rule", "rm", web, rule_id)
    assert len(json.loads(certgate.ok("sg", "show", web, "--json").stdout)["rules"]) == 1
    assert "still bound to interface(s) " + tap in certgate.refused("sg", "rm", web)
    certgate.ok("vm", "nic", "rm", vm, tap)
    assert f"still referred to by the rules of group(s) {web}" in certgate.refused(
        "sg", "rm", admins)
    certgate.ok("sg", "rm", web)
    certgate.ok("sg", "rm", admins)
    assert web not in certgate.ok("sg", "list").stdout


def test_bad_input_is_refused_in_one_line_and_nothing_is_stored(certgate: Certgate) -> None:
    web, vm, other = name("web"), name("vm"), name("vm")
    certgate.ok("sg", "create", web)
    certgate.ok("vm", "add", vm, "--console", "tcp:127.0.0.1:5900")
    certgate.ok("vm", "add", other, "--console", "tcp:127.0.0.1:5900")
    tap, tap2 = f"t{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"
    certgate.ok("vm", "nic", "add", vm, tap, "--addr", "10.78.0.1", "--sg", web)
    before = certgate.ok("sg", "show", web, "--json").stdout
    seq = certgate.last_seq()
    refusals = {
        ("sg", "rule", "add", web, "--port", "65536", "--from", "10.0.0.0/8"):
            "--port: port 65536 out of range (1-65535)",
        ("sg", "rule", "add", web, "--port", "22", "--from", "10.0.0.1/8"):
            "--from: '10.0.0.1/8' has host bits set (did you mean 10.0.0.0/8?)",
        ("sg", "rule", "add", web, "--from", "10.0.0.300"):
            "--from: invalid CIDR '10.0.0.300' (expected an address or network like "
            "'10.0.0.0/8')",
        ("sg", "rule", "add", web, "--from-group", "nosuch"):
            "no security group named nosuch",
        ("sg", "create", "bad name"):
            "NAME: invalid security group name 'bad name' (1-23 letters, digits, '.', '_', "
            "'-', starting with a letter or digit)",
        ("vm", "nic", "add", "nosuch-vm", "tapz", "--sg", web): "no VM named nosuch-vm",
        ("vm", "nic", "add", vm, "tap;x"):
            "IFNAME: invalid interface name 'tap;x' (1-15 letters, digits, '.', '_', '-', "
            "as the host names its tap/vif/veth devices)",
        ("vm", "nic", "add", vm, tap2, "--sg", "nosuch"): "no security group named nosuch",
        ("vm", "nic", "add", other, tap2, "--addr", "10.78.0.0/30"):
            f"address 10.78.0.1/32 of interface {tap} (VM {vm}) overlaps 10.78.0.0/30 "
            f"of interface {tap2} (VM {other})",
        ("vm", "nic", "rm", vm, "tapnosuch"): f"VM {vm} has no interface tapnosuch",
        ("sg", "rule", "rm", web, "999999"): f"security group {web} has no rule 999999",
    }
    for args, message in refusals.items():
        outcome = certgate.run(*args)
        assert outcome.code != 0 and "Traceback" not in outcome.stderr, args
        assert outcome.error_lines == [f"certgate: error: {message}"], args
    assert certgate.ok("sg", "show", web, "--json").stdout == before
    assert tap2 not in certgate.ok("vm", "nic", "list").stdout
    refused = [e for e in certgate.audit_since(seq) if e.event_type == "cli.refused"]
    assert len(refused) == len(refusals)


def test_a_redundant_rule_is_stored_with_a_warning(certgate: Certgate) -> None:
    web = name("web")
    certgate.ok("sg", "create", web)
    certgate.ok("sg", "rule", "add", web, "--port", "20-30", "--from", "10.0.0.0/8")
    outcome = certgate.ok("sg", "rule", "add", web, "--port", "22", "--from", "10.1.0.0/16")
    assert outcome.stderr.startswith(f"certgate: warning: group {web}: rule ")
    assert "is shadowed by rule" in outcome.stderr


def test_apply_file_errors_name_line_and_column_and_store_nothing(
        certgate: Certgate) -> None:
    groups = certgate.workdir / "groups.yaml"
    groups.write_text("version: 1\ngroups:\n  - name: web\n    ingress:\n"
                      "      - protocol: tcp\n        ports: 80\n        from: 10.0.0.0/33\n")
    before = certgate.ok("sg", "list", "--json").stdout
    message = certgate.refused("sg", "apply-file", str(groups), "--dry-run")
    assert message == ("groups.yaml:7:15: groups[0].ingress[0].from: invalid CIDR "
                       "'10.0.0.0/33' (expected an address or network like '10.0.0.0/8')")
    groups.write_bytes(b"version: 1\ngroups: [\xff]\n")
    assert "not UTF-8" in certgate.refused("sg", "apply-file", str(groups))
    assert certgate.ok("sg", "list", "--json").stdout == before
