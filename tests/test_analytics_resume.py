"""Analytics crash safety: kill -9 at chosen points, then resume with the last STATE.

A Singer target commits the records it read up to the last STATE and resumes the tap with it. So
the rows kept from the killed run (those before its last STATE) plus every row of the resumed run
must be every generated row exactly once, and jobs in flight must be polled again, not recreated.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import typing as t

import pytest
from analytics_kit import (
    ACTIVITIES,
    EXPORTS,
    analytics_config,
    bookmark,
    duplicates_and_losses,
    expected_rows,
    midnight,
    partition,
    record_row,
)
from faultkit import assert_no_secrets, tap_env

from tap_linkedin_crm.output.singer import STATE_EVERY_ROWS
from tap_linkedin_crm.sandbox import ACTIVITY, EMEA_CONTRACT, ContractSpec, Sandbox, Scenario

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.conftest import TapRun

RunTap = t.Callable[..., "TapRun"]
Message = dict[str, t.Any]
#: At least half of this per day (the sandbox varies each day's count by up to 50 %), so the first
#: window's file holds more than one checkpoint's worth of rows.
ACTIVITIES_PER_DAY = 5 * STATE_EVERY_ROWS // 2
MID_FILE_ROW = STATE_EVERY_ROWS + 1_234
DISCOVER_CONFIG = {"client_id": "id", "client_secret": "secret"}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    scenario = Scenario(
        contracts={EMEA_CONTRACT: ContractSpec(activities_per_day=ACTIVITIES_PER_DAY, seats=12)},
        # A few polls, so that a kill at the first STATE lands while jobs are polled.
        analytics_processing_polls=3,
    )
    with Sandbox(scenario) as sb:
        yield sb


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, t.Any]:
    """The discovered catalog with only the activities and exports streams selected."""
    config_path = tmp_path_factory.mktemp("discover") / "config.json"
    config_path.write_text(json.dumps({"refresh_token": "unused", **DISCOVER_CONFIG}))
    discovered = subprocess.run(
        [sys.executable, "-m", "tap_linkedin_crm", "--config", str(config_path), "--discover"],
        capture_output=True,
        text=True,
        check=True,
    )
    catalog = t.cast("dict[str, t.Any]", json.loads(discovered.stdout))
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] in {ACTIVITIES, EXPORTS}
    return catalog


def run_until(
    tmp_path: Path,
    config: dict[str, t.Any],
    catalog: dict[str, t.Any],
    when: Callable[[list[Message]], bool],
) -> list[Message]:
    """Run the tap unbuffered; kill -9 it as soon as `when(messages so far)` holds."""
    config_path, catalog_path = tmp_path / "killed-config.json", tmp_path / "killed-catalog.json"
    config_path.write_text(json.dumps(config))
    catalog_path.write_text(json.dumps(catalog))
    command = [sys.executable, "-m", "tap_linkedin_crm", "--config", str(config_path)]
    proc = subprocess.Popen(
        [*command, "--catalog", str(catalog_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=tap_env(),  # unbuffered: the kill lands where the output says
        bufsize=1,
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    messages: list[Message] = []
    sent = False
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.endswith("\n"):  # torn by the kill
                break
            messages.append(json.loads(line))
            if not sent and when(messages):
                proc.send_signal(signal.SIGKILL)
                sent = True
        proc.wait(timeout=30)
    finally:
        watchdog.cancel()
        proc.kill()
    assert sent, "the kill point was never reached"
    assert proc.returncode == -signal.SIGKILL
    return messages


def committed(messages: list[Message]) -> tuple[list[dict[str, t.Any]], dict[str, t.Any]]:
    """Activity records before the last STATE, and that STATE's value."""
    last = max((i for i, m in enumerate(messages) if m["type"] == "STATE"), default=-1)
    assert last >= 0, "the killed run wrote no STATE"
    kept = [
        m["record"]
        for m in messages[: last + 1]
        if m["type"] == "RECORD" and m["stream"] == ACTIVITIES
    ]
    return kept, messages[last]["value"]


def activity_rows(messages: list[Message]) -> int:
    return sum(1 for m in messages if m["type"] == "RECORD" and m["stream"] == ACTIVITIES)


def at_first_state(messages: list[Message]) -> bool:
    """Every job exists and is being polled; no row yet."""
    return messages[-1]["type"] == "STATE"


def mid_file(messages: list[Message]) -> bool:
    """Inside the first window's file, past its first checkpoint."""
    return messages[-1]["type"] == "RECORD" and activity_rows(messages) == MID_FILE_ROW


def between_windows(messages: list[Message]) -> bool:
    """Right after the first window's exports record: its rows are done, the next not begun."""
    return messages[-1]["type"] == "RECORD" and messages[-1]["stream"] == EXPORTS


@pytest.mark.slow
@pytest.mark.parametrize(
    "when",
    [at_first_state, mid_file, between_windows],
    ids=["while-polling", "mid-file", "between-windows"],
)
def test_kill_9_then_resume_from_the_last_state_gives_every_row_once(
    sandbox: Sandbox,
    run_tap: RunTap,
    tmp_path: Path,
    catalog: dict[str, t.Any],
    when: Callable[[list[Message]], bool],
) -> None:
    config = analytics_config(sandbox, start_days=2, window_days=1, contract_ids=[EMEA_CONTRACT])
    killed = run_until(tmp_path, config, catalog, when)
    kept, state = committed(killed)
    in_flight = partition(state, EMEA_CONTRACT, ACTIVITY).get("inFlightJobs", [])
    assert in_flight, "no job was in flight at the kill"
    if when is mid_file:
        first = in_flight[0]
        assert (first["fileIndex"], first["rowsDone"]) == (0, STATE_EVERY_ROWS)
        assert len(kept) == STATE_EVERY_ROWS
    jobs_before = set(sandbox.analytics_jobs)
    since = len(sandbox.requests)

    resumed = run_tap(config, state, catalog=catalog, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    # Jobs in flight were polled again, not recreated: the resumed run created none.
    later = sandbox.requests[since:]
    assert not [r for r in later if r.endpoint == "analytics_create"]
    assert set(sandbox.analytics_jobs) == jobs_before
    polled = {r.job_id for r in later if r.endpoint == "analytics_get"}
    assert {job["jobId"] for job in in_flight} <= polled
    # Every row of both windows exactly once, in what a target kept.
    rows = kept + resumed.records(ACTIVITIES)
    expected = [
        row
        for window in ((midnight(2), midnight(1)), (midnight(1), midnight(0)))
        for row in expected_rows(sandbox, EMEA_CONTRACT, ACTIVITY, *window)
    ]
    assert len(expected) > 2 * STATE_EVERY_ROWS
    doubled, lost = duplicates_and_losses(expected, [record_row(ACTIVITY, r) for r in rows])
    assert (doubled, lost) == (0, 0)
    final = resumed.final_state
    assert bookmark(final, EMEA_CONTRACT, ACTIVITY) == midnight(0)
    assert "inFlightJobs" not in partition(final, EMEA_CONTRACT, ACTIVITY)
    assert_no_secrets(sandbox, resumed.stdout, resumed.stderr)


@pytest.mark.slow
def test_kill_9_inside_a_split_window_then_resume_polls_the_halves_and_gives_every_row_once(
    run_tap: RunTap, tmp_path: Path, catalog: dict[str, t.Any]
) -> None:
    # LinkedIn refuses two-day windows: the one window of the run is split into two days, and the
    # kill lands inside the first day's file, past a checkpoint.
    scenario = Scenario(
        contracts={EMEA_CONTRACT: ContractSpec(activities_per_day=ACTIVITIES_PER_DAY, seats=12)},
        analytics_max_window_days=1,
    )
    with Sandbox(scenario) as sb:
        config = analytics_config(sb, start_days=2, window_days=2, contract_ids=[EMEA_CONTRACT])
        killed = run_until(tmp_path, config, catalog, mid_file)
        kept, state = committed(killed)
        in_flight = partition(state, EMEA_CONTRACT, ACTIVITY).get("inFlightJobs", [])
        halves = [(midnight(2), midnight(1)), (midnight(1), midnight(0))]
        assert [(j["startAt"], j["endAt"]) for j in in_flight] == halves
        assert in_flight[0]["rowsDone"] == STATE_EVERY_ROWS
        since = len(sb.requests)

        resumed = run_tap(config, state, catalog=catalog, timeout=120)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        rows = kept + resumed.records(ACTIVITIES)
        expected = [
            row for window in halves for row in expected_rows(sb, EMEA_CONTRACT, ACTIVITY, *window)
        ]
        doubled, lost = duplicates_and_losses(expected, [record_row(ACTIVITY, r) for r in rows])
        assert (doubled, lost) == (0, 0)
        assert bookmark(resumed.final_state, EMEA_CONTRACT, ACTIVITY) == midnight(0)
        # The halves' jobs were polled again, not recreated (nor the two-day window tried again).
        later = sb.requests[since:]
        assert not [
            r for r in later if r.endpoint == "analytics_create" and r.export_type == ACTIVITY
        ]
