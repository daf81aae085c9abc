"""The ``cocmail`` command: the parser, made of one module per command group, and
the exit code.

Exit codes: 0 success, 2 bad usage or bad config (one line naming the key and
the reason), 1 anything else. ``deliver`` uses sysexits codes instead, for MTAs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cocmail import config as config_module
from cocmail.cli import audit, cases, imap, keys, outbox, quarantine, retention, rotation, serve
from cocmail.cli.base import Commands, NotMigrated, UsageError
from cocmail.daemon import files
from cocmail.errors import ConfigError, NotFound, StoreUnavailable

DEFAULT_CONFIG = "/etc/cocmail/config.toml"


def _version() -> str:
    """The installed distribution's version (what ``pyproject.toml`` says)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cocmail")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, default=Path(os.environ.get("COCMAIL_CONFIG", DEFAULT_CONFIG)),
        help=f"the TOML config file (default: $COCMAIL_CONFIG or {DEFAULT_CONFIG})",
    )
    parser = argparse.ArgumentParser(
        prog="cocmail", description="Mail service for Code of Conduct committees."
    )
    parser.add_argument("--version", action="version", version=f"cocmail {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = Commands(common)
    for group in (serve, cases, quarantine, rotation, imap, outbox, retention, audit, keys):
        group.register(commands, sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Whatever any command writes (the database, mail, keys) is the user's alone.
    files.private()
    is_deliver = args.func is serve.cmd_deliver
    try:
        config = config_module.load(args.config)
        return int(args.func(config, args))
    except ConfigError as exc:
        print(f"cocmail: config: {exc}", file=sys.stderr)
        # An MTA must keep the message while the operator fixes the config.
        return 75 if is_deliver else 2
    except UsageError as exc:
        print(f"cocmail: {exc}", file=sys.stderr)
        return 2
    except (NotFound, NotMigrated) as exc:
        print(f"cocmail: {exc}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:
        print(f"cocmail: store unavailable: {exc}", file=sys.stderr)
        return 75 if is_deliver else 1
    except Exception as exc:
        if not is_deliver:
            raise
        print(f"cocmail: internal error ({type(exc).__name__}); try again later", file=sys.stderr)
        return 75
