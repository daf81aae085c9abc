"""Authentication-Results (RFC 8601) written by our own mail server: did the
sender's domain fail DKIM, SPF or DMARC?

Only headers whose authserv-id is in ``committee.authserv_ids`` count: anyone can
write an Authentication-Results header, and the local MTA (Postfix with
OpenDKIM/OpenDMARC, say) removes foreign ones carrying its own id. A result is
only ever used to refuse commands, never to allow them, so a forged "pass"
gains nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_RESULT = re.compile(r"\b(dkim|spf|dmarc)\s*=\s*([a-z]+)", re.IGNORECASE)
_PROPERTY = re.compile(r"\b(header\.d|header\.i|header\.from|smtp\.mailfrom|smtp\.helo)"
                       r"\s*=\s*([^\s;()]+)", re.IGNORECASE)
# The results that refuse, by method: SPF's "softfail" is the sender's own domain
# saying the server should not have sent it.
_FAILED = {"dkim": ("fail", "permerror"), "spf": ("fail", "softfail", "permerror"),
           "dmarc": ("fail",)}
_COMMENT = re.compile(r"\([^()]*\)")


def failure(headers: Iterable[Sequence[str]], trusted: Sequence[str],
            sender: str) -> str | None:
    """The first DKIM, SPF or DMARC failure for ``sender``'s domain that a trusted
    server recorded, in words; None when there is none.

    >>> h = [("Authentication-Results", "mx.example.org; dkim=fail (bad signature) "
    ...       "header.d=members.example; spf=pass smtp.mailfrom=bob@members.example")]
    >>> failure(h, ["mx.example.org"], "bob@members.example")
    'dkim=fail for members.example (mx.example.org)'
    >>> failure(h, ["other.example"], "bob@members.example") is None  # not our server
    True
    >>> failure(h, ["mx.example.org"], "bob@elsewhere.example") is None  # another domain
    True
    >>> failure([("Authentication-Results", "mx.example.org; spf=softfail "
    ...           "smtp.mailfrom=members.example; dmarc=fail header.from=members.example")],
    ...         ["mx.example.org"], "bob@members.example")
    'spf=softfail for members.example (mx.example.org)'
    """
    if not trusted:
        return None
    domain = sender.rsplit("@", 1)[-1].lower()
    wanted = {t.lower() for t in trusted}
    for name, value in headers:
        if name.lower() != "authentication-results":
            continue
        text = _COMMENT.sub(" ", value)
        server, _, rest = text.partition(";")
        if not server.split() or server.split()[0].lower() not in wanted:
            continue
        for clause in rest.split(";"):
            found = _RESULT.search(clause)
            if found is None or found.group(2).lower() not in _FAILED[found.group(1).lower()]:
                continue
            for _, subject in _PROPERTY.findall(clause):
                if subject.rsplit("@", 1)[-1].lower() == domain:
                    method, result = found.group(1).lower(), found.group(2).lower()
                    return f"{method}={result} for {domain} ({server.split()[0]})"
    return None
