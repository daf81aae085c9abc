"""The LMTP listener: one reply per recipient after DATA (RFC 2033), directly and
through a real Postfix relaying with ``lmtp:``."""

from __future__ import annotations

import shutil
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CONDUCT, DOMAIN, Server, missing
from tests.mail import message, read_reply
from tests.postfix import POSTFIX, Postfix, start_postfix


def _lmtp(port: int, commands: list[bytes], replies_after_data: int) -> list[bytes]:
    """Speak LMTP; return every reply line after DATA's payload."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        f = sock.makefile("rb")
        read_reply(f)  # greeting
        for command in commands:
            sock.sendall(command)
            read_reply(f)
        sock.sendall(message() + b".\r\n")
        return [read_reply(f) for _ in range(replies_after_data)]


class TestLmtp:
    def test_one_reply_per_recipient(self, serve, tmp_path: Path) -> None:
        server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
        replies = _lmtp(server.lmtp_port, [
            b"LHLO postfix.test\r\n", b"MAIL FROM:<rita@reporter.example>\r\n",
            b"RCPT TO:<" + CONDUCT.encode() + b">\r\n",
            b"RCPT TO:<nobody@" + DOMAIN.encode() + b">\r\n",  # refused: no DATA reply
            b"RCPT TO:<Conduct@" + DOMAIN.encode() + b">\r\n",
            b"DATA\r\n"], replies_after_data=2)
        assert all(r.startswith(b"250 2.0.0") for r in replies), replies
        assert len(server.look("cases", "list")) == 1

    def test_helo_and_ehlo_are_not_lmtp(self, serve, tmp_path: Path) -> None:
        server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
        with smtplib.LMTP("127.0.0.1", server.lmtp_port, timeout=10) as lmtp:
            assert lmtp.docmd("HELO x")[0] == 500
            assert lmtp.docmd("EHLO x")[0] == 500
            code, text = lmtp.docmd("LHLO x")
            assert code == 250 and b"SIZE" in text

    def test_oversize_gets_552_per_recipient(self, serve, tmp_path: Path) -> None:
        server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}",
                               smtp={"max_message_size": "2KB"})
        with socket.create_connection(("127.0.0.1", server.lmtp_port), timeout=30) as sock:
            f = sock.makefile("rb")
            f.readline()
            for line in (b"LHLO x\r\n", b"MAIL FROM:<a@b.example>\r\n",
                         b"RCPT TO:<" + CONDUCT.encode() + b">\r\n",
                         b"RCPT TO:<" + CONDUCT.encode() + b">\r\n", b"DATA\r\n"):
                sock.sendall(line)
                while f.readline()[3:4] == b"-":
                    pass
            sock.sendall(message(body="x" * 5000 + "\n") + b".\r\n")
            assert f.readline().startswith(b"552 5.3.4")
            assert f.readline().startswith(b"552 5.3.4")


@pytest.fixture
def postfix_in_front(serve, tmp_path: Path) -> Iterator[tuple[Server, Postfix]]:
    if not Path(POSTFIX).exists() or shutil.which("script") is None:
        missing("Postfix (Debian package postfix)")
    server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
    postfix = start_postfix(server.lmtp_port)
    yield server, postfix
    postfix.stop()


class TestThroughPostfix:
    def test_postfix_delivers_a_two_recipient_message_once(self, postfix_in_front) -> None:
        """Postfix hands a message for two recipients over LMTP: both get their reply,
        Postfix logs both as sent (no timeout, no deferral), and cocmail stores it once."""
        server, postfix = postfix_in_front
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
            assert smtp.sendmail("rita@reporter.example", [CONDUCT], message()) == {}
        postfix.wait_until_delivered(1)
        case = server.look("case", "show", "1")
        reply_address = case["participants"][0]["reply_address"]

        follow_up = message(subject="Re: more", to=reply_address,
                            headers={"Cc": CONDUCT})
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
            refused = smtp.sendmail("rita@reporter.example", [reply_address, CONDUCT],
                                    follow_up)
        assert refused == {}
        postfix.wait_until_delivered(3)
        log = postfix.log()
        assert "nrcpt=2" in log
        assert "status=deferred" not in log and "timed out" not in log
        cases = server.look("cases", "list")
        assert len(cases) == 1 and cases[0]["message_count"] == 2

    def test_postfix_bounces_unknown_recipient(self, postfix_in_front) -> None:
        """A recipient cocmail refuses at RCPT becomes a bounce in Postfix, not a retry."""
        server, postfix = postfix_in_front
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
            smtp.sendmail("rita@reporter.example", [f"nobody@{DOMAIN}"], message())
        deadline_log = ""
        import time

        for _ in range(150):
            deadline_log = postfix.log()
            if "status=bounced" in deadline_log:
                break
            time.sleep(0.2)
        assert "status=bounced" in deadline_log
        assert "550 5.1.1" in deadline_log
        assert server.look("cases", "list") == []
