"""Console log segments as the review site finds them: by validated names, inside the logs
directory only.

VM and segment names arrive in URLs, so they are hostile: both must match in full (a VM
name, ``NNNNNNNN.cast``), and the resolved file must be a regular file inside the console
logs directory (a symbolic link pointing elsewhere is refused like a missing file). Only a
bounded header line is ever parsed here; the player parses the rest in the browser, and
only segments of at most ``MAX_PLAYBACK_BYTES`` are handed to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from certgate.consolelog.reader import log_directory
from certgate.consolelog.writer import SEGMENT_NAME, list_segments
from certgate.errors import CertgateError, NotFoundError
from certgate.web.search_index import contained

MAX_HEADER_BYTES = 64 * 1024
MAX_PLAYBACK_BYTES = 256 * 1024 * 1024
"""Larger segments are offered for download only: the player holds a whole file in memory."""
MAX_LISTED = 200


class ConsoleLogNotFound(NotFoundError):
    """No such segment, a name that is not one, or a path outside the logs directory."""


def vm_name_ok(name: str) -> bool:
    """A console log directory name must be a VM name (the reader's full-match rule)."""
    try:
        log_directory(Path("."), name)
    except CertgateError:
        return False
    return True


def segment_name_ok(name: str) -> bool:
    return SEGMENT_NAME.fullmatch(name) is not None


def header_start(header_line: bytes) -> float | None:
    """The start time (Unix seconds) in an asciicast v2 header line, if it is one."""
    try:
        header = json.loads(header_line)
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("version") != 2:
        return None
    started = header.get("timestamp")
    if isinstance(started, bool) or not isinstance(started, int | float):
        return None
    return float(started)


@dataclass(frozen=True)
class Segment:
    vm: str
    name: str
    path: Path
    size: int
    started: datetime | None
    newest: bool
    """The VM's newest segment: still being written while the gateway keeps the console."""

    @property
    def playable(self) -> bool:
        return self.size <= MAX_PLAYBACK_BYTES


def logged_vms(logs_dir: Path) -> list[str]:
    """Names of the VMs with a console log directory (VMs removed from the fleet included)."""
    try:
        entries = sorted(logs_dir.iterdir())
    except OSError:
        return []
    return [entry.name for entry in entries if vm_name_ok(entry.name) and entry.is_dir()]


def _directory(logs_dir: Path, vm: str) -> Path:
    if not vm_name_ok(vm):
        raise ConsoleLogNotFound("not a VM name")
    directory = log_directory(logs_dir, vm)
    try:
        inside = directory.resolve().is_relative_to(logs_dir.resolve())
    except (OSError, RuntimeError):
        inside = False
    if not inside or not directory.is_dir():
        raise ConsoleLogNotFound("no console log for this VM")
    return directory


def segment_names(logs_dir: Path, vm: str) -> list[str]:
    """The VM's segment names, newest first (at most ``MAX_LISTED``)."""
    found = list_segments(_directory(logs_dir, vm))
    return [path.name for _, path in reversed(found)][:MAX_LISTED]


def find_segment(logs_dir: Path, vm: str, name: str | None) -> Segment:
    """One segment of ``vm``'s log (its newest when ``name`` is None)."""
    directory = _directory(logs_dir, vm)
    names = [path.name for _, path in list_segments(directory)]
    if not names:
        raise ConsoleLogNotFound("the console log has no segments")
    if name is None:
        name = names[-1]
    if not segment_name_ok(name) or name not in names:
        raise ConsoleLogNotFound("no such segment")
    path = contained(logs_dir, str(directory / name))
    if path is None:
        raise ConsoleLogNotFound("segment is not a file inside the console logs directory")
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            started = header_start(handle.readline(MAX_HEADER_BYTES))
    except OSError:
        raise ConsoleLogNotFound("segment removed") from None
    return Segment(vm, name, path, size,
                   datetime.fromtimestamp(started, UTC) if started is not None else None,
                   name == names[-1])
