"""The outbox worker in a process of its own, at a lower CPU priority.

Rendering and composing mail is Python work (Jinja2, the ``email`` package):
in the listeners' process it took the GIL from the SMTP sessions, and under a
burst of reports the intake slowed to a fraction of its rate. In its own
process, niced, the worker uses the CPU the intake leaves: under a burst the
intake keeps its pace and the mail follows a little later; at an ordinary rate
there is idle CPU and mail goes out at once.

The daemon wakes the worker after each stored message by writing one byte to
a socket (coalesced: a full buffer means it is already awake); the worker
sends its metric counts back over the same socket. If the process dies, the
daemon starts another; rows it had claimed are sent once their lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cocmail.daemon.child import helper_start, ready, spawn
from cocmail.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

NICENESS = 19
_WAKE, _QUIT = b"w", b"q"


class _ForwardingMetrics(Metrics):
    """Counts made in the worker process, sent to the daemon's /metrics."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn
        self._send_lock = threading.Lock()

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        # OSError: the daemon is gone, and this process is about to end.
        with self._send_lock, contextlib.suppress(OSError):
            self._conn.send(("inc", name, amount, labels))


def _serve(conn: Connection, config_path: str) -> None:
    from cocmail.clock import SystemClock
    from cocmail.notify import transport
    from cocmail.notify.templates import Templates
    from cocmail.notify.worker import OutboxWorker

    helper = helper_start(config_path)
    config, store = helper.config, helper.store
    os.nice(NICENESS)
    worker = OutboxWorker(store, config, helper.key, SystemClock(),
                          transport.for_config(config.delivery),
                          Templates(config.templates.directory), _ForwardingMetrics(conn))

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def on_byte() -> None:
            try:
                data = os.read(conn.fileno(), 4096)
            except BlockingIOError:
                return
            if not data or _QUIT in data:
                loop.remove_reader(conn.fileno())
                worker.stop()
            else:
                worker.wake()

        os.set_blocking(conn.fileno(), False)
        loop.add_reader(conn.fileno(), on_byte)
        loop.add_signal_handler(signal.SIGTERM, worker.stop)
        ready(conn)
        await worker.run()
        await worker.close()

    try:
        asyncio.run(main())
    finally:
        store.dispose()


class OutboxProcess:
    def __init__(self, config_path: Path, metrics: Metrics) -> None:
        self.config_path = config_path
        self.metrics = metrics
        self._conn: Connection | None = None
        self._process: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    @property
    def pid(self) -> int | None:
        return int(self._process.pid) if self._process is not None else None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._process, parent = spawn(_serve, str(self.config_path), "cocmail-outbox")
        self._conn = parent
        loop.add_reader(parent.fileno(), self._on_message)
        log.info("outbox process %d started", self._process.pid)

    def wake(self) -> None:
        """A message was stored: the worker looks for mail to send now."""
        if self._conn is None:
            return
        try:
            os.set_blocking(self._conn.fileno(), False)
            os.write(self._conn.fileno(), _WAKE)
        except BlockingIOError:
            pass  # bytes are waiting unread: the worker will wake anyway
        except OSError:
            self._restart("it cannot be woken")
        finally:
            if self._conn is not None:
                os.set_blocking(self._conn.fileno(), True)

    def _on_message(self) -> None:
        assert self._conn is not None
        try:
            while self._conn.poll():
                message = self._conn.recv()
                if message[0] == "inc":
                    _, name, amount, labels = message
                    self.metrics.inc(name, amount, **labels)
        except (EOFError, OSError):
            if self._closing:
                self._detach()
            else:
                self._restart("it ended")

    def _restart(self, why: str) -> None:
        assert self._loop is not None
        log.error("outbox process %s: %s; restarting it", self.pid, why)
        self._detach()
        if self._process is not None:
            self._process.join(5)
        self.start(self._loop)

    def _detach(self) -> None:
        if self._conn is not None and self._loop is not None:
            self._loop.remove_reader(self._conn.fileno())
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        """Let the worker send and record the batch in hand, then end it."""
        self._closing = True
        if self._conn is not None:
            with contextlib.suppress(OSError):
                os.write(self._conn.fileno(), _QUIT)
        loop = asyncio.get_running_loop()
        if self._process is not None:
            await loop.run_in_executor(None, self._process.join, 30)
            if self._process.is_alive():
                log.error("outbox process %d did not stop; killing it", self._process.pid)
                self._process.kill()
                self._process.join()
        if self._conn is not None:
            self._on_message()  # the counts it sent while stopping
        self._detach()
