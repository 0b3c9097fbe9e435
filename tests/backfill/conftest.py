"""Fixtures for backfill tests: the sink and fake collector of :mod:`.fakes`, files, runs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from millpond.backfill import ImportOptions, ImportSummary, run_import
from tests.backfill.fakes import WRITE_KEY, FakeCollector, ListSink, collector_handler


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """``write(text, name="people.csv", bom=False)``: bytes exactly as given (UTF-8)."""

    def make(text: str | bytes, name: str = "people.csv", bom: bool = False) -> Path:
        path = tmp_path / name
        data = text.encode("utf-8") if isinstance(text, str) else text
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
        return path

    return make


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., ImportSummary]:
    """``run(path, sink, **options)`` with the checkpoint kept under tmp_path/state."""

    def go(path: Path, sink: Any, progress: Any = None, **options: Any) -> ImportSummary:
        options.setdefault("state_dir", tmp_path / "state")
        return run_import(path, ImportOptions(**options), sink, progress)

    return go


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    state = FakeCollector()
    server = ThreadingHTTPServer(("127.0.0.1", 0), collector_handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    state.sources = {
        "crm": {"id": "src_1", "name": "crm", "kind": "import", "write_key": WRITE_KEY,
                "replayable": True},
        "web": {"id": "src_2", "name": "web", "kind": "pipelines", "write_key": WRITE_KEY,
                "replayable": True},
        "legacy": {"id": "src_3", "name": "legacy", "kind": "track", "write_key": "x",
                   "replayable": False},
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)
