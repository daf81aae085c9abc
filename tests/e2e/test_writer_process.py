"""The intake writer process: killed outright, it is started again, the messages it
had not answered for get 451, and a sender that retries (as every MTA does) ends
with each message stored exactly once. The batches of one IMAP drain (a chain)
are refused once one has failed or their process was replaced."""


from __future__ import annotations

import os
import signal
import smtplib
import time
from pathlib import Path

from tests.conftest import CONDUCT, Server, writer_pid
from tests.mail import message


def _send_until_stored(port: int, raw: bytes) -> int:
    """Send like an MTA: on 451, wait and try again. Returns how many 451s it took."""
    tempfails = 0
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                smtp.sendmail("rita@reporter.example", [CONDUCT], raw)
            return tempfails
        except smtplib.SMTPDataError as exc:
            assert exc.smtp_code == 451, exc
            tempfails += 1
            assert tempfails < 50
            time.sleep(0.2)


def test_sigkill_of_the_writer_loses_and_duplicates_nothing(serve, tmp_path: Path) -> None:
    server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
    writer = writer_pid(server)
    for i in range(30):
        if i == 10:
            os.kill(writer, signal.SIGKILL)
        _send_until_stored(server.smtp_port, message(subject=f"report {i}",
                                                     message_id=f"r{i}@reporter.example"))
    writer_pid(server, after=writer)  # a new one was started
    cases = server.look("cases", "list")
    assert len(cases) == 30 and all(c["message_count"] == 1 for c in cases)
    assert f"intake writer process {writer}: " in server.log()  # its end was noticed


def test_large_messages_are_stored_in_process(serve, tmp_path: Path) -> None:
    """Messages over the pipe's limit are stored by the daemon itself."""
    server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}",
                           smtp={"max_message_size": "5MB"})
    big = message(body=("x" * 76 + "\n") * 8000)  # about 600 KB
    assert _send_until_stored(server.smtp_port, big) == 0
    assert _send_until_stored(server.smtp_port, message()) == 0
    assert len(server.look("cases", "list")) == 2


