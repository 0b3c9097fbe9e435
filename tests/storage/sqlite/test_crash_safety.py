"""No acknowledged event is lost: SIGKILL or SIGTERM a loaded server, restart, count.

Several client threads send batches and single tracks with unique messageIds. Every
messageId of a request answered 200 is recorded. The server is killed mid-load and
restarted on the same data dir: each acknowledged messageId must be in the log exactly
once. Requests whose outcome the client never learned are then retried (as SDKs do);
afterwards every messageId ever sent is in the log exactly once.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

pytestmark = pytest.mark.slow

THREADS = 6


@dataclass
class Load:
    url: str
    write_key: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: list[str] = field(default_factory=list)
    # (path, body) of requests that got no answer or an error: outcome unknown.
    unknown: list[tuple[str, dict]] = field(default_factory=list)
    refused: Counter = field(default_factory=Counter)

    def worker(self, n: int) -> None:
        with httpx.Client(base_url=self.url, auth=(self.write_key, ""), timeout=10) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                if i % 3 == 0:
                    path = "/v1/track"
                    body = {"userId": f"u{n}", "event": "Tick", "messageId": f"{n}-{i}",
                            "properties": {"i": i}}
                    ids = [body["messageId"]]
                else:
                    path = "/v1/batch"
                    body = {"batch": [{"type": "track", "userId": f"u{n}", "event": "Batch",
                                       "messageId": f"{n}-{i}-{k}", "properties": {"k": k}}
                                      for k in range(25)]}
                    ids = [m["messageId"] for m in body["batch"]]
                try:
                    r = client.post(path, json=body)
                except httpx.HTTPError:
                    with self.lock:
                        self.unknown.append((path, body))
                    time.sleep(0.05)
                    continue
                with self.lock:
                    if r.status_code == 200:
                        self.acked.extend(ids)
                    else:
                        self.refused[r.status_code] += 1
                        self.unknown.append((path, body))

    def run_until(self, interrupt) -> None:
        threads = [threading.Thread(target=self.worker, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        try:
            interrupt()
        finally:
            self.stop.set()
            for t in threads:
                t.join(30)
        assert not any(t.is_alive() for t in threads)


def _wait_for_acks(load: Load, at_least: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(load.acked) < at_least:
        assert time.monotonic() < deadline, f"only {len(load.acked)} events acknowledged"
        time.sleep(0.05)


def _check_log_after_restart(server, source: dict, load: Load) -> None:
    counts = Counter(e["messageId"] for e in server.events(source=source["id"]))
    twice = {m: c for m, c in counts.items() if c > 1}
    assert not twice, f"stored more than once: {list(twice.items())[:5]}"
    lost = set(load.acked) - set(counts)
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {sorted(lost)[:5]}"

    # Retry what the clients never heard back about: stored at most once, whatever
    # happened to the first attempt.
    with httpx.Client(base_url=server.url, auth=(source["write_key"], ""), timeout=30) as c:
        for path, body in load.unknown:
            r = c.post(path, json=body)
            assert r.status_code == 200, r.text
    sent = set(load.acked) | {m["messageId"] for _, b in load.unknown
                              for m in b.get("batch", [b])}
    counts = Counter(e["messageId"] for e in server.events(source=source["id"]))
    assert set(counts) == sent
    assert max(counts.values()) == 1

    # And the server keeps working: new events get the next seqs.
    last = max(e["seq"] for e in server.events())
    r = httpx.post(f"{server.url}/v1/track", auth=(source["write_key"], ""),
                   json={"userId": "after", "event": "Restarted", "messageId": "after-1"})
    assert r.status_code == 200, r.text
    [after] = server.events(user_id="after")
    assert after["seq"] == last + 1


def test_sigkill_mid_load_loses_no_acknowledged_event(server_factory):
    server = server_factory("crash")
    source = server.create_source("load")
    load = Load(server.url, source["write_key"])

    def kill_mid_load() -> None:
        time.sleep(1.5)
        _wait_for_acks(load, 200)
        server.kill()
        time.sleep(0.3)  # clients see the connection errors while the server is down

    load.run_until(kill_mid_load)
    assert server.proc.returncode == -9
    assert load.unknown, "the kill should have caught requests in flight"
    server.start()
    _check_log_after_restart(server, source, load)


def test_sigterm_mid_load_keeps_every_acknowledged_event(server_factory):
    server = server_factory("graceful")
    source = server.create_source("load")
    load = Load(server.url, source["write_key"])
    acked_at_signal: list[int] = []

    def stop_mid_load() -> None:
        time.sleep(1.5)
        _wait_for_acks(load, 200)
        acked_at_signal.append(len(load.acked))
        server.stop()  # SIGTERM, waits for the process to exit

    load.run_until(stop_mid_load)
    # uvicorn re-raises the signal after its graceful shutdown; -9 would mean that
    # ServerProcess.stop() gave up waiting and killed it.
    assert server.proc.returncode in (0, -signal.SIGTERM), server.proc.returncode
    assert acked_at_signal[0] > 0
    server.start()
    _check_log_after_restart(server, source, load)

