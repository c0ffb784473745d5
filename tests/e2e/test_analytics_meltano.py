# ruff: noqa: S608 - the SQL is built from this module's constants only, never from input.
"""`meltano run` lands the five analytics streams in DuckDB, beside the CRM ones, counted and typed.

The Meltano project's `sandbox` environment configures the CRM family only; the analytics settings
come from `TAP_LINKEDIN_CRM_*` environment variables, and `TAP_LINKEDIN_CRM__SELECT` widens the
project's selection to every stream, as a user would do for one run.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t
from pathlib import Path

import pytest

if t.TYPE_CHECKING:
    from tap_linkedin_crm.sandbox import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DUCKDB_STATE_ID = "sandbox:tap-linkedin-crm-to-target-duckdb"
SCHEMA = "linkedin_crm"
ROWS_STREAMS = {
    "activity": "sales_activities",
    "activity_outcome": "sales_activity_outcomes",
    "seat": "sales_seats",
}
NEW_STREAMS = ("sales_contracts", *ROWS_STREAMS.values(), "sales_analytics_exports")
DAY_MS = 86_400_000


def midnight(days_back: int) -> int:
    today = dt.datetime.now(tz=dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((today - dt.timedelta(days=days_back)).timestamp() * 1000)


def analytics_env(sb: Sandbox) -> dict[str, str]:
    """The analytics settings for one run: a member refresh token, three days of one-day windows."""
    start = dt.datetime.fromtimestamp(midnight(3) / 1000, tz=dt.UTC)
    return {
        "TAP_LINKEDIN_CRM_REFRESH_TOKEN": sb.issue_member_tokens()[1],
        "TAP_LINKEDIN_CRM_ANALYTICS_START_DATE": start.isoformat(),
        "TAP_LINKEDIN_CRM_ANALYTICS_WINDOW_DAYS": "1",
        "TAP_LINKEDIN_CRM__SELECT": json.dumps(["*.*"]),
    }


def test_meltano_run_lands_the_analytics_streams_in_duckdb_then_resumes_at_bookmarks(
    meltano: t.Any, sandbox: Sandbox, helpers: t.Any
) -> None:
    # Meltano passes only declared settings from the environment.
    declared = (ROOT / "meltano.yml").read_text(encoding="utf-8")
    missing = [
        name
        for name in ("refresh_token", "analytics_start_date", "analytics_window_days")
        if f"- name: {name}\n" not in declared
    ]
    assert not missing, f"meltano.yml does not declare {missing}: run `make docs`"
    meltano.env.update(analytics_env(sandbox))
    queries = {
        "tables": "select table_name from information_schema.tables "
        f"where table_schema = '{SCHEMA}' order by 1",
        "contracts": f"select contract, hasreportingaccess from {SCHEMA}.sales_contracts "
        "order by 1",
        "exports": "select id, exporttype, contract, startat, endat, rowcount, rowsemitted "
        f"from {SCHEMA}.sales_analytics_exports order by id",
        "activities": "select contract, jobid, count(*), count(distinct activityid) "
        f"from {SCHEMA}.sales_activities group by 1, 2 order by 1, 2",
        "outcomes": f"select contract, jobid, count(*) from {SCHEMA}.sales_activity_outcomes "
        "group by 1, 2 order by 1, 2",
        "seats": f"select contract, jobid, count(*) from {SCHEMA}.sales_seats "
        "group by 1, 2 order by 1, 2",
        "types": "select table_name, column_name, data_type from information_schema.columns "
        f"where table_schema = '{SCHEMA}' and table_name like 'sales_%'",
        "created": "select count(*) from "
        f"{SCHEMA}.sales_activities where createdat < epoch_ms(startat::bigint) "
        "or createdat >= epoch_ms(endat::bigint)",
        "crm": f"select count(*) from {SCHEMA}.{helpers.RECORDS}",
    }
    meltano.run_ok("run", "tap-linkedin-crm", "target-duckdb")
    landed = helpers.query_duckdb(meltano.duckdb_file, queries)

    tables = {row[0] for row in landed["tables"]["rows"]}
    assert set(NEW_STREAMS) | {helpers.RECORDS, helpers.EXPORTS} <= tables
    assert [tuple(r) for r in landed["contracts"]["rows"]] == [
        (urn, spec.has_reporting_access) for urn, spec in sandbox.scenario.contracts.items()
    ]
    # One completed job per contract with reporting access, export type and one-day window
    # (the default 24 h lag ends the last window at yesterday's midnight).
    jobs = sandbox.analytics_jobs
    assert len(jobs) == 2 * 3 * 2
    exports = landed["exports"]["rows"]
    assert [row[0] for row in exports] == sorted(jobs)
    for job_id, export_type, contract, start, end, row_count, emitted in exports:
        job = jobs[job_id]
        assert (export_type, contract, start, end) == (
            job["exportType"],
            job["contract"],
            job["startAt"],
            job["endAt"],
        )
        assert row_count == emitted == len(sandbox.expected_rows(job_id))
    assert {(r[3], r[4]) for r in exports} == {
        (midnight(3), midnight(2)),
        (midnight(2), midnight(1)),
    }
    # Every row of every job landed once (keys are distinct: nothing merged away).
    for export_type, name in (("activity", "activities"), ("activity_outcome", "outcomes")):
        counts = {(r[0], r[1]): r[2] for r in landed[name]["rows"]}
        expected = {
            (job["contract"], job_id): len(sandbox.expected_rows(job_id))
            for job_id, job in jobs.items()
            if job["exportType"] == export_type
        }
        assert counts == {k: v for k, v in expected.items() if v}, export_type
    assert all(r[2] == r[3] for r in landed["activities"]["rows"]), "duplicate activityId"
    seats = {(r[0], r[1]): r[2] for r in landed["seats"]["rows"]}
    assert seats == {
        (job["contract"], job_id): sandbox.scenario.contracts[job["contract"]].seats
        for job_id, job in jobs.items()
        if job["exportType"] == "seat"
    }
    # Typed as declared (target-duckdb folds names to lower case).
    types = {(r[0], r[1]): r[2] for r in landed["types"]["rows"]}
    assert types["sales_activities", "createdat"].startswith("TIMESTAMP")
    assert types["sales_activities", "seatid"] in {"BIGINT", "HUGEINT"}
    assert types["sales_activities", "extracolumns"] == "JSON"
    assert types["sales_contracts", "hasreportingaccess"] == "BOOLEAN"
    assert types["sales_analytics_exports", "rowcount"] in {"BIGINT", "HUGEINT"}
    assert landed["created"]["rows"] == [[0]], "createdAt outside its window: a time-zone shift"
    # Both families ran in the same pipeline.
    assert landed["crm"]["rows"][0][0] == helpers.expected_row_count(sandbox, sorted(sandbox.jobs))

    # Meltano kept a bookmark per (contract, export type); the next run has no window to export.
    state = meltano.state(DUCKDB_STATE_ID)["singer_state"]
    bookmarks = {
        (p["context"]["contract"], p["context"]["exportType"]): p["replication_key_value"]
        for stream in ROWS_STREAMS.values()
        for p in state["bookmarks"][stream]["partitions"]
    }
    assert len(bookmarks) == 6
    assert set(bookmarks.values()) == {midnight(1)}
    meltano.run_ok("run", "tap-linkedin-crm", "target-duckdb")
    assert set(sandbox.analytics_jobs) == set(jobs)
    again = helpers.query_duckdb(meltano.duckdb_file, {"n": queries["activities"]})
    assert again["n"]["rows"] == landed["activities"]["rows"]
