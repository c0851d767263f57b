"""A real gateway with metrics and JSON logs on: what operators see matches what happened."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))

from gateway_testing import (
    GATEWAY_ID,
    STANDIN,
    Gateway,
    default_policy,
    finish,
    start_gateway,
    stop_gateway,
)
from service_process import ServiceProcess

pytestmark = pytest.mark.slow


@dataclass
class Observed:
    gateway: Gateway
    process: ServiceProcess
    metrics_url: str

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            text = response.read().decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.process.lines():
            if line.startswith("{"):
                found.append(json.loads(line))  # every JSON-looking line must parse
        return found


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    gateway = start_gateway(tmp_path_factory.mktemp("observed"))
    gateway.process.stop()  # restarted below with metrics and JSON logs
    process = ServiceProcess(
        ["serve", "--gateway-id", GATEWAY_ID, "--log-format", "json",
         "--metrics-listen", "127.0.0.1:0"], gateway.process.env,
        r'"address": "(http://127\.0\.0\.1:\d+/metrics)"')
    try:
        gateway.add_vm("vm01", f"exec:{sys.executable} {STANDIN}")
        gateway.apply_policy(default_policy())
        match = process.start()
        yield Observed(gateway, process, match.group(1))
    finally:
        process.stop()
        stop_gateway(gateway)


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_and_log_lines_follow_one_real_session(observed: Observed) -> None:
    gateway = observed.gateway
    olga = gateway.add_user("olga", "role=operator")
    vera = gateway.add_user("vera", "role=nothing-useful")
    before = observed.scrape()
    assert value(before, "certgate_live_sessions") == 0

    client = gateway.ssh(olga, "vm01")
    client.expect("CHILD")
    during = observed.scrape()
    assert value(during, "certgate_live_sessions") == 1
    assert value(during, "certgate_consoles", state="connected") == 1
    client.sendline("observed line")
    client.expect("GOT observed line")
    client.send("\x1d")
    finish(client)
    output, status = finish(gateway.ssh(vera, "vm01"))
    assert status == 1 and "denied" in output

    after = observed.scrape()
    assert value(after, "certgate_live_sessions") == 0
    assert value(after, "certgate_logins_total", outcome="allow") - value(
        before, "certgate_logins_total", outcome="allow") == 2
    assert value(after, "certgate_decisions_total", outcome="allow") - value(
        before, "certgate_decisions_total", outcome="allow") == 1
    assert value(after, "certgate_decisions_total", outcome="deny") - value(
        before, "certgate_decisions_total", outcome="deny") == 1
    assert value(after, "certgate_decision_seconds_count") == (
        value(after, "certgate_decisions_total", outcome="allow")
        + value(after, "certgate_decisions_total", outcome="deny"))
    assert value(after, "certgate_sessions_started_total") == 1
    assert value(after, "certgate_sessions_ended_total") == 1
    assert value(after, "certgate_audit_queue_depth") == 0
    assert value(after, "certgate_console_events_total", event="connect") == 1
    assert value(after, "certgate_console_events_total", event="disconnect") == 1
    assert value(after, "certgate_consoles", state="idle") == 1
    assert value(after, "certgate_database_errors_total") == 0

    lines = [e for e in observed.events() if e.get("user") == "olga"]
    kinds = [e["event"] for e in lines]
    assert kinds == ["login", "access.decide", "session.start", "session.end"], kinds
    login, decision, start, end = lines
    assert login["outcome"] == "allow" and login["target"] == "vm01"
    assert login["credential"] == "key" and login["source"] == "127.0.0.1"
    assert decision["outcome"] == "allow" and decision["mode"] == "interactive"
    assert decision["decision_ms"] > 0
    assert start["session"] == end["session"] and start["vm"] == end["vm"] == "vm01"
    assert end["reason"] == "user detached" and end["bytes_out"] > 0
    assert all(e["level"] in ("info", "warning") for e in lines)
    consoles = [e for e in observed.events() if e.get("event", "").startswith("console.")]
    assert [(e["event"], e["vm"]) for e in consoles] == [
        ("console.connect", "vm01"), ("console.disconnect", "vm01")]
    assert consoles[0]["console"].startswith("exec:")
    vera_lines = [e for e in observed.events() if e.get("user") == "vera"]
    assert [e["event"] for e in vera_lines] == ["login", "access.decide"]
    assert vera_lines[1]["outcome"] == "deny" and vera_lines[1]["reasons"]


def test_a_refused_login_is_a_log_line_and_a_metric(observed: Observed) -> None:
    gateway = observed.gateway
    before = observed.scrape()
    stranger = gateway.workdir / "stranger_key"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    _, status = finish(gateway.ssh(stranger, "vm01"))
    assert status == 255
    after = observed.scrape()
    assert value(after, "certgate_logins_total", outcome="deny") - value(
        before, "certgate_logins_total", outcome="deny") >= 1
    refused = [e for e in observed.events() if e.get("event") == "login"
               and e.get("outcome") == "deny"]
    assert refused and "no identity certificate" in refused[-1]["reason"]
    assert refused[-1]["level"] == "warning"


def test_revocation_of_a_live_session_is_logged(observed: Observed) -> None:
    gateway = observed.gateway
    rosa = gateway.add_user("rosa", "role=operator")
    client = gateway.ssh(rosa, "vm01")
    client.expect("CHILD")
    code, text = gateway.cli("revoke", rosa.identity_serial)
    assert code == 0, text
    finish(client)
    revoked = [e for e in observed.events() if e.get("event") == "session.revoked"]
    assert revoked and revoked[-1]["user"] == "rosa" and "revoked" in revoked[-1]["reason"]
    assert value(observed.scrape(), "certgate_sessions_revoked_total") == 1
