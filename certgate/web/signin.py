"""One-time sign-in links and the browser sessions they open.

A link is printed to a person who just authenticated over SSH with their certificate
(``ssh review@gateway``); it is bound to that identity certificate, expires in minutes and
works once. Redeeming it opens a browser session (a cookie) bound to the same certificate,
which every request re-checks, so revoking the certificate signs the browser out too.
Only SHA-256 digests of the secrets are stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update

from certgate.store.database import Database
from certgate.store.schema import ReviewTokenRow

LINK, SESSION = "link", "session"
LINK_LIFETIME = timedelta(minutes=5)
SESSION_LIFETIME = timedelta(hours=8)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class TokenHolder:
    user: str
    identity_serial: str
    expires_at: datetime


def issue(database: Database, kind: str, *, user: str, identity_serial: str,
          lifetime: timedelta, not_after: datetime | None = None,
          source: str | None = None, now: datetime | None = None) -> tuple[str, datetime]:
    """A new secret of ``kind`` and when it expires (never after ``not_after``)."""
    now = now or datetime.now(UTC)
    expires = now + lifetime
    if not_after is not None:
        expires = min(expires, not_after)
    token = secrets.token_urlsafe(32)
    with database.write() as session:
        session.execute(delete(ReviewTokenRow).where(ReviewTokenRow.expires_at < now))
        session.add(ReviewTokenRow(
            token_hash=_digest(token), kind=kind, user_name=user,
            identity_serial=identity_serial, created_at=now, expires_at=expires,
            used_at=None, source=source))
    return token, expires


def issue_link(database: Database, *, user: str, identity_serial: str,
               not_after: datetime | None = None, source: str | None = None) -> str:
    token, _ = issue(database, LINK, user=user, identity_serial=identity_serial,
                     lifetime=LINK_LIFETIME, not_after=not_after, source=source)
    return token


def redeem_link(database: Database, token: str, *,
                now: datetime | None = None) -> TokenHolder | None:
    """The holder of an unused, unexpired link, which is used up by this call; else None.

    The conditional UPDATE makes redemption atomic: two browsers racing for one link cannot
    both win, on SQLite or PostgreSQL.
    """
    if not _TOKEN.fullmatch(token):
        return None
    now = now or datetime.now(UTC)
    row = ReviewTokenRow
    with database.write() as session:
        result = session.execute(
            update(row).where(row.token_hash == _digest(token), row.kind == LINK,
                              row.used_at.is_(None), row.expires_at > now)
            .values(used_at=now).returning(row.user_name, row.identity_serial, row.expires_at))
        found = result.first()
    if found is None:
        return None
    return TokenHolder(found[0], found[1], found[2])


def session_holder(database: Database, token: str, *,
                   now: datetime | None = None) -> TokenHolder | None:
    """Who a browser session cookie belongs to, while it has not expired."""
    if not _TOKEN.fullmatch(token):
        return None
    now = now or datetime.now(UTC)
    row = ReviewTokenRow
    with database.read() as session:
        found = session.execute(
            select(row.user_name, row.identity_serial, row.expires_at).where(
                row.token_hash == _digest(token), row.kind == SESSION, row.expires_at > now)
        ).first()
    return TokenHolder(found[0], found[1], found[2]) if found else None


def end_session(database: Database, token: str) -> None:
    if _TOKEN.fullmatch(token):
        with database.write() as session:
            session.execute(delete(ReviewTokenRow).where(
                ReviewTokenRow.token_hash == _digest(token)))
