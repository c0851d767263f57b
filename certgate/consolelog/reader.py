"""Reading a VM's console log back: lines with their times, filtered, searched, followed.

The log holds what a guest printed, which is hostile: before a line reaches a terminal its
escape sequences are removed and other control characters shown as ``?``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from certgate.consolelog.writer import list_segments
from certgate.errors import CertgateError

MAX_EVENT_LINE = 8 * 1024 * 1024
MAX_PATTERN = 256
_VM_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_LINE_CHARS = 64 * 1024
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


@dataclass(frozen=True)
class LogLine:
    """One line of console output (or a gateway note), stamped with when it began."""

    at: datetime
    text: str
    note: bool = False

    def render(self) -> str:
        stamp = self.at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return f"{stamp}  {'[' + self.text + ']' if self.note else self.text}"


def clean(text: str) -> str:
    """Terminal-safe: escape sequences removed, carriage returns dropped, controls as ``?``."""
    text = _ANSI.sub("", text).replace("\r", "")
    return _CONTROL.sub("?", text)


def log_directory(logs_dir: Path, vm: str) -> Path:
    """The directory of ``vm``'s log; the name must be a VM name (no path tricks)."""
    if not _VM_NAME.fullmatch(vm) or vm in (".", ".."):
        raise CertgateError(f"{vm!r} is not a VM name")
    return logs_dir / vm


def compile_pattern(text: str | None, option: str = "--grep") -> re.Pattern[str] | None:
    """A user's search pattern: bounded in size, a one-line error when it is not a regex."""
    if text is None:
        return None
    if len(text) > MAX_PATTERN:
        raise CertgateError(f"{option}: pattern longer than {MAX_PATTERN} characters")
    try:
        return re.compile(text)
    except re.error as exc:
        raise CertgateError(f"{option}: invalid pattern: {exc}") from None


class _Segment:
    """Reads one segment incrementally (the current one keeps growing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.start: float | None = None

    def events(self) -> Iterator[tuple[float, str, str]]:
        """New complete events since the last call: (unix time, code, text)."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_EVENT_LINE:
            raise CertgateError(f"{self.path}: an event line is longer than {MAX_EVENT_LINE} "
                                "bytes (not a certgate console log)")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            value = self._parse(line, number)
            if self.start is None:
                if not isinstance(value, dict) or value.get("version") != 2:
                    raise CertgateError(f"{self.path}: not an asciicast v2 file")
                self.start = float(value.get("timestamp", 0))
                continue
            if (not isinstance(value, list) or len(value) != 3
                    or not isinstance(value[0], int | float) or not isinstance(value[2], str)):
                raise CertgateError(f"{self.path}: malformed event {line[:80]!s}")
            yield self.start + float(value[0]), str(value[1]), value[2]

    def _parse(self, line: bytes, number: int) -> Any:
        if len(line) > MAX_EVENT_LINE:
            raise CertgateError(f"{self.path}: event line too long")
        try:
            return json.loads(line)
        except ValueError:
            raise CertgateError(f"{self.path}: line {number} is not JSON") from None


class ConsoleLogReader:
    """Lines of one VM's log, oldest first, between ``since`` and ``until``."""

    def __init__(self, directory: Path, *, since: datetime | None = None,
                 until: datetime | None = None, grep: re.Pattern[str] | None = None) -> None:
        self.directory = directory
        self.since = since.timestamp() if since else None
        self.until = until.timestamp() if until else None
        self.grep = grep
        self._segments: dict[Path, _Segment] = {}
        self._line: list[str] = []
        self._line_start: float | None = None

    def lines(self) -> Iterator[LogLine]:
        """Everything logged so far (the unfinished last line included)."""
        yield from self._read()
        yield from self._flush_line()

    def follow(self, stop: Callable[[], bool], interval: float = 0.5) -> Iterator[LogLine]:
        """Everything so far, then new lines as they are written, until ``stop()``."""
        yield from self._read()
        while not stop():
            time.sleep(interval)
            yield from self._read()

    def output(self) -> Iterator[str]:
        """The console's output as the terminal received it (escape sequences and all),
        between ``since`` and ``until``: for ``--raw``, which replays rather than reads."""
        for _, path in list_segments(self.directory):
            for at, code, text in _Segment(path).events():
                if code != "o":
                    continue
                if self.since is not None and at < self.since:
                    continue
                if self.until is not None and at > self.until:
                    continue
                yield text

    def _read(self) -> Iterator[LogLine]:
        for _, path in list_segments(self.directory):
            segment = self._segments.get(path)
            if segment is None:
                segment = self._segments[path] = _Segment(path)
            for at, code, text in segment.events():
                if code == "m":
                    yield from self._flush_line()
                    yield from self._emit(at, clean(text), note=True)
                elif code == "o":
                    yield from self._output(at, text)

    def _output(self, at: float, text: str) -> Iterator[LogLine]:
        while text:
            if self._line_start is None:
                self._line_start = at
            head, newline, text = text.partition("\n")
            self._line.append(head)
            if newline or sum(map(len, self._line)) > MAX_LINE_CHARS:
                yield from self._flush_line()

    def _flush_line(self) -> Iterator[LogLine]:
        if self._line_start is None:
            return
        text, start = clean("".join(self._line)), self._line_start
        self._line, self._line_start = [], None
        yield from self._emit(start, text)

    def _emit(self, at: float, text: str, note: bool = False) -> Iterator[LogLine]:
        if self.since is not None and at < self.since:
            return
        if self.until is not None and at > self.until:
            return
        if self.grep is not None and not self.grep.search(text):
            return
        yield LogLine(datetime.fromtimestamp(at, UTC), text, note)
