"""Console logs on the review site, in process: search hits next to recording hits, the
console log page and its download, who may see them, and hostile names in URLs."""

from __future__ import annotations

import re
import sqlite3

import pytest
from review_samples import HOSTILE_OUTPUT, recorded_session
from web_site import Site

from certgate.audit.log import AuditLog
from certgate.consolelog.settings import ConsoleLogSettings
from certgate.consolelog.writer import ConsoleLogWriter
from certgate.web import console_logs

STARTED = 1_800_000_000.0


def write_console_log(site: Site, vm: str, outputs: list[tuple[float, str]],
                      *, close: bool = True) -> ConsoleLogWriter:
    """A console log written by the gateway's own writer; ``outputs`` are (seconds, text)."""
    clock = [STARTED]
    writer = ConsoleLogWriter(site.inst.home.console_logs_dir / vm, vm, ConsoleLogSettings(),
                              clock=lambda: clock[0])
    for at, text in outputs:
        clock[0] = STARTED + at
        writer.output(text.encode())
    if close:
        writer.close()
    else:
        writer.tick()
    return writer


def events_after(site: Site, seq: int) -> list[tuple[str, str | None, str | None,
                                                      str | None, dict[str, object]]]:
    return [(e.event_type, e.outcome, e.user, e.vm, e.details)
            for e in AuditLog(site.inst.database).entries(after_seq=seq)]


def head(site: Site) -> int:
    return list(AuditLog(site.inst.database).entries())[-1].seq


def test_search_shows_console_log_hits_next_to_recording_hits(site: Site) -> None:
    session = recorded_session(site.inst, site.operator, "lab01", ["quokka typed\r\n"])
    write_console_log(site, "lab01", [(0.0, "boot\r\n"), (3600.0, "quokka on the console\r\n")])
    site.as_person(site.auditor)
    page = site.client.get("/search", params={"q": "quokka"}).text
    links = re.findall(r'<a href="([^"]+)" class="hit">([^<]+)</a>', page)
    targets = {href.replace("&amp;", "&") for href, _ in links}
    assert any(t.startswith(f"/sessions/{session.id}?t=") for t in targets)
    assert "/consoles/lab01/log?segment=00000001.cast&t=3600.000" in targets
    console_label = next(label for href, label in links if href.startswith("/consoles/"))
    assert console_label == "lab01 · console log · 2027-01-15 09:00:00 UTC"  # the moment


def test_console_log_page_plays_and_downloads_the_segment_and_is_audited(site: Site) -> None:
    write_console_log(site, "lab01", [(5.0, "hello console\r\n")])
    site.as_person(site.auditor)
    before = head(site)
    page = site.client.get("/consoles/lab01/log",
                           params={"segment": "00000001.cast", "t": "5"})
    assert page.status_code == 200
    assert 'data-src="/consoles/lab01/log.cast?segment=00000001.cast"' in page.text
    assert 'data-start-at="5.0"' in page.text
    newest = site.client.get("/consoles/lab01/log")  # no segment: the newest one
    assert newest.status_code == 200 and "00000001.cast" in newest.text
    played = site.client.get("/consoles/lab01/log.cast", params={"segment": "00000001.cast"})
    assert played.status_code == 200
    assert played.headers["content-type"].startswith("application/x-asciicast")
    assert "hello console" in played.text and "attachment" not in played.headers.get(
        "content-disposition", "")
    download = site.client.get("/consoles/lab01/log.cast",
                               params={"segment": "00000001.cast", "download": "1"})
    assert 'filename="console-lab01-00000001.cast"' in download.headers["content-disposition"]
    assert download.content == (site.inst.home.console_logs_dir / "lab01" /
                                "00000001.cast").read_bytes()
    seen = [(kind, user, vm, details.get("page") or details.get("what"),
             details.get("segment")) for kind, _, user, vm, details in events_after(site, before)]
    assert seen == [
        ("review.view", "audrey", "lab01", "console-log", "00000001.cast"),
        ("review.view", "audrey", "lab01", "console-log", "00000001.cast"),
        ("review.play", "audrey", "lab01", "console-log", "00000001.cast"),
        ("review.download", "audrey", "lab01", "console-log", "00000001.cast"),
    ]


def test_console_logs_outside_the_review_scope_are_never_shown(site: Site) -> None:
    write_console_log(site, "lab01", [(1.0, "narwhal in the lab\r\n")])
    write_console_log(site, "prod01", [(1.0, "narwhal in production\r\n")])
    site.as_person(site.lab_auditor)  # audit.review on env=lab only
    page = site.client.get("/search", params={"q": "narwhal"}).text
    assert "/consoles/lab01/log" in page and "prod01" not in page
    before = head(site)
    for url in ("/consoles/prod01/log", "/consoles/prod01/log.cast"):
        response = site.client.get(url, params={"segment": "00000001.cast"})
        assert response.status_code == 404
        assert "narwhal" not in response.text
    refused = events_after(site, before)
    assert [(kind, outcome, user, vm) for kind, outcome, user, vm, _ in refused] == [
        ("review.refused", "deny", "lars", "prod01")] * 2
    assert all("audit.review" in str(details["reason"]) for *_, details in refused)
    site.as_person(site.auditor)
    assert site.client.get("/consoles/prod01/log").status_code == 200


def test_a_vm_removed_from_the_fleet_keeps_its_log_reviewable_by_name(site: Site) -> None:
    write_console_log(site, "gone01", [(1.0, "ocelot\r\n")])
    site.as_person(site.auditor)  # names: ["*"]
    assert site.client.get("/consoles/gone01/log").status_code == 200
    site.as_person(site.lab_auditor)  # by labels: a VM without labels is not in the scope
    assert site.client.get("/consoles/gone01/log").status_code == 404


def test_hostile_names_in_console_log_urls_get_a_404_and_an_audit_event(site: Site) -> None:
    write_console_log(site, "lab01", [(1.0, "inside\r\n")])
    outside = site.inst.home.console_logs_dir.parent / "00000001.cast"
    outside.write_text('{"version": 2, "width": 80, "height": 24}\n[0, "o", "SECRET"]\n')
    (site.inst.home.console_logs_dir / "lab01" / "00000002.cast").symlink_to(outside)
    site.as_person(site.auditor)
    before = head(site)
    attempts = [
        ("/consoles/lab01/log.cast", {"segment": "../../00000001.cast"}),
        ("/consoles/lab01/log.cast", {"segment": "00000002.cast"}),  # a link out
        ("/consoles/lab01/log.cast", {"segment": "00000001.cast\n"}),
        ("/consoles/lab01/log.cast", {"segment": "1.cast"}),
        ("/consoles/..%2F..%2Fgateway/log", {}),
        ("/consoles/LAB01/log", {}),
        ("/consoles/lab01/log", {"segment": "00000009.cast"}),
    ]
    for url, params in attempts:
        response = site.client.get(url, params=params)
        assert response.status_code == 404, (url, params)
        assert "SECRET" not in response.text
        refused = events_after(site, before)
        if "%2F" in url:  # not a route at all: the router answers before any page code
            assert refused == []
            continue
        assert [(kind, outcome) for kind, outcome, *_ in refused] == [
            ("review.refused", "deny")], (url, params)
        before = head(site)


def test_hostile_console_log_text_in_search_results_is_escaped(site: Site) -> None:
    write_console_log(site, "lab01", [(1.0, HOSTILE_OUTPUT)])
    site.as_person(site.auditor)
    page = site.client.get("/search", params={"q": "pwned"}).text
    assert "&lt;script&gt;document.title" in page
    assert "<script>document" not in page and "\x1b" not in page


def test_a_search_sees_console_output_up_to_its_last_complete_line(site: Site) -> None:
    writer = write_console_log(site, "lab01", [(1.0, "first-line done\r\n"),
                                               (2.0, "half-typed-wor")], close=False)
    site.as_person(site.auditor)
    assert "/consoles/lab01/log" in site.client.get("/search", params={"q": "first-line"}).text
    assert "0 matches" in site.client.get("/search", params={"q": "half-typed-word"}).text
    writer.output(b"d\r\n")
    writer.tick()
    assert "/consoles/lab01/log" in site.client.get(
        "/search", params={"q": "half-typed-word"}).text


def test_a_segment_too_large_for_the_player_is_offered_for_download_only(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    write_console_log(site, "lab01", [(1.0, "x" * 500 + "\r\n")])
    monkeypatch.setattr(console_logs, "MAX_PLAYBACK_BYTES", 256)
    site.as_person(site.auditor)
    page = site.client.get("/consoles/lab01/log").text
    assert "too large for the player" in page and 'id="player"' not in page
    params = {"segment": "00000001.cast"}
    assert site.client.get("/consoles/lab01/log.cast", params=params).status_code == 413
    download = site.client.get("/consoles/lab01/log.cast", params={**params, "download": "1"})
    assert download.status_code == 200 and "x" * 500 in download.text


def test_web_index_indexes_console_logs_and_rebuilds_an_old_index(site: Site) -> None:
    from click.testing import CliRunner

    from certgate.cli.main import register_all
    from certgate.home import PASSPHRASE_ENV
    from certgate.web.server import search_index_path

    write_console_log(site, "lab01", [(1.0, "capybara\r\n")])

    def web_index() -> str:
        result = CliRunner().invoke(
            register_all(), ["--home", str(site.inst.home.root), "web", "index",
                             "--workers", "1"],
            env={PASSPHRASE_ENV: "correct horse battery staple"}, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    output = web_index()
    assert "1 new console log chunks" in output and "1 console log segments" in output
    with sqlite3.connect(search_index_path(site.inst)) as connection:
        connection.execute("PRAGMA user_version = 1")
    output = web_index()
    assert "search index schema version 1 found: rebuilding" in output
    assert "1 new console log chunks" in output
    site.as_person(site.auditor)
    assert "/consoles/lab01/log" in site.client.get("/search", params={"q": "capybara"}).text


def test_a_failed_catch_up_still_searches_what_is_indexed_and_says_so(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    write_console_log(site, "lab01", [(1.0, "wallaby\r\n")])
    site.as_person(site.auditor)
    assert "/consoles/lab01/log" in site.client.get("/search", params={"q": "wallaby"}).text

    def locked(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database is locked")  # another writer held it 30 s

    monkeypatch.setattr("certgate.web.app.catch_up_console_logs", locked)
    response = site.client.get("/search", params={"q": "wallaby"})
    assert response.status_code == 200
    assert 'id="behind"' in response.text and "/consoles/lab01/log" in response.text
