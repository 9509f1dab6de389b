"""Bearer tokens: read from the environment or a mounted secret file, checked in constant time.

Where they come from, first found wins:

1. ``FRAUD_SERVE_TOKEN``: one token;
2. ``FRAUD_SERVE_TOKEN_FILE``: a file of tokens, one per line (a mounted Kubernetes Secret);
   several lines let a new token be rolled out before the old one is withdrawn;
3. ``[serve] token_file`` in ``conf/``: the same, on one machine (``make serve`` creates it).

None of them means no token, and the service refuses to start: there is no mode without
authentication. A token file is read again every few seconds, so a token is rotated without a
restart: add the new line, move the callers over, remove the old line (Kubernetes updates a
mounted Secret in place). A file that becomes unreadable or invalid keeps the tokens before it.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
import time
from collections.abc import Mapping
from pathlib import Path

from pipelines.core.errors import ConfigError

log = logging.getLogger(__name__)

TOKEN_ENV = "FRAUD_SERVE_TOKEN"
TOKEN_FILE_ENV = "FRAUD_SERVE_TOKEN_FILE"
# Shorter tokens can be guessed; `make serve` writes 43 characters (32 random bytes).
MIN_TOKEN_LENGTH = 16
# How often a token file is read again (seconds).
RECHECK_SECONDS = 5.0


def load_tokens(token_file: str | None, environ: Mapping[str, str] = os.environ) -> tuple[str, str, str | None]:
    """(the tokens joined by newlines, where they came from, the file to read again or None).

    :raises ConfigError: no token is configured, a named file cannot be read, or a token is
        shorter than :data:`MIN_TOKEN_LENGTH` or holds a space.
    """
    path = None
    if environ.get(TOKEN_ENV):
        tokens, source = [environ[TOKEN_ENV].strip()], f"${TOKEN_ENV}"
    else:
        path = environ.get(TOKEN_FILE_ENV) or token_file
        if not path:
            raise ConfigError(
                f"no bearer token is configured: set {TOKEN_ENV} or {TOKEN_FILE_ENV}, or [serve] token_file "
                f"in conf/ (`make serve` creates one); the service does not run without authentication")
        source = f"${TOKEN_FILE_ENV} ({path})" if environ.get(TOKEN_FILE_ENV) else str(path)
        tokens = _read_token_file(path, source)
        # conf/'s file must be its owner's alone (as `make serve` creates it); a mounted secret
        # ($FRAUD_SERVE_TOKEN_FILE) is the platform's to protect (Kubernetes mounts it 0440).
        if not environ.get(TOKEN_FILE_ENV) and Path(path).stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"the bearer token file {path} can be read by others than its owner: chmod 600 it")
    _check_tokens(tokens, source)
    return "\n".join(tokens), source, path


def _read_token_file(path: str, source: str) -> list[str]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the bearer token file {source}: {exc.strerror}") from None
    tokens = [line.strip() for line in text.splitlines() if line.strip()]
    if not tokens:
        raise ConfigError(f"the bearer token file {source} holds no token")
    return tokens


def _check_tokens(tokens: list[str], source: str) -> None:
    for token in tokens:
        if len(token) < MIN_TOKEN_LENGTH or any(char.isspace() for char in token):
            raise ConfigError(
                f"a bearer token from {source} is shorter than {MIN_TOKEN_LENGTH} characters or holds a space")


def create_token_file(path: str | Path) -> bool:
    """Write a new random token to ``path`` unless it exists; True if one was written.

    The file is created readable and writable by its owner only (and its folder, if new, is
    the owner's only), atomically: a token never exists with wider permissions.
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(32) + "\n")
    return True


class TokenChecker:
    """Checks an ``Authorization`` header against the configured tokens, in constant time.

    Every token is compared (no early exit), each with :func:`hmac.compare_digest`: the time
    taken says nothing about how much of a guess was right, or which token it was close to.
    """

    def __init__(self, tokens: str, *, path: str | None = None, recheck_seconds: float = RECHECK_SECONDS) -> None:
        self._tokens = [token.encode() for token in tokens.splitlines() if token]
        if not self._tokens:
            raise ConfigError("no bearer token to check against")
        self._path, self._recheck_seconds = path, recheck_seconds
        self._checked_at = time.monotonic()

    def _reread(self) -> None:
        """Take the token file's tokens if it changed and is valid; keep the old ones otherwise."""
        self._checked_at = time.monotonic()
        try:
            tokens = _read_token_file(self._path, self._path)
            _check_tokens(tokens, self._path)
        except ConfigError as exc:
            log.warning("keeping the bearer tokens read before: %s", exc)
            return
        encoded = [token.encode() for token in tokens]
        if encoded != self._tokens:
            self._tokens = encoded
            log.info("bearer tokens read again from %s: %d token(s)", self._path, len(encoded))

    def allows(self, authorization: str | None) -> bool:
        if self._path and time.monotonic() - self._checked_at >= self._recheck_seconds:
            self._reread()
        if not authorization:
            return False
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        candidate = given.strip().encode("utf-8", "replace")
        allowed = False
        for token in self._tokens:
            allowed |= hmac.compare_digest(candidate, token)
        return allowed
