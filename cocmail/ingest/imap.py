"""IMAP intake: drain a hosted mailbox into the same intake as SMTP.

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
import collections
import concurrent.futures
import contextlib
import dataclasses
import email.utils
import logging
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError
from sqlalchemy import select

from cocmail.clock import Clock
from cocmail.config import Config
from cocmail.config import Imap as ImapConfig
from cocmail.config.secrets import oauth2_token, read_secret
from cocmail.errors import AddressError, StoreUnavailable
from cocmail.intake.batch import Chain, Writer
from cocmail.intake.service import Accepted, Delivery, Reading
from cocmail.route.addresses import Recipient, UnknownKeepOut, split_recipient
from cocmail.store.db import Store
from cocmail.store.models import ImapState
from cocmail.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
# Bodies fetched in one command: at most this many bytes (and imap.batch messages).
FETCH_BYTES = 16 * 1024 * 1024
# Larger messages are left to the writer to read (see ``_read_while``): they are
# few, and the parsed copy would wait beside the raw one.
READ_UP_TO = 256 * 1024
# Groups handed to the writer and not yet answered: while it stores one, one
# more waits, so that it has work while the poller moves (and reads ahead).
AHEAD = 2
# Sizes asked for in one command (to group the bodies by FETCH_BYTES). Not more:
# the writer waits for the second batch while they come (1,000 took 27 ms of the
# poller's CPU, and the writer waited 6-28 ms for its second batch; with 250, 0-4).
SIZES_AT_ONCE = 250
# Messages stored are moved (or flagged) in one command once this many are waiting
# to be, and at the end of a drain: most of a MOVE's cost is the command's own
# (Dovecot: 8 ms for 50 reports, 17 ms for 250), and while it runs the poller
# fetches nothing (see ``_Unmoved``).
MOVE_AT_ONCE = 250
# A message the server failed to hand over this many times, each time fetched on
# its own on a new connection, is moved to the quarantine folder unstored: one
# broken message must not hold up the reports behind it for ever.
UNFETCHABLE_AFTER = 3
# During a long drain, the outbox is told about what was stored this often (seconds);
# a shorter drain tells it once, at its end (see ``_Wakes``).
WAKE_EVERY = 2.0
# Headers a receiving server writes with the address the message was delivered to.
_DELIVERED_TO = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
_ADDRESSED = (*_DELIVERED_TO, "To", "Cc")
# How many sets of address fields' values the poller remembers the recipients of.
RECIPIENTS_KEPT = 1024
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# A line the email package takes as part of a header block (a field, a folded
# line, an mbox "From "); the first line that is not ends the block.
_NOT_A_FIELD = re.compile(rb"^(?!From |[!-9;-~]*:|[ \t])", re.M)
_ADDRESS_FIELD = re.compile(
    rb"^(%s):(.*(?:\n[ \t].*)*)"
    % "|".join(("Return-Path", *_DELIVERED_TO, "To", "Cc")).lower().encode(), re.I | re.M)
# UIDs to fetch together, and the sizes of (at least) those messages.
_Group = tuple[list[int], dict[int, int]]


class ConnectionLost(Exception):
    """The server ended the session (BYE) or the socket closed under us."""


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
        self.config = config
        self.handles = handles  # those a keep-out address may name
        self.imap = config.imap
        self.store = store
        self.writer = writer
        self.metrics = metrics
        self.clock = clock
        self.loop = loop
        self.on_stored = on_stored
        self.account = account(self.imap)
        self.health = Health(since=time.monotonic())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imap-poller", daemon=True)
        self._client: IMAPClient | None = None
        self._trouble = _Trouble()  # kept across reconnects
        # The recipients read from the address fields' values (see _recipients).
        self._addressed: dict[tuple[tuple[str, ...], ...], tuple[Recipient, ...]] = {}

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
        last_uid = self._position(uidvalidity)
        idle = self.imap.idle and client.has_capability("IDLE")
        if not idle:
            log.info("imap: %s", "IDLE is off (imap.idle)" if self.imap.idle is False
                     else "the server has no IDLE: looking every "
                     f"{self.imap.poll_interval.total_seconds():g} s")
        while not self._stop.is_set():
            last_uid = self._drain(client, uidvalidity, last_uid)
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
                last_uid = self._position(uidvalidity)

    def _idle(self, client: IMAPClient) -> None:
        """Wait in IDLE until the folder changes, the renewal is due, or a stop."""
        client.idle()
        renew_at = time.monotonic() + self.imap.idle_renew.total_seconds()
        # Mail that arrived while the last batch was taken, or just before IDLE
        # began, was announced in answer to another command: imaplib kept that
        # EXISTS aside, and idle_check will not show it.
        changed, early = _announced(client), 0
        # A look every poll_interval as well, in case a notification went astray.
        renew_at = min(renew_at, time.monotonic() + self.imap.poll_interval.total_seconds())
        while not self._stop.is_set() and not changed and time.monotonic() < renew_at:
            if _buffered(client):
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

    def _position(self, uidvalidity: int) -> int:
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
                            self.imap.folder, uidvalidity, state.uidvalidity)
                state.uidvalidity, state.last_uid = uidvalidity, 0
                state.updated_at = self.clock.now()
            return int(state.last_uid)

    def _advance(self, uidvalidity: int, last_uid: int) -> None:
        with self.store.unit_of_work() as session:
            state = session.scalars(select(ImapState).where(
                ImapState.account == self.account)).one()
            if state.uidvalidity == uidvalidity and last_uid > state.last_uid:
                state.last_uid = last_uid
                state.updated_at = self.clock.now()

    # -- taking messages ----------------------------------------------------

    def _drain(self, client: IMAPClient, uidvalidity: int, last_uid: int) -> int:
        """Store and move every message waiting, oldest first; the new last UID.

        A pipeline: the writer stores one group with up to ``AHEAD`` - 1 queued
        behind it (it stores them in the order given: UID order), while this
        thread fetches the next, reads it ahead while the writer is busy
        (``_read_while``), and moves the messages committed, ``MOVE_AT_ONCE`` at
        a time and the rest at the end. None is moved before its own commit is
        done."""
        trouble = self._trouble
        trouble.under(uidvalidity)
        if self.imap.after == "move":
            # Whatever is still in the folder has not been moved: new, or stored
            # just before a crash (then it is recognised as a duplicate).
            uids = sorted(client.search("ALL"))
        else:
            # The new ones, and those the server failed to hand over before.
            found = client.search(["UID", f"{last_uid + 1}:*"])
            if trouble.failures:
                found += client.search(["UID", ",".join(map(str, sorted(trouble.failures)))])
            uids = sorted({u for u in found if u > last_uid or trouble.suspect(u)})
        trouble.keep(uids)  # the others were expunged, or moved by someone
        if not uids:
            return last_uid
        log.info("imap: %d message(s) waiting in %s", len(uids), self.imap.folder)
        storing: collections.deque[_Taken] = collections.deque()  # sent, not yet moved
        wakes = _Wakes(self._wake_outbox)
        unmoved = _Unmoved()
        # Once a group fails, those queued behind it are refused, not stored: all
        # are taken again, in order, by the next drain (a chain of its own).
        chain = Chain()
        try:
            for group in self._groups(client, uids):
                if self._stop.is_set():
                    break
                taken = self._fetch(client, group)
                if storing:
                    _read_while(taken, storing[-1].storing)
                storing.append(self._submit(taken, chain))
                if len(storing) > AHEAD:
                    done = storing.popleft()
                    last_uid = max(last_uid, self._finish(client, done, done.results(),
                                                          unmoved, wakes))
            while storing:
                done = storing.popleft()
                last_uid = max(last_uid, self._finish(client, done, done.results(), unmoved,
                                                      wakes))
            last_uid = max(last_uid, self._move_done(client, unmoved))
        finally:
            for taken in storing:
                # Leaving on an error: let the groups in hand finish (stored if they
                # came before the failure, refused after it). They stay in the
                # folder, unmoved, and are found stored when they are taken again;
                # so do the stored ones not yet moved.
                with contextlib.suppress(Exception):
                    taken.results()
            # Once a drain, not once a batch (a write of its own on SQLite's one
            # lock): after a crash the rest is fetched again and found stored.
            with contextlib.suppress(StoreUnavailable):
                self._advance(uidvalidity, last_uid)
            wakes.drained()
        return last_uid

    def _groups(self, client: IMAPClient, uids: list[int]) -> Iterable[_Group]:
        """``uids`` in groups of at most ``imap.batch`` messages and ``FETCH_BYTES``,
        with each message's size (asked for ``SIZES_AT_ONCE`` at a time, except the
        first batch's: asked on their own, so that the first fetch does not wait for
        the others'). A message the server failed to hand over before is a
        group of its own."""
        first = self.imap.batch
        for many in (uids[:first], *_chunks(uids[first:], SIZES_AT_ONCE)):
            sizes = self._sizes(client, many)
            for chunk in _chunks([u for u in many if u in sizes], self.imap.batch):
                for group in _by_size(chunk, sizes, FETCH_BYTES):
                    for part in _alone(group, self._trouble.suspect):
                        yield part, sizes

    def _sizes(self, client: IMAPClient, uids: list[int]) -> dict[int, int]:
        """The size of each of ``uids`` (a server that cannot read a message may fail
        to give its size too): a suspect's is asked alone, and one given up is not
        asked at all (0: it is moved unstored, never fetched)."""
        trouble = self._trouble
        sizes: dict[int, int] = {}
        for part in _alone(uids, trouble.suspect):
            if trouble.given_up(part[0]):
                sizes[part[0]] = 0
                continue
            try:
                answer = client.fetch(part, ["RFC822.SIZE"])
            except Exception:
                trouble.failed(part, alone=len(part) == 1)
                raise
            sizes.update((uid, int(data[b"RFC822.SIZE"])) for uid, data in answer.items())
        return sizes

    def _fetch(self, client: IMAPClient, group: _Group) -> _Taken:
        """Fetch ``group``'s bodies. A fetch that fails, or leaves a message out,
        makes its messages suspects (fetched alone from then on); a message that
        fails alone ``UNFETCHABLE_AFTER`` times is given up (moved unstored)."""
        uids, sizes = group
        limit = self.config.smtp.max_message_size
        trouble = self._trouble
        unstored = []
        for uid in uids:
            if sizes[uid] > limit:
                log.error("imap: message UID %d is %d bytes, over smtp.max_message_size (%d): "
                          "moved to %s without storing it; forward it in parts",
                          uid, sizes[uid], limit, self.imap.quarantine_folder)
                self.metrics.inc("cocmail_imap_messages_total", outcome="too-big")
            elif trouble.given_up(uid):
                log.error("imap: message UID %d could not be fetched (%d tries, alone, each "
                          "on a new connection): moved to %s without storing it; move it back "
                          "to %s to try again", uid, UNFETCHABLE_AFTER,
                          self.imap.quarantine_folder, self.imap.folder)
                self.metrics.inc("cocmail_imap_messages_total", outcome="unfetchable")
            else:
                continue
            unstored.append(uid)
        wanted = [u for u in uids if u not in unstored]
        try:
            fetched = client.fetch(wanted, ["BODY.PEEK[]"]) if wanted else {}
        except Exception:
            trouble.failed(wanted, alone=len(wanted) == 1)
            raise
        order = [u for u in wanted if u in fetched]
        # Left out of the answer: expunged meanwhile (the next search does not find
        # it, and it is forgotten), or a message the server cannot give.
        missing = [u for u in wanted if u not in fetched]
        if missing:
            trouble.failed(missing, alone=len(wanted) == 1)
        trouble.fetched(order)
        deliveries = [self._delivery(bytes(fetched[u][b"BODY[]"])) for u in order]
        return _Taken(order, unstored, deliveries)

    def _submit(self, taken: _Taken, chain: Chain) -> _Taken:
        """Hand ``taken`` to the writer (on the daemon's event loop), behind the
        groups before it in ``chain``."""
        taken.future = asyncio.run_coroutine_threadsafe(
            self.writer.store_many(taken.deliveries, chain), self.loop)
        return taken

    def _finish(self, client: IMAPClient, taken: _Taken, results: list[Accepted | Exception],
                unmoved: _Unmoved, wakes: _Wakes) -> int:
        """Add what ``results`` say was stored (or quarantined) to ``unmoved``, and
        move them all once ``MOVE_AT_ONCE`` are waiting; the highest UID moved.
        Raises ``StoreUnavailable`` after moving the ones stored before a failure:
        the rest stay in the folder."""
        failure: Exception | None = None
        before = len(unmoved)
        unmoved.unstored += taken.unstored
        for uid, result in zip(taken.uids, results, strict=True):
            if isinstance(result, Exception):
                failure = result
                break
            (unmoved.quarantined if result.quarantine_reason else unmoved.stored).append(uid)
            self.metrics.inc("cocmail_imap_messages_total",
                             outcome="duplicate" if result.duplicate else
                             "quarantined" if result.quarantine_reason else "stored")
        if len(unmoved) > before:
            wakes.stored()
        moved = 0
        if failure is not None or len(unmoved) >= MOVE_AT_ONCE:
            moved = self._move_done(client, unmoved)
        if failure is not None:
            if isinstance(failure, StoreUnavailable):
                raise failure
            raise StoreUnavailable(f"storing failed: {describe(failure)}") from failure
        return moved

    def _move_done(self, client: IMAPClient, unmoved: _Unmoved) -> int:
        """Move (or flag) what ``unmoved`` holds, and empty it; the highest UID moved."""
        imap = self.imap
        stored, quarantined = unmoved.stored, [*unmoved.unstored, *unmoved.quarantined]
        if stored:
            if imap.after == "move":
                _move(client, stored, imap.processed_folder)
            else:
                client.add_flags(stored, [imap.flag.encode()])
        if quarantined:
            _move(client, sorted(quarantined), imap.quarantine_folder)
            self._trouble.fetched(unmoved.unstored)
        highest = max([*stored, *quarantined], default=0)
        unmoved.clear()
        return highest

    def _wake_outbox(self) -> None:
        if self.on_stored is not None:
            self.loop.call_soon_threadsafe(self.on_stored)

    def _delivery(self, raw: bytes) -> Delivery:
        fields = address_fields(raw)
        return Delivery(raw, _return_path(fields.get("return-path", [])),
                        self._recipients(fields), "imap")

    def _recipients(self, fields: dict[str, list[str]]) -> tuple[Recipient, ...]:
        """Where the message was addressed among our addresses: what the receiving
        server recorded, else To and Cc; the conduct address when none is ours.
        Remembered by the fields' values (up to ``RECIPIENTS_KEPT`` of them): most
        messages of a folder carry the same ones, and the email package reads
        addresses slowly (measured: 33 us a message down to 18 for the whole
        delivery, 1,000 reports from 1,000 senders)."""
        key = tuple(tuple(fields.get(name.lower(), ())) for name in _ADDRESSED)
        found = self._addressed.get(key)
        if found is None:
            found = self._read_recipients(fields)
            if len(self._addressed) >= RECIPIENTS_KEPT:
                self._addressed.clear()
            self._addressed[key] = found
        return found

    def _read_recipients(self, fields: dict[str, list[str]]) -> tuple[Recipient, ...]:
        committee = self.config.committee
        found: dict[str, Recipient] = {}
        for names in (_DELIVERED_TO, ("To", "Cc")):
            values = [v for name in names for v in fields.get(name.lower(), [])]
            for _, address in email.utils.getaddresses(values):
                try:
                    recipient = split_recipient(address, committee, self.handles)
                except UnknownKeepOut as exc:
                    # Kept, and shown to nobody: whom it should be kept from is unknown.
                    recipient = exc.recipient
                except AddressError:
                    continue
                found.setdefault(recipient.address, recipient)
            if found:
                break
        if not found:
            return (split_recipient(committee.address, committee),)
        return tuple(found.values())


def _read_while(taken: _Taken, busy: Callable[[], bool]) -> None:
    """Read ``taken``'s messages (``Reading``) here while ``busy`` says the writer has
    work, each at most ``READ_UP_TO`` bytes; it reads the rest itself rather than
    wait. So the poller and the writer share the parsing on two cores, each
    taking as much as it has time for."""
    deliveries = taken.deliveries
    for index, delivery in enumerate(deliveries):
        if not busy():
            return
        if len(delivery.raw) <= READ_UP_TO:
            deliveries[index] = dataclasses.replace(delivery, reading=Reading.of(delivery.raw))
            # Let the loop's thread take the GIL at once if it waits for it (with
            # the writer's answer): else it waits for the switch interval (5 ms).
            time.sleep(0)


@dataclass
class _Taken:
    """A group fetched from the folder, on its way through the writer."""

    uids: list[int]  # in order: the ones still in the folder when fetched
    unstored: list[int]  # too big, or given up: moved to the quarantine folder
    deliveries: list[Delivery]  # one for each of uids
    future: concurrent.futures.Future[list[Accepted | Exception]] | None = None

    def storing(self) -> bool:
        """Is the writer still at it?"""
        return self.future is not None and not self.future.done()

    def results(self) -> list[Accepted | Exception]:
        """Each item's result, once the writer has committed them."""
        assert self.future is not None
        return self.future.result()


def connect(imap: ImapConfig) -> IMAPClient:
    """A session with the server, logged in as ``imap`` says (TLS, STARTTLS or, for
    loopback tests, plain text; a password or an OAuth2 token)."""
    # Loading the CA store takes tens of milliseconds: only for TLS.
    context = None if imap.security == "none" else ssl.create_default_context(
        cafile=str(imap.tls_ca_file) if imap.tls_ca_file else None)
    client = IMAPClient(imap.host, imap.port, use_uid=True, ssl=imap.security == "tls",
                        ssl_context=context, timeout=imap.timeout.total_seconds())
    try:
        if imap.security == "starttls":
            assert context is not None
            client.starttls(context)
        if imap.auth == "xoauth2":
            client.oauth2_login(imap.username, oauth2_token(
                "imap", imap.oauth2_token_file, imap.oauth2_token_command))
        else:
            client.login(imap.username,
                         read_secret("imap", imap.password_file, imap.password_env) or "")
    except BaseException:
        hang_up(client)
        raise
    return client


def account(imap: ImapConfig) -> str:
    """The key of the folder's stored position (last UID, UIDVALIDITY)."""
    return f"{imap.username}@{imap.host}/{imap.folder}"


def describe(exc: BaseException) -> str:
    """One line about a failure: its type and the first line of its text."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def folders(imap: ImapConfig) -> list[str]:
    """The folders cocmail puts messages in (made when missing)."""
    return [imap.processed_folder, imap.quarantine_folder] if imap.after == "move" \
        else [imap.quarantine_folder]


def _announced(client: IMAPClient) -> bool:
    """Did the server announce new mail in an answer to some other command? (imaplib
    keeps such untagged responses in ``untagged_responses``, by name.)"""
    kept = getattr(client._imap, "untagged_responses", {})
    return any([kept.pop(name, None) for name in ("EXISTS", "RECENT")])


def _buffered(client: IMAPClient) -> bool:
    """Has imaplib read server data it has not handed out yet? (Looked at without
    blocking: the socket is non-blocking for the look, as idle_check does.)"""
    reader = getattr(client._imap, "file", None)
    if reader is None or not hasattr(reader, "peek"):
        return False
    sock = client.socket()
    sock.setblocking(False)
    try:
        return bool(reader.peek(1))
    except (BlockingIOError, InterruptedError):
        return False
    finally:
        sock.setblocking(True)
        client._set_read_timeout()


def _move(client: IMAPClient, uids: list[int], folder: str) -> None:
    try:
        client.move(uids, folder)
    except CapabilityError:
        client.copy(uids, folder)
        client.add_flags(uids, [b"\\Deleted"])
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:
            client.expunge()


def address_fields(raw: bytes) -> dict[str, list[str]]:
    """The values of the header fields the poller reads (Return-Path, where the
    server delivered it, To, Cc), by lower-case name, in order, as the email
    package reads them (folded lines joined, bytes that are not ASCII replaced):
    the header block ends at its blank line or at the first line that is not a
    header field. A regular expression over the header block: a fifth of what
    parsing it as a message cost, for each message of a drain."""
    head = _HEADER_END.split(raw, maxsplit=1)[0].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    end = _NOT_A_FIELD.search(head)
    if end is not None:
        head = head[:end.start()]
    found: dict[str, list[str]] = {}
    for name, value in _ADDRESS_FIELD.findall(head):
        found.setdefault(name.decode("ascii").lower(), []).append(
            value.lstrip(b" \t").decode("ascii", "replace"))
    return found


def _return_path(values: Sequence[str]) -> str | None:
    """The envelope sender the receiving server recorded ('' for a bounce's <>)."""
    if not values:
        return None
    value = str(values[0]).strip()
    if value in ("<>", ""):
        return ""
    return email.utils.parseaddr(value)[1] or None


class _Trouble:
    """The messages of a folder the server failed to hand over, and how often each
    failed when fetched alone; kept across reconnects, forgotten with the folder's
    UIDVALIDITY. A suspect is fetched on its own, so that it fails alone."""

    def __init__(self) -> None:
        self.uidvalidity: int | None = None
        self.failures: dict[int, int] = {}  # suspect UID -> failed fetches alone

    def under(self, uidvalidity: int) -> None:
        if uidvalidity != self.uidvalidity:
            self.uidvalidity = uidvalidity
            self.failures.clear()

    def suspect(self, uid: int) -> bool:
        return uid in self.failures

    def given_up(self, uid: int) -> bool:
        return self.failures.get(uid, 0) >= UNFETCHABLE_AFTER

    def failed(self, uids: list[int], *, alone: bool) -> None:
        """A fetch failed to hand over ``uids``: asked ``alone``, the one message's
        failure counts; asked with others, each is only a suspect."""
        if alone:
            (uid,) = uids
            self.failures[uid] = self.failures.get(uid, 0) + 1
        for uid in uids:
            self.failures.setdefault(uid, 0)

    def fetched(self, uids: list[int]) -> None:
        for uid in uids:
            self.failures.pop(uid, None)

    def keep(self, in_folder: list[int]) -> None:
        """Forget the suspects no longer in the folder."""
        present = set(in_folder)
        self.failures = {u: n for u, n in self.failures.items() if u in present}


@dataclass
class _Unmoved:
    """Messages dealt with (stored, quarantined, or set aside unstored) and still in
    the folder. They are moved together: after a crash before the move, they are
    fetched again and recognised as stored, so waiting loses nothing."""

    stored: list[int] = field(default_factory=list)
    quarantined: list[int] = field(default_factory=list)
    unstored: list[int] = field(default_factory=list)  # too big, or given up

    def __len__(self) -> int:
        return len(self.stored) + len(self.quarantined) + len(self.unstored)

    def clear(self) -> None:
        self.stored, self.quarantined, self.unstored = [], [], []


class _Wakes:
    """When a drain tells the outbox that mail was queued: once it is done, and
    during a long one every ``every`` seconds; not after each group. A backlog of
    reports becomes cases first, and their acknowledgements and pages follow: the
    outbox's rendering, woken group by group, took the CPU the writer needed
    (nice 19 or not; measured: a drain of 1,000 reports took 12-19% longer). No
    mail waits more than ``every`` seconds for it, and a drain of one message,
    the usual one, tells the outbox at once."""

    def __init__(self, wake: Callable[[], None], every: float = WAKE_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._wake = wake
        self._every = every
        self._clock = clock
        self._told_at = clock()
        self._untold = False

    def stored(self) -> None:
        self._untold = True
        if self._clock() - self._told_at >= self._every:
            self.drained()

    def drained(self) -> None:
        if self._untold:
            self._wake()
        self._untold = False
        self._told_at = self._clock()


def _alone(uids: list[int], suspect: Callable[[int], bool]) -> Iterable[list[int]]:
    """``uids`` in order, each suspect in a group of its own.

    >>> list(_alone([1, 2, 3, 4, 5], lambda uid: uid in (2, 3)))
    [[1], [2], [3], [4, 5]]
    """
    run: list[int] = []
    for uid in uids:
        if suspect(uid):
            if run:
                yield run
                run = []
            yield [uid]
        else:
            run.append(uid)
    if run:
        yield run


def _chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def _by_size(uids: list[int], sizes: dict[int, int], limit: int) -> Iterable[list[int]]:
    """``uids`` in order, in groups of at most ``limit`` bytes (one message at least)."""
    group: list[int] = []
    total = 0
    for uid in uids:
        if group and total + sizes[uid] > limit:
            yield group
            group, total = [], 0
        group.append(uid)
        total += sizes[uid]
    if group:
        yield group


def hang_up(client: IMAPClient) -> None:
    """Log out, or where the connection is gone already, close the socket."""
    try:
        client.logout()
    except Exception:  # the connection may be gone already: only the socket is left
        try:
            client.shutdown()
        except Exception as exc:
            log.debug("imap: closing the socket: %s", exc)


def health_gauges(poller: ImapPoller | None) -> dict[str, float]:
    if poller is None:
        return {}
    return {"cocmail_imap_connected": 1.0 if poller.health.connected else 0.0}

