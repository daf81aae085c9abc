"""Paging benchmark: how fast the triagers hear of a report, how punctually the
escalation fires, and what one sweep of the scheduler costs.

    python bench/paging.py [--reports N] [--rate R]

1. Pages. cocmail on SQLite (five members, two on duty) sends through a real
   SMTP sink (aiosmtpd, in this process). Client processes offer N reports
   (default 200) at R per second (default 10), each from its own address; for
   each report, the time from the end of its DATA to the sink accepting *both*
   pages (p50, p99; target p99 under 2 s). Both ends read the monotonic clock.
2. Escalation. The same daemon runs a ladder of two steps (5 s: the pair on
   duty again, 10 s: the committee) with a sweep every second; for every step
   of every report, how late the step was taken against its due time (the
   event's time minus opened_at + after) and how late its last mail reached
   the sink (target: within the sweep interval plus 1 s).
3. One sweep (escalation, hand-offs, reminders, emergencies, new members' seats,
   digest: what each tick runs) on SQLite
   with 100,000 closed and 1,000 open cases (five seats each), against the
   same sweep on a store with the 1,000 open cases only, measured in the same
   run: the ratio shows whether the cost follows the open cases or all of them
   (target: under 100 ms). Nothing is due in the timed sweeps (the steady
   state: steps taken, digests queued); one sweep with all 1,000 open cases
   due at once is timed too.
All traffic is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import json
import logging
import secrets
import sqlite3
import statistics
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path

from aiosmtpd.controller import Controller
from common import CONDUCT, free_port, percentile, report, start_cocmail

CLIENTS = 4
MEMBERS = ("alice", "bob", "carol", "dave", "erin")
STEPS = ((5, "on-duty"), (10, "committee"))
TICK = 1.0


def members_toml() -> str:
    extra = "".join(f'\n[[committee.members]]\nhandle = "{h}"\nname = "{h.title()}"\n'
                    f'email = "{h}@members.example"\n' for h in MEMBERS[2:])
    ladder = ", ".join(f'{{ after = "{after}s", notify = "{notify}" }}'
                       for after, notify in STEPS)
    return (f'\n[sla]\nfirst_response = "1h"\nescalation = [{ladder}]\n'
            f'\n[scheduler]\ntick = "{TICK:g}s"\n'
            f'\n[rotation]\nhandoff_mail = false\n{extra}')


class _PageSink:
    """When each page and each escalation mail arrived (monotonic and wall clock)."""

    def __init__(self) -> None:
        self.pages: dict[str, list[float]] = {}
        self.escalations: dict[tuple[int, str], float] = {}  # (case, step) -> last arrival
        self.lock = threading.Lock()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        now, wall = time.monotonic(), time.time()
        content = envelope.content  # type: ignore[attr-defined]
        head = email.message_from_bytes(content.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
        kind = head["X-Cocmail-Kind"]
        with self.lock:
            if kind == "page":
                tag = str(head["Subject"]).rsplit(" ", 1)[-1]
                self.pages.setdefault(tag, []).append(now)
            elif kind == "escalation":
                # "Not acknowledged after 5 seconds": the step is named by its delay.
                after = int(str(head["Subject"]).split(" after ", 1)[1].split()[0])
                key = (int(head["X-Cocmail-Case"]), dict(STEPS)[after])
                self.escalations[key] = max(self.escalations.get(key, 0.0), wall)
        return "250 OK"


def _offer(args: tuple[int, int, int, float, float]) -> dict[str, float]:
    """Client ``index``: reports index, index+CLIENTS, … at ``start + n/rate``; when
    each one's DATA was done, by its tag."""
    import smtplib

    port, index, total, rate, start = args
    done: dict[str, float] = {}
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo("bench")
        for n in range(index, total, CLIENTS):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sender = f"reporter{n}@reporter.example"
            smtp.mail(sender)
            smtp.rcpt(CONDUCT)
            code, _ = smtp.data(report(4096, f"r{n}", sender=sender))
            done[f"r{n}"] = time.monotonic()
            if code != 250:
                raise RuntimeError(f"report {n} refused: {code}")
    return done


def pages_and_escalation(directory: Path, reports: int, rate: float) -> None:
    sink = _PageSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    delivery = (f'[delivery]\nmethod = "smtp"\nrelay_host = "127.0.0.1"\n'
                f'relay_port = {port}\nsecurity = "none"\n')
    server = start_cocmail(directory, delivery=delivery, extra=members_toml())
    try:
        start = time.monotonic() + 1.0
        with Pool(CLIENTS) as pool:
            parts = pool.map(_offer, [(server.port, i, reports, rate, start)
                                      for i in range(CLIENTS)])
        done = {k: v for part in parts for k, v in part.items()}
        # Wait for the last report's last step, and its mail.
        deadline = time.monotonic() + max(s for s, _ in STEPS) + 60
        while time.monotonic() < deadline:
            with sink.lock:
                if len(sink.escalations) >= reports * len(STEPS):
                    break
            time.sleep(0.5)
        time.sleep(2)
    finally:
        server.stop()
        controller.stop()

    with sink.lock:
        latencies = [max(sink.pages[tag]) - t for tag, t in done.items()
                     if len(sink.pages.get(tag, [])) == 2]
    missing = len(done) - len(latencies)
    print(f"pages: {len(done)} reports at {rate:g}/s, end of DATA -> both pages accepted: "
          f"p50 {percentile(latencies, 50) * 1000:.0f} ms, "
          f"p99 {percentile(latencies, 99) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms (target p99 < 2000 ms)"
          + (f"; {missing} without both pages" if missing else ""))

    db = sqlite3.connect(directory / "bench.db")
    taken, mailed = [], []
    for case_id, at, data in db.execute(
            "SELECT case_id, at, data FROM events WHERE kind = 'escalated'"):
        step = json.loads(data)
        due = dt.datetime.fromisoformat(step["due_at"])
        fired = dt.datetime.fromisoformat(at).replace(tzinfo=dt.UTC)
        taken.append((fired - due).total_seconds())
        arrived = sink.escalations.get((case_id, step["step"]))
        if arrived is not None:
            mailed.append(arrived - due.timestamp())
    expected = reports * len(STEPS)
    print(f"escalation: {len(taken)} of {expected} steps taken; lateness against the due "
          f"time (sweep every {TICK:g} s; target < {TICK + 1:g} s):")
    print(f"  step taken:       p50 {statistics.median(taken):.2f} s, "
          f"p99 {percentile(taken, 99):.2f} s, max {max(taken):.2f} s")
    print(f"  its mails at the sink: p50 {statistics.median(mailed):.2f} s, "
          f"p99 {percentile(mailed, 99):.2f} s, max {max(mailed):.2f} s")


def populated_store(directory: Path, closed: int, open_: int, now: dt.datetime,
                    committee: object) -> object:
    """A migrated SQLite store with ``closed`` closed and ``open_`` waiting cases, each
    with a reporter and five member seats; the open ones past every step already.
    The members are the roster's (``committee``), as a start records them."""
    from cocmail.case import members
    from cocmail.keys import master
    from cocmail.store import migrate
    from cocmail.store.db import Store

    store = Store(f"sqlite:///{directory / 'sweep.db'}")
    migrate.upgrade(store)
    # Its keys (the history's chain, the content hashes), as a start opens them.
    store.use_keys(master.parse(secrets.token_hex(32), "the bench's key"), now)
    members.start(store, committee, now)  # type: ignore[arg-type]
    connection = sqlite3.connect(directory / "sweep.db")
    stamp = (now - dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.%f")
    opened = (now - dt.timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with connection:
        ids = dict(connection.execute("SELECT handle, id FROM members").fetchall())
        rows = [(n + 1, "closed", "email", stamp, stamp, stamp, 10**9)
                for n in range(closed)]
        rows += [(closed + n + 1, "new", "email", opened, None, None, 10**9)
                 for n in range(open_)]
        connection.executemany(
            "INSERT INTO cases (id, state, channel, opened_at, acknowledged_at, closed_at,"
            " escalated_through) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        seats = []
        for case_id, *_ in rows:
            seats.append((case_id, "reporter", f"r{case_id}@reporter.example", None, stamp, None,
                          None))
            # Member seats cleared to read (they answered the conflict check).
            seats += [(case_id, "member", f"{h}@members.example", h, stamp, stamp, ids[h])
                      for h in MEMBERS]
        connection.executemany(
            "INSERT INTO participants (case_id, role, email, handle, created_at, cleared_at,"
            " member_id) VALUES (?, ?, ?, ?, ?, ?, ?)", seats)
    connection.close()
    return store


def sweep_config(directory: Path) -> object:
    from cocmail import config

    path = directory / "config.toml"
    ladder = ", ".join(f'{{ after = "{after}s", notify = "{notify}" }}'
                       for after, notify in STEPS)
    members = "".join(f'\n[[committee.members]]\nhandle = "{h}"\nname = "{h}"\n'
                      f'email = "{h}@members.example"\n' for h in MEMBERS)
    path.write_text(f'[committee]\nname = "Bench"\nshort_name = "conduct"\n'
                    f'address = "{CONDUCT}"\n{members}\n[sla]\nfirst_response = "1h"\n'
                    f'escalation = [{ladder}]\n[digest]\nat = "00:00"\n'
                    f'[database]\nurl = "sqlite:///{directory / "sweep.db"}"\n')
    return config.load(path)


def time_sweeps(directory: Path, closed: int, open_: int, rounds: int) -> tuple[float, float]:
    """Median time (s) of one steady sweep, and of the sweep that finds every open
    case due at once."""
    from sqlalchemy import update

    from cocmail.notify.enqueue import Enqueue
    from cocmail.schedule.digest import queue_digests
    from cocmail.schedule.emergencies import escalate_emergencies
    from cocmail.schedule.escalation import escalate
    from cocmail.schedule.handoff import queue_handoffs
    from cocmail.schedule.late_members import seat_late_members
    from cocmail.schedule.reminders import queue_reminders
    from cocmail.store.models import Case

    now = dt.datetime.now(dt.UTC)
    config = sweep_config(directory)
    store = populated_store(directory, closed, open_, now, config.committee)  # type: ignore[attr-defined]
    enqueue = Enqueue.for_config(config, b"k" * 32)

    def sweep() -> float:
        begin = time.perf_counter()
        for work in (lambda s: escalate(s.connection(), config, enqueue, now),
                     lambda s: queue_handoffs(s, config, enqueue, now),
                     lambda s: queue_reminders(s.connection(), enqueue, now),
                     lambda s: escalate_emergencies(s.connection(), enqueue, now),
                     lambda s: seat_late_members(s.connection(), config.committee, enqueue,
                                                 now),
                     lambda s: queue_digests(s, config, enqueue, now)):
            with store.unit_of_work() as session:  # type: ignore[attr-defined]
                work(session)
        return time.perf_counter() - begin

    sweep()  # the day's digests are queued: from here on, the steady state
    steady = statistics.median(sweep() for _ in range(rounds))
    with store.unit_of_work() as session:  # type: ignore[attr-defined]
        session.execute(update(Case).where(Case.closed_at.is_(None)).values(
            escalated_through=0))
    all_due = sweep()
    store.dispose()  # type: ignore[attr-defined]
    return steady, all_due


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    # The all-due sweep logs a warning per missed deadline: not what is measured.
    logging.getLogger("cocmail").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as directory:
        pages_and_escalation(Path(directory), args.reports, args.rate)
    with tempfile.TemporaryDirectory() as small, tempfile.TemporaryDirectory() as large:
        base, _ = time_sweeps(Path(small), 0, 1000, args.rounds)
        steady, all_due = time_sweeps(Path(large), 100_000, 1000, args.rounds)
    print(f"sweep: 1,000 open cases: {base * 1000:.1f} ms; with 100,000 closed as well: "
          f"{steady * 1000:.1f} ms (ratio {steady / base:.2f}; target < 100 ms)")
    print(f"sweep with all 1,000 open cases due at once: {all_due * 1000:.0f} ms "
          f"({(2 + len(MEMBERS)) * 1000} mails queued)")


if __name__ == "__main__":
    main()
