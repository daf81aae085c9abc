"""Building test messages and sending them over real SMTP/LMTP sockets."""

from __future__ import annotations

import smtplib
import uuid
from typing import BinaryIO

from tests.conftest import CONDUCT


def message(
    sender: str = "rita@reporter.example",
    to: str = CONDUCT,
    subject: str = "Something happened at the meetup",
    body: str = "Someone was rude to me at the meetup.\n",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A plain-text message with CRLF line endings."""
    mid = message_id or f"{uuid.uuid4().hex}@reporter.example"
    lines = [
        f"From: Rita Reporter <{sender}>",
        f"To: {to}",
        f"Subject: {subject}",
        "Date: Wed, 25 Nov 2026 10:00:00 +0000",
        f"Message-ID: <{mid}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    text = "\r\n".join(lines) + "\r\n\r\n" + body.replace("\r\n", "\n").replace("\n", "\r\n")
    return text.encode("utf-8")


def send(port: int, raw: bytes, sender: str = "rita@reporter.example",
         rcpts: list[str] | None = None) -> tuple[int, bytes]:
    """Send over SMTP; return the reply to DATA (code, text)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        code, text = smtp.mail(sender)
        assert code == 250, text
        for rcpt in rcpts or [CONDUCT]:
            code, text = smtp.rcpt(rcpt)
            assert code == 250, text
        return smtp.data(raw)


def read_reply(f: BinaryIO) -> bytes:
    """One SMTP/LMTP reply, all its lines ("250-..." continues, "250 ..." ends it)."""
    out = b""
    while True:
        line = f.readline()
        out += line
        if line[3:4] != b"-":
            return out


def reports(tag: str, count: int, start: int = 0) -> list[bytes]:
    """``count`` reports from as many reporters, each with a Message-ID of ``tag``."""
    return [message(sender=f"reporter{n}@reporter.example", subject=f"report {n}",
                    message_id=f"{tag}-{n}@reporter.example")
            for n in range(start, start + count)]
