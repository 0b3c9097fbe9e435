"""An event erased from the stream and sent again inside the stream's duplicate window is
stored again: the stream would answer "duplicate" with the deleted copy's seq (it keeps a
``Nats-Msg-Id`` for the whole window, deleted or not), and the append would acknowledge an
event the log no longer holds."""

from __future__ import annotations

import asyncio

from millpond.storage.nats import open_log
from tests.storage.helpers import ev


def test_an_event_erased_by_another_process_is_stored_again_once(settings):
    writer, eraser = open_log(settings), open_log(settings)
    try:
        [first, kept] = writer.submit([ev("m1"), ev("m2")]).result(10).seqs
        assert first is not None and kept is not None
        eraser.delete([first])  # another process: the writer has no tombstone for it
        again = writer.submit([ev("m1"), ev("m2")]).result(10).seqs
        assert again[0] is not None and again[0] > kept
        assert again[1] is None  # m2 is still there: a duplicate as before
        # A retry of that append finds the new copy: a duplicate, nothing stored twice.
        assert writer.submit([ev("m1")]).result(10).seqs == [None]
        seqs = [e.seq for e in asyncio.run(writer.read(0, 10))]
        assert seqs == [kept, again[0]]
    finally:
        writer.close()
        eraser.close()


def test_an_event_erased_twice_inside_the_window_is_stored_each_time(settings):
    log = open_log(settings)
    try:
        stored = []
        for _ in range(3):
            [seq] = log.submit([ev("m1")]).result(10).seqs
            assert seq is not None and seq not in stored
            stored.append(seq)
            log.delete([seq])
        assert asyncio.run(log.read(0, 10)) == []
        [last] = log.submit([ev("m1")]).result(10).seqs
        assert last is not None and log.submit([ev("m1")]).result(10).seqs == [None]
        assert [e.seq for e in asyncio.run(log.read(0, 10))] == [last]
    finally:
        log.close()
