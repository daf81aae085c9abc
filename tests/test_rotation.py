"""Triage duty: the rotation of two, hand-offs across DST changes, overrides, the
roster check, and the CLI that shows and changes them."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import pytest

from cocmail import config as config_module
from cocmail.config import Rotation
from cocmail.schedule.roster import problems
from cocmail.schedule.rotation import Override, OverrideRefused, Schedule, local_instant
from tests.conftest import MEMBERS, run_cli, write_config

ORDER = ("alice", "bob", "carol", "dave", "erin")


def _rotation(zone: str = "UTC", weekday: int = 0, time: dt.time = dt.time(9)) -> Rotation:
    return Rotation(timezone=zone, handoff_weekday=weekday, handoff_time=time, order=ORDER)


def _utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


class TestShifts:
    def test_two_on_duty_and_one_seat_changes_at_each_handoff(self) -> None:
        schedule = Schedule(_rotation())
        start = _utc(2026, 11, 23, 9)  # a Monday, at the hand-off
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
        monday = _utc(2026, 11, 23, 9)
        before = schedule.on_duty(monday - dt.timedelta(seconds=1))
        assert schedule.on_duty(monday) != before
        assert schedule.on_duty(monday + dt.timedelta(days=6, hours=23)) == schedule.on_duty(
            monday)

    def test_local_handoff_time_holds_in_summer_and_winter(self) -> None:
        schedule = Schedule(_rotation("Europe/Berlin"))
        winter = schedule.handoff(schedule.shift_index(_utc(2026, 1, 14)) + 1)
        summer = schedule.handoff(schedule.shift_index(_utc(2026, 7, 15)) + 1)
        assert (winter.hour, summer.hour) == (8, 7)  # 09:00 CET and 09:00 CEST
        assert winter.weekday() == summer.weekday() == 0

    def test_a_handoff_in_the_skipped_hour_moves_to_when_the_clocks_jump(self) -> None:
        # Sunday 29 March 2026, Berlin: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        schedule = Schedule(_rotation("Europe/Berlin", weekday=6, time=dt.time(2, 30)))
        jump = _utc(2026, 3, 29, 1)
        assert jump in {schedule.handoff(k) for k in range(100, 200)}
        assert schedule.on_duty(jump - dt.timedelta(seconds=1)) != schedule.on_duty(jump)
        assert local_instant(dt.date(2026, 3, 29), dt.time(2, 0),
                             schedule.zone) == jump  # the gap's first minute too

    def test_a_handoff_in_the_repeated_hour_is_at_its_first_occurrence(self) -> None:
        # Sunday 25 October 2026, Berlin: 02:00-03:00 happens twice; 02:30 CEST is 00:30 UTC.
        schedule = Schedule(_rotation("Europe/Berlin", weekday=6, time=dt.time(2, 30)))
        first = _utc(2026, 10, 25, 0, 30)
        assert first in {schedule.handoff(k) for k in range(100, 200)}
        assert schedule.on_duty(first - dt.timedelta(seconds=1)) != schedule.on_duty(first)
        # The second 02:30 (CET, 01:30 UTC) is no hand-off: the same pair holds.
        assert schedule.on_duty(_utc(2026, 10, 25, 1, 30)) == schedule.on_duty(first)

    @pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York",
                                      "Australia/Lord_Howe"])
    def test_shifts_and_on_duty_agree_over_a_year(self, zone: str) -> None:
        schedule = Schedule(_rotation(zone))
        midweek = _utc(2026, 3, 4, 12)  # a Wednesday: two days stay inside one shift
        pair = schedule.on_duty(midweek)
        stand_in = next(h for h in ORDER if h not in pair)
        schedule = schedule.with_override(
            Override(stand_in, pair[0], midweek, midweek + dt.timedelta(days=2)))
        start = _utc(2026, 1, 1)
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
        moment = _utc(2026, 12, 2, 12)
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
        moment = _utc(2026, 12, 2, 12)
        first, second = schedule.on_duty(moment)
        with pytest.raises(OverrideRefused, match="would hold both seats"):
            schedule.with_override(Override(second, first, moment,
                                            moment + dt.timedelta(hours=1)))

    def test_an_override_reaching_into_a_shift_where_the_stand_in_is_on_duty_is_refused(
            self) -> None:
        schedule = Schedule(_rotation())
        moment = _utc(2026, 12, 2, 12)
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
        moment = _utc(2026, 12, 2, 12)
        with pytest.raises(OverrideRefused, match=reason):
            Schedule(_rotation()).with_override(
                Override(member, instead_of, moment, moment + dt.timedelta(hours=hours)))

    def test_standing_in_for_someone_not_on_duty_is_refused(self) -> None:
        schedule = Schedule(_rotation())
        moment = _utc(2026, 12, 2, 12)
        off = [h for h in ORDER if h not in schedule.on_duty(moment)]
        with pytest.raises(OverrideRefused, match="is not on duty"):
            schedule.with_override(Override(off[0], off[1], moment,
                                            moment + dt.timedelta(hours=1)))


def _config(tmp_path: Path, members: list | None = None, **sections: dict) -> Path:
    return write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", sections or None,
                        members=members)


class TestRosterCheck:
    def test_a_sound_roster_passes(self, tmp_path: Path) -> None:
        config = config_module.load(_config(tmp_path))
        now = _utc(2026, 11, 25)
        assert problems(config, Schedule(config.rotation), now) == []

    def test_each_problem_is_named(self, tmp_path: Path) -> None:
        members = [("alice", "Alice", "a@x.example", "Acme", ["chair"]),
                   ("bob", "Bob", "A@x.example", "Acme", [])]
        config = config_module.load(_config(tmp_path, members, committee={
            "mediator": "a@x.example"}))
        found = problems(config, Schedule(config.rotation), _utc(2026, 11, 25))
        text = "\n".join(found)
        assert "2 member(s); it needs at least three" in text
        assert "a@x.example is the address of 2 members (alice, bob)" in text
        assert "2 of 2 members work for Acme" in text
        assert "the mediator a@x.example is a committee member" in text

    def test_the_cli_exits_1_with_the_problems(self, tmp_path: Path) -> None:
        members = [*MEMBERS[:2], ("carol", "Carol", "carol@m.example", "Acme", []),
                   ("dave", "Dave", "dave@m.example", "Acme", []),
                   ("erin", "Erin", "erin@m.example", "Acme", [])]
        config = _config(tmp_path, members)
        assert run_cli(config, "db", "upgrade").returncode == 0
        result = run_cli(config, "roster", "check")
        assert result.returncode == 1
        assert b"problem: 4 of 5 members work for Acme" in result.stdout
        good = _config(tmp_path)
        result = run_cli(good, "roster", "check", "--json")
        assert result.returncode == 0 and json.loads(result.stdout) == {"ok": True,
                                                                          "problems": []}


class TestRotationCli:
    def test_show_add_list_remove(self, tmp_path: Path) -> None:
        config = _config(tmp_path, rotation={"handoff": "monday 09:00",
                                             "timezone": "Europe/Berlin"})
        assert run_cli(config, "db", "upgrade").returncode == 0
        shifts = json.loads(run_cli(config, "rotation", "show", "--weeks", "3",
                                    "--json").stdout)
        assert 3 <= len(shifts) <= 4
        for shift, following in itertools.pairwise(shifts):
            assert shift["end"] == following["start"]
        assert all(len(set(s["on_duty"])) == 2 for s in shifts)
        start = dt.datetime.fromisoformat(shifts[0]["start"].replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(shifts[-1]["end"].replace("Z", "+00:00"))
        assert dt.timedelta(weeks=3) - dt.timedelta(seconds=1) <= end - start

        # Put the member off duty in the second shift on in place of one on duty.
        second = shifts[1]
        off = next(m[0] for m in MEMBERS if m[0] not in second["on_duty"])
        result = run_cli(config, "rotation", "override", "add", "--member", off,
                         "--instead-of", second["on_duty"][0], "--from", second["start"],
                         "--to", second["end"], "--reason", "holiday")
        assert result.returncode == 0, result.stderr
        again = json.loads(run_cli(config, "rotation", "show", "--weeks", "3",
                                   "--json").stdout)
        changed = next(s for s in again if s["start"] == second["start"])
        assert changed["on_duty"] == [off, second["on_duty"][1]]
        [row] = json.loads(run_cli(config, "rotation", "override", "list", "--json").stdout)
        assert (row["member"], row["reason"]) == (off, "holiday")
        assert run_cli(config, "rotation", "override", "remove", str(row["id"])).returncode == 0
        assert json.loads(run_cli(config, "rotation", "override", "list",
                                  "--json").stdout) == []

    def test_a_refused_override_says_why_and_changes_nothing(self, tmp_path: Path) -> None:
        config = _config(tmp_path)
        assert run_cli(config, "db", "upgrade").returncode == 0
        [shift, *_] = json.loads(run_cli(config, "rotation", "show", "--json").stdout)
        first, second = shift["on_duty"]
        result = run_cli(config, "rotation", "override", "add", "--member", second,
                         "--instead-of", first, "--from", shift["start"], "--to", shift["end"])
        assert result.returncode == 1
        assert b"override refused" in result.stderr and b"both seats" in result.stderr
        assert json.loads(run_cli(config, "rotation", "override", "list",
                                  "--json").stdout) == []

    @pytest.mark.parametrize("args, message", [
        (["--member", "zed", "--instead-of", "alice", "--from", "2030-01-01", "--to",
          "2030-01-02"], b"'zed' is not a committee member"),
        (["--member", "bob", "--instead-of", "alice", "--from", "soon", "--to",
          "2030-01-02"], b"'soon' is not a date or time"),
        (["--member", "bob", "--instead-of", "alice", "--from", "2020-01-01", "--to",
          "2020-01-02"], b"already be over"),
    ])
    def test_bad_arguments_are_exit_2(self, tmp_path: Path, args: list[str],
                                      message: bytes) -> None:
        config = _config(tmp_path)
        assert run_cli(config, "db", "upgrade").returncode == 0
        result = run_cli(config, "rotation", "override", "add", *args)
        assert result.returncode == 2 and message in result.stderr
