"""What every part of one running sandbox shares: scenario, clock, lock, job ids, and faults."""

from __future__ import annotations

import itertools
import threading
import typing as t

from tap_linkedin_crm.sandbox.faults import (
    COMPLETED_ONLY_FAULTS,
    HTTP_FAULTS,
    RESPONSE_FAULTS,
    FiredFault,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from tap_linkedin_crm.sandbox.clock import SandboxClock
    from tap_linkedin_crm.sandbox.faults import Fault, FaultBook, FaultScope
    from tap_linkedin_crm.sandbox.messages import Request
    from tap_linkedin_crm.sandbox.scenario import Scenario

FIRST_JOB_ID = 148


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

    def take_response_fault(self, req: Request, *, completed: bool) -> Fault | None:
        """Count a job-status answer against the response faults; return the one that fires.

        Args:
            req: The GET request.
            completed: Whether the answer reports a completed job (some faults need one).
        """
        kinds = RESPONSE_FAULTS if completed else RESPONSE_FAULTS - COMPLETED_ONLY_FAULTS
        fault = self.faults.take(req.endpoint or "", req.scope, kinds)
        if fault is not None:
            req.note_fault(fault)
        return fault
