"""IMAP intake: drain a hosted mailbox into the same intake as SMTP (the poller).

One thread in ``cocmail serve`` keeps one connection (imapclient): it takes the
messages of ``imap.folder`` oldest first by UID, fetches them with
``BODY.PEEK[]`` (nothing is marked read by a fetch), hands them to the intake
writer in order (a batch at a time, up to ``AHEAD`` of them in its hands), and only
once the store has committed them moves them to ``imap.processed_folder``
(MOVE, or COPY + ``\\Deleted`` + UID EXPUNGE) or flags them
(``imap.after = "flag"``). Quarantined messages (unparseable ones among
them) go to ``imap.quarantine_folder``, so no message blocks the ones behind it;
so does, unstored, one the server fails to hand over ``UNFETCHABLE_AFTER``
times, fetched alone on a new connection each time (a batch whose fetch fails
is fetched a message at a time after the reconnect).

Where it can go wrong, it goes wrong the same way: any error on the connection
(a refused or dropped connection, a login failure, a BYE during IDLE, an abort
that is not an ``OSError``, a timeout) closes it and reconnects after a backoff
(1 s doubling to 5 min, with jitter), with one log line saying what happened and
the health state saying so. The store being down is the same: the message stays
in the folder. A message is moved only after its commit, so a crash between the
two leaves it in the folder; it is fetched again and recognised as a duplicate.

Where the server has IDLE, the thread waits in IDLE (re-issued every
``imap.idle_renew``, before the server's 30 minutes); otherwise it looks every
``imap.poll_interval``. It stores the last UID it took and the folder's
UIDVALIDITY: with ``after = "flag"`` messages stay in the folder and the UID
says where to go on; a new UIDVALIDITY starts over from the first message (the
copies already stored are recognised by Message-ID and bytes).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from imapclient import IMAPClient

from cocmail.clock import Clock
from cocmail.config import Config
from cocmail.errors import StoreUnavailable, describe
from cocmail.ingest.imap.drain import Drain
from cocmail.ingest.imap.envelope import Addressing
from cocmail.ingest.imap.position import Position
from cocmail.ingest.imap.session import (
    ConnectionLost,
    announced,
    buffered,
    connect,
    folders,
    hang_up,
)
from cocmail.intake.batch import Writer
from cocmail.store.db import Store
from cocmail.telemetry.metrics import Metrics

log = logging.getLogger("cocmail.ingest.imap")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0


@dataclass
class Health:
    connected: bool = False
    since: float = 0.0  # time.monotonic() of the last change
    detail: str = "not started"


class ImapPoller:
    def __init__(self, config: Config, store: Store, writer: Writer, metrics: Metrics,
                 clock: Clock, loop: asyncio.AbstractEventLoop,
                 on_stored: Callable[[], None] | None = None,
                 handles: Collection[str] | None = None) -> None:
        assert config.imap is not None
        self.imap = config.imap
        self.metrics = metrics
        self.health = Health(since=time.monotonic())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imap-poller", daemon=True)
        self._client: IMAPClient | None = None
        self.position = Position(self.imap, store, clock)
        self.drain = Drain(self.imap, config.smtp.max_message_size, writer,
                           Addressing(config.committee, handles), self.position, metrics,
                           loop, self._stop, on_stored)

    # -- life cycle ---------------------------------------------------------

    def start(self) -> None:
        if self.imap.security == "none":
            log.warning("imap: %s:%d without TLS (imap.security = \"none\"): the password "
                        "and every report cross the network in clear text",
                        self.imap.host, self.imap.port)
        self._thread.start()

    def close(self) -> None:
        """Stop after the batch in hand (stored and moved, or left in the folder)."""
        self._stop.set()
        self._thread.join(self.imap.timeout.total_seconds() + 10)

    def status(self) -> tuple[bool, str]:
        """For /healthz: False once the mailbox has been out of reach for a minute."""
        health = self.health
        down_for = time.monotonic() - health.since
        if health.connected:
            return True, "imap: connected"
        return down_for < 60, f"imap: not connected for {down_for:.0f} s: {health.detail}"

    def _set_health(self, connected: bool, detail: str) -> None:
        if connected != self.health.connected:
            self.health = Health(connected, time.monotonic(), detail)
        else:
            self.health.detail = detail
        self.metrics.inc("cocmail_imap_connections_total",
                         outcome="connected" if connected else "failed")

    def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                client = self._connect()
            except Exception as exc:
                self._failed(f"cannot connect to {self.imap.host}:{self.imap.port}: "
                             f"{describe(exc)}", backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self._client = client
            self._set_health(True, "connected")
            log.info("imap: connected to %s:%d as %s", self.imap.host, self.imap.port,
                     self.imap.username)
            connected_at = time.monotonic()
            try:
                self._serve(client)
                backoff = BACKOFF_FIRST
            except Exception as exc:
                if time.monotonic() - connected_at > 30:
                    backoff = BACKOFF_FIRST  # it worked for a while: start the backoff over
                if isinstance(exc, StoreUnavailable):
                    what = f"the store is unavailable ({exc}); messages stay in {self.imap.folder}"
                else:
                    what = (f"connection to {self.imap.host}:{self.imap.port} lost: "
                            f"{describe(exc)}")
                self._failed(what, backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                self._client = None
                hang_up(client)

    def _failed(self, what: str, backoff: float) -> None:
        wait = backoff * random.uniform(0.8, 1.2)
        if not self._stop.is_set():
            log.error("imap: %s; trying again in %.0f s", what, wait)
        self._set_health(False, what)
        self._stop.wait(wait)

    # -- one connection -----------------------------------------------------

    def _connect(self) -> IMAPClient:
        client = connect(self.imap)
        try:
            for folder in folders(self.imap):
                if not client.folder_exists(folder):
                    client.create_folder(folder)
                    log.info("imap: created folder %s", folder)
        except BaseException:
            hang_up(client)
            raise
        return client

    def _serve(self, client: IMAPClient) -> None:
        """Drain the folder, wait for more, drain again, until told to stop."""
        selected = client.select_folder(self.imap.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        last_uid = self.position.at(uidvalidity)
        idle = self.imap.idle and client.has_capability("IDLE")
        if not idle:
            log.info("imap: %s", "IDLE is off (imap.idle)" if self.imap.idle is False
                     else "the server has no IDLE: looking every "
                     f"{self.imap.poll_interval.total_seconds():g} s")
        while not self._stop.is_set():
            last_uid = self.drain.run(client, uidvalidity, last_uid)
            if self._stop.is_set():
                return
            if idle:
                self._idle(client)
            else:
                self._stop.wait(self.imap.poll_interval.total_seconds())
            # A folder deleted and made again under the same name (a restore) sends
            # nothing to a session that has the old one selected: ask its name.
            status = client.folder_status(self.imap.folder, [b"UIDVALIDITY"])
            if int(status[b"UIDVALIDITY"]) != uidvalidity:
                selected = client.select_folder(self.imap.folder)
                uidvalidity = int(selected[b"UIDVALIDITY"])
                last_uid = self.position.at(uidvalidity)

    def _idle(self, client: IMAPClient) -> None:
        """Wait in IDLE until the folder changes, the renewal is due, or a stop."""
        client.idle()
        renew_at = time.monotonic() + self.imap.idle_renew.total_seconds()
        # Mail that arrived while the last batch was taken, or just before IDLE
        # began, was announced in answer to another command: imaplib kept that
        # EXISTS aside, and idle_check will not show it.
        changed, early = announced(client), 0
        # A look every poll_interval as well, in case a notification went astray.
        renew_at = min(renew_at, time.monotonic() + self.imap.poll_interval.total_seconds())
        while not self._stop.is_set() and not changed and time.monotonic() < renew_at:
            if buffered(client):
                # The server's news came in the same read as an earlier line and
                # waits in imaplib's buffer, where idle_check's poll of the
                # socket cannot see it.
                changed = True
                break
            began = time.monotonic()
            responses = client.idle_check(timeout=1.0)
            if not responses and time.monotonic() - began < 0.5:
                # Nothing, and at once: once the socket has closed, idle_check
                # returns [] immediately for ever. Not a loop to spin in.
                early += 1
                if early >= 3:
                    raise ConnectionLost("the connection closed during IDLE")
                continue
            early = 0
            for response in responses:
                if b"BYE" in response:
                    raise ConnectionLost(f"the server said BYE during IDLE: {response!r}")
                if b"EXISTS" in response or b"RECENT" in response:
                    changed = True
        client.idle_done()


def health_gauges(poller: ImapPoller | None) -> dict[str, float]:
    if poller is None:
        return {}
    return {"cocmail_imap_connected": 1.0 if poller.health.connected else 0.0}
