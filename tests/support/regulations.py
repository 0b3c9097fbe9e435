"""Regulations as the service stores them, for tests that screen with a Blocklist."""

from __future__ import annotations

import time

from millpond.storage.models import Regulation, RegulationType


def deletion(ids: list[str], upto_seq: int) -> Regulation:
    """A deletion of ``ids`` accepted when the log stood at ``upto_seq`` (running)."""
    return Regulation("reg_test", RegulationType.DELETE, ids, [], ids, "test", time.time(),
                      upto_seq=upto_seq, state="running")
