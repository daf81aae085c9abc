"""The parts of a process that takes mail, built from the config in one place:
the serve daemon, its writer process, ``cocmail pipe`` and ``quarantine replay``
all take mail through an ``Intake`` made here, so none of them can be wired
with a different enqueue, clock or key."""

from __future__ import annotations

from dataclasses import dataclass

from cocmail.case import members
from cocmail.clock import Clock
from cocmail.config import Config
from cocmail.intake.service import Intake
from cocmail.notify.enqueue import Enqueue
from cocmail.route import tokens
from cocmail.store.db import Store
from cocmail.store.unlock import unlock


def intake(config: Config, store: Store, key: bytes, clock: Clock) -> Intake:
    """The intake service, queueing the mail it causes with the config's limits."""
    return Intake(store, config.committee, key, clock, Enqueue.for_config(config, key))


@dataclass(frozen=True)
class MailTaker:
    intake: Intake
    started: members.Started  # the roster synced at start; the handles it knows


def start_taking_mail(config: Config, store: Store, clock: Clock) -> MailTaker:
    """What a process does before it takes its first message: the roster synced
    with the store, the token key read (made, on an empty store), the intake."""
    unlock(config, store, clock.now())
    started = members.start(store, config.committee, clock.now())
    key = tokens.load_key(config, may_create=started.empty)
    return MailTaker(intake(config, store, key, clock), started)
