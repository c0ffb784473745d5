"""Job orchestration: one export per CRM instance, all created at once and polled in parallel.

Each instance gets a worker thread that resumes its in-flight job from state (or creates a job),
polls it to a final status, and replaces failed jobs up to `job_max_attempts`. The main thread
(the Singer streams) collects finished exports one instance at a time, downloads their files and
emits rows; it asks here for fresh URLs when they expire, or for a replacement job when the job
is gone. Threads never touch Singer state: they only fill in `InstanceExport` objects.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import typing as t
from dataclasses import dataclass, field

from tap_linkedin_crm.errors import (
    JobFailedError,
    JobGoneError,
    LinkedInCRMError,
    NotFoundError,
    SyncInterruptedError,
)
from tap_linkedin_crm.jobs import ExportJob, JobPhase, JobPoller

if t.TYPE_CHECKING:
    from collections.abc import Callable


LOGGER = logging.getLogger("tap_linkedin_crm.exports")
#: A still-running job gets a progress line at least this often (and on every status change).
PROGRESS_EVERY_SECONDS = 60.0


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds (LinkedIn's time unit)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What to export for one instance: the window start, and a job to resume, if any."""

    instance_urn: str
    export_start_at: int
    resume_job_id: int | None = None
    resume_created_at: int | None = None


@dataclass(slots=True)
class InstanceExport:
    """One instance's export in this run, filled in by its worker thread."""

    plan: ExportPlan
    job_id: int | None = None
    job: ExportJob | None = None
    attempt: int = 1
    created_at: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    completed_at: int | None = None
    polls: int = 0
    error: BaseException | None = None
    created: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def urn(self) -> str:
        """The CRM instance URN."""
        return self.plan.instance_urn


class PollReporter:
    """Logs a job's status on every change, and at least every `PROGRESS_EVERY_SECONDS`."""

    def __init__(self, export: InstanceExport) -> None:
        """Start counting from now, with the status already known (if any)."""
        self.export = export
        self.waiting_since = time.strftime("%H:%M:%S UTC", time.gmtime())
        self.last_status = export.job.status if export.job else ""
        self.last_logged = 0.0

    def __call__(self, job: ExportJob, polls: int, elapsed: float) -> None:
        """Count the poll; log it when the status changed or a while has passed."""
        self.export.polls += 1
        if job.status == self.last_status and elapsed - self.last_logged < PROGRESS_EVERY_SECONDS:
            return
        self.last_status, self.last_logged = job.status, elapsed
        LOGGER.info(
            "CRM instance %s: export job %s is %s (waiting since %s, %.1f s, %d polls).",
            self.export.urn,
            job.job_id,
            job.status,
            self.waiting_since,
            elapsed,
            polls,
        )


class ExportJobEndpoints(t.Protocol):
    """The two calls an async export API needs here, for one kind of export.

    `key` names what is exported (a CRM instance URN here; a Sales Navigator contract URN for the
    analytics exports), so the coordinator runs any such export, not only this one.
    """

    def create_job(self, key: str, start_at: int) -> int:
        """Create an export job starting at `start_at` (epoch ms); return its id."""
        ...

    def get_job(self, key: str, job_id: int) -> ExportJob:
        """Describe a job (raises `NotFoundError` when it is gone)."""
        ...


class ExportCoordinator:
    """Runs the export jobs of all instances concurrently; hands finished ones to the streams."""

    def __init__(  # noqa: PLR0913 - all are real, independent inputs
        self,
        endpoints: ExportJobEndpoints,
        poller: JobPoller,
        *,
        max_attempts: int,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = now_ms,
        check_stop: Callable[[], None] = lambda: None,
    ) -> None:
        """Keep the endpoints, waiting policy and clocks; nothing starts until `start`."""
        self.endpoints = endpoints
        self.poller = poller
        self.max_attempts = max_attempts
        self.monotonic = monotonic
        self.wall_ms = wall_ms
        self.check_stop = check_stop
        self.exports: dict[str, InstanceExport] = {}
        self._threads: list[threading.Thread] = []

    def start(self, plans: list[ExportPlan]) -> None:
        """Start one worker per instance, then wait until every job exists (or failed to).

        A stop ends the wait early (without raising): the jobs created so far can then still be
        saved in state before the stop is acted on.
        """
        for plan in plans:
            # Each run has its own `job_max_attempts` budget, resumed job or not.
            export = InstanceExport(plan=plan)
            self.exports[plan.instance_urn] = export
            thread = threading.Thread(
                target=self._work,
                args=(export,),
                name=f"export-{len(self._threads)}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
        for export in self.exports.values():
            while not export.created.wait(0.2):
                try:
                    self.check_stop()
                except SyncInterruptedError:
                    return

    def result(self, urn: str) -> InstanceExport:
        """Block until the instance's job is final (or its worker failed)."""
        export = self.exports[urn]
        while not export.done.wait(0.2):
            self.check_stop()
        return export

    def join(self, timeout: float = 5.0) -> None:
        """Wait up to `timeout` in all for workers to end (daemons; a stop makes them exit fast).

        A worker blocked in a request ends only when it returns; the process does not wait.
        """
        deadline = self.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - self.monotonic()))

    # Main-thread helpers for the download phase -------------------------------------------

    def refresh(self, export: InstanceExport) -> ExportJob:
        """Fetch the completed job again for fresh download URLs.

        Raises:
            JobGoneError: The job no longer exists (or is no longer completed).
        """
        assert export.job_id is not None  # noqa: S101 - only called for completed exports
        try:
            job = self.endpoints.get_job(export.urn, export.job_id)
        except NotFoundError:
            msg = f"Export job {export.job_id} of {export.urn} is gone (404)."
            raise JobGoneError(msg) from None
        if job.phase is not JobPhase.COMPLETED:
            msg = f"Export job {export.job_id} of {export.urn} is now {job.status}."
            raise JobGoneError(msg)
        LOGGER.info(
            "Export job %s of %s: fetched fresh download URLs (%d files).",
            job.job_id,
            export.urn,
            len(job.download_urls),
        )
        export.job = job
        return job

    def replace(self, export: InstanceExport) -> ExportJob:
        """Create and wait for a new job for the same window, in the calling thread.

        Raises:
            JobFailedError: The replacement failed too (or attempts are used up).
        """
        LOGGER.warning(
            "Export job %s of %s can no longer be downloaded; creating a new job for the same "
            "window (exportStartAt=%d).",
            export.job_id,
            export.urn,
            export.plan.export_start_at,
        )
        if export.attempt >= self.max_attempts:
            msg = (
                f"CRM instance {export.urn}: export job {export.job_id} can no longer be "
                f"downloaded, and all {self.max_attempts} attempts (job_max_attempts) are used "
                "up. The bookmark was not moved; run the sync again later."
            )
            raise JobFailedError(msg)
        self._create(export, attempt=export.attempt + 1)
        self._run_to_completion(export)
        assert export.job is not None  # noqa: S101 - _run_to_completion sets it or raises
        return export.job

    # Worker --------------------------------------------------------------------------------

    def _work(self, export: InstanceExport) -> None:
        try:
            self._resume_or_create(export)
            export.created.set()
            self._run_to_completion(export)
        except SyncInterruptedError as exc:
            export.error = exc
        except LinkedInCRMError as exc:
            export.error = exc
            LOGGER.error("CRM instance %s: %s", export.urn, exc)  # noqa: TRY400 - no traceback
        except Exception as exc:  # noqa: BLE001 - a worker must report, never die silently
            # Only the type: transport errors quote URLs, and signed URLs carry tokens.
            msg = f"CRM instance {export.urn}: the export failed ({type(exc).__name__})."
            export.error = LinkedInCRMError(msg)
            LOGGER.error("%s", msg)  # noqa: TRY400 - no traceback
        finally:
            export.created.set()
            export.done.set()

    def _resume_or_create(self, export: InstanceExport) -> None:
        plan = export.plan
        if plan.resume_job_id is not None:
            try:
                job = self.endpoints.get_job(plan.instance_urn, plan.resume_job_id)
            except NotFoundError:
                LOGGER.warning(
                    "CRM instance %s: export job %s from the last run is gone (404; jobs expire "
                    "after 7 days); creating a new job for the same window.",
                    plan.instance_urn,
                    plan.resume_job_id,
                )
            else:
                if job.phase is JobPhase.FAILED:
                    LOGGER.warning(
                        "CRM instance %s: export job %s from the last run ended %s; creating a "
                        "new job for the same window.",
                        plan.instance_urn,
                        job.job_id,
                        job.status,
                    )
                    self._create(export)
                    return
                export.job_id = job.job_id
                export.job = job
                export.created_at = plan.resume_created_at
                LOGGER.info(
                    "CRM instance %s: resuming export job %s from the last run (status %s).",
                    plan.instance_urn,
                    job.job_id,
                    job.status,
                )
                return
        self._create(export)

    def _create(self, export: InstanceExport, attempt: int | None = None) -> None:
        plan = export.plan
        job_id = self.endpoints.create_job(plan.instance_urn, plan.export_start_at)
        with export.lock:  # the main thread snapshots these together for the state
            export.job, export.job_id, export.created_at = None, job_id, self.wall_ms()
            if attempt is not None:
                export.attempt = attempt
        LOGGER.info(
            "CRM instance %s: created export job %s (attempt %d of %d, exportStartAt=%d).",
            plan.instance_urn,
            export.job_id,
            export.attempt,
            self.max_attempts,
            plan.export_start_at,
        )

    def _run_to_completion(self, export: InstanceExport) -> None:
        """Poll until COMPLETED; replace FAILED jobs while attempts remain.

        Raises:
            JobFailedError: Every attempt failed.
        """
        while True:
            assert export.job_id is not None  # noqa: S101 - created or resumed before
            job_id = export.job_id
            started = self.monotonic()
            on_poll = PollReporter(export)
            job = self.poller.wait(
                functools.partial(self.endpoints.get_job, export.urn, job_id),
                started_at=started,
                first=export.job,
                on_poll=on_poll,
                label=f"CRM instance {export.urn}: export job",
            )
            export.job = job
            if job.phase is JobPhase.COMPLETED:
                export.completed_at = self.wall_ms()
                LOGGER.info(
                    "CRM instance %s: export job %s completed in %.1f s: %d file(s), window "
                    "%s..%s.",
                    export.urn,
                    job.job_id,
                    self.monotonic() - started,
                    len(job.download_urls),
                    job.export_start_at,
                    job.export_end_at,
                )
                return
            if export.attempt >= self.max_attempts:
                msg = (
                    f"CRM instance {export.urn}: export job {job.job_id} ended {job.status}, and "
                    f"all {self.max_attempts} attempts (job_max_attempts) failed. The bookmark "
                    "was not moved; run the sync again later."
                )
                raise JobFailedError(msg)
            LOGGER.warning(
                "CRM instance %s: export job %s ended %s; trying a new job (attempt %d of %d).",
                export.urn,
                job.job_id,
                job.status,
                export.attempt + 1,
                self.max_attempts,
            )
            self._create(export, attempt=export.attempt + 1)
