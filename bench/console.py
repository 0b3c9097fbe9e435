"""Console benchmark: ``.venv/bin/python bench/console.py [--events 1000000] [--runs 5]``.

In one run, against a real ``millpond serve`` on a data dir holding ``--events`` events
(80% track, 10% identify, 5% page, 5% group, received over the last hour so the
overview's chart has data), signed in through the sign-in form like a browser:
- every page: the median and the worst of ``--runs`` GETs each (after one warm-up), and
  the slowest page against the 200 ms budget;
- the Debugger under load: its live stream open while a sender posts ``--rate`` events/s
  for ``--seconds`` seconds; how far behind the log's tail the stream is when the load
  stops, how many events it said it skipped to keep up, and the server's RSS growth with
  the stream open against the same load without it (the tail must not grow memory).
The data dir also holds a webhook destination whose live run delivered the whole log
(its funnel's outcome rows: received, sent, skipped, dead-lettered, one row per 1,000
events, as live checkpoints write them) and which now retries its last 200 events against
a closed port (the "retrying now" page), plus a segment and a regulation.
``--data DIR`` keeps the data dir: the first run builds it (and lets the server build the
profiles once), later runs with the same DIR reuse it; ``--prepare-only`` stops after that.
``--quick`` (or ``MILLPOND_BENCH_QUICK=1``): 20,000 events, 3 s of load, one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TOKEN, add_quick_option, free_port, realistic_event  # noqa: E402

from millpond.collector.validation import normalize  # noqa: E402
from millpond.connections import config as destination_config  # noqa: E402
from millpond.connections.runner import new_run_id  # noqa: E402
from millpond.delivery.outcomes import RECEIVED, Outcome  # noqa: E402
from millpond.sources.service import SourceService  # noqa: E402
from millpond.storage import StorageConfig, open_storage  # noqa: E402
from millpond.storage.models import Destination, Run, RunKind, RunState  # noqa: E402

BUDGET_MS = 200.0
#: The outcome rows of the bench destination: events per live checkpoint.
PER_CHECKPOINT = 1000
#: Events at the log's end the bench destination is still retrying.
RETRYING = 200
INFO = "bench-info.json"


def prepare(data: Path, n: int) -> dict:
    """A data dir with a source and ``n`` events received over the last hour.

    Without the archive tier (``archive_range`` 0, here and in the server): the pages are
    timed on the hot log (with 1,000,000 events and the default range, the whole log
    would move to Parquet at start)."""
    data.mkdir(parents=True, exist_ok=True)
    storage = open_storage(StorageConfig(data_dir=str(data), synchronous="NORMAL",
                                         archive_range=0))
    source = SourceService(storage.sources).create("bench", "pipelines")
    log = storage.log
    kinds = ["track"] * 16 + ["identify"] * 2 + ["page", "group"]
    now = int(time.time() * 1000)
    batch, person, last_email = [], None, None
    for i in range(n):
        msg = realistic_event(i, f"bench-{i}")
        kind = kinds[i % len(kinds)]
        if kind != "track":
            msg.pop("event")
            msg["type"] = kind
            msg.update({"identify": {"traits": {"email": f"u{i}@example.com"}},
                        "page": {"name": "Pricing"}, "group": {"groupId": "acme"}}[kind])
        if i % 50 == 1 or i == 17:  # one heavy person: 2% of the log (20,000 of 1M)
            msg["userId"] = "heavy-user"
        elif kind == "identify" and person is None:
            person = msg["userId"]
        if kind == "identify":
            last_email = msg["traits"]["email"]
        received = now - 3_600_000 + (3_600_000 * i) // n
        batch.append(normalize(msg, source_id=source.id, received_ms=received))
        if len(batch) == 5000:
            log.submit(batch).result()
            batch = []
    if batch:
        log.submit(batch).result()
    dest = delivered_destination(storage, n)
    storage.close()
    return {"source": source.id, "write_key": source.write_key, "person": person,
            "last_email": last_email, "destination": dest}


def delivered_destination(storage, n: int) -> str:
    """A webhook destination whose live run went through the whole log but its last
    :data:`RETRYING` events (written through ``RunStore.checkpoint`` as its pump does:
    counters and outcome rows; 90% sent, 8% skipped, 2% dead-lettered), and whose URL is a
    closed port, so the server's pump retries those last events."""
    cls = destination_config.destination_type("webhook")
    actions = destination_config.actions(None, cls)
    action = actions[0]["name"]
    now = time.time()
    done = max(0, n - RETRYING)
    dest = storage.destinations.create(Destination(
        "dst_bench", "bench-hook", "webhook", {"url": "http://127.0.0.1:9/hook"},
        destination_config.rate_limit(None, cls), actions, True, now, done, now))
    run = storage.runs.create(Run(new_run_id(RunKind.LIVE), dest.id, RunKind.LIVE,
                                  RunState.RUNNING, cursor=done))
    sent_key, skip_key = (action, Outcome.SENT.value, ""), ("", Outcome.SKIPPED.value,
                                                            "no action matched")
    dead_key = (action, Outcome.DEAD_LETTERED.value, "HTTP 400")
    for start in range(1, done + 1, PER_CHECKPOINT):
        seqs = list(range(start, min(done, start + PER_CHECKPOINT - 1) + 1))
        outcomes = {RECEIVED: seqs, sent_key: [], skip_key: [], dead_key: []}
        for s in seqs:
            outcomes[dead_key if s % 50 == 0 else skip_key if s % 50 < 5 else sent_key] \
                .append(s)
        storage.runs.checkpoint(run.id, counts={k: len(v) for k, v in outcomes.items()
                                                if k != RECEIVED},
                                outcomes=outcomes, durable=False)
    return dest.id


def profiles_caught_up(admin: httpx.Client, info: dict, timeout: float = 900) -> float:
    """Wait until the server's profile follower has applied the whole log (the log's last
    identify is found by its email), and return how long that took: pages are timed in
    the steady state, not while the follower works through a freshly written log."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        found = admin.get("/api/people", params={"query": info["last_email"]}).json()
        if found["people"]:
            return time.perf_counter() - started
        time.sleep(1)
    raise SystemExit(f"profiles not caught up after {timeout:.0f} s")


class Server:
    def __init__(self, data: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MILLPOND_ADMIN_TOKEN": TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "millpond.cli.main", "serve", "--port", str(self.port),
             "--data", str(data), "--archive-range", "0"], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def sign_in(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    page = client.get("/console/sign-in").text
    token = re.search(r'name="signin_token" value="([^"]+)"', page).group(1)
    r = client.post("/console/sign-in", data={"signin_token": token, "token": TOKEN,
                                              "next": "/console/"})
    assert r.status_code == 303, r.text
    return client


def later_pages(admin: httpx.Client, info: dict) -> dict[str, str]:
    """A segment and a regulation (made once per data dir), and their pages."""
    segments = admin.get("/api/segments").json()["segments"]
    segment = segments[0]["id"] if segments else admin.post("/api/segments", json={
        "key": "bench-buyers", "name": "Bench buyers",
        "definition": {"event": "Order Completed", "at_least": 2, "within": "30d"}},
    ).raise_for_status().json()["id"]
    regulations = admin.get("/api/regulations").json()["regulations"]
    regulation = regulations[0]["id"] if regulations else admin.post(
        "/api/regulations", json={"type": "suppress", "user_ids": [info["person"]]},
    ).raise_for_status().json()["id"]
    dest = info["destination"]
    action = admin.get(f"/api/destinations/{dest}").json()["actions"][0]["name"]
    outcomes = f"/console/destinations/{dest}/outcomes?run=live"
    return {
        "segments": "/console/segments", "segment": f"/console/segments/{segment}",
        "regulations": "/console/regulations",
        "regulation": f"/console/regulations/{regulation}",
        "outcomes: received": f"{outcomes}&step=received",
        "outcomes: matched": f"{outcomes}&step=matched&action={action}",
        "outcomes: sent": f"{outcomes}&step=sent&action={action}",
        "outcomes: skipped (reason)": f"{outcomes}&step=skipped&reason=no+action+matched",
        "outcomes: dead-lettered": f"{outcomes}&step=dead_lettered&action={action}",
        "retrying now": f"/console/destinations/{dest}/retrying?run=live",
        "people search (user id prefix)": "/console/people?q=user-00",
    }


def pages(admin: httpx.Client, info: dict) -> dict[str, str]:
    dest = info["destination"]
    source = info["source"]
    person = admin.get(f"/api/people/{info['person']}").json()["id"]
    heavy = admin.get("/api/people/heavy-user").json()["id"]
    return {
        "overview": "/console/", "sources": "/console/sources",
        "source": f"/console/sources/{source}", "debugger": "/console/debugger",
        "debugger (filtered)": "/console/debugger?filter=" + httpx.URL(
            "", params={"f": 'type = "page"'}).params["f"],
        "event": "/console/debugger/events/12345",
        "destinations": "/console/destinations",
        "destination": f"/console/destinations/{dest}",
        "new destination": "/console/destinations/new?type=mixpanel",
        "tester": f"/console/destinations/{dest}/tester?seq=12345",
        "replays": "/console/replays", "replay form": f"/console/replays/new?destination={dest}",
        "imports": "/console/imports", "people (everyone)": "/console/people",
        "people search (email)": "/console/people?q=u5%40example",
        "person (activity log)": f"/console/people/{person}",
        "heavy person (activity log)": f"/console/people/{heavy}",
        **later_pages(admin, info),
    }


def time_pages(client: httpx.Client, paths: dict[str, str], runs: int) -> dict[str, dict]:
    out = {}
    for name, path in paths.items():
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:500])
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            client.get(path).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
        out[name] = {"median_ms": round(statistics.median(times), 1),
                     "max_ms": round(max(times), 1)}
    return out


def send_load(server: Server, key: str, rate: int, seconds: float, offset: int) -> int:
    """Post ``rate`` events/s for ``seconds`` in batches of 1/20 s; how many were sent."""
    per_batch = max(1, rate // 20)
    sent, started = 0, time.monotonic()
    with httpx.Client(timeout=30) as sender:
        while time.monotonic() - started < seconds:
            batch = [realistic_event(offset + sent + i) for i in range(per_batch)]
            r = sender.post(f"{server.url}/v1/batch", auth=(key, ""), json={"batch": batch})
            r.raise_for_status()
            sent += per_batch
            time.sleep(max(0.0, started + sent / rate - time.monotonic()))
    return sent


def debugger_under_load(server: Server, client: httpx.Client, key: str, rate: int,
                        seconds: float) -> dict:
    """Send ``rate`` events/s twice: first with no console open (the server's own memory
    growth while ingesting), then with the Debugger's stream open; and see whether the
    stream kept up with the tail."""
    rss_start = server.rss()
    send_load(server, key, rate, seconds, 10_000_000)
    rss_plain = server.rss()
    last = httpx.get(server.url + "/healthz").json()["last_seq"]
    seen = {"seq": last, "skipped": 0, "messages": 0}
    stop = threading.Event()

    def read() -> None:
        with client.stream("GET", f"/console/debugger/stream?after={last}&rejections_after=0",
                           timeout=None) as r:
            event = None
            for line in r.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("event: "):
                    event = line[7:]
                    seen["messages"] += event == "events"
                elif line.startswith("data: ") and event == "position":
                    pos = json.loads(line[6:])
                    seen["seq"] = pos["seq"]
                    seen["skipped"] += pos["skipped"]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)
    started = time.monotonic()
    sent = send_load(server, key, rate, seconds, 20_000_000)
    achieved = sent / (time.monotonic() - started)
    tail = httpx.get(server.url + "/healthz").json()["last_seq"]
    time.sleep(1.0)  # one second to catch up with the last batch
    behind = tail - seen["seq"]
    rss_stream = server.rss()
    stop.set()
    return {"rate_sent": round(achieved), "events_sent": sent,
            "behind_after_1s": max(0, behind), "skipped": seen["skipped"],
            "rendered_messages": seen["messages"],
            "rss_growth_mb_without": round((rss_plain - rss_start) / 2**20, 1),
            "rss_growth_mb_with": round((rss_stream - rss_plain) / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--data", type=Path, default=None,
                        help="keep the data dir here and reuse it on later runs")
    parser.add_argument("--prepare-only", action="store_true",
                        help="build the data dir (--data) and the profiles, then stop")
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.events, args.runs, args.seconds, args.rate = 20_000, 1, 3.0, 1000
    with tempfile.TemporaryDirectory(prefix="millpond-console-bench-") as tmp:
        data = args.data or Path(tmp) / "data"
        if (data / INFO).exists():
            info = json.loads((data / INFO).read_text())
            print(f"reusing the log of {info['events']:,} events in {data}")
        else:
            started = time.perf_counter()
            info = {**prepare(data, args.events), "events": args.events}
            print(f"log of {args.events:,} events written in "
                  f"{time.perf_counter() - started:.1f} s")
        server = Server(data)
        try:
            client = sign_in(server.url)
            with httpx.Client(base_url=server.url, timeout=60,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as admin:
                waited = profiles_caught_up(admin, info)
                print(f"profiles of the log built {waited:.1f} s after the server started")
                (data / INFO).write_text(json.dumps(info))
                if args.prepare_only:
                    client.close()
                    return
                paths = pages(admin, info)
            results = time_pages(client, paths, args.runs)
            width = max(map(len, results))
            for name, r in results.items():
                flag = "" if r["median_ms"] < BUDGET_MS else "  OVER BUDGET"
                print(f"  {name:<{width}}  median {r['median_ms']:7.1f} ms  "
                      f"max {r['max_ms']:7.1f} ms{flag}")
            slowest = max(results, key=lambda k: results[k]["median_ms"])
            print(f"slowest page: {slowest}, median {results[slowest]['median_ms']} ms "
                  f"(budget {BUDGET_MS:.0f} ms)")
            load = debugger_under_load(server, client, info["write_key"], args.rate,
                                       args.seconds)
            print(f"debugger under {load['rate_sent']:,} events/s for {args.seconds:g} s: "
                  f"{load['behind_after_1s']:,} events behind the tail 1 s after the load, "
                  f"{load['skipped']:,} skipped to keep up, {load['rendered_messages']:,} "
                  f"messages rendered; server RSS grew {load['rss_growth_mb_with']} MB "
                  f"with the Debugger open, {load['rss_growth_mb_without']} MB under the "
                  "same load without it")
            client.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
