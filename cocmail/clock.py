"""Where cocmail reads the time: one clock object, passed to whatever needs "now"."""

from __future__ import annotations

import datetime as dt
import os
from typing import Protocol

# Tests run a daemon at another moment (across a DST change, say) by shifting its
# clock: every process of cocmail reads the same offset, so they agree on "now".
OFFSET_ENV = "COCMAIL_CLOCK_OFFSET"


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real time, shifted by ``$COCMAIL_CLOCK_OFFSET`` seconds when that is set
    (tests only; the daemon logs a warning when it is)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(seconds=float(os.environ.get(OFFSET_ENV) or 0))

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


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
