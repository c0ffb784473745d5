"""`tap-linkedin-crm | target-jsonl` as real processes against the sandbox, then incrementally."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import typing as t

import pytest

if t.TYPE_CHECKING:
    from pathlib import Path

    from tap_linkedin_crm.sandbox import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STRING_COLUMNS = ("crmRecordId", "recordType", "firstName", "lastName", "email", "title")


def pipe_tap_into_jsonl(
    helpers: t.Any,
    tmp_path: Path,
    config: dict[str, t.Any],
    state: dict[str, t.Any] | None,
    name: str,
) -> tuple[dict[str, t.Any], Path]:
    """Run `tap | target-jsonl`; return the target's last state and its output directory."""
    run_dir = tmp_path / name
    run_dir.mkdir()
    (run_dir / "tap.json").write_text(json.dumps(config))
    out_dir = run_dir / "out"
    (run_dir / "target.json").write_text(
        json.dumps({"destination_path": str(out_dir), "do_timestamp_file": False})
    )
    tap_cmd = [*helpers.TAP, "--config", str(run_dir / "tap.json")]
    if state is not None:
        (run_dir / "state.json").write_text(json.dumps(state))
        tap_cmd += ["--state", str(run_dir / "state.json")]
    env = helpers.clean_env()
    with (run_dir / "tap.log").open("w") as tap_log:
        tap = subprocess.Popen(tap_cmd, stdout=subprocess.PIPE, stderr=tap_log, env=env)
        assert tap.stdout is not None
        target = subprocess.run(
            [str(helpers.TARGET_JSONL), "--config", str(run_dir / "target.json")],
            stdin=tap.stdout,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        tap.stdout.close()
        tap_rc = tap.wait(timeout=30)
    tap_stderr = (run_dir / "tap.log").read_text()
    assert tap_rc == 0, tap_stderr[-6000:]
    assert target.returncode == 0, target.stderr[-4000:]
    states = [json.loads(line) for line in target.stdout.splitlines() if line.strip()]
    assert states, "target-jsonl echoed no state"
    return states[-1], out_dir


def check_types(record: dict[str, t.Any]) -> None:
    assert isinstance(record["crmInstanceId"], str)
    for key in ("jobId", "fileIndex", "rowNumber"):
        assert isinstance(record[key], int), (key, record[key])
    assert record["notAtCompany"] is None or isinstance(record["notAtCompany"], bool)
    for key in ("flaggedAt", "lastSyncedAt"):
        if record[key] is not None:
            parsed = dt.datetime.fromisoformat(record[key])
            assert parsed.tzinfo is not None, record[key]
    assert isinstance(record.get("extraColumns") or {}, dict)


def test_tap_piped_into_target_jsonl_lands_every_row_typed_then_runs_incrementally(
    sandbox: Sandbox, tmp_path: Path, helpers: t.Any, e2e_deps: None
) -> None:
    config = sandbox.tap_config()

    # First run: every instance from start_date (30 days back by default).
    state, out_dir = pipe_tap_into_jsonl(helpers, tmp_path, config, None, "first")
    records = helpers.read_jsonl(out_dir / f"{helpers.RECORDS}.jsonl")
    exports = helpers.read_jsonl(out_dir / f"{helpers.EXPORTS}.jsonl")
    first_jobs = sorted(sandbox.jobs)
    assert len(first_jobs) == len(sandbox.scenario.instances)
    assert len(records) == helpers.expected_row_count(sandbox, first_jobs)
    assert len(records) == sum(s.rows for s in sandbox.scenario.instances.values())
    assert {e["jobId"] for e in exports} == set(first_jobs)
    assert sum(e["rowCount"] for e in exports) == len(records)

    # Types, and values byte-exact against the sandbox's own rows (quotes, CRLF, NUL, non-ASCII).
    keys = {(r["crmInstanceId"], r["jobId"], r["fileIndex"], r["rowNumber"]) for r in records}
    assert len(keys) == len(records), "primary keys are not unique"
    for job_id in first_jobs:
        landed = sorted(
            (r for r in records if r["jobId"] == job_id),
            key=lambda r: (r["fileIndex"], r["rowNumber"]),
        )
        expected = sandbox.expected_rows(job_id)
        assert len(landed) == len(expected)
        for got, want in zip(landed, expected, strict=True):
            check_types(got)
            for column in STRING_COLUMNS:
                if column in want:
                    assert got[column] == want[column], (job_id, got["rowNumber"], column)

    # Second run from the first run's final state: new jobs start at the bookmarks.
    bookmarks = helpers.instance_bookmarks(state)
    first_by_instance = helpers.jobs_by_instance(sandbox, first_jobs)
    assert set(bookmarks) == set(sandbox.scenario.instances)
    for urn, job in first_by_instance.items():
        assert bookmarks[urn] == job["nextExportStartAt"]

    state2, out_dir2 = pipe_tap_into_jsonl(helpers, tmp_path, config, state, "second")
    second_jobs = sorted(set(sandbox.jobs) - set(first_jobs))
    assert len(second_jobs) == len(sandbox.scenario.instances)
    for urn, job in helpers.jobs_by_instance(sandbox, second_jobs).items():
        assert job["exportStartAt"] == bookmarks[urn], urn
    records2 = helpers.read_jsonl(out_dir2 / f"{helpers.RECORDS}.jsonl")
    assert len(records2) == helpers.expected_row_count(sandbox, second_jobs)
    assert {r["jobId"] for r in records2} == set(second_jobs)
    for urn, job in helpers.jobs_by_instance(sandbox, second_jobs).items():
        assert helpers.instance_bookmarks(state2)[urn] == job["nextExportStartAt"]
