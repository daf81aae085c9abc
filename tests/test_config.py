"""Config: the example runs as it is; every bad value is one line naming the key, exit 2."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cocmail import config as config_module
from cocmail.errors import ConfigError
from tests.conftest import ROOT, run_cli, write_config


def test_example_config_loads() -> None:
    config = config_module.load(ROOT / "config.example.toml")
    assert config.committee.address == "conduct@example.org"
    assert config.smtp.listen[0].port == 8025
    assert config.database.url == f"sqlite:///{ROOT / 'var' / 'cocmail.db'}"
    assert config.sla.first_response == dt.timedelta(days=3)
    assert [s.notify for s in config.sla.escalation] == ["on-duty", "committee", "chair"]
    assert config.delivery.method == "maildir"
    assert config.secrets.token_key_file == ROOT / "var" / "token.key"


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
])
def test_bad_value_is_one_line_and_exit_2(tmp_path: Path, section: str,
                                          values: dict[str, object], message: str) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db'}", {section: values})
    result = run_cli(config, "cases", "list")
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.count("\n") == 1, err
    assert err.startswith("cocmail: config: " + message), err


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "nope.toml", "cases", "list")
    assert result.returncode == 2
    assert b"nope.toml" in result.stderr


def test_invalid_toml_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[committee\n")
    result = run_cli(path, "cases", "list")
    assert result.returncode == 2 and b"not valid TOML" in result.stderr


def test_member_email_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"committee.members\[0\].email: not an email"):
        config_module.from_dict({
            "committee": {"name": "x", "short_name": "c", "address": "c@x.example",
                          "members": [{"handle": "a", "name": "A", "email": "nope"}]},
        }, tmp_path / "c.toml")


def test_token_key_file_is_created_0600(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from cocmail.route import tokens

    config = config_module.load(write_config(tmp_path, "sqlite:///x.db"))
    monkeypatch.delenv(config.secrets.token_key_env, raising=False)  # put back after
    key = tokens.load_key(config, may_create=True)  # a database with no case yet
    path = config.secrets.token_key_file
    assert path is not None and path.stat().st_mode & 0o777 == 0o600
    assert tokens.load_key(config) == key and len(key) == 64
