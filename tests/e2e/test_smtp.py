"""The SMTP listener, over real sockets on loopback, on SQLite and on PostgreSQL."""

from __future__ import annotations

import smtplib
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CONDUCT, DOMAIN, Server
from tests.mail import message, read_reply, send


def _raw_dialogue(port: int, lines: list[bytes]) -> list[bytes]:
    """Speak SMTP byte for byte (smtplib would fix what these tests send on purpose)."""
    replies: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        f = sock.makefile("rb")
        replies.append(read_reply(f))
        for line in lines:
            sock.sendall(line)
        # Read every reply, up to QUIT's.
        while True:
            r = read_reply(f)
            if not r:
                break
            replies.append(r)
            if r.startswith(b"221"):
                break
    return replies


class TestReports:
    def test_report_opens_a_case_listed_by_cases_list(self, serve, db_url: str) -> None:
        """A report to the conduct address opens a case that `cases list --json` shows."""
        server: Server = serve(db_url)
        code, text = send(server.smtp_port, message())
        assert code == 250 and text.startswith(b"2.0.0"), text
        cases = server.look("cases", "list")
        assert len(cases) == 1
        case = cases[0]
        assert case["state"] == "new" and case["message_count"] == 1
        for key in ("id", "state", "severity", "opened_at", "acknowledged_at", "message_count",
                    "recused", "decision"):
            assert key in case

    def test_follow_up_to_token_address_threads_and_stranger_is_quarantined(
            self, serve, db_url: str) -> None:
        """A follow-up to the reporter's token address joins the case; the same follow-up
        from another sender is quarantined, not threaded."""
        server: Server = serve(db_url)
        send(server.smtp_port, message())
        case = server.look("case", "show", "1")
        reporter = next(p for p in case["participants"] if p["role"] == "reporter")
        reply_to = reporter["reply_address"]
        assert reply_to.startswith("conduct+1.") and reply_to.endswith("@" + DOMAIN)

        code, _ = send(server.smtp_port, message(to=reply_to, subject="Re: more"),
                       rcpts=[reply_to])
        assert code == 250
        code, _ = send(server.smtp_port,
                       message(sender="mallory@elsewhere.example", to=reply_to, subject="Re: x"),
                       sender="mallory@elsewhere.example", rcpts=[reply_to])
        assert code == 250

        case = server.look("case", "show", "1")
        assert [m["sender_role"] for m in case["messages"]] == ["reporter", "reporter"]
        assert case["messages"][1]["verified"] is True
        quarantined = server.look("quarantine", "list")
        assert [q["reason"] for q in quarantined] == ["sender-mismatch"]
        assert server.look("cases", "list")[0]["message_count"] == 2

    def test_resent_message_is_stored_once(self, serve, db_url: str) -> None:
        """The same bytes delivered twice are stored once, and both deliveries get 250."""
        server: Server = serve(db_url)
        raw = message()
        first = send(server.smtp_port, raw)
        second = send(server.smtp_port, raw)
        assert first[0] == second[0] == 250
        assert b"already stored" in second[1]
        cases = server.look("cases", "list")
        assert len(cases) == 1 and cases[0]["message_count"] == 1

    def test_resent_message_without_message_id_is_stored_once(self, serve, db_url: str) -> None:
        server: Server = serve(db_url)
        raw = b"From: a@b.example\r\nSubject: no id\r\n\r\nhello\r\n"
        assert send(server.smtp_port, raw)[0] == 250
        assert send(server.smtp_port, raw)[0] == 250
        assert len(server.look("cases", "list")) == 1

    def test_reply_threads_by_references_only_for_a_participant(
            self, serve, db_url: str) -> None:
        """In-Reply-To of a case's message threads a participant's mail; a stranger with
        the same In-Reply-To opens a new case instead."""
        server: Server = serve(db_url)
        send(server.smtp_port, message(message_id="first@reporter.example"))
        reply = message(subject="Re: Something", headers={
            "In-Reply-To": "<first@reporter.example>",
            "References": "<first@reporter.example>"})
        send(server.smtp_port, reply)
        stranger = message(sender="someone@else.example", subject="Re: Something",
                           headers={"In-Reply-To": "<first@reporter.example>"})
        send(server.smtp_port, stranger, sender="someone@else.example")
        cases = server.look("cases", "list")
        assert [c["message_count"] for c in cases] == [2, 1]

    def test_subject_tag_alone_does_not_thread(self, serve, db_url: str) -> None:
        server: Server = serve(db_url)
        send(server.smtp_port, message())
        send(server.smtp_port, message(subject="[conduct #1] Re: Something"))
        assert len(server.look("cases", "list")) == 2


class TestRefusals:
    @pytest.mark.parametrize("rcpt", ["bob@" + DOMAIN, "conduct@other.example",
                                      "conduct+nonsense@" + DOMAIN])
    def test_unknown_recipient_gets_550(self, serve, tmp_path: Path, rcpt: str) -> None:
        server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            smtp.ehlo()
            smtp.mail("rita@reporter.example")
            code, text = smtp.rcpt(rcpt)
        assert code == 550
        assert text.startswith(b"5.1.1 ")
        assert CONDUCT.encode() in text or b"reply address" in text

    def test_oversize_declared_at_mail_gets_552(self, serve, tmp_path: Path) -> None:
        server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            code, text = smtp.ehlo()
            assert b"SIZE 1048576" in text
            code, text = smtp.mail("rita@reporter.example", options=["SIZE=2000000"])
        assert (code, text[:5]) == (552, b"5.3.4")

    def test_oversize_data_gets_552_and_nothing_is_stored(self, serve, db_url: str) -> None:
        server: Server = serve(db_url)
        big = message(body="x" * 70 + "\n") * 1  # header
        big += b"y" * 76 + b"\r\n"
        big += (b"z" * 76 + b"\r\n") * 15000  # about 1.2 MB, over the 1 MB limit
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
            smtp.ehlo()
            smtp.mail("rita@reporter.example")
            smtp.rcpt(CONDUCT)
            code, text = smtp.data(big)
            assert (code, text[:5]) == (552, b"5.3.4")
            # The session goes on: the next message is taken.
            smtp.mail("rita@reporter.example")
            smtp.rcpt(CONDUCT)
            assert smtp.data(message())[0] == 250
        assert len(server.look("cases", "list")) == 1


class TestSloppyClients:
    def test_long_lines_and_bare_lf_are_stored_as_sent(self, serve, db_url: str) -> None:
        """Lines over 1000 octets and bare-LF line endings are accepted and kept byte for
        byte; only CRLF.CRLF ends the data."""
        server: Server = serve(db_url)
        body = b"From: rita@reporter.example\nSubject: sloppy\nMessage-ID: <sloppy@x>\n\n"
        body += b"A" * 5000 + b"\n" + b"second line\n.\nnot the end\n"
        replies = _raw_dialogue(server.smtp_port, [
            b"EHLO client\r\n", b"MAIL FROM:<rita@reporter.example>\r\n",
            b"RCPT TO:<" + CONDUCT.encode() + b">\r\n", b"DATA\r\n",
            body + b"\r\n.\r\n", b"QUIT\r\n"])
        assert replies[4].startswith(b"354")
        assert replies[5].startswith(b"250 2.0.0"), replies
        case = server.look("case", "show", "1")
        assert case["messages"][0]["message_id"] == "sloppy@x"
        raw = _stored_raw(server, 1)
        assert raw == body + b"\r\n"  # the CRLF before the final dot belongs to the data

    def test_lf_dot_lf_does_not_end_the_data(self, serve, tmp_path: Path) -> None:
        """SMTP smuggling: "\\n.\\n" inside the data does not end it, so the smuggled
        second message is part of the first."""
        server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
        smuggled = (b"From: rita@reporter.example\r\nSubject: one\r\n\r\nfirst\r\n\n.\n"
                    b"MAIL FROM:<evil@x>\r\nRCPT TO:<" + CONDUCT.encode() + b">\r\nDATA\r\n"
                    b"From: evil@x\r\nSubject: smuggled\r\n\r\nsecond\r\n")
        replies = _raw_dialogue(server.smtp_port, [
            b"EHLO client\r\n", b"MAIL FROM:<rita@reporter.example>\r\n",
            b"RCPT TO:<" + CONDUCT.encode() + b">\r\n", b"DATA\r\n",
            smuggled + b".\r\n", b"QUIT\r\n"])
        assert sum(r.startswith(b"250 2.0.0") for r in replies) == 1
        assert len(server.look("cases", "list")) == 1
        assert b"smuggled" in _stored_raw(server, 1)

    def test_dot_stuffing_is_removed(self, serve, tmp_path: Path) -> None:
        server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
        replies = _raw_dialogue(server.smtp_port, [
            b"EHLO client\r\n", b"MAIL FROM:<rita@reporter.example>\r\n",
            b"RCPT TO:<" + CONDUCT.encode() + b">\r\n", b"DATA\r\n",
            b"Subject: dots\r\n\r\n..leading dot\r\n.\r\n", b"QUIT\r\n"])
        assert replies[5].startswith(b"250")
        assert _stored_raw(server, 1) == b"Subject: dots\r\n\r\n.leading dot\r\n"


class TestHooks:
    def test_each_hook_answers(self, serve, tmp_path: Path) -> None:
        """aiosmtpd finds hooks by name: a misspelt hook would never run. EHLO advertises
        SIZE, 8BITMIME and SMTPUTF8, MAIL and RCPT answer with enhanced codes."""
        server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            code, text = smtp.ehlo("client.example")
            assert code == 250
            for extension in (b"SIZE 1048576", b"8BITMIME", b"SMTPUTF8"):
                assert extension in text
            assert b"AUTH" not in text
            assert smtp.mail("rita@reporter.example") == (250, b"2.1.0 Ok")
            assert smtp.rcpt(CONDUCT) == (250, b"2.1.5 Ok")
            code, text = smtp.data(message())
            assert code == 250 and text.startswith(b"2.0.0 Ok: stored as message")

    def test_smtputf8_and_8bit(self, serve, tmp_path: Path) -> None:
        server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
        raw = message(sender="rité@reporter.example", subject="Ärger",
                      body="Grüße aus Köln\n")
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            smtp.ehlo()
            code, _ = smtp.mail("rité@reporter.example", options=["SMTPUTF8", "BODY=8BITMIME"])
            assert code == 250
            assert smtp.rcpt(CONDUCT)[0] == 250
            assert smtp.data(raw)[0] == 250
        case = server.look("case", "show", "1")
        assert case["participants"][0]["email"] == "rité@reporter.example"
        assert _stored_raw(server, 1) == raw


class TestSwaks:
    def test_swaks_report_with_attachment(self, serve, db_url: str, swaks: str,
                                          tmp_path: Path) -> None:
        """swaks, an outside client, sends a report with a CSV attachment."""
        server: Server = serve(db_url)
        csv = tmp_path / "report.csv"
        csv.write_text("when,who\n2026-11-20,someone\n")
        result = subprocess.run(
            [swaks, "--server", f"127.0.0.1:{server.smtp_port}", "--from", "rita@reporter.example",
             "--to", CONDUCT, "--header", "Subject: report", "--body", "see attached",
             "--attach-type", "text/csv", "--attach", f"@{csv}"],
            capture_output=True, timeout=30,
        )
        assert result.returncode == 0, result.stdout.decode()
        assert b"250 2.0.0" in result.stdout
        case = server.look("case", "show", "1")
        assert case["messages"][0]["attachments"] == 1

    def test_swaks_unknown_recipient(self, serve, tmp_path: Path, swaks: str) -> None:
        server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
        result = subprocess.run(
            [swaks, "--server", f"127.0.0.1:{server.smtp_port}", "--from", "a@b.example",
             "--to", "nobody@" + DOMAIN], capture_output=True, timeout=30)
        assert result.returncode != 0
        assert b"550 5.1.1" in result.stdout


def _stored_raw(server: Server, message_id: int) -> bytes:
    """The raw bytes of a stored message, read back from the database (and opened
    with the daemon's keys: they are stored sealed)."""
    from cocmail.store.models import Message

    with server.store().reading() as session:
        message = session.get(Message, message_id)
        assert message is not None and message.raw is not None
        return message.raw
