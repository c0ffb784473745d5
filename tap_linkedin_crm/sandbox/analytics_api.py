"""The Sales Navigator Analytics API: contracts, and activity, outcome and seat export jobs.

Documented contract (linkedin-api.md section 3): ``GET /v2/salesContracts?q=contractsByMember``
lists ``{contract, name, description, hasReportingAccess}`` with ``paging``; ``POST
/v2/salesAnalyticsExportJobs?action=exportActivityData|exportActivityOutcomeData|exportSeatData``
with ``{"contract", "startAt", "endAt"}`` (all required, epoch ms) answers ``{"value": {"id",
"status": "ENQUEUED"}}``; ``GET .../{id}?contract=<urn>`` is not wrapped and ends ``COMPLETED``
with ``downloadUrl``, ``rowCount`` and ``expireAt``; a member needs a reporting role.

Inferred or assumed, and configurable where it matters (section 4): status 200 for the create
action; 400 for an unknown action, a missing or non-integer field, ``startAt >= endAt`` or an
``endAt`` in the future; 403 for a contract the member does not hold or has no reporting access
to; 404 for a job asked for with another contract or by another member; the ``PROCESSING`` step
and the ``FAILED_*`` statuses (third-party list); the window and data-delay rules; the
per-member daily quota; jobs expire after ``job_retention_days`` like the CRM ones.
"""

from __future__ import annotations

import functools
import json
import re
import typing as t
from dataclasses import dataclass, field

from tap_linkedin_crm.sandbox.analytics_data import (
    EXPORT_ACTIONS,
    AnalyticsExport,
    ContractActivity,
    columns_for,
)
from tap_linkedin_crm.sandbox.clock import DAY_MS
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
from tap_linkedin_crm.sandbox.oauth import ANALYTICS_SCOPE
from tap_linkedin_crm.sandbox.quota import MEMBER_DAILY_LIMIT_MESSAGE, MemberDailyQuota

if t.TYPE_CHECKING:
    from tap_linkedin_crm.sandbox.context import SandboxContext
    from tap_linkedin_crm.sandbox.downloads import Downloads
    from tap_linkedin_crm.sandbox.messages import Request
    from tap_linkedin_crm.sandbox.oauth import Bearer, OAuthServer
    from tap_linkedin_crm.sandbox.scenario import ContractSpec

CONTRACTS_PATH = "/v2/salesContracts"
ANALYTICS_JOBS_PATH = "/v2/salesAnalyticsExportJobs"
ANALYTICS_JOB_PATH_RE = re.compile(r"^/v2/salesAnalyticsExportJobs/([^/]+)$")
CONTRACTS_FINDER = "contractsByMember"
DEFAULT_PAGE_SIZE = 10
EXCEEDED_FILE_SIZE = "FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR"
DATA_DELAY = "FAILED_DUE_TO_DATA_DELAY"
PENDING_STATUSES = frozenset({"ENQUEUED", "PROCESSING"})


@dataclass(slots=True)
class AnalyticsExportJob:
    """One analytics export job and where it stands.

    Attributes:
        failure: The ``FAILED_*`` status the job will end in, if any.
        failure_cause: What decided the failure: ``job_failed`` (a fault), ``max_window`` or
            ``data_delay`` (scenario rules).
    """

    job_id: int
    contract: str
    export_type: str
    action: str
    member: str
    start_at: int
    end_at: int
    created_at: int
    files: AnalyticsExport
    failure: str | None = None
    failure_cause: str | None = None
    never: bool = False
    never_logged: bool = False
    polls: int = 0
    status: str = "ENQUEUED"
    completed_at: int | None = None
    links: DownloadLinks = field(default_factory=DownloadLinks)

    @property
    def scope(self) -> FaultScope:
        """What the job is about, for fault filters."""
        return FaultScope(contract=self.contract, export_type=self.export_type)


def _int_field(payload: dict[str, t.Any], name: str) -> int | None:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return value


def _int_param(req: Request, name: str, default: int) -> int | None:
    raw = req.param(name)
    if raw is None:
        return default
    return int(raw) if raw.isdigit() else None


class SalesAnalytics:
    """Serves ``salesContracts`` and ``salesAnalyticsExportJobs`` and keeps the jobs."""

    def __init__(self, ctx: SandboxContext, oauth: OAuthServer, downloads: Downloads) -> None:
        """Serve the analytics API for ``ctx``'s scenario."""
        self._ctx = ctx
        self._oauth = oauth
        self._downloads = downloads
        self._quota = MemberDailyQuota(ctx.scenario.member_daily_quota, ctx.clock)
        history = ctx.scenario.analytics_history_days
        self.history_start_ms = (ctx.clock.now_ms() // DAY_MS - history) * DAY_MS
        self.jobs: dict[int, AnalyticsExportJob] = {}

    # -- data ----------------------------------------------------------------------------------

    def activity(self, contract: str) -> ContractActivity:
        """What shapes a contract's generated data.

        Raises:
            KeyError: If the scenario has no such contract.
        """
        spec: ContractSpec = self._ctx.scenario.contracts[contract]
        return ContractActivity(
            seed=self._ctx.scenario.seed,
            contract=contract,
            seats=spec.seats,
            activities_per_day=spec.activities_per_day,
            since_ms=self.history_start_ms,
        )

    def export(
        self, contract: str, export_type: str, start_at: int, end_at: int, job_id: int = 0
    ) -> AnalyticsExport:
        """The file an export of ``export_type`` for ``[start_at, end_at)`` serves."""
        scenario = self._ctx.scenario
        return AnalyticsExport(
            self.activity(contract),
            export_type,
            start_at,
            end_at,
            columns_for(scenario.analytics_columns, export_type),
            job_id=job_id,
            bom=scenario.bom,
            gzip=scenario.contracts[contract].gzip,
        )

    # -- requests ------------------------------------------------------------------------------

    def handle(self, req: Request) -> Reply:
        """Answer a contracts, create or get call: check the caller, fire faults, then serve."""
        ctx = self._ctx
        caller = self._oauth.authenticate(req, ANALYTICS_SCOPE)
        if isinstance(caller, Reply):
            return caller
        missing = restli_header_error(req) if ctx.scenario.require_restli_header else None
        if missing is not None:
            return missing
        endpoint = req.endpoint or ""
        member = caller.member or ""
        payload = self._describe(req)
        if not self._quota.consume(member, endpoint):
            req.faults.append("member_daily_quota")
            ctx.record_fired("member_daily_quota", endpoint, req.scope, req.job_id)
            return json_reply(
                429, {"message": MEMBER_DAILY_LIMIT_MESSAGE, "status": 429}, [RESTLI_REPLY_HEADER]
            )
        fault = ctx.take_http_fault(req)
        if fault is not None:
            expire = functools.partial(self._oauth.expire, caller.token)
            replaced = fault_reply(fault, req, ctx.pause, expire_token=expire)
            if replaced is not None:
                return replaced
        if endpoint == "contracts":
            reply = self._contracts(req, member)
        elif endpoint == "analytics_create":
            reply = self._create(req, caller, payload)
        else:
            reply = self._get(req, member)
        return with_transport_fault(reply, fault)

    def _describe(self, req: Request) -> object:
        """Learn the contract, export type and job early, so faults can match on them.

        Returns:
            The decoded JSON body of a create call (``None`` if absent or not JSON).
        """
        if req.endpoint == "analytics_get":
            req.contract = req.param("contract")
            job_path = ANALYTICS_JOB_PATH_RE.match(req.path)
            if job_path is not None and job_path.group(1).isdigit():
                req.job_id = int(job_path.group(1))
                with self._ctx.lock:
                    job = self.jobs.get(req.job_id)
                if job is not None and job.contract == req.contract:
                    req.export_type = job.export_type
            return None
        if req.endpoint != "analytics_create":
            return None
        req.export_type = EXPORT_ACTIONS.get(req.param("action") or "")
        try:
            payload = json.loads(req.body) if req.body else None
        except ValueError:
            return None
        if isinstance(payload, dict) and isinstance(payload.get("contract"), str):
            req.contract = payload["contract"]
        return payload

    # -- salesContracts ------------------------------------------------------------------------

    def _contracts(self, req: Request, member: str) -> Reply:
        if req.param("q") != CONTRACTS_FINDER:
            return error_envelope(400, f"Query parameter q must be {CONTRACTS_FINDER}")
        start = _int_param(req, "start", 0)
        count = _int_param(req, "count", DEFAULT_PAGE_SIZE)
        if start is None or count is None:
            return error_envelope(400, "start and count must be non-negative integers")
        scenario = self._ctx.scenario
        mine = [(urn, spec) for urn, spec in scenario.contracts.items() if member in spec.members]
        elements = [
            {
                "contract": urn,
                "name": spec.name,
                "description": spec.description,
                "hasReportingAccess": spec.has_reporting_access,
            }
            for urn, spec in mine[start : start + count]
        ]
        links = []
        if start > 0:
            links.append(self._page_link("prev", max(0, start - count), count))
        if start + count < len(mine):
            links.append(self._page_link("next", start + count, count))
        paging: dict[str, t.Any] = {"count": count, "start": start, "links": links}
        if scenario.contracts_paging_total:
            paging["total"] = len(mine)
        return json_reply(200, {"elements": elements, "paging": paging}, [RESTLI_REPLY_HEADER])

    @staticmethod
    def _page_link(rel: str, start: int, count: int) -> dict[str, str]:
        href = f"/salesContracts?count={count}&q={CONTRACTS_FINDER}&start={start}"
        return {"rel": rel, "type": "application/json", "href": href}

    # -- create --------------------------------------------------------------------------------

    def _check_create(  # noqa: PLR0911 - one return per documented rejection
        self, req: Request, member: str, payload: object
    ) -> tuple[str, int, int] | Reply:
        """Validate a create call.

        Returns:
            The contract, ``startAt`` and ``endAt``, or the 400 or 403 reply to send.
        """
        action = req.param("action")
        if not action:
            return error_envelope(400, "Missing required query parameter action")
        if req.export_type is None:
            known = ", ".join(EXPORT_ACTIONS)
            return error_envelope(400, f"Unknown action {action!r}; expected one of {known}")
        if not isinstance(payload, dict):
            return error_envelope(400, "The request body must be a JSON object")
        contract = payload.get("contract")
        start, end = _int_field(payload, "startAt"), _int_field(payload, "endAt")
        if not isinstance(contract, str) or not contract:
            return error_envelope(400, "contract is required (urn:li:contract:...)")
        if start is None or end is None:
            return error_envelope(400, "startAt and endAt are required integers (epoch ms)")
        if start >= end:
            return error_envelope(400, "startAt must be before endAt")
        if end > self._ctx.clock.now_ms():
            return error_envelope(400, "endAt must not be in the future")
        spec = self._ctx.scenario.contracts.get(contract)
        if spec is None or member not in spec.members:
            message = f"Not enough permissions to access contract {contract}"
            return not_permitted(req, message=message)
        if not spec.has_reporting_access:
            message = f"The member has no reporting access to contract {contract}"
            return not_permitted(req, message=message)
        return contract, start, end

    def _create(self, req: Request, caller: Bearer, payload: object) -> Reply:
        member = caller.member or ""
        checked = self._check_create(req, member, payload)
        if isinstance(checked, Reply):
            return checked
        contract, start, end = checked
        ctx = self._ctx
        now = ctx.clock.now_ms()
        export_type = t.cast("str", req.export_type)
        action = t.cast("str", req.param("action"))
        with ctx.lock:
            job_id = ctx.next_job_id()
            fired = ctx.faults.take_job_faults("analytics_create", req.scope)
            job = AnalyticsExportJob(
                job_id=job_id,
                contract=contract,
                export_type=export_type,
                action=action,
                member=member,
                start_at=start,
                end_at=end,
                created_at=now,
                files=self.export(contract, export_type, start, end, job_id),
                never=any(f.kind == "job_never_finishes" for f in fired),
            )
            failed = next((f for f in fired if f.kind == "job_failed"), None)
            if failed is not None:
                job.failure, job.failure_cause = failed.variant or FAILED_STATUSES[0], "job_failed"
            else:
                job.failure, job.failure_cause = self._rule_failure(start, end, now)
            self.jobs[job_id] = job
        req.job_id = job_id
        if fired:
            req.faults.append(",".join(sorted({f.kind for f in fired})))
        body = {"value": {"id": job_id, "status": "ENQUEUED"}}
        return json_reply(200, body, [RESTLI_REPLY_HEADER])

    def _rule_failure(self, start: int, end: int, now: int) -> tuple[str | None, str | None]:
        """The failure the scenario's realistic rules decide for a window, if any."""
        scenario = self._ctx.scenario
        if (
            scenario.analytics_max_window_days is not None
            and end - start > scenario.analytics_max_window_days * DAY_MS
        ):
            return EXCEEDED_FILE_SIZE, "max_window"
        bounds = []
        if scenario.analytics_data_available_until is not None:
            bounds.append(scenario.analytics_data_available_until)
        if scenario.analytics_data_lag_seconds is not None:
            bounds.append(now - int(scenario.analytics_data_lag_seconds * 1000))
        if bounds and end > min(bounds):
            return DATA_DELAY, "data_delay"
        return None, None

    # -- get -----------------------------------------------------------------------------------

    def _advance(self, job: AnalyticsExportJob, now: int) -> None:
        """Count one poll and move the job on: start, end it, or renew expired URLs.

        Job faults and the failure rules are logged as fired when the answer first shows them.
        """
        ctx = self._ctx
        scenario = ctx.scenario
        job.polls += 1
        if job.status in PENDING_STATUSES:
            enqueued = scenario.analytics_enqueued_polls
            if scenario.analytics_processing_seconds is not None:
                done = now - job.created_at >= scenario.analytics_processing_seconds * 1000
            else:
                done = job.polls > enqueued + scenario.analytics_processing_polls
            if done and job.never and not job.never_logged:
                job.never_logged = True
                ctx.record_fired("job_never_finishes", "analytics_get", job.scope, job.job_id)
            if done and not job.never:
                job.completed_at = now
                if job.failure is not None:
                    job.status = job.failure
                    cause = job.failure_cause or "job_failed"
                    ctx.record_fired(cause, "analytics_get", job.scope, job.job_id, job.failure)
                else:
                    job.status = "COMPLETED"
                    self._downloads.issue(job, now)
            else:
                job.status = "ENQUEUED" if job.polls <= enqueued else "PROCESSING"
        elif job.status == "COMPLETED" and job.links.expired(now):
            self._downloads.issue(job, now)

    def _get(self, req: Request, member: str) -> Reply:
        match = ANALYTICS_JOB_PATH_RE.match(req.path)
        raw_id = match.group(1) if match else ""
        if not raw_id.isdigit():
            return error_envelope(400, f"Invalid job id {raw_id!r}: expected a long")
        job_id = int(raw_id)
        req.job_id = job_id
        if not req.contract:
            return error_envelope(400, "Missing required query parameter contract")
        ctx = self._ctx
        now = ctx.clock.now_ms()
        retention = ctx.scenario.job_retention_days * DAY_MS
        with ctx.lock:
            job = self.jobs.get(job_id)
            if (
                job is None
                or job.contract != req.contract
                or job.member != member
                or now - job.created_at > retention
            ):
                return error_envelope(404, f"Export job {job_id} not found")
            req.export_type = job.export_type
            self._advance(job, now)
            body: dict[str, t.Any] = {"id": job.job_id, "status": job.status}
            if job.status == "COMPLETED":
                body.update(
                    downloadUrl=job.links.urls[0],
                    rowCount=job.files.row_count(),
                    expireAt=job.links.expire_at,
                )
            completed = job.status == "COMPLETED"
        sent = spoil_job_body(
            ctx.take_response_fault(req, completed=completed), body, url_field="downloadUrl"
        )
        return json_reply(200, sent, [RESTLI_REPLY_HEADER])

    def job_info(self, job: AnalyticsExportJob) -> dict[str, t.Any]:
        """A snapshot of a job for tests (``Sandbox.analytics_jobs``)."""
        return {
            "id": job.job_id,
            "contract": job.contract,
            "exportType": job.export_type,
            "action": job.action,
            "member": job.member,
            "startAt": job.start_at,
            "endAt": job.end_at,
            "status": job.status,
            "createdAt": job.created_at,
            "completedAt": job.completed_at,
            "expireAt": job.links.expire_at,
            "downloadUrl": job.links.urls[0] if job.links.urls else None,
            "polls": job.polls,
            "willFail": job.failure,
            "failureCause": job.failure_cause,
            "neverFinishes": job.never,
        }
