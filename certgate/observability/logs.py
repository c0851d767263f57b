"""Log lines for machines (JSON, one object per line) or people (a terminal).

Events are ordinary ``logging`` records on the ``certgate.events`` logger that carry an
``event`` name and a dict of ``fields``. Field values come from outside (user names, VM
names, end reasons that quote a console): strings are cut to ``MAX_FIELD_CHARS`` and, in
human lines, shown with control characters escaped, so a log line can never carry a
terminal escape sequence or a forged second line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

EVENT_LOGGER = "certgate.events"
MAX_FIELD_CHARS = 300
STYLES = ("auto", "json", "human")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_FIELD_CHARS else value[:MAX_FIELD_CHARS] + "…"
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value[:50]]
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in list(value.items())[:50]}
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clean(str(value))


def log_event(event: str, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """One structured line: ``event`` names what happened, ``fields`` the particulars."""
    logging.getLogger(EVENT_LOGGER).log(
        level, message, extra={"event": event, "fields": {k: _clean(v) for k, v in
                                                           fields.items()}})


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonLineFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "event": ..., "msg": ..., fields...}``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record), "level": record.levelname.lower(),
            "logger": record.name, "msg": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if event:
            line["event"] = event
            for key, value in getattr(record, "fields", {}).items():
                line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _human_value(value: Any) -> str:
    if isinstance(value, str):
        escaped = value.encode("unicode_escape").decode("ascii")
        return escaped if escaped and " " not in escaped and "=" not in escaped else repr(value)
    return json.dumps(value, default=str)


class HumanFormatter(logging.Formatter):
    """``2026-11-28T10:00:00.000+00:00 INFO session.start user=alice vm=vm01 ...``."""

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        head = f"{_timestamp(record)} {record.levelname:<7}"
        message = record.getMessage().encode("unicode_escape").decode("ascii")
        if event:
            fields = " ".join(f"{k}={_human_value(v)}" for k, v in
                              getattr(record, "fields", {}).items() if v is not None)
            text = f"{head} {event:<16} {message}" + (f"  {fields}" if fields else "")
        else:
            text = f"{head} {record.name}: {message}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(level: str = "info", style: str = "auto",
                      stream: IO[str] | None = None) -> None:
    """Root logging for a long-running command: JSON lines unless ``style`` is ``human``
    or (``auto``) the stream is a terminal."""
    target = stream or sys.stderr
    if style == "auto":
        style = "human" if target.isatty() else "json"
    handler = logging.StreamHandler(target)
    handler.setFormatter(HumanFormatter() if style == "human" else JsonLineFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("asyncssh", "alembic", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
