"""A case from report to decision by mail, end to end: `cocmail serve` over SMTP on
loopback, every mail read back from a real SMTP sink. One whole case from
report to decision, and what must not happen: content reaching a member with a
conflict, a member who joined later, a member the reporter kept out; forged or
replayed commands; a purge that leaves text behind."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import MetaData, select

from cocmail.store.db import Store
from tests.conftest import CONDUCT, DOMAIN, MEMBERS, Server, relay_to
from tests.mail import message, send
from tests.sink import Received, Sink

NAME = {m[0]: m[1] for m in MEMBERS}
EMAIL = {m[0]: m[2] for m in MEMBERS}
HANDLE = {m[2]: m[0] for m in MEMBERS}
REPORTER = "rita@reporter.example"
REPORT_TEXT = "Someone was rude to me at the meetup."  # tests.mail.message's body
MEDIATOR = "mediator@outside.example"  # tests.conftest.write_config's


def _seats(server: Server, case: int = 1) -> dict[str, dict[str, Any]]:
    """Each participant of the case by handle (members) or role (the others)."""
    return {p["handle"] or p["role"]: p
            for p in server.look("case", "show", str(case))["participants"]}


def _reply(server: Server, seat: dict[str, Any], body: str, sender: str | None = None,
           headers: dict[str, str] | None = None, message_id: str | None = None,
           to: str | None = None) -> None:
    sender = sender or seat["email"]
    code, _ = send(server.smtp_port, message(sender=sender, subject="Re: [conduct #1] the case",
                                             body=body, headers=headers,
                                             message_id=message_id),
                   sender=sender, rcpts=[to or seat["reply_address"]])
    assert code == 250


def _flat(text: str) -> str:
    """Text with its line breaks (templates wrap at 72) made spaces."""
    return " ".join(text.split())


def _confirmation(sink: Sink, handle: str, count: int) -> str:
    """The text of the ``count``-th confirmation to ``handle``, flattened."""
    found = sink.wait_for(count, where=lambda m: m.kind == "confirmation"
                          and m.recipient == EMAIL.get(handle, handle))
    return _flat(found[count - 1].text)


def _to(mails: list[Received], address: str) -> list[str]:
    return [m.kind or "" for m in mails if m.recipient == address]


def _opened(server: Server, sink: Sink) -> tuple[list[str], list[str]]:
    """Case #1 from the reporter: (the two members paged, the others)."""
    send(server.smtp_port, message())
    sink.wait_for(1 + len(MEMBERS))
    paged = server.look("case", "show", "1")["events"][1]["data"]["members"]
    return paged, [h for h in EMAIL if h not in paged]


def test_a_whole_case_from_report_to_decision(serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    (t1, t2), (o1, o2) = _opened(server, sink)
    first = server.quiet(sink)
    # The two on duty get the report; the others only the conflict check.
    assert sorted(_to(first, EMAIL[t1]) + _to(first, EMAIL[t2])) == ["page", "page"]
    for other in (o1, o2):
        [check] = [m for m in first if m.recipient == EMAIL[other]]
        assert check.kind == "conflict" and REPORT_TEXT not in _flat(check.text)
        assert "have not named anyone" in _flat(check.text)
    seats = _seats(server)

    # Triage: acknowledged, and the respondent named; those still to answer the
    # conflict check are told who is named now.
    _reply(server, seats[t1], "ack\nseverity medium\n"
                              "party add respondent sam@elsewhere.example Sam Smith\n")
    assert "Done: " in _confirmation(sink, t1, 1)
    checks = sink.wait_for(4, where=lambda m: m.kind == "conflict")
    for check in checks[2:]:
        assert "respondent: Sam Smith <sam@elsewhere.example>" in _flat(check.text)
        assert REPORT_TEXT not in _flat(check.text)

    # A recusal (no reason needed) and a "no-conflict".
    _reply(server, seats[o1], "recuse")
    assert "nothing more" in _confirmation(sink, o1, 1)
    _reply(server, seats[o2], "no-conflict")
    [casefile] = sink.wait_for(1, where=lambda m: m.kind == "casefile")
    assert casefile.recipient == EMAIL[o2] and REPORT_TEXT in _flat(casefile.text)
    assert "acknowledged" in _flat(casefile.text)  # the history so far

    # Outreach to the reporter: held until a second member approves it.
    _reply(server, seats[t1], "relay reporter\n\nCould you tell us on which day it happened?")
    assert "waits for a second member" in _confirmation(sink, t1, 2)
    sink.wait_for(2, where=lambda m: m.kind == "message")  # the text, to t2 and o2
    assert not sink.of_kind("relay")
    _reply(server, seats[t1], "approve")
    assert "other than the one who wrote it" in _confirmation(sink, t1, 3)
    _reply(server, seats[t2], "approve")
    [relay] = sink.wait_for(1, where=lambda m: m.kind == "relay")
    assert relay.recipient == REPORTER and relay.sender == CONDUCT
    assert _flat(relay.text).startswith(
        f"{NAME[t1]} writes to you as the representative of the Test Committee")
    assert "on which day it happened?" in _flat(relay.text)
    assert relay.header("Auto-Submitted") is None
    reporter_address = relay.header("Reply-To").split("<")[1].rstrip(">")
    assert reporter_address == seats["reporter"]["reply_address"]

    # The reporter's answer comes back into the case, to the members only.
    before = len(server.quiet(sink))
    send(server.smtp_port, message(subject=f"Re: {relay.header('Subject')}",
                                   body="It was on the 12th, in the evening.\n",
                                   headers={"In-Reply-To": relay.header("Message-ID")}),
         rcpts=[reporter_address])
    answers = sink.wait_for(3, where=lambda m: m.kind == "message"
                            and "on the 12th" in m.text)
    assert sorted(m.recipient for m in answers) == sorted(EMAIL[h] for h in (t1, t2, o2))
    assert len(server.quiet(sink)) == before + 3

    # The plan, reconvening, votes, a consensus and the decision.
    _reply(server, seats[t1], "plan clarify-reporter done\nplan clarify-witnesses n/a\n"
                              "plan public-record n/a\nplan safety-review done\nreconvene")
    asked = sink.wait_for(2, where=lambda m: m.kind == "status" and "Reconvened" in
                          (m.header("Subject") or ""))
    assert sorted(m.recipient for m in asked) == sorted(EMAIL[h] for h in (t2, o2))
    assert "respondent: Sam Smith <sam@elsewhere.example>" in _flat(asked[0].text)
    _reply(server, seats[t1], "vote coaching two sessions")
    _reply(server, seats[t2], "vote private-warning")
    _reply(server, seats[o2], "vote coaching\ndecide coaching")
    refused = _confirmation(sink, o2, 2)
    assert "Not done" in refused and "private-warning 1" in refused
    _reply(server, seats[t2], "vote coaching")
    _reply(server, seats[o2], "follow-up 3s check in with the respondent\ndecide coaching")
    decided = sink.wait_for(2, where=lambda m: m.kind == "status"
                            and "Decided: coaching" in (m.header("Subject") or ""))
    assert sorted(m.recipient for m in decided) == sorted(EMAIL[h] for h in (t1, t2))
    assert "Votes: coaching 3" in _flat(decided[0].text)
    assert "check in with the respondent" in _flat(decided[0].text)

    # The follow-up comes back from the scheduler, to those who can read the case.
    reminders = sink.wait_for(3, where=lambda m: m.kind == "reminder", timeout=30)
    assert sorted(m.recipient for m in reminders) == sorted(EMAIL[h] for h in (t1, t2, o2))

    # Outreach to the respondent, refused by the relay: the members are told, and
    # the log says so without the address the relay quoted.
    sink.refuse = lambda address: ("550 5.1.1 <sam@elsewhere.example>: no such user "
                                   "(Sam Smith)" if address == "sam@elsewhere.example" else None)
    _reply(server, seats[t1], "relay respondent\n\nWe would like to hear your side.")
    _reply(server, seats[t2], "approve")
    failed = sink.wait_for(3, where=lambda m: m.kind == "failure")
    assert sorted(m.recipient for m in failed) == sorted(EMAIL[h] for h in (t1, t2, o2))
    sink.refuse = lambda address: None

    _reply(server, seats[t1], "close decided: coaching")
    sink.wait_for(2, where=lambda m: m.kind == "status"
                  and "Closed" in (m.header("Subject") or ""))
    mails = server.quiet(sink)

    case = server.json("case", "show", "1")
    assert case["state"] == "closed" and case["decision"] == "coaching"
    assert set(case["plan"].values()) <= {"done", "n/a"}
    kinds = [e["kind"] for e in case["events"]]
    for kind in ("recused", "no-conflict", "party-added", "relayed", "approved", "reconvened",
                 "decided", "follow-up-due", "closed"):
        assert kind in kinds, kind
    # The member who recused got the two checks and their own confirmation: nothing
    # after. The reporter: the acknowledgement and the relay. The respondent: nothing.
    assert _to(mails, EMAIL[o1]) == ["conflict", "conflict", "confirmation"]
    assert _to(mails, REPORTER) == ["ack", "relay"]
    assert _to(mails, "sam@elsewhere.example") == []
    # Nothing of the report ever reached the member with a conflict.
    assert not [m for m in mails if m.recipient == EMAIL[o1] and REPORT_TEXT in _flat(m.text)]
    # The log of the whole case holds no text and no address anyone used in it:
    # ids, counts, kinds and handles only (masked addresses show the domain).
    log = server.log()
    used = [REPORT_TEXT, "Something happened at the meetup", "Rita Reporter", REPORTER,
            "on which day it happened", "on the 12th", "Sam Smith", "sam@elsewhere.example",
            "two sessions", "check in with the respondent", "hear your side",
            *(NAME[h] for h in NAME),
            *(EMAIL[h] for h in EMAIL), *(seat["reply_address"] for seat in seats.values())]
    assert [text for text in used if text.lower() in log.lower()] == []


def test_a_member_who_joins_later_sees_no_past_case(
        serve, sink: Sink, db_url: str, tmp_path) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    _opened(server, sink)
    send(server.smtp_port, message(subject="second"))
    sink.wait_for(2, where=lambda m: m.kind == "ack")
    seats = _seats(server, 2)
    paged = server.look("case", "show", "2")["events"][1]["data"]["members"]
    code, _ = send(server.smtp_port, message(sender=seats[paged[0]]["email"], body="close\n"),
                   sender=seats[paged[0]]["email"], rcpts=[seats[paged[0]]["reply_address"]])
    assert code == 250
    sink.wait_for(1, where=lambda m: m.kind == "confirmation")
    assert server.look("case", "show", "2")["state"] == "closed"
    server.quiet(sink)
    # Erin joins the committee; the daemon starts again on the new roster.
    eve = "erin@members.example"
    with open(server.config, "a") as config:
        config.write('\n[[committee.members]]\nhandle = "erin"\nname = "Erin E"\n'
                     f'email = "{eve}"\nemployer = "Hooli"\nroles = []\n')
    server = serve.restart(server)
    [check] = sink.wait_for(1, where=lambda m: m.recipient == eve)
    assert check.kind == "conflict" and check.header("X-Cocmail-Case") == "1"
    assert "joined the committee" in _flat(check.text)
    assert REPORT_TEXT not in _flat(check.text)
    server.quiet(sink)
    assert _to(sink.mails, eve) == ["conflict"]  # nothing about the closed case #2
    erin = _seats(server)["erin"]
    # A command before the answer is refused; then "no-conflict" opens the case.
    code, _ = send(server.smtp_port, message(sender=eve, body="severity low\n"), sender=eve,
                   rcpts=[erin["reply_address"]])
    assert "have not answered the conflict check" in _confirmation(sink, eve, 1)
    assert server.look("case", "show", "1")["severity"] is None
    send(server.smtp_port, message(sender=eve, body="no-conflict\n"), sender=eve,
         rcpts=[erin["reply_address"]])
    [casefile] = sink.wait_for(1, where=lambda m: m.kind == "casefile")
    assert casefile.recipient == eve and REPORT_TEXT in _flat(casefile.text)


def test_without_a_member_on_duty_pages_the_next_one(serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    on_duty = server.look("rotation", "show", "--json")[0]["on_duty"]
    kept = on_duty[0]
    address = f"conduct+without-{kept}@{DOMAIN}"
    send(server.smtp_port, message(to=address), rcpts=[address])
    sink.wait_for(len(MEMBERS))  # the ack, and every member but the one kept out
    paged = server.look("case", "show", "1")["events"][1]["data"]["members"]
    assert kept not in paged and len(paged) == 2
    seats = _seats(server)
    for handle in EMAIL:
        if handle != kept and handle not in paged:
            _reply(server, seats[handle], "no-conflict")
    _reply(server, seats[paged[0]], "ack\nA note for everyone.")
    sink.wait_for(1, where=lambda m: m.kind == "message")
    mails = server.quiet(sink)
    assert _to(mails, EMAIL[kept]) == []
    assert "A note for everyone." in next(m.text for m in mails if m.kind == "message")


def test_when_everyone_recuses_the_mediator_gets_the_case(
        serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    (t1, t2), (o1, o2) = _opened(server, sink)
    seats = _seats(server)
    for handle in (o1, o2, t1):
        _reply(server, seats[handle], "recuse hard")
        _confirmation(sink, handle, 1)
    # One member left who can act: the mediator is given the case, with every command.
    [casefile] = sink.wait_for(1, where=lambda m: m.kind == "casefile")
    assert casefile.recipient == MEDIATOR and REPORT_TEXT in _flat(casefile.text)
    assert "mediator" in _flat(casefile.text)
    mediator = _seats(server)["mediator"]
    assert mediator["email"] == MEDIATOR
    _reply(server, mediator, "ack\nseverity high")
    assert "Done: " in _confirmation(sink, MEDIATOR, 1)
    case = server.look("case", "show", "1")
    assert case["severity"] == "high" and case["acknowledged_at"]
    _reply(server, seats[t2], "recuse")
    _reply(server, mediator, "note Taking it from here.")
    _confirmation(sink, MEDIATOR, 2)
    mails = server.quiet(sink)
    for handle in EMAIL:  # nobody who recused heard of the case again
        after = _to(mails, EMAIL[handle])
        assert after[-1] == "confirmation" and "message" not in after


def test_forged_and_replayed_commands_change_nothing(serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink),
                           committee={"authserv_ids": ["mx.conduct.example.org"]})
    (t1, _), _ = _opened(server, sink)
    send(server.smtp_port, message(subject="another report"))
    sink.wait_for(2, where=lambda m: m.kind == "ack")
    seat = _seats(server)[t1]
    other_case = _seats(server, 2)[t1]["reply_address"]
    token = seat["reply_address"].split("@")[0].split(".", 1)[1]
    wrong = seat["reply_address"].replace(token, token[::-1])
    crossed = seat["reply_address"].replace(
        token, other_case.split("@")[0].split(".", 1)[1])
    server.quiet(sink)
    before = len(sink.mails)
    _reply(server, seat, "close", to=wrong)  # a token that does not verify
    _reply(server, seat, "close", to=crossed)  # case 2's token on case 1's address
    _reply(server, seat, "close", sender="mallory@elsewhere.example")  # the wrong sender
    reasons = sorted(q["reason"] for q in server.look("quarantine", "list"))
    assert reasons == ["bad-token", "bad-token", "sender-mismatch"]
    assert len(server.quiet(sink)) == before  # no answer to a forgery: it tells nothing
    # A DKIM failure that our own MTA recorded: kept, nothing carried out, told why.
    failed = {"Authentication-Results": "mx.conduct.example.org; dkim=fail "
                                        f"header.d=members.example; spf=pass "
                                        f"smtp.mailfrom={seat['email']}"}
    _reply(server, seat, "close", headers=failed)
    assert "dkim=fail for members.example" in _confirmation(sink, t1, 1)
    # A replay: the same reply (Message-ID) again, with other bytes, runs nothing twice.
    _reply(server, seat, "severity low", message_id="once@members.example")
    _confirmation(sink, t1, 2)
    _reply(server, seat, "severity high\nclose", message_id="once@members.example")
    assert "nothing in it was done again" in _confirmation(sink, t1, 3)
    case = server.look("case", "show", "1")
    assert case["state"] != "closed" and case["severity"] == "low"


def test_unknown_lines_are_refused_and_processing_stops_after_five(
        serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    (t1, _), _ = _opened(server, sink)
    seat = _seats(server)[t1]
    _reply(server, seat, "severity low\nreccuse\nack\nsevrity high\nvot coaching\n"
                         "clsoe\nplann done\nclose\nMore text.")
    text = _confirmation(sink, t1, 1)
    assert "Processed: 8 commands, 6 refused" in text
    assert "Unknown command 'reccuse' (did you mean 'recuse'?)" in text
    assert "Stopped after 5 lines that are not commands" in text
    case = server.look("case", "show", "1")
    assert case["severity"] == "low" and case["acknowledged_at"] and case["state"] != "closed"
    server.quiet(sink)
    assert not sink.of_kind("message")  # nothing after the stop is passed on


def test_purge_needs_two_members_then_no_text_of_the_case_is_left(
        serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    (t1, t2), _ = _opened(server, sink)
    seats = _seats(server)
    _reply(server, seats[t1], "party add witness wes@elsewhere.example\n"
                              "relay witness\n\nMARKER-RELAYED-TEXT")
    sink.wait_for(1, where=lambda m: m.kind == "relay")
    # A relay to the reporter, held for approval when the case is purged: it
    # never leaves, and its text goes too.
    _reply(server, seats[t2], "relay reporter\n\nMARKER-HELD-TEXT")
    _confirmation(sink, t2, 1)
    _reply(server, seats[t1], "purge\nMARKER-PURGE-NOTE")
    assert "second member" in _confirmation(sink, t1, 2)
    _reply(server, seats[t1], "purge")
    assert "Not done" in _confirmation(sink, t1, 3)  # the same member twice is not two
    _reply(server, seats[t2], "purge")
    assert "Done: " in _confirmation(sink, t2, 2)
    _reply(server, seats[t1], "approve")
    assert "No relay in case #1 waits" in _confirmation(sink, t1, 4)
    server.quiet(sink)
    assert _to(sink.mails, REPORTER) == ["ack"]
    store = Store(db_url)
    try:
        metadata = MetaData()
        metadata.reflect(store.engine)
        left = []
        with store.engine.connect() as db:
            for table in metadata.sorted_tables:
                for row in db.execute(select(table)):
                    for value in row:
                        text = value.decode(errors="replace") if isinstance(value, bytes) \
                            else str(value)
                        for marker in ("rude to me", "MARKER-RELAYED-TEXT",
                                       "MARKER-HELD-TEXT", "MARKER-PURGE-NOTE"):
                            if marker in text:
                                left.append((table.name, marker))
    finally:
        store.dispose()
    assert left == []
    assert re.search(r"purged", " ".join(e["kind"] for e in
                                         server.look("case", "show", "1")["events"]))
