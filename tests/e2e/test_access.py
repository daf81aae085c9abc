"""Who may see a case and who may act in it (``cocmail/case/access.py``), attacked
over SMTP as a reporter, a member, an outsider and an operator would: a real
``cocmail serve`` on loopback, every mail it sends read back from a real SMTP
sink, on SQLite and on PostgreSQL. One test for each way the promise was found
broken: what a reporter writes reaches only the members entitled to it, and
nobody but a member can act on a case."""

from __future__ import annotations

import re
import smtplib
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cocmail.store.db import Store
from cocmail.store.models import Case, FollowUp, Outbox
from tests.conftest import (
    CONDUCT,
    DOMAIN,
    MEMBERS,
    Server,
    relay_to,
    run_cli,
)
from tests.mail import message, send
from tests.sink import Received, Sink

EMAIL = {m[0]: m[2] for m in MEMBERS}
REPORTER = "rita@reporter.example"
WITHOUT_BOB = f"conduct+without-bob@{DOMAIN}"


def case_row(server: Server, case_id: int = 1) -> Case:
    store = Store(server.db_url)
    try:
        with store.unit_of_work() as session:
            case = session.get(Case, case_id)
            assert case is not None
            session.expunge(case)
            return case
    finally:
        store.dispose()


# --- a case every member reads ------------------------------------------------------

def seats(server: Server, case: int = 1) -> dict[str, dict[str, Any]]:
    """Each participant of the case, by handle (members) or role (the others)."""
    return {p["handle"] or p["role"]: p
            for p in server.look("case", "show", str(case))["participants"]}


def read_by_all(server: Server, sink: Sink, raw: bytes | None = None,
                rcpts: list[str] | None = None) -> list[Received]:
    """A report, and every member still to answer its conflict check answers
    ``no-conflict``: every member reads the case. What arrived so far."""
    cases = len(server.look("cases", "list"))
    code, _ = send(server.smtp_port, raw or message(), rcpts=rcpts)
    assert code == 250
    case = cases + 1
    server.quiet(sink)
    for handle, seat in seats(server, case).items():
        if seat["role"] == "member" and seat["cleared_at"] is None:
            reply(server, handle, "no-conflict\n", case=case)
    return server.quiet(sink)


def reply(server: Server, handle: str, body: str, *, sender: str | None = None,
          case: int = 1, raw: bytes | None = None, envelope: str | None = None,
          to: str | None = None) -> None:
    """Member ``handle`` writes to their reply address of ``case``."""
    address = to or seats(server, case)[handle]["reply_address"]
    sender = sender or EMAIL[handle]
    code, text = send(server.smtp_port, raw or message(
        sender=sender, subject=f"Re: [conduct #{case}] the case", body=body),
        sender=envelope or sender, rcpts=[address])
    assert code == 250, text


def texts_to(mails: list[Received], address: str) -> list[str]:
    return [" ".join(m.text.split()) for m in mails if m.recipient == address]


def with_marker(mails: list[Received], marker: str) -> list[str]:
    """The recipients of every mail whose text holds ``marker``."""
    return sorted(m.recipient for m in mails if marker in m.text)


# --- 1. a keep-out wins over every other route ------------------------------------

def test_a_keep_out_wins_over_threading_and_over_a_reply_address(
        serve, sink: Sink, db_url: str) -> None:
    """A reporter who writes to her reply address and to conduct+without-bob in
    one transaction keeps Bob out of her case from then on: he never receives
    that message nor anything after it. One who answers her acknowledgement
    (In-Reply-To) but writes to conduct+without-<handle> keeps that message from
    the member, now and in the case so far they get later (threaded by its
    headers, a mail proves nothing of who sent it: anyone who has a Message-ID
    of the case and her address could send it, so it keeps nobody out of the
    whole case)."""
    server: Server = serve(db_url, delivery=relay_to(sink))
    # Case 1: one member reads the case, one is still to answer the check.
    assert send(server.smtp_port, message(body="Report 1.\n"))[0] == 250
    server.quiet(sink)
    standing = {h: s["standing"] for h, s in seats(server, 1).items() if h in EMAIL}
    reader = next(h for h, state in standing.items() if state == "reads")
    waiting = next(h for h, state in standing.items() if state == "pending")
    [ack] = [m for m in sink.mails if m.kind == "ack"]
    before = len(server.quiet(sink))
    raw = message(subject="Re: my report", body="KEEPOUT-1 not for them\n",
                  headers={"In-Reply-To": str(ack.header("Message-ID"))})
    rcpts = [f"conduct+without-{reader}@{DOMAIN}", f"conduct+without-{waiting}@{DOMAIN}"]
    assert send(server.smtp_port, raw, rcpts=rcpts)[0] == 250
    reply(server, waiting, "no-conflict\n")
    mails = server.quiet(sink)[before:]
    [casefile] = [m for m in mails if m.kind == "casefile"]
    assert casefile.recipient == EMAIL[waiting] and "Report 1." in casefile.text
    assert "KEEPOUT-1" not in casefile.text
    assert EMAIL[reader] not in with_marker(mails, "KEEPOUT-1")
    assert with_marker(mails, "KEEPOUT-1") == sorted(
        EMAIL[h] for h, state in standing.items() if state == "reads" and h != reader)
    assert seats(server, 1)[reader]["standing"] == "reads"
    # Case 2: her reply address and without-bob together.
    before = len(read_by_all(server, sink, message(body="Report 2.\n")))
    reporter = seats(server, 2)["reporter"]["reply_address"]
    raw = message(subject="Re: my report", body="KEEPOUT-2 not for bob\n")
    assert send(server.smtp_port, raw, rcpts=[reporter, WITHOUT_BOB])[0] == 250
    mails = server.quiet(sink)[before:]
    assert with_marker(mails, "KEEPOUT-2") == sorted(EMAIL[h] for h in ("alice", "carol", "dave"))
    send(server.smtp_port, message(subject="Re: my report", body="LATER-2\n"), rcpts=[reporter])
    mails = server.quiet(sink)[before:]
    assert with_marker(mails, "LATER-2") == sorted(EMAIL[h] for h in ("alice", "carol", "dave"))
    assert not [m for m in mails if m.recipient == EMAIL["bob"]
                and m.header("X-Cocmail-Case") == "2"]
    detail = server.look("case", "show", "2")
    assert detail["excluded"] == ["bob"]
    assert seats(server, 2)["bob"]["standing"] == "kept-out"
    assert "kept-out" in [e["kind"] for e in detail["events"]]
    # The log does not say whom the reporter kept out.
    assert "kept-out" not in server.log()
    assert [line for line in server.log().splitlines()
            if "bob" in line and "roster:" not in line] == []


def test_a_keep_out_address_of_no_member_refuses_the_whole_message(
        serve, sink: Sink, db_url: str) -> None:
    """A report to conduct@ and to conduct+without-<a typo>: the keep-out is
    refused at RCPT, and the message after DATA (550 5.1.1, nothing stored), so
    no copy reaches the member the reporter meant to keep out."""
    server: Server = serve(db_url, delivery=relay_to(sink))
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        assert smtp.mail(REPORTER)[0] == 250
        assert smtp.rcpt(CONDUCT)[0] == 250
        code, text = smtp.rcpt(f"conduct+without-bobb@{DOMAIN}")
        assert code == 550 and b"no committee member 'bobb'" in text
        code, text = smtp.data(message(body="TYPO-KEEP-OUT\n"))
    assert code == 550 and b"Nothing of this message was kept" in text
    assert server.look("cases", "list") == [] and server.look("quarantine", "list") == []
    assert not server.quiet(sink)


# --- 2. a second delivery still means what its recipients mean -----------------------

def test_the_same_bytes_again_to_a_keep_out_address_keep_the_member_out(
        serve, sink: Sink, db_url: str) -> None:
    """A report delivered a second time, now to conduct+without-bob, is answered
    "already stored" and still keeps Bob out of its case."""
    server: Server = serve(db_url, delivery=relay_to(sink))
    raw = message(body="Someone was rude to me. DUP-REPORT\n")
    before = len(read_by_all(server, sink, raw))
    code, text = send(server.smtp_port, raw, rcpts=[CONDUCT, WITHOUT_BOB])
    assert code == 250 and b"already stored" in text
    send(server.smtp_port, message(subject="Re: my report", body="AFTER-DUP\n"),
         rcpts=[seats(server)["reporter"]["reply_address"]])
    mails = server.quiet(sink)[before:]
    assert with_marker(mails, "AFTER-DUP") == sorted(EMAIL[h] for h in ("alice", "carol", "dave"))
    assert server.look("case", "show", "1")["excluded"] == ["bob"]
    assert len(server.look("cases", "list")) == 1  # stored once


# --- 3. off-boarding: a removed member and an old address ----------------------------

def test_a_removed_member_and_an_old_address_get_nothing_and_act_on_nothing(
        serve, sink: Sink, db_url: str) -> None:
    """Bob leaves the roster and Alice's address changes; after the restart Bob
    gets no mail of any kind and his reply address acts on nothing (his mail is
    kept, quarantined as not-a-member), and Alice gets mail only at her new
    address, from which she acts."""
    server: Server = serve(db_url, delivery=relay_to(sink))
    read_by_all(server, sink)
    reply(server, "alice", "party add respondent sam@elsewhere.example Sam\n")
    old = seats(server)
    roster = [("alice", "Alice A", "alice@new.example", "Acme", ["chair"]),
              *[m for m in MEMBERS if m[0] not in ("alice", "bob")]]
    server = serve.restart(server, members=roster)
    before = len(server.quiet(sink))
    reply(server, "bob", "close\nrelay respondent\n\nBOB-AFTER-LEAVING\n",
          to=old["bob"]["reply_address"])
    reply(server, "alice", "severity high\n", to=old["alice"]["reply_address"])  # old address
    send(server.smtp_port, message(subject="Re: my report", body="AFTER-LEAVING\n"),
         rcpts=[old["reporter"]["reply_address"]])
    mails = server.quiet(sink)[before:]
    assert not [m for m in mails if m.recipient in (EMAIL["bob"], EMAIL["alice"])]
    assert with_marker(mails, "AFTER-LEAVING") == sorted(
        ["alice@new.example", EMAIL["carol"], EMAIL["dave"]])
    assert not with_marker(mails, "BOB-AFTER-LEAVING")
    case = case_row(server)
    assert case.closed_at is None and case.severity is None
    reasons = [q["reason"] for q in server.look("quarantine", "list")]
    assert reasons == ["not-a-member", "sender-mismatch"]
    kinds = [e["kind"] for e in server.look("case", "show", "1")["events"]]
    assert "member-removed" in kinds and "member-email-changed" in kinds
    # At her new address, Alice acts.
    reply(server, "alice", "severity high\n", sender="alice@new.example")
    server.quiet(sink)
    assert case_row(server).severity == "high"


# --- 4. a new handle keeps a keep-out ------------------------------------------------

def test_a_renamed_member_stays_out_of_the_cases_he_was_kept_out_of(
        serve, sink: Sink, db_url: str) -> None:
    """Bob, kept out of a case, is renamed "robert" in the roster: he is the same
    member, and no sweep seats him in that case or sends him its conflict check."""
    server: Server = serve(db_url, delivery=relay_to(sink))
    assert send(server.smtp_port, message(), rcpts=[WITHOUT_BOB])[0] == 250
    server.quiet(sink)
    roster = [m if m[0] != "bob" else ("robert", "Robert B", m[2], m[3], m[4])
              for m in MEMBERS]
    server = serve.restart(server, members=roster, rotation={
        "order": ["alice", "robert", "carol", "dave"]})
    mails = server.quiet(sink)
    assert not [m for m in mails if m.recipient == EMAIL["bob"]]
    assert "robert" not in seats(server) and "bob" not in seats(server)
    assert server.look("case", "show", "1")["excluded"] == ["robert"]
    # The new handle keeps people out too.
    before = len(mails)
    assert send(server.smtp_port, message(body="Second report.\n"),
                rcpts=[f"conduct+without-robert@{DOMAIN}"])[0] == 250
    assert not [m for m in server.quiet(sink)[before:] if m.recipient == EMAIL["bob"]]


# --- 5. who sent it: one From mailbox, read before any name is decoded ---------------

FORGED_FROMS = [
    "=?utf-8?q?alice=40members=2Eexample?= <evil@outside.example>",
    '"alice@members.example" <evil@outside.example>',
    "alice@members.example, evil@outside.example",
    "=?utf-8?q?alice=40members=2Eexample?=",
]


def _raw_from(froms: list[str], body: str) -> bytes:
    lines = [f"From: {value}" for value in froms]
    lines += ["To: someone", "Subject: Re: [conduct #1] the case",
              "Date: Wed, 25 Nov 2026 10:00:00 +0000",
              f"Message-ID: <{time.monotonic_ns()}@outside.example>", "MIME-Version: 1.0",
              "Content-Type: text/plain; charset=utf-8"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def test_commands_need_the_one_from_mailbox_of_the_member(
        serve, sink: Sink, db_url: str) -> None:
    """A reply to Alice's address runs nothing unless its one From mailbox is
    hers: not when an encoded word or a quoted name spells her address around
    another mailbox, not in a list of addresses, not with two From fields or
    none, and not when our own server says DMARC or SPF failed for her domain.
    The envelope sender is no substitute."""
    server: Server = serve(db_url, delivery=relay_to(sink))
    read_by_all(server, sink)
    forged = [[value] for value in FORGED_FROMS]
    forged += [[f"<{EMAIL['alice']}>", "<evil@outside.example>"], []]
    for froms in forged:
        reply(server, "alice", "", raw=_raw_from(froms, "close\r\n"),
              envelope=EMAIL["alice"])
    server.quiet(sink)
    assert case_row(server).closed_at is None
    assert [q["reason"] for q in server.look("quarantine", "list")] == \
        ["sender-mismatch"] * len(forged)
    # With our server's Authentication-Results believed, a DMARC or SPF failure
    # for her domain stops her commands too; and the headers our own group keeps
    # the sender in, forged, prove nothing at a reply address.
    server = serve.restart(server, committee={"authserv_ids": ["mx.conduct.example.org"],
                                              "list_id": "conduct.conduct.example.org"})
    group = message(sender="evil@outside.example", subject="Re: [conduct #1] the case",
                    body="close\n", headers={"List-Id": "<conduct.conduct.example.org>",
                                             "X-Original-From": EMAIL["alice"],
                                             "Reply-To": EMAIL["alice"]})
    reply(server, "alice", "", raw=group, envelope=EMAIL["alice"])
    for result in ("dmarc=fail header.from=members.example",
                   "spf=softfail smtp.mailfrom=alice@members.example",
                   "spf=fail smtp.mailfrom=alice@members.example"):
        raw = message(sender=EMAIL["alice"], subject="Re: [conduct #1] the case",
                      body=f"close\n\n{result}\n",
                      headers={"Authentication-Results": f"mx.conduct.example.org; {result}"})
        reply(server, "alice", "", raw=raw)
    mails = server.quiet(sink)
    assert case_row(server).closed_at is None
    assert [q["reason"] for q in server.look("quarantine", "list")][-1] == "sender-mismatch"
    refused = [t for t in texts_to(mails, EMAIL["alice"]) if "failed the sender checks" in t]
    assert len(refused) == 3
    reply(server, "alice", "close\n")  # her own mail does act
    server.quiet(sink)
    assert case_row(server).closed_at is not None


# --- 6. a replay is recognised by its words ------------------------------------------

def test_a_replayed_command_reply_runs_once_whatever_its_message_id(
        serve, sink: Sink, db_url: str) -> None:
    """Alice's "severity high", sent again from another envelope sender with a new
    Message-ID, or with none, does not undo Bob's "severity low"."""
    server: Server = serve(db_url, delivery=relay_to(sink))
    read_by_all(server, sink)
    raw = message(sender=EMAIL["alice"], subject="Re: [conduct #1] the case",
                  body="severity high\n", message_id="first@members.example")
    reply(server, "alice", "", raw=raw)
    reply(server, "bob", "severity low\n")
    server.quiet(sink)
    replays = [raw.replace(b"first@members.example", b"second@members.example"),
               re.sub(rb"Message-ID: [^\r\n]*\r\n", b"", raw)]
    for copy in replays:
        reply(server, "alice", "", raw=copy, envelope="bounce@relay.example")
    mails = server.quiet(sink)
    assert case_row(server).severity == "low"
    said = [t for t in texts_to(mails, EMAIL["alice"]) if "word for word" in t]
    assert len(said) == 2


# --- 7. relay approval follows the person --------------------------------------------

def test_a_relay_to_the_reporter_under_another_role_still_waits_for_approval(
        serve, sink: Sink, db_url: str) -> None:
    """The reporter's address added as an observer: a relay to the observer waits
    for a second member's approve, and the conflict check, sent again because
    someone was named, never shows the reporter's address."""
    server: Server = serve(db_url, delivery=relay_to(sink))
    assert send(server.smtp_port, message())[0] == 250
    server.quiet(sink)
    case = server.look("case", "show", "1")
    [paged] = [e["data"]["members"] for e in case["events"] if e["kind"] == "paged"]
    first = paged[0]
    before = len(server.quiet(sink))
    reply(server, first, f"party add observer {REPORTER.upper()} Rita\n"
                         "party add witness sam@elsewhere.example Sam\n")
    reply(server, first, "relay observer\n\nRELAYED-TEXT please call us\n")
    mails = server.quiet(sink)[before:]
    checks = [m for m in mails if m.kind == "conflict"]
    assert checks and all(REPORTER not in m.text.lower() for m in checks)
    assert all("sam@elsewhere.example" in m.text for m in checks)
    assert not [m for m in mails if m.recipient == REPORTER]
    assert any("waits for a second member" in t for t in texts_to(mails, EMAIL[first]))
    reply(server, paged[1], "approve\n")
    [relay] = sink.wait_for(1, where=lambda m: m.kind == "relay")
    assert relay.recipient == REPORTER and "RELAYED-TEXT" in relay.text


# --- 8. a recused member's mail threaded by headers ----------------------------------

def test_a_recused_members_threaded_mail_is_kept_not_passed_on(
        serve, sink: Sink, db_url: str) -> None:
    """Bob recuses (hard); his mail to the bare address, answering a mail of the
    case, reaches nobody: it is kept, and he is told so."""
    server: Server = serve(db_url, delivery=relay_to(sink))
    read_by_all(server, sink)
    reply(server, "bob", "recuse\n")
    before = len(server.quiet(sink))
    [earlier] = [m for m in sink.mails if m.recipient == EMAIL["bob"]][:1]
    raw = message(sender=EMAIL["bob"], subject="Re: the case", body="RECUSED-NOTE\n",
                  headers={"In-Reply-To": str(earlier.header("Message-ID"))})
    assert send(server.smtp_port, raw, sender=EMAIL["bob"])[0] == 250
    mails = server.quiet(sink)[before:]
    assert not with_marker(mails, "RECUSED-NOTE")
    assert any("stepped back" in t for t in texts_to(mails, EMAIL["bob"]))
    assert len(server.look("case", "show", "1")["messages"]) >= 2  # kept with the case


# --- 9. a purge leaves nothing readable ----------------------------------------------

SECRETS = ("Someone was rude to me", "NOTE-SECRET", "VOTE-SECRET", "REASON-SECRET",
           "FOLLOWUP-SECRET", "RELAY-SECRET", "EMERGENCY-SECRET")


def _sqlite_files(db_url: str) -> list[Path]:
    path = Path(db_url.removeprefix("sqlite:///"))
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def _left_in_files(db_url: str) -> dict[str, list[str]]:
    """Which of SECRETS is still in the database's files (SQLite: the file and its
    WAL; PostgreSQL: a pg_dump of the database)."""
    if db_url.startswith("sqlite"):
        blobs = {str(p): p.read_bytes() for p in _sqlite_files(db_url)}
    else:
        url = db_url.replace("postgresql+psycopg://", "postgresql://")
        dump = subprocess.run(["pg_dump", "--data-only", url], capture_output=True,
                              timeout=60, check=True).stdout
        blobs = {"pg_dump": dump}
    return {name: [s for s in SECRETS if s.encode() in blob] for name, blob in blobs.items()
            if any(s.encode() in blob for s in SECRETS)}


def test_a_purge_leaves_no_byte_of_the_case_in_the_store(
        serve, sink: Sink, db_url: str) -> None:
    """After the second member's purge, nothing of what the case said is left in
    the database's files while the daemon runs (SQLite: the file and its WAL; a
    pg_dump of PostgreSQL): not the messages, the notes, vote details, reasons,
    follow-up or emergency texts; a relay written in the purging reply does not
    go out, and a follow-up due later keeps its date, not its text."""
    server: Server = serve(db_url, delivery=relay_to(sink))
    read_by_all(server, sink)
    reply(server, "alice", "party add respondent sam@elsewhere.example Sam\n\nNOTE-SECRET\n")
    reply(server, "carol", "recuse soft REASON-SECRET\n")
    reply(server, "dave", "emergency platform-ban EMERGENCY-SECRET\nreconvene\n")
    reply(server, "alice", "vote coaching VOTE-SECRET\nfollow-up 30d FOLLOWUP-SECRET\n")
    reply(server, "alice", "purge\n")
    before = len(server.quiet(sink))
    reply(server, "bob", "purge\nrelay respondent\n\nRELAY-SECRET\n")
    mails = server.quiet(sink)[before:]
    assert not [m for m in mails if "RELAY-SECRET" in m.text]
    assert not [m for m in mails if m.recipient == "sam@elsewhere.example"]
    assert any("is purged" in t for t in texts_to(mails, EMAIL["bob"]))
    assert _left_in_files(db_url) == {}
    with server.store().reading() as session:
        assert [f.what for f in session.scalars(select(FollowUp))] == [""]


# --- 10. files are private -----------------------------------------------------------

def test_what_cocmail_writes_is_private_and_a_shared_file_is_named(
        serve, db_url: str, tmp_path: Path) -> None:
    """The database, the maildir of outgoing mail and its mails are the daemon's
    user's alone (0600, folders 0700); the key files others can read are named
    in one WARNING line at start."""
    key = tmp_path / "shared.key"
    key.write_text("a-key-of-at-least-sixteen-bytes\n")
    key.chmod(0o644)
    master = tmp_path / "shared-master.key"
    master.write_text("ab" * 32 + "\n")
    master.chmod(0o640)
    server: Server = serve(db_url, secrets={"token_key_file": str(key),
                                            "master_key_file": str(master)})
    assert send(server.smtp_port, message())[0] == 250
    maildir = server.config.parent / "outbox"  # tests.conftest.write_config's
    deadline = time.monotonic() + 30
    while len(list((maildir / "new").glob("*"))) < 1 + len(MEMBERS):
        assert time.monotonic() < deadline, "no mail in the maildir"
        time.sleep(0.05)
    for mail in (maildir / "new").iterdir():
        assert mail.stat().st_mode & 0o777 == 0o600
    for folder in (maildir, maildir / "new", maildir / "tmp", maildir / "cur"):
        assert folder.stat().st_mode & 0o777 == 0o700
    if db_url.startswith("sqlite"):
        for path in _sqlite_files(db_url):
            assert path.stat().st_mode & 0o777 == 0o600, path
    warnings = [line for line in server.log().splitlines() if "readable by others" in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0]
    assert str(key) in warnings[0] and str(master) in warnings[0]


# --- 11. a missing key is not silently replaced --------------------------------------

@pytest.mark.parametrize("which", ["token_key_file", "master_key_file"])
def test_a_missing_key_stops_serve_once_the_database_holds_cases(
        serve, sink: Sink, db_url: str, tmp_path: Path, which: str) -> None:
    """The first start makes the key; once there are cases, a key file that is
    not where the config says stops serve with one line naming the key, exit 2,
    instead of a new key that would make every reply address fail (the token
    key) or leave what the store holds unreadable (the master key)."""
    key = tmp_path / "keys" / which.replace("_file", "").replace("_", ".")
    server: Server = serve(db_url, env={"COCMAIL_TOKEN_KEY": ""}, delivery=relay_to(sink),
                           secrets={which: str(key)})
    assert key.exists() and key.stat().st_mode & 0o777 == 0o600
    assert send(server.smtp_port, message())[0] == 250
    server.quiet(sink)
    server.stop()
    elsewhere = tmp_path / "mistyped" / key.name
    config = server.config
    config.write_text(config.read_text().replace(str(key), str(elsewhere)))
    result = run_cli(config, "serve", env={"COCMAIL_TOKEN_KEY": ""})
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert "Traceback" not in result.stderr.decode()
    assert lines[-1].startswith(f"cocmail: config: secrets.{which}:")
    assert [line for line in lines if which in line] == lines[-1:]
    assert not elsewhere.exists()


# --- 12. addresses in the log are masked, whatever their local part ------------------

ODD_REPORTERS = ['"rita smith"@reporter.example', "rita{x}@reporter.example",
                 "o'brien@reporter.example"]


def test_the_log_masks_every_local_part(serve, db_url: str) -> None:
    """A relay that refuses a reporter's address and quotes it back: the log holds
    the domain only, for quoted local parts, braces and apostrophes too."""
    refusing = Sink(refuse=lambda address: f"550 5.1.1 <{address}>: no such user")
    refusing.start()
    try:
        server: Server = serve(db_url, delivery=relay_to(refusing))
        for n, address in enumerate(ODD_REPORTERS):
            raw = message(sender=address, body=f"Report {n}.\n")
            assert send(server.smtp_port, raw, sender=address)[0] == 250
        deadline = time.monotonic() + 30
        while len(re.findall(r"failed for good", server.log())) < len(ODD_REPORTERS):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        log = server.log() + server.cli("outbox", "list").stdout.decode()
        for local in ('"rita smith"', "rita smith", "rita{x}", "o'brien"):
            assert local not in log, local
        assert log.count("…@reporter.example") >= len(ODD_REPORTERS)
    finally:
        refusing.stop()


# --- 13. mail about no case is the operator's ----------------------------------------

def test_a_failed_notice_to_a_reporter_is_never_in_a_members_digest(
        serve, db_url: str) -> None:
    """The day's notice to a reporter's address (no case) fails; the members'
    digests show the failed mail of the cases each may read, never that."""
    refusing = Sink(refuse=lambda address: "550 5.1.1 no such user"
                    if address.endswith("@reporter.example") else None)
    refusing.start()
    try:
        server: Server = serve(db_url, delivery={**relay_to(refusing), "answers_per_day": 1})
        for n in range(2):
            assert send(server.smtp_port, message(body=f"Report {n}.\n"))[0] == 250
        store = Store(db_url)
        try:
            deadline = time.monotonic() + 30
            while True:
                with store.unit_of_work() as session:
                    failed = session.scalars(select(Outbox.kind).where(
                        Outbox.status == "failed")).all()
                if sorted(failed) == ["ack", "notice"]:
                    break
                assert time.monotonic() < deadline, failed
                time.sleep(0.1)
        finally:
            store.dispose()
        server = serve.restart(server, digest={"enabled": True, "at": "00:00"})
        refusing.wait_for(1, where=lambda m: m.kind == "digest")
        digests = [m for m in server.quiet(refusing) if m.kind == "digest"]
        told = [m for m in digests if "no such user" in m.text]
        assert told  # the failed acknowledgement, to those who read its case
        for digest in digests:
            assert "automatic answers stopped" not in " ".join(digest.text.split())
    finally:
        refusing.stop()


# --- 14. a value longer than its column ----------------------------------------------

def test_a_display_name_longer_than_its_column_is_cut_not_fatal(
        serve, sink: Sink, db_url: str) -> None:
    """A report whose From has a 300-character display name opens its case,
    acknowledged and paged, on PostgreSQL too (the full name stays in the raw bytes)."""
    server: Server = serve(db_url, delivery=relay_to(sink))
    name = "Rita " + "R" * 300
    raw = message(body="Long name.\n").replace(b"From: Rita Reporter <",
                                                f"From: {name} <".encode())
    assert send(server.smtp_port, raw)[0] == 250
    mails = server.quiet(sink)
    assert [m.kind for m in mails].count("ack") == 1
    assert [m.kind for m in mails].count("page") == 2
    assert server.look("quarantine", "list") == []


# --- 15. a reporter whose address is not ASCII ---------------------------------------

def _send_utf8(port: int, sender: str, raw: bytes) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        assert smtp.has_extn("smtputf8")
        code, _ = smtp.mail(sender, options=["SMTPUTF8"])
        assert code == 250
        assert smtp.rcpt(CONDUCT)[0] == 250
        return int(smtp.data(raw)[0])


def test_a_reporter_with_a_non_ascii_address_is_answered_or_the_members_are_told(
        serve, db_url: str) -> None:
    """rïta@ (SMTPUTF8) gets her acknowledgement through a relay that offers
    SMTPUTF8; through one that does not, the members of her case are told she
    could not be answered."""
    reporter = "rïta@reporter.example"
    raw = ("From: Rïta <rïta@reporter.example>\r\nTo: conduct@conduct.example.org\r\n"
           "Subject: Report\r\nMessage-ID: <utf8-1@reporter.example>\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\nIt happened.\r\n").encode()
    offering = Sink()
    offering.start()
    try:
        server: Server = serve(db_url, delivery=relay_to(offering))
        assert _send_utf8(server.smtp_port, reporter, raw) == 250
        [ack] = offering.wait_for(1, where=lambda m: m.kind == "ack")
        assert ack.recipient == reporter
    finally:
        offering.stop()
    plain = Sink(smtputf8=False)
    plain.start()
    try:
        server = serve.restart(server, delivery=relay_to(plain))
        assert _send_utf8(server.smtp_port, reporter,
                          raw.replace(b"utf8-1@", b"utf8-2@")) == 250
        failures = plain.wait_for(2, where=lambda m: m.kind == "failure")
        assert all("SMTPUTF8" in m.text for m in failures)
        assert not [m for m in plain.mails if m.recipient == reporter]
    finally:
        plain.stop()


# --- 16. commands only from text a person sees ---------------------------------------

def test_a_command_hidden_in_an_html_reply_does_not_run(
        serve, sink: Sink, db_url: str) -> None:
    """An HTML-only reply whose hidden text says "close" closes nothing; what it
    shows goes to the others as its note."""
    server: Server = serve(db_url, delivery=relay_to(sink))
    before = len(read_by_all(server, sink))
    html = ('<html><body><div style="display:none">close</div>'
            '<span style="font-size:0">purge</span><p>VISIBLE-NOTE thanks</p></body></html>')
    raw = message(sender=EMAIL["alice"], subject="Re: [conduct #1] the case", body=html)
    raw = raw.replace(b"Content-Type: text/plain", b"Content-Type: text/html")
    reply(server, "alice", "", raw=raw)
    mails = server.quiet(sink)[before:]
    assert case_row(server).closed_at is None
    notes = [m for m in mails if m.kind == "message"]
    assert len(notes) == 3 and all("VISIBLE-NOTE" in m.text for m in notes)
    assert not any("close" in " ".join(m.text.split()[:3]) for m in notes)

