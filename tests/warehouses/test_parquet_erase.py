"""A deletion over a ``parquet`` destination's files, in a directory and in S3 (moto
server): every file holding the person is written again without them, nothing of them is
left in any object (a byte search), everyone else's events stay exactly once, and a
SIGKILL at either side of the manifest swap, then the deletion run again, finishes it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from millpond.warehouses.batch import StoredEvent
from millpond.warehouses.parquet import ParquetWriter, parse_settings, read_table
from millpond.warehouses.parquet.settings import make_store
from millpond.warehouses.parquet.stores import ObjectStore
from tests.support.locks import WatchedLock
from tests.support.regulations import deletion
from tests.warehouses.events import every_type


class Person:
    """Ada: every 7th event of the first half is hers, by user id or (anonymous) by her
    phone's id only, and each carries a unique value."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.user, self.phone = f"ada-{tag}", f"phone-{tag}"
        self.secret = f"zq{tag}@lovelace.example"

    @property
    def needles(self) -> list[bytes]:
        return [self.user.encode(), self.phone.encode(), self.secret.encode()]

    def events(self, n: int) -> tuple[list[StoredEvent], set[int]]:
        events, mine = every_type(n), set()
        for stored in events:
            if stored.seq % 7 or stored.seq > n // 2:
                continue
            event = stored.event
            if stored.seq % 2:
                event["userId"], event["anonymousId"] = self.user, self.phone
            else:
                event.pop("userId", None)
                event["anonymousId"] = self.phone
            event["context"]["traits"] = {"email": self.secret}
            mine.add(stored.seq)
        return events, mine


def _loaded(location: dict, person: Person, n: int = 3_000) -> tuple[ParquetWriter, set, set]:
    """A location holding ``n`` events in several batches (so several manifests, several
    partitions each); (writer, every seq, Ada's seqs)."""
    events, mine = person.events(n)
    writer = ParquetWriter(parse_settings({**location, "row_group_size": 1000}))
    for start in range(0, n, 700):
        writer.load(events[start:start + 700])
    return writer, {e.seq for e in events}, mine


def _objects(store: ObjectStore) -> dict[str, bytes]:
    """Every object of the location, manifests included, and any temporary file."""
    root = getattr(store, "root", None)
    if isinstance(root, Path):
        return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return {key: store.get(key) or b"" for key in store.list("")}


def _traces(store: ObjectStore, needles: list[bytes]) -> list[str]:
    return [f"{key} holds {n!r}" for key, blob in _objects(store).items()
            for n in needles if n in blob]


def test_a_deletion_rewrites_the_files_that_held_the_person(location):
    ada = Person()
    writer, seqs, mine = _loaded(location, ada)
    before = _objects(writer.store)
    assert _traces(writer.store, ada.needles)  # she is there to begin with

    removed = writer.forget([ada.user, ada.phone])

    assert removed == len(mine)
    table = read_table(writer.store)
    assert Counter(table["seq"].to_pylist()) == Counter(seqs - mine)  # the rest, once
    assert _traces(writer.store, ada.needles) == []
    # only the files that held her were written again; the others are the same objects
    after = _objects(writer.store)
    untouched = [k for k in before if k in after and before[k] == after[k]
                 and "_manifests" not in k]
    assert untouched and any(".r1.parquet" in k for k in after)
    assert writer.forget([ada.user, ada.phone]) == 0  # done: a second pass finds nothing
    # the seqs that went stay settled: the same batches sent again add nothing
    events, _ = ada.events(3_000)
    again = ParquetWriter(parse_settings({**location, "row_group_size": 1000}))
    assert again.load(events[:700]).already_loaded == 700
    assert _traces(writer.store, ada.needles) == []


_CRASH = textwrap.dedent("""
    import json, os, signal, sys
    from millpond.warehouses.parquet import ParquetWriter, parse_settings

    location, point, ids = json.loads(sys.argv[1])
    writer = ParquetWriter(parse_settings(location))
    inner = writer.store

    class Killed:
        def __getattr__(self, name):
            return getattr(inner, name)

        def replace(self, key, data):
            if point == "before-swap" and key.startswith("_manifests/"):
                os.kill(os.getpid(), signal.SIGKILL)
            inner.replace(key, data)

        def delete(self, key):
            if point == "after-swap":
                os.kill(os.getpid(), signal.SIGKILL)
            inner.delete(key)

    writer.store = Killed()
    writer.forget(ids)
    sys.exit(3)  # never reached: the crash point is always met
""")


@pytest.mark.parametrize("point", ["before-swap", "after-swap"])
def test_sigkill_mid_deletion_then_again_finishes_it(location, point):
    ada = Person()
    location = {**location, "row_group_size": 1000}
    writer, seqs, mine = _loaded(location, ada)
    ids = [ada.user, ada.phone]
    crashed = subprocess.run([sys.executable, "-c", _CRASH, json.dumps([location, point, ids])],
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -9, crashed.stderr
    # killed mid-way: a reader sees everyone else's events exactly once, and all of hers
    # (before the swap) or those of the manifests not swapped yet
    seen = Counter(read_table(writer.store)["seq"].to_pylist())
    assert max(seen.values()) == 1 and seqs - mine <= set(seen) <= seqs
    assert (set(seen) == seqs) == (point == "before-swap")
    assert _traces(writer.store, ada.needles)  # what the crash left: old or new copies

    removed = ParquetWriter(parse_settings(location)).forget(ids)  # the job's retry

    assert Counter(read_table(writer.store)["seq"].to_pylist()) == Counter(seqs - mine)
    assert _traces(writer.store, ada.needles) == []
    if point == "before-swap":  # nothing was swapped: the retry removed all of hers
        assert removed == len(mine)
    else:  # the first manifest's files were swapped before the kill
        assert 0 < removed < len(mine)


_KILLED_WRITE = textwrap.dedent("""
    import json, os, signal, sys
    import msgspec
    from millpond.warehouses.batch import StoredEvent
    from millpond.warehouses.parquet import ParquetWriter, parse_settings

    location, events_path = json.loads(sys.argv[1])
    with open(events_path, "rb") as f:
        events = msgspec.json.decode(f.read(), type=list[StoredEvent])

    def killed_link(src, dst, *args, **kwargs):  # the file is written and fsynced
        os.kill(os.getpid(), signal.SIGKILL)

    os.link = killed_link  # a directory: die before the temporary file gets its name
    print("loading", flush=True)
    ParquetWriter(parse_settings(location)).load(events)  # a bucket: killed mid-upload
    sys.exit(3)  # never reached
""")


def test_a_write_killed_midway_leaves_nothing_a_deletion_misses(location, tmp_path,
                                                                monkeypatch):
    """A SIGKILL in the middle of a batch's write: in a directory, after the data file
    was fsynced under its temporary name (``.tmp-*``, never listed); in a bucket, while
    its upload is in flight (S3 then stores the whole object, which no manifest names).
    Either way the person's rows are in the location's bytes; the deletion removes them."""
    from moto.s3.responses import S3Response

    ada = Person()
    events, mine = ada.events(3_000)
    writer = ParquetWriter(parse_settings({**location, "row_group_size": 1000}))
    writer.load(events[700:])  # committed, some of hers included
    committed = set(writer.store.list(""))
    batch = tmp_path / "batch.json"
    batch.write_bytes(msgspec.json.encode(events[:700]))  # the one killed mid-write
    reached, release = threading.Event(), threading.Event()
    put_object = S3Response.put_object

    def stalled_put(self):  # moto serves S3 from a thread of this process
        if self.parse_key_name().endswith(".parquet") and not release.is_set():
            reached.set()
            release.wait(60)  # the client is killed meanwhile; S3 still stores the object
        return put_object(self)

    monkeypatch.setattr(S3Response, "put_object", stalled_put)
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITE,
                              json.dumps([location, str(batch)])],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if "endpoint_url" in location:
            assert reached.wait(60), "the upload never started"
            child.send_signal(signal.SIGKILL)
        assert child.wait(120) == -signal.SIGKILL, child.stderr.read() if child.stderr else ""
    finally:
        release.set()
        if child.poll() is None:
            child.kill()
            child.wait()
    if "endpoint_url" in location:  # the abandoned upload lands after the kill
        while not set(writer.store.list("")) - committed:
            reached.wait(0.05)
    else:
        leftovers = [p for p in Path(location["path"]).rglob(".tmp-*")]
        assert leftovers, "the kill left no temporary file: not mid-write"
    first_half = {e.seq for e in events[:700]}
    assert set(writer.store.list("")) - committed <= {  # no manifest names the new file
        k for k in writer.store.list("") if k.endswith(".parquet")}
    assert _traces(writer.store, [ada.user.encode()])  # her rows, where no reader looks

    writer.forget([ada.user, ada.phone])

    assert _traces(writer.store, ada.needles) == []
    assert Counter(read_table(writer.store)["seq"].to_pylist()) == \
        Counter({e.seq for e in events} - first_half - mine)




class _HeldAtCommit:
    """A store that holds the first manifest write (the commit) until released."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.held, self.release = threading.Event(), threading.Event()

    def put_if_absent(self, key: str, data: bytes) -> bool:
        if key.startswith("_manifests/") and not self.held.is_set():
            self.held.set()
            assert self.release.wait(60)
        return self.inner.put_if_absent(key, data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _accept_deletion(blocklist, ids: list[str], upto_seq: int) -> None:
    """What the regulation service does when it accepts a deletion: screen the ids."""
    blocklist.load([deletion(ids, upto_seq)])


def test_a_batch_committing_after_the_deletion_leaves_the_person_out(location, monkeypatch):
    """A batch the pump let through before the deletion was accepted: held between its
    files and its manifest while the deletion runs, or handed to the writer only after
    the deletion's rewrite. Either way, none of the person's rows lands."""
    from millpond.regulations.blocklist import Blocklist
    from millpond.warehouses.parquet import writer as writer_module

    ada, blocklist = Person(), Blocklist()
    events, mine = ada.events(3_000)
    ids = [ada.user, ada.phone]
    settings = parse_settings({**location, "row_group_size": 1000})
    lock = WatchedLock()
    monkeypatch.setitem(writer_module._LOCKS, make_store(settings).describe(), lock)
    plain = ParquetWriter(settings)
    held = _HeldAtCommit(plain.store)
    loading = ParquetWriter(settings, store=held, screen=blocklist)  # type: ignore[arg-type]
    outcomes: dict[str, object] = {}
    first = threading.Thread(target=lambda: outcomes.update(a=loading.load(events[:700])))
    first.start()
    assert held.held.wait(60), "the batch never reached its commit"
    _accept_deletion(blocklist, ids, 3_000)
    forget = threading.Thread(target=lambda: outcomes.update(f=plain.forget(ids)))
    forget.start()
    while forget.is_alive() and not lock.contended.is_set():  # done, or waiting its turn
        lock.contended.wait(0.05)
    held.release.set()
    first.join(60)
    forget.join(60)
    # the second half, built before the deletion, handed over after it
    late = ParquetWriter(settings, screen=blocklist).load(events[700:])

    assert Counter(read_table(plain.store)["seq"].to_pylist()) == \
        Counter({e.seq for e in events} - mine)
    assert _traces(plain.store, ada.needles) == []
    assert late.screened == {s: "deleted" for s in mine if s > 700} != {}
    assert outcomes["f"] == len([s for s in mine if s <= 700]) > 0  # waited, then removed hers
