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

.PHONY: install demo test test-fast test-sdk-next lint typecheck bench dist clean meltano e2e-deps docs pyairbyte image

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

# What tests/e2e needs besides .venv (its conftest runs this too, so plain pytest works).
e2e-deps: $(STAMP) $(PLUGINS_STAMP)

# Regenerate meltano.yml settings, the README tables, catalog.json and .env.example from the tap.
docs: $(STAMP)
	$(BIN)/python scripts/sync_docs.py

demo: $(STAMP) $(PLUGINS_STAMP)
	$(BIN)/python scripts/demo.py

# Everything: lint, types, then every test (unit, sandbox, process, e2e with Meltano, targets,
# PostgreSQL and PyAirbyte).
test: lint typecheck $(PLUGINS_STAMP) $(PYAIRBYTE_STAMP)
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

dist: $(STAMP)
	$(BIN)/python -m build --outdir dist

clean:
	rm -rf $(VENV) $(MELTANO_VENV) $(PYAIRBYTE_VENV) output dist build .pytest_cache .mypy_cache .ruff_cache .meltano
