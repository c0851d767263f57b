"""Console log settings: the ``[console_log]`` table of certgate.toml, all optional."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from certgate.errors import HomeError

MIB = 1024 * 1024


@dataclass(frozen=True)
class ConsoleLogSettings:
    """How console logs rotate, how long they are kept and how fast a console may fill them.

    ``rate_limit``/``burst`` bound what one console can write (bytes/s, token bucket): a guest
    flooding its console cannot fill the disk; what is dropped is noted in the log itself.
    """

    enabled: bool = True
    segment_bytes: int = 16 * MIB
    segment_seconds: float = 24 * 3600.0
    retain_days: float = 90.0
    retain_bytes: int = 1024 * MIB
    rate_limit: int = 256 * 1024
    burst: int = 4 * MIB
    replay_lines: int = 20

    def __post_init__(self) -> None:
        positive = ("segment_bytes", "segment_seconds", "retain_days", "retain_bytes",
                    "rate_limit", "burst")
        for name in positive:
            if getattr(self, name) <= 0:
                raise HomeError(f"console_log.{name} must be greater than 0")
        if self.replay_lines < 0:
            raise HomeError("console_log.replay_lines must not be negative")
        if self.retain_bytes < self.segment_bytes:
            raise HomeError("console_log.retain_bytes must be at least segment_bytes")


def load_settings(config_path: Path) -> ConsoleLogSettings:
    """Read ``[console_log]`` from certgate.toml; defaults where absent."""
    try:
        data: dict[str, Any] = tomllib.loads(config_path.read_text("utf-8")).get(
            "console_log", {})
    except FileNotFoundError:
        return ConsoleLogSettings()
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise HomeError(f"{config_path}: {exc}") from exc
    known = {f.name: f.type for f in fields(ConsoleLogSettings)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise HomeError(f"{config_path}: unknown console_log setting(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    defaults = ConsoleLogSettings()
    for name, value in data.items():
        expected = type(getattr(defaults, name))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise HomeError(f"{config_path}: console_log.{name} must be {expected.__name__}")
        values[name] = value
    return ConsoleLogSettings(**values)
