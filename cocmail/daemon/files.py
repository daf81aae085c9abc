"""Files cocmail writes are private: every command runs under umask 077, so the
database, the maildir of outgoing mail and the key files are the user's alone
(0600, folders 0700); at start, those that exist readable by others are named."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import make_url

from cocmail.config import Config

UMASK = 0o077
# Mails in the maildir looked at for the warning: enough to tell, not a walk of years.
_MAILS_LOOKED_AT = 2000


def private() -> None:
    """From now on, what this process creates is the user's alone."""
    os.umask(UMASK)


def shared(config: Config) -> list[str]:
    """The files and folders of cocmail's state that others than its user can read
    (or write): each named, the mails of the maildir counted by folder."""
    found = []
    for path in _state(config):
        if _open_to_others(path):
            found.append(str(path))
    maildir = config.delivery.maildir
    if config.delivery.method == "maildir" and maildir is not None:
        for sub in ("tmp", "new", "cur"):
            folder = maildir / sub
            count = sum(1 for mail in _mails(folder) if _open_to_others(mail))
            if count:
                found.append(f"{count} mail(s) in {folder}")
    return found


def _state(config: Config) -> Iterator[Path]:
    url = config.database.url
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database)
            yield path
            yield path.with_name(path.name + "-wal")
            yield path.with_name(path.name + "-shm")
    for key_file in (config.secrets.token_key_file, config.secrets.master_key_file):
        if key_file is not None:
            yield key_file
    if config.delivery.method == "maildir" and config.delivery.maildir is not None:
        yield config.delivery.maildir
        for sub in ("tmp", "new", "cur"):
            yield config.delivery.maildir / sub


def _mails(folder: Path) -> Iterator[Path]:
    try:
        with os.scandir(folder) as entries:
            for count, entry in enumerate(entries):
                if count >= _MAILS_LOOKED_AT:
                    return
                yield Path(entry.path)
    except OSError:
        return


def _open_to_others(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False  # not there (yet): it is made private
    return bool(stat.S_IMODE(mode) & 0o077)
