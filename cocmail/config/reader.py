"""Reading one TOML table of the config: typed getters that name the dotted key
on error, a check that no key was left unread, and the parsers of the values
that are more than a TOML type (an address, a time zone, a hand-off time, a
listen list, a path or database URL relative to the config file)."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from cocmail.config.units import Endpoint, parse_endpoint
from cocmail.errors import ConfigError
from cocmail.syntax import ADDRESS

T = TypeVar("T")

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


_MISSING: Any = object()


class Table:
    """One TOML table being read: typed getters that name the dotted key on error,
    and a final check that no key was left unread."""

    def __init__(self, data: object, key: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(key, "must be a table")
        self.data: dict[str, Any] = data
        self.key = key
        self._read: set[str] = set()

    def _path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def get(self, name: str, kind: type[T], default: Any = _MISSING) -> T:
        self._read.add(name)
        if name not in self.data:
            if default is _MISSING:
                raise ConfigError(self._path(name), "missing")
            return default  # type: ignore[no-any-return]
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(self._path(name), f"must be a {kind.__name__}")
        return value

    def convert(self, name: str, parse: Callable[[Any], T], default: Any = _MISSING) -> T:
        self._read.add(name)
        if name not in self.data:
            if default is _MISSING:
                raise ConfigError(self._path(name), "missing")
            return default  # type: ignore[no-any-return]
        try:
            return parse(self.data[name])
        except ValueError as exc:
            raise ConfigError(self._path(name), str(exc)) from None

    def table(self, name: str, required: bool = True) -> Table:
        self._read.add(name)
        if name not in self.data:
            if required:
                raise ConfigError(self._path(name), "missing section")
            return Table({}, self._path(name))
        return Table(self.data[name], self._path(name))

    def tables(self, name: str) -> Iterator[Table]:
        self._read.add(name)
        items = self.data.get(name, [])
        if not isinstance(items, list):
            raise ConfigError(self._path(name), "must be a list of tables")
        for index, item in enumerate(items):
            yield Table(item, f"{self._path(name)}[{index}]")

    def done(self) -> None:
        for name in self.data:
            if name not in self._read:
                raise ConfigError(self._path(name), "unknown key")


def email(value: object) -> str:
    if not isinstance(value, str) or not ADDRESS.fullmatch(value.strip()):
        raise ValueError("not an email address")
    return value.strip()


def timezone(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


def handoff(value: object) -> tuple[int, dt.time]:
    if not isinstance(value, str):
        raise ValueError('must be like "monday 09:00"')
    match = re.fullmatch(r"\s*([a-z]+)\s+(\d{1,2}):(\d{2})\s*", value.lower())
    if match is None or match.group(1) not in _WEEKDAYS:
        raise ValueError('must be a weekday and a time, like "monday 09:00"')
    hour, minute = int(match.group(2)), int(match.group(3))
    if hour > 23 or minute > 59:
        raise ValueError("time out of range")
    return _WEEKDAYS.index(match.group(1)), dt.time(hour, minute)


def time_of_day(value: object) -> dt.time:
    if not isinstance(value, str):
        raise ValueError('must be a time like "08:00"')
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", value)
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError('must be a time like "08:00"')
    return dt.time(int(match.group(1)), int(match.group(2)))


def listen_list(value: object) -> tuple[Endpoint, ...]:
    if not isinstance(value, list):
        raise ValueError("must be a list of host:port strings")
    return tuple(parse_endpoint(item) for item in value)


def path_under(base: Path) -> Callable[[object], Path]:
    def parse(value: object) -> Path:
        if not isinstance(value, str) or not value:
            raise ValueError("must be a path")
        path = Path(value)
        return path if path.is_absolute() else base / path

    return parse


def directory_under(base: Path) -> Callable[[object], Path]:
    """A path (``path_under``'s) that must be a directory that exists."""
    def parse(value: object) -> Path:
        path = path_under(base)(value)
        if not path.is_dir():
            raise ValueError(f"{path} is not a directory" if path.exists()
                             else f"{path} does not exist")
        return path

    return parse


def at_least(least: dt.timedelta, parse: Callable[[object], dt.timedelta]
             ) -> Callable[[object], dt.timedelta]:
    """A duration ``parse`` reads, refused when shorter than ``least``."""
    def checked(value: object) -> dt.timedelta:
        duration = parse(value)
        if duration < least:
            raise ValueError(f"must be at least {int(least.total_seconds())}s, not {value}")
        return duration

    return checked


def database_url(base: Path) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
            relative = value[len("sqlite:///"):]
            if relative and relative != ":memory:":
                return f"sqlite:///{base / relative}"
            return value
        if value.startswith("sqlite:"):
            return value
        if value.startswith("postgresql://"):
            # SQLAlchemy's bare postgresql:// means psycopg2; cocmail ships psycopg 3.
            return "postgresql+psycopg://" + value[len("postgresql://"):]
        if value.startswith("postgresql+psycopg://"):
            return value
        raise ValueError("must start with sqlite:/// or postgresql://")

    return parse
