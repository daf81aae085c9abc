"""Starting a helper process of the daemon (the intake writer, the outbox worker):
``spawn`` in the daemon (from a fork server), ``helper_start`` first thing in the helper, ``ready``
once it can work; and the end of any cocmail process's start-up
(``finish_start_up``)."""

from __future__ import annotations

import gc
import multiprocessing
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy.orm import configure_mappers

from cocmail import config as config_module
from cocmail.clock import SystemClock
from cocmail.config import Config
from cocmail.route import tokens
from cocmail.store.db import Store
from cocmail.store.unlock import unlock
from cocmail.telemetry import logs

READY = "ready"


def finish_start_up() -> None:
    """Finish a long-running process's start-up, so that the first report does not
    pay for it. Set up the ORM's mappers now (done on first use otherwise: 15-20 ms
    of the first batch stored after a start). Then take what start-up built
    (modules, config, templates, the database's metadata: tens of thousands of
    objects, kept for the process's life) out of the garbage collector's sight,
    so that each full collection looks only at what came since, not at all of it
    again (measured: 10-15% of the intake writer's CPU a report). Once a process,
    never per request."""
    configure_mappers()
    gc.freeze()


@dataclass(frozen=True)
class Helper:
    config: Config
    store: Store
    key: bytes


def helper_start(config_path: str) -> Helper:
    """What each helper process does first: the daemon's config, its log format,
    the store and the token key (the daemon made it, if it was new). Ctrl-C
    reaches the whole process group: the daemon says when a helper stops, after
    the batch in hand."""
    config = config_module.load(Path(config_path))
    logs.setup(config.logging.level, config.logging.format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    store = Store.of(config.database)
    unlock(config, store, SystemClock().now())
    return Helper(config, store, tokens.load_key(config))


def ready(conn: Connection) -> None:
    """Tell the daemon that this helper process has started."""
    finish_start_up()
    conn.send(READY)


# The helpers' modules, imported once by the fork server (``_context``).
HELPER_MODULES = ["cocmail.daemon.intake_helper", "cocmail.daemon.outbox_process"]


def _context() -> Any:
    """Helpers start from multiprocessing's fork server: a process started once,
    with no thread and none of the daemon's state, that has imported the
    helpers' modules (about 1.3 s of CPU a process) and forks each helper from
    itself. A helper so starts as clean as a spawned one, without importing
    everything again, and one that is restarted (it died) is back at once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(HELPER_MODULES)
    return context


def spawn(target: Callable[..., None], config_path: str, name: str) -> tuple[Any, Connection]:
    """Run ``target(connection, config_path)`` in a fresh process (not a fork of
    the daemon: ``_context``) and return it with the daemon's end of the
    connection once the process has sent ``READY`` (it has loaded the config
    and the key)."""
    context = _context()
    parent, child = context.Pipe()
    process = context.Process(target=target, args=(child, config_path), name=name, daemon=True)
    process.start()
    child.close()  # so that the daemon sees EOF when the process dies
    if not parent.poll(60) or parent.recv() != READY:
        process.kill()
        raise RuntimeError(f"the {name} process did not start")
    return process, parent
