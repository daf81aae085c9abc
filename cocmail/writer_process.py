"""The intake writer in a process of its own, beside the listeners' process.

In one process, the event loop and a writer thread take turns on the GIL, and
a message costs the sum of both. A writer process parses and stores on the
other core while the loop serves the SMTP sessions: measured, it took the
intake from about a third of a bare listener's rate to about a half.

Small messages go to the process over a pipe; large ones (over
``PIPE_UP_TO``) are stored by the in-process writer instead, so a 20 MB message
is never held twice, once on each side of the pipe. What goes down the pipe is
a list: one SMTP message, or an IMAP batch, which the process stores in one
transaction, whole (the messages of SMTP sessions that arrive meanwhile join
it up to ``MAX_BATCH``).

If the process dies, the messages it had not answered for get "try again
later" (451) and it is started again; what it had already committed is
recognised as a duplicate when the sender retries, so nothing is lost and
nothing is stored twice. An IMAP batch carries its drain's ``Chain``: once a
batch of a drain has failed, or the process that took its first batch has
been replaced, the drain's later batches are refused, here and in the
process, so that the failed one, taken again, does not land behind them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cocmail.child import ready, spawn
from cocmail.errors import StoreUnavailable
from cocmail.intake import Accepted, Delivery
from cocmail.metrics import Metrics
from cocmail.outbox.enqueue import Enqueue
from cocmail.writer import MAX_BATCH, BatchWriter, Chain, settled

log = logging.getLogger(__name__)

PIPE_UP_TO = 256 * 1024


def _serve(conn: Connection, config_path: str) -> None:
    """The writer process: read deliveries, store them in batches, answer."""
    from cocmail import config as config_module
    from cocmail import logs, tokens
    from cocmail.clock import SystemClock
    from cocmail.intake import Intake
    from cocmail.store.db import Store

    config = config_module.load(Path(config_path))
    logs.setup(config.logging.level)
    store = Store(config.database.url, config.database.busy_timeout)
    key = tokens.load_key(config)
    intake = Intake(store, config.committee, key, SystemClock(),
                    Enqueue.for_config(config, key))
    ready(conn)
    failed_chains: set[int] = set()  # one id for each IMAP drain that failed
    while True:
        try:
            first = conn.recv()
        except EOFError:
            return
        if first is None:
            return
        items = list(first)
        stop = False
        while len(items) < MAX_BATCH and conn.poll():
            more = conn.recv()
            if more is None:
                stop = True
                break
            items += more
        # A batch behind one of its chain that failed is not stored (see Chain).
        answers: list[tuple[int, Accepted | StoreUnavailable]] = [
            (rid, StoreUnavailable("not stored: an earlier batch of this drain failed"))
            for rid, _, chain in items if chain in failed_chains]
        items = [item for item in items if item[2] not in failed_chains]
        results = intake.accept_batch([delivery for _, delivery, _ in items]) if items else []
        for (rid, _, chain), result in zip(items, results, strict=True):
            answers.append((rid, result))
            if chain is not None and isinstance(result, StoreUnavailable):
                failed_chains.add(chain)
        conn.send(answers)
        if stop:
            return


def _failed(exc: Exception) -> asyncio.Future[Accepted]:
    """A future that has already failed with ``exc`` (in the place of a result)."""
    future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


class ProcessWriter:
    def __init__(self, config_path: Path, in_process: BatchWriter, metrics: Metrics) -> None:
        self.config_path = config_path
        self.in_process = in_process
        self.metrics = metrics
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[Accepted]] = {}
        # Held while a store_many call sends its batch: batches go down the pipe
        # (and are stored) in the order of the calls, large messages and all.
        self._sending = asyncio.Lock()
        self._conn: Connection | None = None
        self._process: Any = None
        self._generation = 0  # how many times the process was replaced
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pid(self) -> int | None:
        return int(self._process.pid) if self._process is not None else None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the process and wait until it is ready (it has loaded config and key)."""
        self._loop = loop
        self._process, parent = spawn(_serve, str(self.config_path), "cocmail-intake-writer")
        self._conn = parent
        loop.add_reader(parent.fileno(), self._on_results)
        log.info("intake writer process %d started", self._process.pid)

    async def store(self, delivery: Delivery) -> Accepted:
        if len(delivery.raw) > PIPE_UP_TO or self._conn is None:
            return await self.in_process.store(delivery)
        [future] = self._send([delivery], None)
        return await future

    async def store_many(self, deliveries: list[Delivery],
                         chain: Chain) -> list[Accepted | Exception]:
        """In order: each run of small ones goes down the pipe as one list (stored in
        one transaction); a large one waits for those before it. Nothing more of
        ``chain`` is stored once a batch of it failed, or once the process that
        took its first batch has been replaced (what it held was lost with it)."""
        results: list[Accepted | Exception] = []
        run: list[Delivery] = []
        sent: list[asyncio.Future[Accepted]] = []

        def refused() -> StoreUnavailable | None:
            """Why nothing more of ``chain`` may be stored now, if so."""
            if chain.broken is None and chain.writer_generation != self._generation:
                chain.fail(StoreUnavailable("the intake writer restarted"))
            return chain.broken

        def record(outcomes: list[Accepted | Exception]) -> None:
            results.extend(outcomes)
            failure = next((r for r in outcomes if isinstance(r, Exception)), None)
            if failure is not None:
                chain.fail(failure)

        async def settle(wait: bool) -> None:
            if run:
                refusal = refused()
                if refusal is not None:
                    sent.extend(_failed(refusal) for _ in run)
                else:
                    try:
                        sent.extend(self._send(run, chain.id))
                    except StoreUnavailable as exc:
                        sent.extend(_failed(exc) for _ in run)
                run.clear()
            if wait and sent:
                record(settled(await asyncio.gather(*sent, return_exceptions=True)))
                sent.clear()

        async with self._sending:
            if chain.writer_generation is None:
                chain.writer_generation = self._generation
            for delivery in deliveries:
                if len(delivery.raw) > PIPE_UP_TO or self._conn is None:
                    await settle(wait=True)
                    refusal = refused()
                    if refusal is not None:
                        results.append(refusal)
                        continue
                    try:
                        record([await self.in_process.store(delivery)])
                    except Exception as exc:  # reported in its place, as store() raises it
                        record([exc])
                else:
                    run.append(delivery)
            await settle(wait=False)
        await settle(wait=True)
        return results

    def _send(self, items: list[Delivery], chain: int | None) -> list[asyncio.Future[Accepted]]:
        """Send ``items`` down the pipe as one list (of ``chain``, when they are a
        batch of one); a future for each one's result."""
        assert self._loop is not None
        if self._conn is None:
            raise StoreUnavailable("the intake writer is restarting")
        entries = [(next(self._ids), item, chain) for item in items]
        futures = []
        for rid, _, _ in entries:
            future: asyncio.Future[Accepted] = self._loop.create_future()
            self._pending[rid] = future
            futures.append(future)
        try:
            self._conn.send(entries)
        except (OSError, ValueError):
            for rid, _, _ in entries:
                self._pending.pop(rid, None)
            self._restart("could not send to it")
            raise StoreUnavailable("the intake writer is restarting") from None
        return futures

    def _on_results(self) -> None:
        assert self._conn is not None
        try:
            while self._conn.poll():
                batch = self._conn.recv()
                self.metrics.inc("cocmail_intake_batches_total")
                self.metrics.inc("cocmail_intake_batched_messages_total", len(batch))
                for rid, result in batch:
                    future = self._pending.pop(rid, None)
                    if future is None or future.done():
                        continue
                    if isinstance(result, StoreUnavailable):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        except (EOFError, OSError):
            self._restart("it ended")

    def _restart(self, why: str) -> None:
        assert self._loop is not None
        log.error("intake writer process %s: %s; restarting it", self.pid, why)
        if self._conn is not None:
            self._loop.remove_reader(self._conn.fileno())
            self._conn.close()
            self._conn = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(StoreUnavailable("the intake writer restarted"))
        self._pending.clear()
        self._generation += 1
        if self._process is not None:
            self._process.join(5)
        self.start(self._loop)

    def close(self) -> None:
        """Let the process finish what it has, then stop it."""
        if self._conn is not None and self._loop is not None:
            self._loop.remove_reader(self._conn.fileno())
            try:
                self._conn.send(None)
                while self._pending and self._conn.poll(30):
                    for rid, result in self._conn.recv():
                        future = self._pending.pop(rid, None)
                        if future is not None and not future.done():
                            if isinstance(result, StoreUnavailable):
                                future.set_exception(result)
                            else:
                                future.set_result(result)
            except (EOFError, OSError):
                pass
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(30)
            if self._process.is_alive():
                self._process.terminate()
        self.in_process.close()
