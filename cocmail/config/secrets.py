"""Secrets the config points at but never holds: a password in a file or in an
environment variable, an OAuth2 access token in a file or printed by a command."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from cocmail.errors import ConfigError


def read_secret(prefix: str, file: Path | None, env: str | None) -> str | None:
    """The secret from ``$env`` or from ``file`` (stripped), or None when neither is
    set; ``ConfigError`` naming ``<prefix>.password_env``/``_file`` when it cannot be
    read. Read when needed, so a rotated secret is picked up at the next login."""
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"{prefix}.password_env", f"${env} is not set")
        return value
    if file is not None:
        try:
            return file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{prefix}.password_file", f"{file}: {exc.strerror}") from None
    return None


def oauth2_token(prefix: str, file: Path | None, command: str | None,
                 timeout: float = 30) -> str:
    """An OAuth2 access token: the contents of ``file``, or what ``command`` prints
    (run without a shell; its first line). Tokens expire, so this is called at
    every login."""
    if file is not None:
        try:
            token = file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{prefix}.oauth2_token_file", f"{file}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"{prefix}.oauth2_token_file", f"{file} is empty")
        return token
    if command is None:
        raise ConfigError(f"{prefix}.oauth2_token_file", "give oauth2_token_file or "
                          "oauth2_token_command")
    try:
        done = subprocess.run(shlex.split(command), capture_output=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{prefix}.oauth2_token_command", f"cannot run: {exc}") from None
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        raise ConfigError(f"{prefix}.oauth2_token_command",
                          f"exited {done.returncode} without a token")
    return lines[0].strip()
