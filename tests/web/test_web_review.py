"""The review site's rules, in process: who may look, what they see, what is audited."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from review_samples import HOSTILE_OUTPUT, recorded_session
from web_site import Site

from certgate.audit.log import AuditLog
from certgate.store.schema import AuditEventRow
from certgate.web import signin
from certgate.web.app import COOKIE


def audit_types(site: Site, after: int = 0) -> list[tuple[str, str | None, str | None]]:
    return [(e.event_type, e.outcome, e.user)
            for e in AuditLog(site.inst.database).entries(after_seq=after)]


def head(site: Site) -> int:
    entries = list(AuditLog(site.inst.database).entries())
    return entries[-1].seq


def test_without_credentials_the_site_asks_to_sign_in(site: Site) -> None:
    response = site.client.get("/sessions")
    assert response.status_code == 401
    assert "ssh review@" in response.text


def test_every_response_carries_a_strict_content_security_policy(site: Site) -> None:
    response = site.client.get("/sessions")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self' 'wasm-unsafe-eval';" in csp
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert site.client.get("/static/app.css").headers["content-security-policy"] == csp


def test_a_certificate_without_audit_review_is_refused_and_audited(site: Site) -> None:
    before = head(site)
    site.as_person(site.operator)
    response = site.client.get("/sessions")
    assert response.status_code == 403
    assert "does not hold audit.review" in response.text
    assert ("review.refused", "deny", None) in audit_types(site, before)


def test_label_limited_reviewer_sees_only_sessions_of_those_vms(site: Site) -> None:
    lab = recorded_session(site.inst, site.operator, "lab01", ["lab work\r\n"])
    prod = recorded_session(site.inst, site.operator, "prod01", ["prod work\r\n"])
    site.as_person(site.lab_auditor)
    page = site.client.get("/sessions").text
    assert lab.id in page and prod.id not in page
    assert site.client.get(f"/sessions/{prod.id}").status_code == 404
    assert site.client.get(f"/sessions/{prod.id}/recording.cast").status_code == 404
    assert site.client.get(f"/sessions/{lab.id}").status_code == 200
    site.as_person(site.auditor)
    page = site.client.get("/sessions").text
    assert lab.id in page and prod.id in page


def test_sessions_filter_by_vm_user_outcome_time_and_end_reason(site: Site) -> None:
    old = recorded_session(site.inst, site.operator, "lab01", ["a\r\n"],
                           started=datetime.now(UTC) - timedelta(days=3))
    revoked = recorded_session(site.inst, site.operator, "prod01", ["b\r\n"],
                               reason="access withdrawn: certificate revoked")
    live = recorded_session(site.inst, site.auditor, "lab01", ["c\r\n"], live=True)
    site.as_person(site.auditor)

    def listed(**params: str) -> set[str]:
        text = site.client.get("/sessions", params=params).text
        return set(re.findall(r'data-session="([0-9a-f-]{36})"', text))

    assert listed() == {old.id, revoked.id, live.id}
    assert listed(vm="prod01") == {revoked.id}
    assert listed(user="audrey") == {live.id}
    assert listed(outcome="live") == {live.id}
    assert listed(since="1d") == {revoked.id, live.id}
    assert listed(until="2d") == {old.id}
    assert listed(reason="REVOKED") == {revoked.id}
    assert "● live" in site.client.get("/sessions", params={"outcome": "live"}).text
    bad = site.client.get("/sessions", params={"since": "yesterday-ish"})
    assert bad.status_code == 200 and "invalid time" in bad.text


def test_pages_are_keyset_pages_newest_first(site: Site) -> None:
    start = datetime.now(UTC) - timedelta(hours=5)
    made = [recorded_session(site.inst, site.operator, "lab01", ["x\r\n"],
                             started=start + timedelta(minutes=n)) for n in range(53)]
    site.as_person(site.auditor)
    first = site.client.get("/sessions").text
    ids = re.findall(r'data-session="([0-9a-f-]{36})"', first)
    assert ids == [s.id for s in reversed(made)][:50]
    older = re.search(r'href="(/sessions\?before=[^"]+)" id="older"', first)
    assert older is not None
    second = site.client.get(older.group(1).replace("&amp;", "&")).text
    assert re.findall(r'data-session="([0-9a-f-]{36})"', second) == [
        s.id for s in reversed(made)][50:]


def test_session_page_shows_decision_events_and_escapes_console_text(site: Site) -> None:
    console = recorded_session(site.inst, site.operator, "lab01", [HOSTILE_OUTPUT],
                               reason="<b>bold</b> reason")
    site.as_person(site.auditor)
    page = site.client.get(f"/sessions/{console.id}").text
    assert "allowed by rule operators" in page
    assert "session.start" in page and "session.end" in page
    assert "&lt;b&gt;bold&lt;/b&gt; reason" in page and "<b>bold</b>" not in page
    assert f'data-src="/sessions/{console.id}/recording.cast"' in page


def test_downloads_are_the_recording_and_the_events_and_are_audited(site: Site) -> None:
    console = recorded_session(site.inst, site.operator, "lab01", ["hello\r\n"])
    site.as_person(site.auditor)
    before = head(site)
    cast = site.client.get(f"/sessions/{console.id}/recording.cast", params={"download": "1"})
    assert cast.status_code == 200
    assert "attachment" in cast.headers["content-disposition"]
    assert cast.headers["content-type"].startswith("application/x-asciicast")
    assert cast.content == site.inst.home.recordings_dir.joinpath(
        f"{console.id}.cast").read_bytes()
    events = site.client.get(f"/sessions/{console.id}/events.json").json()
    assert [e["type"] for e in events["events"]] == ["session.start", "session.end"]
    assert events["decision"]["outcome"] == "allow"
    played = site.client.get(f"/sessions/{console.id}/recording.cast")
    assert played.status_code == 200
    kinds = [(t, o) for t, o, _ in audit_types(site, before)]
    assert kinds == [("review.download", "ok"), ("review.download", "ok"),
                     ("review.play", "ok")]
    with site.inst.database.read() as session:
        rows = session.query(AuditEventRow).filter(AuditEventRow.seq > before).all()
        assert {r.session_id for r in rows} == {console.id}
        assert {r.user_name for r in rows} == {"audrey"}
        assert [json.loads(r.details)["what"] for r in rows] == ["recording", "events",
                                                                 "recording"]


def test_every_page_view_and_search_is_an_audit_event(site: Site) -> None:
    console = recorded_session(site.inst, site.operator, "lab01", ["hi\r\n"])
    site.as_person(site.auditor)
    before = head(site)
    site.client.get("/sessions", params={"vm": "lab01"})
    site.client.get(f"/sessions/{console.id}")
    site.client.get("/search", params={"q": "hi"})
    site.client.get("/audit")
    assert [t for t, _, _ in audit_types(site, before)] == [
        "review.view", "review.view", "review.search", "review.view"]


def test_search_finds_a_word_and_links_to_its_moment(site: Site) -> None:
    console = recorded_session(site.inst, site.operator, "lab01", [
        "boot\r\n", "login: root\r\n", "# cat /etc/zanzibar.conf\r\n", "done\r\n"])
    site.as_person(site.auditor)
    page = site.client.get("/search", params={"q": "zanzibar"}).text
    assert "<mark>zanzibar</mark>" in page
    link = re.search(rf'href="/sessions/{console.id}\?t=([0-9.]+)"', page)
    assert link is not None
    # The writer's clock ticks once per event: the word was printed at t=2 (third event).
    assert float(link.group(1)) >= 2.0


def test_search_is_limited_to_the_reviewers_vms_and_takes_operators_literally(
        site: Site) -> None:
    recorded_session(site.inst, site.operator, "prod01", ["secret prodword here\r\n"])
    recorded_session(site.inst, site.operator, "lab01", ["NEAR OR labword\r\n"])
    site.as_person(site.lab_auditor)
    assert "0 matches" in site.client.get("/search", params={"q": "prodword"}).text
    site.as_person(site.auditor)
    assert "1 match." in site.client.get("/search", params={"q": "prodword"}).text
    site.as_person(site.lab_auditor)
    page = site.client.get("/search", params={"q": 'labword OR "nothing'}).text
    assert "0 matches" in page
    page = site.client.get("/search", params={"q": "NEAR OR"}).text
    assert "<mark>NEAR</mark> <mark>OR</mark>" in page


def test_hostile_console_text_in_search_results_is_escaped(site: Site) -> None:
    recorded_session(site.inst, site.operator, "lab01", [HOSTILE_OUTPUT])
    site.as_person(site.auditor)
    page = site.client.get("/search", params={"q": "script"}).text
    assert "&lt;<mark>script</mark>&gt;" in page
    assert "<script>document" not in page and "\x1b" not in page


def test_sign_in_link_works_once_and_opens_a_session_bound_to_the_identity(
        site: Site) -> None:
    token = signin.issue_link(site.inst.database, user="audrey",
                              identity_serial=site.auditor.identity_serial)
    form = site.client.get(f"/signin/{token}")
    assert form.status_code == 200 and 'method="post"' in form.text
    response = site.client.post(f"/signin/{token}", follow_redirects=False)
    assert response.status_code == 303
    assert COOKIE in response.cookies
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
    page = site.client.get("/sessions")
    assert page.status_code == 200 and "audrey" in page.text
    site.client.cookies.clear()
    again = site.client.post(f"/signin/{token}", follow_redirects=False)
    assert again.status_code == 403 and "already used or expired" in again.text


def test_an_expired_link_is_refused(site: Site) -> None:
    token, _ = signin.issue(site.inst.database, signin.LINK, user="audrey",
                            identity_serial=site.auditor.identity_serial,
                            lifetime=timedelta(minutes=5),
                            now=datetime.now(UTC) - timedelta(minutes=6))
    assert site.client.post(f"/signin/{token}").status_code == 403


def test_revoking_the_identity_ends_a_signed_in_browser_session(site: Site) -> None:
    token = signin.issue_link(site.inst.database, user="audrey",
                              identity_serial=site.auditor.identity_serial)
    site.client.post(f"/signin/{token}")
    assert site.client.get("/sessions").status_code == 200
    site.inst.ca.revoke(site.auditor.identity_serial, reason="keyCompromise")
    response = site.client.get("/sessions")
    assert response.status_code == 403 and "revoked" in response.text


def test_link_of_a_user_without_audit_review_opens_nothing(site: Site) -> None:
    token = signin.issue_link(site.inst.database, user="otto",
                              identity_serial=site.operator.identity_serial)
    response = site.client.post(f"/signin/{token}", follow_redirects=False)
    assert response.status_code == 403
    assert COOKIE not in response.cookies


def test_audit_page_reports_an_intact_chain_and_names_the_first_failure(site: Site) -> None:
    site.as_person(site.auditor)
    assert "Intact:" in site.client.get("/audit").text
    with site.inst.database.write() as session:
        row = session.get(AuditEventRow, 3)
        assert row is not None
        row.details = row.details.replace("}", ', "x": 1}', 1)
    page = site.client.get("/audit", params={"recheck": "1"}).text
    assert "Broken at entry 3" in page
