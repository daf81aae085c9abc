"""The master keys: where they come from, and which one is current.

A master key is never in the database. It comes from the environment variable
``secrets.master_key_env``, else from what ``secrets.master_key_command`` prints
(a KMS or a secret manager), else from ``secrets.master_key_file`` (made with
mode 0600 on the first start of an empty database, like the token key). Each
holds one key per line, 64 hex digits, the current one first; the lines after
it are earlier keys, still needed while ``cocmail keys rotate`` re-wraps what
they wrapped. A key's id (12 hex digits derived from it) is stored beside
everything it wraps, so a key that is missing is named, not guessed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cocmail.config import Config
from cocmail.errors import ConfigError
from cocmail.keys import cipher


@dataclass(frozen=True)
class MasterKeys:
    """The current master key and every earlier one still given."""

    current: str  # its id
    keys: dict[str, bytes]  # id -> key, the current one included
    source: str = "secrets.master_key_file"  # the config key that gave them

    @property
    def key(self) -> bytes:
        return self.keys[self.current]

    def get(self, key_id: str) -> bytes:
        """The key with id ``key_id``; ``KeyError`` naming it when it is not given."""
        try:
            return self.keys[key_id]
        except KeyError:
            raise KeyError(f"master key {key_id} is not among the keys given "
                           f"({', '.join(self.keys)})") from None


def key_id(key: bytes) -> str:
    """The id stored beside what ``key`` wraps: a keyed hash, so it tells nothing
    of the key."""
    return cipher.derive(key, "master key id")[:6].hex()


def parse(text: str, source: str) -> MasterKeys:
    """The keys in ``text`` (one per line, hex, current first); ``ValueError``
    saying what is wrong with ``source``.

    >>> keys = parse("00" * 32 + "\\n" + "11" * 32 + "\\n", "the file")
    >>> keys.current == key_id(bytes(32)) and len(keys.keys)
    2
    """
    found: dict[str, bytes] = {}
    for number, line in enumerate(text.split(), start=1):
        try:
            key = bytes.fromhex(line)
        except ValueError:
            raise ValueError(f"{source}: key {number} is not hex") from None
        if len(key) != cipher.KEY_BYTES:
            raise ValueError(f"{source}: key {number} is {len(key)} bytes, "
                             f"not {cipher.KEY_BYTES}")
        found.setdefault(key_id(key), key)
    if not found:
        raise ValueError(f"{source} holds no key")
    return MasterKeys(next(iter(found)), found)


def load(config: Config, *, may_create: bool = False) -> MasterKeys:
    """The master keys the config names. A missing key file is made only when
    ``may_create`` (a database that holds nothing yet): otherwise what the store
    holds was wrapped by a key that is not there, and a new key would read none
    of it."""
    secrets = config.secrets
    from_env = os.environ.get(secrets.master_key_env)
    if from_env:
        return _parsed("secrets.master_key_env", from_env, f"${secrets.master_key_env}")
    if secrets.master_key_command:
        return _parsed("secrets.master_key_command", _run(secrets.master_key_command),
                       "the command's output")
    path = secrets.master_key_file
    if path is None:
        raise ConfigError("secrets.master_key_file",
                          f"missing, and ${secrets.master_key_env} is unset")
    if not path.exists() and not may_create:
        raise ConfigError(
            "secrets.master_key_file",
            f"{path} does not exist, and the database holds what was encrypted with it: "
            f"restore the file (or set ${secrets.master_key_env})")
    try:
        return _parsed("secrets.master_key_file", _read_or_create(path), str(path))
    except OSError as exc:
        raise ConfigError("secrets.master_key_file", f"{path}: {exc.strerror}") from None


def _parsed(config_key: str, text: str, source: str) -> MasterKeys:
    try:
        keys = parse(text, source)
    except ValueError as exc:
        raise ConfigError(config_key, str(exc)) from None
    return MasterKeys(keys.current, keys.keys, config_key)


def _run(command: str, timeout: float = 30) -> str:
    try:
        done = subprocess.run(shlex.split(command), capture_output=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError("secrets.master_key_command", f"cannot run: {exc}") from None
    if done.returncode != 0:
        raise ConfigError("secrets.master_key_command", f"exited {done.returncode}")
    return done.stdout.decode(errors="replace")


def _read_or_create(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return path.read_text()
        with os.fdopen(fd, "w") as fh:
            fh.write(cipher.new_key().hex() + "\n")
        return path.read_text()


def add_key(config: Config) -> str:
    """A new master key, first in the key file (the earlier ones kept after it,
    to open what they wrapped until it is re-wrapped); its id. Only the file can
    be written: a key from the environment or a command is changed there."""
    secrets = config.secrets
    if os.environ.get(secrets.master_key_env) or secrets.master_key_command:
        source = (f"${secrets.master_key_env}" if os.environ.get(secrets.master_key_env)
                  else "secrets.master_key_command")
        raise ConfigError(source, "cocmail cannot write a new master key there: put a new "
                          "key (64 hex digits, e.g. from `openssl rand -hex 32`) first, "
                          "keep the old one after it, and run `cocmail keys rotate` again")
    path = secrets.master_key_file
    if path is None:
        raise ConfigError("secrets.master_key_file", "missing")
    before = path.read_text()
    key = cipher.new_key()
    staged = path.with_name(path.name + ".new")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n" + before)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(staged, path)  # whole or not at all: the old keys are never lost
    return key_id(key)
