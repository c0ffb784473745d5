"""Crash safety: kill -9 at chosen points, SIGTERM/SIGINT, resume inside a file, stale jobs.

A Singer target commits the records it has read up to the last STATE message, and resumes the tap
with that STATE. So after a crash, the rows a target keeps are those before the killed run's last
complete STATE, plus every row of the resumed run; those must be every generated row exactly once.
(Rows the killed run wrote after its last STATE are written again by the resumed run: at least
once on the wire, exactly once in what is committed.)
"""

from __future__ import annotations

import datetime as dt
import json
import random
import signal
import socket
import threading
import time
import typing as t
from dataclasses import dataclass

import pytest
from faultkit import (
    CLIENT_ID,
    CLIENT_SECRET,
    EXPORTS,
    RECORDS,
    assert_no_secrets,
    bookmark,
    check_rows,
    committed,
    emitted_jobs,
    in_flight,
    start_tap,
)

from tap_linkedin_crm.auth import StaticTokenProvider
from tap_linkedin_crm.columns import DEFAULT_COLUMN_TYPES
from tap_linkedin_crm.engine.downloads import ExportDownloader, Position
from tap_linkedin_crm.engine.scheduler import TrackedJob
from tap_linkedin_crm.engine.stopper import Stopper
from tap_linkedin_crm.errors import SyncInterruptedError
from tap_linkedin_crm.jobs import ExportJob
from tap_linkedin_crm.kinds.base import ExportTask, Partition, Window
from tap_linkedin_crm.output.singer import STATE_EVERY_ROWS
from tap_linkedin_crm.sandbox import (
    DYNAMICS_INSTANCE,
    SFDC_INSTANCE,
    Fault,
    InstanceSpec,
    Sandbox,
    Scenario,
)
from tap_linkedin_crm.transport import LinkedInClient

if t.TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.conftest import TapRun

BIG = DYNAMICS_INSTANCE  # 30,000 rows in 4 files of 7,500: checkpoints land inside files
SMALL = SFDC_INSTANCE  # 120 gzip rows, synced first
BIG_ROWS, BIG_FILES = 30_000, 4
FILE_ROWS = BIG_ROWS // BIG_FILES
SEED = 20_240_611
START_DATE = (dt.datetime.now(tz=dt.UTC) - dt.timedelta(days=5)).isoformat()
RunTap = t.Callable[..., "TapRun"]
Message = dict[str, t.Any]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    scenario = Scenario(
        clients={CLIENT_ID: CLIENT_SECRET},
        instances={
            SMALL: InstanceSpec(rows=120, files=2, gzip=True),
            BIG: InstanceSpec(rows=BIG_ROWS, files=BIG_FILES),
        },
        # A few polls, so that a kill right after the first STATE lands while jobs are polled.
        job_processing_polls=3,
    )
    with Sandbox(scenario) as sb:
        yield sb


def config(sb: Sandbox, **overrides: t.Any) -> dict[str, t.Any]:
    return sb.tap_config(request_retry_delay=0.05, start_date=START_DATE, **overrides)


@dataclass
class Progress:
    """What the watched run has written so far (kept up to date line by line)."""

    messages: list[Message]
    big_rows: int = 0

    @property
    def last(self) -> Message:
        return self.messages[-1]

    def last_is_big_row(self, count: int) -> bool:
        return self.last["type"] == "RECORD" and self.big_rows == count and is_big(self.last)


def is_big(message: Message) -> bool:
    return (
        message["type"] == "RECORD"
        and message["stream"] == RECORDS
        and message["record"]["crmInstanceId"] == BIG
    )


@dataclass
class Killed:
    """What a run wrote before it ended (killed or not)."""

    messages: list[Message]
    returncode: int
    stderr: str
    stdout: str


def run_until(  # noqa: PLR0913 - the run, and when to stop it
    tmp_path: Path,
    cfg: dict[str, t.Any],
    state: dict[str, t.Any] | None,
    name: str,
    when: Callable[[Progress], bool],
    *,
    sig: int = signal.SIGKILL,
) -> Killed:
    """Run the tap, send `sig` as soon as `when(progress so far)` holds, read to the end.

    A kill -9 runs the tap unbuffered, so the kill lands where the output says; other signals
    run it as in production (block-buffered stdout), which must then end on a whole line.
    """
    proc = start_tap(tmp_path, cfg, state, name, unbuffered=sig == signal.SIGKILL)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        lines, messages, sent = read_lines(proc, when, sig)
        proc.wait(timeout=30)
    finally:
        watchdog.cancel()
        proc.kill()
    assert sent, f"{name}: the kill point was never reached"
    stderr = (tmp_path / f"{name}-stderr.log").read_text()
    return Killed(messages, proc.returncode, stderr, "".join(lines))


def read_lines(
    proc: subprocess.Popen[str], when: Callable[[Progress], bool], sig: int
) -> tuple[list[str], list[Message], bool]:
    assert proc.stdout is not None
    lines: list[str] = []
    progress = Progress([])
    sent = False
    for line in proc.stdout:
        lines.append(line)
        if not line.endswith("\n"):  # torn by the kill
            break
        message = json.loads(line)
        progress.messages.append(message)
        progress.big_rows += is_big(message)
        if not sent and when(progress):
            proc.send_signal(sig)
            sent = True
    return lines, progress.messages, sent


def assert_exactly_once_after_resume(
    sb: Sandbox, first: Killed, second: TapRun, *, values: bool = False
) -> dict[str, int]:
    """Committed rows of the killed run + rows of the resumed run = every row exactly once."""
    kept, _ = committed(first.messages)
    resumed = second.records(RECORDS)
    counts = {}
    for urn in (SMALL, BIG):
        union = [r for r in kept + resumed if r["crmInstanceId"] == urn]
        jobs = emitted_jobs(union, urn)
        assert jobs, f"no rows of {urn}"
        for job_id in jobs:
            result = check_rows(sb, job_id, union, values=values or urn == SMALL)
            assert result.exact, f"{urn} job {job_id}: {result}"
        assert bookmark(second.final_state, urn) == sb.jobs[jobs[-1]]["nextExportStartAt"]
        assert in_flight(second.final_state, urn) is None
        counts[urn] = len(union)
    return counts


def assert_resumed_jobs_polled_not_created(
    sb: Sandbox, state: dict[str, t.Any], since: int
) -> None:
    """Each in-flight job of `state` is fetched again, not created anew (issue 4 item 1)."""
    later = sb.requests[since:]
    assert in_flight(state, BIG) is not None, "the big export was not in flight"
    for urn in (SMALL, BIG):
        job = in_flight(state, urn)
        if job is None:
            continue
        assert not [r for r in later if r.endpoint == "create" and r.instance == urn], urn
        assert any(r.endpoint == "get" and r.job_id == job["jobId"] for r in later), urn


# (a) kill -9 at chosen points -------------------------------------------------------------------

RNG = random.Random(SEED)
MID_FILE_ROW = RNG.choice([n for n in range(1_000, BIG_ROWS - 1_000) if n % FILE_ROWS > 500])
BOUNDARY_FILE = RNG.randrange(1, BIG_FILES)


def while_polling(progress: Progress) -> bool:
    """The first STATE: every job exists and is being polled; no row yet."""
    return progress.last["type"] == "STATE"


def mid_file(progress: Progress) -> bool:
    return progress.last_is_big_row(MID_FILE_ROW)


def between_files(progress: Progress) -> bool:
    """The last row of a file of the big instance."""
    return progress.last_is_big_row(BOUNDARY_FILE * FILE_ROWS)


def between_instances(progress: Progress) -> bool:
    """The small instance's summary: its rows and bookmark are done, the big one's not begun."""
    return progress.last["type"] == "RECORD" and progress.last["stream"] == EXPORTS


def right_after_state(progress: Progress) -> bool:
    """The STATE checkpoint written after the big instance's second batch of rows."""
    return progress.last["type"] == "STATE" and progress.big_rows == 2 * STATE_EVERY_ROWS


KILL_POINTS = {
    "while-polling": while_polling,
    "mid-file": mid_file,
    "between-files": between_files,
    "between-instances": between_instances,
    "right-after-state": right_after_state,
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_then_resume_from_last_state_gives_every_row_once(
    point: str, sandbox: Sandbox, run_tap: RunTap, tmp_path: Path
) -> None:
    cfg = config(sandbox)
    first = run_until(tmp_path, cfg, None, f"kill-{point}", KILL_POINTS[point])
    assert first.returncode == -signal.SIGKILL
    kept, state = committed(first.messages)
    assert state, "the killed run wrote no STATE"
    if point == "while-polling":
        assert not kept
        assert in_flight(state, BIG) is not None
    if point == "right-after-state":
        assert (
            in_flight(state, BIG)["rowsDone"] + FILE_ROWS * in_flight(state, BIG)["fileIndex"]
            == 2 * STATE_EVERY_ROWS
        )
    since = len(sandbox.requests)
    second = run_tap(cfg, state, timeout=60)
    assert second.returncode == 0, second.stderr[-2000:]
    assert_resumed_jobs_polled_not_created(sandbox, state, since)
    counts = assert_exactly_once_after_resume(sandbox, first, second)
    assert counts[BIG] == BIG_ROWS
    assert_no_secrets(sandbox, first.stdout, first.stderr, second.stdout, second.stderr)


# (b) resume inside an export --------------------------------------------------------------------


@pytest.mark.slow
def test_crash_at_row_22500_of_25000_then_resume_emits_only_the_rest(
    run_tap: RunTap, tmp_path: Path
) -> None:
    """Issue 4 item 2 in small: the state checkpoint at row 20,000 (file 2, row 7,500) resumes."""
    rows, files = 25_000, 2
    scenario = Scenario(
        clients={CLIENT_ID: CLIENT_SECRET},
        instances={BIG: InstanceSpec(rows=rows, files=files)},
        job_processing_polls=1,
    )
    with Sandbox(scenario) as sb:
        cfg = config(sb)
        first = run_until(tmp_path, cfg, None, "crash-22500", lambda p: p.last_is_big_row(22_500))
        kept, state = committed(first.messages)
        job = in_flight(state, BIG)
        assert job is not None
        assert (job["fileIndex"], job["rowsDone"]) == (1, 2 * STATE_EVERY_ROWS - rows // files)
        assert len(kept) == 2 * STATE_EVERY_ROWS
        since = len(sb.requests)
        second = run_tap(cfg, state, timeout=60)
        assert second.returncode == 0, second.stderr[-2000:]
        rest = second.records(RECORDS)
        assert len(rest) == rows - 2 * STATE_EVERY_ROWS
        assert (rest[0]["fileIndex"], rest[0]["rowNumber"]) == (1, job["rowsDone"] + 1)
        expected = [r["crmRecordId"] for r in sb.iter_expected_rows(job["jobId"])]
        assert [r["crmRecordId"] for r in rest] == expected[2 * STATE_EVERY_ROWS :]
        assert check_rows(sb, job["jobId"], kept + rest, values=True).exact
        later = sb.requests[since:]
        assert not [r for r in later if r.endpoint == "create"]
        assert len([r for r in later if r.endpoint == "download"]) == 1  # only the second file
        summary = second.records(EXPORTS)[0]
        assert summary["jobId"] == job["jobId"]


# (c) SIGTERM and SIGINT -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_at_a_clean_point_and_its_state_resumes(
    sig: int, sandbox: Sandbox, run_tap: RunTap, tmp_path: Path
) -> None:
    cfg = config(sandbox)
    first = run_until(
        tmp_path, cfg, None, f"signal-{sig}", lambda p: p.last_is_big_row(15_000), sig=sig
    )
    assert first.returncode == 130, first.stderr[-2000:]
    assert first.stdout.endswith("\n")  # stopped between two messages, none torn
    # The stop came right after a written row, and its STATE covers every row written.
    assert first.messages[-1]["type"] == "STATE"
    assert "Sync interrupted" in first.stderr
    assert "Traceback" not in first.stderr
    kept, state = committed(first.messages)
    written = [m for m in first.messages if m["type"] == "RECORD" and m["stream"] == RECORDS]
    assert len(kept) == len(written)  # nothing is emitted twice after a clean stop
    assert in_flight(state, BIG) is not None
    assert bookmark(state, BIG) is None
    second = run_tap(cfg, state, timeout=60)
    assert second.returncode == 0, second.stderr[-2000:]
    counts = assert_exactly_once_after_resume(sandbox, first, second)
    assert counts[BIG] == BIG_ROWS
    assert_no_secrets(sandbox, first.stdout, first.stderr, second.stdout, second.stderr)


@pytest.mark.slow
def test_sigterm_while_blocked_on_a_stalled_download_stops_at_once(
    run_tap: RunTap, tmp_path: Path
) -> None:
    """A download whose server does not answer (30 s) must not hold up a SIGTERM."""
    scenario = Scenario(
        clients={CLIENT_ID: CLIENT_SECRET},
        instances={BIG: InstanceSpec(rows=300, files=3)},
        job_processing_polls=1,
        faults=[Fault("slow", endpoint="download", delay=30)],
    )
    with Sandbox(scenario) as sb:
        cfg = config(sb, request_timeout=60)
        proc = start_tap(tmp_path, cfg, None, "stalled")
        try:
            stderr = tmp_path / "stalled-stderr.log"
            deadline = time.monotonic() + 20
            while "completed in" not in stderr.read_text():
                assert time.monotonic() < deadline, "the job never completed"
                time.sleep(0.05)
            time.sleep(0.5)  # now waiting for the first file's answer
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=20)
            stopped_after = time.monotonic() - signalled
        finally:
            proc.kill()
        assert proc.returncode == 130, stderr.read_text()[-2000:]
        assert stopped_after < 5, stopped_after
        messages = [json.loads(line) for line in out.splitlines()]
        state = messages[-1]["value"]
        assert in_flight(state, BIG) is not None
        sb.clear_faults()
        second = run_tap(cfg, state, timeout=60)
        assert second.returncode == 0, second.stderr[-2000:]
        job_id = in_flight(state, BIG)["jobId"]
        assert check_rows(sb, job_id, second.records(RECORDS)).exact


# (d) resumed jobs: polled, not re-created; gone after 7 days → same window -----------------------


@pytest.mark.slow
def test_job_older_than_7_days_on_resume_is_replaced_for_the_same_window(
    sandbox: Sandbox, run_tap: RunTap, tmp_path: Path
) -> None:
    cfg = config(sandbox)
    first = run_until(tmp_path, cfg, None, "stale", while_polling)
    _, state = committed(first.messages)
    old = in_flight(state, BIG)
    assert old is not None
    sandbox.clock.advance(8 * 86_400)
    since = len(sandbox.requests)
    second = run_tap(cfg, state, timeout=60)
    assert second.returncode == 0, second.stderr[-2000:]
    later = sandbox.requests[since:]
    assert any(r.status == 404 and r.job_id == old["jobId"] for r in later)
    creates = [r for r in later if r.endpoint == "create" and r.instance == BIG]
    assert len(creates) == 1
    new_job = creates[0].job_id
    assert new_job is not None
    assert sandbox.jobs[new_job]["exportStartAt"] == old["exportStartAt"]
    assert emitted_jobs(second.records(RECORDS), BIG) == [new_job]
    assert check_rows(sandbox, new_job, second.records(RECORDS)).exact
    assert bookmark(second.final_state, BIG) == sandbox.jobs[new_job]["nextExportStartAt"]


def test_stop_unblocks_a_download_stalled_mid_body() -> None:
    """A stop shuts the socket of a body that stopped arriving (the sandbox cannot stall one)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    release = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\ncrmRecordId\r\na\r\nb\r\n"
            )
            release.wait(30)  # the rest of the body never comes

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    base = f"http://127.0.0.1:{port}"
    stopper = Stopper()
    client = LinkedInClient(
        api_url=f"{base}/v2", tokens=StaticTokenProvider("t"), timeout=60, sleep=stopper.sleep
    )
    job = ExportJob(job_id=1, status="COMPLETED", download_urls=(f"{base}/file",))
    task = ExportTask(Partition({"crmInstanceId": BIG}, f"CRM instance {BIG}", BIG), Window(0))
    export = TrackedJob(task=task, kind=t.cast("t.Any", None), job_id=1, job=job)
    downloader = ExportDownloader(
        client, t.cast("t.Any", None), DEFAULT_COLUMN_TYPES, sleep=stopper.sleep, stopper=stopper
    )
    timer = threading.Timer(0.5, stopper.stop)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(SyncInterruptedError):
            list(downloader.rows(export, Position(job_id=1)))
    finally:
        release.set()
        timer.cancel()
        listener.close()
    assert time.monotonic() - started < 5
