"""What a process does with the store before it writes: the master keys read and
the store's own keys opened with them; the history written before it was a hash
chain chained (a store upgraded from an earlier cocmail)."""

from __future__ import annotations

import datetime as dt
import logging

from cocmail.config import Config
from cocmail.errors import ConfigError
from cocmail.keys import master
from cocmail.store import chain, keyring
from cocmail.store.db import Store

log = logging.getLogger(__name__)


def unlock(config: Config, store: Store, now: dt.datetime) -> None:
    """The store opened with the config's master keys. Their key file is made only
    for a store that holds no key yet; a key that does not open what the store
    holds is a config error naming where the keys came from."""
    with store.reading() as session:
        held = keyring.holds_keys(session.connection())
    masters = master.load(config, may_create=not held)
    try:
        store.use_keys(masters, now, reload=lambda: master.load(config))
        assert store.keyring is not None
        store.keyring.sealing = config.secrets.encrypt_content
    except keyring.KeysMissing as exc:
        raise ConfigError(masters.source, str(exc)) from None
    # Looked for in a transaction that only reads: a start takes no write lock
    # (on SQLite, a busy writer's) unless there is something to chain.
    with store.reading() as session:
        unchained = chain.has_unchained(session.connection())
    chained = 0
    if unchained:
        with store.transaction() as db:
            chained = chain.seal_unchained(db)
    if chained:
        log.info("store: the history of %d cases is a hash chain now", chained)
