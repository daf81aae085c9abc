"""The data keys of case content, and which columns hold content.

Each case has a data key of its own (``cases.key_ref`` names it), and so has
each message that came without one (a quarantined message: ``messages.key_ref``
keeps naming its key when it is released into a case). The mail cocmail queues
without a case is sealed under the store's own content key (``sealing.GENERAL``,
in the keyring). A data key is kept in ``content_keys`` wrapped by the master
key, with the master key's id beside it (``cocmail keys rotate`` re-wraps it);
a purge deletes it, and with it every copy of what it sealed.

The sealed columns are the model's columns of a ``sealing.Sealed`` type: that
is the one list of what is content. ``seal_row`` seals a row's values for them
on their way in; reading opens them (``store/sealing.py``). Addresses are
matched through a keyed hash (``address_index``), never in the clear.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from functools import cache
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from cocmail.keys import cipher
from cocmail.store import bulk, keyring, sealing
from cocmail.store.models import Case, ContentKey, Message

_KNOWN = "cocmail_known_refs"  # the connection's info entry: refs its transaction has seen


def _known(db: Connection, kind: str) -> dict[int, bytes]:
    """The refs of the cases (``kind`` "case") or messages ("message") this
    transaction has read or given a key, by id: each is looked up once in a
    transaction, not once per table written. Only in a transaction (another
    one's purge is seen in the next), and ``destroy`` forgets them all."""
    transaction = db.get_transaction()
    held = db.info.get(_KNOWN)
    if held is None or held[0] is not transaction:
        held = (transaction, {"case": {}, "message": {}})
        if transaction is not None:
            db.info[_KNOWN] = held
    known: dict[int, bytes] = held[1][kind]
    return known


def know_cases(db: Connection, refs: dict[int, bytes]) -> None:
    """Cases ``refs`` (by id) were just given these keys in this transaction."""
    _known(db, "case").update(refs)


def new_refs(db: Connection, count: int, now: dt.datetime) -> list[bytes]:
    """``count`` new data keys, stored wrapped; their refs."""
    if count <= 0:
        return []
    keys = keyring.of(db)
    made = [(cipher.new_key()[:sealing.REF_BYTES], cipher.new_key()) for _ in range(count)]
    master = keys.master
    bulk.execute_many(db, ContentKey.__table__, [
        {"ref": ref.hex(), "key_id": master.current,
         "wrapped": cipher.seal(master.key, key, keyring.content_aad(ref)), "created_at": now}
        for ref, key in made])
    for ref, key in made:
        keys.remember(ref, key)
    return [ref for ref, _ in made]


def case_refs(db: Connection, case_ids: Iterable[int], now: dt.datetime) -> dict[int, bytes]:
    """The ref of each case's data key. A case without one (from before
    encryption at rest, or purged) is given one now: what is written from now on
    is sealed."""
    known = _known(db, "case")
    wanted = set(case_ids)
    unknown = sorted(wanted - known.keys())
    if unknown:
        refs = {case_id: bytes.fromhex(ref) if ref else None for case_id, ref in db.execute(
            select(Case.id, Case.key_ref).where(Case.id.in_(unknown)))}
        missing = [case_id for case_id, ref in refs.items() if ref is None]
        for case_id, ref in zip(missing, new_refs(db, len(missing), now), strict=True):
            db.execute(update(Case).where(Case.id == case_id).values(key_ref=ref.hex()))
            refs[case_id] = ref
        known.update({case_id: ref for case_id, ref in refs.items() if ref is not None})
    return {case_id: known[case_id] for case_id in wanted if case_id in known}


def ref_for(db: Connection, case_id: int | None, now: dt.datetime) -> bytes:
    """The key a row of case ``case_id`` (None: of no case) is sealed under."""
    if case_id is None:
        return sealing.GENERAL
    return case_refs(db, [case_id], now)[case_id]


def message_refs(db: Connection, message_ids: Iterable[int],
                 now: dt.datetime) -> dict[int, bytes]:
    """The ref of each message's data key; one stored before encryption at rest
    is given one now (its case's, or one of its own)."""
    known = _known(db, "message")
    wanted = set(message_ids)
    unknown = sorted(wanted - known.keys())
    if unknown:
        rows = db.execute(select(Message.id, Message.key_ref, Message.case_id)
                          .where(Message.id.in_(unknown))).all()
        refs = {row.id: bytes.fromhex(row.key_ref) for row in rows if row.key_ref}
        missing = [row for row in rows if not row.key_ref]
        cases = case_refs(db, [row.case_id for row in missing if row.case_id], now)
        own = iter(new_refs(db, sum(1 for row in missing if not row.case_id), now))
        for row in missing:
            ref = cases[row.case_id] if row.case_id else next(own)
            db.execute(update(Message).where(Message.id == row.id).values(key_ref=ref.hex()))
            refs[row.id] = ref
        known.update(refs)
    return {message_id: known[message_id] for message_id in wanted if message_id in known}


def know_messages(db: Connection, refs: dict[int, bytes]) -> None:
    """Messages ``refs`` (by id) were just stored under these keys in this transaction."""
    _known(db, "message").update(refs)


def open_case_keys(db: Connection, case_ids: Any) -> None:
    """The data keys of cases ``case_ids`` (ids, or a query of them) opened
    ahead, in one read on ``db``, for a reader about to open their content
    (the outbox's): one query for a batch, not a connection of its own for each
    case's key when its first value is read (``Keyring.content_key``)."""
    keys = keyring.of(db)
    keys.open_stored(db.execute(
        select(ContentKey.ref, ContentKey.key_id, ContentKey.wrapped)
        .where(ContentKey.ref.in_(select(Case.key_ref).where(Case.id.in_(case_ids))))).all())


@cache
def sealed_columns(table: Any) -> dict[str, sealing.Sealed]:
    """The columns of ``table`` that hold content, by name."""
    return {column.name: column.type for column in table.columns
            if isinstance(column.type, sealing.Sealed)}


def seal(db: Connection, ref: bytes, column: Any, value: Any) -> Any:
    """``value`` sealed for ``column`` (a sealed column's type) under the data key
    ``ref``."""
    assert isinstance(column, sealing.Sealed), column
    keys = keyring.of(db)
    if value is None or sealing.is_sealed(value) or not keys.sealing:
        return value
    return column.seal(keys.content_key(ref), ref, column.clear_value(value), db.dialect)


def seal_row(db: Connection, table: Any, ref: bytes, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` (of ``table``) with its content sealed under ``ref`` (a copy: the
    caller's values stay in the clear for what it does next)."""
    row = dict(row)
    for name, column in sealed_columns(table).items():
        if row.get(name) is not None:
            row[name] = seal(db, ref, column, row[name])
    return row


LARGE = 1 << 20  # a value this long is written piecewise, where the store can (SQLite)


def writes_piecewise(db: Connection, value: bytes | None) -> bool:
    """Whether ``value`` of a bytes column goes in with ``write_piecewise``, not
    in its row: a large one on SQLite, whose blobs are written in place."""
    return value is not None and len(value) >= LARGE and db.dialect.name == "sqlite"


def write_piecewise(db: Connection, table: Any, name: str, row_id: int, ref: bytes,
                    value: bytes) -> None:
    """Bytes column ``name`` of row ``row_id`` set to ``value``, sealed under
    ``ref`` as it is written (``cipher.seal_pieces``): neither the sealed value
    whole nor the driver's copy of a bound one is ever beside the text in the
    clear, so a 20 MB report costs little more memory sealed than not."""
    column = sealed_columns(table)[name]
    assert isinstance(column, sealing.SealedBytes), name
    keys = keyring.of(db)
    if not keys.sealing:
        bulk.write_blob(db, table, name, row_id, len(value), [value])
        return
    bulk.write_blob(db, table, name, row_id, sealing.sealed_bytes_size(ref, value),
                    sealing.seal_bytes_pieces(keys.content_key(ref), ref, column.column, value))


def seal_values(db: Connection, ref: bytes | None, column: Any, data: dict[str, Any],
                names: Iterable[str]) -> dict[str, Any]:
    """``data`` with its values ``names`` sealed one by one (an event's free text);
    ``ref`` may be None when none of them is there."""
    names = {name for name in names if data.get(name) is not None}
    if not names:
        return data
    assert ref is not None
    return {name: seal(db, ref, column, value) if name in names else value
            for name, value in data.items()}


def address_index(db: Connection, address: str) -> str:
    """The keyed hash an address is matched by (``Keyring.index_of``)."""
    return keyring.of(db).index_of(address)


def destroy(db: Connection, refs: Iterable[bytes]) -> int:
    """The data keys ``refs`` deleted: what they sealed is unreadable for good."""
    hexes = sorted({ref.hex() for ref in refs if ref != sealing.GENERAL})
    if not hexes:
        return 0
    db.execute(delete(ContentKey).where(ContentKey.ref.in_(hexes)))
    db.info.pop(_KNOWN, None)
    keys = keyring.of(db)
    for ref in hexes:
        keys.forget(bytes.fromhex(ref))
    return len(hexes)
