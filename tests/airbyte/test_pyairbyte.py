"""PyAirbyte, a real Airbyte client, reads the sandbox through `source-linkedin-crm`, twice.

PyAirbyte lives in its own venv (`.venv-pyairbyte`, built by `make pyairbyte`, which `make test`
runs first; the fixture runs it again, a no-op when fresh). It runs offline
(`AIRBYTE_OFFLINE_MODE=1`) with our console script as a local executable, reads into its default
DuckDB cache, and hands the stored state back on the second read, which must bring only new rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t

import pytest
from analytics_kit import CONTRACTS, ROWS_STREAM, analytics_config
from analytics_kit import EXPORTS as ANALYTICS_EXPORTS
from conftest import EXPORTS, RECORDS, ROOT, SOURCE

if t.TYPE_CHECKING:
    from pathlib import Path

    from tap_linkedin_crm.sandbox import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PYAIRBYTE_PYTHON = ROOT / ".venv-pyairbyte" / "bin" / "python"
SCRIPT = ROOT / "tests" / "airbyte" / "pyairbyte_read.py"


@pytest.fixture(scope="session")
def pyairbyte() -> Path:
    """The PyAirbyte venv's interpreter (built by `make pyairbyte` if missing)."""
    proc = subprocess.run(
        ["make", "-s", "pyairbyte"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"`make pyairbyte` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return PYAIRBYTE_PYTHON


def read_twice(pyairbyte: Path, config: dict[str, t.Any], tmp_path: Path) -> dict[str, t.Any]:
    """Check, then two reads into PyAirbyte's default cache, offline; the script's report."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TAP_LINKEDIN_CRM_", "AIRBYTE_"))
        },
        "AIRBYTE_OFFLINE_MODE": "1",
        "DO_NOT_TRACK": "1",
        "AIRBYTE_PROJECT_DIR": str(tmp_path),
        "AIRBYTE_CACHE_ROOT": str(tmp_path / "cache"),
        "AIRBYTE_LOGGING_ROOT": str(tmp_path / "logs"),
        "AIRBYTE_INSTALL_DIR": str(tmp_path / "install"),
    }
    proc = subprocess.run(
        [str(pyairbyte), str(SCRIPT), str(SOURCE), str(config_path), "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    report: dict[str, t.Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["cache"].startswith(str(tmp_path / "cache"))  # PyAirbyte's default cache
    return report


def test_pyairbyte_reads_the_sandbox_into_duckdb_then_only_new_rows(
    pyairbyte: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    report = read_twice(pyairbyte, sandbox.tap_config(), tmp_path)
    assert sorted(report["streams"]) == sorted([RECORDS, EXPORTS])
    first, second = report["reads"]

    jobs = sandbox.jobs
    assert len(jobs) == 4
    by_instance: dict[str, list[int]] = {}
    for job_id in sorted(jobs):
        by_instance.setdefault(jobs[job_id]["instance"], []).append(job_id)
    first_jobs = {ids[0] for ids in by_instance.values()}
    second_jobs = {ids[1] for ids in by_instance.values()}
    # The second read's jobs start at the first read's bookmarks: PyAirbyte passed the state back.
    for earlier, later in by_instance.values():
        assert jobs[later]["exportStartAt"] == jobs[earlier]["nextExportStartAt"]

    def expected(job_ids: set[int]) -> dict[str, int]:
        return {str(j): len(sandbox.expected_rows(j)) for j in sorted(job_ids)}

    rows1 = first["tables"][RECORDS]
    assert rows1["by_job"] == expected(first_jobs)
    assert rows1["rows"] == rows1["distinct_keys"] == sum(expected(first_jobs).values())
    assert first["tables"][EXPORTS]["by_job"] == dict.fromkeys(map(str, sorted(first_jobs)), 1)
    assert first["processed_records"] == rows1["rows"] + len(first_jobs)

    new_rows = sum(expected(second_jobs).values())
    assert second["processed_records"] == new_rows + len(second_jobs), "only new rows"
    rows2 = second["tables"][RECORDS]
    assert rows2["by_job"] == expected(first_jobs | second_jobs)
    assert rows2["rows"] == rows2["distinct_keys"] == rows1["rows"] + new_rows
    assert second["tables"][EXPORTS]["rows"] == len(jobs)


def test_pyairbyte_reads_both_families_every_row_once(
    pyairbyte: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """CRM and analytics together: every analytics row once per job, contracts kept as a table."""
    config = analytics_config(sandbox, start_days=6, window_days=3, crm=True)
    report = read_twice(pyairbyte, config, tmp_path)
    assert sorted(report["streams"]) == sorted(
        [RECORDS, EXPORTS, CONTRACTS, ANALYTICS_EXPORTS, *ROWS_STREAM.values()]
    )
    first, second = report["reads"]

    analytics = sandbox.analytics_jobs
    assert analytics
    assert all(job["status"] == "COMPLETED" for job in analytics.values())
    contracts = len(sandbox.scenario.contracts)
    for export_type, stream in ROWS_STREAM.items():
        want = {
            str(job_id): len(sandbox.expected_rows(job_id))
            for job_id, job in sorted(analytics.items())
            if job["exportType"] == export_type
        }
        table = second["tables"][stream]
        assert table["by_job"] == {job: n for job, n in want.items() if n}, stream
        assert table["rows"] == table["distinct_keys"] == sum(want.values()), stream
    assert second["tables"][ANALYTICS_EXPORTS]["rows"] == len(analytics)
    assert second["tables"][CONTRACTS]["rows"] == contracts

    crm = sandbox.jobs
    assert len(crm) == 4  # one job per instance and read
    crm_rows = sum(len(sandbox.expected_rows(job_id)) for job_id in crm)
    analytics_rows = sum(len(sandbox.expected_rows(job_id)) for job_id in analytics)
    assert second["tables"][RECORDS]["rows"] == second["tables"][RECORDS]["distinct_keys"]
    assert second["tables"][RECORDS]["rows"] == crm_rows
    # Every record once over both reads; the contracts table is read in full each time.
    assert first["processed_records"] + second["processed_records"] == (
        crm_rows + len(crm) + analytics_rows + len(analytics) + 2 * contracts
    )
