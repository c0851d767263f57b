"""The review site's pages: a thin Starlette shell over catalog, search and reviewers.

Endpoints are synchronous (Starlette runs them in its thread pool) because the store is.
Every request is authenticated afresh and every page view, search, playback and download is
an audit event naming the reviewer. Console text only ever reaches a page through Jinja2's
autoescaping or as JSON/asciicast data with ``nosniff``, under a CSP that allows scripts from
this origin only.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from certgate.access import AccessRefused
from certgate.audit.checkpoints import CheckpointVerifier
from certgate.audit.query import entry_dict, parse_time
from certgate.audit.sessions import ConsoleSession
from certgate.audit.verification import VerificationReport, verify_chain
from certgate.errors import CertgateError, NotFoundError
from certgate.installation import Installation
from certgate.policy import REVIEW
from certgate.web import catalog, console_logs, signin
from certgate.web.assets import player_dir
from certgate.web.console_log_index import SegmentListings, catch_up_console_logs
from certgate.web.rendering import environment
from certgate.web.reviewers import LINK, MTLS, Reviewer, ReviewerAccess
from certgate.web.search_index import SearchIndex, SearchQueryError, contained

COOKIE = "certgate_review"
CLIENT_CERT_KEY = "certgate_client_cert_der"
VERIFY_CACHE_SECONDS = 60.0

CSP = ("default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
       "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=31536000",
}

__all__ = ["CLIENT_CERT_KEY", "ReviewSite", "create_app"]

log = logging.getLogger(__name__)


class Refused(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


@dataclass
class _VerifyCache:
    report: VerificationReport | None = None
    checked_at: datetime | None = None
    monotonic: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class ReviewSite:
    """What the pages need: the installation, reviewer decisions and the search index."""

    def __init__(self, installation: Installation, index: SearchIndex, *,
                 actor: str) -> None:
        self.installation = installation
        self.database = installation.database
        self.reviewers = ReviewerAccess(installation)
        self.index = index
        self.console_listings = SegmentListings()
        self.actor = actor
        self.templates = environment()
        self._verify = _VerifyCache()

    # -- audit --------------------------------------------------------------------------------

    def record(self, event_type: str, reviewer: Reviewer | None, *, outcome: str = "ok",
               source: str | None, session: ConsoleSession | None = None,
               vm: str | None = None, **details: Any) -> None:
        from certgate.audit.chain import AuditEvent

        self.installation.audit.record(AuditEvent(
            event_type, self.actor, outcome=outcome,
            user=reviewer.user if reviewer else details.pop("user", None),
            vm=session.vm if session else vm,
            serial=reviewer.identity_serial if reviewer else None, source=source,
            session_id=session.id if session else None,
            details={"method": reviewer.method if reviewer else None, **details}))

    # -- who is asking --------------------------------------------------------------------------

    def reviewer(self, request: Request) -> Reviewer:
        source = request.client.host if request.client else None
        der = request.scope.get("state", {}).get(CLIENT_CERT_KEY)
        try:
            if der:
                return self.reviewers.by_client_certificate(der, source)
            token = request.cookies.get(COOKIE)
            holder = signin.session_holder(self.database, token) if token else None
            if holder is not None:
                return self.reviewers.by_token(holder, source)
        except (AccessRefused, CertgateError) as exc:
            self.record("review.refused", None, outcome="deny", source=source,
                        path=request.url.path, reason=str(exc),
                        credential=MTLS if der else LINK)
            raise Refused(403, "Not allowed", str(exc)) from None
        raise Refused(401, "Sign in", "Present a client certificate issued by this "
                      "installation's CA, or run `ssh review@<gateway>` for a sign-in link.")

    def verification(self, *, recheck: bool = False) -> tuple[VerificationReport, datetime]:
        """The chain's verification report, reused for a minute unless ``recheck``."""
        cache = self._verify
        with cache.lock:
            fresh = not recheck and time.monotonic() - cache.monotonic < VERIFY_CACHE_SECONDS
            if cache.report is None or cache.checked_at is None or not fresh:
                home = self.installation.home
                verifier = CheckpointVerifier(
                    x509.load_pem_x509_certificate(home.audit_cert.read_bytes()),
                    self.installation.root_certificate)
                cache.report = verify_chain(self.database, verifier)
                cache.checked_at = datetime.now(UTC)
                cache.monotonic = time.monotonic()
            return cache.report, cache.checked_at

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status)


def _source(request: Request) -> str | None:
    return request.client.host if request.client else None


def _reviewed(handler: Callable[[ReviewSite, Request, Reviewer], Response]
              ) -> Callable[[Request], Response]:
    def endpoint(request: Request) -> Response:
        site: ReviewSite = request.app.state.site
        try:
            reviewer = site.reviewer(request)
            return handler(site, request, reviewer)
        except Refused as refused:
            return site.render("message.html", refused.status, title=refused.title,
                               message=refused.message, reviewer=None)
        except NotFoundError:
            return site.render("message.html", 404, title="Not found",
                               message="There is no such session, or you may not see it.",
                               reviewer=None)
    return endpoint


def _viewable(site: ReviewSite, reviewer: Reviewer, session_id: str) -> ConsoleSession:
    console = catalog.get_session(site.database, session_id)
    if not reviewer.may_see(console.vm):
        raise NotFoundError("no such session")  # the same answer as for a missing one
    return console


# -- pages --------------------------------------------------------------------------------------


def _sessions(site: ReviewSite, request: Request, reviewer: Reviewer) -> Response:
    params = request.query_params
    values = {name: (params.get(name) or "").strip() for name in
              ("user", "vm", "since", "until", "outcome", "reason", "before")}
    error = None
    page = catalog.SessionPage([], None)
    try:
        filters = catalog.SessionFilter(
            user=values["user"] or None, vm=values["vm"] or None,
            since=parse_time(values["since"], option="since") if values["since"] else None,
            until=parse_time(values["until"], option="until") if values["until"] else None,
            status=values["outcome"] or None, end_reason=values["reason"] or None)
        cursor = catalog.Cursor.decode(values["before"]) if values["before"] else None
        page = catalog.sessions_page(site.database, filters, reviewer.vms, cursor)
    except CertgateError as exc:
        error = str(exc)
    site.record("review.view", reviewer, source=_source(request), page="sessions",
                filters={k: v for k, v in values.items() if v})
    next_link = None
    if page.next_cursor is not None:
        query = {k: v for k, v in values.items() if v and k != "before"}
        next_link = "/sessions?" + urlencode({**query, "before": page.next_cursor.encode()})
    return site.render("sessions.html", reviewer=reviewer, page=page, values=values,
                       error=error, next_link=next_link, statuses=catalog.STATUSES,
                       vms=reviewer.vms)


def _session(site: ReviewSite, request: Request, reviewer: Reviewer) -> Response:
    console = _viewable(site, reviewer, request.path_params["session_id"])
    record = catalog.session_record(site.database, console)
    start_at = _start_at(request.query_params.get("t"))
    cast = contained(site.installation.home.recordings_dir, console.recording_path)
    site.record("review.view", reviewer, source=_source(request), session=console,
                page="session", start_at=start_at)
    decision = entry_dict(record.decision) if record.decision else None
    return site.render("session.html", reviewer=reviewer, console=console,
                       decision=decision, events=[entry_dict(e) for e in record.events],
                       has_recording=cast is not None, start_at=start_at)


def _start_at(text: str | None) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value < 10**7 else None


def _recording(site: ReviewSite, request: Request, reviewer: Reviewer) -> Response:
    console = _viewable(site, reviewer, request.path_params["session_id"])
    cast = contained(site.installation.home.recordings_dir, console.recording_path)
    download = request.query_params.get("download") == "1"
    if cast is None:
        raise NotFoundError("no recording")
    site.record("review.download" if download else "review.play", reviewer,
                source=_source(request), session=console, what="recording")
    headers = {"Content-Disposition": f'attachment; filename="session-{console.id}.cast"'
               } if download else {}
    return FileResponse(cast, media_type="application/x-asciicast", headers=headers)


def _events_json(site: ReviewSite, request: Request, reviewer: Reviewer) -> Response:
    console = _viewable(site, reviewer, request.path_params["session_id"])
    record = catalog.session_record(site.database, console)
    site.record("review.download", reviewer, source=_source(request), session=console,
                what="events")
    body = {"session": console.as_dict(),
            "decision": entry_dict(record.decision) if record.decision else None,
            "events": [entry_dict(e) for e in record.events]}
    return Response(json.dumps(body, indent=2, default=str), media_type="application/json",
                    headers={"Content-Disposition":
                             f'attachment; filename="session-{console.id}-events.json"'})


def _search(site: ReviewSite, request: Request, reviewer: Reviewer) -> Response:
    text = (request.query_params.get("q") or "").strip()
    hits, error, behind = [], None, False
    if text:
        try:
            site.index.catch_up(site.database, site.installation.home.recordings_dir)
            catch_up_console_logs(site.index, site.installation.home.console_logs_dir,
                                  listings=site.console_listings)
        except (sqlite3.Error, OSError) as exc:  # say so, and search what is indexed
            log.warning("search index catch-up failed: %s", exc)
            behind = True
        try:
            hits = site.index.search(text, reviewer.vms)
        except SearchQueryError as exc:
            error = str(exc)
        site.record("review.search", reviewer, source=_source(request), query=text[:200],
                    hits=len(hits))
    return site.render("search.html", reviewer=reviewer, text=text, hits=hits, error=error,
                       behind=behind)


def _console_segment(site: ReviewSite, request: Request, reviewer: Reviewer,
                     what: str) -> console_logs.Segment:
    """The segment the URL names, if this reviewer may see the VM's console log; otherwise
    a 404 (the same answer for a missing log and one out of scope) and ``review.refused``."""
    vm = request.path_params["vm"]
    name = request.query_params.get("segment") or None
    try:
        if not reviewer.may_see(vm):
            raise console_logs.ConsoleLogNotFound(f"no {REVIEW} on this VM")
        return console_logs.find_segment(site.installation.home.console_logs_dir, vm, name)
    except console_logs.ConsoleLogNotFound as exc:
        site.record("review.refused", reviewer, outcome="deny", source=_source(request),
                    vm=vm if console_logs.vm_name_ok(vm) else None, what=what,
                    segment=(name or "")[:64], reason=str(exc))
        raise Refused(404, "Not found", "There is no such console log, or you may not "
                      "see it.") from None


def _console_log(site: ReviewSite, request: Request, reviewer: Reviewer) -> Response:
    segment = _console_segment(site, request, reviewer, "console-log")
    start_at = _start_at(request.query_params.get("t"))
    site.record("review.view", reviewer, source=_source(request), vm=segment.vm,
                page="console-log", segment=segment.name, start_at=start_at)
    moment = None
    if start_at is not None and segment.started is not None:
        moment = segment.started + timedelta(seconds=start_at)
    names = console_logs.segment_names(site.installation.home.console_logs_dir, segment.vm)
    return site.render("console_log.html", reviewer=reviewer, segment=segment,
                       start_at=start_at, moment=moment, segments=names,
                       max_playback=console_logs.MAX_PLAYBACK_BYTES)


def _console_log_cast(site: ReviewSite, request: Request, reviewer: Reviewer) -> Response:
    download = request.query_params.get("download") == "1"
    segment = _console_segment(site, request, reviewer,
                               "console-log download" if download else "console-log play")
    if not download and not segment.playable:
        raise Refused(413, "Too large to play", "This segment is larger than the player "
                      "takes; download it instead.")
    site.record("review.download" if download else "review.play", reviewer,
                source=_source(request), vm=segment.vm, what="console-log",
                segment=segment.name)
    headers = {"Content-Disposition": f'attachment; filename="console-{segment.vm}-'
               f'{segment.name}"'} if download else {}
    return FileResponse(segment.path, media_type="application/x-asciicast", headers=headers)


def _audit(site: ReviewSite, request: Request, reviewer: Reviewer) -> Response:
    recheck = request.query_params.get("recheck") == "1"
    report, checked_at = site.verification(recheck=recheck)
    site.record("review.view", reviewer, source=_source(request), page="audit",
                recheck=recheck)
    return site.render("audit.html", reviewer=reviewer, report=report, checked_at=checked_at)


def _index(request: Request) -> Response:
    return RedirectResponse("/sessions", status_code=303)


# -- signing in with a link -------------------------------------------------------------------


def _signin_form(request: Request) -> Response:
    site: ReviewSite = request.app.state.site
    return site.render("signin.html", reviewer=None, token=request.path_params["token"])


def _signin(request: Request) -> Response:
    site: ReviewSite = request.app.state.site
    source = _source(request)
    holder = signin.redeem_link(site.database, request.path_params["token"])
    if holder is None:
        site.record("review.signin", None, outcome="deny", source=source,
                    reason="unknown, used or expired link")
        return site.render("message.html", 403, reviewer=None, title="Link not valid",
                           message="This sign-in link is unknown, already used or expired. "
                                   "Run `ssh review@<gateway>` for a new one.")
    try:
        reviewer = site.reviewers.by_token(holder, source)
    except (AccessRefused, CertgateError) as exc:
        site.record("review.signin", None, outcome="deny", source=source, reason=str(exc),
                    user=holder.user)
        return site.render("message.html", 403, reviewer=None, title="Not allowed",
                           message=str(exc))
    token, expires = signin.issue(
        site.database, signin.SESSION, user=reviewer.user,
        identity_serial=reviewer.identity_serial, lifetime=signin.SESSION_LIFETIME,
        not_after=reviewer.not_after, source=source)
    site.record("review.signin", reviewer, source=source, expires=expires.isoformat())
    response = RedirectResponse("/sessions", status_code=303)
    response.set_cookie(COOKIE, token, max_age=int((expires - datetime.now(UTC))
                                                   .total_seconds()),
                        secure=True, httponly=True, samesite="strict", path="/")
    return response


def _signout(request: Request) -> Response:
    site: ReviewSite = request.app.state.site
    token = request.cookies.get(COOKIE)
    if token:
        signin.end_session(site.database, token)
    response = RedirectResponse("/signed-out", status_code=303)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


def _signed_out(request: Request) -> Response:
    site: ReviewSite = request.app.state.site
    return site.render("message.html", reviewer=None, title="Signed out",
                       message="You are signed out.")


class _SecurityHeaders:
    """Adds the security headers to every response, static files included."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(site: ReviewSite, *, player: Path | None = None) -> Any:
    static = Path(__file__).parent / "static"
    routes = [
        Route("/", _index),
        Route("/sessions", _reviewed(_sessions)),
        Route("/sessions/{session_id}", _reviewed(_session)),
        Route("/sessions/{session_id}/recording.cast", _reviewed(_recording)),
        Route("/sessions/{session_id}/events.json", _reviewed(_events_json)),
        Route("/consoles/{vm}/log", _reviewed(_console_log)),
        Route("/consoles/{vm}/log.cast", _reviewed(_console_log_cast)),
        Route("/search", _reviewed(_search)),
        Route("/audit", _reviewed(_audit)),
        Route("/signin/{token}", _signin_form, methods=["GET"]),
        Route("/signin/{token}", _signin, methods=["POST"]),
        Route("/signout", _signout, methods=["POST"]),
        Route("/signed-out", _signed_out),
        Mount("/static", StaticFiles(directory=static), name="static"),
        Mount("/player", StaticFiles(directory=player or player_dir()), name="player"),
    ]
    app = Starlette(routes=routes)
    app.state.site = site
    return _SecurityHeaders(app)

