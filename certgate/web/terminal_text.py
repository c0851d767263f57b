"""Console output as plain searchable text, in chunks that remember when they were shown.

Terminal output is hostile data: escape sequences are dropped (CSI, OSC, DCS and the rest),
control characters become spaces, and carriage returns end lines. Each chunk covers at most
``MAX_LINES`` lines and ``MAX_CHARS`` characters, so when playback is started at the chunk's
last moment (``t_end``) everything in it is still on a 24-line screen.

``chunks`` is the reference: one event at a time, easy to read, the test oracle.
``recording_chunks`` and ``output_chunks`` give exactly the same chunks with far fewer
Python operations per event; indexing gigabytes of recordings uses them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from certgate.audit.replay import CastEvent, cast_output

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
# Control characters, and lone surrogates (a JSON "\\ud800" decodes to one; SQLite cannot
# store it as UTF-8).
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def plain_text(data: str) -> str:
    """``data`` without escape sequences or control characters; ``\\r`` and ``\\n`` kept."""
    return _CONTROLS.sub(" ", _ESCAPES.sub("", data))


def _escapes_stopping_at(separator: str) -> re.Pattern[str]:
    """``_ESCAPES`` with ``separator`` excluded wherever a sequence runs on (OSC, DCS): on
    texts joined by a separator that occurs in none of them, one substitution then removes
    exactly what substituting each text on its own would."""
    return re.compile(_ESCAPES.pattern.replace(r"[^\x07\x1b]", rf"[^\x07\x1b{separator}]")
                      .replace(r"[^\x1b]", rf"[^\x1b{separator}]"))


_JOINERS = [(separator, _escapes_stopping_at(separator))
            for separator in ("\uffff", "\ufffe", "\U0010ffff", "\U0010fffe")]


def plain_texts(texts: Sequence[str]) -> list[str]:
    """``[plain_text(t) for t in texts]`` in two regex passes over all of them at once."""
    if not texts:
        return []
    whole = "".join(texts)
    for separator, escapes in _JOINERS:
        if separator not in whole:
            joined = separator.join(texts)
            if "\x1b" in whole or "\x9b" in whole:
                joined = escapes.sub("", joined)
            return _CONTROLS.sub(" ", joined).split(separator)
    return [plain_text(text) for text in texts]  # every separator occurs: hostile, rare


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


def recording_chunks(data: bytes, name: str) -> list[TextChunk]:
    """``list(chunks(events))`` for the events ``read_cast`` reads from a recording whose
    bytes are ``data``; ``CertgateError`` where reading it would raise one."""
    times, texts = cast_output(data, name)
    return output_chunks(times, texts)


def output_chunks(times: Sequence[float], texts: Sequence[str]) -> list[TextChunk]:
    """``list(chunks(...))`` of output ("o") events with these times and (raw) texts.

    The same rules as ``_Builder``, taken a whole event at a time when it cannot complete a
    chunk (the common case), and piece by piece otherwise.
    """
    out: list[TextChunk] = []
    lines: list[str] = []
    current = ""
    t_start: float | None = None
    t_end = 0.0
    size = 0
    for t, text in zip(times, plain_texts(texts), strict=True):
        if t_start is not None and t - t_end > MAX_GAP_SECONDS:
            _emit(out, t_start, t_end, lines, current)
            lines, current, t_start, size = [], "", None, 0
        if not text:
            continue
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        t_end = t
        if t_start is None:
            t_start = t
        breaks = text.count("\n")
        if not breaks:
            current += text
            size += len(text)
            if size >= MAX_CHARS:
                _emit(out, t_start, t_end, lines, current)
                lines, current, t_start, size = [], "", None, 0
            continue
        if len(lines) + breaks < MAX_LINES and size + len(text) - breaks < MAX_CHARS:
            pieces = text.split("\n")
            lines.append(current + pieces[0])
            if breaks > 1:
                lines.extend(pieces[1:-1])
            current = pieces[-1]
            size += len(text) - breaks
            continue
        for number, piece in enumerate(text.split("\n")):
            if number:
                if t_start is None:
                    t_start = t
                lines.append(current)
                current = ""
                if len(lines) >= MAX_LINES:
                    _emit(out, t_start, t_end, lines, current)
                    lines, current, t_start, size = [], "", None, 0
            if piece:
                if t_start is None:
                    t_start = t
                current += piece
                size += len(piece)
                if size >= MAX_CHARS:
                    _emit(out, t_start, t_end, lines, current)
                    lines, current, t_start, size = [], "", None, 0
    if t_start is not None:
        _emit(out, t_start, t_end, lines, current)
    return out


def _emit(out: list[TextChunk], t_start: float, t_end: float, lines: list[str],
          current: str) -> None:
    text = "\n".join([*(line.rstrip() for line in lines), current.rstrip()]).strip()
    if text:
        out.append(TextChunk(t_start, t_end, text))
