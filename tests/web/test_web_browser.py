"""The review site in a real browser: Debian's Chromium, real TLS with certgate's
certificates, sessions made by the real gateway and stock OpenSSH."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))

from browser import WebProcess, chromium
from gateway_testing import STANDIN, Gateway, RecordingConsole, finish, start_gateway, stop_gateway
from review_samples import HOSTILE_OUTPUT, REVIEW_POLICY

from ca import keys
from certgate.audit.sessions import list_sessions
from certgate.consolelog.settings import ConsoleLogSettings
from certgate.consolelog.writer import ConsoleLogWriter
from certgate.fleet import add_vm, apply_policy

pytestmark = pytest.mark.slow


@dataclass
class Reviewer:
    name: str
    key: Path
    cert: Path


@dataclass
class World:
    gateway: Gateway
    web: WebProcess
    browser: Any
    rita: Reviewer
    nora: Reviewer
    lena: Reviewer
    typed_session: str
    hostile_session: str
    root_pem: Path

    def context(self, person: Reviewer | None = None) -> Any:
        certificates = [] if person is None else [{
            "origin": self.web.base, "certPath": str(person.cert), "keyPath": str(person.key)}]
        return self.browser.new_context(ignore_https_errors=True,
                                        client_certificates=certificates)

    def ssh_review(self, person: Reviewer) -> tuple[str, int | None]:
        return finish(self.gateway.ssh(person.key, "review"))


def _reviewer(gateway: Gateway, name: str, *attributes: str) -> Reviewer:
    """An ECDSA key in PEM: OpenSSH logs in with it and the browser presents it in TLS."""
    key = gateway.workdir / f"{name}_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "256", "-m", "PEM", "-N", "",
                    "-C", name, "-f", str(key)], check=True)
    public_key = keys.load_public_key(key.with_name(f"{key.name}.pub").read_bytes())
    issued = gateway.inst.ca.add_user(name, email=None, public_key=public_key, days=1)
    cert = gateway.workdir / f"{name}.crt"
    from cryptography.hazmat.primitives.serialization import Encoding

    cert.write_bytes(issued.certificate.public_bytes(Encoding.PEM))
    if attributes:
        gateway.grant(name, *attributes)
    return Reviewer(name, key, cert)


CONSOLE_LOG_START = 1_800_000_000.0


def _write_console_log(logs_dir: Path) -> None:
    """vm-logged's console log, by the gateway's own writer: a distinctive line after an
    hour of quiet, then enough output to scroll it off the screen, so only a player that
    really stopped at that moment still shows it."""
    clock = [CONSOLE_LOG_START]
    writer = ConsoleLogWriter(logs_dir / "vm-logged", "vm-logged", ConsoleLogSettings(),
                              clock=lambda: clock[0])
    writer.output(b"vm-logged boot complete\r\n")
    clock[0] += 3600
    writer.output(b"the \x1b[1mpangolin-fandango\x1b[0m moment\r\n")
    clock[0] += 3600
    for number in range(40):
        clock[0] += 0.5
        writer.output(f"filler line {number}\r\n".encode())
    writer.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("review")
    gateway = start_gateway(root)
    sockets = Path(tempfile.mkdtemp(prefix="cgw-", dir="/tmp"))  # sun_path is short
    web = WebProcess(gateway.process.env)
    hostile: RecordingConsole | None = None
    try:
        hostile = RecordingConsole(sockets / "hostile.sock", banner=HOSTILE_OUTPUT.encode())
        add_vm(gateway.inst, "vm01", f"exec:{sys.executable} {STANDIN}", {"env": "lab"})
        add_vm(gateway.inst, "vm-hostile", f"unix:{hostile.path}", {"env": "lab"})
        add_vm(gateway.inst, "vm-logged", "tcp:127.0.0.1:9", {"env": "prod"}, keep="on-demand")
        _write_console_log(gateway.home.console_logs_dir)
        apply_policy(gateway.inst, REVIEW_POLICY, "review-policy.yaml")
        olga = gateway.add_user("olga", "role=operator")
        rita = _reviewer(gateway, "rita", "role=auditor")
        nora = _reviewer(gateway, "nora", "role=operator")
        lena = _reviewer(gateway, "lena", "role=lab-auditor")

        client = gateway.ssh(olga, "vm01")
        client.expect("CHILD")
        client.sendline("echo xylophone-quartet")
        client.expect("GOT echo xylophone-quartet")
        client.sendline("hello from the playback test")
        client.expect("GOT hello from the playback test")
        client.send("\x1d")
        finish(client)
        client = gateway.ssh(olga, "vm-hostile")
        client.expect("RED")
        client.send("\x1d")
        finish(client)
        sessions = {s.vm: s.id for s in list_sessions(gateway.inst.database)}
        web.start()
        with chromium() as browser:
            yield World(gateway, web, browser, rita, nora, lena, sessions["vm01"],
                        sessions["vm-hostile"], gateway.home.root_cert)
    finally:
        web.stop()
        if hostile is not None:
            hostile.close()
        stop_gateway(gateway)
        shutil.rmtree(sockets, ignore_errors=True)


def _sign_in_with_link(world: World, person: Reviewer) -> Any:
    output, status = world.ssh_review(person)
    assert status == 0, output
    token = re.search(r"/signin/([A-Za-z0-9_-]{43})", output)
    assert token is not None, output
    context = world.context()
    page = context.new_page()
    page.goto(f"{world.web.base}/signin/{token.group(1)}")
    page.click("#signin")
    page.wait_for_url("**/sessions")
    return context, page, token.group(1)


def test_server_certificate_is_issued_by_certgates_own_ca(world: World) -> None:
    trust = ssl.create_default_context(cafile=world.root_pem)
    response = httpx.get(f"{world.web.base}/sessions", verify=trust)
    assert response.status_code == 401


def test_reviewer_signs_in_with_a_client_certificate(world: World) -> None:
    context = world.context(world.rita)
    page = context.new_page()
    page.goto(f"{world.web.base}/sessions")
    assert page.locator("header .who").inner_text().startswith("rita")
    assert "client certificate" in page.locator("header .who").inner_text()
    assert page.locator(f'tr[data-session="{world.typed_session}"]').count() == 1
    context.close()


def test_reviewer_signs_in_with_a_one_time_link_from_ssh(world: World) -> None:
    context, page, token = _sign_in_with_link(world, world.rita)
    assert "sign-in link" in page.locator("header .who").inner_text()
    assert page.locator(f'tr[data-session="{world.hostile_session}"]').count() == 1
    other = world.context()
    second = other.new_page()
    second.goto(f"{world.web.base}/signin/{token}")
    second.click("#signin")
    assert "Link not valid" in second.locator("h1").inner_text()
    other.close()
    context.close()


def test_a_user_without_audit_review_is_refused_by_every_method(world: World) -> None:
    context = world.context(world.nora)
    page = context.new_page()
    response = page.goto(f"{world.web.base}/sessions")
    assert response is not None and response.status == 403
    assert "does not hold audit.review" in page.locator("#message").inner_text()
    context.close()
    output, status = world.ssh_review(world.nora)
    assert status == 1 and "no review access" in output and "/signin/" not in output
    denied = world.gateway.audit(event_type="review.link")
    assert any(e.outcome == "deny" and e.user == "nora" for e in denied)


def test_filtering_the_sessions_list(world: World) -> None:
    context = world.context(world.rita)
    page = context.new_page()
    page.goto(f"{world.web.base}/sessions")
    assert page.locator("tbody tr[data-session]").count() == 2
    page.select_option("select[name=vm]", "vm-hostile")
    page.click("#apply")
    page.wait_for_url("**vm=vm-hostile**")
    rows = page.locator("tbody tr[data-session]")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-session") == world.hostile_session
    page.fill("input[name=user]", "nobody-else")
    page.click("#apply")
    page.wait_for_url("**user=nobody-else**")
    assert page.locator("tbody tr[data-session]").count() == 0
    assert "No sessions match" in page.locator("#sessions").inner_text()
    context.close()


def _terminal_text(page: Any) -> str:
    return str(page.locator("#player .ap-term").inner_text())


def test_open_a_session_and_play_its_recording(world: World, tmp_path: Path) -> None:
    context = world.context(world.rita)
    page = context.new_page()
    page.goto(f"{world.web.base}/sessions")
    page.click(f'tr[data-session="{world.typed_session}"] a')
    page.wait_for_url(f"**/sessions/{world.typed_session}")
    assert "allowed by rule operators" in page.locator("#decision").inner_text()
    assert "session.end" in page.locator("#events").inner_text()
    page.select_option("#speed", "8")
    page.wait_for_function(
        "() => document.querySelector('#player .ap-term') && "
        "document.querySelector('#player .ap-term').innerText.includes("
        "'GOT hello from the playback test')", timeout=20_000)
    text = _terminal_text(page)
    assert "GOT echo xylophone-quartet" in text
    shot = tmp_path / "session-playback.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    context.close()


def test_search_for_a_typed_word_lands_on_it_in_playback(world: World) -> None:
    context = world.context(world.rita)
    page = context.new_page()
    page.goto(f"{world.web.base}/search")
    page.fill("#q", "xylophone")
    page.click("#search")
    hit = page.locator("#hits li.recording-hit a.hit").first
    assert "xylophone" in page.locator("#hits li.recording-hit mark").first.inner_text()
    href = hit.get_attribute("href") or ""
    assert href.startswith(f"/sessions/{world.typed_session}?t=")
    hit.click()
    page.wait_for_function(
        "() => document.querySelector('#player .ap-term') && "
        "document.querySelector('#player .ap-term').innerText.includes('xylophone-quartet')",
        timeout=20_000)
    assert "xylophone-quartet" in _terminal_text(page)
    context.close()


def test_hostile_recording_is_shown_as_text_and_runs_no_script(world: World) -> None:
    context = world.context(world.rita)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    page.goto(f"{world.web.base}/sessions/{world.hostile_session}?t=0.5")
    page.wait_for_function(
        "() => document.querySelector('#player .ap-term') && "
        "document.querySelector('#player .ap-term').innerText.includes('<script>')",
        timeout=20_000)
    text = _terminal_text(page)
    assert "<script>document.title='pwned'" in text
    assert "RED" in text and "\x1b" not in text
    assert page.evaluate("() => window.__pwned") is None
    assert page.title() != "pwned" and "evil" not in page.title()
    assert page.locator("#player script, #player img").count() == 0
    page.goto(f"{world.web.base}/search?q=pwned")
    assert "<script>" in page.locator("#hits .snippet").first.inner_text()
    assert page.evaluate("() => window.__pwned") is None
    assert dialogs == []
    # The player itself works under the strict CSP (no inline script or style it needs).
    assert not [m for m in violations if "Content Security Policy" in m], violations
    context.close()


def test_downloads_over_mutual_tls(world: World) -> None:
    tls = ssl.create_default_context(cafile=world.root_pem)
    tls.load_cert_chain(world.rita.cert, world.rita.key)
    with httpx.Client(verify=tls) as client:
        cast = client.get(f"{world.web.base}/sessions/{world.typed_session}/recording.cast",
                          params={"download": "1"})
        assert cast.status_code == 200
        assert "xylophone-quartet" in cast.text
        events = client.get(f"{world.web.base}/sessions/{world.typed_session}/events.json")
        assert events.json()["events"][0]["type"] == "session.start"
    downloads = world.gateway.audit(event_type="review.download")
    assert {e.user for e in downloads} == {"rita"}


def test_search_finds_console_log_text_and_plays_that_moment(world: World,
                                                             tmp_path: Path) -> None:
    context = world.context(world.rita)
    page = context.new_page()
    page.goto(f"{world.web.base}/search")
    page.fill("#q", "pangolin-fandango")
    page.click("#search")
    hits = page.locator("#hits li.console-hit a.hit")
    assert hits.count() == 1
    assert "pangolin-fandango" in page.locator("#hits li.console-hit mark").inner_text()
    assert hits.inner_text() == "vm-logged · console log · 2027-01-15 09:00:00 UTC"
    href = hits.get_attribute("href") or ""
    assert href.startswith("/consoles/vm-logged/log?segment=00000001.cast&t=3600.")
    hits.click()
    page.wait_for_url("**/consoles/vm-logged/log?segment=00000001.cast&t=**")
    page.wait_for_function(
        "() => document.querySelector('#player .ap-term') && "
        "document.querySelector('#player .ap-term').innerText.includes('pangolin-fandango')",
        timeout=20_000)
    text = " ".join(_terminal_text(page).split())  # the bold word is its own element
    assert "vm-logged boot complete the pangolin-fandango moment" in text
    assert "filler line" not in text  # the moment itself, not the end of the segment
    shot = tmp_path / "console-log-playback.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    download = page.locator("#download-cast").get_attribute("href") or ""
    assert download.endswith("&download=1")
    context.close()
    seen = {(e.event_type, e.vm, e.details.get("page") or e.details.get("what"))
            for e in world.gateway.audit() if e.user == "rita" and e.vm == "vm-logged"}
    assert {("review.view", "vm-logged", "console-log"),
            ("review.play", "vm-logged", "console-log")} <= seen


def _wait_for_console_log(world: World, vm: str, word: str) -> None:
    """The keeper writes its buffer out within a second of the output: wait for that."""
    directory = world.gateway.home.console_logs_dir / vm
    deadline = time.monotonic() + 15
    while not any(word in path.read_text(errors="replace")
                  for path in directory.glob("*.cast")):
        assert time.monotonic() < deadline, f"{word!r} never reached {vm}'s console log"
        time.sleep(0.1)


def test_the_keepers_console_log_is_searched_too(world: World) -> None:
    _wait_for_console_log(world, "vm01", "xylophone-quartet")
    context = world.context(world.rita)
    page = context.new_page()
    page.goto(f"{world.web.base}/search?q=xylophone-quartet")
    consoles = page.locator("#hits li.console-hit a.hit")
    assert consoles.count() >= 1
    assert (consoles.first.get_attribute("href") or "").startswith(
        "/consoles/vm01/log?segment=00000001.cast&t=")
    context.close()


def test_no_console_log_hit_without_audit_review_on_that_vm(world: World) -> None:
    context = world.context(world.lena)  # audit.review on env=lab only; vm-logged is prod
    page = context.new_page()
    page.goto(f"{world.web.base}/search?q=pangolin-fandango")
    assert page.locator("#hits li").count() == 0
    assert "0 matches" in page.locator(".count").inner_text()
    response = page.goto(f"{world.web.base}/consoles/vm-logged/log?segment=00000001.cast")
    assert response is not None and response.status == 404
    assert "pangolin" not in page.content()
    context.close()
    refused = world.gateway.audit(event_type="review.refused")
    assert any(e.user == "lena" and e.vm == "vm-logged" for e in refused)
