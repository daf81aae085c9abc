"""``cocmail keys status`` and ``cocmail keys rotate``: which master keys wrap the
store's data keys, and a new master key with every data key re-wrapped under
it (and content stored before encryption at rest sealed), in batches that can
be stopped and run again while the daemon runs (``store/rekey.py``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tqdm import tqdm

from cocmail.case import events
from cocmail.cli.base import Commands, open_store, print_json
from cocmail.clock import SystemClock
from cocmail.config import Config
from cocmail.keys import master
from cocmail.store import rekey
from cocmail.store.db import Store


def register(commands: Commands, sub: Any) -> None:
    keys = commands.group(sub, "keys", "the master key and the data keys it wraps")
    p = commands.command(keys, "status", cmd_keys_status,
                         "the master key ids in use and the cases under each", collect_status)
    p.add_argument("--json", action="store_true")
    p = commands.command(keys, "rotate", cmd_keys_rotate,
                         "a new master key (in the key file); every data key re-wrapped "
                         "under it and content stored in the clear sealed, in batches: "
                         "safe to stop and run again, the daemon running")
    p.add_argument("--batch", type=int, default=500, help="rows per transaction (500)")


def collect_status(config: Config, store: Store, args: argparse.Namespace) -> dict[str, Any]:
    assert store.keyring is not None
    current = store.keyring.master.current
    with store.reading() as session:
        found = rekey.status(session.connection(), current)
    return {"current": current, "source": store.keyring.master.source,
            "keys": [{"key_id": key_id, "current": key_id == current, "wrapped": n,
                      "cases": found.cases.get(key_id, 0)}
                     for key_id, n in sorted(found.wrapped.items(),
                                             key=lambda item: item[0] != current)],
            "behind": found.behind}


def cmd_keys_status(config: Config, args: argparse.Namespace) -> int:
    result = collect_status(config, open_store(config), args)
    if args.json:
        print_json(result)
        return 0
    print(f"master key {result['current']} is current ({result['source']})")
    for key in result["keys"]:
        mark = "current" if key["current"] else "to re-wrap"
        print(f"  {key['key_id']}  {key['wrapped']:>7} keys  {key['cases']:>7} cases  ({mark})")
    if result["behind"]:
        print(f"{result['behind']} keys are wrapped under an earlier master key: run "
              "`cocmail keys rotate` to finish, and keep the earlier key until then")
    return 0


def cmd_keys_rotate(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config)
    assert store.keyring is not None
    with store.reading() as session:
        behind = rekey.status(session.connection(), store.keyring.master.current).behind
    if behind:
        # A rotation stopped halfway: it goes on to the key it had made.
        print(f"continuing: {behind} keys still wrapped under an earlier master key")
    else:
        new = master.add_key(config)
        store.keyring.master = master.load(config)
        print(f"master key {new} made, first in {config.secrets.master_key_file}")
    _rewrap(store, args.batch)
    _seal_clear(store, args.batch)
    current = store.keyring.master.current
    with store.reading() as session:
        left = rekey.status(session.connection(), current).behind
    if left:
        # A daemon started before this rotation made them: it wraps under the key
        # it started with until it restarts.
        print(f"{left} keys made meanwhile under an earlier master key: run "
              "`cocmail keys rotate` again after the daemon restarts")
        return 1
    print(f"every key is wrapped under master key {current}; earlier keys in the key "
          "file may be removed once no backup made before now is kept")
    if not store.is_sqlite:
        print("PostgreSQL keeps what this replaced in dead row versions until they are "
              "overwritten: run VACUUM FULL on the database to rewrite them now")
    return 0


def _rewrap(store: Store, batch: int) -> None:
    with store.transaction() as db:
        rekey.rewrap_keyring(db)
    current = store.keyring.master.current  # type: ignore[union-attr]
    with store.reading() as session:
        todo = rekey.status(session.connection(), current).behind
    with _progress(todo, "re-wrapping data keys") as bar:
        while True:
            with store.transaction() as db:
                done = rekey.rewrap_batch(db, batch)
            if not done:
                return
            bar.update(done)


def _seal_clear(store: Store, batch: int) -> None:
    """Seal what was stored before encryption at rest, table by table; then, on
    SQLite, leave none of it in the files (``Store.scrub``)."""
    with store.reading() as session:
        total = rekey.count_rows(session.connection())
    sealed = 0
    with _progress(total, "sealing content in the clear") as bar:
        for model, by in rekey.SEALED_TABLES:
            after = 0
            while True:
                with store.transaction() as db:
                    after, looked, changed = rekey.seal_batch(
                        db, model, by, after, batch, events.private, SystemClock().now())
                if not looked:
                    break
                bar.update(looked)
                sealed += changed
    if sealed:
        store.scrub()
        print(f"{sealed} rows stored in the clear are sealed now")


def _progress(total: int, what: str) -> Any:
    """A progress bar on a terminal; on anything else, nothing until the summary."""
    return tqdm(total=total, desc=what, unit="row", disable=not sys.stderr.isatty(),
                leave=False)

