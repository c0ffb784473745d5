"""What every part of one running sandbox shares: scenario, clock, lock, faults and job ids."""

from __future__ import annotations

import itertools
import threading
import typing as t
from http import HTTPStatus

from tap_linkedin_crm.sandbox.faults import (
    COMPLETED_ONLY_FAULTS,
    CUT_FAULTS,
    HTTP_FAULTS,
    RESPONSE_FAULTS,
    FiredFault,
)
from tap_linkedin_crm.sandbox.messages import (
    RESTLI_REPLY_HEADER,
    error_envelope,
    json_reply,
    not_permitted,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from tap_linkedin_crm.sandbox.clock import SandboxClock
    from tap_linkedin_crm.sandbox.faults import Fault, FaultBook, FaultScope
    from tap_linkedin_crm.sandbox.messages import Reply, Request
    from tap_linkedin_crm.sandbox.scenario import Scenario

FIRST_JOB_ID = 148
DAILY_LIMIT_MESSAGE = (
    "Resource level throttle APPLICATION DAY limit for calls to this resource is reached."
)


class SandboxContext:
    """The state and services the endpoints of one sandbox share.

    Attributes:
        scenario: What the sandbox serves.
        clock: The sandbox clock; every time-dependent decision reads it.
        faults: The scripted faults.
        lock: Guards tokens, jobs and download links; re-entrant, as endpoints call each other.
        stopping: Set while the sandbox stops, so that waits inside handlers end early.
    """

    def __init__(
        self,
        scenario: Scenario,
        clock: SandboxClock,
        faults: FaultBook,
        base_url: Callable[[], str],
    ) -> None:
        """Share ``scenario``, ``clock`` and ``faults``; ``base_url`` gives the server's URL."""
        self.scenario = scenario
        self.clock = clock
        self.faults = faults
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self._base_url = base_url
        self._job_ids = itertools.count(FIRST_JOB_ID)

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        return self._base_url()

    def next_job_id(self) -> int:
        """A new export job id; ids increase, across both APIs."""
        with self.lock:
            return next(self._job_ids)

    def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (real time), or less if the sandbox stops meanwhile."""
        self.stopping.wait(max(0.0, seconds))

    # -- faults on one request -----------------------------------------------------------------

    def take_http_fault(self, req: Request) -> Fault | None:
        """Count the request against the HTTP faults and return the one that fires, if any."""
        fault = self.faults.take(req.endpoint or "", req.scope, HTTP_FAULTS)
        if fault is not None:
            req.note_fault(fault)
        return fault

    def record_fired(
        self,
        kind: str,
        endpoint: str,
        scope: FaultScope,
        job_id: int | None = None,
        variant: str | None = None,
    ) -> None:
        """Log a fault (or rule) that took effect now."""
        self.faults.record(
            FiredFault(
                kind=kind,
                endpoint=endpoint,
                instance=scope.instance,
                contract=scope.contract,
                export_type=scope.export_type,
                job_id=job_id,
                variant=variant,
                at_ms=self.clock.now_ms(),
            )
        )

    def record_request_faults(self, req: Request) -> None:
        """Log the faults that acted on a request, once it is answered (job id known)."""
        for fault in req.fired:
            self.record_fired(
                fault.kind, req.endpoint or "", req.scope, req.job_id, fault.effective_variant
            )

    def fault_reply(self, fault: Fault, req: Request) -> Reply | None:
        """The reply a fault replaces the answer with, or ``None`` to answer (maybe later)."""
        kind = fault.kind
        if kind == "rate_limit":
            headers = [RESTLI_REPLY_HEADER]
            if fault.retry_after is not None:
                headers.append(("Retry-After", str(fault.retry_after)))
            message = fault.message or DAILY_LIMIT_MESSAGE
            return json_reply(429, {"message": message, "status": 429}, headers)
        if kind == "error":
            status = fault.status or 500
            return error_envelope(status, fault.message or HTTPStatus(status).phrase)
        if kind == "forbidden":
            return not_permitted(req, status=fault.status or 403, message=fault.message)
        if kind == "slow":
            self.pause(fault.delay)
        return None

    @staticmethod
    def with_transport_fault(reply: Reply, fault: Fault | None) -> Reply:
        """Attach a fault that acts while the reply is written (a cut or a stall)."""
        if fault is not None and fault.kind in CUT_FAULTS:
            reply.cut = fault
        elif fault is not None and fault.kind == "stall":
            reply.stall = fault
        return reply

    def spoil_job_body(
        self, req: Request, body: dict[str, t.Any], *, completed: bool, url_field: str
    ) -> object:
        """Apply the response fault that fires on a job-status answer, if any.

        Args:
            req: The GET request.
            body: The answer as it would be sent.
            completed: Whether the answer reports a completed job (some faults need one).
            url_field: ``downloadUrls`` (CRM, a list) or ``downloadUrl`` (analytics, a string).

        Returns:
            The body to send: ``body`` (maybe altered), or the non-object that replaces it.
        """
        kinds = RESPONSE_FAULTS if completed else RESPONSE_FAULTS - COMPLETED_ONLY_FAULTS
        fault = self.faults.take(req.endpoint or "", req.scope, kinds)
        if fault is None:
            return body
        req.note_fault(fault)
        kind, variant = fault.kind, fault.variant
        if kind == "download_urls_missing":
            if variant == "absent":
                body.pop(url_field, None)
            elif variant == "empty":
                body[url_field] = [] if url_field == "downloadUrls" else ""
            else:
                body[url_field] = None
        elif kind == "null_export_window":
            body["exportEndAt"] = body["nextExportStartAt"] = None
        elif kind == "lowercase_status":
            body["status"] = str(body["status"]).lower()
        elif kind == "row_count_mismatch":
            body["rowCount"] = max(0, body["rowCount"] + fault.delta)
        elif kind == "non_object_body":
            replacements: dict[str, object] = {
                "string": body.get("status"),
                "null": None,
                "number": body.get("jobId", body.get("id")),
            }
            return replacements.get(variant or "array", [body])
        return body
