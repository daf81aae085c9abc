"""Signed reply tokens: which case and which participant a reply address belongs to;
and the signed Message-IDs of the mail cocmail sends.

A token is an HMAC over (case id, participant id) with the operator's key,
base32, lower case, 16 characters (80 bits). It cannot be guessed, and it
cannot be moved to another case: the case id is part of the address *and* of
what is signed.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from cocmail.config import Config
from cocmail.errors import ConfigError

TOKEN_LENGTH = 16
MIN_KEY = 16  # bytes of key, at least: a key is never guessed from the tokens it made
TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def make_token(key: bytes, case_id: int, participant_id: int) -> str:
    return _b32(hmac.digest(key, f"cocmail-reply:{case_id}:{participant_id}".encode(),
                            "sha256"))


# Every pair of characters, for 10 bits at a time (see _b32).
_PAIRS = [first + second for first in TOKEN_ALPHABET for second in TOKEN_ALPHABET]


def _b32(mac: bytes) -> str:
    """The first ``TOKEN_LENGTH`` (16) characters of ``mac`` in lower-case base32: its
    first 10 bytes, 10 bits (two characters) at a time, as ``base64.b32encode``
    does in Python, without its padding, upper case and bytes. Three Message-IDs
    are signed for each new report (a nonce and a signature each): with
    ``b32encode`` they were a tenth of the writer's time for a report; this takes
    two thirds as long (16.8 -> 10.7 us a Message-ID).
    """
    n = int.from_bytes(mac[:10], "big")
    pairs = _PAIRS
    return (pairs[n >> 70] + pairs[n >> 60 & 1023] + pairs[n >> 50 & 1023]
            + pairs[n >> 40 & 1023] + pairs[n >> 30 & 1023] + pairs[n >> 20 & 1023]
            + pairs[n >> 10 & 1023] + pairs[n & 1023])


def match_token(
    key: bytes, case_id: int, token: str, participant_ids: Iterable[int]
) -> int | None:
    """Return the participant of ``case_id`` that ``token`` was made for, or None."""
    found = None
    for participant_id in participant_ids:
        # Compare against every participant, not stopping early, so timing says nothing.
        if hmac.compare_digest(make_token(key, case_id, participant_id), token.lower()):
            found = participant_id
    return found


def _message_id_mac(key: bytes, case_id: int, nonce: str) -> str:
    return _b32(hmac.digest(key, f"cocmail-msgid:{case_id}:{nonce}".encode(), "sha256"))


def make_message_id(key: bytes, case_id: int | None, domain: str) -> str:
    """A new Message-ID for a mail cocmail sends. About a case, it carries the case
    id and a signature over it, so a reply that lost the plus address (a client that
    answers the From address) still threads by its In-Reply-To.

    >>> mid = make_message_id(b"k" * 32, 42, "example.org")
    >>> case_of_message_id(b"k" * 32, mid, "example.org")
    42
    >>> case_of_message_id(b"x" * 32, mid, "example.org") is None
    True
    """
    nonce = _b32(secrets.token_bytes(10))
    if case_id is None:
        return f"<cocmail.{nonce}@{domain}>"
    return f"<cocmail.{case_id}.{nonce}.{_message_id_mac(key, case_id, nonce)}@{domain}>"


_SIGNED_ID = re.compile(rf"<?cocmail\.([1-9][0-9]{{0,17}})\.([{TOKEN_ALPHABET}]{{16}})"
                        rf"\.([{TOKEN_ALPHABET}]{{{TOKEN_LENGTH}}})@([^>]+)>?")


def case_of_message_id(key: bytes, message_id: str, domain: str) -> int | None:
    """The case a Message-ID of ours names, if its signature verifies."""
    match = _SIGNED_ID.fullmatch(message_id.strip())
    if match is None or match.group(4).lower() != domain.lower():
        return None
    case_id, nonce, mac = int(match.group(1)), match.group(2), match.group(3)
    if hmac.compare_digest(_message_id_mac(key, case_id, nonce), mac.lower()):
        return case_id
    return None


_SIGNED_IN_TEXT = re.compile(rb"cocmail\.([1-9][0-9]{0,17})\.([a-z2-7]{16})\.([a-z2-7]{16})@"
                             rb"([A-Za-z0-9.-]{1,253})", re.IGNORECASE)


def case_named_in(key: bytes, raw: bytes, domain: str) -> int | None:
    """The case of the first Message-ID of ours, signature verified, anywhere in
    ``raw``: a bounce or an auto-reply quotes the mail it answers, headers and all.

    >>> mid = make_message_id(b"k" * 32, 42, "example.org")
    >>> case_named_in(b"k" * 32, b"...Original-Message-ID: " + mid.encode() + b"...",
    ...               "example.org")
    42
    """
    for found in _SIGNED_IN_TEXT.finditer(raw):
        text = found.group(0).decode("ascii", "replace")
        case_id = case_of_message_id(key, text, domain)
        if case_id is not None:
            return case_id
    return None


def load_key(config: Config, *, may_create: bool = False) -> bytes:
    """The token key: from the environment variable named in config, else from the key
    file. A missing file is made (mode 0600, 32 random bytes, hex) only when
    ``may_create``: for a database that holds no case yet. Otherwise every reply
    address and signed Message-ID already handed out was made with a key that is
    not there, and a new one would silently stop them all from verifying: that is
    a config error (a wrong path, a volume not mounted)."""
    from_env = os.environ.get(config.secrets.token_key_env)
    if from_env:
        key = from_env.strip().encode()
        if len(key) < MIN_KEY:
            # A short key is found from one reply address, and with it every token.
            raise ConfigError("secrets.token_key_env",
                              f"${config.secrets.token_key_env} is shorter than {MIN_KEY} bytes")
        return key
    path = config.secrets.token_key_file
    if path is None:
        raise ConfigError(
            "secrets.token_key_file", f"missing, and ${config.secrets.token_key_env} is unset"
        )
    if not may_create and not path.exists():
        raise ConfigError(
            "secrets.token_key_file",
            f"{path} does not exist, and the database holds cases whose reply addresses "
            f"were made with it: restore the file (or set ${config.secrets.token_key_env})")
    try:
        return _read_or_create(path)
    except OSError as exc:
        raise ConfigError("secrets.token_key_file", f"{path}: {exc.strerror}") from None


def _read_or_create(path: Path) -> bytes:
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return path.read_bytes().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        key = path.read_bytes().strip()
    if len(key) < MIN_KEY:
        raise ConfigError("secrets.token_key_file", f"{path}: key shorter than {MIN_KEY} bytes")
    return key
