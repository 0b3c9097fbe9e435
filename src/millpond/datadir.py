"""The data dir holds secrets: only the user running millpond may read it.

``state.db`` keeps write keys and destination credentials, ``admin_token`` the admin
token, uploads whole customer exports. So the data dir is created ``0700`` and every file
millpond creates in it ``0600``, whatever the umask the server was started with: the
process's umask is set to ``077`` at start (it covers files SQLite creates itself, such as
``-wal`` and ``-shm``, and the import reader process, which inherits it), and a data dir
made by an older version, or by hand, has its modes tightened on the way in.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_UMASK = 0o077


def make_private(data_dir: Path) -> None:
    """Create ``data_dir`` if needed and make it and everything in it private to this user;
    from now on this process creates only private files."""
    os.umask(PRIVATE_UMASK)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _tighten(data_dir)
    for path in data_dir.rglob("*"):
        _tighten(path)


def _tighten(path: Path) -> None:
    """Remove group and other permissions (a symlink's target is left alone)."""
    if path.is_symlink():
        return
    mode = path.stat().st_mode & 0o7777
    if mode & 0o077:
        path.chmod(mode & ~0o077)
