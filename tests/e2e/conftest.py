"""End-to-end fixtures: the sandbox on loopback, Meltano and the targets it installed, no mocks.

PostgreSQL: `postgres_server` starts one throwaway server per session (tests/e2e/postgres_server.py)
and `postgres` gives each test a fresh database on it.

Meltano (`.venv-meltano`) and its plugin venvs (`.meltano/`) are built by `make e2e-deps`, which
`make test` runs first; the `e2e_deps` fixture runs it again (a no-op when the stamps are fresh)
so a plain `pytest tests/e2e` works too.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
from postgres_server import FAST_SETTINGS, PostgresDatabase, PostgresServer

from tap_linkedin_crm.sandbox import Sandbox, Scenario

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

ROOT = Path(__file__).resolve().parents[2]
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
PLUGINS = ROOT / ".meltano"
QUERY_DUCKDB = ROOT / "scripts" / "query_duckdb.py"
TARGET_JSONL = PLUGINS / "loaders" / "target-jsonl" / "venv" / "bin" / "target-jsonl"
TARGET_DUCKDB = PLUGINS / "loaders" / "target-duckdb" / "venv" / "bin" / "target-duckdb"
#: The target-duckdb venv's interpreter has the pinned duckdb: used to read what landed.
DUCKDB_PYTHON = PLUGINS / "loaders" / "target-duckdb" / "venv" / "bin" / "python"
TAP = [sys.executable, "-m", "tap_linkedin_crm"]

RECORDS = "crm_data_validation_records"
EXPORTS = "crm_data_validation_exports"


@pytest.fixture(scope="session")
def e2e_deps() -> None:
    """Make sure Meltano and the plugin venvs exist (cheap when `make test` built them)."""
    proc = subprocess.run(
        ["make", "-s", "e2e-deps"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"`make e2e-deps` failed:\n{proc.stdout}\n{proc.stderr}")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """The default scenario (two instances, 250 + 120 rows, gzip, BOM, NULs) on a free port."""
    with Sandbox(Scenario(), port=0) as sb:
        yield sb


@pytest.fixture(scope="session")
def postgres_server(e2e_deps: None) -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, as a non-root user, stopped and removed at the end.

    Its time zone is not UTC, so a timestamp converted to the session's zone on the way in shows.
    """
    with PostgresServer(settings={**FAST_SETTINGS, "timezone": "America/New_York"}) as server:
        yield server


@pytest.fixture
def postgres(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """A fresh, empty database for one test (the login role owns it), dropped afterwards."""
    name = f"e2e_{secrets.token_hex(6)}"
    database = postgres_server.create_database(name)
    try:
        yield database
    finally:
        postgres_server.drop_database(name)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any setting a developer may have exported, plus `extra`."""
    prefixes = (
        "TAP_LINKEDIN_CRM_",
        "TARGET_JSONL_",
        "TARGET_DUCKDB_",
        "TARGET_POSTGRES_",
        "MELTANO_",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        MELTANO_CLI_DISABLE_VERSION_CHECK="true",
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Meltano:
    """Runs `meltano` in the project, isolated from the developer's: own system DB and outputs."""

    def __init__(self, sb: Sandbox, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.jsonl_dir = tmp_path / "jsonl"
        self.duckdb_file = tmp_path / "warehouse.duckdb"
        self.env = clean_env(
            MELTANO_ENVIRONMENT="sandbox",
            # State lives in a fresh system database per test, not in .meltano/meltano.db.
            MELTANO_DATABASE_URI=f"sqlite:///{tmp_path / 'meltano.db'}",
            # Only strings and JSON here: meltano 4.4.1 cannot pass `decimal` settings from env.
            TAP_LINKEDIN_CRM_API_URL=sb.api_url,
            TAP_LINKEDIN_CRM_TOKEN_URL=sb.token_url,
            TAP_LINKEDIN_CRM_CRM_INSTANCE_IDS=json.dumps(list(sb.scenario.instances)),
            TARGET_JSONL_DESTINATION_PATH=str(self.jsonl_dir),
            TARGET_DUCKDB_FILEPATH=str(self.duckdb_file),
        )

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(MELTANO), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self(*args)
        assert proc.returncode == 0, f"meltano {' '.join(args)} failed:\n{proc.stderr[-6000:]}"
        return proc

    def state(self, state_id: str) -> dict[str, t.Any]:
        proc = self.run_ok("state", "get", state_id)
        return t.cast("dict[str, t.Any]", json.loads(proc.stdout))


@pytest.fixture
def meltano(e2e_deps: None, sandbox: Sandbox, tmp_path: Path) -> Meltano:
    return Meltano(sandbox, tmp_path)


class Helpers:
    """Reading what landed and what the sandbox served (a fixture, so tests need no imports)."""

    RECORDS = RECORDS
    EXPORTS = EXPORTS
    TAP = TAP
    TARGET_JSONL = TARGET_JSONL
    TARGET_DUCKDB = TARGET_DUCKDB

    @staticmethod
    def expected_row_count(sb: Sandbox, job_ids: t.Iterable[int]) -> int:
        """Rows the sandbox served for these jobs, from its own generator."""
        return sum(len(sb.expected_rows(job_id)) for job_id in job_ids)

    @staticmethod
    def clean_env(**extra: str) -> dict[str, str]:
        return clean_env(**extra)

    @staticmethod
    def query_duckdb(path: Path, queries: Mapping[str, str]) -> dict[str, dict[str, t.Any]]:
        """Run read-only SQL with target-duckdb's own duckdb; rows come back as lists."""
        proc = subprocess.run(
            [str(DUCKDB_PYTHON), str(QUERY_DUCKDB), str(path), json.dumps(dict(queries))],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return t.cast("dict[str, dict[str, t.Any]]", json.loads(proc.stdout))

    @staticmethod
    def read_jsonl(path: Path) -> list[dict[str, t.Any]]:
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    @staticmethod
    def instance_bookmarks(state: Mapping[str, t.Any]) -> dict[str, int]:
        """`nextExportStartAt` per CRM instance, from the records stream's partitions.

        Accepts Singer state or Meltano's `meltano state get` form (`{"singer_state": ...}`).
        """
        state = state.get("singer_state", state)
        partitions = state.get("bookmarks", {}).get(RECORDS, {}).get("partitions", [])
        return {
            p["context"]["crmInstanceId"]: int(p["nextExportStartAt"])
            for p in partitions
            if p.get("nextExportStartAt") is not None
        }

    @staticmethod
    def jobs_by_instance(sb: Sandbox, job_ids: t.Iterable[int]) -> dict[str, dict[str, t.Any]]:
        jobs = sb.jobs
        return {jobs[j]["instance"]: jobs[j] for j in job_ids}


@pytest.fixture(scope="session")
def helpers() -> type[Helpers]:
    return Helpers
