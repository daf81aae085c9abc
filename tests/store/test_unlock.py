"""Opening the store with the master keys: the key file made once, for a store
with no key yet; every other mistake one line naming where the keys came from."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from cocmail import config as config_module
from cocmail.errors import ConfigError
from cocmail.keys import master
from cocmail.store import migrate
from cocmail.store.db import Store
from cocmail.store.unlock import unlock
from tests.conftest import environment, utc, write_config

NOW = utc(2026, 12, 1, 9)


@pytest.fixture
def fresh(db_url: str, tmp_path: Path) -> Store:
    store = Store(db_url)
    migrate.upgrade(store)
    return store


def _config(tmp_path: Path, db_url: str, **secrets: str) -> config_module.Config:
    return config_module.load(write_config(tmp_path, db_url, {"secrets": secrets}))


def test_a_new_store_makes_its_key_file_once_private(fresh: Store, tmp_path: Path,
                                                     db_url: str) -> None:
    config = _config(tmp_path, db_url)
    path = config.secrets.master_key_file
    assert path is not None and not path.exists()
    unlock(config, fresh, NOW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    made = path.read_text()
    assert len(made.split()) == 1 and len(made.split()[0]) == 64
    again = Store(db_url)
    unlock(config, again, NOW)  # a second process finds the file and the store's keys
    assert path.read_text() == made
    assert again.keyring is not None and fresh.keyring is not None
    assert again.keyring.key("audit") == fresh.keyring.key("audit")


def test_a_store_with_keys_and_no_key_file_does_not_start(fresh: Store, tmp_path: Path,
                                                          db_url: str) -> None:
    config = _config(tmp_path, db_url)
    unlock(config, fresh, NOW)
    assert config.secrets.master_key_file is not None
    config.secrets.master_key_file.rename(tmp_path / "elsewhere.key")
    with pytest.raises(ConfigError, match=r"secrets.master_key_file: .* does not exist"):
        unlock(config, Store(db_url), NOW)
    assert not config.secrets.master_key_file.exists()  # no new key made in its place


def test_another_key_is_refused_naming_where_it_came_from(fresh: Store, tmp_path: Path,
                                                          db_url: str) -> None:
    unlock(_config(tmp_path, db_url), fresh, NOW)
    config = _config(tmp_path, db_url)
    with environment({config.secrets.master_key_env: "ab" * 32}), \
            pytest.raises(ConfigError, match=r"secrets.master_key_env: the audit key does not "
                                             r"open: master key [0-9a-f]{12} is not among"):
        unlock(config, Store(db_url), NOW)


def test_the_keys_may_come_from_a_command_earlier_keys_after_the_current(
        fresh: Store, tmp_path: Path, db_url: str) -> None:
    old, new = "11" * 32, "22" * 32
    with environment({"COCMAIL_MASTER_KEY": old}):
        unlock(_config(tmp_path, db_url), fresh, NOW)
    script = tmp_path / "keys.py"
    script.write_text(f"print({new!r}); print({old!r})\n")
    config = _config(tmp_path, db_url, master_key_command=f"{sys.executable} {script}")
    store = Store(db_url)
    unlock(config, store, NOW)  # the audit key, wrapped by the old key, still opens
    assert store.keyring is not None
    assert store.keyring.master.current == master.key_id(bytes.fromhex(new))


@pytest.mark.parametrize("value, why", [
    ("not-hex", "key 1 is not hex"), ("ab" * 16, "key 1 is 16 bytes, not 32"),
    ("  ", "holds no key")])
def test_a_malformed_key_is_one_line_naming_the_variable(fresh: Store, tmp_path: Path,
                                                         db_url: str, value: str,
                                                         why: str) -> None:
    config = _config(tmp_path, db_url)
    with environment({"COCMAIL_MASTER_KEY": value}), \
            pytest.raises(ConfigError, match=rf"secrets.master_key_env: .*{why}"):
        unlock(config, fresh, NOW)


def test_a_failing_command_is_named(fresh: Store, tmp_path: Path, db_url: str) -> None:
    config = _config(tmp_path, db_url, master_key_command="false")
    with pytest.raises(ConfigError, match=r"secrets.master_key_command: exited 1"):
        unlock(config, fresh, NOW)
    assert os.environ.get("COCMAIL_MASTER_KEY") is None
