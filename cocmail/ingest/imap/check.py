"""``cocmail imap check``: what ``serve`` would find in the mailbox, taking nothing.

It logs in as the poller does (TLS or STARTTLS, a password or an OAuth2 token)
and reports what the server offers that cocmail relies on (IDLE, MOVE,
UIDPLUS, and so how a stored message leaves the folder), how many messages
wait in the folder and its UIDVALIDITY against the position the store holds,
and which of cocmail's folders exist. It only asks: STATUS and LIST, no
SELECT, so nothing is fetched, flagged, made or moved, and a daemon draining
the folder meanwhile is not disturbed.
"""

from __future__ import annotations

from typing import Any

from imapclient import IMAPClient
from sqlalchemy import select

from cocmail.config import Imap
from cocmail.errors import ConfigError, describe
from cocmail.ingest.imap.position import account
from cocmail.ingest.imap.session import connect, folders, hang_up
from cocmail.store.db import Store
from cocmail.store.models import ImapState


def check(imap: Imap, store: Store | None) -> dict[str, Any]:
    """The findings, as ``imap check --json`` prints them; ``ok`` is False when
    cocmail could not log in or the folder is missing. ``store`` (None when it
    cannot be read) gives the position cocmail holds for the folder."""
    found: dict[str, Any] = {
        "ok": False, "server": f"{imap.host}:{imap.port}", "security": imap.security,
        "username": imap.username, "auth": imap.auth,
    }
    try:
        client = connect(imap)
    except ConfigError:
        raise
    except Exception as exc:
        found["error"] = f"cannot log in: {describe(exc)}"
        return found
    try:
        found.update(_look(client, imap))
    except Exception as exc:
        found["error"] = f"logged in, then: {describe(exc)}"
        return found
    finally:
        hang_up(client)
    if store is not None:
        found["position"] = _position(store, imap, found["folder"].get("uidvalidity"))
    found["ok"] = found["folder"]["exists"]
    if not found["ok"]:
        found["error"] = f"the folder {imap.folder} does not exist"
    return found


def _look(client: IMAPClient, imap: Imap) -> dict[str, Any]:
    capabilities = {name: client.has_capability(name) for name in ("IDLE", "MOVE", "UIDPLUS")}
    if imap.after == "flag":
        leaves = f"flagged {imap.flag} and left in {imap.folder}"
    elif capabilities["MOVE"]:
        leaves = "MOVE"
    elif capabilities["UIDPLUS"]:
        leaves = "COPY + UID EXPUNGE"
    else:
        leaves = "COPY + EXPUNGE"
    folder: dict[str, Any] = {"name": imap.folder, "exists": client.folder_exists(imap.folder)}
    if folder["exists"]:
        status = client.folder_status(imap.folder, [b"MESSAGES", b"UIDVALIDITY"])
        folder["messages"] = int(status[b"MESSAGES"])
        folder["uidvalidity"] = int(status[b"UIDVALIDITY"])
    return {
        "capabilities": capabilities,
        "stored_messages_leave_by": leaves,
        "idle": bool(imap.idle and capabilities["IDLE"]),
        "folder": folder,
        "folders": {name: client.folder_exists(name) for name in folders(imap)},
    }


def _position(store: Store, imap: Imap, uidvalidity: int | None) -> dict[str, Any] | None:
    """The last UID cocmail took from the folder, and whether it still holds (the
    folder's UIDVALIDITY is the one it was taken under)."""
    with store.reading() as session:
        held = session.execute(select(ImapState.last_uid, ImapState.uidvalidity).where(
            ImapState.account == account(imap))).one_or_none()
    if held is None:
        return None
    last_uid, taken_under = held
    return {"last_uid": last_uid, "uidvalidity": taken_under,
            "current": uidvalidity is not None and taken_under == uidvalidity}
