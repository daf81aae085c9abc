"""``cocmail serve``: the listeners, the outbox worker, the HTTP port, all on one
asyncio loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import func, select, text

from cocmail import wiring
from cocmail.case import members
from cocmail.clock import Clock, SystemClock
from cocmail.config import Config
from cocmail.config.secrets import oauth2_token, read_secret
from cocmail.config.units import Endpoint
from cocmail.daemon import files
from cocmail.daemon.child import finish_start_up
from cocmail.daemon.http import HttpServer
from cocmail.daemon.intake_process import ProcessWriter
from cocmail.daemon.outbox_process import OutboxProcess
from cocmail.errors import ConfigError, StoreUnavailable
from cocmail.ingest.imap.poller import ImapPoller, health_gauges
from cocmail.ingest.smtp import SmtpHandler, server_factory
from cocmail.intake.batch import BatchWriter, Writer
from cocmail.notify import transport
from cocmail.notify.enqueue import Enqueue
from cocmail.notify.templates import Templates
from cocmail.route import tokens
from cocmail.schedule.sweep import sweep
from cocmail.store import migrate
from cocmail.store.db import Store
from cocmail.store.models import Outbox
from cocmail.store.unlock import unlock
from cocmail.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


def bound(server: asyncio.Server) -> str:
    """Where ``server`` listens, as ``host:port``: with port 0 in the config, the
    port the system gave (what a supervisor or a test connects to)."""
    host, port = server.sockets[0].getsockname()[:2]
    return str(Endpoint(host, port))


class OutdatedDatabase(Exception):
    """The database is behind this cocmail's schema; ``cocmail db upgrade`` is needed."""


def prepare_database(store: Store) -> None:
    """Migrate an empty database; refuse one at an older revision (an upgrade of a
    database that holds reports is the operator's decision, after a backup)."""
    if migrate.is_empty(store):
        log.info("empty database: applying migrations")
        migrate.upgrade(store)
        return
    why = migrate.behind(store)
    if why is not None:
        raise OutdatedDatabase(why)


def tls_context(config: Config) -> ssl.SSLContext | None:
    if config.smtp.tls_cert is None or config.smtp.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.smtp.tls_cert, config.smtp.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("smtp.tls_cert", f"cannot load certificate and key: {exc}") from None
    return context


def listening_socket(key: str, endpoint: Endpoint) -> socket.socket:
    """A socket bound to ``endpoint`` and listening; a port taken (or a host not
    ours) is a mistake in the config key ``key``, told before anything starts."""
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    try:
        return socket.create_server((endpoint.host, endpoint.port), family=family, backlog=128)
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(key, f"cannot listen on {endpoint}: {why.lower()}") from None


class Daemon:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        self.store = Store.of(config.database)
        # Blocking database work (the health probe) runs here, off the event loop.
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cocmail")
        self.writer: Writer | None = None
        self.outbox: OutboxProcess | None = None
        self.enqueue: Enqueue | None = None
        self.scheduler: Any = None
        self.imap: ImapPoller | None = None
        self._servers: list[asyncio.Server] = []
        self._sockets: dict[str, list[socket.socket]] = {}  # bound, not served yet
        self._stop = asyncio.Event()

    async def start(self) -> None:
        offset = getattr(self.clock, "offset", None)
        if offset:
            log.warning("the clock is shifted by %s ($COCMAIL_CLOCK_OFFSET): for tests only",
                        offset)
        if getattr(self.clock, "moved_by", None):
            log.warning("the clock is moved by the file $COCMAIL_CLOCK_FILE names: for tests "
                        "only")
        shared = files.shared(self.config)
        if shared:
            log.warning("readable by others than cocmail's user (chmod go= them): %s",
                        ", ".join(shared))
        # A broken template override stops the start, before any mail is taken.
        Templates(self.config.templates.directory).check()
        transport.for_config(self.config.delivery)  # the relay's password is readable
        # The certificate read and the ports taken before anything starts: a
        # mistake in either is one line, and no process was started for nothing.
        context = tls_context(self.config)
        self._bind()
        prepare_database(self.store)
        unlock(self.config, self.store, self.clock.now())
        started = members.start(self.store, self.config.committee, self.clock.now())
        key = tokens.load_key(self.config, may_create=started.empty)
        self.outbox = OutboxProcess(self.config.path, self.metrics)
        self.outbox.start(asyncio.get_running_loop())
        self.enqueue = Enqueue.for_config(self.config, key)
        intake = wiring.intake(self.config, self.store, key, self.clock)
        if self.store.is_sqlite:
            # SQLite takes one writer at a time (more threads would only queue on
            # its lock): one writer process, and one thread for large messages.
            process_writer = ProcessWriter(self.config.path, BatchWriter(
                intake, threads=1, metrics=self.metrics), self.metrics)
            process_writer.start(asyncio.get_running_loop())
            self.writer = process_writer
        else:
            self.writer = BatchWriter(intake, threads=4, metrics=self.metrics)
        if self.config.imap is not None:
            imap = self.config.imap
            # A password or token that cannot be read is a config error, now.
            if imap.auth == "password":
                read_secret("imap", imap.password_file, imap.password_env)
            elif imap.oauth2_token_file is not None:
                oauth2_token("imap", imap.oauth2_token_file, None)
        finish_start_up()  # before the first message: it is stored at full speed
        smtp = self.config.smtp
        loop = asyncio.get_running_loop()
        for name, lmtp in (("smtp.listen", False), ("smtp.lmtp_listen", True)):
            handler = SmtpHandler(self.writer, self.config.committee, self.metrics,
                                  max_message_size=smtp.max_message_size, lmtp=lmtp,
                                  on_stored=self.outbox.wake, handles=started.handles)
            factory = server_factory(handler, hostname=smtp.hostname,
                                     timeout=smtp.timeout.total_seconds(),
                                     tls_context=context, max_message_size=smtp.max_message_size)
            for sock in self._sockets.pop(name, []):
                server = await loop.create_server(factory, sock=sock)
                self._servers.append(server)
                log.info("listening for %s on %s", "LMTP" if lmtp else "SMTP", bound(server))
        for sock in self._sockets.pop("http.listen", []):
            http = HttpServer(self.health, self.render_metrics)
            server = await asyncio.start_server(http.handle, sock=sock)
            self._servers.append(server)
            log.info("listening for HTTP (/healthz, /metrics) on %s", bound(server))
        self._start_scheduler()
        if self.config.imap is not None:
            # Last: a start that fails (a port taken) takes nothing from the mailbox.
            self.imap = ImapPoller(self.config, self.store, self.writer, self.metrics,
                                   self.clock, asyncio.get_running_loop(),
                                   on_stored=self.outbox.wake, handles=started.handles)
            self.imap.start()

    def _bind(self) -> None:
        """Every listener's socket bound (``listening_socket``); the ones bound
        already are closed when one cannot be."""
        smtp, http = self.config.smtp, self.config.http.listen
        wanted = [("smtp.listen", e) for e in smtp.listen]
        wanted += [("smtp.lmtp_listen", e) for e in smtp.lmtp_listen]
        wanted += [("http.listen", http)] if http is not None else []
        try:
            for key, endpoint in wanted:
                self._sockets.setdefault(key, []).append(listening_socket(key, endpoint))
        except ConfigError:
            self._close_sockets()
            raise

    def _close_sockets(self) -> None:
        for sockets in self._sockets.values():
            for sock in sockets:
                sock.close()
        self._sockets.clear()

    def _start_scheduler(self) -> None:
        """APScheduler decides only when to look (``schedule/sweep.py`` what is due)."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.scheduler.add_job(self._sweep, "interval",
                               seconds=self.config.scheduler.tick.total_seconds(),
                               # APScheduler's own (real) time: it only says when to look.
                               next_run_time=dt.datetime.now(dt.UTC), coalesce=True,
                               max_instances=1,
                               misfire_grace_time=None, id="sweep")
        self.scheduler.start()

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        queued = await loop.run_in_executor(self.executor, self._queue_due)
        if queued and self.outbox is not None:
            self.outbox.wake()

    def _queue_due(self) -> int:
        assert self.enqueue is not None
        return sweep(self.store, self.config, self.enqueue, self.clock, self.metrics)

    async def health(self) -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.executor, self._ping)
        except StoreUnavailable as exc:
            return False, f"store unavailable: {exc}"
        if self.imap is not None:
            return self.imap.status()
        return True, "ok"

    def _ping(self) -> None:
        with self.store.unit_of_work() as session:
            session.execute(text("SELECT 1"))

    async def render_metrics(self) -> str:
        loop = asyncio.get_running_loop()
        try:
            gauges = await loop.run_in_executor(self.executor, self._outbox_gauges)
        except StoreUnavailable:
            gauges = {}
        return self.metrics.render({**gauges, **health_gauges(self.imap)})

    def _outbox_gauges(self) -> dict[str, float]:
        """Mail waiting and mail given up, as the store has them (all replicas)."""
        with self.store.unit_of_work() as session:
            counts = {status: count for status, count in session.execute(
                select(Outbox.status, func.count()).where(
                    Outbox.status.in_(("queued", "failed"))).group_by(Outbox.status))}
        return {"cocmail_outbox_queued": counts.get("queued", 0),
                "cocmail_outbox_failed": counts.get("failed", 0)}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        log.info("cocmail is running")
        await self._stop.wait()
        log.info("stopping")
        await self.close()

    async def close(self) -> None:
        self._close_sockets()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        # Let messages being stored finish their commit before the process ends.
        loop = asyncio.get_running_loop()
        if self.imap is not None:
            # Its batch in hand is stored and moved, or left in the folder.
            await loop.run_in_executor(None, self.imap.close)
        if self.writer is not None:
            # Blocks the loop while the writers finish: nothing else runs by now.
            self.writer.close()
        if self.outbox is not None:
            # The batch in hand is sent and recorded; the rest waits in the store.
            await self.outbox.close()
        await loop.run_in_executor(None, self.executor.shutdown, True)
        self.store.dispose()
