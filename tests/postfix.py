"""A private Postfix instance on loopback, in front of cocmail's LMTP listener.

Debian's postfix package, configured in a throw-away folder (see
shared/notes/test-servers.md): its own queue and data folders, no chroot,
relaying one domain to ``lmtp:inet:127.0.0.1:PORT``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import DOMAIN, free_port
from tests.dovecot import greets

POSTFIX = "/usr/sbin/postfix"

_MASTER = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       1       1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@dataclass
class Postfix:
    directory: Path
    port: int

    @property
    def log_file(self) -> Path:
        return self.directory / "log" / "postfix.log"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def queue_is_empty(self) -> bool:
        queue = self.directory / "queue"
        return not any(
            files for sub in ("incoming", "active", "deferred", "maildrop")
            for _, _, files in os.walk(queue / sub)
        )

    def wait_until_delivered(self, count: int, timeout: float = 60) -> None:
        """Wait until ``count`` "status=sent" lines are logged and the queue is empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count("status=sent") >= count and self.queue_is_empty():
                return
            time.sleep(0.2)
        raise TimeoutError(f"Postfix did not deliver in {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        subprocess.run(["script", "-qc", f"{POSTFIX} -c {self.directory} stop", "/dev/null"],
                       capture_output=True, timeout=30)


def start_postfix(lmtp_port: int) -> Postfix:
    """Postfix cannot bind port 0: it takes a port free a moment ago, and when
    another test bound that one first (the greeting is not its own), another."""
    for _ in range(5):
        postfix = _start(lmtp_port, free_port())
        if postfix is not None:
            return postfix
    raise RuntimeError("postfix found no free port")


def _start(lmtp_port: int, port: int) -> Postfix | None:
    directory = Path(tempfile.mkdtemp(prefix="pf", dir="/tmp"))
    os.chmod(directory, 0o755)
    banner = f"cocmail-test-{uuid.uuid4().hex[:12]}"
    for sub in ("queue", "data", "log"):
        (directory / sub).mkdir()
    shutil.chown(directory / "data", "postfix", "postfix")
    (directory / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {directory}/queue
data_directory = {directory}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains = {DOMAIN}
relay_transport = lmtp:inet:127.0.0.1:{lmtp_port}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
# A listener that sends one reply instead of one per recipient leaves Postfix
# waiting here; keep the wait short so such a failure shows in seconds.
lmtp_data_done_timeout = 10s
maillog_file_prefixes = {directory}
maillog_file = {directory}/log/postfix.log
smtputf8_enable = yes
smtpd_banner = $myhostname ESMTP {banner}
""")
    (directory / "master.cf").write_text(_MASTER.format(listen=f"127.0.0.1:{port}"))
    result = subprocess.run(
        ["script", "-qc", f"{POSTFIX} -c {directory} start", "/dev/null"],
        capture_output=True, timeout=60,
    )
    if result.returncode != 0 and b"Address already in use" in result.stdout:
        shutil.rmtree(directory, ignore_errors=True)
        return None
    if result.returncode != 0:
        raise RuntimeError(f"postfix did not start: {result.stdout.decode(errors='replace')}")
    postfix = Postfix(directory, port)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if greets(port, banner):
            return postfix
        if "Address already in use" in postfix.log():
            postfix.stop()
            shutil.rmtree(directory, ignore_errors=True)
            return None
        time.sleep(0.05)
    postfix.stop()
    raise TimeoutError(f"postfix is not listening on {port}:\n{postfix.log()}")
