"""The outbox's parts in process, on SQLite and PostgreSQL: queueing once, claiming
without overlap, rendering templates, composing safe headers, the relay with
STARTTLS and AUTH."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import json
import re
import ssl
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cocmail import config as config_module
from cocmail.errors import ConfigError
from cocmail.notify import compose as compose_module
from cocmail.notify.compose import compose
from cocmail.notify.enqueue import ACK, REPORT, Enqueue, Mail
from cocmail.notify.payloads import (
    AnswerLimit,
    Confirmation,
    Conflict,
    Digest,
    Escalation,
    FailedMail,
    Handoff,
    Note,
    OnDuty,
    Payload,
    Relay,
    Reminder,
    Status,
    TranscriptLine,
)
from cocmail.notify.templates import KINDS, Rendered, Templates, sample_context
from cocmail.notify.transport import DeliveryError, SmtpTransport
from cocmail.notify.worker import OutboxWorker
from cocmail.route.tokens import case_of_message_id
from cocmail.store.db import Store
from cocmail.store.models import Outbox
from cocmail.telemetry.metrics import Metrics
from tests.certs import self_signed
from tests.conftest import CONDUCT, DOMAIN, relay_to, write_config
from tests.sink import Sink

KEY = b"k" * 32
NOW = dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)


def _config(tmp_path: Path, db_url: str, **sections: dict) -> config_module.Config:
    return config_module.load(write_config(tmp_path, db_url, sections))


def test_the_same_mail_is_queued_once(store: Store, tmp_path: Path, db_url: str) -> None:
    config = _config(tmp_path, db_url)
    enqueue = Enqueue.for_config(config, KEY)
    mail = Mail("notice", "rita@reporter.example", step="answer-limit:2026-11-25",
                payload=AnswerLimit(10))
    for _ in range(2):
        with store.transaction() as db:
            enqueue.queue(db, [mail, mail], NOW)
    with store.unit_of_work() as session:
        rows = session.scalars(select(Outbox)).all()
        assert len(rows) == 1
        assert rows[0].key == ("-:notice:answer-limit:2026-11-25:"
                               + store.keyring.index_of("rita@reporter.example"))  # type: ignore[union-attr]


def test_two_workers_never_claim_the_same_row(store: Store, tmp_path: Path, db_url: str) -> None:
    config = _config(tmp_path, db_url)
    enqueue = Enqueue.for_config(config, KEY)
    with store.transaction() as db:
        enqueue.queue(db, [Mail("notice", f"r{n}@reporter.example", step="x",
                                payload=AnswerLimit(10))
                           for n in range(200)], NOW)

    class Clock:
        def now(self) -> dt.datetime:
            return NOW + dt.timedelta(seconds=1)

    workers = [OutboxWorker(store, config, KEY, Clock(), transport=None,  # type: ignore[arg-type]
                            templates=Templates(), metrics=Metrics()) for _ in range(2)]
    claimed: list[list[int]] = [[], []]

    def drain(index: int) -> None:
        while ids := workers[index].claim(7):
            claimed[index] += ids

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 200
    with store.unit_of_work() as session:
        holders = {holder: count for holder, count in session.execute(
            select(Outbox.claimed_by, func.count()).group_by(Outbox.claimed_by))}
    assert sum(holders.values()) == 200 and None not in holders
    for w in workers:
        w.executor.shutdown()


def test_rate_limit_counts_across_transactions(store: Store, tmp_path: Path, db_url: str) -> None:
    enqueue = Enqueue(KEY, _config(tmp_path, db_url).committee, answers_per_day=2)
    for n in range(5):
        with store.transaction() as db:
            enqueue.queue(db, [Mail(ACK, "Rita@Reporter.example", step=str(n))], NOW)
    later = NOW + dt.timedelta(days=1, seconds=1)
    with store.transaction() as db:
        enqueue.queue(db, [Mail(ACK, "rita@reporter.example", step="next-day")], later)
    with store.unit_of_work() as session:
        kinds = [r.kind for r in session.scalars(select(Outbox).order_by(Outbox.id))]
    assert kinds == ["ack", "ack", "notice", "ack"]


class TestTemplates:
    def test_every_shipped_template_renders(self) -> None:
        templates = Templates()
        templates.check()
        for kind in KINDS:
            rendered = templates.render(kind, sample_context(kind))
            assert rendered.subject and rendered.text.strip()

    def test_html_is_autoescaped_and_text_is_not(self) -> None:
        context = sample_context("ack")
        context = context.but(recipient=replace(context.recipient, name="<b>Rita</b> & co"))
        rendered = Templates().render("ack", context)
        assert "&lt;b&gt;Rita&lt;/b&gt; &amp; co" in (rendered.html or "")
        assert "<b>Rita</b> & co" in rendered.text

    @pytest.mark.parametrize("text, expected", [
        ("{{ case.no_such_thing }}", "no_such_thing"),
        ("{% if %}", "report.txt line 1"),
        ("{{ nothing_here }}", "nothing_here"),
    ])
    def test_a_broken_override_is_named(self, tmp_path: Path, text: str, expected: str) -> None:
        (tmp_path / "report.txt").write_text(text)
        with pytest.raises(ConfigError) as info:
            Templates(tmp_path).check()
        assert str(info.value).startswith("templates.directory: ")
        assert expected in str(info.value)


def _row(**values: object) -> Outbox:
    base: dict[str, object] = dict(
        id=7, key="1:report::alice@members.example", case_id=1, kind=REPORT, step="",
        recipient="alice@members.example", message_id="<cocmail.1.x.y@conduct.example.org>",
        in_reply_to=None, references=None, data={}, status="queued", created_at=NOW,
        due_at=NOW, attempts=0)
    base.update(values)
    return Outbox(**base)


class TestCompose:
    def test_hostile_values_stay_inside_their_header(self, tmp_path: Path) -> None:
        config = _config(tmp_path, "sqlite:///:memory:")
        context = sample_context("report")
        context = context.but(recipient=replace(context.recipient,
                                                name="Alice\r\nBcc: x@evil.example"))
        rendered = Rendered("Hi\r\nBcc: x@evil.example\r\n\r\nbody", "text\r\n.\r\n", None)
        row = _row(in_reply_to="<ok@a>\r\nBcc: x@evil.example", references="<a@b> <c@d>\nX: y")
        data = compose(row, rendered, context, config.committee)
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        names = [name.lower() for name in parsed]
        assert "bcc" not in names and "x" not in names
        assert len(names) == len(set(names))
        assert parsed["Subject"] == "[conduct #1] Hi Bcc: x@evil.example body"
        assert parsed["In-Reply-To"] == "<ok@a>"
        assert parsed["References"] == "<a@b> <c@d>"
        assert parsed["To"].addresses[0].addr_spec == "alice@members.example"
        assert case_of_message_id(KEY, parsed["Message-ID"], DOMAIN) is None  # not signed by KEY

    def test_non_ascii_subject_and_body_survive_any_relay(self, tmp_path: Path) -> None:
        config = _config(tmp_path, "sqlite:///:memory:")
        rendered = Rendered("Belästigung beim Treffen — 会議", "Grüße ✓\n", None)
        data = compose(_row(), rendered, sample_context("report"), config.committee)
        assert max(data) < 128  # 7-bit clean: no relay needs 8BITMIME or SMTPUTF8
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert parsed["Subject"] == "[conduct #1] Belästigung beim Treffen — 会議"
        assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == "Grüße ✓\n"


    def test_remembered_header_fields_compose_what_the_email_package_does(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        # The policy remembers header objects and their folding from mail to mail:
        # mails composed after one another, the same values again among them, are
        # byte for byte what the email package's own policy makes.
        config = _config(tmp_path, "sqlite:///:memory:")
        names = ["Alice", "Rita Reporter", "Zoë «Ω» Müller", 'Alice "A" <x>, Bob', "Alice"]
        subjects = ["Hi", "Belästigung — 会議 " * 8, "x" * 300, "Hi", "=?utf-8?q?not?="]
        mails = []
        for n, (name, subject) in enumerate(zip(names, subjects, strict=True)):
            context = sample_context("report")
            context = context.but(recipient=replace(context.recipient, name=name))
            row = _row(in_reply_to=f"<m{n % 2}@a>",
                       references=" ".join(f"<r{i}@b>" for i in range(n)))
            mails.append((row, Rendered(subject, f"Grüße {n} ✓\n", "<p>hi</p>" if n % 2 else None),
                          context))

        # A report's attachments attached again: file names in RFC 2231, a
        # forwarded message, a part with no name.
        source = (
            b"From: rita@reporter.example\r\nTo: conduct@conduct.example.org\r\n"
            b"Subject: s\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            b"--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename*=utf-8''Bild%20%C3%BC.png\r\n\r\n"
            b"iVBORw0KGgo=\r\n"
            b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n"
            b"--b\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--b--\r\n")

        def composed() -> list[bytes]:
            made = [compose(row, r, c, config.committee) for row, r, c in mails + mails]
            made += [compose(_row(), mails[1][1], mails[1][2], config.committee, source,
                             ["2", "3", "4"]) for _ in range(2)]
            return made

        def same(mails: list[bytes]) -> list[bytes]:  # MIME boundaries are random
            return [re.sub(rb"={15}\d+==", b"BOUNDARY", m) for m in mails]

        remembered = composed()
        attached = email.message_from_bytes(remembered[-1], policy=email.policy.default)
        assert [a.get_filename() for a in attached.iter_attachments()] == [
            "Bild ü.png", "forwarded-message.eml", "attachment-4"]
        monkeypatch.setattr(compose_module, "POLICY", email.policy.SMTP.clone(cte_type="7bit"))
        assert same(remembered) == same(composed())

    def test_a_line_break_in_a_header_value_is_refused_every_time(self) -> None:
        for _ in range(2):
            with pytest.raises(ValueError):
                compose_module.POLICY.header_store_parse("Subject", "Hi\r\nBcc: x@evil.example")


def _tls(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 and a server context holding it."""
    cert, key = self_signed(tmp_path, "relay")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


def _send_one(config: config_module.Config, recipient: str) -> None:
    transport = SmtpTransport(config.delivery)

    async def go() -> None:
        await transport.send("n", CONDUCT, recipient, b"Subject: x\r\n\r\nhi\r\n")
        await transport.close()

    asyncio.run(go())


class TestRelay:
    def test_starttls_and_auth_with_a_password_file(self, tmp_path: Path) -> None:
        cert, server_context = _tls(tmp_path)
        sink = Sink(auth=("cocmail", "s3cret"), tls_context=server_context)
        sink.start()
        try:
            (tmp_path / "relay.pass").write_text("s3cret\n")
            config = _config(tmp_path, "sqlite:///:memory:", delivery=relay_to(
                sink, security="starttls", username="cocmail",
                password_file=str(tmp_path / "relay.pass"), tls_ca_file=str(cert)))
            _send_one(config, "alice@members.example")
            [mail] = sink.wait_for(1)
            assert mail.recipient == "alice@members.example"
        finally:
            sink.stop()

    def test_implicit_tls(self, tmp_path: Path) -> None:
        cert, server_context = _tls(tmp_path)
        sink = Sink(implicit_tls=server_context)
        sink.start()
        try:
            config = _config(tmp_path, "sqlite:///:memory:", delivery=relay_to(
                sink, security="tls", tls_ca_file=str(cert)))
            _send_one(config, "bob@members.example")
            assert [m.recipient for m in sink.wait_for(1)] == ["bob@members.example"]
        finally:
            sink.stop()

    def test_an_untrusted_relay_certificate_is_a_temporary_failure(
            self, tmp_path: Path) -> None:
        _, server_context = _tls(tmp_path)
        sink = Sink(implicit_tls=server_context)
        sink.start()
        try:
            config = _config(tmp_path, "sqlite:///:memory:", delivery=relay_to(
                sink, security="tls"))  # no tls_ca_file: the self-signed cert is not trusted
            with pytest.raises(DeliveryError) as info:
                asyncio.run(SmtpTransport(config.delivery).send(
                    "n", CONDUCT, "bob@members.example", b"Subject: x\r\n\r\n"))
            assert not info.value.permanent and "cannot reach relay" in str(info.value)
            assert sink.mails == []
        finally:
            sink.stop()

    def test_a_wrong_password_is_a_temporary_failure(self, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        sink = Sink(auth=("cocmail", "s3cret"))
        sink.start()
        try:
            monkeypatch.setenv("RELAY_PASSWORD", "wrong")
            config = _config(tmp_path, "sqlite:///:memory:", delivery=relay_to(
                sink, username="cocmail", password_env="RELAY_PASSWORD"))
            transport = SmtpTransport(config.delivery)
            with pytest.raises(DeliveryError) as info:
                asyncio.run(transport.send("n", CONDUCT, "a@b.example", b"Subject: x\r\n\r\n"))
            assert not info.value.permanent and "login" in str(info.value)
        finally:
            sink.stop()

    def test_an_unset_password_variable_is_a_config_error(self, tmp_path: Path) -> None:
        config = _config(tmp_path, "sqlite:///:memory:", delivery=relay_to(
            Sink(1), username="cocmail", password_env="COCMAIL_TEST_UNSET_VARIABLE"))
        with pytest.raises(ConfigError, match=r"delivery\.password_env"):
            SmtpTransport(config.delivery)


@pytest.mark.parametrize("delivery, message", [
    ({"method": "smtp"}, "delivery.relay_host: needed"),
    ({"method": "smtp", "relay_host": "h", "username": "u"}, "delivery.username: needs"),
    ({"max_attempts": 0}, "delivery.max_attempts: must be at least 1"),
    ({"answers_per_day": 0}, "delivery.answers_per_day"),
    ({"lease": "10s", "timeout": "30s"}, "delivery.lease: must be longer"),
    ({"retry_first": "soon"}, "delivery.retry_first"),
])
def test_delivery_settings_are_checked(tmp_path: Path, delivery: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, "sqlite:///:memory:", delivery=delivery)
    assert message in str(info.value)


def test_the_example_config_has_the_defaults() -> None:
    from tests.conftest import ROOT

    config = config_module.load(ROOT / "config.example.toml")
    assert config.delivery.method == "maildir"
    assert config.delivery.answers_per_day == 10
    assert config.templates.directory is None


def test_reply_tokens_and_signed_message_ids_keep_their_values() -> None:
    """Addresses and Message-IDs already out in members' mailboxes must still verify:
    the values for a fixed key are the ones every version has made."""
    from cocmail.route.tokens import make_token

    key = b"k" * 32
    assert make_token(key, 42, 7) == "w4fopqqcxtl3tjht"
    signed = "<cocmail.42.abcdefghijklmnop.lriwk3s45q4reu7w@conduct.example.org>"
    assert case_of_message_id(key, signed, "conduct.example.org") == 42
    assert case_of_message_id(key, signed.replace(".42.", ".43."), "conduct.example.org") is None


def test_tokens_are_base32_of_the_mac_as_the_standard_library_writes_it() -> None:
    """``_b32`` writes 10 bits at a time: the same text as ``base64.b32encode`` for
    every byte value in every position, so no token already sent changes."""
    import base64
    import random

    from cocmail.route.tokens import _b32

    rng = random.Random(7)
    macs = [bytes(rng.randrange(256) for _ in range(32)) for _ in range(2000)]
    macs += [bytes([value] * 32) for value in range(256)]
    for mac in macs:
        assert _b32(mac) == base64.b32encode(mac[:10]).decode("ascii").lower()


def test_a_mail_carries_the_payload_its_kind_names() -> None:
    with pytest.raises(TypeError, match="a notice mail carries AnswerLimit, not Note"):
        Mail("notice", "rita@reporter.example", payload=Note("hello"))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_payload_reads_back_as_it_was_queued(kind: str) -> None:
    # What each kind carries is stored as JSON and read back, typed, when sent.
    example = {
        "notice": AnswerLimit(10), "page": OnDuty(["alice"]), "report": OnDuty([]),
        "message": Note("a note"), "failure": FailedMail(7),
        "confirmation": Confirmation([TranscriptLine("ack", True, "Done.")], ["Bob B"]),
        "status": Status("Closed by Alice", ["Reason: x"], "footer"),
        "digest": Digest("alice", dt.date(2026, 11, 25), NOW),
        "handoff": Handoff("alice", NOW, NOW + dt.timedelta(days=7), ["alice"], ["bob"], [1]),
        "escalation": Escalation("on-duty", 3600, ["alice"], "bob", True, "ban"),
        "reminder": Reminder("check in", "alice", NOW),
        "conflict": Conflict(waited=60, late=True, emergency="ban", critical=True),
        "relay": Relay("When did it happen?", "alice"),
    }.get(kind, Payload())
    mail = Mail(kind, "x@example.org", payload=example)
    stored = json.loads(json.dumps(mail.payload.to_json()))
    assert KINDS[kind].payload.from_json(stored) == example
