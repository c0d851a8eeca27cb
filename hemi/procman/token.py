"""The admin token: a random secret in ``<vars>/<program>.token`` (mode 0600), created by the
first leader that needs it and kept across restarts so clients and scripts keep working. Only
someone who can read that file (the account gorox runs as, or root) can send commands."""

from __future__ import annotations

import hmac
import os
import secrets

from ..core.stage import Dirs


def token_path(dirs: Dirs, program: str) -> str:
    return os.path.join(dirs.vars, f"{program}.token")


def ensure_token(path: str) -> str:
    """The token in ``path``; a new one if the file is missing or empty. Mode 0600 either way."""
    try:
        token = read_token(path)
    except OSError:
        token = ""
    if token:
        os.chmod(path, 0o600)
        return token
    token = secrets.token_urlsafe(32)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def read_token(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def token_matches(given: str, token: str) -> bool:
    return bool(token) and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def derive(token: str, purpose: str) -> str:
    """A value derived from the token for one purpose (the webui's session cookie, its form
    key), so neither reveals the token itself."""
    return hmac.new(token.encode("utf-8"), purpose.encode("utf-8"), "sha256").hexdigest()
