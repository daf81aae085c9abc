"""Triage duty in process: the rotation of two, hand-offs across DST changes, and
overrides."""


from __future__ import annotations

import datetime as dt
import itertools

import pytest

from cocmail.config import Rotation
from cocmail.schedule.rotation import Override, OverrideRefused, Schedule, local_instant
from tests.conftest import utc

ORDER = ("alice", "bob", "carol", "dave", "erin")


def _rotation(zone: str = "UTC", weekday: int = 0, time: dt.time = dt.time(9)) -> Rotation:
    return Rotation(timezone=zone, handoff_weekday=weekday, handoff_time=time, order=ORDER)




class TestShifts:
    def test_two_on_duty_and_one_seat_changes_at_each_handoff(self) -> None:
        schedule = Schedule(_rotation())
        start = utc(2026, 11, 23, 9)  # a Monday, at the hand-off
        pairs = [schedule.on_duty(start + dt.timedelta(weeks=w, hours=1)) for w in range(10)]
        for before, after in itertools.pairwise(pairs):
            assert len(set(after)) == 2
            assert len(set(before) & set(after)) == 1  # someone stays on
        # Everyone serves, equally: two weeks in every five.
        served = [h for pair in pairs for h in pair]
        assert sorted(set(served)) == sorted(ORDER)
        assert all(served.count(h) == 4 for h in ORDER)

    def test_the_handoff_is_at_the_configured_instant(self) -> None:
        schedule = Schedule(_rotation())
        monday = utc(2026, 11, 23, 9)
        before = schedule.on_duty(monday - dt.timedelta(seconds=1))
        assert schedule.on_duty(monday) != before
        assert schedule.on_duty(monday + dt.timedelta(days=6, hours=23)) == schedule.on_duty(
            monday)

    def test_local_handoff_time_holds_in_summer_and_winter(self) -> None:
        schedule = Schedule(_rotation("Europe/Berlin"))
        winter = schedule.handoff(schedule.shift_index(utc(2026, 1, 14)) + 1)
        summer = schedule.handoff(schedule.shift_index(utc(2026, 7, 15)) + 1)
        assert (winter.hour, summer.hour) == (8, 7)  # 09:00 CET and 09:00 CEST
        assert winter.weekday() == summer.weekday() == 0

    def test_a_handoff_in_the_skipped_hour_moves_to_when_the_clocks_jump(self) -> None:
        # Sunday 29 March 2026, Berlin: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        schedule = Schedule(_rotation("Europe/Berlin", weekday=6, time=dt.time(2, 30)))
        jump = utc(2026, 3, 29, 1)
        assert jump in {schedule.handoff(k) for k in range(100, 200)}
        assert schedule.on_duty(jump - dt.timedelta(seconds=1)) != schedule.on_duty(jump)
        assert local_instant(dt.date(2026, 3, 29), dt.time(2, 0),
                             schedule.zone) == jump  # the gap's first minute too

    def test_a_handoff_in_the_repeated_hour_is_at_its_first_occurrence(self) -> None:
        # Sunday 25 October 2026, Berlin: 02:00-03:00 happens twice; 02:30 CEST is 00:30 UTC.
        schedule = Schedule(_rotation("Europe/Berlin", weekday=6, time=dt.time(2, 30)))
        first = utc(2026, 10, 25, 0, 30)
        assert first in {schedule.handoff(k) for k in range(100, 200)}
        assert schedule.on_duty(first - dt.timedelta(seconds=1)) != schedule.on_duty(first)
        # The second 02:30 (CET, 01:30 UTC) is no hand-off: the same pair holds.
        assert schedule.on_duty(utc(2026, 10, 25, 1, 30)) == schedule.on_duty(first)

    @pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York",
                                      "Australia/Lord_Howe"])
    def test_shifts_and_on_duty_agree_over_a_year(self, zone: str) -> None:
        schedule = Schedule(_rotation(zone))
        midweek = utc(2026, 3, 4, 12)  # a Wednesday: two days stay inside one shift
        pair = schedule.on_duty(midweek)
        stand_in = next(h for h in ORDER if h not in pair)
        schedule = schedule.with_override(
            Override(stand_in, pair[0], midweek, midweek + dt.timedelta(days=2)))
        start = utc(2026, 1, 1)
        shifts = schedule.shifts(start, start + dt.timedelta(weeks=52))
        assert shifts[0].start == start and shifts[-1].end == start + dt.timedelta(weeks=52)
        for shift, following in itertools.pairwise(shifts):
            assert shift.end == following.start and shift.on_duty != following.on_duty
        for shift in shifts:
            for moment in (shift.start, shift.end - dt.timedelta(seconds=1)):
                assert schedule.on_duty(moment) == shift.on_duty
            assert len(set(shift.on_duty)) == 2


class TestOverrides:
    def test_an_override_takes_one_seat_for_its_range(self) -> None:
        schedule = Schedule(_rotation())
        moment = utc(2026, 12, 2, 12)
        first, second = schedule.on_duty(moment)
        stand_in = next(h for h in ORDER if h not in (first, second)
                        and h not in schedule.on_duty(moment + dt.timedelta(weeks=1)))
        changed = schedule.with_override(Override(stand_in, first, moment,
                                                  moment + dt.timedelta(hours=6)))
        assert changed.on_duty(moment + dt.timedelta(hours=1)) == (stand_in, second)
        assert changed.on_duty(moment + dt.timedelta(hours=6)) == (first, second)
        assert changed.on_duty(moment - dt.timedelta(seconds=1)) == (first, second)

    def test_the_same_person_in_both_seats_is_refused(self) -> None:
        schedule = Schedule(_rotation())
        moment = utc(2026, 12, 2, 12)
        first, second = schedule.on_duty(moment)
        with pytest.raises(OverrideRefused, match="would hold both seats"):
            schedule.with_override(Override(second, first, moment,
                                            moment + dt.timedelta(hours=1)))

    def test_an_override_reaching_into_a_shift_where_the_stand_in_is_on_duty_is_refused(
            self) -> None:
        schedule = Schedule(_rotation())
        moment = utc(2026, 12, 2, 12)
        first, _ = schedule.on_duty(moment)
        # Whoever takes the next seat would hold both seats next week.
        nxt = [h for h in schedule.on_duty(moment + dt.timedelta(weeks=1)) if h != first]
        with pytest.raises(OverrideRefused, match="fewer than two people"):
            schedule.with_override(Override(nxt[0], first, moment,
                                            moment + dt.timedelta(weeks=2)))

    @pytest.mark.parametrize("member, instead_of, hours, reason", [
        ("alice", "alice", 1, "for themselves"),
        ("erin", "bob", -1, "ends before it starts"),
    ])
    def test_nonsense_is_refused(self, member: str, instead_of: str, hours: int,
                                 reason: str) -> None:
        moment = utc(2026, 12, 2, 12)
        with pytest.raises(OverrideRefused, match=reason):
            Schedule(_rotation()).with_override(
                Override(member, instead_of, moment, moment + dt.timedelta(hours=hours)))

    def test_standing_in_for_someone_not_on_duty_is_refused(self) -> None:
        schedule = Schedule(_rotation())
        moment = utc(2026, 12, 2, 12)
        off = [h for h in ORDER if h not in schedule.on_duty(moment)]
        with pytest.raises(OverrideRefused, match="is not on duty"):
            schedule.with_override(Override(off[0], off[1], moment,
                                            moment + dt.timedelta(hours=1)))


