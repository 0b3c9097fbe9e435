"""The blocklist keeps screening a deletion's ids once its regulation is redacted (it
then names digests only), in every process that loaded it before: a delivery run there
may still hold events it read before they went."""

from __future__ import annotations

import msgspec

from millpond.regulations.blocklist import DELETED, Blocklist
from millpond.regulations.service import redact
from tests.support.regulations import deletion


def test_a_finished_deletion_stays_screened_where_it_was_loaded():
    running = deletion(["ada", "anon-ada"], 10)
    finished = msgspec.structs.replace(running, state="finished")
    redact(finished)
    here = Blocklist()
    here.load([running])
    assert here.blocked("ada", None, 10) == DELETED
    here.load([finished])  # another process finished and redacted it
    assert here.blocked("ada", None, 10) == here.blocked(None, "anon-ada", 7) == DELETED
    assert here.blocked("ada", None, 11) is None  # later events are sent as anyone's
    fresh = Blocklist()  # a process started after: no run of it read those events
    fresh.load([finished])
    assert fresh.blocked("ada", None, 10) is None
