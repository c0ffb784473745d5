"""Export job model and waiting policy: statuses, the job as LinkedIn describes it, poll delays.

Nothing here knows HTTP, Singer, or which export API a job belongs to: the export kinds
(`tap_linkedin_crm.kinds`) parse their API's job bodies into `ExportJob`.
"""

from __future__ import annotations

import enum
import typing as t
from dataclasses import dataclass

if t.TYPE_CHECKING:
    import random


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


def normalize_status(raw: str) -> str:
    """The status in LinkedIn's documented spelling: statuses compare case-insensitively."""
    return raw.strip().upper()


#: Undocumented statuses that can only mean the job ended without files: waiting for them to
#: change would stop the partition for `job_timeout` on every run until the job is gone (a week).
ENDED_WITHOUT_FILES = frozenset(
    {"FAILURE", "ERROR", "ERRORED", "CANCELLED", "CANCELED", "ABORTED", "EXPIRED", "REJECTED"}
)


def phase_of(status: str) -> JobPhase:
    """Map a (normalized) status to a phase.

    `FAILED*` values, listed or not, and the unmistakable endings in `ENDED_WITHOUT_FILES` are
    failures. Any other unknown value counts as still running rather than guessed complete: the
    job timeout bounds the wait either way, and the caller warns about it once per job
    (`is_known_status`).
    """
    if status == JobStatus.COMPLETED:
        return JobPhase.COMPLETED
    if status.startswith("FAILED") or status in ENDED_WITHOUT_FILES:
        return JobPhase.FAILED
    return JobPhase.RUNNING


def is_known_status(status: str) -> bool:
    """Whether LinkedIn documents this (normalized) status."""
    return status in JobStatus.__members__


@dataclass(frozen=True, slots=True)
class ExportJob:
    """One export job as LinkedIn last described it. Times are epoch milliseconds.

    Attributes:
        job_id: LinkedIn's job id.
        status: The status, normalized to upper case.
        download_urls: The files of a completed job, in order (signed, short-lived URLs).
        start_at: Start of the exported window, as LinkedIn reports it (it may clamp it).
        end_at: End of the exported window.
        next_start_at: Where LinkedIn suggests the next export starts (CRM exports only).
        expire_at: When the download URLs expire.
        row_count: Data rows LinkedIn says the files hold (analytics exports only).
    """

    job_id: int
    status: str
    download_urls: tuple[str, ...] = ()
    start_at: int | None = None
    end_at: int | None = None
    next_start_at: int | None = None
    expire_at: int | None = None
    row_count: int | None = None

    @property
    def phase(self) -> JobPhase:
        """The status, as the tap acts on it."""
        return phase_of(self.status)

    def urls_expired(self, now_ms: int, margin_ms: int = 0) -> bool:
        """Whether the download URLs are past (or within `margin_ms` of) `expireAt`."""
        return self.expire_at is not None and now_ms + margin_ms >= self.expire_at


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """How long to wait between polls of one job, and in total. Seconds; fractions are fine."""

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
