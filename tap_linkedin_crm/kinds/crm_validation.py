"""CRM Data Validation exports (`crmDataValidationExportJobs`): the first export kind.

One partition per CRM instance URN, one open window per run: "from the bookmark until LinkedIn's
now" (LinkedIn clamps the start to 30 days back). Jobs are created with
`POST /crmDataValidationExportJobs?crmInstanceId=<urn>` and `{"exportStartAt": ms}` (201, the id in
`X-RestLi-Id`), and read with `GET /crmDataValidationExportJobs/{id}?crmInstanceId=<urn>`.
"""

from __future__ import annotations

import re
import typing as t
import urllib.parse

from tap_linkedin_crm.engine.state import CRM_LAYOUT
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

if t.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import requests

    from tap_linkedin_crm.columns import ColumnType
    from tap_linkedin_crm.engine.state import PartitionState
    from tap_linkedin_crm.kinds.base import ExportTask
    from tap_linkedin_crm.transport import LinkedInClient

JOBS_PATH = "crmDataValidationExportJobs"
PERMISSION = "r_sales_nav_validation"
INSTANCE_KEY = "crmInstanceId"


class CrmValidationExports:
    """The CRM Data Validation export API, as an export kind."""

    name = "crm_data_validation"
    rows_stream = "crm_data_validation_records"
    exports_stream = "crm_data_validation_exports"
    context_keys: tuple[str, ...] = (INSTANCE_KEY,)
    state_layout = CRM_LAYOUT

    def __init__(
        self,
        client: LinkedInClient,
        instance_urns: Sequence[str],
        *,
        column_types: Mapping[str, ColumnType],
        default_start: int,
        max_attempts: int,
    ) -> None:
        """Export `instance_urns` with `client` (authorized with the app's token).

        `default_start` (epoch ms) starts instances without a bookmark (`start_date`).
        """
        self.client = client
        self.column_types = column_types
        self.instance_urns = tuple(instance_urns)
        self.default_start = default_start
        self.max_attempts = max_attempts

    def partitions(self) -> list[Partition]:
        """One partition per CRM instance, in the configured order."""
        return [
            Partition(context={INSTANCE_KEY: urn}, label=f"CRM instance {urn}", key=urn)
            for urn in self.instance_urns
        ]

    def plan_windows(self, state: PartitionState) -> list[Window]:
        """This run's one window: the in-flight job's, else from the bookmark, else the default."""
        in_flight = state.in_flight()
        if in_flight:
            return [in_flight[0].window]
        bookmark = state.bookmark
        return [Window(bookmark if bookmark is not None else self.default_start)]

    def create_job(self, task: ExportTask) -> CreatedJob:
        """POST a job exporting the task's instance from its window start.

        Raises:
            MalformedResponseError: LinkedIn created the job but sent no usable id.
        """
        urn = task.partition.key
        response = self.client.call(
            "POST",
            JOBS_PATH,
            params={INSTANCE_KEY: urn},
            json={"exportStartAt": int(task.window.start_at)},
            what=f"create an export job for CRM instance {urn}",
            permission=PERMISSION,
        )
        return CreatedJob(job_id=_job_id(response, urn), created_at=date_header_ms(response))

    def get_job(self, task: ExportTask, job_id: int) -> ExportJob:
        """GET a job's status and, once completed, its download URLs."""
        urn = task.partition.key
        body = self.client.call_json(
            "GET",
            f"{JOBS_PATH}/{int(job_id)}",
            params={INSTANCE_KEY: urn},
            what=f"read export job {job_id} of CRM instance {urn}",
            permission=PERMISSION,
        )
        return on_api_host(parse_job(body, job_id), self.client.api_url)

    def failure_action(
        self,
        task: ExportTask,  # noqa: ARG002 - protocol signature
        job: ExportJob,  # noqa: ARG002
        attempt: int,
    ) -> FailureAction:
        """A new job for the same window while attempts remain (`job_max_attempts`)."""
        return FailureAction.RETRY if attempt < self.max_attempts else FailureAction.FAIL

    @staticmethod
    def provenance(task: ExportTask, job: ExportJob, file_index: int) -> dict[str, t.Any]:
        """Instance, job and window (as LinkedIn reports it), file: before each row's columns."""
        return {
            INSTANCE_KEY: task.partition.key,
            "jobId": job.job_id,
            "exportStartAt": job.start_at,
            "exportEndAt": job.end_at,
            "fileIndex": file_index,
        }

    @staticmethod
    def exports_record(
        task: ExportTask, job: ExportJob, facts: Mapping[str, t.Any]
    ) -> dict[str, t.Any]:
        """The exports stream's record: LinkedIn's job fields, then what this run saw."""
        return {
            "jobId": job.job_id,
            INSTANCE_KEY: task.partition.key,
            "status": job.status,
            "exportStartAt": job.start_at,
            "exportEndAt": job.end_at,
            "nextExportStartAt": job.next_start_at,
            "expireAt": job.expire_at,
            **facts,
        }


def parse_job(body: Mapping[str, t.Any], job_id: int) -> ExportJob:
    """Read a CRM export job body; missing optional fields are None.

    `downloadUrls` may be null or absent (the published schema marks it optional); what a
    COMPLETED job without files means is the engine's call, not the parser's.

    Raises:
        MalformedResponseError: A field has the wrong type; the message names it.
    """
    where = f"LinkedIn's description of export job {job_id}"
    status = job_status(body, where)
    raw_id = body.get("jobId", body.get("id", job_id))
    if isinstance(raw_id, str) and raw_id.startswith("urn:li:"):
        raw_id = raw_id.rsplit(":", 1)[-1]  # `urn:li:crmDataValidationExportJob:148`
    urls = body.get("downloadUrls")
    if urls is not None and (
        not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls)
    ):
        msg = f"{where}: downloadUrls is not a list of URLs."
        raise MalformedResponseError(msg)
    if not urls and status == JobStatus.COMPLETED:
        urls = _urls_under_another_name(body, where)
    return ExportJob(
        job_id=whole_number(raw_id, where, "jobId") or job_id,
        status=status,
        download_urls=tuple(urls or ()),
        start_at=epoch_ms(body.get("exportStartAt"), where, "exportStartAt"),
        end_at=epoch_ms(body.get("exportEndAt"), where, "exportEndAt"),
        next_start_at=epoch_ms(body.get("nextExportStartAt"), where, "nextExportStartAt"),
        expire_at=epoch_ms(body.get("expireAt"), where, "expireAt"),
    )


#: Other spellings of `downloadUrls`: LinkedIn's tutorial says "the downloadURL field", and the
#: analytics API sends one `downloadUrl`. Compared case-insensitively.
_URL_FIELDS = frozenset({"downloadurl", "downloadurls"})
#: Words in the name of a field that may hold the files, under a name the tap does not know.
_FILE_WORDS = ("url", "download", "file", "link")


def _urls_under_another_name(body: Mapping[str, t.Any], where: str) -> list[str]:
    """The files of a body without `downloadUrls`: under another spelling, or none.

    Raises:
        MalformedResponseError: The body has a field that looks like it holds the files, but not
            in a form the tap reads. Taking the job as one without files would move the bookmark
            past rows that were never read.
    """
    for name, value in body.items():
        if name.lower() not in _URL_FIELDS or name == "downloadUrls" or value in (None, "", []):
            continue
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value and all(isinstance(u, str) and u for u in value):
            return value
        msg = f"{where}: {name} is not a URL or a list of URLs."
        raise MalformedResponseError(msg)
    suspects = [
        name
        for name, value in body.items()
        if name != "downloadUrls"
        and any(word in name.lower() for word in _FILE_WORDS)
        and _holds_a_location(value)
    ]
    if suspects:
        msg = (
            f"{where}: no downloadUrls, but {', '.join(suspects)} may name its files; not taking "
            "the job as one without files. The bookmark was not moved."
        )
        raise MalformedResponseError(msg)
    return []


#: Text that reads as a file's location: a URL, a path, or a file name (`export_1.csv.gz`).
_LOCATION_RE = re.compile(r"://|^/|\.(?:csv|tsv|txt|gz|zip|json)(?:[?#]|$)", re.IGNORECASE)
#: ... but not a format alone (`csv.gz`, `.csv`).
_FORMAT_RE = re.compile(r"(?:\.?(?:csv|tsv|txt|gz|zip|json))+", re.IGNORECASE)


def _holds_a_location(value: object) -> bool:
    """Whether `value` (text, or lists and objects of it) holds text that reads as a location.

    A field such as `fileFormat: "CSV"` or `linkedInInstance: "urn:li:..."` names no file: a
    window without rows must not fail its instance on every run for it.
    """
    if isinstance(value, str):
        text = value.strip()
        return bool(_LOCATION_RE.search(text)) and not _FORMAT_RE.fullmatch(text)
    if isinstance(value, dict):
        value = list(value.values())
    return isinstance(value, list) and any(_holds_a_location(item) for item in value)


def _job_id(response: requests.Response, urn: str) -> int:
    """The new job's id: `X-RestLi-Id`, else the last segment of `Location`'s path.

    Either may come quoted (`"148"`) or as a URN (`urn:li:...:148`); a `Location` may be
    absolute and carry a query string (`/crmDataValidationExportJobs/148?crmInstanceId=...`).
    """
    location = urllib.parse.urlsplit(response.headers.get("Location", "")).path
    for raw in (response.headers.get("X-RestLi-Id", ""), location.rstrip("/").rsplit("/", 1)[-1]):
        text = urllib.parse.unquote(raw).strip().strip('"').rsplit(":", 1)[-1]
        if text.isascii() and text.isdigit():
            return int(text)
    msg = (
        f"LinkedIn created an export job for CRM instance {urn} but sent no usable job id "
        "(X-RestLi-Id header)."
    )
    raise MalformedResponseError(msg, status=response.status_code)
