"""The history as a hash chain, so nobody changes it quietly.

Each event of a case is a link: its place in the case (``seq`` 1, 2, …), the
hash of the event before it, a keyed digest of each value in its ``data``, and
its own hash over all of that and its fixed columns (time, kind, actor,
message). The case row holds the place and hash of its latest event. The hashes
are HMAC-SHA256 under the store's ``audit`` key (``store/keyring.py``), so
whoever can write to the database but does not hold the master key cannot make
a changed history verify again, and a digest does not let a dump confirm a
guessed text.

A purge clears the free text of a case's events: the digests stay, so the links
still verify, and a value that is gone is accepted in a purged case only.
``verify`` names the first link that does not hold. ``extend`` is called by
``store.writes.insert_events``, the one way an event is written.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Row

from cocmail.keys import cipher
from cocmail.store import keyring
from cocmail.store.jsontext import json_text
from cocmail.store.models import Case, Event


def _canonical(value: Any) -> bytes:
    """``value`` written one way only, the same before it is stored and as the
    store gives it back: orjson (keys sorted) writes a tuple as the list it comes
    back as and a time as its text, as the JSON column does. What orjson refuses
    (a lone surrogate, an integer past 64 bits) it refuses again when read back:
    that goes the json module's way, through the same round trip.

    >>> import datetime as dt
    >>> when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    >>> _canonical({"b": (1, when), "a": None}) == _canonical(
    ...     json.loads(json_text({"a": None, "b": [1, when.isoformat()]})))
    True
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        stored = json.loads(json_text(value))
        return json.dumps(stored, sort_keys=True, ensure_ascii=True,
                          separators=(",", ":")).encode()


def digests(key: bytes, data: dict[str, Any]) -> dict[str, str]:
    """A keyed digest of each value of ``data`` that is not None."""
    return {name: cipher.keyed_hash(key, _canonical(value))[:32]
            for name, value in data.items() if value is not None}


def link_hash(key: bytes, case_id: int, seq: int, at: dt.datetime, kind: str, actor: str,
              message_id: int | None, value_digests: dict[str, str],
              prev_hash: str | None) -> str:
    moment = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return cipher.keyed_hash(key, _canonical(
        [case_id, seq, moment, kind, actor, message_id, value_digests, prev_hash]))


def _key(db: Connection) -> bytes:
    return keyring.of(db).key(keyring.AUDIT)


def extend(db: Connection, rows: list[dict[str, Any]]) -> None:
    """Make ``rows`` (events about to be inserted, in order) the next links of their
    cases' chains, and move each case's head past them. The case rows are
    locked first (in id order, so two writers never wait on each other), so two
    transactions adding to one case take turns."""
    if not rows:
        return
    key = _key(db)
    case_ids = sorted({row["case_id"] for row in rows})
    heads = {case_id: (seq, head) for case_id, seq, head in db.execute(
        select(Case.id, Case.head_seq, Case.head_hash).where(Case.id.in_(case_ids))
        .order_by(Case.id).with_for_update())}
    for row in rows:
        seq, prev = heads[row["case_id"]]
        seq += 1
        row["seq"], row["prev_hash"] = seq, prev
        row["digests"] = digests(key, row["data"])
        row["hash"] = link_hash(key, row["case_id"], seq, row["at"], row["kind"], row["actor"],
                                row["message_id"], row["digests"], prev)
        heads[row["case_id"]] = (seq, row["hash"])
    db.execute(update(Case).where(Case.id == bindparam("case"))
               .values(head_seq=bindparam("seq"), head_hash=bindparam("head")),
               [{"case": case_id, "seq": heads[case_id][0], "head": heads[case_id][1]}
                for case_id in case_ids])


def has_unchained(db: Connection) -> bool:
    """Whether an event was written before the history was a chain."""
    return db.execute(select(Event.id).where(Event.hash.is_(None)).limit(1)).first() is not None


def seal_unchained(db: Connection) -> int:
    """Chain the events written before the history was a chain (a store upgraded
    from an earlier cocmail), case by case; how many cases were chained."""
    key = _key(db)
    chained = 0
    for (case_id,) in db.execute(select(Event.case_id).where(Event.hash.is_(None))
                                 .distinct().order_by(Event.case_id)).all():
        seq, prev = 0, None
        for event in db.execute(select(Event.__table__).where(Event.case_id == case_id)
                                .order_by(Event.id)).all():
            seq += 1
            value_digests = digests(key, event.data or {})
            link = link_hash(key, case_id, seq, event.at, event.kind, event.actor,
                             event.message_id, value_digests, prev)
            db.execute(update(Event).where(Event.id == event.id).values(
                seq=seq, prev_hash=prev, digests=value_digests, hash=link))
            prev = link
        db.execute(update(Case).where(Case.id == case_id).values(head_seq=seq, head_hash=prev))
        chained += 1
    return chained


@dataclass(frozen=True)
class Broken:
    """The first link of a case's chain that does not hold."""

    case_id: int
    event_id: int | None  # None: the case's head, past its last event
    seq: int | None
    why: str

    def __str__(self) -> str:
        where = f"event {self.event_id} (#{self.seq} of the case)" if self.event_id else "head"
        return f"case #{self.case_id}: {where}: {self.why}"


def verify(db: Connection, purged_kind: str, cleared: Callable[[str], tuple[str, ...]],
           case_id: int | None = None) -> Iterator[tuple[int, Broken | None]]:
    """For each case (or case ``case_id``): (its id, the first broken link or None).
    ``purged_kind`` is the kind of the event a purge writes: in a purged case the
    values ``cleared(kind)`` names may be gone from an event, their digests
    staying."""
    key = _key(db)
    cases = select(Case.id, Case.head_seq, Case.head_hash).order_by(Case.id)
    if case_id is not None:
        cases = cases.where(Case.id == case_id)
    for number, head_seq, head_hash in db.execute(cases).all():
        events = db.execute(select(Event.__table__).where(Event.case_id == number)
                            .order_by(Event.id)).all()
        yield number, _first_broken(key, number, head_seq, head_hash, list(events),
                                    purged_kind, cleared)


def _first_broken(key: bytes, case_id: int, head_seq: int, head_hash: str | None,
                  events: list[Row[Any]], purged_kind: str,
                  cleared: Callable[[str], tuple[str, ...]]) -> Broken | None:
    purged = any(event.kind == purged_kind for event in events)
    seq, prev = 0, None
    for event in events:
        seq += 1

        def broken(why: str, event: Row[Any] = event) -> Broken:
            return Broken(case_id, event.id, event.seq, why)

        if event.hash is None or event.digests is None:
            return broken("not chained (run `cocmail db upgrade`)")
        if event.seq != seq or event.prev_hash != prev:
            return broken(f"it does not follow event #{seq - 1}: an event before it was "
                          "removed, or events were reordered")
        if link_hash(key, case_id, seq, event.at, event.kind, event.actor, event.message_id,
                     event.digests, prev) != event.hash:
            return broken("changed since it was written (time, kind, actor or message)")
        now = digests(key, event.data or {})
        for name, digest in event.digests.items():
            if name not in now and not (purged and name in cleared(event.kind)):
                return broken(f"its {name!r} was removed" + (
                    "" if purged else ", and the case was never purged"))
            if name in now and now[name] != digest:
                return broken(f"its {name!r} was changed since it was written")
        if set(now) - set(event.digests):
            return broken(f"{', '.join(sorted(set(now) - set(event.digests)))} added since "
                          "it was written")
        prev = event.hash
    if (head_seq, head_hash) != (seq, prev):
        return Broken(case_id, None, None,
                      f"the case's history ended at event #{head_seq}, and holds {seq}: "
                      "events were removed from its end" if head_seq > seq else
                      "the case's head does not match its latest event")
    return None
