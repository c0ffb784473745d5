"""The consumer of the tap's stdout misbehaves: it closes the pipe, or stops reading it.

Real `tap-linkedin-crm` processes writing into a real pipe, as a target would read it: a closed
pipe stops the sync at once, naming the cause, with no further download (issue 11, item 12); a
SIGTERM while the pipe is full ends the process within 5 s with 130, and the last STATE it wrote
resumes the sync with every row exactly once (item 7).
"""

from __future__ import annotations

import array
import datetime as dt
import fcntl
import json
import signal
import termios
import time
import typing as t

import pytest
from faultkit import (
    CLIENT_ID,
    CLIENT_SECRET,
    RECORDS,
    assert_no_secrets,
    check_rows,
    committed,
    emitted_jobs,
    in_flight,
    start_tap,
)

from tap_linkedin_crm.engine.stopper import EXIT_INTERRUPTED, HARD_EXIT_SECONDS
from tap_linkedin_crm.sandbox import (
    DYNAMICS_INSTANCE,
    SFDC_INSTANCE,
    InstanceSpec,
    Sandbox,
    Scenario,
)

if t.TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator
    from pathlib import Path

    from tests.conftest import TapRun

A = DYNAMICS_INSTANCE  # emitted first: big, so its rows fill any pipe many times over
B = SFDC_INSTANCE
A_ROWS, A_FILES = 30_000, 3
START_DATE = (dt.datetime.now(tz=dt.UTC) - dt.timedelta(days=5)).isoformat()
RunTap = t.Callable[..., "TapRun"]
#: `fcntl.F_GETPIPE_SZ` (Linux; Python names it from 3.10 on).
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
#: A pipe this close to its size is full: the tap writes blocks of 256 KiB.
FULL_PIPE_SLACK = 64 * 1024


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    scenario = Scenario(
        clients={CLIENT_ID: CLIENT_SECRET},
        instances={A: InstanceSpec(rows=A_ROWS, files=A_FILES), B: InstanceSpec(rows=120, files=2)},
        job_processing_polls=1,
    )
    with Sandbox(scenario) as sb:
        yield sb


def config(sb: Sandbox) -> dict[str, t.Any]:
    return sb.tap_config(crm_instance_ids=[A, B], request_retry_delay=0.05, start_date=START_DATE)


def read_until_rows(proc: subprocess.Popen[str], *, checkpoint: bool = False) -> list[str]:
    """Read stdout up to the first row of A (with `checkpoint`: up to the first STATE that holds
    rows of A); then the test decides what the consumer does."""
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if not checkpoint and line.startswith('{"type":"RECORD","stream":"' + RECORDS):
            return lines
        if checkpoint and line.startswith('{"type":"STATE"'):
            job = in_flight(json.loads(line)["value"], A)
            if job is not None and job.get("rowsDone"):
                return lines
    pytest.fail("the tap wrote no row")


def pipe_is_full(proc: subprocess.Popen[str]) -> bool:
    """Whether the tap's stdout pipe holds as much as it can (the tap is blocked in write)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, pending)
    # A full pipe holds a little less than its size: writes leave pages partly used.
    return pending[0] >= fcntl.fcntl(fd, F_GETPIPE_SZ) - FULL_PIPE_SLACK


def test_given_consumer_closes_stdout_then_sync_stops_at_once_naming_the_cause(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    proc = start_tap(tmp_path, config(sandbox), None, "closed", unbuffered=False)
    try:
        read_until_rows(proc)
        assert proc.stdout is not None
        proc.stdout.close()  # the target exited
        proc.wait(timeout=30)
    finally:
        proc.kill()
    stderr = (tmp_path / "closed-stderr.log").read_text()
    assert proc.returncode == 1, stderr[-2000:]
    assert "stdout was closed: the target (or whatever reads the tap's output) exited" in stderr
    for symptom in ("Traceback", "BrokenPipeError", "unexpected", "CRM instance(s) failed"):
        assert symptom not in stderr, f"{symptom!r} in the log"
    # Stopped inside A's first file (its rows are far more than the pipe holds): no other file
    # of A, and nothing of B, was downloaded.
    downloads = [r for r in sandbox.requests if r.endpoint == "download"]
    assert [r.instance for r in downloads] == [A]
    assert_no_secrets(sandbox, stderr)


def test_given_sigterm_while_the_consumer_stopped_reading_then_130_within_5_s_and_state_resumes(
    sandbox: Sandbox, run_tap: RunTap, tmp_path: Path
) -> None:
    proc = start_tap(tmp_path, config(sandbox), None, "blocked", unbuffered=False)
    try:
        # From a checkpoint inside A's first file on, the resume must skip the rows it covers.
        head = read_until_rows(proc, checkpoint=True)
        deadline = time.monotonic() + 30
        while not pipe_is_full(proc):  # the consumer reads no more: the tap fills the pipe
            assert time.monotonic() < deadline, "the pipe never filled"
            time.sleep(0.05)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        stopped_after = time.monotonic() - signalled
        assert proc.stdout is not None
        rest = proc.stdout.read()  # what the tap wrote before it ended, as a target reads on
    finally:
        proc.kill()
    stderr = (tmp_path / "blocked-stderr.log").read_text()
    assert proc.returncode == EXIT_INTERRUPTED, stderr[-2000:]
    assert stopped_after < HARD_EXIT_SECONDS + 1, stopped_after  # issue 11: within 5 s
    assert f"Could not stop at a clean point within {HARD_EXIT_SECONDS:.0f} s" in stderr
    lines = [*head, rest]
    text = "".join(lines)
    complete = text.splitlines(keepends=True)
    if complete and not complete[-1].endswith("\n"):
        complete.pop()  # the write the exit cut short
    messages = [json.loads(line) for line in complete]
    kept, state = committed(messages)
    job = in_flight(state, A)
    assert job is not None, "the last STATE does not hold A's job"
    assert job["rowsDone"] or job["fileIndex"]
    assert len(kept) >= job["rowsDone"] > 0
    # The last STATE resumes the sync: committed rows + the resumed run = every row once.
    second = run_tap(config(sandbox), state, timeout=60)
    assert second.returncode == 0, second.stderr[-2000:]
    union = [r for r in kept + second.records(RECORDS) if r["crmInstanceId"] == A]
    assert emitted_jobs(union, A) == [job["jobId"]]
    assert check_rows(sandbox, job["jobId"], union, values=False).exact
    assert_no_secrets(sandbox, stderr, second.stderr)
