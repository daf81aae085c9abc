"""Config loading in process: the example loads as it is, a member's address is
checked, and the token key file is made 0600."""


from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cocmail import config as config_module
from cocmail.errors import ConfigError
from tests.conftest import ROOT, write_config


def test_example_config_loads() -> None:
    config = config_module.load(ROOT / "config.example.toml")
    assert config.committee.address == "conduct@example.org"
    assert config.smtp.listen[0].port == 8025
    assert config.database.url == f"sqlite:///{ROOT / 'var' / 'cocmail.db'}"
    assert config.sla.first_response == dt.timedelta(days=3)
    assert [s.notify for s in config.sla.escalation] == ["on-duty", "committee", "chair"]
    assert config.delivery.method == "maildir"
    assert config.secrets.token_key_file == ROOT / "var" / "token.key"
    assert config.secrets.master_key_file == ROOT / "var" / "master.key"
    assert (config.logging.level, config.logging.format) == ("info", "text")


@pytest.mark.parametrize("section, values, error", [
    ("logging", {"format": "xml"}, "logging.format: must be text or json"),
    ("secrets", {"master_key_command": 7}, "secrets.master_key_command: must be a str"),
])
def test_a_wrong_value_is_named(tmp_path: Path, section: str, values: dict[str, object],
                                error: str) -> None:
    with pytest.raises(ConfigError, match=f"^{error}$"):
        config_module.load(write_config(tmp_path, "sqlite:///x.db", {section: values}))


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
