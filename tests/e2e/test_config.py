"""Config mistakes seen from the command line: one line naming the key, exit 2."""


from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MEMBERS, run_cli, write_config


@pytest.mark.parametrize("section, values, message", [
    ("committee", {"address": "not-an-address"}, "committee.address: not an email address"),
    ("committee", {"plus_separator": "ab"}, "committee.plus_separator: must be one punctuation"),
    ("smtp", {"max_message_size": "lots"}, "smtp.max_message_size: not a size"),
    ("smtp", {"listen": ["localhost"]}, "smtp.listen: not host:port"),
    ("sla", {"first_response": "3 fortnights"}, "sla.first_response: not a duration"),
    ("database", {"url": "mysql://x"}, "database.url: must start with"),
    ("database", {"pool_size": 0}, "database.pool_size: must be between 1 and 100"),
    ("delivery", {"method": "carrier-pigeon"}, "delivery.method: must be"),
    ("smtp", {"lisen": []}, "smtp.lisen: unknown key"),
    ("rotation", {"order": ["zed"]}, "rotation.order: 'zed' is not a committee member"),
    ("rotation", {"handoff": "someday 9"}, "rotation.handoff: must be a weekday"),
    ("http", {"listen": 8026}, "http.listen: not a host:port string"),
    # A bare number is a guess at its unit: 25 bytes was never what was meant.
    ("smtp", {"max_message_size": 25},
     'smtp.max_message_size: a bare number, 25: give its unit, like "25MB" or "25KB"'),
    ("smtp", {"max_message_size": "25"}, "smtp.max_message_size: not a size like 25MB"),
    ("sla", {"first_response": 3600},
     'sla.first_response: a bare number, 3600: give its unit, like "3600s" or "3600m"'),
    ("scheduler", {"tick": "0s"}, "scheduler.tick: must be at least 1s, not 0s"),
    ("templates", {"directory": "/nonexistent/templates"},
     "templates.directory: /nonexistent/templates does not exist"),
    ("rotation", {"order": ["alice", "alice"]},
     "rotation.order: needs at least two members: two are on duty at a time"),
])
def test_bad_value_is_one_line_and_exit_2(tmp_path: Path, section: str,
                                          values: dict[str, object], message: str) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db'}", {section: values})
    result = run_cli(config, "cases", "list")
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.count("\n") == 1, err
    assert err.startswith("cocmail: config: " + message), err


def test_an_unknown_role_is_one_line_and_exit_2(tmp_path: Path) -> None:
    members = [(*MEMBERS[0][:4], ["chiar"]), *MEMBERS[1:]]
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db'}", members=members)
    result = run_cli(config, "cases", "list")
    assert (result.returncode, result.stderr.decode()) == (
        2, "cocmail: config: committee.members[0].roles: 'chiar' is not a role (roles: chair)\n")


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "nope.toml", "cases", "list")
    assert result.returncode == 2
    assert b"nope.toml" in result.stderr


def test_invalid_toml_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[committee\n")
    result = run_cli(path, "cases", "list")
    assert result.returncode == 2 and b"not valid TOML" in result.stderr
