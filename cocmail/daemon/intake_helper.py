"""The intake writer process itself (``daemon/intake_process.py`` starts it and
talks to it): it receives lists of deliveries over its pipe, stores them in
batches (group commit), and answers each with what became of it."""

from __future__ import annotations

import collections
import threading
from multiprocessing.connection import Connection

from cocmail import wiring
from cocmail.daemon.child import helper_start, ready
from cocmail.errors import StoreUnavailable
from cocmail.intake.batch import MAX_BATCH
from cocmail.intake.inbound import Accepted, Inbound, Prepared
from cocmail.intake.service import Intake

# What goes down the pipe: a list of (request id, delivery, chain id or None).
Entry = tuple[int, Inbound, int | None]
Entries = list[Entry]


def serve(conn: Connection, config_path: str) -> None:
    """The writer process: read deliveries, store them in batches, answer."""
    from cocmail.clock import SystemClock

    helper = helper_start(config_path)
    intake = wiring.intake(helper.config, helper.store, helper.key, SystemClock())
    ready(conn)
    received = _Received()
    threading.Thread(target=received.receive, args=(conn, intake), name="receive",
                     daemon=True).start()
    failed_chains: set[int] = set()  # one id for each IMAP drain that failed
    while True:
        batch = received.take()
        if batch is None:
            return
        # A batch behind one of its chain that failed is not stored (see Chain).
        answers: list[tuple[int, Accepted | StoreUnavailable]] = [
            (rid, StoreUnavailable("not stored: an earlier batch of this drain failed"))
            for (rid, _, chain), _ in batch if chain in failed_chains]
        batch = [item for item in batch if item[0][2] not in failed_chains]
        results = intake.store_prepared([prepared for _, prepared in batch]) if batch else []
        for ((rid, _, chain), _), result in zip(batch, results, strict=True):
            answers.append((rid, result))
            if chain is not None and isinstance(result, StoreUnavailable):
                failed_chains.add(chain)
        try:
            conn.send(answers)
        except OSError:
            return  # the daemon has gone: what was stored is found stored when it comes again


class _Received:
    """What the writer process's receiving thread has taken from the pipe and
    prepared (``Intake.prepare``: unpickled, parsed where the poller had not),
    waiting to be stored. The thread does it while the batch before is stored:
    most of a commit is the wait for the disk (fsync, 8 ms a batch measured),
    in which the thread has the GIL. It takes no more while ``MAX_BATCH`` are
    waiting, and the writer takes all that waits, so that SMTP's messages still
    share a commit (group commit) as they did when the writer read the pipe itself."""

    def __init__(self) -> None:
        self._lists: collections.deque[list[tuple[Entry, Prepared]]] = collections.deque()
        self._waiting = 0  # messages in _lists
        self._ended = False  # the daemon said so (None), or its end of the pipe closed
        self._failed: BaseException | None = None
        self._changed = threading.Condition()

    def receive(self, conn: Connection, intake: Intake) -> None:
        """The receiving thread."""
        try:
            while True:
                try:
                    entries = conn.recv()
                except EOFError:
                    entries = None
                if entries is None:
                    with self._changed:
                        self._ended = True
                        self._changed.notify()
                    return
                prepared = [(entry, intake.prepare(entry[1])) for entry in entries]
                with self._changed:
                    while self._waiting >= MAX_BATCH:
                        self._changed.wait()
                    self._lists.append(prepared)
                    self._waiting += len(prepared)
                    self._changed.notify()
        except BaseException as exc:  # the writer raises it: the process ends, and is replaced
            with self._changed:
                self._failed = exc
                self._changed.notify()

    def take(self) -> list[tuple[Entry, Prepared]] | None:
        """The next batch: the first list waiting (whole: an IMAP batch is stored in
        one transaction), and those behind it while under ``MAX_BATCH`` messages;
        None at the end, once all that came before it was taken."""
        with self._changed:
            while not self._lists and not self._ended and self._failed is None:
                self._changed.wait()
            if not self._lists:
                if self._failed is not None:
                    raise self._failed
                return None
            batch = self._lists.popleft()
            while self._lists and len(batch) < MAX_BATCH:
                batch += self._lists.popleft()
            self._waiting -= len(batch)
            self._changed.notify()
            return batch
