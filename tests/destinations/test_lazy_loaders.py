"""The destination catalog loads the warehouse and storage loaders' libraries only on use.

Why it matters: the catalog is imported by every process (the server, each preview
worker), and pyarrow and psycopg are tens of thousands of objects and tens of MiB each
process would carry (and, imported after the heap settled, its collector would walk)
without ever having a ``postgres`` or ``parquet`` destination.
"""

from __future__ import annotations

import subprocess
import sys

from millpond.workers import WorkerPool

HEAVY = ("pyarrow", "psycopg")


def loaded_heavy_modules() -> list[str]:
    """In the process it runs in: which of ``HEAVY`` are imported."""
    return [name for name in HEAVY if name in sys.modules]


def test_the_servers_catalog_and_composition_root_import_no_loader_library():
    code = ("import sys, millpond.destinations, millpond.app.services, millpond.app.asgi; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_preview_worker_starts_without_a_loader_library():
    pool = WorkerPool(1, preload=["millpond.replays.preview"])  # as the server's
    try:
        assert pool.map(loaded_heavy_modules, [()]) == [[]]
    finally:
        pool.close()


def test_a_loader_destination_loads_its_library_when_it_is_created():
    """The other half: the catalog still has both types, and creating one brings what it
    needs (here parquet into a directory: no server required)."""
    code = ("import sys, tempfile, millpond.destinations; "
            "from millpond.destinations.registry import get_type; "
            "dtype = get_type('parquet'); "
            "d = dtype(dtype.parse_settings({'path': tempfile.mkdtemp()})); "
            "d.make_loader(); print('pyarrow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "True", out.stdout + out.stderr
