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
export MELTANO_CLI_DISABLE_VERSION_CHECK := true
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: install demo test lint typecheck bench dist clean meltano e2e-deps docs

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

# Meltano and its plugins (tap-linkedin-crm, target-jsonl, target-duckdb).
meltano: $(PLUGINS_STAMP)

# What tests/e2e needs besides .venv (its conftest runs this too, so plain pytest works).
e2e-deps: $(STAMP) $(PLUGINS_STAMP)

# Regenerate meltano.yml settings, the README tables, catalog.json and .env.example from the tap.
docs: $(STAMP)
	$(BIN)/python scripts/sync_docs.py

demo: $(STAMP) $(PLUGINS_STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP) $(PLUGINS_STAMP)
	$(BIN)/python -m ruff check tap_linkedin_crm tests scripts
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/python -m ruff check tap_linkedin_crm tests scripts
	$(BIN)/python -m ruff format --check tap_linkedin_crm tests scripts

typecheck: $(STAMP)
	$(BIN)/python -m mypy

bench: $(STAMP)
	$(BIN)/python scripts/bench.py --runs 3

dist: $(STAMP)
	$(BIN)/python -m build --outdir dist

clean:
	rm -rf $(VENV) $(MELTANO_VENV) output dist build .pytest_cache .mypy_cache .ruff_cache .meltano
