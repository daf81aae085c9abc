"""The sweep: every tick, what has fallen due is queued. One table of its tasks,
each run in a transaction of its own, so one that fails does not hold up the
others (the next tick tries it again).

What is due is read from the store, never from memory: a restart, a missed
tick or a second daemon sweeping the same database changes nothing (each task
queues a mail once, by its key).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from cocmail.clock import Clock
from cocmail.config import Config
from cocmail.errors import StoreUnavailable
from cocmail.notify.enqueue import Enqueue
from cocmail.schedule.digest import queue_digests
from cocmail.schedule.emergencies import escalate_emergencies
from cocmail.schedule.escalation import escalate
from cocmail.schedule.handoff import queue_handoffs
from cocmail.schedule.late_members import seat_late_members
from cocmail.schedule.reminders import queue_reminders
from cocmail.schedule.retention import run_retention
from cocmail.store.db import Store
from cocmail.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

Work = Callable[[Session, Config, Enqueue, dt.datetime], int]


@dataclass(frozen=True)
class Task:
    name: str  # in the log and the ``cocmail_sweep_total`` metric
    work: Work  # queues what is due at the time given; how many mails


TASKS: tuple[Task, ...] = (
    Task("escalation", lambda s, config, enqueue, now: escalate(
        s.connection(), config, enqueue, now)),
    Task("hand-off", queue_handoffs),
    Task("reminder", lambda s, config, enqueue, now: queue_reminders(
        s.connection(), enqueue, now)),
    Task("emergency", lambda s, config, enqueue, now: escalate_emergencies(
        s.connection(), enqueue, now)),
    Task("late-member", lambda s, config, enqueue, now: seat_late_members(
        s.connection(), config.committee, enqueue, now)),
    Task("retention", run_retention),
    Task("digest", queue_digests),
)
"""Escalation steps, hand-offs, follow-up reminders, unanswered emergency
measures, conflict checks for members who joined since a case opened,
retention (once a day), the daily digest."""


def sweep(store: Store, config: Config, enqueue: Enqueue, clock: Clock,
          metrics: Metrics) -> int:
    """Queue what is due now; how many mails were queued."""
    queued = 0
    for task in TASKS:
        try:
            with store.unit_of_work() as session:
                count = task.work(session, config, enqueue, clock.now())
        except StoreUnavailable as exc:
            log.error("sweep: %s: store unavailable: %s", task.name, exc)
            metrics.inc("cocmail_sweep_total", task=task.name, outcome="failed")
            continue
        except Exception:
            log.exception("sweep: %s failed", task.name)
            metrics.inc("cocmail_sweep_total", task=task.name, outcome="failed")
            continue
        metrics.inc("cocmail_sweep_total", task=task.name, outcome="ok")
        if count:
            log.info("sweep: queued %d %s mail(s)", count, task.name)
        queued += count
    return queued
