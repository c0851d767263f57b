"""Reading asciicast v2 recordings back and planning their replay.

The timing plan is a pure function (events in, (delay, text) out), so speed and idle
compression are tested without sleeping; ``play`` only sleeps and writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certgate.errors import CertgateError

SKIP_IDLE_SECONDS = 1.0


@dataclass(frozen=True)
class CastEvent:
    time: float
    code: str
    data: str


def read_cast(path: Path) -> tuple[dict[str, Any], Iterator[CastEvent]]:
    """The header and a stream of events; a torn last line (a crash mid-write) is ignored."""
    try:
        handle = path.open("r", encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CertgateError(f"cannot open recording {path}: {exc.strerror}") from exc
    first = handle.readline()
    try:
        header = json.loads(first)
    except ValueError:
        handle.close()
        raise CertgateError(f"{path} is not an asciicast v2 recording") from None
    if not isinstance(header, dict) or header.get("version") != 2:
        handle.close()
        raise CertgateError(f"{path} is not an asciicast v2 recording")

    def events() -> Iterator[CastEvent]:
        with handle:
            for number, line in enumerate(handle, 2):
                try:
                    t, code, data = json.loads(line)
                except ValueError:
                    if line.endswith("\n"):
                        raise CertgateError(f"{path}:{number}: malformed event") from None
                    return
                yield CastEvent(float(t), str(code), str(data))

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
