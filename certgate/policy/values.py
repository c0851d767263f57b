"""Parsing and formatting of the scalar values in a policy file: durations, days, hours, CIDRs.

Each parser raises ``ValueError`` with a message for a person; the loader adds the location.
"""

from __future__ import annotations

import re
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network, ip_network
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from certgate.policy.model import DAY_NAMES

_DURATION_PART = re.compile(r"([0-9]{1,12})([dhms])")
MAX_DURATION_DAYS = 36_500
"""No duration anywhere in certgate (validity, session limits) is longer than 100 years."""
MAX_DURATION_SECONDS = MAX_DURATION_DAYS * 86_400
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_CLOCK = re.compile(r"([0-9]{2}):([0-9]{2})")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_duration(text: str) -> timedelta:
    """``"8h"``, ``"30m"``, ``"90s"``, ``"1d"``, or units combined largest first (``"1h30m"``)."""
    compact = text.strip()
    parts = _DURATION_PART.findall(compact)
    units = [unit for _, unit in parts]
    descending = units == sorted(units, key=list(_DURATION_UNITS).index) and len(set(units)) == len(
        units
    )
    if not parts or "".join(n + u for n, u in parts) != compact or not descending:
        raise ValueError(
            f"invalid duration {text!r} (expected a number with a unit d, h, m or s, "
            "e.g. '8h', '30m', '1h30m')"
        )
    seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds == 0:
        raise ValueError(f"invalid duration {text!r}: must be longer than zero")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"invalid duration {text!r}: longer than {MAX_DURATION_DAYS} days")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The canonical spelling of a duration: ``timedelta(minutes=90)`` -> ``"1h30m"``."""
    remaining = int(value.total_seconds())
    out = []
    for unit, size in _DURATION_UNITS.items():
        count, remaining = divmod(remaining, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


def _day_index(name: str) -> int:
    key = name.strip().lower()
    if key in DAY_NAMES:
        return DAY_NAMES.index(key)
    if key in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(key)
    raise ValueError(f"unknown day {name.strip()!r} (expected one of {', '.join(DAY_NAMES)})")


def parse_days(text: str) -> frozenset[int]:
    """``"mon"`` or a range ``"mon-fri"``; a range may wrap (``"fri-mon"``). Monday is 0."""
    if "-" not in text:
        return frozenset({_day_index(text)})
    first, _, last = text.partition("-")
    start, end = _day_index(first), _day_index(last)
    return frozenset((start + i) % 7 for i in range((end - start) % 7 + 1))


def format_days(days: frozenset[int]) -> str:
    """Days as comma-separated names with runs compressed: ``{0,1,2,3,4}`` -> ``"mon-fri"``."""
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        DAY_NAMES[r[0]] if len(r) == 1 else f"{DAY_NAMES[r[0]]}-{DAY_NAMES[r[-1]]}" for r in runs
    )


def _parse_clock(text: str, *, allow_24: bool) -> int:
    match = _CLOCK.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid time of day {text.strip()!r} (expected HH:MM)")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        raise ValueError(f"invalid time of day {text.strip()!r} (00:00 to 23:59, or 24:00 as end)")
    return hours * 60 + minutes


def parse_hours(text: str) -> tuple[int, int]:
    """``"08:00-18:00"`` -> minutes after midnight; the end may be earlier (crosses midnight)."""
    first, sep, last = text.partition("-")
    if not sep:
        raise ValueError(f"invalid hours {text!r} (expected HH:MM-HH:MM, e.g. '08:00-18:00')")
    start = _parse_clock(first, allow_24=False)
    end = _parse_clock(last, allow_24=True)
    if start == end or (start == 0 and end == 0):
        raise ValueError(f"empty hours range {text!r} (use '00:00-24:00' for the whole day)")
    return start, end


def format_hours(start: int, end: int) -> str:
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def check_timezone(name: str) -> str:
    """The IANA timezone name itself, once ``zoneinfo`` knows it."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r} (expected an IANA name like 'Europe/Berlin')"
        ) from None
    return name


def parse_cidr(text: str) -> IPv4Network | IPv6Network:
    """An IPv4/IPv6 network (``10.0.0.0/8``, ``2001:db8::/32``); a bare address is one host.

    Host bits set (``10.0.0.1/8``) are an error: it is usually a typo for a narrower network.
    """
    try:
        return ip_network(text.strip(), strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            wide = ip_network(text.strip(), strict=False)
            raise ValueError(f"{text!r} has host bits set (did you mean {wide}?)") from None
        raise ValueError(
            f"invalid CIDR {text!r} (expected an address or network like '10.0.0.0/8')"
        ) from None
