"""The intake's writer threads: deliveries queue up, and each writer stores what has
queued in one transaction (group commit).

Under load, several SMTP sessions finish DATA at once; their messages share one
commit instead of each waiting for its own. Nobody's reply waits for a batch to
fill: a writer takes whatever is queued the moment it is free. PostgreSQL gets
several writer threads. On SQLite, one thread stores the large messages, and
the rest go to the writer process (``daemon/intake_process.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from concurrent.futures import Future
from typing import Protocol

from cocmail.errors import StoreUnavailable
from cocmail.intake.inbound import Accepted, Inbound
from cocmail.intake.service import Intake
from cocmail.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

MAX_BATCH = 32

class Chain:
    """The batches of one IMAP drain. They are stored in the order of the calls,
    and none is stored once one of them has failed: the poller takes a failed
    batch again, and it must not land behind the next one, already queued. The
    poller starts a new chain to go on after a failure."""

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self.id = next(self._ids)
        self.broken: StoreUnavailable | None = None
        self.writer_generation: int | None = None  # ProcessWriter: took its first batch

    def fail(self, cause: BaseException) -> None:
        """One of its batches failed: refuse the rest."""
        if self.broken is None:
            self.broken = StoreUnavailable(
                f"not stored: an earlier batch of this drain failed ({cause})")


_Item = tuple[Inbound, "Future[Accepted]", Chain | None]
_Queue = queue.SimpleQueue[list[_Item] | None]


class Writer(Protocol):
    """What the listeners hand deliveries to."""

    async def store(self, delivery: Inbound) -> Accepted: ...

    async def store_many(self, deliveries: list[Inbound],
                         chain: Chain) -> list[Accepted | Exception]:
        """Store ``deliveries`` in the order given, in one transaction where they
        fit (the IMAP poller's batch); each result is what ``store`` would have
        returned or raised. The batches of ``chain`` are stored in the order of
        the calls (the poller queues the next batch while this one is stored),
        and once one fails the rest are refused with ``StoreUnavailable``."""
        ...

    def close(self) -> None: ...


def settled(results: list[Accepted | BaseException]) -> list[Accepted | Exception]:
    """``gather(..., return_exceptions=True)``'s results; a cancellation is raised."""
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result
    return [r for r in results if isinstance(r, Accepted | Exception)]


class BatchWriter:
    def __init__(self, intake: Intake, threads: int, metrics: Metrics) -> None:
        self.intake = intake
        self.metrics = metrics
        # Each entry is one delivery, or several that must be stored in order.
        self._queue: _Queue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, args=(self._queue,), name=f"intake-writer-{i}",
                             daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()
        # store_many's batches: one thread of their own takes them in turn, so they
        # are committed in the order given (the pool's threads would race).
        self._lane: _Queue | None = None
        self._lane_thread: threading.Thread | None = None

    async def store(self, delivery: Inbound) -> Accepted:
        return await asyncio.wrap_future(self.submit(delivery))

    async def store_many(self, deliveries: list[Inbound],
                         chain: Chain) -> list[Accepted | Exception]:
        # One queue entry: one writer stores them, in one transaction, in order.
        futures: list[Future[Accepted]] = [Future() for _ in deliveries]
        self._ordered().put([(delivery, future, chain)
                             for delivery, future in zip(deliveries, futures, strict=True)])
        return settled(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures),
                                            return_exceptions=True))

    def submit(self, delivery: Inbound) -> Future[Accepted]:
        future: Future[Accepted] = Future()
        self._queue.put([(delivery, future, None)])
        return future

    def close(self) -> None:
        """Store what is queued, then stop the threads."""
        for _ in self._threads:
            self._queue.put(None)
        if self._lane is not None:
            self._lane.put(None)
        for thread in self._threads:
            thread.join()
        if self._lane_thread is not None:
            self._lane_thread.join()

    def _ordered(self) -> _Queue:
        """The queue of the thread that stores batches in turn, started when first
        needed (the in-process writer beside SQLite's writer process never is)."""
        if self._lane is None:
            self._lane = queue.SimpleQueue()
            self._lane_thread = threading.Thread(target=self._run, args=(self._lane,),
                                                 name="intake-writer-ordered", daemon=True)
            self._lane_thread.start()
        return self._lane

    def _run(self, entries: _Queue) -> None:
        while True:
            item = entries.get()
            if item is None:
                return
            batch = list(item)
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = entries.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch += more
            self._store(batch)
            if stop:
                return

    def _store(self, batch: list[_Item]) -> None:
        # A chain's batches all pass through this one thread, in order: one that
        # failed is seen here before the next is taken.
        for _, future, chain in batch:
            if chain is not None and chain.broken is not None:
                future.set_exception(chain.broken)
        batch = [item for item in batch if item[2] is None or item[2].broken is None]
        if not batch:
            return
        self.metrics.inc("cocmail_intake_batches_total")
        self.metrics.inc("cocmail_intake_batched_messages_total", len(batch))
        results: list[Accepted | Exception]
        try:
            results = list(self.intake.accept_batch([delivery for delivery, _, _ in batch]))
        except Exception as exc:  # a bug outside any one message: fail the batch, keep going
            log.exception("intake batch of %d failed", len(batch))
            results = [exc] * len(batch)
        for (_, future, chain), result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                future.set_exception(result)
                if chain is not None:
                    chain.fail(result)
            else:
                future.set_result(result)
