"""Helpers shared by the fault-matrix and resume tests: row checks, state, secrets, processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing as t
from collections import Counter
from dataclasses import dataclass

from tap_linkedin_crm.columns import DEFAULT_COLUMN_TYPES, EXTRA_COLUMNS_FIELD

if t.TYPE_CHECKING:
    from pathlib import Path

    from tap_linkedin_crm.sandbox import Sandbox

RECORDS = "crm_data_validation_records"
EXPORTS = "crm_data_validation_exports"
CLIENT_ID = "fault-matrix-client"
#: Distinctive, so a leak anywhere in the output is found by a plain substring search.
CLIENT_SECRET = "fm-secret-7Qx2-do-not-log"
SIGNED_QUERY = re.compile(r"x-li-ambry-ep=|Bearer\s+\S")


def partitions(state: t.Mapping[str, t.Any], stream: str = RECORDS) -> dict[str, dict[str, t.Any]]:
    """State partitions of a stream, by CRM instance URN."""
    return {
        p["context"]["crmInstanceId"]: p
        for p in state.get("bookmarks", {}).get(stream, {}).get("partitions", [])
    }


def bookmark(state: t.Mapping[str, t.Any], urn: str) -> int | None:
    """`nextExportStartAt` of an instance in a state, or None."""
    return partitions(state).get(urn, {}).get("nextExportStartAt")


def in_flight(state: t.Mapping[str, t.Any], urn: str) -> dict[str, t.Any] | None:
    """`inFlightJob` of an instance in a state, or None."""
    return partitions(state).get(urn, {}).get("inFlightJob")


# Rows ---------------------------------------------------------------------------------------


_BOOLEAN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def project_expected(raw: t.Mapping[str, str]) -> tuple[t.Any, ...]:
    """A generated CSV row as the tap must emit it, reduced for comparison.

    Strings (crmRecordId first) and undeclared columns must be byte-exact, booleans converted;
    timestamps only present or not (their conversion is `test_csv_decoding`'s business).
    """
    values = []
    for name, kind in DEFAULT_COLUMN_TYPES.items():
        value = raw.get(name)
        if kind == "boolean" and value is not None:
            values.append(_BOOLEAN_WORDS.get(value.lower()))
        elif kind == "timestamp":
            values.append(bool(value))
        else:
            values.append(value)
    extra = tuple(sorted((k, v) for k, v in raw.items() if k not in DEFAULT_COLUMN_TYPES))
    return (raw.get("crmRecordId"), tuple(values), extra)


def project_record(record: t.Mapping[str, t.Any]) -> tuple[t.Any, ...]:
    """An emitted record, reduced as `project_expected` reduces a generated row."""
    values = [
        record.get(name) is not None if kind == "timestamp" else record.get(name)
        for name, kind in DEFAULT_COLUMN_TYPES.items()
    ]
    extra = tuple(sorted((record.get(EXTRA_COLUMNS_FIELD) or {}).items()))
    return (record.get("crmRecordId"), tuple(values), extra)


@dataclass
class RowCheck:
    """How the rows emitted for one job compare with the rows the sandbox generated."""

    expected: int
    emitted: int
    lost: int
    duplicated: int
    in_order: bool

    @property
    def exact(self) -> bool:
        """Every row exactly once, in file order, with its values."""
        return self.in_order and not self.lost and not self.duplicated


def check_rows(
    sb: Sandbox, job_id: int, records: list[dict[str, t.Any]], *, values: bool = True
) -> RowCheck:
    """Compare emitted records of `job_id` with the job's generated rows.

    With `values`, each record's crmRecordId and values (typed) must match the generated row at
    the same place; without, only crmRecordId (fast, for big exports).
    """
    mine = [r for r in records if r["jobId"] == job_id]
    project = project_expected if values else (lambda raw: raw["crmRecordId"])
    got_project = project_record if values else (lambda rec: rec["crmRecordId"])
    expected = [project(raw) for raw in sb.iter_expected_rows(job_id)]
    got = [got_project(rec) for rec in mine]
    want, have = Counter(expected), Counter(got)
    lost = sum((want - have).values())
    duplicated = sum((have - want).values())
    positions = [(r["fileIndex"], r["rowNumber"]) for r in mine]
    in_order = (
        got == expected and positions == sorted(positions) and len(set(positions)) == len(positions)
    )
    return RowCheck(len(expected), len(got), lost, duplicated, in_order)


def emitted_jobs(records: list[dict[str, t.Any]], urn: str) -> list[int]:
    """Job ids whose rows were emitted for an instance, in first-seen order."""
    return list(dict.fromkeys(r["jobId"] for r in records if r["crmInstanceId"] == urn))


# Secrets ------------------------------------------------------------------------------------


def issued_secrets(sb: Sandbox) -> set[str]:
    """Every secret the sandbox knows: access tokens it issued and signed-URL tokens."""
    return sb.issued_secrets()


def assert_no_secrets(sb: Sandbox, *texts: str) -> None:
    """No client secret, access token or signed URL query string in any of `texts`."""
    secrets = issued_secrets(sb)
    assert secrets, "the sandbox issued no secret: the check would prove nothing"
    for text in texts:
        leaked = [s[:6] + "..." for s in secrets if s in text]
        assert not leaked, f"secrets leaked into the output: {leaked}"
        match = SIGNED_QUERY.search(text)
        assert match is None, f"signed URL or bearer token in the output: {match}"


# Processes ----------------------------------------------------------------------------------


def tap_env(*, unbuffered: bool = True) -> dict[str, str]:
    """Environment of a tap process; unbuffered, a kill loses no line the tap already wrote."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return env


def start_tap(
    tmp_path: Path,
    config: dict[str, t.Any],
    state: dict[str, t.Any] | None,
    name: str,
    *,
    unbuffered: bool = True,
) -> subprocess.Popen[str]:
    """Start `python -m tap_linkedin_crm`, stdout piped (text), stderr to `<name>-stderr.log`."""
    config_path = tmp_path / f"{name}-config.json"
    config_path.write_text(json.dumps(config))
    cmd = [sys.executable, "-m", "tap_linkedin_crm", "--config", str(config_path)]
    if state is not None:
        state_path = tmp_path / f"{name}-state.json"
        state_path.write_text(json.dumps(state))
        cmd += ["--state", str(state_path)]
    stderr_path = tmp_path / f"{name}-stderr.log"
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=stderr_path.open("w"),
        text=True,
        env=tap_env(unbuffered=unbuffered),
        bufsize=1,
    )


def committed(messages: list[dict[str, t.Any]]) -> tuple[list[dict[str, t.Any]], dict[str, t.Any]]:
    """Records a target commits (those before the last STATE), and that STATE's value."""
    last = max((i for i, m in enumerate(messages) if m["type"] == "STATE"), default=-1)
    records = [
        m["record"]
        for m in messages[: last + 1]
        if m["type"] == "RECORD" and m["stream"] == RECORDS
    ]
    state = messages[last]["value"] if last >= 0 else {}
    return records, state
