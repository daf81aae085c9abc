"""Encryption at rest, end to end: a whole case over SMTP leaves no byte of what
it said, nor of whom it names, in the database's files (SQLite: the file and
its WAL; PostgreSQL: a pg_dump and the tables' own files on disk); after a
purge no live row holds the case's ciphertext or its key."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import select, text

from cocmail.store.models import Case, ContentKey, Message, Participant
from tests.conftest import Server, relay_to
from tests.e2e.test_access import read_by_all, reply
from tests.mail import message
from tests.sink import Sink

REPORTER = "rita.secret@reporter.example"
PARTY = "sam.secret@elsewhere.example"
# What the case says and whom it names, in every place it can be written.
SECRETS = ("REPORT-SECRET", "SUBJECT-SECRET", REPORTER, "Rita Reporter", PARTY, "Sam Party",
           "NOTE-SECRET", "VOTE-SECRET", "REASON-SECRET", "FOLLOWUP-SECRET", "RELAY-SECRET",
           "EMERGENCY-SECRET", "PLAN-SECRET")
TABLES = ("messages", "participants", "outbox", "events", "follow_ups", "emergencies",
          "attachments", "quarantine", "content_keys", "cases")


def _sqlite_blobs(db_url: str) -> dict[str, bytes]:
    path = Path(db_url.removeprefix("sqlite:///"))
    return {str(p): p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists()}


def _postgres_blobs(db_url: str) -> dict[str, bytes]:
    """A pg_dump of the database, and the files the server keeps its tables (and
    their TOAST tables) in, after a checkpoint wrote every page to them."""
    url = db_url.replace("postgresql+psycopg://", "postgresql://")
    blobs = {"pg_dump": subprocess.run(["pg_dump", "--data-only", url], capture_output=True,
                                       timeout=60, check=True).stdout}
    query = ("CHECKPOINT; SELECT current_setting('data_directory') || '/' || "
             "pg_relation_filepath(c.oid) FROM pg_class c WHERE c.relname IN ("
             + ", ".join(f"'{t}'" for t in TABLES) + ") OR c.oid IN (SELECT reltoastrelid "
             "FROM pg_class WHERE relname IN (" + ", ".join(f"'{t}'" for t in TABLES) + "))")
    found = subprocess.run(["psql", "-At", url, "-c", query], capture_output=True,
                           timeout=60, check=True).stdout.decode().split()
    files = [Path(p) for p in found if p.startswith("/")]
    assert len(files) >= len(TABLES), found
    for path in files:
        for segment in [path, *sorted(path.parent.glob(f"{path.name}.*"))]:
            blobs[str(segment)] = segment.read_bytes()
    return blobs


def left_in_files(db_url: str) -> dict[str, list[str]]:
    """Which of SECRETS is still readable in the database's files."""
    blobs = (_sqlite_blobs(db_url) if db_url.startswith("sqlite")
             else _postgres_blobs(db_url))
    return {name: found for name, blob in blobs.items()
            if (found := [s for s in SECRETS if s.encode() in blob])}


def test_a_whole_case_leaves_no_byte_of_its_text_or_its_people_in_the_files(
        serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    report = message(sender=REPORTER, subject="SUBJECT-SECRET",
                     body="REPORT-SECRET: someone was rude to me.\n")
    read_by_all(server, sink, raw=report)
    reply(server, "alice", f"party add respondent {PARTY} Sam Party\n\nNOTE-SECRET\n")
    reply(server, "alice", "relay respondent\n\nRELAY-SECRET\n")
    reply(server, "bob", "approve\n")
    reply(server, "carol", "recuse soft REASON-SECRET\n")
    reply(server, "dave", "emergency platform-ban EMERGENCY-SECRET\n")
    reply(server, "alice", "vote coaching VOTE-SECRET\nfollow-up 30d FOLLOWUP-SECRET\n"
                           "plan PLAN-SECRET\n")
    server.quiet(sink)
    # Every secret was received and kept: the scan below looks where they are.
    store = server.store()
    with store.reading() as session:
        texts = " ".join(m.text or "" for m in session.scalars(select(Message)))
        seats = {p.email for p in session.scalars(select(Participant))}
    assert "REPORT-SECRET" in texts and "VOTE-SECRET" in texts
    assert {REPORTER, PARTY} <= seats
    assert [m for m in sink.mails if m.recipient == PARTY and "RELAY-SECRET" in m.text]
    assert left_in_files(db_url) == {}


def test_after_a_purge_no_live_row_holds_the_case_or_its_key(
        serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    read_by_all(server, sink, raw=message(sender=REPORTER, body="REPORT-SECRET\n"))
    reply(server, "alice", "NOTE-SECRET\n")
    reply(server, "alice", "purge\n")
    store = server.store()
    with store.reading() as session:
        [case] = session.scalars(select(Case))
        assert case.key_ref is not None
        ref = case.key_ref
        stored = session.execute(select(ContentKey.wrapped).where(
            ContentKey.ref == ref)).scalar_one()
        sealed = session.execute(text("SELECT raw FROM messages ORDER BY id")).scalars().first()
    assert sealed is not None and b"REPORT-SECRET" not in bytes(sealed)
    reply(server, "bob", "purge\n")
    server.quiet(sink)
    with store.reading() as session:
        # The mail written since (the purge's confirmation) has a key of its own.
        assert session.get(Case, 1).key_ref != ref  # type: ignore[union-attr]
        assert session.scalars(select(ContentKey).where(ContentKey.ref == ref)).all() == []
        assert session.execute(text("SELECT count(*) FROM messages WHERE raw IS NOT NULL")
                               ).scalar_one() == 0
        for seat in session.scalars(select(Participant)):
            assert seat.email == (f"member:{seat.member_id}" if seat.member_id else "(purged)")
            assert seat.name is None
    blobs = (_sqlite_blobs(db_url) if db_url.startswith("sqlite")
             else {"pg_dump": _postgres_blobs(db_url)["pg_dump"]})
    for name, blob in blobs.items():
        assert bytes(stored) not in blob, name
        assert bytes(sealed)[:64] not in blob, name
    assert [s for s in ("REPORT-SECRET", REPORTER, "NOTE-SECRET")
            if any(s.encode() in blob for blob in blobs.values())] == []
