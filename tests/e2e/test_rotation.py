"""Triage duty from the command line: the roster check, and the CLI that shows
and changes the rotation."""


from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import pytest

from cocmail import config as config_module
from cocmail.schedule.roster import problems
from cocmail.schedule.rotation import Schedule
from tests.conftest import MEMBERS, run_cli, utc, write_config


def _config(tmp_path: Path, members: list | None = None, **sections: dict) -> Path:
    return write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", sections or None,
                        members=members)


class TestRosterCheck:
    def test_a_sound_roster_passes(self, tmp_path: Path) -> None:
        config = config_module.load(_config(tmp_path))
        now = utc(2026, 11, 25)
        assert problems(config, Schedule(config.rotation), now) == []

    def test_each_problem_is_named(self, tmp_path: Path) -> None:
        members = [("alice", "Alice", "a@x.example", "Acme", ["chair"]),
                   ("bob", "Bob", "A@x.example", "Acme", [])]
        config = config_module.load(_config(tmp_path, members, committee={
            "mediator": "a@x.example"}))
        found = problems(config, Schedule(config.rotation), utc(2026, 11, 25))
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
