"""``cocmail audit verify`` against a daemon's store: 0 and a count when every
chain holds; 1 naming the first broken link after someone edits the history."""

from __future__ import annotations

import json

from sqlalchemy import select, update

from cocmail import config as config_module
from cocmail.store.models import Event
from tests.conftest import Server
from tests.mail import message, send


def test_audit_verify_passes_then_names_an_edited_event(serve, db_url: str) -> None:
    server: Server = serve(db_url)
    assert send(server.smtp_port, message())[0] == 250
    assert send(server.smtp_port, message(subject="Another report"))[0] == 250
    server.quiet()
    result = server.cli("audit", "verify")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines()[-1] == "audit: 2 cases, 4 events: every chain holds"

    with server.store().transaction() as db:
        paged = db.execute(select(Event.id, Event.data).where(
            Event.case_id == 2, Event.kind == "paged")).one()
        db.execute(update(Event).where(Event.id == paged.id).values(
            data={"members": ["mallory", "eve"]}))
    result = server.cli("audit", "verify")
    assert result.returncode == 1
    assert result.stdout.decode().splitlines() == [
        f"broken: case #2: event {paged.id} (#2 of the case): its 'members' was changed "
        "since it was written",
        "audit: 2 cases, 4 events: 1 broken"]
    result = server.cli("audit", "verify", "--case", "1", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"cases": 1, "events": 2, "broken": []}


def test_audit_verify_without_the_master_key_is_one_line(serve, db_url: str) -> None:
    server: Server = serve(db_url)
    assert send(server.smtp_port, message())[0] == 250
    server.stop()
    master = config_module.load(server.config).secrets.master_key_file
    assert master is not None
    master.rename(master.with_name("moved.key"))
    result = server.cli("audit", "verify")
    assert result.returncode == 2
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("cocmail: config: secrets.master_key_file: ") and \
        "does not exist" in line
