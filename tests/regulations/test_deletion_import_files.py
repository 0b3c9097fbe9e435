"""A deletion reaches the files imports keep in the data dir: the upload of a cancelled
import (kept to resume it) and its error report, and the upload of a failed one. After
it, no byte of the person is left in any file, and resuming the cancelled import stores
every other row exactly once and nothing of the person (a ``delete`` does not suppress:
the rows are gone from the file)."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

from tests.support.delivery import upload
from tests.support.wait import wait_until

ROWS = 100_000


def _files_with(data_dir: Path, needles: list[bytes]) -> list[str]:
    return [f"{p.relative_to(data_dir)} holds {n!r}" for p in sorted(data_dir.rglob("*"))
            if p.is_file() for n in needles if n in p.read_bytes()]


def _people_csv(ada: str, secret: str, bad_time: str) -> tuple[str, int]:
    """A people file: everyone else's rows, and Ada's near the start (one with a time the
    import rejects, quoted in the error report) and as the very last row; (text, Ada's
    rows)."""
    lines = ["id,email,plan,ts"]
    lines += [f"u{i},u{i}@x.io,p{i % 7},2024-01-02T00:00:00Z" for i in range(ROWS)]
    lines.insert(6, f"{ada},{secret},pro,2024-01-03T00:00:00Z")
    lines.insert(7, f"{ada},{secret},pro,{bad_time}")
    lines.append(f'{ada},"{secret}",free,2024-01-04T00:00:00Z')
    return "\n".join(lines) + "\n", 3


def test_kept_uploads_and_error_reports_lose_the_person(server):
    tag = uuid.uuid4().hex[:10]
    ada, secret, bad_time = f"ada-{tag}", f"zq{tag}@lovelace.example", f"never-{tag}"
    needles = [ada.encode(), secret.encode(), bad_time.encode()]
    source = server.create_source("crm", kind="import")
    body, mine = _people_csv(ada, secret, bad_time)
    job = upload(server, body, source="crm", file_name="people.csv", wait="false",
                 timestamp_column="ts").json()
    # a second file fails: a byte that is not UTF-8 past the part the upload checks
    latin = ("id,email\n" + "".join(f"v{i},v{i}@x.io\n" for i in range(2_000))
             + f"{ada},caf\xe9 {secret}\n").encode("latin-1")
    with server.admin as admin:
        stopped = admin.post(f"/api/imports/{job['id']}/cancel").json()
        assert stopped["state"] == "cancelled", stopped
        part = stopped["summary"]
        assert part["last_row"] < ROWS + mine  # her last row is not imported yet
        failed = admin.post("/api/imports", params={"source": "crm", "wait": "true",
                                                    "file_name": "latin.csv"},
                            content=latin, headers={"Content-Type": "text/csv"}).json()
        assert failed["state"] == "failed" and "UTF-8" in failed["error"], failed
        kept = _files_with(server.data_dir / "imports", needles)
        assert any("people.csv" in k for k in kept) and any("latin.csv" in k for k in kept)

        reg = admin.post("/api/regulations", json={"type": "delete", "user_ids": [ada]}).json()
        wait_until(lambda: admin.get(f"/api/regulations/{reg['id']}").json()["state"]
                   == "finished", timeout=60, what="the deletion finished")
        done = admin.get(f"/api/regulations/{reg['id']}").json()
        step = done["stores"]["import_files"]
        # her rows of both uploads not yet imported, and the report's line of her
        # rejected row if the checkpoint had passed it
        assert step["state"] == "done" and step["removed"] >= 2, step
        assert _files_with(server.data_dir, needles) == []

        resumed = admin.post(f"/api/imports/{job['id']}/resume")
        assert resumed.status_code == 202, resumed.text
        wait_until(lambda: admin.get(f"/api/imports/{job['id']}").json()["state"]
                   != "running", timeout=120, what="the resumed import")
        end = admin.get(f"/api/imports/{job['id']}").json()
        assert end["state"] == "completed", end
        assert end["summary"]["resumed_after_row"] == part["last_row"]  # not from row 1
        assert end["summary"]["duplicates"] == 0
        assert admin.get(f"/api/people/{ada}").status_code == 404
    # everyone else's rows exactly once, none of hers
    stored = Counter(e.get("userId") for e in server.events(source=source["id"]))
    assert stored == Counter(f"u{i}" for i in range(ROWS))
    assert _files_with(server.data_dir, needles) == []
