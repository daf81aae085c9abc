"""Real-world messages: every one is accepted over SMTP and either opens a case or is
quarantined with a reason, with no exception, and its raw bytes are stored exactly
as sent."""

from __future__ import annotations

import hashlib
import re
import smtplib

from sqlalchemy import select

from cocmail.store.models import Message, Quarantine
from tests.conftest import CONDUCT, Server, corpus_files, stdlib_email_messages


def _as_sent(raw: bytes) -> bytes:
    """The bytes a client sends for ``raw``: CRLF line endings, ending in CRLF."""
    data = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def test_every_corpus_message_is_stored_and_routed(serve, db_url: str) -> None:
    files = corpus_files("replies") + stdlib_email_messages()
    assert len(files) > 50
    server: Server = serve(db_url, smtp={"max_message_size": "5MB"})
    sent: dict[str, str] = {}
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
        smtp.ehlo("corpus.example")
        for path in files:
            data = _as_sent(path.read_bytes())
            smtp.mail("sender@corpus.example")
            smtp.rcpt(CONDUCT)
            code, reply = smtp.data(data)
            assert code == 250, (path.name, reply)
            sent[hashlib.sha256(data).hexdigest()] = path.name

    with server.store().reading() as session:  # opened with the daemon's keys
        rows = session.execute(
            select(Message.raw_sha256, Message.raw, Message.case_id, Quarantine.reason)
            .outerjoin(Quarantine, Quarantine.message_id == Message.id)).all()
    stored = {hashlib.sha256(bytes(row.raw)).hexdigest(): row for row in rows}
    # Some stdlib samples are byte-identical; each distinct message is stored once.
    assert set(stored) == set(sent)
    for digest, row in stored.items():
        assert row.raw_sha256 != digest  # stored keyed: a dump cannot confirm a text
        assert (row.case_id is None) != (row.reason is None), sent[digest]
    reasons = {row.reason for row in rows if row.reason}
    assert "unparseable" in reasons  # msg_19.txt has no header at all
    assert "automatic" in reasons  # the delivery reports among the samples
    assert "error" not in server.log().lower().replace("defect", "")
