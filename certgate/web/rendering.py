"""Jinja2 with autoescaping on for every template, and the few filters the pages use."""

from __future__ import annotations

import html
from datetime import datetime

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup


def highlighted(snippet: str) -> Markup:
    """A search snippet with its matches in <mark>; everything else escaped.

    The index marks matches with \\x02 and \\x03, which cannot occur in indexed text
    (control characters are removed before indexing).
    """
    parts: list[str] = []
    for index, piece in enumerate(snippet.replace("\x03", "\x02").split("\x02")):
        text = html.escape(piece)
        parts.append(f"<mark>{text}</mark>" if index % 2 else text)
    return Markup("".join(parts))


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def environment() -> Environment:
    env = Environment(loader=PackageLoader("certgate.web", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["highlighted"] = highlighted
    env.filters["when"] = when
    env.filters["duration"] = duration
    return env
