"""Where the poller is in its folder: the last UID it took, under the folder's
UIDVALIDITY, kept in the store (``imap_state``). A new UIDVALIDITY starts over
from the first message; what was stored before is recognised as a duplicate."""

from __future__ import annotations

import logging

from sqlalchemy import select

from cocmail.clock import Clock
from cocmail.config import Imap as ImapConfig
from cocmail.store.db import Store
from cocmail.store.models import ImapState

log = logging.getLogger("cocmail.ingest.imap")


def account(imap: ImapConfig) -> str:
    """The key of the folder's stored position (last UID, UIDVALIDITY)."""
    return f"{imap.username}@{imap.host}/{imap.folder}"


class Position:
    def __init__(self, imap: ImapConfig, store: Store, clock: Clock) -> None:
        self.folder = imap.folder
        self.account = account(imap)
        self.store = store
        self.clock = clock

    def at(self, uidvalidity: int) -> int:
        """The last UID taken from this folder, under ``uidvalidity`` (0: from the start)."""
        with self.store.unit_of_work() as session:
            state = session.scalars(select(ImapState).where(
                ImapState.account == self.account)).one_or_none()
            if state is None:
                session.add(ImapState(account=self.account, uidvalidity=uidvalidity,
                                      last_uid=0, updated_at=self.clock.now()))
                return 0
            if state.uidvalidity != uidvalidity:
                log.warning("imap: %s has a new UIDVALIDITY (%d, was %d): reading it from "
                            "the start; messages stored before are recognised as duplicates",
                            self.folder, uidvalidity, state.uidvalidity)
                state.uidvalidity, state.last_uid = uidvalidity, 0
                state.updated_at = self.clock.now()
            return int(state.last_uid)

    def advance(self, uidvalidity: int, last_uid: int) -> None:
        with self.store.unit_of_work() as session:
            state = session.scalars(select(ImapState).where(
                ImapState.account == self.account)).one()
            if state.uidvalidity == uidvalidity and last_uid > state.last_uid:
                state.last_uid = last_uid
                state.updated_at = self.clock.now()
