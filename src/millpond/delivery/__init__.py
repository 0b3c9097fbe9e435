"""The delivery engine: moving a slice of the log through one destination's actions.

Storage-free (it sees only the storage *contracts*) and vendor-agnostic (it sees only the
``DestinationType`` interface), so live delivery, replays and redrives are one machine
(DESIGN.md "One mechanism for live and replay"):

- ``pump``       the :class:`~millpond.delivery.pump.Pump` (reader -> batcher -> sender);
- ``slices``     what a run reads: ``LogTail`` (live), ``RowsSource`` (redrive),
                 ``WindowSlice`` (replay), each row with its ledger key;
- ``evaluate``   per event and action: trigger, age window, mapping, required fields,
                 ``validate_item`` -> send, skip or dead-letter, with why (packed
                 payloads for ``raw_payloads`` types);
- ``batcher``    requests by group key, count, bytes and linger;
- ``sender``     one destination's ``Deliverer``: rate budget, live first, retries,
                 splits, partial answers, ``Retry-After`` cap, retry now, giving up;
- ``share``      how a background run shares the sender with live traffic;
- ``ledger``     lowest-unfinished cursor, outcomes released with it;
- ``outcomes``   the ``Outcome`` enum, ``Decision``, typed dead letters;
- ``runs``       run-state transitions, restart policy per kind, the one checkpoint path;
- ``rate_limit`` token buckets; ``retry`` backoff policy; ``transport`` outbound HTTP;
- ``dead_log``   dead letters as throttled log lines.

The service for configured destinations is :mod:`millpond.connections`; replays are
:mod:`millpond.replays`.
"""
