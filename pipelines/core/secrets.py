"""The secret that card numbers are pseudonymised with (``[profile]`` of kind ``payments``).

Where it comes from, first found wins:

1. ``$FRAUD_CARD_KEY_SECRET``: the secret itself;
2. ``[profile] card_key_secret_file``: a file holding it (one line), readable by its owner only.

Neither is an error: a card key is never computed with a default secret, because anyone could
then recompute it from a card number. The secret is never logged or put in a message; the
messages name the variable and the file only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from pipelines.core.errors import ConfigError

CARD_KEY_SECRET_ENV = "FRAUD_CARD_KEY_SECRET"
# Shorter secrets can be guessed; `make card-key` writes 64 hex characters (32 random bytes).
MIN_SECRET_LENGTH = 16
HOW_TO_SET = (f"set {CARD_KEY_SECRET_ENV}, or write one line to a file readable by its owner only and name it "
              f"in [profile] card_key_secret_file (`make card-key` creates .secrets/card-key for conf/payments.toml)")


def card_key_secret(secret_file: str | None, environ: Mapping[str, str] = os.environ) -> bytes:
    """The card key's secret, as bytes (UTF-8 of the variable or of the file's first line).

    :param secret_file: ``[profile] card_key_secret_file`` (None: only the variable).
    :raises ConfigError: no secret is set; the file is missing, unreadable, or can be read or
        written by its group or others (naming the file and its mode); the secret is shorter
        than :data:`MIN_SECRET_LENGTH`.
    """
    if environ.get(CARD_KEY_SECRET_ENV):
        secret, source = environ[CARD_KEY_SECRET_ENV].strip(), f"${CARD_KEY_SECRET_ENV}"
    elif secret_file:
        secret, source = _read_secret_file(Path(secret_file)), str(secret_file)
    else:
        raise ConfigError(f"no secret to pseudonymise card numbers with: {HOW_TO_SET}")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"the card key secret in {source} is shorter than {MIN_SECRET_LENGTH} characters: "
                          f"use a random one (`python3 -c 'import secrets; print(secrets.token_hex(32))'`)")
    return secret.encode("utf-8")


def _read_secret_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"the card key secret file {path} does not exist: {HOW_TO_SET}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the card key secret file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the card key secret file {path} has mode {stat.S_IMODE(mode):04o}: its group or others "
                          f"can reach it; it must be readable by its owner only (chmod 600 {path})")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the card key secret file {path}: {type(exc).__name__}") from None
    return lines[0].strip() if lines else ""
