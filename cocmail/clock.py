"""Where cocmail reads the time: one clock object, passed to whatever needs "now"."""

from __future__ import annotations

import datetime as dt
import os
from typing import Protocol

# Tests run a daemon at another moment (across a DST change, say) by shifting its
# clock: every process of cocmail reads the same offset, so they agree on "now".
OFFSET_ENV = "COCMAIL_CLOCK_OFFSET"
# And move it on while it runs (an escalation's hours in no time): the file named
# here holds seconds to add, read again whenever it is replaced.
MOVED_ENV = "COCMAIL_CLOCK_FILE"


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real time, shifted by ``$COCMAIL_CLOCK_OFFSET`` seconds and by the seconds
    in the file ``$COCMAIL_CLOCK_FILE`` names, when those are set (tests only; the
    daemon logs a warning when they are)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(seconds=float(os.environ.get(OFFSET_ENV) or 0))
        self.moved_by = os.environ.get(MOVED_ENV) or None
        self._moved: tuple[tuple[int, int, int] | None, dt.timedelta] = (None, dt.timedelta())

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset + self._moved_now()

    def _moved_now(self) -> dt.timedelta:
        if self.moved_by is None:
            return dt.timedelta()
        try:
            seen = os.stat(self.moved_by)
        except FileNotFoundError:
            return dt.timedelta()
        version = (seen.st_ino, seen.st_mtime_ns, seen.st_size)
        if version != self._moved[0]:
            with open(self.moved_by) as moved:
                self._moved = (version, dt.timedelta(seconds=float(moved.read() or 0)))
        return self._moved[1]


def move_clock(path: str, seconds: float) -> None:
    """Move the clocks that read ``path`` (``$COCMAIL_CLOCK_FILE``) on by ``seconds``,
    replacing the file at once, so that no reader sees it half written."""
    try:
        with open(path) as moved:
            seconds += float(moved.read() or 0)
    except FileNotFoundError:
        pass
    with open(path + ".new", "w") as new:
        new.write(repr(seconds))
    os.replace(path + ".new", path)


class FixedClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = start

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta
