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


def test_pyairbyte_reads_the_sandbox_into_duckdb_then_only_new_rows(
    pyairbyte: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(sandbox.tap_config()))
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
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["cache"].startswith(str(tmp_path / "cache"))  # PyAirbyte's default cache
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
