"""The IMAP drain's parts in process: reading ahead while the writer is busy,
telling the outbox, and what it keeps of messages the server failed to hand over."""


from __future__ import annotations

from cocmail.ingest.imap.drain import READ_UP_TO, _read_while, _Taken, _Wakes
from cocmail.ingest.imap.groups import UNFETCHABLE_AFTER
from cocmail.ingest.imap.groups import Trouble as _Trouble
from cocmail.intake.inbound import Inbound
from tests.mail import reports


def test_the_poller_reads_ahead_only_while_the_writer_is_busy() -> None:
    """It reads (parses) a fetched group's messages while the writer stores the one
    before, and hands the rest over unread the moment the writer is free; a message
    over READ_UP_TO is always left to the writer."""
    raws = reports("ahead", 5)
    raws[1] = raws[1] + b"x" * READ_UP_TO
    taken = _Taken([1, 2, 3, 4, 5], [], [Inbound(r, None, (), "imap") for r in raws])
    busy_for = iter([True, True, True, False])  # free after three looks
    _read_while(taken, lambda: next(busy_for))
    read = [d.reading is not None for d in taken.deliveries]
    assert read == [True, False, True, False, False]
    first = taken.deliveries[0].reading
    assert first is not None and first.parsed is not None
    assert first.parsed.subject == "report 0"
    assert [d.raw for d in taken.deliveries] == raws
    idle = _Taken([6], [], [Inbound(raws[0], None, (), "imap")])
    _read_while(idle, lambda: False)
    assert idle.deliveries[0].reading is None


def test_a_long_drain_tells_the_outbox_now_and_then_and_a_short_one_at_its_end() -> None:
    now = [0.0]
    told: list[float] = []
    wakes = _Wakes(lambda: told.append(now[0]), every=2.0, clock=lambda: now[0])
    for _ in range(3):  # a drain of three groups, in less than two seconds
        now[0] += 0.5
        wakes.stored()
    assert told == []
    wakes.drained()
    assert told == [1.5]
    wakes.drained()  # a drain that stored nothing tells nothing
    assert told == [1.5]
    for _ in range(10):  # a long one: told every two seconds, and at its end
        now[0] += 0.5
        wakes.stored()
    wakes.drained()
    assert told == [1.5, 3.5, 5.5, 6.5]


def test_what_the_poller_keeps_of_messages_the_server_failed_to_hand_over() -> None:
    trouble = _Trouble()
    trouble.under(1)
    trouble.failed([1, 2, 3], alone=False)  # a batch: each is a suspect, none counted
    assert all(trouble.suspect(uid) for uid in (1, 2, 3)) and not trouble.given_up(2)
    trouble.fetched([1])  # alone, it came: no longer a suspect
    for _ in range(UNFETCHABLE_AFTER - 1):
        trouble.failed([2], alone=True)
    # Left out of an answer for several: a suspect, not a failure alone.
    trouble.failed([2], alone=False)
    assert not trouble.given_up(2)
    trouble.failed([2], alone=True)
    assert trouble.given_up(2) and not trouble.suspect(1)
    trouble.keep([2, 4])  # 3 left the folder (expunged meanwhile): forgotten
    assert not trouble.suspect(3) and trouble.given_up(2)
    trouble.under(2)  # a new UIDVALIDITY: the same UIDs are other messages
    assert not trouble.suspect(2)


