"""Member replies are commands: over SMTP to `cocmail serve`, with a real SMTP
sink reading back every mail they cause."""

from __future__ import annotations

from tests.committee import recuse
from tests.conftest import MEMBERS, Server, answer_conflict_checks, relay_to
from tests.mail import message, send
from tests.sink import Sink

NAME = {m[0]: m[1] for m in MEMBERS}
EMAIL = {m[0]: m[2] for m in MEMBERS}


def _open_case(server: Server, sink: Sink, cleared: bool = True) -> dict:
    """Case #1, and each member's seat in it. ``cleared``: the members not on duty
    answer the conflict check with "no-conflict" (and get the case so far)."""
    send(server.smtp_port, message())
    sink.wait_for(1 + len(MEMBERS))
    seats = {p["handle"]: p for p in server.look("case", "show", "1")["participants"]
             if p["role"] == "member"}
    if cleared:
        checked = answer_conflict_checks(server, sink)
        sink.wait_for(len(checked), where=lambda m: m.kind == "confirmation")
        server.quiet(sink)
        sink.forget()
    return seats


def _reply(server: Server, seat: dict, body: str, sender: str | None = None) -> None:
    sender = sender or seat["email"]
    code, _ = send(server.smtp_port, message(sender=sender, subject="Re: [conduct #1] report",
                                             body=body),
                   sender=sender, rcpts=[seat["reply_address"]])
    assert code == 250


def test_ack_severity_assign_and_a_note(serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    seats = _open_case(server, sink)
    before = len(sink.mails)
    _reply(server, seats["alice"], "ACK\nseverity high\nassign me\n\nI will call the reporter.\n"
                                   "\nOn Wed, 25 Nov 2026, cocmail wrote:\n> QUOTED-ORIGINAL\n")
    others = [h for h in NAME if h != "alice"]
    sink.wait_for(1, where=lambda m: m.kind == "confirmation")
    mails = server.quiet(sink)[before:]
    # The status goes to those paged about the case (the two on duty), but Alice.
    paged = next(e for e in server.look("case", "show", "1")["events"]
                 if e["kind"] == "paged")["data"]["members"]
    kinds = sorted((m.kind, m.recipient) for m in mails)
    assert kinds == sorted([("confirmation", EMAIL["alice"])]
                           + [("status", EMAIL[h]) for h in paged if h != "alice"]
                           + [("message", EMAIL[h]) for h in others])
    confirmation = next(m for m in mails if m.kind == "confirmation")
    text = confirmation.text
    assert text.count("Done: ") == 3 and "Not done" not in text
    assert f"Your note went to: {', '.join(NAME[h] for h in others)}." in text
    assert confirmation.header("In-Reply-To")  # threads under the member's own reply
    for status in (m for m in mails if m.kind == "status"):
        assert status.header("Subject") == f"[conduct #1] Acknowledged by {NAME['alice']}"
    note = next(m for m in mails if m.kind == "message")
    assert "I will call the reporter." in note.text and "QUOTED-ORIGINAL" not in note.text
    assert "severity high" not in note.text

    case = server.look("case", "show", "1")
    assert case["acknowledged_at"] and case["severity"] == "high"
    assert case["state"] == "triage"
    assert [(e["kind"], e["actor"]) for e in case["events"][-3:]] == [
        ("acknowledged", "alice"), ("severity", "alice"), ("assigned", "alice")]
    assert server.look("cases", "list")[0]["severity"] == "high"


def test_a_second_ack_is_answered_kindly_and_tells_nobody(
        serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    seats = _open_case(server, sink)
    _reply(server, seats["alice"], "ack")
    sink.wait_for(1, where=lambda m: m.kind == "confirmation")
    before = len(server.quiet(sink))
    _reply(server, seats["bob"], "ack")
    [confirmation] = sink.wait_for(1, where=lambda m: m.kind == "confirmation"
                                   and m.recipient == EMAIL["bob"])
    assert len(server.quiet(sink)) == before + 1  # only Bob's confirmation
    assert f"Already acknowledged by {NAME['alice']}" in confirmation.text
    assert "Not done" not in confirmation.text
    assert "No note was sent" in confirmation.text


def test_refused_commands_say_why_and_change_nothing(serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    seats = _open_case(server, sink)
    _reply(server, seats["carol"], "severity urgent\nassign zed\nhelp\nthanks\nCarol")
    [confirmation] = sink.wait_for(1, where=lambda m: m.kind == "confirmation")
    text = confirmation.text
    assert "Not done: Severity must be one of low, medium, high, critical" in text
    assert "Not done: 'zed' is not a member who can see this case" in text
    assert "severity low|medium|high|critical" in text and "assign me|<handle>" in text
    assert not sink.of_kind("message")  # "thanks" ended it: no note
    case = server.look("case", "show", "1")
    assert case["severity"] is None and case["assignee"] is None


def test_a_reply_without_commands_is_a_note(serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    seats = _open_case(server, sink)
    _reply(server, seats["dave"], "Acknowledged in spirit, but I am travelling.\n\n-- \nDave")
    notes = sink.wait_for(len(MEMBERS) - 1, where=lambda m: m.kind == "message")
    assert all("I am travelling." in n.text and "Dave\n" not in n.text for n in notes)
    [confirmation] = sink.wait_for(1, where=lambda m: m.kind == "confirmation")
    assert "Your reply had no commands." in confirmation.text
    assert server.look("case", "show", "1")["acknowledged_at"] is None


def test_a_command_from_another_address_changes_nothing(
        serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    seats = _open_case(server, sink)
    before = len(server.quiet(sink))
    _reply(server, seats["alice"], "ack\nseverity low", sender="mallory@elsewhere.example")
    assert len(server.quiet(sink)) == before
    case = server.look("case", "show", "1")
    assert case["acknowledged_at"] is None and case["severity"] is None
    [entry] = server.look("quarantine", "list")
    assert entry["reason"] == "sender-mismatch"


def test_a_recused_member_s_reply_is_kept_but_not_acted_on(
        serve, sink: Sink, db_url: str) -> None:
    server: Server = serve(db_url, delivery=relay_to(sink))
    seats = _open_case(server, sink, cleared=False)
    with server.store().unit_of_work() as session:
        recuse(session, 1, "bob", "hard")
    before = len(server.quiet(sink))
    _reply(server, seats["bob"], "ack\nI know the person.")
    [confirmation] = sink.wait_for(1, where=lambda m: m.kind == "confirmation")
    assert len(server.quiet(sink)) == before + 1
    assert "You have stepped back from case #1" in confirmation.text
    assert server.look("case", "show", "1")["acknowledged_at"] is None
    assert server.look("case", "show", "1")["message_count"] == 2
