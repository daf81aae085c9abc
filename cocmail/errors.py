"""The one tree of cocmail's own exceptions.

    CocmailError
    ├── ConfigError        a config key has a bad value (exit 2, one line)
    ├── AddressError       a recipient is not one of ours (SMTP 550, pipe 67)
    ├── StoreUnavailable   the database could not commit (SMTP 451, pipe 75)
    └── NotFound           a CLI argument names a row that does not exist

Everything else that escapes is a bug: the intake quarantines the message it
was handling and the protocol edge answers "try again later".
"""


class CocmailError(Exception):
    """Base of every error cocmail raises on purpose."""


class ConfigError(CocmailError):
    """A configuration key is missing or has a value cocmail cannot use."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class AddressError(CocmailError):
    """A recipient address is not the conduct address or one of its reply addresses."""


class StoreUnavailable(CocmailError):
    """The database refused or lost a transaction; nothing of it was kept."""


class NotFound(CocmailError):
    """A row named on the command line does not exist."""


def describe(exc: BaseException) -> str:
    """One line about a failure, for a log or a stored error: its type and the
    first line of its text.

    >>> describe(ConnectionRefusedError(111, "Connection refused"))
    'ConnectionRefusedError: [Errno 111] Connection refused'
    >>> describe(TimeoutError())
    'TimeoutError'
    """
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
