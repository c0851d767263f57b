"""Escaping outside data for display on a terminal.

Certificate fields, login names, audit entries and console output come from strangers. Raw,
they can retitle the admin's window, clear or hide the screen (``ESC[8m``), write to the
clipboard (OSC 52) or reverse the order of what is shown (bidi overrides). Every CLI line that
carries such a value goes through ``printable``; only ``audit replay`` writes terminal output
as it was (filtered by ``certgate.audit.replay_filter``).
"""

from __future__ import annotations

import re

# C0 and C1 controls and DEL, lone surrogates, and the invisible format characters that
# reorder or hide text (bidi embeddings/overrides/isolates, zero-width marks, BOM).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]"
)
_UNSAFE_KEEP_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff"
    "\ufff9-\ufffb]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, *, keep_newlines: bool = False) -> str:
    """``str(value)`` with every control or invisible formatting character shown as an escape
    (``\\x1b``, ``\\u202e``); newlines and tabs stay when ``keep_newlines`` is set."""
    text = str(value)
    pattern = _UNSAFE_KEEP_LINES if keep_newlines else _UNSAFE
    return pattern.sub(_escape, text)


def json_for_terminal(encoded: str) -> str:
    """JSON text (``ensure_ascii=False``) with the characters ``printable`` escapes written as
    ``\\uXXXX``: still the same JSON value, but safe to print (JSON itself escapes C0 only)."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded)


def printable_bytes(data: bytes, *, keep_newlines: bool = False) -> str:
    """Like ``printable`` for bytes of unknown encoding (invalid UTF-8 shown as escapes)."""
    return printable(data.decode("utf-8", "backslashreplace"), keep_newlines=keep_newlines)
