"""The poll scheduler: creates every export job and polls them all, from one thread.

Jobs are created in emission order, at most `max_jobs_in_flight` at a time (a job counts until its
rows were emitted and the main thread releases it). Each job is polled when its own delay is due
(growing, jittered, capped: `PollPolicy`), so a hundred jobs cost a hundred timers in one heap,
not a hundred threads. HTTP calls run on a few daemon worker threads, so one slow request delays no
other job and a stuck request never keeps the process alive.

What a status means is decided here, the same way for every export kind: COMPLETED is done (a
COMPLETED job without files is asked again, then replaced once, then taken as empty, with a note);
`FAILED_*` goes to the kind's `failure_action` (retry, split the window, stop, fail); a job still
running after `job_timeout` fails its partition but stays in state, so the next run polls it again.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import functools
import heapq
import itertools
import logging
import queue
import random
import threading
import time
import typing as t

from tap_linkedin_crm.errors import (
    APIError,
    JobFailedError,
    JobGoneError,
    JobTimeoutError,
    LinkedInCRMError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    SyncInterruptedError,
)
from tap_linkedin_crm.jobs import ExportJob, JobPhase, is_known_status
from tap_linkedin_crm.kinds.base import DAY_MS, ExportTask, FailureAction, Window

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tap_linkedin_crm.engine.stopper import Stopper
    from tap_linkedin_crm.jobs import PollPolicy
    from tap_linkedin_crm.kinds.base import ExportKind

LOGGER = logging.getLogger("tap_linkedin_crm.engine")

#: A still-running job gets a progress line at least this often (and on every status change).
PROGRESS_EVERY_SECONDS = 60.0
#: HTTP calls in parallel; LinkedIn's API is not the bottleneck of waiting.
DEFAULT_WORKERS = 4


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds (LinkedIn's time unit)."""
    return time.time_ns() // 1_000_000


class Outcome(enum.Enum):
    """Where a tracked job stands, as the main thread sees it."""

    PENDING = "pending"  # being created or polled
    COMPLETED = "completed"  # files ready (or the window taken as empty, see `note`)
    FAILED = "failed"  # its partition fails: `error` says why
    STOPPED = "stopped"  # data not ready: its partition stops here, not a failure
    SPLIT = "split"  # replaced by `children`, one per half of the window
    CANCELLED = "cancelled"  # no longer wanted (its partition failed or stopped earlier)


@dataclasses.dataclass(eq=False)
class TrackedJob:
    """One task's export job through its life: creation, polls, replacements."""

    task: ExportTask
    kind: ExportKind
    attempt: int = 1
    job_id: int | None = None
    created_at: int | None = None
    job: ExportJob | None = None
    polls: int = 0
    outcome: Outcome = Outcome.PENDING
    error: BaseException | None = None
    note: str | None = None
    children: list[TrackedJob] = dataclasses.field(default_factory=list)
    completed_at: int | None = None
    # Scheduling, owned by the scheduler thread (read under the scheduler's lock).
    started: float = 0.0
    due: float = 0.0
    delays: Iterator[float] | None = None
    busy: bool = False
    holds_slot: bool = False
    empty_answers: int = 0
    empty_jobs: int = 0
    unknown_statuses: set[str] = dataclasses.field(default_factory=set)
    last_status: str = ""
    last_logged: float = 0.0
    waiting_since: str = ""
    #: A job remembered from the last run, adopted without an answer (an outage): until its
    #: first answer, a 404 or 403 means "gone", as on the resume's own GET.
    unconfirmed: bool = False

    @property
    def label(self) -> str:
        """How logs name this job's partition and window."""
        return self.task.partition.label

    @property
    def final(self) -> bool:
        """Whether the main thread can act on it."""
        return self.outcome is not Outcome.PENDING

    def leaves(self) -> Iterator[TrackedJob]:
        """This job, or (once split) its halves' leaves, in window order."""
        if not self.children:
            yield self
            return
        for child in self.children:
            yield from child.leaves()


class _Workers:
    """A few daemon threads running HTTP calls; results come back through a callback."""

    def __init__(self, count: int) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"linkedin-api-{i}", daemon=True)
            for i in range(count)
        ]
        self.idle = count
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[[], None]) -> None:
        self.idle -= 1
        self._calls.put(call)

    def _work(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            call()

    def close(self) -> None:
        for _ in self._threads:
            self._calls.put(None)


class JobScheduler:
    """Creates and polls the jobs of all tasks; hands them to the main thread in order."""

    def __init__(  # noqa: PLR0913 - all are real, independent inputs
        self,
        policy: PollPolicy,
        stopper: Stopper,
        *,
        max_in_flight: int,
        workers: int = DEFAULT_WORKERS,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = now_ms,
        rng: random.Random | None = None,
    ) -> None:
        """Keep the waiting policy and clocks; the thread starts with `start`."""
        self.policy = policy
        self.stopper = stopper
        self.max_in_flight = max_in_flight
        self.monotonic = monotonic
        self.wall_ms = wall_ms
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._lock = threading.Condition()
        self._pending: list[TrackedJob] = []  # to create, in emission order
        self._due: list[tuple[float, int, TrackedJob]] = []  # polls, by due time
        self._results: list[Callable[[], None]] = []  # finished calls, to apply in this thread
        self._counter = itertools.count()
        self._workers = _Workers(workers)
        self._thread = threading.Thread(target=self._run, name="job-scheduler", daemon=True)
        self._closing = False
        self._tracked: list[TrackedJob] = []
        self._slots = 0

    # Main thread ------------------------------------------------------------------------------

    def submit(self, tasks: list[tuple[ExportKind, ExportTask]]) -> list[TrackedJob]:
        """Queue tasks (in emission order) and return their tracked jobs."""
        tracked = [TrackedJob(task=task, kind=kind) for kind, task in tasks]
        with self._lock:
            self._pending.extend(tracked)
            self._tracked.extend(tracked)
            self._lock.notify_all()
        return tracked

    def start(self) -> None:
        """Start creating and polling."""
        self._thread.start()

    def wait_created(
        self,
        poll: float = 0.2,
        *,
        on_wait: Callable[[], None] | None = None,
        every: float = 60.0,
    ) -> None:
        """Block until every job that may exist now (within the cap) was created or failed.

        `on_wait` is called every `every` seconds meanwhile (creating many jobs against a slow or
        throttling API can take long). A stop ends the wait early, without raising: the jobs
        created so far can then still be saved in state before the stop is acted on.
        """
        last = self.monotonic()
        while not self.stopper.stopped:
            with self._lock:
                # A finished call's result is applied (job id set) by the scheduler thread.
                creating = bool(self._results) or any(
                    j.busy and j.job_id is None for j in self._tracked
                )
                blocked = self._slots >= self.max_in_flight
                if not creating and (not self._pending or blocked):
                    return
                self._lock.wait(poll)
            if on_wait is not None and self.monotonic() - last >= every:
                last = self.monotonic()
                on_wait()

    def wait(
        self,
        tracked: TrackedJob,
        *,
        on_wait: Callable[[], None] | None = None,
        every: float = 60.0,
    ) -> None:
        """Block until `tracked` is final; call `on_wait` every `every` seconds meanwhile.

        Raises:
            SyncInterruptedError: A stop was asked for.
        """
        last = self.monotonic()
        with self._lock:
            while not tracked.final:
                self.stopper.check()
                self._lock.wait(0.2)
                if on_wait is not None and self.monotonic() - last >= every:
                    last = self.monotonic()
                    self._lock.release()
                    try:
                        on_wait()
                    finally:
                        self._lock.acquire()
        self.stopper.check()

    def release(self, tracked: TrackedJob) -> None:
        """The main thread is done with `tracked`: it no longer counts against the cap."""
        with self._lock:
            self._free(tracked)
            self._lock.notify_all()

    def cancel(self, tracked: list[TrackedJob]) -> None:
        """Stop creating and polling these jobs (their partition failed or stopped)."""
        with self._lock:
            for job in tracked:
                for leaf in job.leaves():
                    if leaf.outcome is Outcome.PENDING:
                        leaf.outcome = Outcome.CANCELLED
                    if leaf in self._pending:
                        self._pending.remove(leaf)
                    self._free(leaf)
            self._lock.notify_all()

    def replace(self, tracked: TrackedJob, reason: str, *, counted: bool = True) -> None:
        """Create a new job for the same window (the main thread can no longer download it).

        `counted` replacements use up one of `job_max_attempts`.

        Raises:
            JobFailedError: `job_max_attempts` jobs were tried already.
        """
        kind_attempts = tracked.kind.max_attempts
        if counted and tracked.attempt >= kind_attempts:
            msg = (
                f"{tracked.label}: export job {tracked.job_id} can no longer be downloaded "
                f"({reason}), and all {kind_attempts} attempts (job_max_attempts) are used up. "
                "The bookmark was not moved; run the sync again later."
            )
            raise JobFailedError(msg)
        LOGGER.warning(
            "%s: export job %s can no longer be downloaded (%s); creating a new job for the "
            "same window (start %d).",
            tracked.label,
            tracked.job_id,
            reason,
            tracked.task.window.start_at,
        )
        with self._lock:
            if counted:
                tracked.attempt += 1
            self._recreate(tracked)
            self._lock.notify_all()

    def refresh(self, tracked: TrackedJob) -> ExportJob:
        """Fetch the completed job again, for fresh download URLs (in the calling thread).

        Raises:
            JobGoneError: The job is gone, no longer completed, or lists other files now.
        """
        assert tracked.job_id is not None  # noqa: S101 - only completed jobs are downloaded
        try:
            job = tracked.kind.get_job(tracked.task, tracked.job_id)
        except (NotFoundError, PermissionDeniedError) as exc:
            msg = f"export job {tracked.job_id} is gone ({_status_text(exc)})"
            raise JobGoneError(msg) from None
        if job.phase is not JobPhase.COMPLETED:
            msg = f"export job {tracked.job_id} is now {job.status}"
            raise JobGoneError(msg)
        old = tracked.job
        if old is not None and len(job.download_urls) != len(old.download_urls):
            msg = (
                f"export job {tracked.job_id} now lists {len(job.download_urls)} files, not "
                f"{len(old.download_urls)}"
            )
            raise JobGoneError(msg)
        LOGGER.info(
            "%s: export job %s: fetched fresh download URLs (%d files).",
            tracked.label,
            job.job_id,
            len(job.download_urls),
        )
        with self._lock:
            tracked.job = job
        return job

    def snapshot(self, tracked: TrackedJob) -> tuple[int | None, int | None, int]:
        """`(job_id, created_at, attempt)` of a tracked job, read together."""
        with self._lock:
            return tracked.job_id, tracked.created_at, tracked.attempt

    def close(self) -> None:
        """Stop the thread and the workers (they are daemons: nothing waits for them)."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self._workers.close()

    # Scheduler thread -----------------------------------------------------------------------

    def _run(self) -> None:
        with self._lock:
            while not self._closing and not self.stopper.stopped:
                for apply in self._results:
                    apply()
                self._results.clear()
                self._start_creations()
                self._start_polls()
                timeout = 0.5
                if self._due:
                    timeout = min(timeout, max(0.0, self._due[0][0] - self.monotonic()))
                if not self._results:
                    self._lock.wait(timeout)

    def _start_creations(self) -> None:
        while self._pending and self._workers.idle and self._slots < self.max_in_flight:
            tracked = self._pending.pop(0)
            if tracked.outcome is not Outcome.PENDING:
                continue
            tracked.holds_slot = True
            self._slots += 1
            self._dispatch(tracked, self._resume_call if tracked.task.resume else self._create_call)

    def _start_polls(self) -> None:
        now = self.monotonic()
        while self._due and self._due[0][0] <= now and self._workers.idle:
            _, _, tracked = heapq.heappop(self._due)
            if tracked.outcome is Outcome.PENDING and not tracked.busy:
                self._dispatch(tracked, self._poll_call)

    def _dispatch(
        self,
        tracked: TrackedJob,
        call: Callable[[TrackedJob], Callable[[], None]],
    ) -> None:
        """Run `call(tracked)` on a worker; apply what it returns in this thread."""
        tracked.busy = True

        def work() -> None:
            try:
                apply = call(tracked)
            except SyncInterruptedError:
                apply = _nothing
            except LinkedInCRMError as exc:
                apply = self._failing(tracked, exc)
            except Exception as exc:
                # Only the type: transport errors may quote URLs, and signed URLs carry tokens.
                error = LinkedInCRMError(
                    f"{tracked.label}: the export failed ({type(exc).__name__})."
                )
                LOGGER.debug("unexpected error", exc_info=True)
                apply = self._failing(tracked, error)
            with self._lock:
                self._workers.idle += 1
                self._results.append(functools.partial(self._apply, tracked, apply))
                self._lock.notify_all()

        self._workers.submit(work)

    def _apply(self, tracked: TrackedJob, apply: Callable[[], None]) -> None:
        """Apply a call's result; an error there (or in the kind) fails the job, not the thread."""
        # Busy until applied: `wait_created` must not see a finished call whose job id is unset.
        tracked.busy = False
        try:
            apply()
        except Exception as exc:  # the scheduler thread must outlive any one job
            LOGGER.debug("unexpected error", exc_info=True)
            if tracked.outcome is Outcome.PENDING:
                error = LinkedInCRMError(
                    f"{tracked.label}: the export failed ({type(exc).__name__})."
                )
                self._finish(tracked, Outcome.FAILED, error)

    # Calls (worker threads): HTTP, then a closure applied under the lock -----------------------

    def _create_call(self, tracked: TrackedJob) -> Callable[[], None]:
        created = tracked.kind.create_job(tracked.task)

        def apply() -> None:
            tracked.job_id = created.job_id
            tracked.created_at = created.created_at or self.wall_ms()
            tracked.job = None
            tracked.completed_at = None
            self._begin_polling(tracked)
            window = tracked.task.window
            LOGGER.info(
                "%s: created export job %s (attempt %d, window %s).",
                tracked.label,
                created.job_id,
                tracked.attempt,
                _window_text(window),
            )

        return apply

    def _resume_call(self, tracked: TrackedJob) -> Callable[[], None]:
        resume = tracked.task.resume
        assert resume is not None  # noqa: S101 - only called for resumed tasks
        try:
            job = tracked.kind.get_job(tracked.task, resume.job_id)
        except (NotFoundError, PermissionDeniedError) as exc:
            reason = _status_text(exc)

            def gone() -> None:
                if tracked.outcome is not Outcome.PENDING:
                    return  # cancelled meanwhile: no new job
                self._remembered_gone(tracked, resume.job_id, reason)

            return gone
        except (ServerError, RateLimitedError) as exc:
            # LinkedIn (or the network) down for longer than the client's retries: the job may
            # well be fine. Adopt it and poll it as any job (job_timeout bounds the wait).
            error = exc

            def unanswered() -> None:
                if tracked.outcome is not Outcome.PENDING:
                    return  # cancelled meanwhile: the job stays remembered as it was
                tracked.job_id = resume.job_id
                tracked.created_at = resume.created_at
                tracked.unconfirmed = True
                self._begin_polling(tracked, schedule=False)
                self._poll_failed(tracked, error)

            return unanswered

        def apply() -> None:
            if tracked.outcome is not Outcome.PENDING:
                return  # cancelled meanwhile: the job stays remembered as it was
            if job.phase is JobPhase.FAILED:
                self._remembered_failed(tracked, job)
                return
            tracked.job_id = resume.job_id
            tracked.created_at = resume.created_at
            LOGGER.info(
                "%s: resuming export job %s from the last run (status %s).",
                tracked.label,
                resume.job_id,
                job.status,
            )
            self._begin_polling(tracked, schedule=False)  # _on_status schedules the next poll
            tracked.polls += 1
            self._on_status(tracked, job)

        return apply

    def _remembered_gone(self, tracked: TrackedJob, job_id: int, reason: str) -> None:
        # 404: older than LinkedIn's 7 days. 403: no longer ours to read. Either way the
        # window is exported again by a new job; a real permission problem shows on create.
        LOGGER.warning(
            "%s: export job %s from the last run is gone (%s; jobs expire after 7 "
            "days); creating a new job for the same window.",
            tracked.label,
            job_id,
            reason,
        )
        tracked.unconfirmed = False
        self._recreate(tracked)

    def _remembered_failed(self, tracked: TrackedJob, job: ExportJob) -> None:
        LOGGER.warning(
            "%s: export job %s from the last run ended %s; creating a new job for the same window.",
            tracked.label,
            job.job_id,
            job.status,
        )
        tracked.unconfirmed = False
        self._recreate(tracked)

    def _poll_call(self, tracked: TrackedJob) -> Callable[[], None]:
        job_id = tracked.job_id
        assert job_id is not None  # noqa: S101 - polled only once created
        try:
            job = tracked.kind.get_job(tracked.task, job_id)
        except (NotFoundError, PermissionDeniedError) as exc:
            denied = exc

            def vanished() -> None:
                if tracked.job_id != job_id or tracked.outcome is not Outcome.PENDING:
                    return  # replaced or cancelled meanwhile
                self._poll_denied(tracked, job_id, denied)

            return vanished
        except (ServerError, RateLimitedError) as exc:
            # LinkedIn (or the network) failing for longer than the client's retries: the job
            # itself is fine. Poll it again later; job_timeout bounds the wait as for any job.
            error = exc

            def unanswered() -> None:
                if tracked.job_id != job_id or tracked.outcome is not Outcome.PENDING:
                    return  # replaced or cancelled meanwhile
                self._poll_failed(tracked, error)

            return unanswered

        def apply() -> None:
            if tracked.job_id != job_id or tracked.outcome is not Outcome.PENDING:
                return  # replaced or cancelled meanwhile
            if tracked.unconfirmed and job.phase is JobPhase.FAILED:
                self._remembered_failed(tracked, job)  # as on resume
                return
            tracked.unconfirmed = False
            tracked.polls += 1
            self._on_status(tracked, job)

        return apply

    # Decisions (scheduler thread, under the lock) -----------------------------------------------

    def _poll_denied(self, tracked: TrackedJob, job_id: int, error: APIError) -> None:
        """A poll got 404 (the job vanished) or 403 (LinkedIn will not show it)."""
        if tracked.unconfirmed:
            # Remembered from the last run and never answered until now: as on resume.
            self._remembered_gone(tracked, job_id, _status_text(error))
        elif isinstance(error, NotFoundError):
            self._on_failure(tracked, None, "it vanished (404) while being polled")
        else:
            self._finish(tracked, Outcome.FAILED, error)

    def _begin_polling(self, tracked: TrackedJob, *, schedule: bool = True) -> None:
        """Start the job's clock and delays; `schedule` its first poll (unless a status is in)."""
        tracked.started = self.monotonic()
        tracked.delays = self.policy.delays(self.rng)
        tracked.last_status, tracked.last_logged = "", 0.0
        tracked.waiting_since = time.strftime("%H:%M:%S UTC", time.gmtime())
        if schedule:
            self._schedule(tracked, next(tracked.delays))

    def _schedule(self, tracked: TrackedJob, delay: float) -> None:
        tracked.due = self.monotonic() + delay
        heapq.heappush(self._due, (tracked.due, next(self._counter), tracked))

    def _on_status(self, tracked: TrackedJob, job: ExportJob) -> None:
        tracked.job = job
        self._report(tracked, job)
        phase = job.phase
        if phase is JobPhase.RUNNING:
            if not is_known_status(job.status) and job.status not in tracked.unknown_statuses:
                tracked.unknown_statuses.add(job.status)
                LOGGER.warning(
                    "%s: export job %s has the undocumented status %r; treating it as still "
                    "running (job_timeout bounds the wait).",
                    tracked.label,
                    job.job_id,
                    job.status,
                )
            elapsed = self.monotonic() - tracked.started
            if elapsed >= self.policy.timeout:
                msg = (
                    f"{tracked.label}: export job {job.job_id} still {job.status} after "
                    f"{self.policy.timeout:g} s (job_timeout); the bookmark was not moved and the "
                    "next run resumes this job. Raise job_timeout if LinkedIn is slow today."
                )
                self._finish(tracked, Outcome.FAILED, JobTimeoutError(msg))
                return
            assert tracked.delays is not None  # noqa: S101
            self._schedule(tracked, min(next(tracked.delays), self.policy.timeout - elapsed))
        elif phase is JobPhase.COMPLETED:
            self._on_completed(tracked, job)
        else:
            self._on_failure(tracked, job, job.status)

    def _poll_failed(self, tracked: TrackedJob, error: LinkedInCRMError) -> None:
        """A poll got no answer: poll again after the next delay, unless job_timeout is up."""
        elapsed = self.monotonic() - tracked.started
        if elapsed >= self.policy.timeout:
            msg = (
                f"{tracked.label}: export job {tracked.job_id} could not be polled ({error}), "
                f"and {self.policy.timeout:g} s (job_timeout) have passed; the bookmark was not "
                "moved and the next run resumes this job."
            )
            self._finish(tracked, Outcome.FAILED, JobTimeoutError(msg))
            return
        assert tracked.delays is not None  # noqa: S101 - set when polling began
        delay = min(next(tracked.delays), self.policy.timeout - elapsed)
        LOGGER.warning(
            "%s: could not poll export job %s (%s); polling it again in %.1f s (job_timeout "
            "bounds the wait).",
            tracked.label,
            tracked.job_id,
            error,
            delay,
        )
        self._schedule(tracked, delay)

    def _on_completed(self, tracked: TrackedJob, job: ExportJob) -> None:
        if job.download_urls or job.row_count == 0:
            # (LinkedIn's rowCount 0 without a file is plainly an empty window.)
            tracked.completed_at = self.wall_ms()
            LOGGER.info(
                "%s: export job %s completed in %.1f s: %d file(s).",
                tracked.label,
                job.job_id,
                self.monotonic() - tracked.started,
                len(job.download_urls),
            )
            self._finish(tracked, Outcome.COMPLETED)
            return
        # COMPLETED without files: LinkedIn sends 1..N URLs (a header-only file for an empty
        # export), so this is taken as "not ready yet": ask again, then try one new job, and only
        # then accept the window as empty, with a note. It never fails the same way every run.
        tracked.empty_answers += 1
        if tracked.empty_answers < 2:  # noqa: PLR2004
            LOGGER.warning(
                "%s: export job %s is COMPLETED without download URLs; asking again.",
                tracked.label,
                job.job_id,
            )
            self._schedule(tracked, self.policy.interval)
            return
        if tracked.empty_jobs < 1:
            tracked.empty_jobs += 1
            LOGGER.warning(
                "%s: export job %s is still COMPLETED without download URLs; exporting the same "
                "window once more with a new job.",
                tracked.label,
                job.job_id,
            )
            self._recreate(tracked)
            return
        if job.row_count:
            # LinkedIn's own rowCount says the window has rows: taken as empty, they would be
            # lost. A rowCount the files do not match fails the window too (see downloads).
            msg = (
                f"{tracked.label}: LinkedIn completed export jobs for this window twice without a "
                f"download URL (last: job {job.job_id}), though its rowCount says "
                f"{job.row_count} rows. The bookmark was not moved; the next run tries again."
            )
            self._finish(tracked, Outcome.FAILED, JobFailedError(msg))
            return
        tracked.completed_at = self.wall_ms()
        tracked.note = (
            f"LinkedIn completed export jobs for this window twice without download URLs (last: "
            f"job {job.job_id}); the window was taken as empty."
        )
        LOGGER.warning("%s: %s", tracked.label, tracked.note)
        self._finish(tracked, Outcome.COMPLETED)

    def _on_failure(self, tracked: TrackedJob, job: ExportJob | None, status: str) -> None:
        if job is None:
            action = tracked.kind.failure_action(tracked.task, _vanished(tracked), tracked.attempt)
        else:
            action = tracked.kind.failure_action(tracked.task, job, tracked.attempt)
        job_id = tracked.job_id
        if action is FailureAction.RETRY:
            LOGGER.warning(
                "%s: export job %s ended %s; trying a new job (attempt %d).",
                tracked.label,
                job_id,
                status,
                tracked.attempt + 1,
            )
            tracked.attempt += 1
            self._recreate(tracked)
        elif action is FailureAction.SPLIT and _splittable(tracked.task.window):
            self._split(tracked, status)
        elif action is FailureAction.SPLIT:
            msg = (
                f"{tracked.label}: export job {job_id} ended {status}, and its window "
                f"{_window_text(tracked.task.window)} cannot be split into two windows of whole "
                "days. The bookmark was not moved."
            )
            self._finish(tracked, Outcome.FAILED, JobFailedError(msg))
        elif action is FailureAction.STOP:
            tracked.note = f"export job {job_id} ended {status}: LinkedIn's data is not ready yet"
            self._finish(tracked, Outcome.STOPPED)
        else:
            msg = (
                f"{tracked.label}: export job {job_id} ended {status}, and all "
                f"{tracked.attempt} attempt(s) (job_max_attempts) failed. The bookmark was not "
                "moved; run the sync again later."
            )
            self._finish(tracked, Outcome.FAILED, JobFailedError(msg))

    def _split(self, tracked: TrackedJob, status: str) -> None:
        window = tracked.task.window
        assert window.end_at is not None  # noqa: S101 - kinds split fixed windows only
        days = (window.end_at - window.start_at) // DAY_MS
        middle = window.start_at + max(1, days // 2) * DAY_MS
        halves = [Window(window.start_at, middle), Window(middle, window.end_at)]
        LOGGER.warning(
            "%s: export job %s ended %s; splitting window %s in two.",
            tracked.label,
            tracked.job_id,
            status,
            _window_text(window),
        )
        children = [
            TrackedJob(
                task=ExportTask(tracked.task.partition, half, sequence=tracked.task.sequence),
                kind=tracked.kind,
            )
            for half in halves
        ]
        tracked.children = children
        self._tracked.extend(children)
        for child in children:
            self._queue(child)
        self._finish(tracked, Outcome.SPLIT)
        self._free(tracked)

    def _recreate(self, tracked: TrackedJob) -> None:
        """Queue a new job for the tracked task, in its place in emission order."""
        tracked.job_id = None
        tracked.job = None
        tracked.outcome = Outcome.PENDING
        tracked.empty_answers = 0
        tracked.task.resume = None
        self._free(tracked)
        self._queue(tracked)

    def _queue(self, tracked: TrackedJob) -> None:
        """Put a job to create into `_pending` at its place in emission order.

        Jobs are created from the front, so the job the main thread will need first is always
        created first. Were a later job put ahead of an earlier one (say the halves of a later
        window split while an earlier half waits for a slot), the cap could fill with jobs that
        are emitted only after a job that can then never be created: a deadlock.
        """
        bisect.insort(self._pending, tracked, key=_emission_order)

    def _finish(
        self, tracked: TrackedJob, outcome: Outcome, error: BaseException | None = None
    ) -> None:
        tracked.outcome = outcome
        tracked.error = error
        if error is not None:
            LOGGER.error("%s", error)
        if outcome in {Outcome.FAILED, Outcome.STOPPED}:
            self._free(tracked)
        self._lock.notify_all()

    def _failing(self, tracked: TrackedJob, error: LinkedInCRMError) -> Callable[[], None]:
        def apply() -> None:
            if tracked.outcome is Outcome.PENDING:
                self._finish(tracked, Outcome.FAILED, error)

        return apply

    def _free(self, tracked: TrackedJob) -> None:
        if tracked.holds_slot:
            tracked.holds_slot = False
            self._slots -= 1

    def _report(self, tracked: TrackedJob, job: ExportJob) -> None:
        """Log the status on every change, and at least every `PROGRESS_EVERY_SECONDS`."""
        elapsed = self.monotonic() - tracked.started
        if job.status == tracked.last_status and (
            elapsed - tracked.last_logged < PROGRESS_EVERY_SECONDS
        ):
            return
        tracked.last_status, tracked.last_logged = job.status, elapsed
        LOGGER.info(
            "%s: export job %s is %s (waiting since %s, %.1f s, %d polls).",
            tracked.label,
            job.job_id,
            job.status,
            tracked.waiting_since,
            elapsed,
            tracked.polls,
        )


def _emission_order(tracked: TrackedJob) -> tuple[int, int]:
    """Where a job comes in the order the main thread emits (halves share their task's place)."""
    return tracked.task.sequence, tracked.task.window.start_at


def _nothing() -> None:
    """A result that changes nothing (the call was interrupted by a stop)."""


def _vanished(tracked: TrackedJob) -> ExportJob:
    return ExportJob(job_id=tracked.job_id or 0, status="FAILED_VANISHED")


def _status_text(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    return f"HTTP {status}" if status else type(exc).__name__


def _splittable(window: Window) -> bool:
    """Whether the window holds two whole days, so that `_split` gives two non-empty halves."""
    return window.end_at is not None and window.end_at - window.start_at >= 2 * DAY_MS


def _window_text(window: Window) -> str:
    if window.end_at is None:
        return f"from {window.start_at}"
    return f"{window.start_at}..{window.end_at}"
