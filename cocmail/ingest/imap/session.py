"""One IMAP session: log in as the config says, the folders cocmail writes to,
moving messages (MOVE, else COPY + \\Deleted + EXPUNGE), what imaplib has seen of
the server's news, and hanging up whatever state the connection is in."""

from __future__ import annotations

import logging
import ssl

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError

from cocmail.config import Imap as ImapConfig
from cocmail.config.secrets import oauth2_token, read_secret

log = logging.getLogger("cocmail.ingest.imap")


class ConnectionLost(Exception):
    """The server ended the session (BYE) or the socket closed under us."""


def connect(imap: ImapConfig) -> IMAPClient:
    """A session with the server, logged in as ``imap`` says (TLS, STARTTLS or, for
    loopback tests, plain text; a password or an OAuth2 token)."""
    # Loading the CA store takes tens of milliseconds: only for TLS.
    context = None if imap.security == "none" else ssl.create_default_context(
        cafile=str(imap.tls_ca_file) if imap.tls_ca_file else None)
    client = IMAPClient(imap.host, imap.port, use_uid=True, ssl=imap.security == "tls",
                        ssl_context=context, timeout=imap.timeout.total_seconds())
    try:
        if imap.security == "starttls":
            assert context is not None
            client.starttls(context)
        if imap.auth == "xoauth2":
            client.oauth2_login(imap.username, oauth2_token(
                "imap", imap.oauth2_token_file, imap.oauth2_token_command))
        else:
            client.login(imap.username,
                         read_secret("imap", imap.password_file, imap.password_env) or "")
    except BaseException:
        hang_up(client)
        raise
    return client


def folders(imap: ImapConfig) -> list[str]:
    """The folders cocmail puts messages in (made when missing)."""
    return [imap.processed_folder, imap.quarantine_folder] if imap.after == "move" \
        else [imap.quarantine_folder]


def announced(client: IMAPClient) -> bool:
    """Did the server announce new mail in an answer to some other command? (imaplib
    keeps such untagged responses in ``untagged_responses``, by name.)"""
    kept = getattr(client._imap, "untagged_responses", {})
    return any([kept.pop(name, None) for name in ("EXISTS", "RECENT")])


def buffered(client: IMAPClient) -> bool:
    """Has imaplib read server data it has not handed out yet? (Looked at without
    blocking: the socket is non-blocking for the look, as idle_check does.)"""
    reader = getattr(client._imap, "file", None)
    if reader is None or not hasattr(reader, "peek"):
        return False
    sock = client.socket()
    sock.setblocking(False)
    try:
        return bool(reader.peek(1))
    except (BlockingIOError, InterruptedError):
        return False
    finally:
        sock.setblocking(True)
        client._set_read_timeout()


def move(client: IMAPClient, uids: list[int], folder: str) -> None:
    try:
        client.move(uids, folder)
    except CapabilityError:
        client.copy(uids, folder)
        client.add_flags(uids, [b"\\Deleted"])
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:
            client.expunge()


def hang_up(client: IMAPClient) -> None:
    """Log out, or where the connection is gone already, close the socket."""
    try:
        client.logout()
    except Exception:  # the connection may be gone already: only the socket is left
        try:
            client.shutdown()
        except Exception as exc:
            log.debug("imap: closing the socket: %s", exc)
