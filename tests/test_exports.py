"""The job coordinator against in-memory endpoints: concurrency, retries, resume, give-up."""

from __future__ import annotations

import threading
import time

import pytest

from tap_linkedin_crm.errors import JobFailedError, JobTimeoutError, NotFoundError
from tap_linkedin_crm.exports import ExportCoordinator, ExportJobEndpoints, ExportPlan
from tap_linkedin_crm.jobs import ExportJob, JobPoller, PollPolicy


class ScriptedEndpoints:
    """Jobs whose statuses follow a script: one list of statuses per created job, in order."""

    def __init__(self, scripts: list[list[str]]) -> None:
        self.scripts = scripts
        self.jobs: dict[int, list[str]] = {}
        self.created: list[tuple[str, int]] = []
        self.gets = 0
        self.lock = threading.Lock()

    def create_job(self, key: str, start_at: int) -> int:
        with self.lock:
            job_id = 100 + len(self.created)
            self.created.append((key, start_at))
            self.jobs[job_id] = list(self.scripts[len(self.created) - 1])
            return job_id

    def get_job(self, key: str, job_id: int) -> ExportJob:
        with self.lock:
            self.gets += 1
            if job_id not in self.jobs:
                msg = "gone"
                raise NotFoundError(msg, status=404)
            statuses = self.jobs[job_id]
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        if status != "COMPLETED":
            return ExportJob(job_id=job_id, status=status)
        return ExportJob(
            job_id=job_id,
            status=status,
            export_start_at=1,
            export_end_at=2,
            download_urls=("https://www.linkedin.com/ambry/?x-li-ambry-ep=t",),
            next_export_start_at=2,
            expire_at=time.time_ns() // 1_000_000 + 3_600_000,
        )


def coordinator(
    endpoints: ExportJobEndpoints, *, attempts: int = 3, timeout: float = 5
) -> ExportCoordinator:
    policy = PollPolicy(interval=0.01, max_interval=0.02, timeout=timeout)
    return ExportCoordinator(endpoints, JobPoller(policy), max_attempts=attempts)


def test_given_jobs_of_several_keys_when_started_then_all_complete_concurrently() -> None:
    endpoints = ScriptedEndpoints([["PROCESSING", "COMPLETED"]] * 3)
    runner = coordinator(endpoints)
    runner.start([ExportPlan(f"key-{i}", export_start_at=i) for i in range(3)])
    done = [runner.result(f"key-{i}") for i in range(3)]
    assert all(e.error is None and e.job is not None for e in done)
    assert sorted(endpoints.created) == [("key-0", 0), ("key-1", 1), ("key-2", 2)]


def test_given_failed_job_when_attempts_remain_then_new_job_for_same_window() -> None:
    endpoints = ScriptedEndpoints([["FAILED_DUE_TO_INTERNAL_ERROR"], ["COMPLETED"]])
    runner = coordinator(endpoints)
    runner.start([ExportPlan("key", export_start_at=42)])
    export = runner.result("key")
    assert export.error is None
    assert export.attempt == 2
    assert endpoints.created == [("key", 42), ("key", 42)]


def test_given_every_attempt_failing_when_run_then_job_failed_error() -> None:
    endpoints = ScriptedEndpoints([["FAILED_DUE_TO_INTERNAL_ERROR"]] * 2)
    runner = coordinator(endpoints, attempts=2)
    runner.start([ExportPlan("key", export_start_at=1)])
    export = runner.result("key")
    assert isinstance(export.error, JobFailedError)
    assert "all 2 attempts" in str(export.error)


def test_given_job_that_never_finishes_when_run_then_timeout_error() -> None:
    endpoints = ScriptedEndpoints([["PROCESSING"]])
    runner = coordinator(endpoints, timeout=0.1)
    runner.start([ExportPlan("key", export_start_at=1)])
    assert isinstance(runner.result("key").error, JobTimeoutError)


def test_given_resumable_job_when_started_then_polled_not_recreated() -> None:
    endpoints = ScriptedEndpoints([["PROCESSING", "COMPLETED"]])
    job_id = endpoints.create_job("key", 5)
    endpoints.created.clear()
    endpoints.scripts = []
    runner = coordinator(endpoints)
    runner.start([ExportPlan("key", export_start_at=5, resume_job_id=job_id)])
    export = runner.result("key")
    assert export.error is None
    assert export.job_id == job_id
    assert endpoints.created == []


@pytest.mark.parametrize("gone", [True, False])
def test_given_resumed_job_gone_or_failed_when_started_then_new_job_same_window(
    gone: bool,
) -> None:
    endpoints = ScriptedEndpoints([["FAILED_DUE_TO_INTERNAL_ERROR"], ["COMPLETED"]])
    old = endpoints.create_job("key", 7)
    if gone:
        del endpoints.jobs[old]
    runner = coordinator(endpoints)
    runner.start([ExportPlan("key", export_start_at=7, resume_job_id=old)])
    export = runner.result("key")
    assert export.error is None
    assert export.job_id != old
    assert endpoints.created[-1] == ("key", 7)
