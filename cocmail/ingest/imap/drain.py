"""One drain of the folder: every message waiting, oldest first by UID, fetched
with ``BODY.PEEK[]``, handed to the intake writer in order (up to ``AHEAD``
groups in its hands) and moved (or flagged) only once the store has committed
it; quarantined ones, and the unfetchable and the too big, to the quarantine
folder."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from imapclient import IMAPClient

from cocmail.config import Imap as ImapConfig
from cocmail.errors import StoreUnavailable, describe
from cocmail.ingest.imap.envelope import Addressing
from cocmail.ingest.imap.groups import UNFETCHABLE_AFTER, Trouble, alone, by_size, chunks
from cocmail.ingest.imap.position import Position
from cocmail.ingest.imap.session import move
from cocmail.intake.batch import Chain, Writer
from cocmail.intake.inbound import Accepted, Inbound, Reading
from cocmail.telemetry.metrics import Metrics

log = logging.getLogger("cocmail.ingest.imap")

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
# During a long drain, the outbox is told about what was stored this often (seconds);
# a shorter drain tells it once, at its end (see ``_Wakes``).
WAKE_EVERY = 2.0
# UIDs to fetch together, and the sizes of (at least) those messages.
_Group = tuple[list[int], dict[int, int]]


class Drain:
    """Drains one folder, connection after connection (``run`` each time)."""

    def __init__(self, imap: ImapConfig, max_message_size: int, writer: Writer,
                 addressing: Addressing, position: Position, metrics: Metrics,
                 loop: asyncio.AbstractEventLoop, stop: threading.Event,
                 on_stored: Callable[[], None] | None = None) -> None:
        self.imap = imap
        self.max_message_size = max_message_size
        self.writer = writer
        self.addressing = addressing
        self.position = position
        self.metrics = metrics
        self.loop = loop
        self.stop = stop
        self.on_stored = on_stored
        self.trouble = Trouble()  # kept across reconnects

    def run(self, client: IMAPClient, uidvalidity: int, last_uid: int) -> int:
        """Store and move every message waiting, oldest first; the new last UID.

        A pipeline: the writer stores one group with up to ``AHEAD`` - 1 queued
        behind it (it stores them in the order given: UID order), while this
        thread fetches the next, reads it ahead while the writer is busy
        (``_read_while``), and moves the messages committed, ``MOVE_AT_ONCE`` at
        a time and the rest at the end. None is moved before its own commit is
        done."""
        trouble = self.trouble
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
                if self.stop.is_set():
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
                self.position.advance(uidvalidity, last_uid)
            wakes.drained()
        return last_uid

    def _groups(self, client: IMAPClient, uids: list[int]) -> Iterable[_Group]:
        """``uids`` in groups of at most ``imap.batch`` messages and ``FETCH_BYTES``,
        with each message's size (asked for ``SIZES_AT_ONCE`` at a time, except the
        first batch's: asked on their own, so that the first fetch does not wait for
        the others'). A message the server failed to hand over before is a
        group of its own."""
        first = self.imap.batch
        for many in (uids[:first], *chunks(uids[first:], SIZES_AT_ONCE)):
            sizes = self._sizes(client, many)
            for chunk in chunks([u for u in many if u in sizes], self.imap.batch):
                for group in by_size(chunk, sizes, FETCH_BYTES):
                    for part in alone(group, self.trouble.suspect):
                        yield part, sizes

    def _sizes(self, client: IMAPClient, uids: list[int]) -> dict[int, int]:
        """The size of each of ``uids`` (a server that cannot read a message may fail
        to give its size too): a suspect's is asked alone, and one given up is not
        asked at all (0: it is moved unstored, never fetched)."""
        trouble = self.trouble
        sizes: dict[int, int] = {}
        for part in alone(uids, trouble.suspect):
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
        limit = self.max_message_size
        trouble = self.trouble
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
        deliveries = [self.addressing.delivery(bytes(fetched[u][b"BODY[]"])) for u in order]
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
                move(client, stored, imap.processed_folder)
            else:
                client.add_flags(stored, [imap.flag.encode()])
        if quarantined:
            move(client, sorted(quarantined), imap.quarantine_folder)
            self.trouble.fetched(unmoved.unstored)
        highest = max([*stored, *quarantined], default=0)
        unmoved.clear()
        return highest

    def _wake_outbox(self) -> None:
        if self.on_stored is not None:
            self.loop.call_soon_threadsafe(self.on_stored)


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
    deliveries: list[Inbound]  # one for each of uids
    future: concurrent.futures.Future[list[Accepted | Exception]] | None = None

    def storing(self) -> bool:
        """Is the writer still at it?"""
        return self.future is not None and not self.future.done()

    def results(self) -> list[Accepted | Exception]:
        """Each item's result, once the writer has committed them."""
        assert self.future is not None
        return self.future.result()


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
