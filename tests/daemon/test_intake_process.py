"""The intake writer process seen from the daemon: chains refused after a failure
or a replacement, the loop going on while the process is busy, what it prepares
and takes as one batch, and what ends it."""


from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cocmail.config import Committee
from cocmail.daemon.intake_helper import _Received
from cocmail.daemon.intake_process import ProcessWriter
from cocmail.errors import StoreUnavailable
from cocmail.intake.batch import MAX_BATCH, BatchWriter, Chain, Writer
from cocmail.intake.inbound import Accepted, Inbound
from cocmail.intake.service import Intake
from cocmail.store.db import Store
from cocmail.store.models import Message
from cocmail.store.unlock import unlock
from cocmail.telemetry.metrics import Metrics
from tests.conftest import CONDUCT, TOKEN_KEY, write_config
from tests.mail import message


def _chained_writers(tmp_path: Path) -> tuple[Path, Intake, Metrics, Store]:
    from cocmail import config as config_module
    from cocmail.clock import SystemClock
    from cocmail.notify.enqueue import Enqueue
    from cocmail.route import tokens
    from cocmail.store import migrate

    db_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    config_path = write_config(tmp_path, db_url, {"database": {"url": db_url,
                                                               "busy_timeout": "1s"}})
    config = config_module.load(config_path)
    store = Store(db_url, config.database.busy_timeout)
    migrate.upgrade(store)
    unlock(config, store, SystemClock().now())
    key = tokens.load_key(config, may_create=True)
    intake = Intake(store, config.committee, key, SystemClock(), Enqueue.for_config(config, key))
    return config_path, intake, Metrics(), store


def _report(n: int) -> Inbound:
    from cocmail.route.addresses import split_recipient

    raw = message(sender=f"reporter{n}@reporter.example", message_id=f"chain-{n}@x.example")
    return Inbound(raw, None, (split_recipient(CONDUCT, _COMMITTEE),), "imap")


_COMMITTEE = Committee("Test", "conduct", CONDUCT, "+", None, None, ())


def _stored(store: Store) -> list[str]:
    with store.unit_of_work() as session:
        return [m for m in session.scalars(select(Message.message_id).order_by(Message.id))
                if m is not None]


@contextlib.contextmanager
def _write_lock(tmp_path: Path) -> Iterator[None]:
    """Another connection holds SQLite's write lock: the writer times out."""
    other = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_chain_is_refused_once_its_writer_process_was_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch queued behind one that died with the process must not be stored
    by the new process: the one that died is taken again, and would land behind."""
    monkeypatch.setenv("COCMAIL_TOKEN_KEY", TOKEN_KEY)
    config_path, intake, metrics, store = _chained_writers(tmp_path)

    async def run() -> None:
        writer = ProcessWriter(config_path, BatchWriter(intake, 1, metrics), metrics)
        writer.start(asyncio.get_running_loop())
        try:
            chain = Chain()
            [first] = await writer.store_many([_report(0)], chain)
            assert isinstance(first, Accepted)
            old = writer.pid
            assert old is not None
            os.kill(old, signal.SIGKILL)
            while writer.pid == old:  # the loop sees the pipe close and starts another
                await asyncio.sleep(0.05)
            [refused] = await writer.store_many([_report(1)], chain)
            assert isinstance(refused, StoreUnavailable)
            assert _stored(store) == ["chain-0@x.example"]
            [again] = await writer.store_many([_report(1)], Chain())
            assert isinstance(again, Accepted) and not again.duplicate
        finally:
            writer.close()

    asyncio.run(run())
    assert _stored(store) == ["chain-0@x.example", "chain-1@x.example"]


@pytest.mark.parametrize("in_process", [False, True], ids=["process", "in-process"])
def test_after_a_failed_batch_the_rest_of_its_chain_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process: bool) -> None:
    """The store fails a batch and is back a moment later: the batch queued
    behind it is refused all the same (the failed one comes first again)."""
    monkeypatch.setenv("COCMAIL_TOKEN_KEY", TOKEN_KEY)
    config_path, intake, metrics, store = _chained_writers(tmp_path)

    async def run() -> None:
        batch_writer = BatchWriter(intake, 1, metrics)
        writer: Writer = batch_writer
        if not in_process:
            process_writer = ProcessWriter(config_path, batch_writer, metrics)
            process_writer.start(asyncio.get_running_loop())
            writer = process_writer
        try:
            chain = Chain()
            with _write_lock(tmp_path):
                [failed] = await writer.store_many([_report(0)], chain)
            assert isinstance(failed, StoreUnavailable)
            [refused] = await writer.store_many([_report(1)], chain)
            assert isinstance(refused, StoreUnavailable)
            assert "earlier batch" in str(refused)
            assert _stored(store) == []
            results = await writer.store_many([_report(0), _report(1)], Chain())
            assert all(isinstance(r, Accepted) for r in results)
        finally:
            writer.close()

    asyncio.run(run())
    assert _stored(store) == ["chain-0@x.example", "chain-1@x.example"]


def test_the_event_loop_goes_on_while_the_writer_process_cannot_take_more(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch larger than the pipe holds, sent while the process is stopped
    (SIGSTOP: as busy as it gets): the loop, which serves every SMTP session,
    goes on meanwhile, and the batch is stored once the process goes on."""
    monkeypatch.setenv("COCMAIL_TOKEN_KEY", TOKEN_KEY)
    config_path, intake, metrics, store = _chained_writers(tmp_path)
    padding = "x" * 76 + "\n"
    big = [Inbound(message(message_id=f"big-{n}@x.example", body=padding * 2500),
                    None, _report(n).recipients, "imap")
           for n in range(8)]  # 8 x 200 KB: several times what the pipe holds
    released_by_watchdog = threading.Event()

    async def run() -> None:
        writer = ProcessWriter(config_path, BatchWriter(intake, 1, metrics), metrics)
        writer.start(asyncio.get_running_loop())
        pid = writer.pid
        assert pid is not None
        loop_went_on = threading.Event()

        def watchdog() -> None:
            # Where the loop is held up, nothing below runs: let the process go
            # on after a while, so that the test fails instead of hanging.
            if not loop_went_on.wait(15):
                released_by_watchdog.set()
                os.kill(pid, signal.SIGCONT)

        threading.Thread(target=watchdog, daemon=True).start()
        try:
            os.kill(pid, signal.SIGSTOP)
            storing = asyncio.create_task(writer.store_many(big, Chain()))
            await asyncio.sleep(0.5)  # the batch is on its way meanwhile
            loop_went_on.set()
            assert not storing.done()
            os.kill(pid, signal.SIGCONT)
            results = await storing
            assert all(isinstance(r, Accepted) and not r.duplicate for r in results)
        finally:
            os.kill(pid, signal.SIGCONT)
            writer.close()

    asyncio.run(run())
    assert not released_by_watchdog.is_set(), "the event loop was held up by the pipe"
    assert _stored(store) == [f"big-{n}@x.example" for n in range(8)]


class _Unpicklable:
    def __reduce__(self) -> str:
        raise TypeError("cannot be pickled")


def test_a_batch_that_cannot_be_sent_fails_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the sending thread cannot turn into bytes fails its own messages with
    "try again later"; the process is not replaced, and the next batch is stored."""
    monkeypatch.setenv("COCMAIL_TOKEN_KEY", TOKEN_KEY)
    config_path, intake, metrics, store = _chained_writers(tmp_path)
    broken = dataclasses.replace(_report(0), reading=_Unpicklable())  # type: ignore[arg-type]

    async def run() -> None:
        writer = ProcessWriter(config_path, BatchWriter(intake, 1, metrics), metrics)
        writer.start(asyncio.get_running_loop())
        try:
            pid = writer.pid
            [failed] = await writer.store_many([broken], Chain())
            assert isinstance(failed, StoreUnavailable)
            assert "could not hand it to the writer" in str(failed)
            [stored] = await writer.store_many([_report(1)], Chain())
            assert isinstance(stored, Accepted)
            assert writer.pid == pid
        finally:
            writer.close()

    asyncio.run(run())
    assert _stored(store) == ["chain-1@x.example"]


def test_the_process_prepares_what_comes_and_takes_all_that_waits_as_one_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its receiving thread prepares (parses) what comes down the pipe while the
    batch before is stored; the writer takes everything waiting as one batch,
    an IMAP batch whole, and at the end all that came before the end."""
    monkeypatch.setenv("COCMAIL_TOKEN_KEY", TOKEN_KEY)
    _, intake, _, _ = _chained_writers(tmp_path)
    daemon_end, process_end = multiprocessing.Pipe()
    received = _Received()
    receiving = threading.Thread(target=received.receive, args=(process_end, intake))
    receiving.start()
    daemon_end.send([(0, _report(0), None)])  # two SMTP messages, one after the other
    daemon_end.send([(1, _report(1), None)])
    daemon_end.send([(2 + n, _report(2 + n), 7) for n in range(MAX_BATCH + 8)])  # IMAP
    daemon_end.send([(100, _report(100), None)])
    daemon_end.send(None)
    deadline = time.monotonic() + 10
    while received._waiting < 2 + MAX_BATCH + 8 and time.monotonic() < deadline:
        time.sleep(0.01)  # until the thread stops taking more: over MAX_BATCH wait
    batches: list[list[int]] = []
    while (batch := received.take()) is not None:
        assert all(prepared.parsed is not None for _, prepared in batch)
        batches.append([entry[0] for entry, _ in batch])
    # All that waited as one batch (the IMAP batch whole, though it takes it
    # over MAX_BATCH), then the rest; and the end once all came.
    assert batches == [list(range(2 + MAX_BATCH + 8)), [100]]
    receiving.join(10)
    assert not receiving.is_alive()


def test_what_the_process_cannot_prepare_ends_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure in the receiving thread is raised by the writer (the process ends
    and the daemon starts another), after what came before it."""
    monkeypatch.setenv("COCMAIL_TOKEN_KEY", TOKEN_KEY)
    _, intake, _, _ = _chained_writers(tmp_path)
    daemon_end, process_end = multiprocessing.Pipe()
    received = _Received()
    threading.Thread(target=received.receive, args=(process_end, intake), daemon=True).start()
    daemon_end.send([(0, _report(0), None)])
    daemon_end.send([(1, "not a delivery", None)])
    assert [entry[0] for entry, _ in received.take() or []] == [0]
    with pytest.raises(AttributeError):
        received.take()
