"""Reading asciicast v2 recordings back and planning their replay.

The timing plan is a pure function (events in, (delay, text) out), so speed and idle
compression are tested without sleeping; ``play`` only sleeps and writes.
"""

from __future__ import annotations

import json
import math
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
    if (isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t)
            or t < 0 or not isinstance(code, str) or not isinstance(data, str)):
        return None
    return CastEvent(float(t), code, data)


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
