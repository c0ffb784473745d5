# One entry point for set-up, tests, the demo and the benchmark. Every target bootstraps .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Meltano lives in its own venv: its dependencies may clash with the tap's. Its plugins (the tap,
# installed editable from this directory, and the targets) live in .meltano/, built by `meltano install`.
MELTANO_VENV := .venv-meltano
MELTANO := $(MELTANO_VENV)/bin/meltano
MELTANO_STAMP := $(MELTANO_VENV)/.installed
PLUGINS_STAMP := .meltano/.plugins-installed
# PyAirbyte (the Airbyte client the Airbyte source is tested with) lives in its own venv too: it is
# large (~700 MB) and needs Python 3.10 to 3.12. Built once, reused while the pin is unchanged.
PYAIRBYTE_PYTHON ?= python3.11
PYAIRBYTE_VERSION := 0.71.3
PYAIRBYTE_VENV := .venv-pyairbyte
PYAIRBYTE_STAMP := $(PYAIRBYTE_VENV)/.installed-$(PYAIRBYTE_VERSION)
# The Airbyte source's image (`make image`; needs a Docker daemon).
IMAGE ?= source-linkedin-crm:dev
IMAGE_PLATFORM ?= linux/amd64
export MELTANO_CLI_DISABLE_VERSION_CHECK := true
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: install demo test test-fast test-sdk-next lint typecheck bench bench-e2e dist clean meltano \
	e2e-deps docs pyairbyte image postgres-server

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(MELTANO_STAMP):
	$(PYTHON) -m venv $(MELTANO_VENV)
	$(MELTANO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MELTANO_VENV)/bin/python -m pip install --quiet 'meltano==4.4.1'
	touch $(MELTANO_STAMP)

$(PLUGINS_STAMP): $(MELTANO_STAMP) meltano.yml pyproject.toml
	$(MELTANO) install
	touch $(PLUGINS_STAMP)

# Meltano and its plugins (tap-linkedin-crm, target-jsonl, target-duckdb, target-postgres).
meltano: $(PLUGINS_STAMP)

$(PYAIRBYTE_STAMP):
	rm -rf $(PYAIRBYTE_VENV)
	$(PYAIRBYTE_PYTHON) -m venv $(PYAIRBYTE_VENV)
	$(PYAIRBYTE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PYAIRBYTE_VENV)/bin/python -m pip install --quiet 'airbyte==$(PYAIRBYTE_VERSION)'
	touch $(PYAIRBYTE_STAMP)

# PyAirbyte for tests/airbyte/test_pyairbyte.py (its fixture runs this too, so plain pytest works).
pyairbyte: $(PYAIRBYTE_STAMP)

# The Airbyte source's image (see Dockerfile). Push it to a registry your Airbyte can pull from.
image:
	docker build --platform $(IMAGE_PLATFORM) --tag $(IMAGE) .

# PostgreSQL server binaries (initdb, pg_ctl, postgres; psql comes with them) for the target-postgres
# end-to-end tests and bench-e2e, which start their own throwaway server (tests/e2e/postgres_server.py).
# No cluster is used or configured: only the binaries must exist. Debian/Ubuntu keep them in
# /usr/lib/postgresql/<major>/bin; elsewhere put them on PATH or set POSTGRES_BINDIR.
PG_BINARIES := initdb pg_ctl postgres
postgres-server:
	@found=; \
	for dir in $${POSTGRES_BINDIR:-} /usr/lib/postgresql/*/bin; do \
	  ok=1; for b in $(PG_BINARIES); do [ -x "$$dir/$$b" ] || ok=; done; \
	  if [ -n "$$ok" ]; then found=$$dir; break; fi; \
	done; \
	if [ -z "$$found" ]; then \
	  ok=1; for b in $(PG_BINARIES); do command -v $$b >/dev/null 2>&1 || ok=; done; \
	  [ -n "$$ok" ] && found=PATH; \
	fi; \
	if [ -z "$$found" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "PostgreSQL server binaries missing: installing Debian's postgresql package"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql \
	      || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; } \
	      || exit 1; \
	    ls /usr/lib/postgresql/*/bin/initdb >/dev/null || exit 1; \
	  else \
	    echo "PostgreSQL server binaries ($(PG_BINARIES)) not found. Install them, e.g.:" >&2; \
	    echo "    sudo apt-get install -y postgresql" >&2; \
	    echo "(or put them on PATH, or set POSTGRES_BINDIR to their directory)" >&2; \
	    exit 1; \
	  fi; \
	fi

# What tests/e2e needs besides .venv (its conftest runs this too, so plain pytest works).
e2e-deps: $(STAMP) $(PLUGINS_STAMP) postgres-server

# Regenerate meltano.yml settings, the README tables, catalog.json and .env.example from the tap.
docs: $(STAMP)
	$(BIN)/python scripts/sync_docs.py

demo: $(STAMP) $(PLUGINS_STAMP)
	$(BIN)/python scripts/demo.py

# Everything: lint, types, then every test (unit, sandbox, process, e2e with Meltano, targets,
# PostgreSQL and PyAirbyte).
test: lint typecheck e2e-deps $(PYAIRBYTE_STAMP)
	$(BIN)/python -m pytest

# The inner loop: no Meltano, no targets, no end-to-end tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e" -q

lint: $(STAMP)
	$(BIN)/python -m ruff check tap_linkedin_crm tests scripts
	$(BIN)/python -m ruff format --check tap_linkedin_crm tests scripts

# The suite (without e2e) against the newest singer-sdk pre-release, in its own venv.
SDK_NEXT_VENV := .venv-sdk-next
test-sdk-next:
	$(PYTHON) -m venv $(SDK_NEXT_VENV)
	$(SDK_NEXT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SDK_NEXT_VENV)/bin/python -m pip install --quiet -e '.[dev]'
	$(SDK_NEXT_VENV)/bin/python -m pip install --quiet --pre --upgrade singer-sdk
	$(SDK_NEXT_VENV)/bin/python -c "import singer_sdk.about, importlib.metadata as m; print('singer-sdk', m.version('singer-sdk'))"
	$(SDK_NEXT_VENV)/bin/python -m pytest -m "not e2e" -q

typecheck: $(STAMP)
	$(BIN)/python -m mypy

bench: $(STAMP)
	$(BIN)/python scripts/bench.py --runs 3

# The whole pipeline, tap | target, on 200,000 rows: /dev/null, target-jsonl, target-duckdb,
# target-postgres (RECORD and BATCH); median of 3, written to bench-results/bench-e2e.json.
bench-e2e: $(STAMP) $(PLUGINS_STAMP) postgres-server
	$(BIN)/python scripts/bench_e2e.py --rows 200000 --runs 3

dist: $(STAMP)
	$(BIN)/python -m build --outdir dist

clean:
	rm -rf $(VENV) $(MELTANO_VENV) $(PYAIRBYTE_VENV) output dist build .pytest_cache .mypy_cache .ruff_cache .meltano
