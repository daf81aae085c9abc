"""The outbox worker: claims due rows, renders and sends them, records what happened.

A claim is a lease: the row is marked with this worker's id until a deadline,
in a transaction that on PostgreSQL skips rows another worker holds (``FOR
UPDATE SKIP LOCKED``), so two replicas never send the same row. A worker that
dies (SIGKILL) leaves its claims to expire; the rows are then sent by whoever
claims them next. A mail can go out twice only if the worker dies between the
relay's "250" and the store's "sent" — and it is then the same message (same
Message-ID), which mail clients show once.

A temporary failure (relay down, 4xx) is retried with exponential backoff and
jitter until ``delivery.max_attempts``; a permanent one (5xx to the recipient
or the message) fails the row at once. When a mail to someone outside the
committee fails for good, the members who can see the case are told.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from cocmail.case import access
from cocmail.clock import Clock
from cocmail.config import Config
from cocmail.errors import StoreUnavailable
from cocmail.notify import context as context_module
from cocmail.notify import payloads
from cocmail.notify.compose import compose
from cocmail.notify.enqueue import Enqueue, Mail
from cocmail.notify.kinds import FAILURE, PAGE, REPORT
from cocmail.notify.templates import Templates
from cocmail.notify.transport import DeliveryError, Transport
from cocmail.store import content, writes
from cocmail.store.db import Store
from cocmail.store.models import Message, Outbox
from cocmail.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

BATCH = 16  # rows claimed at a time: a page waits for at most one batch to go out
CONCURRENCY = 4  # mails in flight at once
MIN_WAIT = 0.2  # seconds: the least the loop waits when a due row could not be claimed


@dataclass(frozen=True)
class _Ready:
    row_id: int
    name: str  # unique to the row, for the maildir's file name
    recipient: str
    data: bytes


@dataclass(frozen=True)
class _Outcome:
    row_id: int
    status: str  # sent | temporary | permanent | cancelled
    error: str | None = None
    # What the log may say of it (``DeliveryError.for_log``): not the relay's words.
    for_log: str | None = None


class OutboxWorker:
    def __init__(
        self, store: Store, config: Config, key: bytes, clock: Clock, transport: Transport,
        templates: Templates, metrics: Metrics,
    ) -> None:
        self.store = store
        self.config = config
        self.key = key
        self.clock = clock
        self.transport = transport
        self.templates = templates
        self.metrics = metrics
        self.enqueue = Enqueue.for_config(config, key)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"[:64]
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="outbox")
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Something was queued: look now rather than at the next tick (loop thread only)."""
        self._wake.set()

    async def run(self) -> None:
        """Send due mail until ``stop``; then finish the batch in hand."""
        loop = asyncio.get_running_loop()
        tick = self.config.scheduler.tick.total_seconds()
        while not self._stopping:
            self._wake.clear()
            try:
                ids = await loop.run_in_executor(self.executor, self.claim, BATCH)
            except StoreUnavailable as exc:
                log.error("outbox: store unavailable: %s", exc)
                ids = []
            while ids:
                # Each batch's results and the next claim share one transaction.
                ids = await self.process(ids, 0 if self._stopping else BATCH)
            try:
                wait = await loop.run_in_executor(self.executor, self.until_next, tick)
            except StoreUnavailable:
                wait = tick
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    def until_next(self, tick: float) -> float:
        """Seconds until there may be mail to send without a wake: a queued mail falls
        due (a retry sooner than the tick), or another worker's claim on one runs out
        (a worker that died); at most ``tick``, and never so little that the loop spins
        on a row another worker holds locked."""
        now = self.clock.now()
        with self.store.reading() as session:
            unclaimed = session.scalar(select(func.min(Outbox.due_at)).where(
                Outbox.status == "queued",
                or_(Outbox.claimed_until.is_(None), Outbox.claimed_until < now)))
            claim_ends = session.scalar(select(func.min(Outbox.claimed_until)).where(
                Outbox.status == "queued", Outbox.claimed_until >= now))
        soonest = min((t for t in (unclaimed, claim_ends) if t is not None), default=None)
        if soonest is None:
            return tick
        return min(tick, max(MIN_WAIT, (soonest - now).total_seconds()))

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def close(self) -> None:
        await self.transport.close()
        self.executor.shutdown(wait=True)

    def claim(self, limit: int) -> list[int]:
        with self.store.unit_of_work() as session:
            return self._claim(session, self.clock.now(), limit)

    def _claim(self, session: Session, now: dt.datetime, limit: int) -> list[int]:
        if limit <= 0:
            return []
        ids = list(session.scalars(
            select(Outbox.id).where(
                Outbox.status == "queued", Outbox.due_at <= now,
                or_(Outbox.claimed_until.is_(None), Outbox.claimed_until < now))
            # Most urgent first (``kinds.Kind.priority``), then oldest: an index scan.
            .order_by(Outbox.priority, Outbox.due_at, Outbox.id).limit(limit)
            .with_for_update(skip_locked=True)))
        if ids:
            session.execute(update(Outbox).where(Outbox.id.in_(ids)).values(
                claimed_by=self.id, claimed_until=now + self.config.delivery.lease))
        return ids

    async def process(self, ids: list[int], claim_next: int = 0) -> list[int]:
        """Send the rows ``ids``, record what happened and claim up to ``claim_next``
        more rows in the same transaction; return those."""
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(self.executor, self.prepare, ids)
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def send(item: _Ready | _Outcome) -> _Outcome:
            if isinstance(item, _Outcome):
                return item
            async with semaphore:
                try:
                    await self.transport.send(item.name, self.config.committee.address,
                                              item.recipient, item.data)
                except DeliveryError as exc:
                    return _Outcome(item.row_id, "permanent" if exc.permanent else "temporary",
                                    str(exc), exc.for_log)
                except Exception as exc:  # a bug in a transport: retry, and say so
                    log.exception("outbox: sending row %d failed", item.row_id)
                    return _Outcome(item.row_id, "temporary", f"internal error: {exc!r}")
                return _Outcome(item.row_id, "sent")

        outcomes = await asyncio.gather(*(send(item) for item in prepared))
        try:
            return await loop.run_in_executor(self.executor, self.record, outcomes, claim_next)
        except StoreUnavailable as exc:
            # The claims expire and the rows are sent again: at least once, never lost.
            log.error("outbox: could not record %d results: %s", len(outcomes), exc)
            return []

    def prepare(self, ids: list[int]) -> list[_Ready | _Outcome]:
        """Render each row (reads only); a row that cannot be rendered is retried later."""
        result: list[_Ready | _Outcome] = []
        with self.store.reading() as session:
            content.open_case_keys(session.connection(),
                                   select(Outbox.case_id).where(Outbox.id.in_(ids)))
            lookups = context_module.Lookups(session)
            for row in session.scalars(select(Outbox).where(Outbox.id.in_(ids))
                                       .options(selectinload(Outbox.participant))
                                       .order_by(Outbox.due_at, Outbox.id)):
                try:
                    result.append(self._render(session, row, lookups))
                except StoreUnavailable:
                    raise
                except Exception as exc:
                    log.exception("outbox: cannot render row %d (%s)", row.id, row.kind)
                    result.append(_Outcome(row.id, "temporary",
                                           f"could not render the mail: {type(exc).__name__}: "
                                           f"{exc}"[:500]))
        return result

    def _render(self, session: Session, row: Outbox,
                lookups: context_module.Lookups) -> _Ready | _Outcome:
        values = context_module.build(session, row, self.config, self.key, lookups)
        if isinstance(values, context_module.Cancelled):
            return _Outcome(row.id, "cancelled", values.reason)
        rendered = self.templates.render(row.kind, values)
        raw, parts = None, None
        if row.kind in (REPORT, PAGE) and values.message and values.message.attachments:
            source = session.get(Message, row.source_message_id)
            assert source is not None
            raw = source.raw
            parts = [a.part for a in values.message.attachments if a.part is not None]
        data = compose(row, rendered, values, self.config.committee, raw, parts)
        name = f"{int(row.created_at.timestamp())}.cocmail{row.id}"
        return _Ready(row.id, name, row.recipient, data)

    def record(self, outcomes: list[_Outcome], claim_next: int = 0) -> list[int]:
        now = self.clock.now()
        delivery = self.config.delivery
        with self.store.unit_of_work() as session:
            rows = {row.id: row for row in session.scalars(
                select(Outbox).where(Outbox.id.in_([o.row_id for o in outcomes])))}
            notices: list[Mail] = []
            db = session.connection()

            def sealed(row: Outbox, error: str | None) -> str | None:
                # What the relay answered may quote the address it refused.
                value = writes.outbox_values(db, row.case_id, {"last_error": error}, now)
                return value["last_error"]  # type: ignore[no-any-return]

            for outcome in outcomes:
                row = rows[outcome.row_id]
                row.claimed_by, row.claimed_until = None, None
                if outcome.status == "cancelled":
                    row.status, row.last_error = "cancelled", sealed(row, outcome.error)
                    # Why stays with the row (``cocmail outbox list``): it can say whom
                    # a reporter kept out, which is not for a log.
                    log.info("outbox %d (%s) cancelled: no longer for its recipient", row.id,
                             row.kind)
                    self.metrics.inc("cocmail_outbox_total", outcome="cancelled", kind=row.kind)
                    continue
                row.attempts += 1
                if outcome.status == "sent":
                    row.status, row.sent_at, row.last_error = "sent", now, None
                    log.info("outbox %d (%s) sent, attempt %d", row.id, row.kind, row.attempts)
                    self.metrics.inc("cocmail_outbox_total", outcome="sent", kind=row.kind)
                    continue
                row.last_error = sealed(row, outcome.error)
                if outcome.status == "temporary" and row.attempts < delivery.max_attempts:
                    row.due_at = now + backoff(row.attempts, delivery.retry_first,
                                               delivery.retry_max)
                    log.warning("outbox %d (%s) attempt %d failed, next at %s: %s", row.id,
                                row.kind, row.attempts, row.due_at.isoformat(),
                                outcome.for_log or outcome.error)
                    self.metrics.inc("cocmail_outbox_total", outcome="deferred", kind=row.kind)
                    continue
                row.status, row.failed_at = "failed", now
                log.error("outbox %d (%s) failed for good after %d attempts: %s", row.id,
                          row.kind, row.attempts, outcome.for_log or outcome.error)
                self.metrics.inc("cocmail_outbox_total", outcome="failed", kind=row.kind)
                notices += self._failure_notices(session, row)
            session.flush()
            if notices:
                self.enqueue.queue(session.connection(), notices, now)
            return self._claim(session, now, claim_next)

    def _failure_notices(self, session: Session, row: Outbox) -> list[Mail]:
        """Members are told when a mail to an outside party (not a member) fails."""
        if row.case_id is None or row.kind == FAILURE:
            return []
        if row.participant is None or row.participant.role == access.MEMBER_ROLE:
            return []
        facts = access.load(session.connection(), [row.case_id])[row.case_id]
        return [Mail(FAILURE, seat.email, row.case_id, step=str(row.id),
                     participant_id=seat.participant_id,
                     payload=payloads.FailedMail(row.id))
                for seat in access.readers(facts.seats)]


def backoff(attempts: int, first: dt.timedelta, longest: dt.timedelta) -> dt.timedelta:
    """The wait after ``attempts`` failures: doubling from ``first`` up to ``longest``,
    with jitter (between half and all of it), so retries after an outage spread out.

    >>> first, longest = dt.timedelta(minutes=1), dt.timedelta(hours=1)
    >>> all(dt.timedelta(seconds=30) <= backoff(1, first, longest) <= first for _ in range(50))
    True
    >>> backoff(20, first, longest) <= longest
    True
    """
    full = min(longest.total_seconds(), first.total_seconds() * 2 ** min(attempts - 1, 30))
    return dt.timedelta(seconds=full * random.uniform(0.5, 1.0))
