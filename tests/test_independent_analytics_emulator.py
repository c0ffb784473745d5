"""The real tap process against an independent analytics emulator (not our sandbox).

`independent_analytics_emulator` was written from the API notes alone; its headers, dates, job
bodies and faults differ from the sandbox's, as another LinkedIn emulator's would.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
import typing as t
from collections import Counter
from pathlib import Path

import pytest
from independent_analytics_emulator import Emulator, Profile
from process_runs import ProcessRun, run_process

ROWS = {
    "activity": "sales_activities",
    "activity_outcome": "sales_activity_outcomes",
    "seat": "sales_seats",
}
CONTRACTS = ("urn:li:contract:7001", "urn:li:contract:7002")
SOURCE = str(Path(sys.executable).parent / "source-linkedin-crm")


def midnight(days_back: int) -> int:
    today = dt.datetime.now(tz=dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((today - dt.timedelta(days=days_back)).timestamp() * 1000)


def run(
    emu: Emulator, tmp_path: Path, state: dict[str, t.Any] | None = None, **overrides: t.Any
) -> ProcessRun:
    config = emu.config(
        analytics_start_date=dt.datetime.fromtimestamp(midnight(4) / 1000, tz=dt.UTC).isoformat(),
        **overrides,
    )
    (tmp_path / "config.json").write_text(json.dumps(config))
    args = ["--config", str(tmp_path / "config.json")]
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        args += ["--state", str(tmp_path / "state.json")]
    return run_process(args, timeout=120)


def assert_every_row_once(emu: Emulator, result: ProcessRun, days: int = 4) -> None:
    """Every row the emulator holds for [midnight(days), today) arrived exactly once, typed."""
    for export_type, stream in ROWS.items():
        want = Counter(
            json.dumps(row, sort_keys=True)
            for contract in CONTRACTS
            for row in emu.rows(contract, export_type, midnight(days), midnight(0))
        )
        got: Counter[str] = Counter()
        for record in result.records(stream):
            assert record["invalidValues"] is None, record
            row = dict(record["extraColumns"] or {})
            for name in ("activityId", "activityType", "memberIdentityKey", "seatId", "createdAt"):
                if record.get(name) is not None:
                    row[name] = str(record[name])
            if "createdAt" in row:  # typed: compare the instant, not the spelling
                row["createdAt"] = emu.created_at_text(row["createdAt"])
            got[json.dumps(row, sort_keys=True)] += 1
        assert got == want, stream


def assert_no_secret(emu: Emulator, result: ProcessRun) -> None:
    text = result.stdout + result.stderr
    for secret in (emu.client_secret, emu.refresh_token, "secretpart", "x-li-ambry-ep=tok"):
        assert secret not in text


def test_job_status_wrapped_in_value_is_read(tmp_path: Path) -> None:
    # Documented unwrapped, but the create action's answer is wrapped; another emulator (or a
    # LinkedIn change) may wrap the GET too: every window failed "has no status".
    with Emulator(Profile(get_wrapped=True)) as emu:
        result = run(emu, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert_every_row_once(emu, result)
    assert_no_secret(emu, result)


VARIANTS: dict[str, dict[str, t.Any]] = {
    "documented-dates": {},
    "dates-without-leading-zeros": {"created_at": "mdY_nopad"},
    "dates-with-slashes": {"created_at": "mdY_slash"},
    "dates-epoch-ms": {"created_at": "epoch_ms"},
    "dates-iso-offset": {"created_at": "iso_ms_offset"},
    "no-memberIdentityKey-column": {
        "activity_header": ("activityId", "activityType", "createdAt", "seatId")
    },
    "plain-lf-no-bom-ids-as-numbers-lowercase-no-rowcount": {
        "bom": False,
        "crlf": False,
        "id_as_string": False,
        "create_wrapped": False,
        "status_case": "lower",
        "row_count": "absent",
    },
    "rowcount-as-string-titlecase-201": {
        "row_count": "str",
        "status_case": "title",
        "create_status": 201,
    },
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_plausible_variants_sync_every_row_once(tmp_path: Path, variant: str) -> None:
    with Emulator(Profile(**VARIANTS[variant])) as emu:
        result = run(emu, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_every_row_once(emu, result)
    assert_no_secret(emu, result)
    assert len(result.records("sales_contracts")) == 3


@pytest.mark.parametrize("empty", ["header-only", "zero-bytes"])
def test_windows_without_rows_move_the_bookmark(tmp_path: Path, empty: str) -> None:
    profile = Profile(rows_per_day=0, header_only_empty=empty == "header-only")
    with Emulator(profile) as emu:
        result = run(emu, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for stream in ROWS.values():
        assert result.records(stream) == []
        entries = result.final_state["bookmarks"][stream]["partitions"]
        assert {e["replication_key_value"] for e in entries} == {midnight(0)}
    # rowCount 0 and a 0-byte file agree: one job per window (2 contracts, 3 types, 2 windows),
    # not a second job per window to make sure (each can take LinkedIn hours and counts against
    # the daily quota).
    assert len(emu.jobs) == 12
    assert "empty" not in result.stderr


def airbyte_read(
    emu: Emulator, tmp_path: Path, state: list[dict[str, t.Any]], **overrides: t.Any
) -> list[dict[str, t.Any]]:
    """`source-linkedin-crm read` of every stream, incremental; its messages (exit 0 checked)."""
    config = emu.config(
        analytics_start_date=dt.datetime.fromtimestamp(midnight(4) / 1000, tz=dt.UTC).isoformat(),
        **overrides,
    )
    (tmp_path / "config.json").write_text(json.dumps(config))
    discovered = subprocess.run(
        [SOURCE, "discover", "--config", str(tmp_path / "config.json")],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    catalog = next(
        m for m in map(json.loads, discovered.stdout.splitlines()) if m["type"] == "CATALOG"
    )
    configured = {
        "streams": [
            {"stream": s, "sync_mode": "incremental" if "incremental" in s["supported_sync_modes"]
             else "full_refresh", "destination_sync_mode": "append"}
            for s in catalog["catalog"]["streams"]
        ]
    }  # fmt: skip
    (tmp_path / "catalog.json").write_text(json.dumps(configured))
    (tmp_path / "state.json").write_text(json.dumps(state))
    read = subprocess.run(
        [SOURCE, "read", "--config", str(tmp_path / "config.json"), "--catalog",
         str(tmp_path / "catalog.json"), "--state", str(tmp_path / "state.json")],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr[-2000:]
    return [json.loads(line) for line in read.stdout.splitlines()]


def stream_of(message: dict[str, t.Any]) -> str:
    if message["type"] == "STATE":
        return str(message["state"]["stream"]["stream_descriptor"]["name"])
    if message["type"] == "RECORD":
        return str(message["record"]["stream"])
    return ""


def exports_state_before_uncommitted_rows(messages: list[dict[str, t.Any]]) -> int:
    """Index of an exports STATE followed by a rows STATE, with rows sent between the two."""
    for k, (this, after) in enumerate(itertools.pairwise(messages)):
        if not (this["type"] == after["type"] == "STATE"):
            continue
        stream = stream_of(after)
        if stream_of(this) != "sales_analytics_exports" or stream not in ROWS.values():
            continue
        for earlier in reversed(messages[:k]):
            if stream_of(earlier) == stream:
                if earlier["type"] == "RECORD":
                    return k
                break  # the stream's previous STATE: nothing uncommitted
    raise AssertionError


def test_airbyte_read_stopped_between_the_exports_and_rows_states_loses_nothing(
    tmp_path: Path,
) -> None:
    # The exports stream's STATE goes out just before its rows stream's. Stopped between the two
    # (or a destination that committed one and not yet the other), the next read has the exports
    # stream's newer copy of the partition: the rows stream's own, older one must win, or the
    # rows it never committed are skipped.
    with Emulator(Profile()) as emu:
        first = airbyte_read(emu, tmp_path, [], analytics_window_days=1)
        cut = exports_state_before_uncommitted_rows(first)
        seen = first[: cut + 1]
        last_states = {stream_of(m): m["state"] for m in seen if m["type"] == "STATE"}
        second = airbyte_read(emu, tmp_path, list(last_states.values()), analytics_window_days=1)
    for stream in ROWS.values():
        committed_until = max(
            (k for k, m in enumerate(seen) if m["type"] == "STATE" and stream_of(m) == stream),
            default=-1,
        )
        rows = [
            m["record"]["data"]
            for m in [*seen[: committed_until + 1], *second]
            if m["type"] == "RECORD" and stream_of(m) == stream
        ]
        everything = [
            m["record"]["data"] for m in first if m["type"] == "RECORD" and stream_of(m) == stream
        ]

        def key(row: dict[str, t.Any]) -> str:
            return json.dumps({k: v for k, v in row.items() if k != "jobId"}, sort_keys=True)

        assert Counter(map(key, rows)) == Counter(map(key, everything)), stream


@pytest.mark.parametrize("style", ["iso", "s"])
def test_expire_at_in_seconds_or_iso_text_is_read(tmp_path: Path, style: str) -> None:
    # Documented as epoch ms; ISO text failed every window ("not a number"), and seconds made
    # every URL look expired since 1970 (a needless GET of the job before each download).
    with Emulator(Profile(expire_at=style)) as emu:
        result = run(emu, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_every_row_once(emu, result)
    gets = [p for method, p, _ in emu.log if method == "GET" and "ExportJobs/" in p]
    assert len(gets) == 2 * len(emu.jobs)  # ENQUEUED, then COMPLETED: no refresh
    exports = result.records("sales_analytics_exports")
    assert all(1e12 < e["expireAt"] < 1e13 for e in exports)


def test_a_download_url_given_as_a_path_is_fetched_from_the_api_host(tmp_path: Path) -> None:
    # Every window failed: "Refusing download URL :///ambry/?<redacted>: only https:// ...".
    with Emulator(Profile(relative_url=True)) as emu:
        result = run(emu, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_every_row_once(emu, result)
    assert_no_secret(emu, result)
