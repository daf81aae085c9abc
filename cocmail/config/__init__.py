"""The one TOML file an operator writes: ``model`` (the typed config), ``load``
(reading and checking it), ``units`` (durations, sizes, endpoints), ``secrets``
(passwords and tokens from files, variables or commands).

The names most of cocmail needs are here: ``Config`` and its parts, and ``load``."""

from cocmail.config.load import from_dict as from_dict
from cocmail.config.load import load as load
from cocmail.config.model import MEDIATOR as MEDIATOR
from cocmail.config.model import NOTIFY_TARGETS as NOTIFY_TARGETS
from cocmail.config.model import Committee as Committee
from cocmail.config.model import Config as Config
from cocmail.config.model import Database as Database
from cocmail.config.model import Delivery as Delivery
from cocmail.config.model import Digest as Digest
from cocmail.config.model import EscalationStep as EscalationStep
from cocmail.config.model import Http as Http
from cocmail.config.model import Imap as Imap
from cocmail.config.model import Logging as Logging
from cocmail.config.model import Member as Member
from cocmail.config.model import Retention as Retention
from cocmail.config.model import Rotation as Rotation
from cocmail.config.model import Scheduler as Scheduler
from cocmail.config.model import Secrets as Secrets
from cocmail.config.model import Sla as Sla
from cocmail.config.model import Smtp as Smtp
from cocmail.config.model import Templates as Templates
from cocmail.config.model import member_of as member_of
