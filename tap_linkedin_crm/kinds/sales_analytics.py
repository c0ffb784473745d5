"""Sales Navigator Analytics exports (`salesAnalyticsExportJobs`): one export kind per export type.

Per (contract, export type) partition, windows of whole UTC days: consecutive, at most
`analytics_window_days` long, from the bookmark (or `analytics_start_date`) up to now minus
`analytics_lag_hours`. Jobs are created with
`POST /salesAnalyticsExportJobs?action=exportActivityData|exportActivityOutcomeData|exportSeatData`
and `{"contract", "startAt", "endAt"}` (answer `200 {"value": {"id", "status"}}`), and read with
`GET /salesAnalyticsExportJobs/{id}?contract=<urn>` (not wrapped; one `downloadUrl`, `rowCount`).

What a failed job calls for: a file too big splits the window in two (down to one day); a timed out
or internal failure gets new jobs, then splits; a data delay stops the partition at the previous
window (its bookmark kept, not a failure).
"""

from __future__ import annotations

import dataclasses
import logging
import typing as t

import pendulum

from tap_linkedin_crm.engine.state import ANALYTICS_LAYOUT
from tap_linkedin_crm.errors import MalformedResponseError
from tap_linkedin_crm.jobs import ExportJob, JobStatus
from tap_linkedin_crm.kinds.base import CreatedJob, FailureAction, Partition, Window
from tap_linkedin_crm.kinds.payload import (
    date_header_ms,
    epoch_ms,
    job_status,
    on_api_host,
    whole_number,
)
from tap_linkedin_crm.transport import json_object_body

if t.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tap_linkedin_crm.columns import ColumnType
    from tap_linkedin_crm.engine.state import PartitionState
    from tap_linkedin_crm.kinds.base import ExportTask
    from tap_linkedin_crm.transport import LinkedInClient

LOGGER = logging.getLogger("tap_linkedin_crm.sync")

JOBS_PATH = "salesAnalyticsExportJobs"
CONTRACTS_PATH = "salesContracts"
PERMISSION = "r_sales_nav_analytics"
CONTRACT_KEY = "contract"
TYPE_KEY = "exportType"
#: Contracts asked per page of `GET /salesContracts?q=contractsByMember`.
CONTRACTS_PAGE_SIZE = 50


@dataclasses.dataclass(frozen=True, slots=True)
class ExportType:
    """One analytics export type: its API action and its rows stream (columns: `columns.py`)."""

    name: str
    action: str
    rows_stream: str

    @property
    def noun(self) -> str:
        """How messages name its jobs' kind, e.g. "activity outcome"."""
        return self.name.replace("_", " ")


ACTIVITY = ExportType("activity", "exportActivityData", "sales_activities")
ACTIVITY_OUTCOME = ExportType(
    "activity_outcome", "exportActivityOutcomeData", "sales_activity_outcomes"
)
SEAT = ExportType("seat", "exportSeatData", "sales_seats")
EXPORT_TYPES = (ACTIVITY, ACTIVITY_OUTCOME, SEAT)
EXPORTS_STREAM = "sales_analytics_exports"


@dataclasses.dataclass(frozen=True, slots=True)
class Contract:
    """A Sales Navigator contract the member can see."""

    urn: str
    name: str | None
    description: str | None
    has_reporting_access: bool

    def record(self) -> dict[str, t.Any]:
        """The `sales_contracts` record."""
        return {
            CONTRACT_KEY: self.urn,
            "name": self.name,
            "description": self.description,
            "hasReportingAccess": self.has_reporting_access,
        }


def list_contracts(client: LinkedInClient) -> list[Contract]:
    """Every contract the member can see (`GET /salesContracts?q=contractsByMember`, paged).

    Raises:
        MalformedResponseError: A page or an element is not what LinkedIn documents.
    """
    contracts: list[Contract] = []
    seen: set[str] = set()
    start = 0
    while True:
        body = client.call_json(
            "GET",
            CONTRACTS_PATH,
            params={
                "q": "contractsByMember",
                "start": str(start),
                "count": str(CONTRACTS_PAGE_SIZE),
            },
            what="list the member's Sales Navigator contracts",
            permission=PERMISSION,
        )
        elements = body.get("elements")
        if not isinstance(elements, list):
            msg = "LinkedIn's list of contracts has no elements list."
            raise MalformedResponseError(msg)
        fresh = [c for c in map(_contract, elements) if c.urn not in seen]
        seen.update(c.urn for c in fresh)
        contracts.extend(fresh)
        start += len(elements)
        if not fresh:  # an empty page, or one LinkedIn sent before (it ignored `start`)
            if elements:
                LOGGER.warning(
                    "LinkedIn answered the contracts page from %d with contracts it had sent "
                    "already (it seems to ignore `start`): the list stops at %d contract(s) and "
                    "may lack some; name the others in contract_ids.",
                    start - len(elements),
                    len(contracts),
                )
            return contracts
        paging = body.get("paging")
        paging = paging if isinstance(paging, dict) else {}
        total = paging.get("total")
        if isinstance(total, int):
            if start >= total:
                return contracts
            continue
        # Without a total: a full page (by the count LinkedIn says it used, which may be less
        # than asked) or a "next" link means there may be more.
        count = paging.get("count")
        size = count if isinstance(count, int) and count > 0 else CONTRACTS_PAGE_SIZE
        links = paging.get("links")
        more = isinstance(links, list) and any(
            isinstance(link, dict) and link.get("rel") == "next" for link in links
        )
        if len(elements) < size and not more:
            return contracts


def _contract(element: object) -> Contract:
    if not isinstance(element, dict) or not isinstance(element.get(CONTRACT_KEY), str):
        msg = "LinkedIn's list of contracts has an element without a contract URN."
        raise MalformedResponseError(msg)
    name, description = element.get("name"), element.get("description")
    return Contract(
        urn=element[CONTRACT_KEY],
        name=name if isinstance(name, str) else None,
        description=description if isinstance(description, str) else None,
        has_reporting_access=bool(element.get("hasReportingAccess")),
    )


def day_windows(
    start_ms: int, *, now: pendulum.DateTime, lag_hours: float, window_days: int
) -> list[Window]:
    """Consecutive windows of whole UTC days from `start_ms` up to `now - lag`.

    Each window is at most `window_days` long; `start_ms` is moved down to its UTC midnight, and
    the last window ends at the last UTC midnight before `now - lag`.
    """
    start = pendulum.from_timestamp(start_ms / 1000, tz="UTC").start_of("day")
    limit = now.in_timezone("UTC").subtract(seconds=int(lag_hours * 3600)).start_of("day")
    windows = []
    while start < limit:
        end = min(start.add(days=window_days), limit)
        windows.append(Window(_ms(start), _ms(end)))
        start = end
    return windows


def _ms(moment: pendulum.DateTime) -> int:
    return int(moment.timestamp()) * 1000


class SalesAnalyticsExports:
    """One analytics export type over the chosen contracts, as an export kind."""

    exports_stream = EXPORTS_STREAM
    context_keys: tuple[str, ...] = (CONTRACT_KEY, TYPE_KEY)
    state_layout = ANALYTICS_LAYOUT

    def __init__(  # noqa: PLR0913 - all are real, independent inputs
        self,
        client: LinkedInClient,
        export_type: ExportType,
        contracts: Sequence[str],
        *,
        column_types: Mapping[str, ColumnType],
        default_start: int,
        now: pendulum.DateTime,
        lag_hours: float,
        window_days: int,
        max_attempts: int,
    ) -> None:
        """Export `export_type` of each contract with the member's `client`."""
        self.client = client
        self.export_type = export_type
        self.name = export_type.rows_stream
        self.rows_stream = export_type.rows_stream
        self.contracts = tuple(contracts)
        self.column_types = column_types
        self.default_start = default_start
        self.now = now
        self.lag_hours = lag_hours
        self.window_days = window_days
        self.max_attempts = max_attempts

    def partitions(self) -> list[Partition]:
        """One partition per contract, in order."""
        return [
            Partition(
                context={CONTRACT_KEY: urn, TYPE_KEY: self.export_type.name},
                label=f"contract {urn} ({self.export_type.noun} export)",
                key=urn,
            )
            for urn in self.contracts
        ]

    def plan_windows(self, state: PartitionState) -> list[Window]:
        """Whole-day windows from the bookmark (or `analytics_start_date`) up to now - lag."""
        bookmark = state.bookmark
        return day_windows(
            bookmark if bookmark is not None else self.default_start,
            now=self.now,
            lag_hours=self.lag_hours,
            window_days=self.window_days,
        )

    def create_job(self, task: ExportTask) -> CreatedJob:
        """POST a job for the task's contract and window.

        Raises:
            MalformedResponseError: LinkedIn answered without a usable job id.
        """
        window = task.window
        assert window.end_at is not None  # noqa: S101 - analytics windows are fixed
        response = self.client.call(
            "POST",
            JOBS_PATH,
            params={"action": self.export_type.action},
            json={
                CONTRACT_KEY: task.partition.key,
                "startAt": window.start_at,
                "endAt": window.end_at,
            },
            what=(
                f"create {'an' if self.export_type.noun[0] in 'aeiou' else 'a'} "
                f"{self.export_type.noun} export job for contract {task.partition.key}"
            ),
            permission=PERMISSION,
        )
        body = json_object_body(response, "creating an analytics export job")
        value = body.get("value", body)
        job_id = whole_number(
            value.get("id") if isinstance(value, dict) else None, "LinkedIn's new job", "id"
        )
        if job_id is None:
            msg = (
                f"LinkedIn created an analytics export job for {task.partition.key} but sent no id."
            )
            raise MalformedResponseError(msg)
        return CreatedJob(job_id=job_id, created_at=date_header_ms(response))

    def get_job(self, task: ExportTask, job_id: int) -> ExportJob:
        """GET a job's status and, once completed, its download URL and row count."""
        body = self.client.call_json(
            "GET",
            f"{JOBS_PATH}/{int(job_id)}",
            params={CONTRACT_KEY: task.partition.key},
            what=f"read analytics export job {job_id} of contract {task.partition.key}",
            permission=PERMISSION,
        )
        value = body.get("value")
        if "status" not in body and isinstance(value, dict):
            body = value  # documented unwrapped, but wrapped like the create action's answer
        return on_api_host(parse_analytics_job(body, job_id), self.client.api_url)

    def failure_action(self, task: ExportTask, job: ExportJob, attempt: int) -> FailureAction:
        """Split a too-big window, retry then split a timed-out one, stop on data delay."""
        splittable = task.window.days > 1
        if job.status == JobStatus.FAILED_DUE_TO_DATA_DELAY:
            return FailureAction.STOP
        if job.status == JobStatus.FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR:
            return FailureAction.SPLIT if splittable else FailureAction.FAIL
        if attempt < self.max_attempts:
            return FailureAction.RETRY
        if job.status in {
            JobStatus.FAILED_DUE_TO_TIMED_OUT,
            JobStatus.FAILED_DUE_TO_INTERNAL_ERROR,
        }:
            return FailureAction.SPLIT if splittable else FailureAction.FAIL
        return FailureAction.FAIL

    @staticmethod
    def provenance(task: ExportTask, job: ExportJob, file_index: int) -> dict[str, t.Any]:
        """Contract, job and window: before each row's columns."""
        del file_index  # one file per analytics job
        return {
            CONTRACT_KEY: task.partition.key,
            "jobId": job.job_id,
            "startAt": task.window.start_at,
            "endAt": task.window.end_at,
        }

    def exports_record(
        self, task: ExportTask, job: ExportJob, facts: Mapping[str, t.Any]
    ) -> dict[str, t.Any]:
        """The `sales_analytics_exports` record of a completed job."""
        return {
            "id": job.job_id,
            TYPE_KEY: self.export_type.name,
            CONTRACT_KEY: task.partition.key,
            "startAt": task.window.start_at,
            "endAt": task.window.end_at,
            "status": job.status,
            "rowCount": job.row_count,
            "rowsEmitted": facts["rowCount"],
            "expireAt": job.expire_at,
            **{k: v for k, v in facts.items() if k != "rowCount"},
        }


def parse_analytics_job(body: Mapping[str, t.Any], job_id: int) -> ExportJob:
    """Read an analytics export job body (`id`, `status`, `downloadUrl`, `rowCount`, `expireAt`).

    Raises:
        MalformedResponseError: A field has the wrong type; the message names it.
    """
    where = f"LinkedIn's description of analytics export job {job_id}"
    status = job_status(body, where)
    url = body.get("downloadUrl")
    if isinstance(url, str) and not url.strip():
        url = None  # "" is no URL, as null or absent are: the engine asks again
    if url is not None and not isinstance(url, str):
        msg = f"{where}: downloadUrl is not a URL."
        raise MalformedResponseError(msg)
    row_count = whole_number(body.get("rowCount"), where, "rowCount")
    if row_count is not None and row_count < 0:
        msg = f"{where}: rowCount is negative."
        raise MalformedResponseError(msg)
    return ExportJob(
        job_id=whole_number(body.get("id"), where, "id") or job_id,
        status=status,
        download_urls=(url,) if url else (),
        expire_at=epoch_ms(body.get("expireAt"), where, "expireAt"),
        row_count=row_count,
    )
