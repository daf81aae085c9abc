"""Parsing of the small value types config files use: durations, sizes, host:port."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_DURATION = re.compile(r"(\d+)\s*([smhdwy])")
# A year is 365 days: retention periods ("2y") are not calendar arithmetic.
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_SIZE = re.compile(r"(\d+)\s*(b|kb|kib|mb|mib|gb|gib)", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1024, "kib": 1024, "mb": 1024**2, "mib": 1024**2,
               "gb": 1024**3, "gib": 1024**3}


def parse_duration(value: object) -> dt.timedelta:
    """Read ``"30s"``, ``"15m"``, ``"4h"``, ``"3d"``, ``"2w"``, ``"2y"`` or ``"1d12h"``.
    A bare number is refused: which unit it meant is a guess (seconds? minutes?).

    >>> parse_duration("1d12h")
    datetime.timedelta(days=1, seconds=43200)
    >>> parse_duration("2y").days
    730
    >>> parse_duration(90)
    Traceback (most recent call last):
    ...
    ValueError: a bare number, 90: give its unit, like "90s" or "90m"
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f'a bare number, {value}: give its unit, like "{value}s" or "{value}m"')
    if not isinstance(value, str):
        raise ValueError("not a duration")
    text = value.strip().lower()
    pos, seconds = 0, 0
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if match is None:
            raise ValueError(f"not a duration like 30s, 15m, 4h or 3d: {value!r}")
        seconds += int(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
    if not text:
        raise ValueError("empty duration")
    return dt.timedelta(seconds=seconds)


def parse_size(value: object) -> int:
    """Read ``"25MB"``, ``"512KB"`` or ``"1000B"`` (binary units: 1 MB = 1,048,576
    bytes). A bare number is refused: ``25`` meant 25 MB, not 25 bytes.

    >>> parse_size("25MB")
    26214400
    >>> parse_size(25)
    Traceback (most recent call last):
    ...
    ValueError: a bare number, 25: give its unit, like "25MB" or "25KB"
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f'a bare number, {value}: give its unit, like "{value}MB" or "{value}KB"')
    if not isinstance(value, str):
        raise ValueError("not a size")
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not a size like 25MB or 512KB: {value!r}")
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if size <= 0:
        raise ValueError("must be positive")
    return size


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(value: object) -> Endpoint:
    """Read ``"127.0.0.1:8025"`` or ``"[::1]:8025"``.

    >>> parse_endpoint("[::1]:25")
    Endpoint(host='::1', port=25)
    """
    if not isinstance(value, str):
        raise ValueError("not a host:port string")
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", value.strip())
    if match is None:
        raise ValueError(f"not host:port (use [::1]:25 for IPv6): {value!r}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")
    return Endpoint(host, port)


def parse_moment(text: str, zone: str) -> dt.datetime:
    """A moment given on the command line: ISO 8601 with an offset, or a local
    date or date and time in ``zone`` (a date means its midnight).

    >>> parse_moment("2026-12-24", "Europe/Berlin").isoformat()
    '2026-12-23T23:00:00+00:00'
    >>> parse_moment("2026-12-24 09:30", "UTC").isoformat()
    '2026-12-24T09:30:00+00:00'
    >>> parse_moment("2026-12-24T09:30-05:00", "UTC").isoformat()
    '2026-12-24T14:30:00+00:00'
    >>> parse_moment("next week", "UTC")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: 'next week' is not a date or time: write 2026-12-24, ...
    """
    import zoneinfo

    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date or time: write 2026-12-24, 2026-12-24 09:00 "
                         "or 2026-12-24T09:00+01:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return moment.astimezone(dt.UTC)
