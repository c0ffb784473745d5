"""What an export kind is: the adapter the engine runs, and the plain data it works on.

An export kind is one of LinkedIn's asynchronous export APIs (CRM Data Validation; each Sales
Navigator analytics export type). It says how to create a job, how to read its status and payload,
which partitions (state keys) and windows exist, what the next bookmark is, and what a failed job
calls for. The engine (`tap_linkedin_crm.engine`) does the rest the same way for every kind:
scheduling, polling, downloads, checkpoints, state.
"""

from __future__ import annotations

import enum
import typing as t
from dataclasses import dataclass, field

if t.TYPE_CHECKING:
    from collections.abc import Mapping

    from tap_linkedin_crm.columns import ColumnType
    from tap_linkedin_crm.engine.state import PartitionState, StateLayout
    from tap_linkedin_crm.jobs import ExportJob
    from tap_linkedin_crm.transport import LinkedInClient

#: One day in epoch milliseconds (LinkedIn's time unit).
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Partition:
    """One state key of an export kind: what is exported, with its own bookmark.

    Attributes:
        context: The state partition's context, e.g. `{"crmInstanceId": urn}`.
        label: How logs and errors name it, e.g. "CRM instance urn:li:crmInstance:(SFDC,...)".
        key: The value jobs are created for (the CRM instance URN, the contract URN).
    """

    context: Mapping[str, str]
    label: str
    key: str


@dataclass(frozen=True, slots=True)
class Window:
    """A time window of one export job, epoch ms; `end_at` None means "until LinkedIn's now"."""

    start_at: int
    end_at: int | None = None

    @property
    def days(self) -> float:
        """Length in days (infinite for an open window)."""
        if self.end_at is None:
            return float("inf")
        return (self.end_at - self.start_at) / DAY_MS


@dataclass(slots=True)
class InFlightJob:
    """A job created for a window but not yet fully emitted, as remembered in state.

    `file_index` and `rows_done` say how far its rows were emitted (0-based file, rows done in it).
    """

    job_id: int
    window: Window
    created_at: int | None = None
    attempt: int = 1
    file_index: int = 0
    rows_done: int = 0


@dataclass(slots=True)
class ExportTask:
    """One window of one partition: what one export job (and its replacements) covers."""

    partition: Partition
    window: Window
    resume: InFlightJob | None = None
    #: Set by the engine: the order in which tasks are emitted (and their jobs created).
    sequence: int = field(default=0)


@dataclass(frozen=True, slots=True)
class CreatedJob:
    """A job LinkedIn just created: its id and, from the response's `Date` header, when."""

    job_id: int
    created_at: int | None


class FailureAction(enum.Enum):
    """What a `FAILED_*` job calls for."""

    RETRY = "retry"  # a new job for the same window
    SPLIT = "split"  # two jobs, one per half of the window
    STOP = "stop"  # stop this partition here, keep its bookmark, not a failure (data not ready)
    FAIL = "fail"  # the partition fails (bookmark kept)


class ExportKind(t.Protocol):
    """One asynchronous export API, as the engine drives it."""

    #: Short name, used in state and logs (e.g. "crm_data_validation", "sales_activities").
    name: str
    #: The stream that gets one record per row, and the one that gets one record per job.
    rows_stream: str
    exports_stream: str
    #: Context keys of its state partitions (e.g. ("crmInstanceId",)).
    context_keys: tuple[str, ...]
    #: State field names.
    state_layout: StateLayout
    #: Jobs tried per window before its partition fails (`job_max_attempts`).
    max_attempts: int
    #: The HTTP client its jobs and downloads use (each API has its own token).
    client: LinkedInClient
    #: Declared CSV column types of its files.
    column_types: Mapping[str, ColumnType]

    def partitions(self) -> list[Partition]:
        """The partitions to export in this run, in emission order."""
        ...

    def plan_windows(self, state: PartitionState) -> list[Window]:
        """This run's windows of one partition, in order, from its state."""
        ...

    def create_job(self, task: ExportTask) -> CreatedJob:
        """Create an export job for the task's partition and window."""
        ...

    def get_job(self, task: ExportTask, job_id: int) -> ExportJob:
        """Describe job `job_id` (raises `NotFoundError` when it is gone)."""
        ...

    def failure_action(self, task: ExportTask, job: ExportJob, attempt: int) -> FailureAction:
        """What to do about a job of `task` that ended in a `FAILED_*` status."""
        ...

    def provenance(self, task: ExportTask, job: ExportJob, file_index: int) -> dict[str, t.Any]:
        """The fields every row of this job's file gets before its CSV columns."""
        ...

    def exports_record(
        self, task: ExportTask, job: ExportJob, facts: Mapping[str, t.Any]
    ) -> dict[str, t.Any]:
        """The exports stream's record for a completed job (`facts`: counts and timings)."""
        ...
