"""Who is on triage duty at any instant: the rotation of two, with overrides.

The rotation is the ordered list ``rotation.order``. Shifts run from one
hand-off to the next (a weekday and a local time in ``rotation.timezone``);
shift ``k`` is held by ``order[k % n]`` and ``order[(k + 1) % n]``, so each
member serves two shifts in a row and every hand-off changes one seat of two:
someone who saw last week's reports is always still on duty.

Hand-offs are local times, converted to instants one by one, so a DST change
moves nothing: "monday 09:00" is 09:00 on the wall clock in winter and in
summer. A hand-off at a local time that does not exist (the hour the clocks
skip) happens at the first instant after the gap, when the clocks jump; one
that exists twice (the hour repeated when clocks go back) happens at its first
occurrence.

An override puts member A on duty instead of member B for a time range (a
holiday, a swap). ``on_duty(t)`` is the one answer to "who is on duty at t":
pages, hand-offs and ``cocmail rotation show`` all ask it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cocmail.config import Rotation

# Shift 0 begins at the first hand-off on or after this local date.
EPOCH = dt.date(2024, 1, 1)


@dataclass(frozen=True)
class Override:
    member: str
    instead_of: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    id: int | None = None

    def active(self, moment: dt.datetime) -> bool:
        return self.starts_at <= moment < self.ends_at


@dataclass(frozen=True)
class Shift:
    start: dt.datetime
    end: dt.datetime
    on_duty: tuple[str, ...]


class OverrideRefused(ValueError):
    """An override that would break the rotation's promise of two people on duty."""


def local_instant(day: dt.date, time: dt.time, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The instant (UTC) of wall-clock ``time`` on ``day`` in ``zone``.

    A time in the gap of a spring-forward change becomes the first instant after
    the gap; a time repeated in autumn is its first occurrence.

    >>> berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    >>> local_instant(dt.date(2026, 3, 29), dt.time(2, 30), berlin).isoformat()
    '2026-03-29T01:00:00+00:00'
    >>> local_instant(dt.date(2026, 10, 25), dt.time(2, 30), berlin).isoformat()
    '2026-10-25T00:30:00+00:00'
    >>> local_instant(dt.date(2026, 7, 6), dt.time(9, 0), berlin).isoformat()
    '2026-07-06T07:00:00+00:00'
    """
    naive = dt.datetime.combine(day, time)
    first = naive.replace(tzinfo=zone, fold=0)
    as_utc = first.astimezone(dt.UTC)
    if as_utc.astimezone(zone).replace(tzinfo=None) == naive:
        return as_utc  # it exists (fold=0 is the first of two, when repeated)
    # In a gap: the clocks jump between (naive - offset after) and (naive - offset
    # before). Find the jump to the second.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(dt.UTC)
    high = as_utc
    if low > high:
        low, high = high, low
    after = high.astimezone(zone).utcoffset()
    while (high - low) > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


class Schedule:
    def __init__(self, rotation: Rotation, overrides: Iterable[Override] = ()) -> None:
        if len(rotation.order) < 2:
            raise ValueError("the rotation needs at least two members")
        self.rotation = rotation
        self.zone = zoneinfo.ZoneInfo(rotation.timezone)
        self.overrides = sorted(overrides, key=lambda o: (o.starts_at, o.id or 0))
        first = EPOCH + dt.timedelta(days=(rotation.handoff_weekday - EPOCH.weekday()) % 7)
        self._first_handoff_day = first

    # -- the hand-offs ------------------------------------------------------

    def handoff(self, k: int) -> dt.datetime:
        """The instant shift ``k`` begins."""
        day = self._first_handoff_day + dt.timedelta(weeks=k)
        return local_instant(day, self.rotation.handoff_time, self.zone)

    def shift_index(self, moment: dt.datetime) -> int:
        """The shift that holds ``moment``."""
        local_day = moment.astimezone(self.zone).date()
        k = (local_day - self._first_handoff_day).days // 7
        while self.handoff(k) > moment:
            k -= 1
        while self.handoff(k + 1) <= moment:
            k += 1
        return k

    def base_pair(self, k: int) -> tuple[str, str]:
        order = self.rotation.order
        return order[k % len(order)], order[(k + 1) % len(order)]

    # -- who is on duty -----------------------------------------------------

    def on_duty(self, moment: dt.datetime) -> tuple[str, ...]:
        """The members on duty at ``moment``, overrides applied, in seat order."""
        seats = list(self.base_pair(self.shift_index(moment)))
        for override in self.overrides:
            if override.active(moment):
                seats = [override.member if h == override.instead_of else h for h in seats]
        return tuple(seats)

    def shifts(self, start: dt.datetime, end: dt.datetime) -> list[Shift]:
        """The stretches between ``start`` and ``end`` with one pair on duty each:
        split at every hand-off and at every override's start and end."""
        edges = {start, end}
        k = self.shift_index(start)
        while self.handoff(k + 1) < end:
            k += 1
            edges.add(self.handoff(k))
        for override in self.overrides:
            for edge in (override.starts_at, override.ends_at):
                if start < edge < end:
                    edges.add(edge)
        ordered = sorted(edges)
        result: list[Shift] = []
        for left, right in itertools.pairwise(ordered):
            pair = self.on_duty(left)
            if result and result[-1].on_duty == pair and result[-1].end == left:
                result[-1] = Shift(result[-1].start, right, pair)
            else:
                result.append(Shift(left, right, pair))
        return result

    def with_override(self, override: Override) -> Schedule:
        """This schedule with ``override`` added, or ``OverrideRefused`` saying why."""
        if override.member == override.instead_of:
            raise OverrideRefused(f"{override.member} cannot stand in for themselves")
        if override.ends_at <= override.starts_at:
            raise OverrideRefused("the override ends before it starts")
        candidate = Schedule(self.rotation, [*self.overrides, override])
        covered = False
        for shift in candidate.shifts(override.starts_at, override.ends_at):
            before = self.on_duty(shift.start)
            if override.instead_of in before:
                covered = True
            if len(set(shift.on_duty)) < 2:
                raise OverrideRefused(
                    f"from {_utc(shift.start)} {override.member} would hold both seats: "
                    "fewer than two people on duty")
        if not covered:
            raise OverrideRefused(
                f"{override.instead_of} is not on duty between {_utc(override.starts_at)} "
                f"and {_utc(override.ends_at)}")
        return candidate


def _utc(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def weeks_with_too_few(schedule: Schedule, start: dt.datetime, weeks: int,
                       members: Sequence[str]) -> list[Shift]:
    """Stretches in the next ``weeks`` with fewer than two distinct members of the
    committee on duty (``roster check``)."""
    known = set(members)
    return [shift for shift in schedule.shifts(start, start + dt.timedelta(weeks=weeks))
            if len(set(shift.on_duty) & known) < 2]
