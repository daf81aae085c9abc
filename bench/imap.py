"""IMAP benchmark: how fast cocmail drains a mailbox, against a bare imapclient
loop, in the same run.

    python bench/imap.py [--messages N] [--rounds R]

A private Dovecot (as the tests start it; needs root and dovecot-imapd) gets N
(default 1,000) 4 KB reports appended to its INBOX. Then, in turn for R rounds:
(a) a bare loop with imapclient fetches them (BODY.PEEK[], 50 at a time) and
moves them to another folder, storing nothing; (b) `cocmail serve` on SQLite,
with the messages already waiting, drains them: each is parsed, routed and
committed (with the acknowledgement and the members' mail queued) before it is
moved. Each is timed from before it logs in (cocmail: from the moment its
SMTP port opens; it logs in to Dovecot then) to the moment the INBOX is empty,
as a connection logged in beforehand sees it (``Watcher``: NOOP every 5 ms).
Prints messages/s for each, each round's ratio and the median ratio (target:
cocmail at least 0.5 x the bare loop). All traffic is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, free_port, report, start_cocmail
from imapclient import IMAPClient

sys.path.insert(0, str(ROOT))
from tests.dovecot import PASSWORD, USER, Dovecot, available

BATCH = 50
# How often the watcher asks. Its NOOP costs Dovecot and this process about
# 0.15 ms of CPU together; a STATUS, 0.6-0.8 ms.
LOOK_EVERY = 0.005


class Watcher:
    """A connection with the INBOX open read-only (EXAMINE) before the clock starts:
    it asks NOOP every ``LOOK_EVERY`` seconds and counts what the server tells it
    (an EXPUNGE for each message moved away, EXISTS for new ones). Both loops are
    timed by it, so that they are timed alike, and cheaply: a STATUS every 10 ms,
    as before, cost about 0.06 s of CPU in a drain of 1,000 (80-86 looks) that
    cocmail needed and the bare loop (which timed itself) did not pay."""

    def __init__(self, client: IMAPClient) -> None:
        self.client = client
        self.count = int(client.select_folder("INBOX", readonly=True)[b"EXISTS"])

    def wait_until_empty(self) -> None:
        while True:
            while self.count > 0:
                time.sleep(LOOK_EVERY)
                for number, what in self.client.noop()[1]:
                    if what == b"EXPUNGE":
                        self.count -= 1
                    elif what == b"EXISTS":
                        self.count = int(number)
            # Counted to nothing: the server confirms it once (else look on).
            self.count = int(self.client.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"])
            if self.count == 0:
                return


def fill(dovecot: Dovecot, count: int, tag: str) -> None:
    with dovecot.client() as client:
        for n in range(count):
            sender = f"reporter{n}@reporter.example"
            client.append("INBOX", report(4096, f"{tag}-{n}", message_id=f"{tag}-{n}@bench",
                                          sender=sender))


def bare(dovecot: Dovecot) -> float:
    """Seconds for a loop that fetches and moves every message, storing nothing."""
    with dovecot.client() as client:
        if not client.folder_exists("bare-processed"):
            client.create_folder("bare-processed")
    with dovecot.client() as looking:
        watcher = Watcher(looking)
        start = time.perf_counter()  # before it logs in, as cocmail is timed
        with dovecot.client() as client:
            client.select_folder("INBOX")
            uids = sorted(client.search("ALL"))
            for begin in range(0, len(uids), BATCH):
                chunk = uids[begin:begin + BATCH]
                fetched = client.fetch(chunk, ["BODY.PEEK[]"])
                assert all(fetched[uid][b"BODY[]"] for uid in chunk)
                client.move(chunk, "bare-processed")
        watcher.wait_until_empty()
        return time.perf_counter() - start


def drained_by_cocmail(dovecot: Dovecot, directory: Path) -> float:
    """Seconds from cocmail's start (its SMTP port open; it logs in to Dovecot at
    the same moment) to an empty INBOX."""
    password = directory / "imap.pass"
    password.write_text(PASSWORD)
    extra = (f'\n[imap]\nhost = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "none"\n'
             f'username = "{USER}"\npassword_file = "{password}"\nbatch = {BATCH}\n')
    with dovecot.client() as looking:
        watcher = Watcher(looking)
        server = start_cocmail(directory, extra=extra)
        try:
            start = time.perf_counter()
            watcher.wait_until_empty()
            return time.perf_counter() - start
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not available():
        sys.exit("bench/imap.py: needs /usr/sbin/dovecot (dovecot-imapd) and root")
    dovecot = Dovecot(free_port())
    dovecot.start()
    ratios = []
    try:
        print(f"imap: {args.messages} reports of 4 KB in Dovecot's INBOX, {args.rounds} rounds")
        for round_ in range(1, args.rounds + 1):
            fill(dovecot, args.messages, f"bare{round_}")
            bare_rate = args.messages / bare(dovecot)
            fill(dovecot, args.messages, f"cocmail{round_}")
            with tempfile.TemporaryDirectory() as directory:
                cocmail_rate = args.messages / drained_by_cocmail(dovecot, Path(directory))
            ratios.append(cocmail_rate / bare_rate)
            print(f"  round {round_}: bare imapclient loop {bare_rate:6.0f} msg/s, "
                  f"cocmail (SQLite) {cocmail_rate:6.0f} msg/s, ratio {ratios[-1]:.2f}")
        print(f"  median ratio: {statistics.median(ratios):.2f}  (target >= 0.50)")
    finally:
        dovecot.remove()


if __name__ == "__main__":
    main()
