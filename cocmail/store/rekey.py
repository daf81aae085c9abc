"""Changing the master key, and sealing what was stored before encryption at
rest: both in batches of their own transactions, so either can be stopped at
any moment (a SIGKILL included) and run again, while the daemon runs.

Re-wrapping a data key opens it with the master key it was wrapped under and
wraps it under the current one, in one update of its row: it is under the old
key or the new, never neither. Sealing a row seals each of its values that is
still in the clear (a sealed one is left as it is), so a row done twice is a
row done once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, select, type_coerce, update
from sqlalchemy.engine import Connection

from cocmail.keys import cipher
from cocmail.store import content, keyring, sealing
from cocmail.store.models import (
    Attachment,
    Case,
    ContentKey,
    Emergency,
    Event,
    FollowUp,
    KeyringEntry,
    Message,
    Outbox,
    Participant,
    Quarantine,
)

# Each table that holds content, and whose key seals a row of it: its case's,
# its message's, or (a message) its own.
SEALED_TABLES: tuple[tuple[Any, str], ...] = (
    (Message, "message"), (Attachment, "message_id"), (Quarantine, "message_id"),
    (Participant, "case_id"), (Outbox, "case_id"), (FollowUp, "case_id"),
    (Emergency, "case_id"), (Event, "case_id"))


@dataclass(frozen=True)
class Status:
    current: str  # the id of the master key new keys are wrapped under
    wrapped: dict[str, int]  # master key id -> data keys (and the store's own keys)
    cases: dict[str, int]  # master key id -> cases whose data key it wraps

    @property
    def behind(self) -> int:
        """Keys still wrapped under another master key than the current one."""
        return sum(n for key_id, n in self.wrapped.items() if key_id != self.current)


def status(db: Connection, current: str) -> Status:
    wrapped: dict[str, int] = {}
    for key_id, count in db.execute(select(ContentKey.key_id, func.count())
                                    .group_by(ContentKey.key_id)):
        wrapped[key_id] = wrapped.get(key_id, 0) + count
    for key_id, count in db.execute(select(KeyringEntry.key_id, func.count())
                                    .group_by(KeyringEntry.key_id)):
        wrapped[key_id] = wrapped.get(key_id, 0) + count
    cases = dict(db.execute(select(ContentKey.key_id, func.count(Case.id))
                            .join(Case, Case.key_ref == ContentKey.ref)
                            .group_by(ContentKey.key_id)).tuples().all())
    return Status(current, wrapped, cases)


def rewrap_keyring(db: Connection) -> int:
    """The store's own keys wrapped under the current master key; how many moved."""
    keys = keyring.of(db)
    moved = 0
    for name in keyring.NAMES:
        row = db.execute(select(KeyringEntry.key_id).where(KeyringEntry.name == name)
                         .with_for_update()).first()
        if row is None or row.key_id == keys.master.current:
            continue
        key = keys.key(name)
        db.execute(update(KeyringEntry).where(KeyringEntry.name == name).values(
            key_id=keys.master.current,
            wrapped=cipher.seal(keys.master.key, key, keyring.keyring_aad(name))))
        moved += 1
    return moved


def rewrap_batch(db: Connection, limit: int) -> int:
    """Up to ``limit`` data keys not under the current master key re-wrapped under
    it; how many. Rows another rotation holds are skipped, not waited for."""
    keys = keyring.of(db)
    current = keys.master.current
    rows = db.execute(select(ContentKey.ref, ContentKey.key_id, ContentKey.wrapped)
                      .where(ContentKey.key_id != current).order_by(ContentKey.ref)
                      .limit(limit).with_for_update(skip_locked=True)).all()
    for ref_hex, key_id, wrapped in rows:
        ref = bytes.fromhex(ref_hex)
        key = keys.open_content_key(ref, key_id, wrapped)
        db.execute(update(ContentKey).where(ContentKey.ref == ref_hex).values(
            key_id=current, wrapped=cipher.seal(keys.master.key, key, keyring.content_aad(ref))))
    return len(rows)


def count_rows(db: Connection) -> int:
    """How many rows ``seal_batch`` walks through, over every table."""
    return sum(db.execute(select(func.count()).select_from(model)).scalar_one()
               for model, _ in SEALED_TABLES)


def seal_batch(db: Connection, model: Any, by: str, after: int, limit: int,
               private: Callable[[str], tuple[str, ...]],
               now: dt.datetime) -> tuple[int, int, int]:
    """The values in the clear of up to ``limit`` rows of ``model`` past id
    ``after`` sealed; (the last id looked at, how many rows were looked at, how
    many changed). An event's values ``private(kind)`` names are sealed one by one."""
    table: Table = model.__table__
    columns = content.sealed_columns(table)
    # As stored: a sealed value not opened, one in the clear as it is.
    stored = [type_coerce(table.c[name], column.impl).label(name)  # type: ignore[attr-defined]
              for name, column in columns.items()]
    extra = [table.c[name] for name in ("case_id", "message_id", "kind", "key", "email_index",
                                        "recipient_index") if name in table.c]
    rows = db.execute(select(table.c.id, *extra, *stored).where(table.c.id > after)
                      .order_by(table.c.id).limit(limit)).all()
    if not rows:
        return after, 0, 0
    if by == "message":
        refs = content.message_refs(db, [row.id for row in rows], now)
    elif by == "message_id":
        refs = content.message_refs(db, [row.message_id for row in rows], now)
    else:
        refs = content.case_refs(db, [row.case_id for row in rows if row.case_id is not None],
                                 now)
    changed = 0
    for row in rows:
        owner = row.id if by == "message" else getattr(row, by)
        ref = refs[owner] if owner is not None else sealing.GENERAL
        values = _sealed_values(db, model, row, columns, ref, private)
        if values:
            db.execute(update(table).where(table.c.id == row.id).values(**values))
            changed += 1
    return rows[-1].id, len(rows), changed


def _sealed_values(db: Connection, model: Any, row: Any, columns: dict[str, sealing.Sealed],
                   ref: bytes, private: Callable[[str], tuple[str, ...]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, column in columns.items():
        value = getattr(row, name)
        if value is None or sealing.is_sealed(value):
            continue
        if model is Event:
            names = [k for k in private(row.kind)
                     if value.get(k) is not None and not sealing.is_sealed(value[k])]
            if names:
                values[name] = content.seal_values(db, ref, column, value, names)
            continue
        values[name] = content.seal(db, ref, column, value)
    if model is Participant and row.email_index is None and "email" in values:
        values["email_index"] = content.address_index(db, row.email)
    if model is Outbox and row.recipient_index is None and "recipient" in values:
        index = content.address_index(db, row.recipient)
        # A key from before ends with the address in the clear: with its keyed hash now.
        values["recipient_index"] = index
        values["key"] = f"{row.key[:len(row.key) - len(row.recipient)]}{index}" \
            if row.key.endswith(row.recipient) else row.key
    return values
