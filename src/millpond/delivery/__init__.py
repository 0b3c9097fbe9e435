"""Delivery: moving log events to destinations (live now; redrives; replays next).

One machine for every slice of the log (DESIGN.md "One mechanism for live and replay"):

- ``pump``       the :class:`~millpond.delivery.pump.Pump` (reader -> batcher -> sender) and
                 its event sources (``LogTail`` for live, ``RowsSource`` for redrives);
- ``evaluate``   per event and action: trigger, age window, mapping, required fields,
                 ``validate_item`` -> send, skip (reason) or dead-letter (reason);
- ``batcher``    requests by group key, count, bytes and linger;
- ``deliver``    one destination's sender: rate budget, one request in flight (live
                 first), retries, splits, partial answers;
- ``rate_limit`` token buckets; ``retry`` backoff policy; ``transport`` outbound HTTP;
- ``ledger``     lowest-unfinished cursor, outcomes released with it;
- ``present``    the public shapes of destinations and dead letters (the records,
                 runs with their cursors and counters, and dead letters are kept by
                 ``millpond.storage``);
- ``config``     validation of a destination before it is saved;
- ``live`` / ``manager``  running destinations and the API's front door;
- ``tester`` / ``lookup``  the event tester; ``stats`` / ``metrics``  visibility.
"""
