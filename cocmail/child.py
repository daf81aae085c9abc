"""Starting a helper process of the daemon (the intake writer, the outbox worker)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

READY = "ready"


def spawn(target: Callable[..., None], config_path: str, name: str) -> tuple[Any, Connection]:
    """Run ``target(connection, config_path)`` in a fresh (spawned, not forked)
    process and return it with the daemon's end of the connection once the process
    has sent ``READY`` (it has loaded the config and the key)."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=target, args=(child, config_path), name=name, daemon=True)
    process.start()
    child.close()  # so that the daemon sees EOF when the process dies
    if not parent.poll(60) or parent.recv() != READY:
        process.kill()
        raise RuntimeError(f"the {name} process did not start")
    return process, parent
