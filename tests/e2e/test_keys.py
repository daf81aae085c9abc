"""``cocmail keys rotate`` against a running daemon: killed (SIGKILL) halfway and
run again, every case is readable under the new master key alone, and the
daemon goes on taking and reading reports throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from sqlalchemy import func, select

from cocmail import config as config_module
from cocmail.keys import master
from cocmail.store import content
from cocmail.store.db import Store
from cocmail.store.models import ContentKey, Message
from tests.conftest import COCMAIL, ROOT, TOKEN_KEY, Server, utc
from tests.mail import message, send

KEYS = 3000  # data keys enough that a rotation in batches of 10 is caught halfway


def _under(store: Store, key_id: str) -> int:
    with store.reading() as session:
        return int(session.scalar(select(func.count()).select_from(ContentKey).where(
            ContentKey.key_id == key_id)) or 0)


def test_a_rotation_killed_halfway_and_run_again_loses_no_case(serve, db_url: str) -> None:
    server: Server = serve(db_url)
    assert send(server.smtp_port, message(body="BEFORE the rotation.\n"))[0] == 250
    server.quiet()
    store = server.store()
    with store.transaction() as db:  # many cases' keys, as a store of years holds
        content.new_refs(db, KEYS, utc(2026, 1, 1))
    old = store.keyring.master.current  # type: ignore[union-attr]
    key_file = config_module.load(server.config).secrets.master_key_file
    assert key_file is not None

    rotation = subprocess.Popen(
        [*COCMAIL, "keys", "rotate", "--batch", "10", "--config", str(server.config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "COCMAIL_TOKEN_KEY": TOKEN_KEY, **server.env})
    new = None
    deadline = time.monotonic() + 60
    while True:  # wait on state: some keys moved to the new master key, not all
        assert rotation.poll() is None, rotation.communicate()
        assert time.monotonic() < deadline, "the rotation moved no key"
        keys = master.parse(key_file.read_text(), "the key file")
        if keys.current != old:
            new = keys.current
            if 0 < _under(store, new) < KEYS // 2:
                break
        time.sleep(0.01)
    assert new is not None
    os.kill(rotation.pid, signal.SIGKILL)
    rotation.wait()
    moved = _under(store, new)
    assert 0 < moved < KEYS + 1 and _under(store, old) > 0

    # The daemon goes on meanwhile: a report now, stored and read back.
    assert send(server.smtp_port, message(body="DURING the rotation.\n"))[0] == 250
    server.quiet()
    status = server.json("keys", "status")
    assert status["current"] == new and status["behind"] > 0

    again = server.cli("keys", "rotate", "--batch", "500")
    assert again.returncode in (0, 1), again.stderr.decode()
    assert again.stdout.decode().splitlines()[0].startswith("continuing: ")
    if again.returncode == 1:  # a key the daemon made under its old key meanwhile
        server.stop()
        again = server.cli("keys", "rotate")
        assert again.returncode == 0, again.stdout.decode() + again.stderr.decode()
    assert _under(store, old) == 0

    # The new key alone opens every case, old and new.
    key_file.write_text(key_file.read_text().splitlines()[0] + "\n")
    alone = Store(db_url)
    try:
        alone.use_keys(master.parse(key_file.read_text(), "the key file"), utc(2026, 1, 1))
        with alone.reading() as session:
            texts = [m.text for m in session.scalars(select(Message).order_by(Message.id))]
    finally:
        alone.dispose()
    assert texts == ["BEFORE the rotation.\n", "DURING the rotation.\n"]
