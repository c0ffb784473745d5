"""The CRM Data Validation export-jobs API: create a job, poll it, then download its files.

Documented contract (linkedin-api.md section 2): ``POST /v2/crmDataValidationExportJobs
?crmInstanceId=<urn>`` with ``{"exportStartAt": ms}`` answers 201 with no body and the job id in
``X-RestLi-Id`` and ``Location``; ``GET .../{id}?crmInstanceId=<urn>`` reports ``PROCESSING`` and
then ``COMPLETED`` with the seven fields; job ids expire after a week. Inferred and configurable
(section 4): the 30-day look-back clamp, ``exportEndAt`` = creation time, ``nextExportStartAt``
= ``exportEndAt``, the fields sent while processing, 404 for a job of another instance.
"""

from __future__ import annotations

import functools
import json
import re
import typing as t
from dataclasses import dataclass, field
from http import HTTPStatus

from tap_linkedin_crm.sandbox.clock import DAY_MS
from tap_linkedin_crm.sandbox.data import ExportData, ExportPlan, plan_files
from tap_linkedin_crm.sandbox.downloads import DownloadLinks
from tap_linkedin_crm.sandbox.fault_effects import fault_reply, spoil_job_body, with_transport_fault
from tap_linkedin_crm.sandbox.faults import FAILED_STATUSES, FaultScope
from tap_linkedin_crm.sandbox.messages import (
    RESTLI_REPLY_HEADER,
    Reply,
    error_envelope,
    json_reply,
    not_permitted,
    restli_header_error,
)
from tap_linkedin_crm.sandbox.oauth import APP_PERMISSION

if t.TYPE_CHECKING:
    from tap_linkedin_crm.sandbox.context import SandboxContext
    from tap_linkedin_crm.sandbox.data import BaseCache
    from tap_linkedin_crm.sandbox.downloads import Downloads
    from tap_linkedin_crm.sandbox.messages import Request
    from tap_linkedin_crm.sandbox.oauth import OAuthServer

JOBS_PATH = "/v2/crmDataValidationExportJobs"
JOB_PATH_RE = re.compile(r"^/v2/crmDataValidationExportJobs/([^/]+)$")
_URN_RE = re.compile(r"^urn:li:crmInstance:\(([A-Za-z0-9_]+),([^,()]+)\)$")


@dataclass(slots=True)
class CrmExportJob:
    """One CRM Data Validation export job and where it stands."""

    job_id: int
    instance: str
    export_start_at: int
    export_end_at: int
    created_at: int
    files: ExportData
    failure: str | None = None
    never: bool = False
    drift_fault: bool = False
    never_logged: bool = False
    polls: int = 0
    status: str = "PROCESSING"
    completed_at: int | None = None
    links: DownloadLinks = field(default_factory=DownloadLinks)

    @property
    def scope(self) -> FaultScope:
        """What the job is about, for fault filters."""
        return FaultScope(instance=self.instance)


class CrmExportJobs:
    """Serves the create and get endpoints and keeps the jobs."""

    def __init__(
        self,
        ctx: SandboxContext,
        oauth: OAuthServer,
        downloads: Downloads,
        base_cache: BaseCache,
    ) -> None:
        """Serve jobs for ``ctx``'s scenario; ``base_cache`` shares value pools between jobs."""
        self._ctx = ctx
        self._oauth = oauth
        self._downloads = downloads
        self._base_cache = base_cache
        self.jobs: dict[int, CrmExportJob] = {}

    def handle(self, req: Request) -> Reply:
        """Answer a create or get call: authenticate, check headers, fire faults, then serve."""
        ctx = self._ctx
        req.instance = req.param("crmInstanceId")
        job_path = JOB_PATH_RE.match(req.path)
        if job_path is not None and job_path.group(1).isdigit():
            req.job_id = int(job_path.group(1))
        caller = self._oauth.authenticate(req, APP_PERMISSION)
        if isinstance(caller, Reply):
            return caller
        missing = restli_header_error(req) if ctx.scenario.require_restli_header else None
        if missing is not None:
            return missing
        fault = ctx.take_http_fault(req)
        if fault is not None:
            expire = functools.partial(self._oauth.expire, caller.token)
            replaced = fault_reply(fault, req, ctx.pause, expire_token=expire)
            if replaced is not None:
                return replaced
        reply = self._create(req) if req.endpoint == "create" else self._get(req)
        return with_transport_fault(reply, fault)

    def job_info(self, job: CrmExportJob) -> dict[str, t.Any]:
        """A snapshot of a job for tests (``Sandbox.jobs``)."""
        plan = job.files.plan
        return {
            "jobId": job.job_id,
            "instance": job.instance,
            "exportStartAt": job.export_start_at,
            "exportEndAt": job.export_end_at,
            "status": job.status,
            "createdAt": job.created_at,
            "completedAt": job.completed_at,
            "expireAt": job.links.expire_at,
            "nextExportStartAt": self._next_start(job),
            "downloadUrls": list(job.links.urls),
            "polls": job.polls,
            "files": len(plan.files),
            "rows": sum(f.rows for f in plan.files),
            "columns": [list(f.columns) for f in plan.files],
            "gzip": plan.gzip,
            "willFail": job.failure is not None,
            "neverFinishes": job.never,
        }

    # -- create --------------------------------------------------------------------------------

    def _check_instance(self, req: Request) -> Reply | None:  # noqa: PLR0911
        urn = req.instance
        if not urn:
            return error_envelope(400, "Missing required query parameter crmInstanceId")
        match = _URN_RE.match(urn)
        if match is None:
            return error_envelope(
                400, "Invalid crmInstanceId: expected urn:li:crmInstance:(CRM_KEY,VALUE)"
            )
        scenario = self._ctx.scenario
        if match.group(1) not in scenario.crm_keys:
            return error_envelope(400, f"Invalid CRM key {match.group(1)} in crmInstanceId")
        spec = scenario.instances.get(urn)
        if spec is None:
            if scenario.unknown_instance_status == HTTPStatus.FORBIDDEN:
                return not_permitted(req)
            return error_envelope(scenario.unknown_instance_status, "CRM instance not found")
        if not spec.permitted:
            return not_permitted(req)
        return None

    def _create(self, req: Request) -> Reply:
        error = self._check_instance(req)
        if error is not None:
            return error
        try:
            payload = json.loads(req.body or b"null")
        except ValueError:
            return error_envelope(400, "Request body is not valid JSON")
        start = payload.get("exportStartAt") if isinstance(payload, dict) else None
        if not isinstance(start, int) or isinstance(start, bool):
            return error_envelope(400, "exportStartAt must be an integer (epoch milliseconds)")
        ctx = self._ctx
        scenario = ctx.scenario
        now = ctx.clock.now_ms()
        if start > now:
            return error_envelope(400, "exportStartAt must not be in the future")
        urn = t.cast("str", req.instance)
        spec = scenario.instances[urn]
        start = max(start, now - scenario.lookback_days * DAY_MS)
        with ctx.lock:
            job_id = ctx.next_job_id()
            fired = ctx.faults.take_job_faults("create", FaultScope(instance=urn))
            kinds = {f.kind for f in fired}
            failed = next((f for f in fired if f.kind == "job_failed"), None)
            files = plan_files(
                spec.rows,
                spec.files,
                spec.columns if spec.columns is not None else scenario.columns,
                header_drift=spec.header_drift or "header_drift" in kinds,
                file_columns=spec.file_columns,
            )
            plan = ExportPlan(
                seed=scenario.seed,
                instance=urn,
                job_id=job_id,
                export_start_at=start,
                export_end_at=now,
                files=files,
                gzip=spec.gzip,
                bom=scenario.bom,
                nul_bytes=scenario.nul_bytes,
                long_field_chars=scenario.long_field_chars,
            )
            self.jobs[job_id] = CrmExportJob(
                job_id=job_id,
                instance=urn,
                export_start_at=start,
                export_end_at=now,
                created_at=now,
                files=ExportData(plan, self._base_cache),
                failure=None if failed is None else failed.variant or FAILED_STATUSES[0],
                never="job_never_finishes" in kinds,
                drift_fault="header_drift" in kinds,
            )
        req.job_id = job_id
        if kinds:
            req.faults.append(",".join(sorted(kinds)))
        headers = [
            ("X-RestLi-Id", str(job_id)),
            ("Location", f"/crmDataValidationExportJobs/{job_id}"),
            RESTLI_REPLY_HEADER,
        ]
        return Reply(201, headers)

    # -- get -----------------------------------------------------------------------------------

    def _next_start(self, job: CrmExportJob) -> int:
        if self._ctx.scenario.next_export_start == "start":
            return job.export_start_at
        return job.export_end_at

    def _advance(self, job: CrmExportJob, now: int) -> None:
        """Count one poll and move the job on: complete or fail it, or renew expired URLs.

        Job faults are logged as fired when the answer first shows them.
        """
        ctx = self._ctx
        scenario = ctx.scenario
        job.polls += 1
        if job.status == "PROCESSING":
            if scenario.processing_seconds is not None:
                done = now - job.created_at >= scenario.processing_seconds * 1000
            else:
                done = job.polls > scenario.job_processing_polls
            if done and job.never:
                if not job.never_logged:
                    job.never_logged = True
                    ctx.record_fired("job_never_finishes", "get", job.scope, job.job_id)
            elif done and job.failure is not None:
                job.status = job.failure
                ctx.record_fired("job_failed", "get", job.scope, job.job_id, job.failure)
            elif done:
                job.status = "COMPLETED"
                job.completed_at = now
                self._downloads.issue(job, now)
                if job.drift_fault:
                    ctx.record_fired("header_drift", "get", job.scope, job.job_id)
        elif job.status == "COMPLETED" and job.links.expired(now):
            self._downloads.issue(job, now)

    def _get(self, req: Request) -> Reply:
        match = JOB_PATH_RE.match(req.path)
        raw_id = match.group(1) if match else ""
        if not raw_id.isdigit():
            return error_envelope(400, f"Invalid job id {raw_id!r}: expected a long")
        job_id = int(raw_id)
        req.job_id = job_id
        error = self._check_instance(req)
        if error is not None:
            return error
        ctx = self._ctx
        now = ctx.clock.now_ms()
        retention = ctx.scenario.job_retention_days * DAY_MS
        with ctx.lock:
            job = self.jobs.get(job_id)
            if job is None or job.instance != req.instance or now - job.created_at > retention:
                return error_envelope(404, f"Export job {job_id} not found")
            self._advance(job, now)
            body: dict[str, t.Any] = {
                "jobId": job.job_id,
                "exportStartAt": job.export_start_at,
                "status": job.status,
            }
            if job.status == "COMPLETED":
                body.update(
                    exportEndAt=job.export_end_at,
                    downloadUrls=list(job.links.urls),
                    nextExportStartAt=self._next_start(job),
                    expireAt=job.links.expire_at,
                )
            elif job.status != "PROCESSING":
                body["exportEndAt"] = job.export_end_at
            completed = job.status == "COMPLETED"
        sent = spoil_job_body(
            ctx.take_response_fault(req, completed=completed), body, url_field="downloadUrls"
        )
        return json_reply(200, sent, [RESTLI_REPLY_HEADER])
