# ruff: noqa: S608 - the SQL is built from this module's constants only, never from input.
"""`meltano run` in the sandbox environment: rows land in target-jsonl and target-duckdb, counted.

Every run counts the rows that landed against the rows the sandbox served, so a loader that loses
rows (target-duckdb 0.8.0 with duckdb >= 1.3 drops the first row of every batch) fails here.
"""

from __future__ import annotations

import typing as t

import pytest

if t.TYPE_CHECKING:
    from tap_linkedin_crm.sandbox import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JSONL_STATE_ID = "sandbox:tap-linkedin-crm-to-target-jsonl"
DUCKDB_STATE_ID = "sandbox:tap-linkedin-crm-to-target-duckdb"
SCHEMA = "linkedin_crm"


def test_meltano_run_into_target_jsonl_then_incremental(
    meltano: t.Any, sandbox: Sandbox, helpers: t.Any
) -> None:
    meltano.run_ok("run", "tap-linkedin-crm", "target-jsonl")
    first_jobs = sorted(sandbox.jobs)
    assert len(first_jobs) == len(sandbox.scenario.instances)
    records_file = meltano.jsonl_dir / f"{helpers.RECORDS}.jsonl"
    records = helpers.read_jsonl(records_file)
    assert len(records) == helpers.expected_row_count(sandbox, first_jobs)
    exports = helpers.read_jsonl(meltano.jsonl_dir / f"{helpers.EXPORTS}.jsonl")
    assert sorted(e["jobId"] for e in exports) == first_jobs

    # Meltano stored the state the target echoed: one bookmark per CRM instance.
    bookmarks = helpers.instance_bookmarks(meltano.state(JSONL_STATE_ID))
    for urn, job in helpers.jobs_by_instance(sandbox, first_jobs).items():
        assert bookmarks[urn] == job["nextExportStartAt"], urn

    # The second run starts every instance's job at its bookmark and appends only new rows.
    meltano.run_ok("run", "tap-linkedin-crm", "target-jsonl")
    second_jobs = sorted(set(sandbox.jobs) - set(first_jobs))
    assert len(second_jobs) == len(sandbox.scenario.instances)
    for urn, job in helpers.jobs_by_instance(sandbox, second_jobs).items():
        assert job["exportStartAt"] == bookmarks[urn], urn
    records = helpers.read_jsonl(records_file)
    assert len(records) == helpers.expected_row_count(sandbox, first_jobs + second_jobs)
    assert {r["jobId"] for r in records} == set(first_jobs + second_jobs)
    new_bookmarks = helpers.instance_bookmarks(meltano.state(JSONL_STATE_ID))
    for urn, job in helpers.jobs_by_instance(sandbox, second_jobs).items():
        assert new_bookmarks[urn] == job["nextExportStartAt"], urn


def test_meltano_run_into_duckdb_lands_every_row_typed_then_incremental(
    meltano: t.Any, sandbox: Sandbox, helpers: t.Any
) -> None:
    records = f"{SCHEMA}.{helpers.RECORDS}"
    exports = f"{SCHEMA}.{helpers.EXPORTS}"
    queries = {
        "rows": f"select jobId, count(*), count(distinct (fileIndex, rowNumber)) from {records} "
        "group by jobId order by jobId",
        # The first data row of every file: exactly what the duckdb >= 1.3 bug loses.
        "first_rows": f"select jobId, fileIndex from {records} where rowNumber = 1 "
        "order by jobId, fileIndex",
        "types": f"select column_name, data_type from information_schema.columns "
        f"where table_schema = '{SCHEMA}' and table_name = '{helpers.RECORDS}'",
        "exports": f"select jobId, rowCount, fileCount from {exports} order by jobId",
    }

    meltano.run_ok("run", "tap-linkedin-crm", "target-duckdb")
    first_jobs = sorted(sandbox.jobs)
    landed = helpers.query_duckdb(meltano.duckdb_file, queries)
    expected = {job_id: len(sandbox.expected_rows(job_id)) for job_id in first_jobs}
    assert {row[0]: row[1] for row in landed["rows"]["rows"]} == expected
    assert all(row[1] == row[2] for row in landed["rows"]["rows"]), "duplicate keys"
    files = sandbox.jobs
    assert [tuple(r) for r in landed["first_rows"]["rows"]] == [
        (job_id, index) for job_id in first_jobs for index in range(files[job_id]["files"])
    ]
    assert [(r[0], r[1]) for r in landed["exports"]["rows"]] == sorted(expected.items())

    # target-duckdb folds column names to lower case.
    types = dict(map(tuple, landed["types"]["rows"]))
    assert types["notatcompany"] == "BOOLEAN"
    assert types["flaggedat"].startswith("TIMESTAMP")
    assert types["jobid"] in {"BIGINT", "HUGEINT"}
    assert types["extracolumns"] == "JSON"

    bookmarks = helpers.instance_bookmarks(meltano.state(DUCKDB_STATE_ID))
    meltano.run_ok("run", "tap-linkedin-crm", "target-duckdb")
    second_jobs = sorted(set(sandbox.jobs) - set(first_jobs))
    assert len(second_jobs) == len(sandbox.scenario.instances)
    for urn, job in helpers.jobs_by_instance(sandbox, second_jobs).items():
        assert job["exportStartAt"] == bookmarks[urn], urn
    landed = helpers.query_duckdb(meltano.duckdb_file, queries)
    expected.update({job_id: len(sandbox.expected_rows(job_id)) for job_id in second_jobs})
    assert {row[0]: row[1] for row in landed["rows"]["rows"]} == expected
