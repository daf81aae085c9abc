"""The IMAP poller reads a message's envelope (Return-Path, where it was delivered,
To, Cc) with a regular expression over its header block: it must read what the
email package reads, on real mail and on odd header blocks."""

from __future__ import annotations

import email
import re
from pathlib import Path

import pytest

from cocmail.ingest.imap.envelope import address_fields
from tests.conftest import corpus_files, stdlib_email_messages

NAMES = ("Return-Path", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To",
         "To", "Cc")


def _by_the_email_package(raw: bytes) -> dict[str, list[str]]:
    """What the poller read before: the header block parsed as a message."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    message = email.message_from_bytes(head + b"\r\n\r\n")
    found = {}
    for name in NAMES:
        values = message.get_all(name)
        if values:
            # Folded lines keep their line ends; the poller's have LF (both are
            # white space to an address parser).
            found[name.lower()] = [re.sub(r"\r\n|\r", "\n", str(v)) for v in values]
    return found


ODD = [
    b"To: conduct@example.org\r\n\r\nbody",
    b"TO:conduct@example.org\r\ncc:  a@x.example,\r\n\tb@x.example\r\n\r\n",
    b"To: A <a@x.example>,\r\n B <b@x.example>,\r\n  C <c@x.example>\r\nSubject: s\r\n\r\n",
    b"From someone Mon Jan 1 00:00:00 2026\nTo: a@x.example\nFrom x\nCc: b@x.example\n\n",
    b" folded first\r\nTo: a@x.example\r\n\r\n",
    b":no name\r\n continued\r\nTo: a@x.example\r\n\r\n",
    b"Subject: s\r\nnot a header line\r\nTo: hidden@x.example\r\n\r\n",
    b"To : spaced@x.example\r\nCc: after@x.example\r\n\r\n",
    b"To: lone@x.example\rCc: cr@x.example\r\r\nbody",
    b"Return-Path: <>\r\nDelivered-To: conduct+1-abc@example.org\r\n"
    b"Delivered-To: conduct@example.org\r\nX-Original-To: x@example.org\r\n\r\n",
    "To: \u00e9 <a@x.example>\r\nReturn-Path: <r\u00e9@x.example>\r\n\r\n".encode(),
    b"To: =?utf-8?q?Doe=2C_J?= <a@x.example>\r\nEnvelope-To: e@x.example\r\n"
    b"X-Envelope-To: f@x.example\r\n\r\n",
    b"Subject: no address fields at all\r\n\r\nTo: in the body@x.example\r\n",
    b"To: only a header block, no body",
    b"\r\nTo: after an empty first line\r\n\r\n",
    b"X-To: not@x.example\r\nTo-Do: not@x.example\r\nTo:\r\n\r\n",
    b"To: a@x.example\r\n\t\r\n more@x.example\r\n\r\n",
]


@pytest.mark.parametrize("raw", ODD, ids=range(len(ODD)))
def test_odd_header_blocks_are_read_as_the_email_package_reads_them(raw: bytes) -> None:
    assert address_fields(raw) == _by_the_email_package(raw)


@pytest.mark.parametrize("path", corpus_files("replies") + stdlib_email_messages(),
                         ids=lambda p: p.name)
def test_real_mail_is_read_as_the_email_package_reads_it(path: Path) -> None:
    raw = path.read_bytes()
    assert address_fields(raw) == _by_the_email_package(raw)
