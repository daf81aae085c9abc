"""The daily digest end to end: a failed acknowledgement reaches the digest of
the members who may see the case, through a real SMTP sink."""


from __future__ import annotations

from tests.conftest import MEMBERS, Server, relay_to
from tests.mail import message, send
from tests.sink import Sink


def test_a_failed_acknowledgement_reaches_the_members_digest(
        serve, sink: Sink, db_url: str) -> None:
    sink.refuse = lambda address: ("550 5.1.1 no such user"
                                   if address == "rita@reporter.example" else None)
    server: Server = serve(db_url, delivery=relay_to(sink))
    send(server.smtp_port, message())
    # To the two on duty: the others have not answered the conflict check, so they
    # see nothing of the case, its failed mail included.
    paged = server.look("case", "show", "1")["events"][1]["data"]["members"]
    readers = sorted(m[2] for m in MEMBERS if m[0] in paged)
    sink.wait_for(len(readers), where=lambda m: m.kind == "failure")
    # The digest is switched on (due from midnight) once the failure is recorded.
    text = server.config.read_text().replace("[digest]\nenabled = false",
                                             '[digest]\nenabled = true\nat = "00:00"')
    server.config.write_text(text)
    server = serve.restart(server)
    digests = sink.wait_for(len(readers), where=lambda m: m.kind == "digest", timeout=40)
    assert sorted(d.recipient for d in digests) == readers
    for digest in digests:
        assert digest.header("Subject") == "Daily digest: 1 open case, 1 failed mail"
        assert "conduct #1" in digest.text and "550 5.1.1" in digest.text
        assert digest.header("Auto-Submitted") == "auto-generated"
        assert digest.header("X-Cocmail-Case") is None
    # Pages and conflict checks, failure notices, digests: the refused
    # acknowledgement is not in the sink.
    assert len(server.quiet(sink)) == len(MEMBERS) + 2 * len(readers)
