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
nothing is stored twice.

The event loop never writes to the pipe itself: a thread of its own does, in the
order given. A batch (an IMAP one is some 400 KB with what the poller read of
it) is more than the pipe holds, and the write waits while the process is busy
storing the one before; on the loop, that wait held up every SMTP session (10 ms
a batch, measured, up to 35). In the process, a thread receives and prepares
the next batch while the one before is committed (``_Received``).

An IMAP batch carries its drain's ``Chain``: once a
batch of a drain has failed, or the process that took its first batch has
been replaced, the drain's later batches are refused, here and in the
process, so that the failed one, taken again, does not land behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

from cocmail.daemon.child import spawn
from cocmail.daemon.intake_helper import Entries, serve
from cocmail.errors import StoreUnavailable
from cocmail.intake.batch import BatchWriter, Chain, settled
from cocmail.intake.inbound import Accepted, Inbound
from cocmail.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

PIPE_UP_TO = 256 * 1024

# What the sending thread is given: a list of entries to send, ``None`` (send the
# process its end), ``_CLOSE`` (close the connection: it was replaced), or
# ``_QUIT`` (the thread's end, with its connection ``None``).
_CLOSE = object()
_QUIT = object()
_Outgoing = tuple[Connection | None, "Entries | object | None"]


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
        self._outgoing: queue.SimpleQueue[_Outgoing] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return int(self._process.pid) if self._process is not None else None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the process and wait until it is ready (it has loaded config and key)."""
        self._loop = loop
        if self._sender is None:
            self._sender = threading.Thread(target=self._send_in_turn, name="intake-pipe",
                                            daemon=True)
            self._sender.start()
        self._process, parent = spawn(serve, str(self.config_path), "cocmail-intake-writer")
        self._conn = parent
        loop.add_reader(parent.fileno(), self._on_results)
        log.info("intake writer process %d started", self._process.pid)

    async def store(self, delivery: Inbound) -> Accepted:
        if len(delivery.raw) > PIPE_UP_TO or self._conn is None:
            return await self.in_process.store(delivery)
        [future] = self._send([delivery], None)
        return await future

    async def store_many(self, deliveries: list[Inbound],
                         chain: Chain) -> list[Accepted | Exception]:
        """In order: each run of small ones goes down the pipe as one list (stored in
        one transaction); a large one waits for those before it. Nothing more of
        ``chain`` is stored once a batch of it failed, or once the process that
        took its first batch has been replaced (what it held was lost with it)."""
        results: list[Accepted | Exception] = []
        run: list[Inbound] = []
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

    def _send(self, items: list[Inbound], chain: int | None) -> list[asyncio.Future[Accepted]]:
        """Hand ``items`` to the sending thread, to go down the pipe as one list (of
        ``chain``, when they are a batch of one); a future for each one's result."""
        assert self._loop is not None
        if self._conn is None:
            raise StoreUnavailable("the intake writer is restarting")
        entries = [(next(self._ids), item, chain) for item in items]
        futures = []
        for rid, _, _ in entries:
            future: asyncio.Future[Accepted] = self._loop.create_future()
            self._pending[rid] = future
            futures.append(future)
        self._outgoing.put((self._conn, entries))
        return futures

    def _send_in_turn(self) -> None:
        """The sending thread: write what it is given to the pipe, in order."""
        while True:
            conn, payload = self._outgoing.get()
            if payload is _QUIT:
                return
            assert conn is not None
            if payload is _CLOSE:
                conn.close()
                continue
            try:
                conn.send_bytes(ForkingPickler.dumps(payload))
            except Exception as exc:
                rids = [rid for rid, _, _ in payload] if isinstance(payload, list) else []
                assert self._loop is not None
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    self._loop.call_soon_threadsafe(self._not_sent, conn, rids, exc)

    def _not_sent(self, conn: Connection, rids: list[int], exc: Exception) -> None:
        """On the loop: the sending thread could not send ``rids`` on ``conn``."""
        if isinstance(exc, OSError | ValueError):  # the pipe is broken or closed
            if conn is self._conn:
                self._restart(f"could not send to it ({exc})")
            return  # _restart failed those waiting: rids among them
        log.error("intake writer process: could not hand it %d message(s): %s",
                  len(rids), exc)
        for rid in rids:
            future = self._pending.pop(rid, None)
            if future is not None and not future.done():
                future.set_exception(StoreUnavailable(f"could not hand it to the writer: {exc}"))

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
            # Closed by the sending thread once it is done with it: it may be in the
            # middle of a write to it.
            self._outgoing.put((self._conn, _CLOSE))
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
        conn = self._conn
        if conn is not None and self._loop is not None:
            self._loop.remove_reader(conn.fileno())
            self._outgoing.put((conn, None))  # after what is queued: the process ends
        if self._sender is not None:
            self._outgoing.put((None, _QUIT))
            self._sender.join()
            self._sender = None
        if conn is not None:
            try:
                while self._pending and conn.poll(30):
                    for rid, result in conn.recv():
                        future = self._pending.pop(rid, None)
                        if future is not None and not future.done():
                            if isinstance(result, StoreUnavailable):
                                future.set_exception(result)
                            else:
                                future.set_result(result)
            except (EOFError, OSError):
                pass
            conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(30)
            if self._process.is_alive():
                self._process.terminate()
        self.in_process.close()
