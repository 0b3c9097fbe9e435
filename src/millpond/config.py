"""Where a server keeps its data, and the admin token that guards the admin API.

The settings themselves (data dir, a configured token) are :mod:`millpond.app.config`'s;
this module only knows how the token is kept in the data dir."""

from __future__ import annotations

import secrets
from pathlib import Path

DEFAULT_DATA_DIR = ".millpond"
TOKEN_FILE = "admin_token"


def admin_token(data_dir: Path, configured: str | None = None) -> tuple[str, bool]:
    """The admin token and whether it was just generated (so the caller prints it once).

    The configured one (``admin_token``, e.g. ``MILLPOND_ADMIN_TOKEN``) wins; else the
    token stored in the data dir; else a new one, stored with owner-only permissions.
    """
    if configured:
        return configured, False
    path = data_dir / TOKEN_FILE
    if path.exists():
        return path.read_text().strip(), False
    token = "mpa_" + secrets.token_urlsafe(32)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token, True
