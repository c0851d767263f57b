"""Reading asciicast v2 recordings back and planning their replay.

The timing plan is a pure function (events in, (delay, text) out), so speed and idle
compression are tested without sleeping; ``play`` only sleeps and writes.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certgate.errors import CertgateError

SKIP_IDLE_SECONDS = 1.0
MAX_LINE_CHARS = 1 << 20
"""The recorder writes events of at most a few KiB; a longer line is not one of ours."""


@dataclass(frozen=True)
class CastEvent:
    time: float
    code: str
    data: str


def _json_line(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _MALFORMED


_MALFORMED = object()


def parse_event(value: Any) -> CastEvent | None:
    """An asciicast v2 event ``[time, code, data]``, or None when ``value`` is not one."""
    if not isinstance(value, list) or len(value) != 3:
        return None
    t, code, data = value
    if isinstance(t, int) and not isinstance(t, bool) and abs(t) > _LARGEST_SECONDS:
        return None  # beyond a float (OverflowError), and no recording lasts that long
    if (isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t)
            or t < 0 or not isinstance(code, str) or not isinstance(data, str)):
        return None
    return CastEvent(float(t), code, data)


_LARGEST_SECONDS = 10**300


def read_cast(path: Path) -> tuple[dict[str, Any], Iterator[CastEvent]]:
    """The header and a stream of events; a torn last line (a crash mid-write) is ignored.

    The file is outside data (anyone with write access to the recordings directory): lines
    are bounded, and anything that is not an asciicast v2 event is a ``CertgateError``.
    """
    try:
        handle = path.open("r", encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CertgateError(f"cannot open recording {path}: {exc.strerror}") from exc
    first = handle.readline(MAX_LINE_CHARS + 1)
    header = _json_line(first) if len(first) <= MAX_LINE_CHARS else _MALFORMED
    if not isinstance(header, dict) or header.get("version") != 2:
        handle.close()
        raise CertgateError(f"{path} is not an asciicast v2 recording")

    def events() -> Iterator[CastEvent]:
        with handle:
            number = 1
            while line := handle.readline(MAX_LINE_CHARS + 1):
                number += 1
                if len(line) > MAX_LINE_CHARS:
                    raise CertgateError(f"{path}:{number}: event longer than "
                                        f"{MAX_LINE_CHARS} characters")
                event = parse_event(_json_line(line))
                if event is None:
                    if line.endswith("\n"):
                        raise CertgateError(f"{path}:{number}: malformed event")
                    return
                yield event

    return header, events()


# One event line as the recorder writes it, ``[1.25, "o", "text"]`` (JSON whitespace
# allowed), with a plain number and a code and text that are complete JSON strings. Classes
# exclude "\n", so with MULTILINE a match is exactly one whole line. Numbers are bounded
# (16 digits, exponent of two) so that every one of them is a finite float.
_EVENT_LINE = re.compile(
    r'^[ \t]*\[[ \t]*((?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,30})?(?:[eE][-+]?[0-9]{1,2})?)'
    r'[ \t]*,[ \t]*"([^"\\\x00-\x1f]*)"[ \t]*,[ \t]*'
    r'"([^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*)"'
    r'[ \t]*\][ \t]*$',
    re.MULTILINE,
)
PLAIN_EVENT_LINE = _EVENT_LINE
"""Public name of the pattern above (the console-log indexer reads lines with it too)."""


def cast_output(data: bytes, name: str) -> tuple[list[float], list[str]]:
    """The times and texts of a whole recording's output ("o") events: exactly what
    ``read_cast`` yields for them from the same bytes, or the same refusal
    (``CertgateError``) where reading it through would raise one.

    Why: indexing gigabytes of recordings spent most of its time in one ``json.loads`` and
    one ``parse_event`` per line. Here one regex pass checks that every line has the
    recorder's plain shape and one ``json.loads`` decodes all texts at once; a recording
    with any other line (escaped codes, odd numbers, malformed or torn lines) is read line
    by line with ``read_cast``'s own rules instead.
    """
    text = data.decode("utf-8", "replace")
    if "\r" in text:  # read_cast reads with universal newlines
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    header_end = text.find("\n") + 1 or len(text)
    header = _json_line(text[:header_end]) if header_end <= MAX_LINE_CHARS else _MALFORMED
    if not isinstance(header, dict) or header.get("version") != 2:
        raise CertgateError(f"{name} is not an asciicast v2 recording")
    found = _EVENT_LINE.findall(text, header_end)
    lines = text.count("\n", header_end) + (not text.endswith("\n") and header_end < len(text))
    if (len(found) != lines or (len(text) - header_end > MAX_LINE_CHARS - 1
            and max(map(len, text[header_end:].split("\n"))) > MAX_LINE_CHARS - 1)):
        return _cast_output_by_line(text[header_end:], name)
    times = [float(t) for t, code, _ in found if code == "o"]
    if not times:
        return [], []
    texts = json.loads('["' + '","'.join([b for _, code, b in found if code == "o"]) + '"]')
    return times, texts


def _cast_output_by_line(text: str, name: str) -> tuple[list[float], list[str]]:
    """``cast_output`` for event lines of any shape: ``read_cast``'s loop over lines."""
    times: list[float] = []
    texts: list[str] = []
    lines = text.split("\n")
    last = len(lines) - 1
    for number, line in enumerate(lines, start=2):
        terminated = number - 2 < last
        if not terminated and not line:
            break
        if len(line) + terminated > MAX_LINE_CHARS:
            raise CertgateError(f"{name}:{number}: event longer than "
                                f"{MAX_LINE_CHARS} characters")
        event = parse_event(_json_line(line))
        if event is None:
            if terminated:
                raise CertgateError(f"{name}:{number}: malformed event")
            break
        if event.code == "o":
            times.append(event.time)
            texts.append(event.data)
    return times, texts


def plan(events: Iterable[CastEvent], *, speed: float = 1.0,
         max_idle: float | None = None) -> Iterator[tuple[float, str]]:
    """(delay before writing, output text) for each "o" event, at ``speed``, with pauses
    longer than ``max_idle`` (in recording time) cut to ``max_idle``."""
    if speed <= 0:
        raise CertgateError("--speed must be greater than 0")
    last = 0.0
    for event in events:
        if event.code != "o":
            continue
        gap = max(0.0, event.time - last)
        last = event.time
        if max_idle is not None:
            gap = min(gap, max_idle)
        yield gap / speed, event.data


def play(steps: Iterable[tuple[float, str]], write: Callable[[str], None],
         sleep: Callable[[float], None] = time.sleep) -> int:
    """Write each step after its delay; returns the number of events written."""
    count = 0
    for delay, text in steps:
        if delay > 0:
            sleep(delay)
        write(text)
        count += 1
    return count
