"""Prometheus metrics for every layer, in one registry served at ``/metrics``.

Counters are incremented once per request or commit with aggregated counts, never per
event, so observing the hot path stays cheap.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_ACCEPTED = Counter("millpond_events_accepted_total", "Events stored in the log",
                          ["source", "type"], registry=REGISTRY)
EVENTS_DUPLICATE = Counter("millpond_events_duplicate_total",
                           "Events acknowledged but not stored again (same messageId)",
                           ["source"], registry=REGISTRY)
EVENTS_SUPPRESSED = Counter("millpond_events_suppressed_total",
                            "Events acknowledged but not stored: their person is suppressed "
                            "(a regulation)", ["source"], registry=REGISTRY)
EVENTS_REJECTED = Counter("millpond_events_rejected_total", "Messages refused by the collector",
                          ["source", "type", "reason"], registry=REGISTRY)
REQUESTS_REFUSED = Counter("millpond_requests_refused_total",
                           "Whole requests refused (auth, body, size, back-pressure)",
                           ["reason"], registry=REGISTRY)
COMMIT_SECONDS = Histogram("millpond_commit_seconds", "Log group-commit latency",
                           buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5),
                           registry=REGISTRY)
COMMIT_EVENTS = Histogram("millpond_commit_events", "Events per log group commit",
                          buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000),
                          registry=REGISTRY)
REQUEST_BATCH_EVENTS = Histogram("millpond_request_batch_events", "Messages per collector request",
                                 buckets=(1, 2, 5, 10, 50, 100, 500, 1000, 2500, 10000),
                                 registry=REGISTRY)
LOG_LAST_SEQ = Gauge("millpond_log_last_seq", "Highest committed seq", registry=REGISTRY)
SDK_USAGE_REPORTS = Counter("millpond_sdk_usage_reports_total",
                            "analytics.js usage-counter posts to /v1/m (acknowledged, not stored)",
                            registry=REGISTRY)
SDK_USAGE_SERIES = Counter("millpond_sdk_usage_series_total",
                           "Counter series in analytics.js usage posts", registry=REGISTRY)
CONNECTIONS_CLOSED = Counter("millpond_http_connections_closed_total",
                             "Connections closed for holding the server without a request",
                             ["reason"], registry=REGISTRY)
INTERNAL_ERRORS = Counter("millpond_internal_errors_total",
                          "Requests that failed on an unexpected error (answered with a JSON 500)",
                          ["component"], registry=REGISTRY)


def record_accepted(source_id: str, types: Tally) -> None:
    for kind, n in types.items():
        EVENTS_ACCEPTED.labels(source_id, kind).inc(n)


def record_rejected(source_id: str, reasons: Tally) -> None:
    for (kind, code), n in reasons.items():
        EVENTS_REJECTED.labels(source_id, kind or "unknown", code).inc(n)


def record_commit(events: int, seconds: float) -> None:
    COMMIT_SECONDS.observe(seconds)
    COMMIT_EVENTS.observe(events)
