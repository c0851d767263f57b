"""Console output as plain searchable text, in chunks that remember when they were shown.

Terminal output is hostile data: escape sequences are dropped (CSI, OSC, DCS and the rest),
control characters become spaces, and carriage returns end lines. Each chunk covers at most
``MAX_LINES`` lines and ``MAX_CHARS`` characters, so when playback is started at the chunk's
last moment (``t_end``) everything in it is still on a 24-line screen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from certgate.audit.replay import CastEvent

MAX_LINES = 12
MAX_CHARS = 1000
MAX_GAP_SECONDS = 5.0

# ESC [ ... final | ESC ] ... BEL/ST | ESC P/X/^/_ ... ST | ESC + one or two more bytes.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def plain_text(data: str) -> str:
    """``data`` without escape sequences or control characters; ``\\r`` and ``\\n`` kept."""
    return _CONTROLS.sub(" ", _ESCAPES.sub("", data))


@dataclass(frozen=True)
class TextChunk:
    t_start: float
    t_end: float
    text: str


class _Builder:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.current: list[str] = []
        self.t_start: float | None = None
        self.t_end = 0.0
        self.size = 0

    def add(self, t: float, text: str) -> Iterator[TextChunk]:
        if self.t_start is not None and t - self.t_end > MAX_GAP_SECONDS:
            yield from self.flush()
        for piece in re.split(r"(\r\n|\n|\r)", text):
            if not piece:
                continue
            if self.t_start is None:
                self.t_start = t
            self.t_end = t
            if piece in ("\r\n", "\n", "\r"):
                self.lines.append("".join(self.current))
                self.current = []
                if len(self.lines) >= MAX_LINES:
                    yield from self.flush()
                continue
            self.current.append(piece)
            self.size += len(piece)
            if self.size >= MAX_CHARS:
                yield from self.flush()

    def flush(self) -> Iterator[TextChunk]:
        lines = [*self.lines, "".join(self.current)]
        text = "\n".join(line.rstrip() for line in lines).strip()
        if text and self.t_start is not None:
            yield TextChunk(self.t_start, self.t_end, text)
        self.lines, self.current, self.t_start, self.size = [], [], None, 0


def chunks(events: Iterable[CastEvent]) -> Iterator[TextChunk]:
    """Searchable chunks of a recording's output ("o") events, in time order."""
    builder = _Builder()
    for event in events:
        if event.code == "o":
            yield from builder.add(event.time, plain_text(event.data))
    yield from builder.flush()
