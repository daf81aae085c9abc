"""Outgoing mail end to end: `cocmail serve` takes reports over SMTP and sends
through a real SMTP sink on loopback, which the tests read back."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import signal
import time
from pathlib import Path

import pytest

from cocmail.route.tokens import case_of_message_id
from tests.committee import recuse
from tests.conftest import (
    CONDUCT,
    DOMAIN,
    MEMBERS,
    TOKEN_KEY,
    Server,
    answer_conflict_checks,
    relay_to,
)
from tests.mail import message, send
from tests.sink import Received, Sink

KEY = TOKEN_KEY.encode()
MEMBER_EMAILS = sorted(m[2] for m in MEMBERS)
REPORTER = "rita@reporter.example"
# A new report reaches the two members on triage duty as a page (with a rotation;
# without one, every member triages and gets it as a report). The others get the
# conflict check first: until they answer "no-conflict", nothing of the case.
REPORTISH = ("report", "page")
ON_DUTY = 2


def _outbox(server: Server, *args: str) -> list[dict]:
    return server.look("outbox", "list", *args)


def _wait_outbox(server: Server, predicate, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = _outbox(server)
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox never reached the state: {rows}")
        time.sleep(0.3)


def _by_recipient(mails: list[Received]) -> dict[str, Received]:
    found: dict[str, Received] = {}
    for mail in mails:
        assert mail.recipient not in found, f"two mails to {mail.recipient}"
        found[mail.recipient] = mail
    return found


class TestReport:
    def test_one_ack_and_one_report_per_member_with_the_headers(
            self, serve, sink: Sink, db_url: str) -> None:
        server: Server = serve(db_url, delivery=relay_to(sink))
        send(server.smtp_port, message(message_id="first@reporter.example"))
        mails = sink.wait_for(1 + len(MEMBERS))
        assert server.quiet(sink) == mails  # nothing more arrives
        acks = [m for m in mails if m.kind == "ack"]
        reports = _by_recipient([m for m in mails if m.kind in REPORTISH])
        checks = _by_recipient([m for m in mails if m.kind == "conflict"])
        assert [m.recipient for m in acks] == [REPORTER]
        assert sorted([*reports, *checks]) == MEMBER_EMAILS
        # The page (with the report) goes to exactly the two on duty now; the
        # others get the conflict check, with nothing of the report in it.
        on_duty = server.look("rotation", "show", "--json")[0]["on_duty"]
        email_of = {m[0]: m[2] for m in MEMBERS}
        assert sorted(reports) == sorted(email_of[h] for h in on_duty)
        assert all(m.kind == "page" for m in reports.values())
        for check in checks.values():
            assert "no-conflict" in check.text and "recuse" in check.text
            assert "rude" not in check.text and "meetup" not in check.header("Subject")
            assert not list(check.message.iter_attachments())
        page = next(m for m in mails if m.kind == "page")
        assert page.header("Subject").startswith("[conduct #1] Triage: ")
        assert '"ack"' in page.text and 'on triage duty' in page.text
        events = server.look("case", "show", "1")["events"]
        assert {"kind": "paged", "members": sorted(on_duty)} == {
            "kind": events[1]["kind"], "members": sorted(events[1]["data"]["members"])}

        case = server.look("case", "show", "1")
        reply_of = {p["email"]: p["reply_address"] for p in case["participants"]}
        for mail in mails:
            assert mail.sender == CONDUCT
            assert mail.header("X-Cocmail-Case") == "1"
            assert mail.header("X-Auto-Response-Suppress") == "All"
            assert mail.header("Reply-To").endswith(f"<{reply_of[mail.recipient]}>")
            assert mail.header("Subject").startswith("[conduct #1] ")
            assert case_of_message_id(KEY, mail.header("Message-ID"), DOMAIN) == 1
        ack = acks[0]
        assert ack.header("Auto-Submitted") == "auto-replied"
        assert ack.header("In-Reply-To") == "<first@reporter.example>"
        assert "<first@reporter.example>" in ack.header("References")
        text = ack.text
        assert "conduct #1" in text and "3 days" in text
        for name in (m[1] for m in MEMBERS):
            assert name in text
        assert f"conduct+without-bob@{DOMAIN}" in text
        # The HTML alternative is there too.
        assert ack.message.get_body(("html",)) is not None
        for report in reports.values():
            assert report.header("Auto-Submitted") == "auto-generated"
            assert "Someone was rude to me at the meetup." in report.text
            assert report.header("Subject") in (
                "[conduct #1] Something happened at the meetup",
                "[conduct #1] Triage: Something happened at the meetup")
        rows = _outbox(server)
        assert {r["status"] for r in rows} == {"sent"} and len(rows) == len(mails)

    def test_pages_follow_an_override_and_skip_a_member_kept_out(
            self, serve, sink: Sink, db_url: str) -> None:
        server: Server = serve(db_url, delivery=relay_to(sink))
        first, second = server.look("rotation", "show", "--json")[0]["on_duty"]
        stand_in = next(m[0] for m in MEMBERS if m[0] not in (first, second))
        now = dt.datetime.now(dt.UTC)
        result = server.cli("rotation", "override", "add", "--member", stand_in,
                            "--instead-of", first,
                            "--from", (now - dt.timedelta(minutes=1)).isoformat(),
                            "--to", (now + dt.timedelta(minutes=30)).isoformat())
        assert result.returncode == 0, result.stderr
        email_of = {m[0]: m[2] for m in MEMBERS}
        send(server.smtp_port, message())
        pages = sink.wait_for(2, where=lambda m: m.kind == "page")
        assert sorted(p.recipient for p in pages) == sorted([email_of[stand_in],
                                                             email_of[second]])
        # A report that keeps the second one out pages the next member instead.
        without = f"conduct+without-{second}@{DOMAIN}"
        send(server.smtp_port, message(to=without, subject="another"), rcpts=[without])
        pages = sink.wait_for(4, where=lambda m: m.kind == "page")
        later = sorted(p.recipient for p in pages if p.header("X-Cocmail-Case") == "2")
        assert email_of[second] not in later and email_of[stand_in] in later
        assert len(later) == 2
        server.quiet(sink)
        assert email_of[second] not in {m.recipient for m in sink.mails
                                        if m.header("X-Cocmail-Case") == "2"}

    def test_a_reply_to_the_acknowledgement_threads_into_the_case(
            self, serve, sink: Sink, db_url: str) -> None:
        server: Server = serve(db_url, delivery=relay_to(sink))
        send(server.smtp_port, message())
        first = sink.wait_for(1 + len(MEMBERS))
        ack = next(m for m in first if m.kind == "ack")
        reply_to = ack.header("Reply-To").split("<")[1].rstrip(">")
        answer = message(subject=f"Re: {ack.header('Subject')}", body="One more thing.\n",
                         headers={"In-Reply-To": ack.header("Message-ID"),
                                  "References": ack.header("Message-ID")})
        code, _ = send(server.smtp_port, answer, rcpts=[reply_to])
        assert code == 250
        notes = sink.wait_for(ON_DUTY, where=lambda m: m.kind == "message")
        server.quiet(sink)
        # To those who can read the case (the two on duty); nothing to the reporter.
        assert len(sink.mails) == len(first) + ON_DUTY
        reports = _by_recipient([m for m in first if m.kind in REPORTISH])
        for note in notes:
            root = reports[note.recipient].header("Message-ID")
            assert note.header("In-Reply-To") == root  # threads under their report
            assert note.header("Subject").startswith("[conduct #1] Re: ")
            assert "One more thing." in note.text
        case = server.look("case", "show", "1")
        assert case["message_count"] == 2
        assert case["messages"][1]["verified"] is True
        assert server.look("cases", "list") and len(server.look("cases", "list")) == 1

    def test_a_reply_that_lost_the_plus_address_threads_by_its_signed_message_id(
            self, serve, sink: Sink, db_url: str) -> None:
        server: Server = serve(db_url, delivery=relay_to(sink))
        send(server.smtp_port, message())
        ack = sink.wait_for(1, where=lambda m: m.kind == "ack")[0]
        # A client that answered the bare address, keeping only In-Reply-To.
        answer = message(subject="Re: my report", body="Forgot this.\n",
                         headers={"In-Reply-To": ack.header("Message-ID")})
        send(server.smtp_port, answer)
        sink.wait_for(ON_DUTY, where=lambda m: m.kind == "message")
        assert len(server.look("cases", "list")) == 1
        case = server.look("case", "show", "1")
        assert case["message_count"] == 2 and case["messages"][1]["verified"] is False
        # The same headers from someone who is not in the case open a new case instead.
        stranger = message(sender="mallory@elsewhere.example", subject="Re: my report",
                           headers={"In-Reply-To": ack.header("Message-ID")})
        send(server.smtp_port, stranger, sender="mallory@elsewhere.example")
        sink.wait_for(2, where=lambda m: m.kind == "ack")
        assert len(server.look("cases", "list")) == 2

    def test_member_reply_goes_to_the_other_members_only(
            self, serve, sink: Sink, db_url: str) -> None:
        server: Server = serve(db_url, delivery=relay_to(sink))
        send(server.smtp_port, message())
        sink.wait_for(1 + len(MEMBERS))
        answer_conflict_checks(server, sink)
        case = server.look("case", "show", "1")
        alice = next(p for p in case["participants"] if p["handle"] == "alice")
        note = message(sender=alice["email"], subject="Re: report", body="I can take it.\n")
        send(server.smtp_port, note, sender=alice["email"], rcpts=[alice["reply_address"]])
        notes = sink.wait_for(len(MEMBERS) - 1, where=lambda m: m.kind == "message")
        server.quiet(sink)
        assert sorted(m.recipient for m in notes) == [e for e in MEMBER_EMAILS
                                                     if e != alice["email"]]
        assert REPORTER not in {m.recipient for m in sink.mails if m.kind != "ack"}


class TestConfidentiality:
    def test_a_recused_member_gets_nothing_more(self, serve, sink: Sink, db_url: str) -> None:
        server: Server = serve(db_url, delivery=relay_to(sink))
        send(server.smtp_port, message())
        sink.wait_for(1 + len(MEMBERS))
        answer_conflict_checks(server, sink)
        server.quiet(sink)
        sink.forget()
        # A recusal as a row (test_process_commands has the command).
        with server.store().unit_of_work() as session:
            recuse(session, 1, "bob", "hard")
        reply_to = server.look("case", "show", "1")["participants"][0]["reply_address"]
        send(server.smtp_port, message(subject="Re: more", body="More.\n"), rcpts=[reply_to])
        sink.wait_for(len(MEMBERS) - 1, where=lambda m: m.kind == "message")
        server.quiet(sink)
        bob = next(m[2] for m in MEMBERS if m[0] == "bob")
        assert bob not in {m.recipient for m in sink.mails}

    def test_without_handle_keeps_that_member_out_from_the_start(
            self, serve, sink: Sink, db_url: str) -> None:
        server: Server = serve(db_url, delivery=relay_to(sink))
        without_bob = f"conduct+without-bob@{DOMAIN}"
        code, _ = send(server.smtp_port, message(to=without_bob), rcpts=[without_bob])
        assert code == 250
        mails = sink.wait_for(len(MEMBERS))  # the ack and all members but Bob
        mails = server.quiet(sink)
        bob = next(m[2] for m in MEMBERS if m[0] == "bob")
        assert bob not in {m.recipient for m in mails}
        ack = next(m for m in mails if m.kind == "ack")
        assert "Bob B" not in ack.text
        case = server.look("case", "show", "1")
        assert case["excluded"] == ["bob"] and case["recused"] == []
        assert "bob" not in {p["handle"] for p in case["participants"]}
        # Later replies do not reach Bob either.
        reporter = next(p for p in case["participants"] if p["role"] == "reporter")
        send(server.smtp_port, message(subject="Re: x", body="More.\n"),
             rcpts=[reporter["reply_address"]])
        sink.wait_for(ON_DUTY, where=lambda m: m.kind == "message")
        assert bob not in {m.recipient for m in server.quiet(sink)}

    def test_without_an_unknown_member_is_refused_at_rcpt(self, serve, db_url: str) -> None:
        import smtplib

        server: Server = serve(db_url)
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            smtp.ehlo("client.example")
            smtp.mail(REPORTER)
            code, text = smtp.rcpt(f"conduct+without-zed@{DOMAIN}")
        assert code == 550 and b"no committee member 'zed'" in text


class TestLoops:
    @pytest.mark.parametrize("headers, envelope_from", [
        ({"Auto-Submitted": "auto-replied", "Subject": "Out of office"}, REPORTER),
        ({}, ""),  # a bounce: null return path
        ({"List-Id": "<announce.lists.example.net>"}, REPORTER),
        ({"X-Cocmail-Loop": CONDUCT}, REPORTER),
        ({"Precedence": "bulk"}, REPORTER),
        ({"X-Autoreply": "yes"}, REPORTER),
    ], ids=["auto-reply", "bounce", "foreign-list", "own-loop-header", "bulk", "x-autoreply"])
    def test_automatic_mail_causes_no_mail(self, serve, sink: Sink, db_url: str,
                                           headers: dict[str, str], envelope_from: str) -> None:
        server: Server = serve(db_url, delivery=relay_to(sink))
        code, _ = send(server.smtp_port, message(headers=headers), sender=envelope_from)
        assert code == 250
        assert server.quiet(sink) == []
        assert _outbox(server) == []
        assert len(server.look("quarantine", "list")) == 1

    def test_a_bounce_report_causes_no_mail(self, serve, sink: Sink, db_url: str) -> None:
        server: Server = serve(db_url, delivery=relay_to(sink))
        dsn = (b"From: MAILER-DAEMON@mx.example.net\r\nTo: conduct@" + DOMAIN.encode() +
               b"\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
               b"--b\r\nContent-Type: text/plain\r\n\r\nIt failed.\r\n"
               b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
               b"Reporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; x@y\r\n"
               b"Action: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n")
        send(server.smtp_port, dsn, sender="")
        assert server.quiet(sink) == [] and _outbox(server) == []

    def test_an_auto_reply_to_a_reply_address_joins_the_case_but_causes_no_mail(
            self, serve, sink: Sink, db_url: str) -> None:
        server: Server = serve(db_url, delivery=relay_to(sink))
        send(server.smtp_port, message())
        first = sink.wait_for(1 + len(MEMBERS))
        reply_to = server.look("case", "show", "1")["participants"][0]["reply_address"]
        vacation = message(subject="Out of office", headers={"Auto-Submitted": "auto-replied"})
        send(server.smtp_port, vacation, rcpts=[reply_to])
        assert server.quiet(sink) == first
        assert server.look("case", "show", "1")["message_count"] == 2

    def test_a_report_through_our_own_group_is_acknowledged_to_the_original_sender(
            self, serve, sink: Sink, db_url: str) -> None:
        group = "conduct.groups.example.org"
        server: Server = serve(db_url, delivery=relay_to(sink),
                               committee={"list_id": group})
        relayed = message(sender=CONDUCT, headers={
            "List-Id": f"<{group}>", "Precedence": "list",
            "Reply-To": "Rita <rita@reporter.example>",
            "X-Original-Sender": "rita@reporter.example",
        }).replace(b"From: Rita Reporter <" + CONDUCT.encode() + b">",
                   b"From: 'Rita' via conduct <" + CONDUCT.encode() + b">")
        send(server.smtp_port, relayed, sender="conduct+bncbd@groups.example.org")
        acks = sink.wait_for(1, where=lambda m: m.kind == "ack")
        server.quiet(sink)
        assert [a.recipient for a in acks] == [REPORTER]
        assert len(sink.of_kind("page")) == ON_DUTY
        assert len(sink.of_kind("conflict")) == len(MEMBERS) - ON_DUTY

    def test_answers_to_one_address_are_limited_per_day(
            self, serve, sink: Sink, db_url: str) -> None:
        server: Server = serve(db_url, delivery=relay_to(sink, answers_per_day=2))
        for n in range(4):
            send(server.smtp_port, message(subject=f"report {n}"))
        sink.wait_for(4 * ON_DUTY, where=lambda m: m.kind in REPORTISH)
        mails = server.quiet(sink)
        to_reporter = [m.kind for m in mails if m.recipient == REPORTER]
        assert sorted(to_reporter) == ["ack", "ack", "notice"]
        notice = next(m for m in mails if m.kind == "notice")
        assert "Nothing you send is lost" in notice.text
        assert notice.header("Auto-Submitted") == "auto-replied"


class TestHeaderSafety:
    def test_hostile_subject_names_and_filenames_add_no_header(
            self, serve, sink: Sink, db_url: str) -> None:
        server: Server = serve(db_url, delivery=relay_to(sink))
        raw = (
            b"From: =?utf-8?q?Rita=0D=0ABcc=3A_victim=40example=2Ecom?= <rita@reporter.example>\r\n"
            b"To: conduct@" + DOMAIN.encode() + b"\r\n"
            b"Subject: =?utf-8?q?Help=0D=0ABcc=3A_victim=40example=2Ecom=0D=0A=0D=0Abody?=\r\n"
            b"Message-ID: <hostile@reporter.example>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
            b"--zz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease help.\r\n"
            b"--zz\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename*=utf-8''evil%0D%0AX-Evil%3A%201.txt\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--zz--\r\n"
        )
        send(server.smtp_port, raw)
        mails = sink.wait_for(1 + len(MEMBERS))
        for mail in mails:
            parsed = mail.message
            assert parsed["Bcc"] is None and parsed["X-Evil"] is None
            assert "\n" not in str(parsed["Subject"]) and "\r" not in str(parsed["Subject"])
            for part in parsed.walk():
                assert part["X-Evil"] is None
            head = mail.data.split(b"\r\n\r\n", 1)[0]
            names = [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")
                     if line and line[:1] not in (b" ", b"\t")]
            assert b"bcc" not in names
        report = next(m for m in mails if m.kind in REPORTISH)
        [attachment] = list(report.message.iter_attachments())
        assert attachment.get_content() == b"hello"
        assert "\n" not in attachment.get_filename()
        assert report.header("Subject").replace("Triage: ", "").startswith(
            "[conduct #1] Help Bcc: victim@example.com")


class TestDelivery:
    def test_relay_down_mail_waits_and_goes_out_when_it_returns(
            self, serve, sink: Sink, db_url: str) -> None:
        sink.stop()
        server: Server = serve(db_url, delivery=relay_to(sink))
        send(server.smtp_port, message())
        rows = _wait_outbox(server, lambda rows: rows and all(
            r["attempts"] >= 1 and r["status"] == "queued" for r in rows))
        assert all("cannot reach relay" in r["last_error"] for r in rows)
        sink.start()
        mails = sink.wait_for(1 + len(MEMBERS), timeout=30)
        server.quiet(sink)
        assert len(sink.mails) == len(mails)
        assert len({m.header("Message-ID") for m in mails}) == len(mails)
        _wait_outbox(server, lambda rows: all(r["status"] == "sent" for r in rows))

    def test_sigkill_with_mail_queued_each_mail_goes_out_once(
            self, serve, sink: Sink, db_url: str) -> None:
        sink.stop()
        server: Server = serve(db_url, delivery=relay_to(sink))
        for n in range(3):
            send(server.smtp_port, message(subject=f"report {n}"))
        _wait_outbox(server, lambda rows: len(rows) == 3 * (1 + len(MEMBERS)) and any(
            r["attempts"] >= 1 for r in rows))
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        sink.start()
        server = serve.restart(server)
        expected = 3 * (1 + len(MEMBERS))
        sink.wait_for(expected, timeout=40)
        mails = server.quiet(sink)
        assert len(mails) == expected
        keys = {(m.kind, m.recipient, m.header("X-Cocmail-Case")) for m in mails}
        assert len(keys) == expected
        _wait_outbox(server, lambda rows: all(r["status"] == "sent" for r in rows))

    def test_a_permanent_failure_is_listed_and_the_members_are_told(
            self, serve, sink: Sink, db_url: str) -> None:
        # A relay that names the address, and where it forwards to as well.
        sink.refuse = lambda address: ("550 5.1.1 <rita@reporter.example>: no such user "
                                       "(via rita.home@elsewhere.example)"
                                       if address == REPORTER else None)
        server: Server = serve(db_url, delivery=relay_to(sink))
        send(server.smtp_port, message())
        failures = sink.wait_for(ON_DUTY, where=lambda m: m.kind == "failure")
        server.quiet(sink)
        # To the members who can read the case: the two on duty.
        paged = server.look("case", "show", "1")["events"][1]["data"]["members"]
        assert sorted(m.recipient for m in failures) == sorted(
            m[2] for m in MEMBERS if m[0] in paged)
        assert "550 5.1.1" in failures[0].text and "acknowledgement" in failures[0].text
        [failed] = _outbox(server, "--failed")
        assert failed["kind"] == "ack" and failed["status"] == "failed"
        assert failed["attempts"] == 1 and failed["recipient"] == "…@reporter.example"
        assert failed["last_error"].endswith(
            "<…@reporter.example>: no such user (via …@elsewhere.example)")
        text = server.cli("outbox", "list", "--failed").stdout.decode()
        assert "ack" in text and "failed" in text and REPORTER not in text
        # The log has the relay's status code, not its words (which quote the address,
        # and could quote a name): those stay with the row, sealed.
        assert "relay refused the recipient: 550 5.1.1" in server.log()
        assert "no such user" not in server.log() and "rita" not in server.log()
        # Fixed at the relay: the operator retries, and it goes out.
        sink.refuse = lambda address: None
        assert server.cli("outbox", "retry", str(failed["id"])).returncode == 0
        sink.wait_for(1, where=lambda m: m.kind == "ack")

    def test_after_an_outage_every_failed_mail_is_retried_at_once_and_recorded(
            self, serve, sink: Sink, db_url: str) -> None:
        reporters = ["rita@reporter.example", "remy@reporter.example"]
        sink.refuse = lambda address: ("550 5.7.1 relay down for maintenance"
                                       if address in reporters else None)
        server: Server = serve(db_url, delivery=relay_to(sink))
        for reporter in reporters:
            send(server.smtp_port, message(sender=reporter), sender=reporter)
        _wait_outbox(server, lambda rows: sum(r["status"] == "failed" for r in rows) == 2)
        # One id, or all of them; not both, not neither.
        for wrong in ((), ("1", "--failed")):
            result = server.cli("outbox", "retry", *wrong)
            assert result.returncode == 2
            assert result.stderr == b"cocmail: outbox retry: give one OUTBOX_ID or --failed\n"
        sink.refuse = lambda address: None
        result = server.cli("outbox", "retry", "--failed")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(b"2 failed mails queued again")
        acks = sink.wait_for(2, where=lambda m: m.kind == "ack")
        assert sorted(m.recipient for m in acks) == sorted(reporters)
        assert server.cli("outbox", "retry", "--failed").stdout == b"no failed mail to retry\n"
        user = pwd.getpwuid(os.getuid()).pw_name
        for case in ("1", "2"):
            [retried] = [e for e in server.look("case", "show", case)["events"]
                         if e["kind"] == "mail-retried"]
            assert retried["actor"] == f"operator:{user}"
            assert retried["data"]["mail"] == "ack"
        assert server.look("audit", "verify")["broken"] == []

    def test_temporary_failures_give_up_after_max_attempts(
            self, serve, sink: Sink, db_url: str) -> None:
        sink.refuse = lambda address: ("451 4.3.0 try later" if address == REPORTER else None)
        server: Server = serve(db_url, delivery=relay_to(sink, max_attempts=3,
                                                         retry_first="1s", retry_max="1s"))
        send(server.smtp_port, message())
        sink.wait_for(ON_DUTY, where=lambda m: m.kind == "failure", timeout=40)
        [failed] = _outbox(server, "--failed")
        assert failed["attempts"] == 3 and "451 4.3.0" in failed["last_error"]

    def test_a_retry_goes_out_when_due_not_at_the_next_tick(
            self, serve, sink: Sink, db_url: str) -> None:
        """The worker waits for the soonest mail due, not for its tick: with the tick
        an hour away, an acknowledgement refused once goes out a second later."""
        refused: list[str] = []

        def once(address: str) -> str | None:
            if address == REPORTER and not refused:
                refused.append(address)
                return "451 4.3.0 try later"
            return None

        sink.refuse = once
        server: Server = serve(db_url, scheduler={"tick": "1h"},
                               delivery=relay_to(sink, retry_first="1s", retry_max="1s"))
        send(server.smtp_port, message())
        [ack] = sink.wait_for(1, where=lambda m: m.kind == "ack", timeout=20)
        assert refused == [REPORTER] and ack.recipient == REPORTER

    def test_maildir_is_the_default(self, serve, db_url: str, tmp_path: Path) -> None:
        server: Server = serve(db_url)
        send(server.smtp_port, message())
        rows = _wait_outbox(server, lambda rows: len(rows) == 1 + len(MEMBERS) and all(
            r["status"] == "sent" for r in rows))
        new = server.config.parent / "outbox" / "new"
        files = sorted(new.iterdir())
        assert len(files) == len(rows)
        first = files[0].read_bytes()
        assert first.startswith(b"Return-Path: <" + CONDUCT.encode() + b">\nDelivered-To: ")
        assert b"\r\n" not in first and b"X-Cocmail-Kind: " in first


class TestTemplates:
    def test_an_override_replaces_the_shipped_template(
            self, serve, sink: Sink, db_url: str, tmp_path: Path) -> None:
        folder = tmp_path / "mine"
        folder.mkdir()
        (folder / "ack.txt").write_text(
            '{% set subject = "Got it" %}Case {{ case.reference }} is ours now.\n')
        server: Server = serve(db_url, delivery=relay_to(sink),
                               templates={"directory": str(folder)})
        send(server.smtp_port, message())
        ack = sink.wait_for(1, where=lambda m: m.kind == "ack")[0]
        assert ack.header("Subject") == "[conduct #1] Got it"
        assert ack.text.strip() == "Case conduct #1 is ours now."

    def test_a_broken_override_stops_the_start_with_the_reason(
            self, config_for, db_url: str, tmp_path: Path) -> None:
        import subprocess

        from tests.conftest import COCMAIL, ROOT

        folder = tmp_path / "broken"
        folder.mkdir()
        (folder / "report.txt").write_text("New report {{ case.refrence }}\n")
        config = config_for(db_url, templates={"directory": str(folder)})
        result = subprocess.run([*COCMAIL, "serve", "--config", str(config)],
                                capture_output=True, timeout=30, cwd=ROOT,
                                env={**os.environ, "COCMAIL_TOKEN_KEY": TOKEN_KEY})
        assert result.returncode == 2
        err = result.stderr.decode()
        assert "templates.directory" in err and "report.txt" in err and "refrence" in err
