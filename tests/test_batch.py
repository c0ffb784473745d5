"""BATCH output, end to end: real tap processes against the sandbox, files read as SDK targets do.

What a user relies on: the files hold the records the RECORD path would carry (stream maps and
deselection applied); exactly-once holds as for RECORD (a STATE follows only files already
announced, a crash resumes after the last announced file, a resumed run announces no file twice and
leaves no half-written file behind); two runs or instances never collide; a bad `batch_config`
stops the tap before any export job with one clear line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import typing as t
from dataclasses import dataclass

import pytest
from batchkit import (
    Message,
    before_last_state,
    manifests,
    part_files,
    read_announced,
    records_by_stream,
    uri_path,
    visible_files,
)
from faultkit import (
    CLIENT_ID,
    CLIENT_SECRET,
    EXPORTS,
    RECORDS,
    bookmark,
    check_rows,
    emitted_jobs,
    in_flight,
    start_tap,
)

from tap_linkedin_crm.sandbox import (
    DYNAMICS_INSTANCE,
    SFDC_INSTANCE,
    Fault,
    InstanceSpec,
    Sandbox,
    Scenario,
)
from tap_linkedin_crm.tap import TapLinkedInCRM

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.conftest import TapRun

RunTap = t.Callable[..., "TapRun"]

ENCODINGS = {
    "jsonl-gzip": {"format": "jsonl", "compression": "gzip"},
    "jsonl-none": {"format": "jsonl", "compression": "none"},
    "parquet": {"format": "parquet", "compression": "gzip"},
}
SUFFIXES = {"jsonl-gzip": ".jsonl.gz", "jsonl-none": ".jsonl", "parquet": ".parquet"}


def root_uri(root: Path) -> str:
    """A `file://` URI as users write it: the path as is (`Path.as_uri` would percent-encode it,
    and neither fsspec nor singer-sdk decode a local path)."""
    return f"file://{root}"


def batch_config(root: Path, encoding: str = "jsonl-gzip", **extra: t.Any) -> dict[str, t.Any]:
    return {
        "encoding": ENCODINGS[encoding],
        "storage": {"root": root_uri(root), "prefix": "li-"},
        **extra,
    }


def replay_state(sb: Sandbox, job_ids: t.Iterable[int]) -> dict[str, t.Any]:
    """A state with these jobs in flight, no row done: the next run emits the very same jobs."""
    jobs = sb.jobs
    return {
        "bookmarks": {
            RECORDS: {
                "partitions": [
                    {
                        "context": {"crmInstanceId": jobs[j]["instance"]},
                        "inFlightJob": {"jobId": j, "exportStartAt": jobs[j]["exportStartAt"]},
                    }
                    for j in job_ids
                ]
            }
        }
    }


# Same records as the RECORD path ----------------------------------------------------------------

# Aliases, a clone with a filter, an expression, a removed property, and the exports stream's own
# map (it stays RECORD); the catalog deselects `linkedInProfileUrl` as well.
STREAM_MAPS = {
    RECORDS: {"__alias__": "people", "email": None, "emailHash": "md5(email) if email else None"},
    "flagged": {"__source__": RECORDS, "__filter__": "notAtCompany == True"},
    EXPORTS: {"downloadUrls": None},
}
ROW_ALIASES = {"people", "flagged"}
#: Not a divisor of the files' 1,000 rows: batch files end inside and across CSV files.
EQUALITY_BATCH = 101


@pytest.fixture(scope="module")
def awkward() -> Iterator[Sandbox]:
    """Header drift (extraColumns), values that fail their type (invalidValues), NUL bytes,
    70,000-character values (one in every 997 rows), quoted line breaks, non-ASCII, a BOM, gzip."""
    scenario = Scenario(
        instances={
            DYNAMICS_INSTANCE: InstanceSpec(rows=3000, files=3, header_drift=True),
            SFDC_INSTANCE: InstanceSpec(rows=150, files=2, gzip=True),
        },
        bom=True,
        nul_bytes=True,
        long_field_chars=70_000,
        job_processing_polls=1,
    )
    with Sandbox(scenario) as sb:
        yield sb


def deselect_profile_url(config: dict[str, t.Any]) -> dict[str, t.Any]:
    catalog = TapLinkedInCRM(config=config).catalog_dict
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == ["properties", "linkedInProfileUrl"]:
                entry["metadata"]["selected"] = False
    return catalog


def parquet_view(
    expected: list[dict[str, t.Any]], file_records: list[dict[str, t.Any]]
) -> list[dict[str, t.Any]]:
    """`expected` as a parquet file of the same records reads back (`pyarrow` struct columns).

    An object without declared properties (extraColumns, invalidValues) becomes a struct of
    every member any record of the file has: a member a record lacks reads back as null.
    """
    members: dict[str, set[str]] = {}
    for record in expected:
        for key, value in record.items():
            if isinstance(value, dict):
                members.setdefault(key, set()).update(value)
    viewed = []
    for record in expected:
        row = dict(record)
        for key, names in members.items():
            if isinstance(row.get(key), dict):
                row[key] = dict.fromkeys(names) | row[key]
        viewed.append(row)
    assert len(file_records) == len(viewed)
    return viewed


@pytest.mark.slow
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_batch_files_hold_exactly_the_records_of_the_record_path(
    encoding: str, awkward: Sandbox, run_tap: RunTap, tmp_path: Path
) -> None:
    config = awkward.tap_config(column_types={"recordType": "boolean"}, stream_maps=STREAM_MAPS)
    catalog = deselect_profile_url(config)
    before = set(awkward.jobs)
    plain = run_tap(config, catalog=catalog)
    assert plain.returncode == 0, plain.stderr[-2000:]
    jobs = sorted(set(awkward.jobs) - before)

    # The same jobs again, as BATCH files of 101 records: boundaries inside and across CSV files.
    root = tmp_path / "batch root é"  # a space and non-ASCII: file URIs are read back as written
    batch_cfg = batch_config(root, encoding, batch_size=EQUALITY_BATCH)
    batched = run_tap(
        {**config, "batch_config": batch_cfg}, replay_state(awkward, jobs), catalog=catalog
    )
    assert batched.returncode == 0, batched.stderr[-2000:]
    assert sorted(awkward.jobs) == sorted(before | set(jobs)), "the replay created new jobs"

    schemas = [m for m in plain.messages if m["type"] == "SCHEMA"]
    assert [m for m in batched.messages if m["type"] == "SCHEMA"] == schemas
    assert {m["stream"] for m in schemas} == ROW_ALIASES | {EXPORTS}
    # Rows streams as BATCH only, the exports stream as RECORD only.
    assert {m["stream"] for m in batched.messages if m["type"] == "BATCH"} == ROW_ALIASES
    assert {m["stream"] for m in batched.messages if m["type"] == "RECORD"} == {EXPORTS}
    assert len(batched.records(EXPORTS)) == len(jobs)

    files = read_announced(batched.messages)
    assert all(
        m["encoding"] == ENCODINGS[encoding] for m in batched.messages if m["type"] == "BATCH"
    )
    assert all(uri.endswith(SUFFIXES[encoding]) for _, uri, _ in files)
    assert all(0 < len(records) <= EQUALITY_BATCH for _, _, records in files)
    got = records_by_stream(files)
    for alias in ROW_ALIASES:
        expected = plain.records(alias)
        assert expected, alias
        assert all("linkedInProfileUrl" not in r for r in expected), "deselected"
        if encoding != "parquet":
            assert got[alias] == expected, alias
            continue
        start = 0
        for stream, _, records in files:
            if stream == alias:
                chunk = expected[start : start + len(records)]
                assert records == parquet_view(chunk, records), alias
                start += len(records)
        assert start == len(expected)
    people, flagged = plain.records("people"), plain.records("flagged")
    assert all("email" not in r and "emailHash" in r for r in people)
    assert all("email" in r and "emailHash" not in r for r in flagged)
    assert all(r["notAtCompany"] is True for r in flagged)
    assert 0 < len(flagged) < len(people)
    # What the data exercised, or the comparison proved less than it claims.
    values = [
        v
        for r in people + flagged
        for v in [*r.values(), *(r["invalidValues"] or {}).values()]
        if isinstance(v, str)
    ]
    assert any("\x00" in v for v in values)
    assert any(len(v) >= 70_000 for v in values)
    assert any(r["extraColumns"] for r in plain.records("people"))
    assert any(r["invalidValues"] for r in plain.records("people"))
    assert not part_files(root)
    assert visible_files(root) == {uri_path(uri) for _, uri, _ in files}


# Crash safety -----------------------------------------------------------------------------------

BIG = DYNAMICS_INSTANCE  # 30,000 rows in 4 files of 7,500
SMALL = SFDC_INSTANCE  # 120 gzip rows in 2 files, emitted first
BIG_ROWS = 30_000
FILE_ROWS = 7_500
BATCH_SIZE = 7_000  # not a divisor of the file size: files of rows end inside and across CSV files


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    scenario = Scenario(
        clients={CLIENT_ID: CLIENT_SECRET},
        instances={
            SMALL: InstanceSpec(rows=120, files=2, gzip=True),
            BIG: InstanceSpec(rows=BIG_ROWS, files=4),
        },
        job_processing_polls=3,
    )
    with Sandbox(scenario) as sb:
        yield sb


@dataclass
class Watched:
    """A tap process whose stdout is read line by line, and its batch storage root."""

    root: Path
    messages: list[Message]

    @property
    def last(self) -> Message:
        return self.messages[-1]

    def count(self, kind: str) -> int:
        return sum(m["type"] == kind for m in self.messages)


@dataclass
class Killed:
    messages: list[Message]
    returncode: int
    stderr: str
    parts_after_kill: list[Path]
    #: The messages up to the one after which the signal was sent: what the consumer had read.
    consumed: list[Message]


def run_and_kill(
    tmp_path: Path,
    cfg: dict[str, t.Any],
    name: str,
    when: Callable[[Watched], bool],
    *,
    sig: int = signal.SIGKILL,
) -> Killed:
    """Run the tap, send `sig` once `when` holds (checked after each line), read to the end.

    `sig` 0 sends nothing: `when` acts on the run itself.
    """
    root = uri_path(cfg["batch_config"]["storage"]["root"])
    proc = start_tap(tmp_path, cfg, None, name, unbuffered=sig != signal.SIGTERM)
    watchdog = threading.Timer(90, proc.kill)
    watchdog.start()
    watched = Watched(root, [])
    sent = False
    parts: list[Path] = []
    consumed: list[Message] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.endswith("\n"):
                break
            watched.messages.append(json.loads(line))
            if not sent and when(watched):
                if sig:
                    proc.send_signal(sig)
                sent = True
                consumed = list(watched.messages)
                if sig == signal.SIGKILL:
                    proc.wait(timeout=30)
                    parts = part_files(root)
        proc.wait(timeout=60)
    finally:
        watchdog.cancel()
        proc.kill()
    assert sent, f"{name}: the kill point was never reached"
    stderr = (tmp_path / f"{name}-stderr.log").read_text()
    return Killed(watched.messages, proc.returncode, stderr, parts, consumed)


def while_polling(w: Watched) -> bool:
    """The first STATE: every job exists and is being polled; no file yet."""
    return w.last["type"] == "STATE"


def between_instances(w: Watched) -> bool:
    """The small instance's exports record: its file announced, the big one's rows not begun."""
    return w.last["type"] == "RECORD" and w.last["stream"] == EXPORTS


def after_batch_before_state(w: Watched) -> bool:
    """The second file of the big instance announced; the STATE covering it not yet written."""
    return w.last["type"] == "BATCH" and w.count("BATCH") == 3


def right_after_state(w: Watched) -> bool:
    """The STATE that follows the second file of the big instance."""
    return w.last["type"] == "STATE" and w.count("BATCH") == 3


def mid_file(w: Watched) -> bool:
    """While the big instance's third file is half written (after the STATE of its second)."""
    if not (w.last["type"] == "STATE" and w.count("BATCH") == 3):
        return False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for part in part_files(w.root):
            try:
                if part.stat().st_size > 0:
                    return True
            except FileNotFoundError:  # renamed meanwhile
                continue
        time.sleep(0.002)
    msg = "no part file appeared"
    raise AssertionError(msg)


KILL_POINTS = {
    "while-polling": while_polling,
    "between-instances": between_instances,
    "after-batch-before-state": after_batch_before_state,
    "right-after-state": right_after_state,
    "mid-file": mid_file,
}


def crash_config(sb: Sandbox, root: Path, encoding: str = "jsonl-gzip") -> dict[str, t.Any]:
    return sb.tap_config(
        request_retry_delay=0.05,
        batch_config=batch_config(root, encoding, batch_size=BATCH_SIZE),
    )


def assert_every_row_once(
    sb: Sandbox, kept: list[dict[str, t.Any]], resumed: list[dict[str, t.Any]], state: Message
) -> None:
    for urn in (SMALL, BIG):
        union = [r for r in kept + resumed if r["crmInstanceId"] == urn]
        jobs = emitted_jobs(union, urn)
        assert jobs, f"no rows of {urn}"
        for job_id in jobs:
            result = check_rows(sb, job_id, union, values=urn == SMALL)
            assert result.exact, f"{urn} job {job_id}: {result}"
        assert bookmark(state, urn) == sb.jobs[jobs[-1]]["nextExportStartAt"]
        assert in_flight(state, urn) is None


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_then_resume_from_last_state_gives_every_row_once_in_files_announced_once(
    point: str, sandbox: Sandbox, run_tap: RunTap, tmp_path: Path
) -> None:
    root = tmp_path / "batches"
    cfg = crash_config(sandbox, root)
    first = run_and_kill(tmp_path, cfg, f"kill-{point}", KILL_POINTS[point])
    assert first.returncode == -signal.SIGKILL
    # The consumer had read up to the kill point (the tap may have written a line or two more
    # before the signal landed): it committed the files announced up to its last STATE.
    seen, state = before_last_state(first.consumed)
    assert state, "the killed run wrote no STATE"
    # A STATE follows only files already announced: every STATE's position is covered.
    assert_states_follow_files(first.messages)
    if point == "mid-file":
        assert first.parts_after_kill, "the kill did not land while a file was being written"
    if point == "while-polling":
        assert not first.parts_after_kill

    second = run_tap(cfg, state, timeout=90)
    assert second.returncode == 0, second.stderr[-2000:]
    if first.parts_after_kill:
        assert "a batch file a stopped tap left unfinished" in second.stderr

    kept = records_by_stream(read_announced(seen)).get(RECORDS, [])
    resumed = records_by_stream(read_announced(second.messages)).get(RECORDS, [])
    assert_every_row_once(sandbox, kept, resumed, second.final_state)

    # No file announced twice (each run names its own); nothing half-written left anywhere.
    first_uris, second_uris = manifests(first.messages), manifests(second.messages)
    assert len(set(first_uris + second_uris)) == len(first_uris) + len(second_uris)
    assert not part_files(root)
    assert visible_files(root) == {uri_path(u) for u in first_uris + second_uris}
    if point == "after-batch-before-state":
        # The consumer saw the file, not its STATE: its rows come again, in a new file.
        assert first.consumed[-1]["type"] == "BATCH"
        assert manifests(first.consumed)[-1] not in manifests(seen)


def assert_states_follow_files(messages: list[Message]) -> None:
    """At each STATE, the files announced before it hold the in-flight job's rows up to the
    position the STATE records: not one fewer (a row lost on resume), not one more (a row twice)."""
    files = iter(read_announced(messages))
    rows: dict[int, int] = {}
    for message in messages:
        if message["type"] == "BATCH":
            _, _, records = next(files)
            for record in records:
                rows[record["jobId"]] = rows.get(record["jobId"], 0) + 1
        elif message["type"] == "STATE":
            job = in_flight(message["value"], BIG)
            if job is not None:
                done = job.get("fileIndex", 0) * FILE_ROWS + job.get("rowsDone", 0)
                assert rows.get(job["jobId"], 0) == done, (job, rows)


@pytest.mark.slow
def test_sigterm_while_a_file_is_written_announces_it_before_the_last_state(
    sandbox: Sandbox, run_tap: RunTap, tmp_path: Path
) -> None:
    root = tmp_path / "batches"
    cfg = crash_config(sandbox, root, "jsonl-none")
    first = run_and_kill(tmp_path, cfg, "sigterm", mid_file, sig=signal.SIGTERM)
    assert first.returncode == 130, first.stderr[-2000:]
    assert first.messages[-1]["type"] == "STATE"
    assert first.messages[-2]["type"] == "BATCH", "the half-written file was not finished"
    assert not part_files(root)
    second = run_tap(cfg, first.messages[-1]["value"], timeout=90)
    assert second.returncode == 0, second.stderr[-2000:]
    kept = records_by_stream(read_announced(first.messages)).get(RECORDS, [])
    resumed = records_by_stream(read_announced(second.messages)).get(RECORDS, [])
    assert_every_row_once(sandbox, kept, resumed, second.final_state)


@pytest.mark.slow
def test_storage_failing_mid_run_stops_before_any_further_state_and_resumes(
    sandbox: Sandbox, run_tap: RunTap, tmp_path: Path
) -> None:
    """The root vanishes after the first file of the big instance: the tap stops at once."""
    root, moved = tmp_path / "batches", tmp_path / "moved"
    cfg = crash_config(sandbox, root)

    def break_root(w: Watched) -> bool:
        if w.last["type"] != "STATE" or w.count("BATCH") != 2:
            return False
        root.rename(moved)  # the target read the announced files already
        root.write_text("not a directory any more")
        return True

    first = run_and_kill(tmp_path, cfg, "broken-root", break_root, sig=0)
    assert first.returncode == 1
    assert "a batch file could not be written" in first.stderr
    assert "Traceback" not in first.stderr
    batches = [i for i, m in enumerate(first.messages) if m["type"] == "BATCH"]
    states = [i for i, m in enumerate(first.messages) if m["type"] == "STATE"]
    assert len(batches) == 2, "a file was announced after the storage failed"
    # The last STATE covers exactly the rows of the files announced before it, not one more.
    _, state = before_last_state(first.messages)
    assert states[-1] > batches[-1]
    seen_rows = len(records_by_stream(read_back(first.messages, moved))[RECORDS])
    job = in_flight(state, BIG)
    assert job is not None
    assert job["fileIndex"] * FILE_ROWS + job["rowsDone"] == seen_rows - 120

    root.unlink()
    second = run_tap(cfg, state, timeout=90)
    assert second.returncode == 0, second.stderr[-2000:]
    kept = records_by_stream(read_back(first.messages, moved))[RECORDS]
    resumed = records_by_stream(read_announced(second.messages))[RECORDS]
    assert_every_row_once(sandbox, kept, resumed, second.final_state)


def test_stream_map_failing_on_one_row_resumes_that_row_whole_in_every_alias(
    run_tap: RunTap, tmp_path: Path
) -> None:
    """A clone's map raises on row 25: no alias holds row 25 from the first run (the maps run
    before any file takes the row), the error names the map, and once the map is fixed every
    row of every alias arrives exactly once."""
    clone = "records_clone"
    root = tmp_path / "batches"
    with Sandbox(Scenario(instances={SMALL: InstanceSpec(rows=40, files=1)})) as sb:
        cfg = sb.tap_config(
            crm_instance_ids=[SMALL], batch_config=batch_config(root, batch_size=10)
        )
        broken = {
            RECORDS: {"x": "rowNumber"},
            clone: {"__source__": RECORDS, "y": "1 // (rowNumber - 25)"},
        }
        first = run_tap({**cfg, "stream_maps": broken})
        assert first.returncode == 1, first.stderr[-2000:]
        assert "Traceback" not in first.stderr
        assert "ZeroDivisionError" in first.stderr
        assert "row 25" in first.stderr
        committed, state = before_last_state(first.messages)
        fixed = {RECORDS: {"x": "rowNumber"}, clone: {"__source__": RECORDS, "y": "rowNumber"}}
        second = run_tap({**cfg, "stream_maps": fixed}, state)
        assert second.returncode == 0, second.stderr[-2000:]
    kept = records_by_stream(read_announced(committed))
    resumed = records_by_stream(read_announced(second.messages))
    assert all(r["rowNumber"] < 25 for records in kept.values() for r in records)
    for stream in (RECORDS, clone):
        rows = [r["rowNumber"] for r in kept.get(stream, []) + resumed[stream]]
        assert sorted(rows) == list(range(1, 41)), stream


def read_back(messages: list[Message], moved_to: Path) -> list[tuple[str, str, list[t.Any]]]:
    """Announced files that were moved to `moved_to`, read as a target would have."""
    moved = [
        {**m, "manifest": [root_uri(moved_to / uri_path(u).name) for u in m["manifest"]]}
        if m["type"] == "BATCH"
        else m
        for m in messages
    ]
    return read_announced(moved)


# Two instances, one root ------------------------------------------------------------------------


@pytest.mark.slow
def test_two_taps_writing_into_one_root_at_once_never_collide(tmp_path: Path) -> None:
    # The first tap's second download pauses for 10 s, with a batch file half written (200 rows
    # of the first CSV file): the second tap starts then, and must leave that file alone.
    stall = Fault("stall", endpoint="download", after=1, variant="before_response", delay=10)
    scenario = Scenario(
        instances={BIG: InstanceSpec(rows=6_000, files=2)}, job_processing_polls=1, faults=[stall]
    )
    root = tmp_path / "shared"
    with Sandbox(scenario) as sb:
        cfg = sb.tap_config(
            request_timeout=30, batch_config=batch_config(root, "jsonl-none", batch_size=700)
        )
        first = start_tap(tmp_path, cfg, None, "one")
        stalled = wait_for_a_stalled_part_file(root)
        # The second starts while the first writes: it must neither clean up nor reuse its files.
        second = start_tap(tmp_path, cfg, None, "two")
        assert second.stdout is not None
        head = second.stdout.readline()
        assert json.loads(head)["type"] == "SCHEMA"  # written after its clean-up
        assert stalled.exists(), "the second tap removed a file the first was writing"
        outputs = [p.communicate(timeout=120)[0] for p in (first, second)]
        outputs[1] = head + outputs[1]
        assert [p.returncode for p in (first, second)] == [0, 0], [
            (tmp_path / f"{n}-stderr.log").read_text()[-2000:] for n in ("one", "two")
        ]
        runs = [[json.loads(line) for line in out.splitlines()] for out in outputs]
        uris = [manifests(messages) for messages in runs]
        assert len(uris[0]) == len(uris[1]) == 9  # 8 of 700 rows, 400
        assert not set(uris[0]) & set(uris[1])
        assert visible_files(root) == {uri_path(u) for u in uris[0] + uris[1]}
        assert not part_files(root)
        # The file the first tap was writing when the second started was finished and announced.
        assert stalled.name.removeprefix(".").rsplit(".", 3)[0] in {
            uri_path(u).name for u in uris[0]
        }
        job_ids = []
        for messages in runs:
            records = records_by_stream(read_announced(messages))[RECORDS]
            jobs = emitted_jobs(records, BIG)
            assert len(jobs) == 1
            assert check_rows(sb, jobs[0], records, values=False).exact
            job_ids.append(jobs[0])
        assert job_ids[0] != job_ids[1]


def wait_for_a_stalled_part_file(root: Path) -> Path:
    """A part file that has not changed for half a second (its rows may still be buffered)."""
    deadline = time.monotonic() + 60
    sizes: dict[Path, tuple[int, float]] = {}
    while time.monotonic() < deadline:
        now = time.monotonic()
        for part in part_files(root) if root.exists() else []:
            try:
                size = part.stat().st_size
            except FileNotFoundError:
                continue
            seen = sizes.get(part)
            if seen is None or seen[0] != size:
                sizes[part] = (size, now)
            elif now - seen[1] > 0.5:
                return part
        time.sleep(0.01)
    msg = "the first tap never paused with a file half written"
    raise AssertionError(msg)


# Configuration ----------------------------------------------------------------------------------


def test_batch_config_from_the_environment_as_one_json_object(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Plain Singer with `--config ENV`: `TAP_LINKEDIN_CRM_BATCH_CONFIG` holds the whole object."""
    root = tmp_path / "env batches"
    cfg = sandbox.tap_config(crm_instance_ids=[SMALL])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_LINKEDIN_CRM_")}
    for key, value in cfg.items():
        env[f"TAP_LINKEDIN_CRM_{key.upper()}"] = (
            json.dumps(value) if isinstance(value, list) else str(value)
        )
    env["TAP_LINKEDIN_CRM_BATCH_CONFIG"] = json.dumps(
        {**batch_config(root, "jsonl-gzip"), "batch_size": 50}
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tap_linkedin_crm", "--config", "ENV"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    messages = [json.loads(line) for line in proc.stdout.splitlines()]
    files = read_announced(messages)
    assert [len(records) for _, _, records in files] == [50, 50, 20], proc.stderr[-3000:]
    assert not [m for m in messages if m["type"] == "RECORD" and m["stream"] == RECORDS]


BAD_CONFIGS: dict[str, tuple[Callable[[Path], dict[str, t.Any]], str]] = {
    "format": (
        lambda root: {"encoding": {"format": "csv"}, "storage": {"root": root_uri(root)}},
        "csv",
    ),
    "compression": (
        lambda root: {"encoding": {"compression": "zstd"}, "storage": {"root": root_uri(root)}},
        "zstd",
    ),
    "no-root": (lambda root: {"encoding": {"format": "jsonl"}}, "batch_config.storage.root"),
    # The tap's schema declares batch_size an integer >= 1: the schema check names it.
    "batch-size": (
        lambda root: {"storage": {"root": root_uri(root)}, "batch_size": 0},
        "config['batch_config']['batch_size']",
    ),
    "batch-size-text": (
        lambda root: {"storage": {"root": root_uri(root)}, "batch_size": "lots"},
        "config['batch_config']['batch_size']",
    ),
    "prefix-with-directory": (
        lambda root: {"storage": {"root": root_uri(root), "prefix": "runs/x-"}},
        "batch_config.storage.prefix",
    ),
    "root-is-a-file": (
        lambda root: {"storage": {"root": root_uri(root / "file" / "sub")}},
        "batch_config.storage.root",
    ),
    "unknown-protocol": (
        lambda root: {"storage": {"root": "nosuchstore://bucket/batches"}},
        "batch_config.storage.root nosuchstore://bucket/batches",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_batch_config_is_one_clear_line_before_any_export_job(
    case: str, sandbox: Sandbox, run_tap: RunTap, tmp_path: Path
) -> None:
    make, words = BAD_CONFIGS[case]
    root = tmp_path / "root"
    root.mkdir()
    (root / "file").write_text("a file, not a directory")
    run = run_tap(sandbox.tap_config(batch_config=make(root)))
    assert run.returncode == 1
    assert words in run.stderr
    assert "Traceback" not in run.stderr
    assert not [m for m in run.messages if m["type"] in {"RECORD", "BATCH", "STATE"}]
    assert not [r for r in sandbox.requests if r.endpoint == "create"]
