"""The writes of the intake, the commands and the sweep: cases, seats, messages,
events, recusals, keep-outs. Plain values in and out (the store still knows no
mail); the rows of the intake's hot path go in through ``store/bulk.py``. What
holds case content is sealed here, on its way in (``store/content.py``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from cocmail.store import bulk, chain, content, keyring, sealing
from cocmail.store.db import SCRUB
from cocmail.store.models import (
    Attachment,
    Case,
    Emergency,
    Event,
    FollowUp,
    Message,
    MessageKeepOut,
    Outbox,
    Participant,
    Quarantine,
    Recusal,
)

_MESSAGES = Message.__table__
_ATTACHMENTS = Attachment.__table__


def find_messages(
    db: Connection, dedupe_keys: list[str]
) -> dict[str, tuple[int, int | None, str | None]]:
    """For the keys already stored: (message id, case id, quarantine reason)."""
    connection = db
    stored = {keyring.keyed(db, key): key for key in dedupe_keys}
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = ("SELECT m.dedupe_key, m.id, m.case_id, q.reason FROM messages m "
           "LEFT OUTER JOIN quarantine q ON q.message_id = m.id "
           f"WHERE m.dedupe_key IN ({', '.join([marker] * len(stored))})")
    rows = bulk.run(connection, sql, tuple(stored), fetch=True)
    return {stored[str(row[0])]: (int(row[1]), row[2], row[3]) for row in rows}


def recent_mail(
    db: Connection, recipients: list[str], kinds: tuple[str, ...], since: dt.datetime
) -> list[tuple[str, str]]:
    """(recipient, kind) of the outbox rows of ``kinds`` to ``recipients`` queued
    after ``since`` (the per-address limit of automatic answers)."""
    marker = "?" if db.dialect.paramstyle == "qmark" else "%s"
    indexes = {content.address_index(db, recipient): recipient for recipient in recipients}
    sql = ("SELECT recipient_index, kind FROM outbox WHERE "
           f"recipient_index IN ({', '.join([marker] * len(indexes))}) "
           f"AND kind IN ({', '.join([marker] * len(kinds))}) AND created_at > {marker}")
    processor = Outbox.__table__.c.created_at.type.dialect_impl(db.dialect).bind_processor(
        db.dialect)
    moment = processor(since) if processor else since
    rows = bulk.run(db, sql, (*indexes, *kinds, moment), fetch=True)
    return [(indexes[str(row[0])], str(row[1])) for row in rows]


def insert_cases(db: Connection, channels: list[str], opened_at: dt.datetime) -> list[int]:
    """One new case for each entry of ``channels`` (how its report reached us),
    each with a data key of its own."""
    refs = content.new_refs(db, len(channels), opened_at)
    ids = bulk.insert_many(db, Case.__table__,
                           [{"state": "new", "channel": channel, "opened_at": opened_at,
                             "escalated_through": 0, "head_seq": 0, "key_ref": ref.hex()}
                            for channel, ref in zip(channels, refs, strict=True)])
    content.know_cases(db, dict(zip(ids, refs, strict=True)))
    return ids


def insert_participants(db: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Seats; the address and name sealed, the address matched by its keyed hash."""
    if not rows:
        return []
    refs = content.case_refs(db, [r["case_id"] for r in rows], rows[0]["created_at"])
    table = Participant.__table__
    # Every row with every column: one statement for a reporter and members alike.
    return bulk.insert_many(db, table, [content.seal_row(db, table, refs[r["case_id"]], {
        "name": None, "handle": None, "cleared_at": None, "member_id": None, "left_at": None,
        **r, "email_index": content.address_index(db, r["email"])}) for r in rows])


def insert_seat_once(db: Connection, row: dict[str, Any]) -> bool:
    """A seat unless the case has one for the same role and address (``insert_once``)."""
    [ref] = content.case_refs(db, [row["case_id"]], row["created_at"]).values()
    table = Participant.__table__
    return insert_once(db, table, content.seal_row(db, table, ref, {
        **row, "email_index": content.address_index(db, row["email"])}))


def participant_index(db: Connection, address: str) -> str:
    """What ``participants.email_index`` holds for ``address``."""
    return content.address_index(db, address)


def clear(db: Connection, participant_ids: list[int], at: dt.datetime) -> None:
    """Members' seats cleared to read their case (triage, "no-conflict", mediator)."""
    if participant_ids:
        db.execute(update(Participant).where(Participant.id.in_(participant_ids),
                                             Participant.cleared_at.is_(None))
                   .values(cleared_at=at))


def insert_messages(db: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """New messages, sealed under their case's key (one that comes without a case
    under a key of its own); their content hashes are stored keyed
    (``keyring.keyed``)."""
    if not rows:
        return []
    now = rows[0]["received_at"]
    refs = content.case_refs(db, [r["case_id"] for r in rows if r.get("case_id")], now)
    own = iter(content.new_refs(db, sum(1 for r in rows if not r.get("case_id")), now))
    stored, used, large = [], [], []
    for row in rows:
        ref = refs[row["case_id"]] if row.get("case_id") else next(own)
        raw = row.get("raw")
        piecewise = content.writes_piecewise(db, raw)
        row = content.seal_row(db, _MESSAGES, ref, {**row, "key_ref": ref.hex(),
                                                    **({"raw": None} if piecewise else {})})
        for column in ("dedupe_key", "raw_sha256"):
            if row.get(column) is not None:
                row[column] = keyring.keyed(db, row[column])
        stored.append(row)
        used.append(ref)
        large.append(raw if piecewise else None)
    ids = bulk.insert_many(db, _MESSAGES, stored)
    content.know_messages(db, dict(zip(ids, used, strict=True)))
    for message_id, ref, raw in zip(ids, used, large, strict=True):
        if raw is not None:
            content.write_piecewise(db, _MESSAGES, "raw", message_id, ref, raw)
    return ids


def set_message_case(db: Connection, message_id: int, case_id: int,
                     participant_id: int | None, verified: bool) -> None:
    db.execute(
        update(_MESSAGES).where(_MESSAGES.c.id == message_id).values(  # type: ignore[arg-type]
            case_id=case_id, participant_id=participant_id, verified=verified)
    )


def insert_attachments(db: Connection, rows: list[dict[str, Any]]) -> None:
    """Attachments' records, sealed under their message's key."""
    if not rows:
        return
    refs = content.message_refs(db, [r["message_id"] for r in rows], _now(db))
    bulk.execute_many(db, _ATTACHMENTS, [content.seal_row(db, _ATTACHMENTS, refs[r["message_id"]], {
        **r, "sha256": keyring.keyed(db, r["sha256"])}) for r in rows])


def insert_events(db: Connection, rows: list[dict[str, Any]]) -> None:
    """The one way an event is written: as the next links of its case's chain,
    the values ``private`` names (its free text) sealed under the case's key.
    The chain's digests are of the values in the clear."""
    if not rows:
        return
    private = [row.get("private", ()) for row in rows]
    rows = [{k: v for k, v in row.items() if k != "private"} for row in rows]
    chain.extend(db, rows)
    # Only a case with something to seal needs its key (a purged case has none,
    # and its "purged" event makes it no new one).
    refs = content.case_refs(db, [row["case_id"] for row, names in zip(rows, private, strict=True)
                                  if any(row["data"].get(n) is not None for n in names)],
                             rows[0]["at"])
    column = Event.__table__.c.data.type
    bulk.execute_many(db, Event.__table__, [
        {**row, "data": content.seal_values(db, refs.get(row["case_id"]), column, row["data"],
                                            names)}
        for row, names in zip(rows, private, strict=True)])


def seal_for_message(db: Connection, message_id: int, table: Any,
                     values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (columns of ``table``: the message's own, its quarantine
    entry's) sealed under message ``message_id``'s key, for an update."""
    [ref] = content.message_refs(db, [message_id], _now(db)).values()
    return content.seal_row(db, table, ref, dict(values))


def _now(db: Connection) -> dt.datetime:
    """When a data key is made where the caller gave no time: the store's clock
    is the keyring's (``Store.use_keys``)."""
    return keyring.of(db).clock.now()


def insert_recusals(db: Connection, rows: list[dict[str, Any]]) -> None:
    bulk.execute_many(db, Recusal.__table__, rows)


def insert_quarantines(db: Connection, rows: list[dict[str, Any]]) -> None:
    """Quarantine entries, their detail sealed under their message's key."""
    if not rows:
        return
    refs = content.message_refs(db, [r["message_id"] for r in rows], rows[0]["received_at"])
    table = Quarantine.__table__
    bulk.execute_many(db, table, [content.seal_row(db, table, refs[r["message_id"]], r)
                                  for r in rows])


def insert_outbox(db: Connection, rows: list[dict[str, Any]]) -> None:
    """Mail to send, skipping any whose key is already stored (case, kind, step,
    recipient: a mail queued twice is queued once). Its recipient and payload
    are sealed under the case's key (mail of no case under the store's own);
    the recipient is matched by its keyed hash, which the key holds too."""
    if not rows:
        return
    now = rows[0]["created_at"]
    refs = content.case_refs(db, [r["case_id"] for r in rows if r["case_id"] is not None], now)
    table = Outbox.__table__
    stored = []
    for row in rows:
        ref = refs[row["case_id"]] if row["case_id"] is not None else sealing.GENERAL
        index = content.address_index(db, row["recipient"])
        stored.append(content.seal_row(db, table, ref, {
            **row, "recipient_index": index, "key": f"{row['key']}:{index}"}))
    bulk.execute_many(db, table, stored, skip_duplicates=True)


def outbox_values(db: Connection, case_id: int | None, values: dict[str, Any],
                  now: dt.datetime) -> dict[str, Any]:
    """``values`` of an outbox row of case ``case_id``, for an update: sealed as
    ``insert_outbox`` seals them, a new recipient with its keyed hash."""
    values = dict(values)
    if "recipient" in values:
        values["recipient_index"] = content.address_index(db, values["recipient"])
    return content.seal_row(db, Outbox.__table__, content.ref_for(db, case_id, now), values)


def outbox_key(case_id: int | None, kind: str, step: str) -> str:
    """The start of an outbox row's key; ``insert_outbox`` ends it with the
    recipient's keyed hash."""
    return f"{'-' if case_id is None else case_id}:{kind}:{step}"


def insert_once(db: Connection, table: Any, row: dict[str, Any]) -> bool:
    """Insert ``row`` unless a row with its unique key is stored; True when this call
    inserted it. Two transactions racing for the same key: the second waits for the
    first to commit and then inserts nothing (how a sweep takes a hand-off once)."""
    make = postgresql_insert if db.dialect.name == "postgresql" else sqlite_insert
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT SQLAlchemy executes.
    statement = make(table).values(**row).on_conflict_do_nothing().returning(
        *table.primary_key.columns)
    return db.execute(statement).first() is not None


def insert_follow_up(db: Connection, row: dict[str, Any]) -> None:
    ref = content.ref_for(db, row["case_id"], row["created_at"])
    db.execute(insert(FollowUp).values(**content.seal_row(db, FollowUp.__table__, ref, row)))


def insert_emergency(db: Connection, row: dict[str, Any]) -> None:
    ref = content.ref_for(db, row["case_id"], row["at"])
    db.execute(insert(Emergency).values(**content.seal_row(db, Emergency.__table__, ref, row)))


def insert_returning_id(db: Connection, table: Any, row: dict[str, Any]) -> int:
    """Insert one row; its new id."""
    [new_id] = bulk.insert_many(db, table, [row])
    return new_id


def set_recusal(db: Connection, case_id: int, member_id: int, kind: str,
                at: dt.datetime) -> None:
    """Member ``member_id``'s recusal in the case is now ``kind`` (hard, soft, or excl:
    kept out by the reporter)."""
    changed = db.execute(update(Recusal).where(Recusal.case_id == case_id,
                                               Recusal.member_id == member_id)
                         .values(kind=kind, at=at)).rowcount
    if not changed:
        insert_recusals(db, [{"case_id": case_id, "member_id": member_id, "kind": kind,
                              "at": at}])


def keep_out_of_message(db: Connection, message_id: int, member_ids: list[int]) -> None:
    """A message kept from members (``MessageKeepOut``); one already kept is skipped."""
    bulk.execute_many(db, MessageKeepOut.__table__, [
        {"message_id": message_id, "member_id": member_id} for member_id in member_ids],
        skip_duplicates=True)


def keep_out_of_cases(db: Connection, pairs: list[tuple[int, int]], at: dt.datetime) -> None:
    """Members kept out of new cases by their reporter: (case id, member id) pairs."""
    insert_recusals(db, [{"case_id": case_id, "member_id": member_id, "kind": "excl", "at": at}
                         for case_id, member_id in pairs])


def seat_key(member_id: int) -> str:
    """What a member's seat keeps in ``participants.email``: not their address,
    which is the member's (``members.email``) and may change, but a key unique to
    them, so that two members may swap addresses, or one take the address of
    another who left, and each seat stays one member's.

    >>> seat_key(7)
    'member:7'
    """
    return f"member:{member_id}"


def member_seat(case_id: int, member_id: int, handle: str, name: str | None,
                at: dt.datetime, *, cleared: bool) -> dict[str, Any]:
    """The row of a member's seat in a case, cleared to read it or not."""
    return {"case_id": case_id, "role": "member", "email": seat_key(member_id),
            "name": name, "handle": handle, "member_id": member_id, "created_at": at,
            "cleared_at": at if cleared else None}


def seat_cleared(row: dict[str, Any]) -> bool:
    """Is the seat ``member_seat`` made cleared to read?"""
    return row.get("cleared_at") is not None


def seat_again(db: Connection, participant_id: int) -> bool:
    """A member who left the roster and came back: the seat they lost in an open
    case is theirs again, not cleared. True when this call gave it back."""
    return bool(db.execute(update(Participant).where(
        Participant.id == participant_id, Participant.left_at.is_not(None)).values(
        left_at=None, cleared_at=None)).rowcount == 1)


def add_recipients(db: Connection, message_id: int, recipients: list[str]) -> None:
    """A message delivered again to more recipients: it keeps them all (a replay
    of a quarantined message then sees what each means)."""
    known = db.execute(select(Message.recipients).where(Message.id == message_id)).scalar()
    merged = list(dict.fromkeys([*(known or []), *recipients]))
    if merged != known:
        [ref] = content.message_refs(db, [message_id], _now(db)).values()
        db.execute(update(Message).where(Message.id == message_id).values(
            recipients=content.seal(db, ref, _MESSAGES.c.recipients.type, merged)))


def set_command_key(db: Connection, message_id: int, key: str) -> None:
    """The key of a member reply's new text, once the reply was carried out."""
    db.execute(update(Message).where(Message.id == message_id).values(
        command_key=keyring.keyed(db, key)))


def scrub_after_commit(db: Connection) -> None:
    """This transaction deletes case content: once it commits, the store leaves no
    copy of it in its files (``Store.scrub``)."""
    db.info[SCRUB] = True
