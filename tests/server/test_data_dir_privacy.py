"""The data dir holds secrets: 0700, every file in it 0600, whatever the umask (#13 item 12).
Uploaded exports are removed once imported; their error report stays."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.support.delivery import upload

pytestmark = pytest.mark.slow


@pytest.fixture
def loose_umask():
    """Start servers the way a default shell would (umask 022): files 0644, dirs 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(data_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(data_dir)): stat.S_IMODE(p.stat().st_mode)
            for p in data_dir.rglob("*")}


def test_everything_in_the_data_dir_is_private(server_factory, loose_umask, tmp_path) -> None:
    data = tmp_path / "old"
    data.mkdir(mode=0o755)
    (data / "notes.txt").write_text("made by hand")
    (data / "notes.txt").chmod(0o644)
    srv = server_factory("old")
    assert srv.data_dir == data
    srv.create_source("crm", kind="import")
    done = upload(srv, "id,email\nu1,a@example.com\n,nobody@example.com\n", source="crm",
                  file_name="people.csv").json()
    assert done["state"] == "completed", done
    srv.stop()  # WAL and SHM files exist while it runs; check what is left and what ran
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    modes = _modes(data)
    assert {"state.db", "log.db", "lock", "notes.txt"} <= set(modes), modes
    loose = {name: oct(mode) for name, mode in modes.items()
             if mode & 0o077}
    assert loose == {}, loose
    uploads = [p for p in data.rglob("*") if p.is_file() and "imports" in p.parts]
    names = sorted(p.name for p in uploads)
    assert "people.csv" not in names, names    # the export itself is gone...
    assert "errors.csv" in names, names        # ...its error report is kept


def test_files_created_while_running_are_private(server_factory, loose_umask) -> None:
    srv = server_factory("running")
    srv.create_source("web")
    modes = _modes(srv.data_dir)
    wal = [name for name in modes if name.endswith("-wal")]
    assert wal, modes
    assert {name: oct(m) for name, m in modes.items() if m & 0o077} == {}
