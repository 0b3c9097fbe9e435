# Two commands on a fresh machine: `make run` (set up, then serve) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := tests/sdk/node/node_modules/.installed

.PHONY: run test lint screenshots bench bench-warehouse bench-cluster cluster setup clean chromium \
	postgresql

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): tests/sdk/node/package.json
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	cd tests/sdk/node && npm install --silent --no-audit --no-fund
	touch $(NODE_STAMP)

# The browser tests drive Debian's chromium through Playwright (`executable_path`): Playwright's
# own browser download cannot work on machines that reach only the package registries.
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# The warehouse tests start a real PostgreSQL server with initdb/pg_ctl (tests/support/postgres.py).
# Debian puts those binaries in /usr/lib/postgresql/<version>/bin, off PATH: look there too.
postgresql:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/millpond serve $(ARGS)

# The suite in two runs: everything not marked `serial` on TEST_WORKERS processes (pytest-xdist;
# `--dist loadfile` keeps a module on one worker, so its module-scoped server starts once),
# then the `serial` tests (timing-sensitive: 1-second windows, timeouts, Ctrl-C) alone.
# Both always run; `make test` fails if either did. `TEST_WORKERS=0` runs the first
# in one process too.
TEST_WORKERS ?= 2
test: lint $(NODE_STAMP) chromium postgresql
	status=0; \
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile -m "not serial" \
		|| status=1; \
	$(BIN)/pytest -q -p no:cacheprovider -m serial || status=1; \
	exit $$status

# Style (ruff) and types (basedpyright: basic everywhere, strict where a backend or the
# engine plugs in; the settings are in pyproject.toml). `--project .`: a pyrightconfig.json
# in a parent directory would otherwise win over this checkout's pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/basedpyright --project .

screenshots: $(STAMP) $(NODE_STAMP) chromium
	MILLPOND_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/pytest -q -p no:cacheprovider tests/console

# The engines of a scaled-out millpond on loopback (3 NATS JetStream nodes, PostgreSQL, S3),
# until Ctrl-C: `millpond dev-cluster`.
cluster: $(STAMP) postgresql
	$(BIN)/millpond dev-cluster $(ARGS)

bench-cluster: $(STAMP) postgresql
	$(BIN)/python bench/cluster.py $(ARGS)

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

bench-warehouse: $(STAMP) postgresql
	$(BIN)/python bench/warehouse.py $(ARGS)

clean:
	rm -rf $(VENV) tests/sdk/node/node_modules .millpond
