"""The intake's writer threads: deliveries queue up, and each writer stores what has
queued in one transaction (group commit).

Under load, several SMTP sessions finish DATA at once; their messages share one
commit instead of each waiting for its own. Nobody's reply waits for a batch to
fill: a writer takes whatever is queued the moment it is free. PostgreSQL gets
several writer threads. On SQLite, one thread stores the large messages, and
the rest go to the writer process (``writer_process.py``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future
from typing import Protocol

from cocmail.errors import StoreUnavailable
from cocmail.intake import Accepted, Delivery, Intake
from cocmail.metrics import Metrics

log = logging.getLogger(__name__)

MAX_BATCH = 32

_Item = tuple[Delivery, "Future[Accepted]"]
_Queue = queue.SimpleQueue[list[_Item] | None]


class Writer(Protocol):
    """What the listeners hand deliveries to."""

    async def store(self, delivery: Delivery) -> Accepted: ...

    async def store_many(self, deliveries: list[Delivery]) -> list[Accepted | Exception]:
        """Store ``deliveries`` in the order given, in one transaction where they
        fit (the IMAP poller's batch); each result is what ``store`` would have
        returned or raised. Batches are stored in the order of the calls: the
        poller queues the next batch while this one is stored."""
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

    async def store(self, delivery: Delivery) -> Accepted:
        return await asyncio.wrap_future(self.submit(delivery))

    async def store_many(self, deliveries: list[Delivery]) -> list[Accepted | Exception]:
        # One queue entry: one writer stores them, in one transaction, in order.
        futures: list[Future[Accepted]] = [Future() for _ in deliveries]
        self._ordered().put(list(zip(deliveries, futures, strict=True)))
        return settled(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures),
                                            return_exceptions=True))

    def submit(self, delivery: Delivery) -> Future[Accepted]:
        future: Future[Accepted] = Future()
        self._queue.put([(delivery, future)])
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
        self.metrics.inc("cocmail_intake_batches_total")
        self.metrics.inc("cocmail_intake_batched_messages_total", len(batch))
        try:
            results = self.intake.accept_batch([delivery for delivery, _ in batch])
        except Exception as exc:  # a bug outside any one message: fail the batch, keep going
            log.exception("intake batch of %d failed", len(batch))
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if isinstance(result, StoreUnavailable):
                future.set_exception(result)
            else:
                future.set_result(result)
