"""``ArchiveReader.scan_file``: a file's events a row group at a time, each decoded once,
and, when the file is rewritten mid-scan (a deletion's next generation), the rest from its
replacement without giving any event twice."""

from __future__ import annotations

import io
import random

from millpond.storage.archive import reader
from millpond.storage.archive.place import LocalPlace


def _rows(seqs, rng):
    return sorted(((seq, rng.randrange(0, 1000), 0, "src", "track", None, None, None,
                    f"m{seq}", b"{}") for seq in seqs), key=lambda r: (r[1], r[0]))


class _Vanishing(reader.ArchiveReader):
    """Files read through objects that fail once their file is gone, as an object store's
    do (a local file stays readable through an open handle after it is removed)."""

    def __init__(self, place: LocalPlace) -> None:
        super().__init__(place)
        self.gone: set[str] = set()
        self.refreshed = 0

    def path(self, f):
        name, data, gone = f.name, self.place.open(f.name).read_bytes(), self.gone

        class Handle(io.BytesIO):
            def read(self, *args):
                if name in gone:
                    raise FileNotFoundError(name)
                return super().read(*args)

        return Handle(data)

    def refresh(self) -> None:
        self.refreshed += 1


def test_a_file_rewritten_mid_scan_goes_on_from_its_replacement_once_each(tmp_path):
    rng = random.Random(5)
    place = LocalPlace(tmp_path)
    rows = _rows(range(1, 41), rng)
    old = place.write("log-1.parquet", [rows[i:i + 5] for i in range(0, 40, 5)], 1, 40)
    archive = _Vanishing(place)
    archive._listed([old])
    scan = archive.scan_file(old, 36)
    given = [e.seq for _ in range(3) for e in next(scan)]  # three row groups
    deleted = {s for s in range(1, 41) if s % 6 == 0}
    kept = [r for r in rows if r[0] not in deleted]
    new = place.write("log-1.r1.parquet", [kept[i:i + 4] for i in range(0, len(kept), 4)],
                      1, 40)
    archive._listed([new])
    archive.gone.add(old.name)
    rest = [e.seq for part in scan for e in part]
    assert archive.refreshed == 1
    assert len(given + rest) == len(set(given + rest))  # none twice
    assert set(given + rest) == {s for s in range(1, 37) if s not in deleted or s in given}


def test_a_scan_decodes_each_row_group_once_and_stops_at_upto(tmp_path, monkeypatch):
    rng = random.Random(6)
    place = LocalPlace(tmp_path)
    rows = _rows(range(1, 31), rng)
    f = place.write("log-1.parquet", [rows[i:i + 5] for i in range(0, 30, 5)], 1, 30)
    archive = reader.ArchiveReader(place)
    archive._listed([f])
    decoded = []
    real = reader.pq.ParquetFile.read_row_group

    def counted(self, g, *args, **kwargs):
        decoded.append(g)
        return real(self, g, *args, **kwargs)

    monkeypatch.setattr(reader.pq.ParquetFile, "read_row_group", counted)
    parts = list(archive.scan_file(f, 20))
    assert sorted(decoded) == list(range(6))
    assert sorted(e.seq for part in parts for e in part) == list(range(1, 21))
    assert [e.seq for part in parts for e in part] == [r[0] for r in rows if r[0] <= 20]
