"""Job model and poller: statuses, bookmarks, growing intervals, deadline, with a fake clock."""

from __future__ import annotations

import random

import pytest

from tap_linkedin_crm.errors import JobTimeoutError, SyncInterruptedError
from tap_linkedin_crm.jobs import ExportJob, JobPhase, JobPoller, PollPolicy, Stopper, phase_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_given_statuses_when_classified_then_failed_prefix_fails_and_unknown_runs() -> None:
    assert phase_of("COMPLETED") is JobPhase.COMPLETED
    assert phase_of("PROCESSING") is JobPhase.RUNNING
    assert phase_of("ENQUEUED") is JobPhase.RUNNING
    assert phase_of("FAILED_DUE_TO_INTERNAL_ERROR") is JobPhase.FAILED
    assert phase_of("FAILED_DUE_TO_SOMETHING_NEW") is JobPhase.FAILED
    assert phase_of("BRAND_NEW_STATUS") is JobPhase.RUNNING


def test_given_crm_payload_when_parsed_then_all_seven_fields_kept() -> None:
    job = ExportJob.from_api(
        {
            "jobId": 148,
            "exportStartAt": 1538947151337,
            "exportEndAt": 1541539151570,
            "downloadUrls": ["https://www.linkedin.com/ambry/?x-li-ambry-ep=A", "https://b"],
            "nextExportStartAt": 1541539151570,
            "expireAt": 1541635625000,
            "status": "COMPLETED",
        }
    )
    assert job.job_id == 148
    assert job.download_urls == ("https://www.linkedin.com/ambry/?x-li-ambry-ep=A", "https://b")
    assert job.bookmark == 1541539151570
    assert job.urls_expired(1541635625000)
    assert not job.urls_expired(1541635624999)
    assert job.urls_expired(1541635624000, margin_ms=1000)


def test_given_no_next_start_when_bookmark_then_falls_back_to_export_end() -> None:
    job = ExportJob.from_api(
        {"jobId": 1, "status": "COMPLETED", "exportEndAt": 5, "downloadUrls": ["https://x"]}
    )
    assert job.bookmark == 5


def test_given_completed_payload_without_urls_when_parsed_then_refused_not_taken_as_empty() -> None:
    with pytest.raises(ValueError, match="no downloadUrls"):
        ExportJob.from_api({"jobId": 1, "status": "COMPLETED", "exportEndAt": 5})
    empty = ExportJob.from_api({"jobId": 1, "status": "COMPLETED", "downloadUrls": []})
    assert empty.download_urls == ()


def test_given_analytics_payload_when_parsed_then_single_url_and_id_map() -> None:
    job = ExportJob.from_api(
        {"id": 100004, "status": "COMPLETED", "downloadUrl": "https://x", "rowCount": 3999}
    )
    assert (job.job_id, job.download_urls, job.row_count) == (100004, ("https://x",), 3999)


def test_given_payload_without_status_when_parsed_then_value_error() -> None:
    with pytest.raises(ValueError, match="no job id or status"):
        ExportJob.from_api({"jobId": 1})


def test_given_policy_when_delays_drawn_then_they_grow_to_the_cap_within_jitter() -> None:
    policy = PollPolicy(interval=1.0, max_interval=5.0, growth=2.0, jitter=0.1)
    delays = policy.delays(random.Random(1))
    values = [next(delays) for _ in range(8)]
    for value, nominal in zip(values, [1, 2, 4, 5, 5, 5, 5, 5], strict=True):
        assert nominal * 0.9 - 1e-9 <= value <= min(5.0, nominal * 1.1) + 1e-9


def test_given_job_finishing_on_third_poll_when_waited_then_returns_completed() -> None:
    clock = FakeClock()
    answers = iter(["PROCESSING", "PROCESSING", "COMPLETED"])
    polls: list[int] = []
    poller = JobPoller(
        PollPolicy(interval=1, max_interval=10, timeout=100, jitter=0),
        clock=clock,
        sleep=clock.sleep,
    )
    job = poller.wait(
        lambda: ExportJob(job_id=7, status=next(answers)),
        started_at=clock(),
        on_poll=lambda _job, n, _elapsed: polls.append(n),
    )
    assert job.status == "COMPLETED"
    assert polls == [1, 2, 3]
    assert clock.sleeps == [1.0, 1.5]


def test_given_already_final_first_when_waited_then_no_fetch() -> None:
    poller = JobPoller(PollPolicy(), clock=FakeClock(), sleep=FakeClock().sleep)

    def fetch() -> ExportJob:
        raise AssertionError

    first = ExportJob(job_id=1, status="FAILED_DUE_TO_INTERNAL_ERROR")
    assert poller.wait(fetch, started_at=0, first=first) is first


def test_given_job_never_finishing_when_waited_then_timeout_at_deadline_exactly() -> None:
    clock = FakeClock()
    poller = JobPoller(
        PollPolicy(interval=30, max_interval=300, timeout=7200, jitter=0),
        clock=clock,
        sleep=clock.sleep,
    )
    with pytest.raises(JobTimeoutError, match="still PROCESSING after 7200 s"):
        poller.wait(lambda: ExportJob(job_id=9, status="PROCESSING"), started_at=clock())
    assert clock.now == pytest.approx(1000 + 7200)
    assert max(clock.sleeps) <= 300


def test_given_stopper_when_stopped_then_sleep_and_check_raise() -> None:
    stopper = Stopper()
    stopper.sleep(0)
    stopper.stop()
    assert stopper.stopped
    with pytest.raises(SyncInterruptedError):
        stopper.sleep(10)
    with pytest.raises(SyncInterruptedError):
        stopper.check()
