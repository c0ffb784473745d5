"""The poll scheduler against scripted in-memory export kinds.

Each created job follows a script of answers (statuses or whole bodies, parsed by the CRM kind's
parser, or exceptions to raise). Poll delays are a few milliseconds. A guard stops the run after
a generous time, so a deadlock fails its test with SyncInterruptedError instead of hanging.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
import typing as t
from collections import defaultdict

import pytest
from loopback import Loopback, Reply

from tap_linkedin_crm.auth import StaticTokenProvider
from tap_linkedin_crm.columns import DEFAULT_COLUMN_TYPES
from tap_linkedin_crm.engine.downloads import ExportDownloader, Position
from tap_linkedin_crm.engine.scheduler import DEFAULT_WORKERS, JobScheduler, Outcome, TrackedJob
from tap_linkedin_crm.engine.state import ANALYTICS_LAYOUT
from tap_linkedin_crm.engine.stopper import Stopper
from tap_linkedin_crm.errors import (
    APIError,
    JobFailedError,
    JobGoneError,
    JobTimeoutError,
    LinkedInCRMError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    SyncInterruptedError,
)
from tap_linkedin_crm.jobs import ExportJob, PollPolicy
from tap_linkedin_crm.kinds.base import (
    CreatedJob,
    ExportTask,
    FailureAction,
    InFlightJob,
    Partition,
    Window,
)
from tap_linkedin_crm.kinds.crm_validation import parse_job
from tap_linkedin_crm.transport import LinkedInClient

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

DAY = 86_400_000
T0 = 1_790_000_000_000 // DAY * DAY  # a UTC midnight
#: An answer: a status, a whole job body, or an exception to raise.
Answer = str | dict[str, t.Any] | BaseException
EMPTY: dict[str, t.Any] = {"status": "COMPLETED", "downloadUrls": []}
GUARD_SECONDS = 15.0
ENGINE_LOGGER = "tap_linkedin_crm.engine"


class FakeKind:
    """An export kind whose jobs answer from scripts; it records every call."""

    name = "fake"
    rows_stream = "fake_rows"
    exports_stream = "fake_exports"
    context_keys = ("key",)
    state_layout = ANALYTICS_LAYOUT
    column_types: t.ClassVar[dict[str, t.Any]] = {}
    client: t.Any = None

    def __init__(
        self,
        default: list[Answer] | None = None,
        *,
        by_start: dict[int, list[list[Answer]]] | None = None,
        remembered: dict[int, list[Answer]] | None = None,
        max_attempts: int = 3,
        actions: Callable[[ExportTask, ExportJob, int], FailureAction] | None = None,
    ) -> None:
        self.default = default or ["PROCESSING", "COMPLETED"]
        self.by_start = {start: list(scripts) for start, scripts in (by_start or {}).items()}
        self.jobs: dict[int, list[Answer]] = {k: list(v) for k, v in (remembered or {}).items()}
        self.max_attempts = max_attempts
        self.actions = actions
        self.lock = threading.Lock()
        self.next_id = 100
        self.created: list[tuple[Window, int]] = []
        self.gets: list[int] = []
        self.get_times: dict[int, list[float]] = defaultdict(list)
        self.create_times: dict[int, float] = {}
        self.clock: Callable[[], float] = time.monotonic
        #: Called (outside the lock) before a create or get answers: tests block or count here.
        self.before_create: Callable[[ExportTask], None] | None = None
        self.before_get: Callable[[ExportTask, int], None] | None = None

    def partitions(self) -> list[Partition]:
        return []

    def plan_windows(self, state: object) -> list[Window]:
        return []

    def create_job(self, task: ExportTask) -> CreatedJob:
        if self.before_create is not None:
            self.before_create(task)
        with self.lock:
            job_id = self.next_id
            self.next_id += 1
            scripts = self.by_start.get(task.window.start_at)
            script = (scripts.pop(0) if len(scripts) > 1 else scripts[0]) if scripts else None
            self.jobs[job_id] = list(script if script is not None else self.default)
            self.created.append((task.window, job_id))
            self.create_times[job_id] = self.clock()
        if isinstance(self.jobs[job_id][0], BaseException) and len(self.jobs[job_id]) == 1:
            raise self.jobs[job_id][0]
        return CreatedJob(job_id=job_id, created_at=1_000 + job_id)

    def get_job(self, task: ExportTask, job_id: int) -> ExportJob:
        if self.before_get is not None:
            self.before_get(task, job_id)
        with self.lock:
            self.gets.append(job_id)
            self.get_times[job_id].append(self.clock())
            answers = self.jobs.get(job_id)
            if answers is None:
                msg = f"job {job_id} not found"
                raise NotFoundError(msg, status=404)
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, BaseException):
            raise answer
        body = {"status": answer} if isinstance(answer, str) else dict(answer)
        if body["status"].strip().upper() == "COMPLETED" and "downloadUrls" not in body:
            body["downloadUrls"] = [f"https://files.example/{job_id}/0"]
        return parse_job(body, job_id)

    def failure_action(self, task: ExportTask, job: ExportJob, attempt: int) -> FailureAction:
        if self.actions is not None:
            return self.actions(task, job, attempt)
        return FailureAction.RETRY if attempt < self.max_attempts else FailureAction.FAIL

    def provenance(self, task: ExportTask, job: ExportJob, file_index: int) -> dict[str, t.Any]:
        return {}

    def exports_record(
        self, task: ExportTask, job: ExportJob, facts: t.Mapping[str, t.Any]
    ) -> dict[str, t.Any]:
        return {}

    def creates_for(self, window: Window) -> list[int]:
        return [job_id for w, job_id in self.created if w == window]


def task(start: int, end: int | None = None, key: str = "p") -> ExportTask:
    partition = Partition(context={"key": key}, label=f"partition {key}", key=key)
    return ExportTask(partition=partition, window=Window(start, end))


def day_tasks(count: int, key: str = "p") -> list[ExportTask]:
    return [task(T0 + i * DAY, T0 + (i + 1) * DAY, key) for i in range(count)]


@pytest.fixture
def stopper() -> Iterator[Stopper]:
    """A stopper that a guard stops after GUARD_SECONDS: a deadlock fails instead of hanging."""
    stopper = Stopper()
    guard = threading.Timer(GUARD_SECONDS, stopper.stop)
    guard.daemon = True
    guard.start()
    yield stopper
    guard.cancel()


@contextlib.contextmanager
def running(  # noqa: PLR0913 - the scheduler's knobs, all with defaults
    kind: FakeKind,
    tasks: list[ExportTask],
    stopper: Stopper,
    *,
    cap: int = 100,
    workers: int = DEFAULT_WORKERS,
    timeout: float = 60.0,
    interval: float = 0.002,
    max_interval: float = 0.01,
    jitter: float = 0.1,
    monotonic: Callable[[], float] = time.monotonic,
) -> Iterator[tuple[JobScheduler, list[TrackedJob]]]:
    policy = PollPolicy(interval, max_interval, timeout, 1.5, jitter)
    scheduler = JobScheduler(
        policy, stopper, max_in_flight=cap, workers=workers, monotonic=monotonic
    )
    tracked = scheduler.submit([(kind, x) for x in tasks])
    scheduler.start()
    try:
        yield scheduler, tracked
    finally:
        scheduler.close()


def take(scheduler: JobScheduler, tracked: TrackedJob) -> list[TrackedJob]:
    """What the run's main thread does: wait, follow splits in order, release what it used."""
    scheduler.wait(tracked)
    if tracked.outcome is Outcome.SPLIT:
        return [leaf for child in tracked.children for leaf in take(scheduler, child)]
    scheduler.release(tracked)
    return [tracked]


def drain(scheduler: JobScheduler, tracked: list[TrackedJob]) -> list[TrackedJob]:
    return [leaf for top in tracked for leaf in take(scheduler, top)]


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


# Creation and the cap -----------------------------------------------------------------------------


def test_given_tasks_within_the_cap_when_started_then_all_created_at_once_in_order(
    stopper: Stopper,
) -> None:
    kind = FakeKind(["PROCESSING"])
    tasks = day_tasks(6)
    with running(kind, tasks, stopper, workers=1) as (scheduler, tracked):
        scheduler.wait_created()
        assert [window for window, _ in kind.created] == [x.window for x in tasks]
        assert all(j.job_id is not None for j in tracked)
        assert [scheduler.snapshot(j)[0] for j in tracked] == list(range(100, 106))
        assert all(j.outcome is Outcome.PENDING for j in tracked)  # created, not waited for


def test_given_more_tasks_than_the_cap_when_started_then_only_the_first_ones_created(
    stopper: Stopper,
) -> None:
    kind = FakeKind(["PROCESSING"])
    tasks = day_tasks(6)
    with running(kind, tasks, stopper, cap=4, workers=1) as (scheduler, tracked):
        scheduler.wait_created()
        assert [window for window, _ in kind.created] == [x.window for x in tasks[:4]]
        assert [j.job_id is not None for j in tracked] == [True] * 4 + [False] * 2


def test_given_a_cap_when_jobs_are_released_then_never_more_live_jobs_than_the_cap(
    stopper: Stopper,
) -> None:
    cap = 3
    kind = FakeKind(["PROCESSING", "COMPLETED"])
    released = 0
    live: list[int] = []

    def count(_task: ExportTask) -> None:
        with kind.lock:
            live.append(len(kind.created) + 1 - released)

    kind.before_create = count
    with running(kind, day_tasks(10), stopper, cap=cap) as (scheduler, tracked):
        for job in tracked:
            scheduler.wait(job)
            assert job.outcome is Outcome.COMPLETED
            with kind.lock:
                released += 1  # counted before the slot is freed, so no creation races it
            scheduler.release(job)
    assert len(kind.created) == 10
    assert max(live) == cap


# Failed jobs --------------------------------------------------------------------------------------


def test_given_failed_job_when_attempts_remain_then_new_job_for_the_same_window(
    stopper: Stopper,
) -> None:
    window = Window(T0)
    kind = FakeKind(by_start={T0: [["FAILED_DUE_TO_INTERNAL_ERROR"], ["COMPLETED"]]})
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        take(scheduler, tracked)
    assert tracked.outcome is Outcome.COMPLETED
    assert tracked.attempt == 2
    assert kind.creates_for(window) == [100, 101]
    assert tracked.job_id == 101


def test_given_every_attempt_failing_when_run_then_failed_with_job_failed_error(
    stopper: Stopper, caplog: pytest.LogCaptureFixture
) -> None:
    kind = FakeKind(["FAILED_DUE_TO_INTERNAL_ERROR"], max_attempts=3)
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        scheduler.wait(tracked)
    assert tracked.outcome is Outcome.FAILED
    assert isinstance(tracked.error, JobFailedError)
    assert "all 3 attempt(s)" in str(tracked.error)
    assert "FAILED_DUE_TO_INTERNAL_ERROR" in str(tracked.error)
    assert kind.creates_for(Window(T0)) == [100, 101, 102]
    assert sum("trying a new job" in m for m in messages(caplog)) == 2


def test_given_job_vanishing_while_polled_when_attempts_remain_then_new_job(
    stopper: Stopper,
) -> None:
    seen: list[str] = []

    def actions(task: ExportTask, job: ExportJob, attempt: int) -> FailureAction:
        seen.append(job.status)
        return FailureAction.RETRY

    gone = NotFoundError("job gone", status=404)
    kind = FakeKind(by_start={T0: [["PROCESSING", gone], ["COMPLETED"]]}, actions=actions)
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        take(scheduler, tracked)
    assert tracked.outcome is Outcome.COMPLETED
    assert seen == ["FAILED_VANISHED"]
    assert kind.creates_for(Window(T0)) == [100, 101]


def test_given_create_refused_when_run_then_failed_with_that_error_and_no_retry(
    stopper: Stopper,
) -> None:
    refused = APIError("Could not create an export job: HTTP 400.", status=400)
    kind = FakeKind(by_start={T0: [[refused]]})
    with running(kind, [task(T0), task(T0 + DAY)], stopper) as (scheduler, tracked):
        scheduler.wait(tracked[0])
        take(scheduler, tracked[1])
    assert tracked[0].outcome is Outcome.FAILED
    assert tracked[0].error is refused
    assert tracked[1].outcome is Outcome.COMPLETED
    assert len(kind.creates_for(Window(T0))) == 1


def test_given_unexpected_error_in_a_call_when_run_then_failed_naming_only_its_type(
    stopper: Stopper,
) -> None:
    kind = FakeKind(["PROCESSING", RuntimeError("https://x/?x-li-ambry-ep=SECRET")])
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        scheduler.wait(tracked)
    assert tracked.outcome is Outcome.FAILED
    assert isinstance(tracked.error, LinkedInCRMError)
    assert "RuntimeError" in str(tracked.error)
    assert "SECRET" not in str(tracked.error)


# Split and stop -----------------------------------------------------------------------------------


def split_first_job(task: ExportTask, job: ExportJob, attempt: int) -> FailureAction:
    whole = task.window.end_at is not None and task.window.days >= 2
    return FailureAction.SPLIT if whole else FailureAction.FAIL


@pytest.mark.parametrize(
    ("cap", "order"),
    [(1, ["A", "A1", "A2", "B", "C"]), (2, ["A", "B", "A1", "A2", "C"])],
)
def test_given_split_when_run_then_halves_created_before_later_tasks_without_deadlock(
    stopper: Stopper, cap: int, order: list[str]
) -> None:
    big = task(T0, T0 + 10 * DAY)
    later = [task(T0 + 10 * DAY, T0 + 11 * DAY), task(T0 + 11 * DAY, T0 + 12 * DAY)]
    names = {
        Window(T0, T0 + 10 * DAY): "A",
        Window(T0, T0 + 5 * DAY): "A1",
        Window(T0 + 5 * DAY, T0 + 10 * DAY): "A2",
        later[0].window: "B",
        later[1].window: "C",
    }
    kind = FakeKind(
        by_start={T0: [["FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR"], ["COMPLETED"]]},
        actions=split_first_job,
    )
    with running(kind, [big, *later], stopper, cap=cap, workers=1) as (scheduler, tracked):
        leaves = drain(scheduler, tracked)
    assert [names[window] for window, _ in kind.created] == order
    assert [names[leaf.task.window] for leaf in leaves] == ["A1", "A2", "B", "C"]
    assert tracked[0].outcome is Outcome.SPLIT
    assert all(leaf.outcome is Outcome.COMPLETED for leaf in leaves)
    assert {leaf.task.sequence for leaf in leaves[:2]} == {tracked[0].task.sequence}


@pytest.mark.parametrize(
    ("length", "first_half_days"), [(7 * DAY, 3), (7 * DAY + DAY // 2, 3), (2 * DAY, 1)]
)
def test_given_window_of_any_length_when_split_then_halves_meet_on_a_whole_day(
    stopper: Stopper, length: int, first_half_days: int
) -> None:
    start = T0 + 3_600_000  # not a midnight: halves are whole days from the start
    kind = FakeKind(
        by_start={start: [["FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR"], ["COMPLETED"]]},
        actions=split_first_job,
    )
    with running(kind, [task(start, start + length)], stopper) as (scheduler, tracked):
        leaves = drain(scheduler, tracked)
    middle = start + first_half_days * DAY
    assert [leaf.task.window for leaf in leaves] == [
        Window(start, middle),
        Window(middle, start + length),
    ]


@pytest.mark.parametrize("cap", [1, 2])
def test_given_halves_splitting_again_when_run_then_every_leaf_in_order(
    stopper: Stopper, cap: int
) -> None:
    too_big = ["FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR"]

    def actions(task: ExportTask, job: ExportJob, attempt: int) -> FailureAction:
        return FailureAction.SPLIT

    kind = FakeKind(
        by_start={T0: [too_big, too_big, ["COMPLETED"]], T0 + 4 * DAY: [too_big, ["COMPLETED"]]},
        actions=actions,
        default=["COMPLETED"],
    )
    tasks = [task(T0, T0 + 8 * DAY), task(T0 + 8 * DAY, T0 + 9 * DAY)]
    with running(kind, tasks, stopper, cap=cap) as (scheduler, tracked):
        leaves = drain(scheduler, tracked)
    starts = [(leaf.task.window.start_at - T0) // DAY for leaf in leaves]
    assert starts == [0, 2, 4, 6, 8]
    assert all(leaf.outcome is Outcome.COMPLETED for leaf in leaves)


def test_given_later_window_split_while_an_earlier_half_waits_when_capped_then_no_deadlock(
    stopper: Stopper,
) -> None:
    """Halves of a later split must not take the slots an earlier half waits for.

    A and B split; B splits while A's first half is still running. Were B's halves created
    before A's second half, the cap (3) would be held by B1, B2 and C, all emitted after A2,
    and the main thread would wait for A2 forever.
    """
    a1, a2 = Window(T0, T0 + 5 * DAY), Window(T0 + 5 * DAY, T0 + 10 * DAY)
    b1 = Window(T0 + 10 * DAY, T0 + 15 * DAY)
    too_big = ["FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR"]
    kind = FakeKind(
        by_start={
            T0: [too_big, ["PROCESSING", "COMPLETED"]],
            T0 + 10 * DAY: [too_big, ["COMPLETED"]],
        },
        actions=split_first_job,
        default=["COMPLETED"],
    )

    tops: list[TrackedJob] = []

    def until(condition: Callable[[], bool]) -> None:
        while not condition() and not stopper.stopped:
            time.sleep(0.002)

    def a_splits_then_b_then_a1_completes(task: ExportTask, job_id: int) -> None:
        if task.window == a1:
            until(lambda: bool(tops) and tops[1].outcome is Outcome.SPLIT)
        elif task.window == Window(T0 + 10 * DAY, T0 + 20 * DAY):
            until(lambda: bool(kind.creates_for(a1)))

    kind.before_get = a_splits_then_b_then_a1_completes
    tasks = [task(T0, T0 + 10 * DAY), task(T0 + 10 * DAY, T0 + 20 * DAY)]
    tasks.append(task(T0 + 20 * DAY, T0 + 21 * DAY))
    for sequence, each in enumerate(tasks):
        each.sequence = sequence  # as the run numbers its tasks
    with running(kind, tasks, stopper, cap=3) as (scheduler, tracked):
        tops.extend(tracked)
        leaves = drain(scheduler, tracked)
    starts = [(leaf.task.window.start_at - T0) // DAY for leaf in leaves]
    assert starts == [0, 5, 10, 15, 20]
    assert all(leaf.outcome is Outcome.COMPLETED for leaf in leaves)
    assert kind.creates_for(a2)
    assert kind.creates_for(b1)


def test_given_data_not_ready_when_kind_says_stop_then_stopped_with_a_note(
    stopper: Stopper,
) -> None:
    def actions(task: ExportTask, job: ExportJob, attempt: int) -> FailureAction:
        return FailureAction.STOP

    kind = FakeKind(["FAILED_DUE_TO_DATA_DELAY"], actions=actions)
    tasks = day_tasks(2)
    with running(kind, tasks, stopper, cap=1) as (scheduler, tracked):
        scheduler.wait(tracked[0])
        assert tracked[0].outcome is Outcome.STOPPED
        assert tracked[0].error is None
        assert tracked[0].note is not None
        assert "FAILED_DUE_TO_DATA_DELAY" in tracked[0].note
        assert "not ready" in tracked[0].note
        scheduler.wait(tracked[1])  # the stopped job's slot was freed: the next one ran
    assert len(kind.creates_for(tasks[0].window)) == 1


# Timeout ------------------------------------------------------------------------------------------


def test_given_job_that_never_finishes_when_timeout_then_failed_and_job_id_kept(
    stopper: Stopper,
) -> None:
    virtual = [0.0]
    start = time.monotonic()

    def clock() -> float:  # one real millisecond is one virtual second
        virtual[0] = (time.monotonic() - start) * 1000
        return virtual[0]

    kind = FakeKind(["PROCESSING"])
    kind.clock = clock
    with running(
        kind,
        [task(T0)],
        stopper,
        timeout=200,
        interval=5,
        max_interval=20,
        jitter=0,
        monotonic=clock,
    ) as (scheduler, [tracked]):
        scheduler.wait(tracked)
        snapshot = scheduler.snapshot(tracked)
    assert tracked.outcome is Outcome.FAILED
    assert isinstance(tracked.error, JobTimeoutError)
    assert "still PROCESSING after 200 s (job_timeout)" in str(tracked.error)
    assert "next run resumes this job" in str(tracked.error)
    assert snapshot == (100, 1100, 1)  # kept, so the next run polls it again
    assert kind.creates_for(Window(T0)) == [100]
    times = [kind.create_times[100], *kind.get_times[100]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    nominal = [5, 7.5, 11.25, 16.875] + [20] * (len(gaps) - 4)
    assert all(gap >= delay for gap, delay in zip(gaps[:-1], nominal, strict=False))
    assert times[-1] - times[0] >= 200  # not given up before the deadline


def test_given_polls_failing_for_a_while_when_linkedin_recovers_then_the_job_completes(
    stopper: Stopper, caplog: pytest.LogCaptureFixture
) -> None:
    """An outage longer than the client's retries while a job runs (for hours, maybe) costs
    polls, not the export: the job is polled again until it ends or job_timeout passes."""
    outage = [ServerError("LinkedIn kept failing with HTTP 503 after 6 tries.", status=503)] * 3
    network = NetworkError("Could not read export job: connection refused by api.example.")
    kind = FakeKind(["PROCESSING", *outage, network, "PROCESSING", "COMPLETED"])
    with (
        caplog.at_level(logging.WARNING, ENGINE_LOGGER),
        running(kind, [task(T0)], stopper) as (
            scheduler,
            [tracked],
        ),
    ):
        scheduler.wait(tracked)
    assert tracked.outcome is Outcome.COMPLETED, tracked.error
    assert kind.creates_for(Window(T0)) == [100]
    retried = [m for m in messages(caplog) if "could not poll export job 100" in m]
    assert len(retried) == 4
    assert "HTTP 503" in retried[0]


def test_given_polls_failing_until_the_job_timeout_then_failed_with_the_cause_and_kept(
    stopper: Stopper,
) -> None:
    outage = ServerError("LinkedIn kept failing with HTTP 503 after 6 tries.", status=503)
    kind = FakeKind(["PROCESSING", outage])
    with running(kind, [task(T0)], stopper, timeout=0.2) as (scheduler, [tracked]):
        scheduler.wait(tracked)
        snapshot = scheduler.snapshot(tracked)
    assert tracked.outcome is Outcome.FAILED
    assert "HTTP 503" in str(tracked.error)
    assert "job_timeout" in str(tracked.error)
    assert snapshot[0] == 100  # kept: the next run polls it again


# COMPLETED without files --------------------------------------------------------------------------


def test_given_completed_without_urls_twice_on_two_jobs_when_run_then_taken_as_empty(
    stopper: Stopper, caplog: pytest.LogCaptureFixture
) -> None:
    kind = FakeKind([EMPTY])
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        take(scheduler, tracked)
    assert tracked.outcome is Outcome.COMPLETED
    assert tracked.note is not None
    assert "twice without download URLs" in tracked.note
    assert "taken as empty" in tracked.note
    assert tracked.job is not None
    assert tracked.job.download_urls == ()
    assert kind.creates_for(Window(T0)) == [100, 101]
    assert kind.gets.count(100) == 2
    assert kind.gets.count(101) == 2
    assert tracked.attempt == 1  # not a failed attempt
    assert any("asking again" in m for m in messages(caplog))


def test_given_completed_without_urls_once_when_asked_again_then_its_files(
    stopper: Stopper,
) -> None:
    kind = FakeKind([EMPTY, "COMPLETED"])
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        take(scheduler, tracked)
    assert tracked.outcome is Outcome.COMPLETED
    assert tracked.note is None
    assert kind.creates_for(Window(T0)) == [100]


def test_given_completed_without_urls_twice_when_new_job_has_files_then_those(
    stopper: Stopper,
) -> None:
    kind = FakeKind(by_start={T0: [[EMPTY], ["COMPLETED"]]})
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        take(scheduler, tracked)
    assert tracked.outcome is Outcome.COMPLETED
    assert tracked.note is None
    assert tracked.job_id == 101
    assert tracked.job is not None
    assert tracked.job.download_urls == ("https://files.example/101/0",)


# Resume -------------------------------------------------------------------------------------------


def resumed(window: Window, job_id: int = 77) -> ExportTask:
    remembered = InFlightJob(job_id, window, created_at=555, attempt=2)
    partition = Partition(context={"key": "p"}, label="partition p", key="p")
    return ExportTask(partition=partition, window=window, resume=remembered)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (NotFoundError("gone", status=404), "HTTP 404"),
        (PermissionDeniedError("not yours", status=403), "HTTP 403"),
        ("FAILED_DUE_TO_INTERNAL_ERROR", "ended FAILED_DUE_TO_INTERNAL_ERROR"),
    ],
)
def test_given_remembered_job_gone_or_failed_when_resumed_then_new_job_for_the_window(
    stopper: Stopper, caplog: pytest.LogCaptureFixture, answer: Answer, reason: str
) -> None:
    window = Window(T0)
    kind = FakeKind(["COMPLETED"], remembered={77: [answer]})
    resume = resumed(window)
    with running(kind, [resume], stopper) as (scheduler, [tracked]):
        take(scheduler, tracked)
    assert tracked.outcome is Outcome.COMPLETED
    assert kind.creates_for(window) == [100]
    assert tracked.job_id == 100
    assert resume.resume is None  # the gone job is not remembered again
    assert kind.gets[0] == 77
    assert any("77 from the last run" in m and reason in m for m in messages(caplog))


def test_given_remembered_job_still_running_when_resumed_then_polled_without_a_post(
    stopper: Stopper,
) -> None:
    kind = FakeKind(remembered={77: ["PROCESSING", "processing", "COMPLETED"]})
    with running(kind, [resumed(Window(T0))], stopper) as (scheduler, [tracked]):
        take(scheduler, tracked)
    assert tracked.outcome is Outcome.COMPLETED
    assert kind.created == []
    assert kind.gets == [77, 77, 77]
    assert (tracked.job_id, tracked.created_at, tracked.polls) == (77, 555, 3)


def test_given_remembered_job_unreadable_for_a_while_when_resumed_then_polled_not_failed(
    stopper: Stopper, caplog: pytest.LogCaptureFixture
) -> None:
    """The first GET of a job from the last run meets an outage longer than the client's
    retries: the job is adopted and polled again (as any poll would be), not failed."""
    outage = ServerError("LinkedIn kept failing with HTTP 502 after 6 tries.", status=502)
    kind = FakeKind(remembered={77: [outage, outage, "PROCESSING", "COMPLETED"]})
    with (
        caplog.at_level(logging.WARNING, ENGINE_LOGGER),
        running(kind, [resumed(Window(T0))], stopper) as (scheduler, [tracked]),
    ):
        take(scheduler, tracked)
    assert tracked.outcome is Outcome.COMPLETED, tracked.error
    assert kind.created == []
    assert kind.gets == [77, 77, 77, 77]
    assert (tracked.job_id, tracked.created_at) == (77, 555)
    assert sum("could not poll export job 77" in m for m in messages(caplog)) == 2


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (NotFoundError("gone", status=404), "HTTP 404"),
        (PermissionDeniedError("not yours", status=403), "HTTP 403"),
        ("FAILED_DUE_TO_INTERNAL_ERROR", "ended FAILED_DUE_TO_INTERNAL_ERROR"),
    ],
)
def test_given_remembered_job_unreadable_then_gone_when_resumed_then_new_job_as_without_outage(
    stopper: Stopper, caplog: pytest.LogCaptureFixture, answer: Answer, reason: str
) -> None:
    """An outage on the resume's GET, then the answer the resume would have had at once (gone,
    not ours, failed): the same new job for the window, not a failed partition or a used-up
    attempt (job_max_attempts 1: the remembered job is not one of this run's attempts)."""
    outage = ServerError("LinkedIn kept failing with HTTP 502 after 6 tries.", status=502)
    window = Window(T0)
    kind = FakeKind(["COMPLETED"], remembered={77: [outage, answer]}, max_attempts=1)
    resume = resumed(window)
    with running(kind, [resume], stopper) as (scheduler, [tracked]):
        take(scheduler, tracked)
    assert tracked.outcome is Outcome.COMPLETED, tracked.error
    assert kind.creates_for(window) == [100]
    assert (tracked.job_id, tracked.attempt) == (100, 1)
    assert resume.resume is None
    assert kind.gets[:2] == [77, 77]
    assert any("77 from the last run" in m and reason in m for m in messages(caplog))


def test_given_job_created_in_this_run_denied_when_polled_then_its_partition_fails(
    stopper: Stopper,
) -> None:
    """Only a remembered job never answered is "gone" on a 403: a job of this run that LinkedIn
    refuses to show fails its partition, as before."""
    denied = PermissionDeniedError("not yours", status=403)
    kind = FakeKind(["PROCESSING", denied])
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        take(scheduler, tracked)
    assert tracked.outcome is Outcome.FAILED
    assert tracked.error is denied
    assert len(kind.created) == 1


def test_given_remembered_job_completed_when_resumed_then_ready_at_once(
    stopper: Stopper,
) -> None:
    kind = FakeKind(remembered={77: ["COMPLETED"]})
    with running(kind, [resumed(Window(T0))], stopper) as (scheduler, [tracked]):
        take(scheduler, tracked)
    assert tracked.outcome is Outcome.COMPLETED
    assert kind.created == []
    assert kind.gets == [77]


# Statuses -----------------------------------------------------------------------------------------


def test_given_undocumented_status_when_polled_then_warned_once_and_treated_as_running(
    stopper: Stopper, caplog: pytest.LogCaptureFixture
) -> None:
    kind = FakeKind(["QUEUED_FOR_REVIEW"] * 4 + ["RE_CHECKING"] * 2 + ["COMPLETED"])
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        take(scheduler, tracked)
    assert tracked.outcome is Outcome.COMPLETED
    undocumented = [m for m in messages(caplog) if "undocumented status" in m]
    assert len(undocumented) == 2
    assert "'QUEUED_FOR_REVIEW'" in undocumented[0]
    assert "'RE_CHECKING'" in undocumented[1]


def test_given_lowercase_statuses_when_polled_then_understood(stopper: Stopper) -> None:
    kind = FakeKind(
        by_start={
            T0: [
                ["enqueued", "processing", "failed_due_to_internal_error"],
                ["Processing", {"status": "completed", "downloadUrls": ["https://f/1"]}],
            ]
        }
    )
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        take(scheduler, tracked)
    assert tracked.outcome is Outcome.COMPLETED
    assert tracked.attempt == 2
    assert tracked.job is not None
    assert tracked.job.status == "COMPLETED"
    assert tracked.job.download_urls == ("https://f/1",)


# Cancel and stop ----------------------------------------------------------------------------------


def test_given_running_job_when_cancelled_then_its_slot_goes_to_the_next_task(
    stopper: Stopper,
) -> None:
    kind = FakeKind(by_start={T0: [["PROCESSING"]]}, default=["COMPLETED"])
    tasks = day_tasks(2)
    with running(kind, tasks, stopper, cap=1) as (scheduler, tracked):
        scheduler.wait_created()
        assert len(kind.created) == 1
        scheduler.cancel([tracked[0]])
        assert tracked[0].outcome is Outcome.CANCELLED
        take(scheduler, tracked[1])
    assert tracked[1].outcome is Outcome.COMPLETED


def test_given_pending_job_when_cancelled_then_never_created(stopper: Stopper) -> None:
    kind = FakeKind(["COMPLETED"])
    tasks = day_tasks(3)
    with running(kind, tasks, stopper, cap=1) as (scheduler, tracked):
        scheduler.wait_created()
        scheduler.cancel([tracked[1]])
        take(scheduler, tracked[0])
        take(scheduler, tracked[2])
    assert tracked[1].outcome is Outcome.CANCELLED
    assert kind.creates_for(tasks[1].window) == []
    assert [window for window, _ in kind.created] == [tasks[0].window, tasks[2].window]


def test_given_split_job_when_cancelled_then_its_halves_cancelled(stopper: Stopper) -> None:
    kind = FakeKind(
        by_start={T0: [["FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR"], ["PROCESSING"]]},
        actions=split_first_job,
    )
    with running(kind, [task(T0, T0 + 4 * DAY)], stopper) as (scheduler, [tracked]):
        scheduler.wait(tracked)
        assert tracked.outcome is Outcome.SPLIT
        scheduler.cancel([tracked])
    assert [child.outcome for child in tracked.children] == [Outcome.CANCELLED] * 2


@pytest.mark.parametrize(
    "answer",
    [NotFoundError("gone", status=404), "FAILED_DUE_TO_INTERNAL_ERROR"],
    ids=["gone", "failed"],
)
def test_given_resumed_job_cancelled_while_its_get_runs_then_no_new_job_and_slot_kept_free(
    stopper: Stopper, answer: Answer
) -> None:
    in_get, go_on = threading.Event(), threading.Event()

    def block(task: ExportTask, job_id: int) -> None:
        if job_id == 77:
            in_get.set()
            go_on.wait(GUARD_SECONDS)

    kind = FakeKind(["COMPLETED"], remembered={77: [answer]})
    kind.before_get = block
    later = task(T0 + DAY)
    with running(kind, [resumed(Window(T0)), later], stopper, cap=1) as (scheduler, tracked):
        assert in_get.wait(GUARD_SECONDS)
        scheduler.cancel([tracked[0]])  # e.g. an earlier window of its partition failed
        go_on.set()
        take(scheduler, tracked[1])
    assert tracked[0].outcome is Outcome.CANCELLED
    assert kind.creates_for(Window(T0)) == []


def test_given_polled_job_cancelled_while_it_vanishes_then_no_new_job(
    stopper: Stopper,
) -> None:
    in_get, go_on = threading.Event(), threading.Event()
    polls = [0]

    def block(task: ExportTask, job_id: int) -> None:
        polls[0] += 1
        if task.window.start_at == T0 and polls[0] == 2:
            in_get.set()
            go_on.wait(GUARD_SECONDS)

    gone = NotFoundError("gone", status=404)
    kind = FakeKind(by_start={T0: [["PROCESSING", gone]]}, default=["COMPLETED"])
    kind.before_get = block
    with running(kind, [task(T0), task(T0 + DAY)], stopper, cap=1) as (scheduler, tracked):
        assert in_get.wait(GUARD_SECONDS)
        scheduler.cancel([tracked[0]])
        go_on.set()
        take(scheduler, tracked[1])
    assert tracked[0].outcome is Outcome.CANCELLED
    assert kind.creates_for(Window(T0)) == [100]


def test_given_stop_when_waiting_then_sync_interrupted(stopper: Stopper) -> None:
    kind = FakeKind(["PROCESSING"])
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        scheduler.wait_created()
        threading.Timer(0.05, stopper.stop).start()
        with pytest.raises(SyncInterruptedError):
            scheduler.wait(tracked)
        scheduler.wait_created()  # returns on a stop, does not raise
    assert tracked.outcome is Outcome.PENDING


def test_given_waiting_main_thread_when_job_runs_then_on_wait_called_meanwhile(
    stopper: Stopper,
) -> None:
    waited = threading.Event()

    def hold(task: ExportTask, job_id: int) -> None:
        waited.wait(GUARD_SECONDS)

    kind = FakeKind(["PROCESSING", "COMPLETED"])
    kind.before_get = hold
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        scheduler.wait(tracked, on_wait=waited.set, every=0)
    assert waited.is_set()
    assert tracked.outcome is Outcome.COMPLETED


# Replacements asked for by the main thread --------------------------------------------------------


def test_given_completed_job_when_replaced_then_new_job_and_attempts_counted(
    stopper: Stopper,
) -> None:
    kind = FakeKind(["COMPLETED"], max_attempts=2)
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        scheduler.wait(tracked)
        scheduler.replace(tracked, "its files are gone")
        scheduler.wait(tracked)
        assert (tracked.job_id, tracked.attempt) == (101, 2)
        scheduler.replace(tracked, "an empty file", counted=False)
        scheduler.wait(tracked)
        assert (tracked.job_id, tracked.attempt) == (102, 2)
        with pytest.raises(JobFailedError, match="all 2 attempts"):
            scheduler.replace(tracked, "its files are gone")
    assert kind.creates_for(Window(T0)) == [100, 101, 102]


def test_given_completed_job_when_refreshed_then_fresh_job_or_job_gone(
    stopper: Stopper,
) -> None:
    fresh = {"status": "COMPLETED", "downloadUrls": ["https://f/new"]}
    two_files = {"status": "COMPLETED", "downloadUrls": ["https://f/1", "https://f/2"]}
    gone = NotFoundError("gone", status=404)
    kind = FakeKind(["COMPLETED", fresh, two_files, "PROCESSING", gone])
    with running(kind, [task(T0)], stopper) as (scheduler, [tracked]):
        scheduler.wait(tracked)
        assert scheduler.refresh(tracked).download_urls == ("https://f/new",)
        assert tracked.job is not None
        assert tracked.job.download_urls == ("https://f/new",)
        with pytest.raises(JobGoneError, match="now lists 2 files, not 1"):
            scheduler.refresh(tracked)
        with pytest.raises(JobGoneError, match="is now PROCESSING"):
            scheduler.refresh(tracked)
        with pytest.raises(JobGoneError, match=r"is gone \(HTTP 404\)"):
            scheduler.refresh(tracked)


# Threads and concurrency --------------------------------------------------------------------------


def test_given_300_tasks_when_run_then_a_handful_of_threads_do_all_the_work(
    stopper: Stopper,
) -> None:
    baseline = threading.active_count()
    peak = [baseline]

    def sample(*_args: object) -> None:
        peak[0] = max(peak[0], threading.active_count())

    kind = FakeKind(["PROCESSING", "COMPLETED"])
    kind.before_create = sample
    kind.before_get = sample
    tasks = [task(T0, key=f"p{i}") for i in range(300)]
    with running(kind, tasks, stopper, cap=300) as (scheduler, tracked):
        leaves = drain(scheduler, tracked)
    assert len(leaves) == 300
    assert all(leaf.outcome is Outcome.COMPLETED for leaf in leaves)
    assert len(kind.created) == 300
    assert peak[0] <= baseline + DEFAULT_WORKERS + 1  # the workers and the scheduler thread


def test_given_a_slow_poll_when_other_jobs_are_due_then_they_are_polled_meanwhile(
    stopper: Stopper,
) -> None:
    others_done = threading.Event()

    def slow(task: ExportTask, job_id: int) -> None:
        if task.partition.key == "slow":
            others_done.wait(GUARD_SECONDS)

    kind = FakeKind(["PROCESSING", "PROCESSING", "PROCESSING", "COMPLETED"])
    kind.before_get = slow
    tasks = [task(T0, key="slow"), task(T0, key="a"), task(T0, key="b")]
    with running(kind, tasks, stopper) as (scheduler, tracked):
        take(scheduler, tracked[1])
        take(scheduler, tracked[2])
        assert tracked[0].outcome is Outcome.PENDING
        others_done.set()
        take(scheduler, tracked[0])
    assert [j.outcome for j in tracked] == [Outcome.COMPLETED] * 3


def test_given_a_slow_create_when_other_jobs_are_created_then_they_are_not_held_up(
    stopper: Stopper,
) -> None:
    other_done = threading.Event()

    def slow(task: ExportTask) -> None:
        if task.partition.key == "slow":
            other_done.wait(GUARD_SECONDS)

    kind = FakeKind(["COMPLETED"])
    kind.before_create = slow
    with running(kind, [task(T0, key="slow"), task(T0, key="a")], stopper) as (sched, tracked):
        take(sched, tracked[1])
        other_done.set()
        take(sched, tracked[0])
    assert [window for window, _ in kind.created] == [Window(T0), Window(T0)]
    assert kind.created[0][1] == tracked[1].job_id


def test_given_kind_raising_in_failure_action_when_job_failed_then_failed_not_hung(
    stopper: Stopper,
) -> None:
    def broken(task: ExportTask, job: ExportJob, attempt: int) -> FailureAction:
        msg = "kind bug"
        raise ValueError(msg)

    kind = FakeKind(
        ["COMPLETED"], by_start={T0: [["FAILED_DUE_TO_INTERNAL_ERROR"]]}, actions=broken
    )
    with running(kind, [task(T0), task(T0 + DAY)], stopper) as (scheduler, tracked):
        scheduler.wait(tracked[0])
        take(scheduler, tracked[1])  # the scheduler still runs
    assert tracked[0].outcome is Outcome.FAILED
    assert isinstance(tracked[0].error, LinkedInCRMError)
    assert "ValueError" in str(tracked[0].error)


def test_given_remembered_job_still_running_when_resumed_then_one_next_poll_is_scheduled(
    stopper: Stopper,
) -> None:
    kind = FakeKind(remembered={77: ["PROCESSING"]})
    with running(kind, [resumed(Window(T0))], stopper, interval=30, max_interval=30) as (
        scheduler,
        [tracked],
    ):
        scheduler.wait_created()  # the resume GET was answered and applied
        assert tracked.job_id == 77
        with scheduler._lock:
            next_polls = [entry for entry in scheduler._due if entry[2] is tracked]
        scheduler.cancel([tracked])
    assert len(next_polls) == 1  # two would poll the job twice as often, for good


@pytest.mark.parametrize("action", [FailureAction.SPLIT, FailureAction.STOP])
def test_given_download_replacement_job_split_or_stopped_when_downloading_then_no_silent_end(
    stopper: Stopper, action: FailureAction
) -> None:
    def actions(task: ExportTask, job: ExportJob, attempt: int) -> FailureAction:
        return action

    with Loopback([Reply(404)]) as files:  # every download URL is refused
        url = {"status": "COMPLETED", "downloadUrls": [f"{files.url}/ambry/?x-li-ambry-ep=1"]}
        kind = FakeKind(by_start={T0: [[url], ["FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR"]]})
        kind.actions = actions
        client = LinkedInClient(api_url=f"{files.url}/v2", tokens=StaticTokenProvider("t"))
        with running(kind, [task(T0, T0 + 4 * DAY)], stopper) as (scheduler, [tracked]):
            scheduler.wait(tracked)
            downloader = ExportDownloader(
                client, scheduler, DEFAULT_COLUMN_TYPES, max_retries=0, stopper=stopper
            )
            with pytest.raises(LinkedInCRMError, match=action.value):
                list(downloader.rows(tracked, Position(job_id=100)))
    assert kind.creates_for(Window(T0, T0 + 4 * DAY)) == [100, 101]


@pytest.mark.parametrize("length", [None, DAY, DAY + DAY // 2, DAY // 2])
def test_given_window_under_two_days_when_kind_says_split_then_failed_not_split(
    stopper: Stopper, length: int | None
) -> None:
    def actions(task: ExportTask, job: ExportJob, attempt: int) -> FailureAction:
        return FailureAction.SPLIT

    kind = FakeKind(["FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR"], actions=actions)
    end = None if length is None else T0 + length
    with running(kind, [task(T0, end)], stopper) as (scheduler, [tracked]):
        scheduler.wait(tracked)
    assert tracked.outcome is Outcome.FAILED
    assert tracked.children == []
    assert isinstance(tracked.error, JobFailedError)
    assert "cannot be split into two windows of whole days" in str(tracked.error)
    assert len(kind.created) == 1
