"""Export job model and waiting policy: statuses, the job object, a poller with injected clock.

Nothing here knows HTTP or Singer. The same model serves LinkedIn's CRM Data Validation exports
(`jobId`, `downloadUrls`) and Sales Analytics exports (`id`, `downloadUrl`).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import random
import threading
import time
import typing as t
from dataclasses import dataclass

from tap_linkedin_crm.errors import JobTimeoutError, SyncInterruptedError

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

LOGGER = logging.getLogger("tap_linkedin_crm.jobs")


class JobPhase(enum.Enum):
    """What a job status means for the tap, whatever LinkedIn calls it."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """Whether polling can stop."""
        return self is not JobPhase.RUNNING


class JobStatus(enum.StrEnum):
    """Statuses LinkedIn documents (or is known to send) for export jobs."""

    ENQUEUED = "ENQUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED_DUE_TO_INTERNAL_ERROR = "FAILED_DUE_TO_INTERNAL_ERROR"
    FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR = "FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR"
    FAILED_DUE_TO_TIMED_OUT = "FAILED_DUE_TO_TIMED_OUT"
    FAILED_DUE_TO_DATA_DELAY = "FAILED_DUE_TO_DATA_DELAY"


def phase_of(status: str) -> JobPhase:
    """Map a raw status to a phase; unknown `FAILED_*` values fail, other unknown values run.

    An unknown non-failure status is treated as still running (and logged) rather than guessed
    complete: the job timeout bounds the wait either way.
    """
    if status == JobStatus.COMPLETED:
        return JobPhase.COMPLETED
    if status.startswith("FAILED"):
        return JobPhase.FAILED
    if status not in JobStatus.__members__:
        LOGGER.warning("Unknown export job status %r; treating it as still running.", status)
    return JobPhase.RUNNING


@dataclass(frozen=True, slots=True)
class ExportJob:
    """One export job as LinkedIn last described it. Times are epoch milliseconds."""

    job_id: int
    status: str
    export_start_at: int | None = None
    export_end_at: int | None = None
    download_urls: tuple[str, ...] = ()
    next_export_start_at: int | None = None
    expire_at: int | None = None
    row_count: int | None = None

    @property
    def phase(self) -> JobPhase:
        """The status, as the tap acts on it."""
        return phase_of(self.status)

    @property
    def bookmark(self) -> int | None:
        """Where the next export should start: `nextExportStartAt`, else `exportEndAt`."""
        return (
            self.next_export_start_at
            if self.next_export_start_at is not None
            else (self.export_end_at)
        )

    def urls_expired(self, now_ms: int, margin_ms: int = 0) -> bool:
        """Whether the download URLs are past (or within `margin_ms` of) `expireAt`."""
        return self.expire_at is not None and now_ms + margin_ms >= self.expire_at

    @classmethod
    def from_api(cls, payload: Mapping[str, t.Any], job_id: int | None = None) -> ExportJob:
        """Build from a GET body (CRM: `jobId`/`downloadUrls`; analytics: `id`/`downloadUrl`).

        Raises:
            ValueError: The body has no job id or status.
        """
        raw_id = payload.get("jobId", payload.get("id", job_id))
        status = payload.get("status")
        if raw_id is None or not isinstance(status, str):
            msg = "export job response has no job id or status"
            raise ValueError(msg)
        urls = payload.get("downloadUrls")
        if urls is None and payload.get("downloadUrl"):
            urls = [payload["downloadUrl"]]
        if urls is None and status == JobStatus.COMPLETED:
            # LinkedIn sends 1..N URLs with COMPLETED (a header-only file for an empty export):
            # taking their absence for "no data" would move the bookmark past unseen rows.
            msg = "completed export job response has no downloadUrls"
            raise ValueError(msg)
        return cls(
            job_id=int(raw_id),
            status=status,
            export_start_at=_optional_int(payload.get("exportStartAt", payload.get("startAt"))),
            export_end_at=_optional_int(payload.get("exportEndAt", payload.get("endAt"))),
            download_urls=tuple(str(u) for u in urls or ()),
            next_export_start_at=_optional_int(payload.get("nextExportStartAt")),
            expire_at=_optional_int(payload.get("expireAt")),
            row_count=_optional_int(payload.get("rowCount")),
        )


def _optional_int(value: object) -> int | None:
    return None if value is None else int(t.cast("int", value))


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """How long to wait between polls and in total. Seconds; fractions are fine."""

    interval: float = 30.0
    max_interval: float = 300.0
    timeout: float = 10800.0
    growth: float = 1.5
    jitter: float = 0.1

    def delays(self, rng: random.Random) -> t.Iterator[float]:
        """Wait before each poll: grows geometrically to the cap, with +/- `jitter` spread."""
        delay = self.interval
        while True:
            spread = delay * self.jitter
            yield max(0.0, min(self.max_interval, delay + rng.uniform(-spread, spread)))
            delay = min(self.max_interval, delay * self.growth)


class Stopper:
    """A stop flag that sleeping code can wait on, so SIGTERM interrupts a long wait at once.

    Code blocked elsewhere registers an `on_stop` callback that unblocks it (a socket read that
    yields rows), or runs in an `interruptible` block (a request that writes nothing), where a
    signal raises `SyncInterruptedError` at once.
    """

    def __init__(self) -> None:
        """Start not stopped."""
        self._event = threading.Event()
        # No lock: `stop` runs in signal handlers, which must not wait for one the interrupted
        # code may hold. Single dict and set operations are atomic under the GIL.
        self._callbacks: dict[object, Callable[[], None]] = {}
        self._interruptible: set[int] = set()

    def stop(self) -> None:
        """Ask every waiter to stop, and run the registered callbacks."""
        self._event.set()
        for callback in list(self._callbacks.values()):
            callback()

    @contextlib.contextmanager
    def on_stop(self, callback: Callable[[], None]) -> Iterator[None]:
        """Within the block, a stop also calls `callback` (which must be quick and not raise)."""
        key = object()
        self._callbacks[key] = callback
        if self._event.is_set():
            callback()  # the stop came before the block: do now what it would have done
        try:
            yield
        finally:
            self._callbacks.pop(key, None)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Within the block, `signal_stop` raises in this thread instead of waiting for it.

        Only for blocking calls that write no output and hold no state a stop could tear (an
        HTTP request in the main thread); never around a `yield`.

        Raises:
            SyncInterruptedError: A stop was asked for before the block.
        """
        self.check()
        ident = threading.get_ident()
        nested = ident in self._interruptible
        self._interruptible.add(ident)
        try:
            yield
        finally:
            if not nested:
                self._interruptible.discard(ident)

    def signal_stop(self) -> None:
        """Stop, from a signal handler: inside an `interruptible` block, also raise there.

        Raises:
            SyncInterruptedError: The interrupted code was in an `interruptible` block.
        """
        self.stop()
        if threading.get_ident() in self._interruptible:
            msg = "sync interrupted"
            raise SyncInterruptedError(msg)

    @property
    def stopped(self) -> bool:
        """Whether a stop was asked for."""
        return self._event.is_set()

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early on stop.

        Raises:
            SyncInterruptedError: A stop was asked for (before or during the sleep).
        """
        if self._event.wait(max(0.0, seconds)):
            msg = "sync interrupted"
            raise SyncInterruptedError(msg)

    def check(self) -> None:
        """Raise if a stop was asked for.

        Raises:
            SyncInterruptedError: A stop was asked for.
        """
        if self._event.is_set():
            msg = "sync interrupted"
            raise SyncInterruptedError(msg)


class JobPoller:
    """Polls one job until it is final or the deadline passes. The only place that waits on jobs."""

    def __init__(
        self,
        policy: PollPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """Keep the policy and the injected clock and sleep (tests pass fakes)."""
        self.policy = policy
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security

    def wait(
        self,
        fetch: Callable[[], ExportJob],
        *,
        started_at: float,
        first: ExportJob | None = None,
        on_poll: Callable[[ExportJob, int, float], None] | None = None,
        label: str = "export job",
    ) -> ExportJob:
        """Fetch the job until its phase is final; `started_at` is on `clock` (resumed jobs).

        Args:
            fetch: Gets the job's current description.
            started_at: When the job started, on this poller's clock.
            first: An already-fetched description, to avoid one request.
            on_poll: Called after each fetch with the job, the poll count, and elapsed seconds.
            label: Names the job in the timeout message.

        Returns:
            The job in a final phase (completed or failed).

        Raises:
            JobTimeoutError: The job was still running at `started_at + timeout`.
        """
        deadline = started_at + self.policy.timeout
        delays = self.policy.delays(self.rng)
        polls = 0
        job = first
        while True:
            if job is None:
                job = fetch()
                polls += 1
                if on_poll is not None:
                    on_poll(job, polls, self.clock() - started_at)
            if job.phase.is_final:
                return job
            remaining = deadline - self.clock()
            if remaining <= 0:
                msg = (
                    f"{label} {job.job_id} still {job.status} after "
                    f"{self.policy.timeout:g} s (job_timeout); the bookmark was not moved and "
                    "the next run resumes this job. Raise job_timeout if LinkedIn is slow today."
                )
                raise JobTimeoutError(msg)
            self.sleep(min(next(delays), remaining))
            job = None
