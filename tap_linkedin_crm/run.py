"""One sync run: builds the HTTP client, token provider, poller and coordinator from settings.

It also keeps what the streams share during a run: per-instance summaries, failures, and the stop
flag set by SIGTERM/Ctrl-C.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import time
import typing as t

import requests

from tap_linkedin_crm.auth import (
    ClientCredentialsTokenProvider,
    StaticTokenProvider,
    TokenProvider,
)
from tap_linkedin_crm.client import (
    CrmValidationJobs,
    LinkedInClient,
    install_log_redaction,
    redact_url,
)
from tap_linkedin_crm.downloads import ExportDownloader, Position
from tap_linkedin_crm.exports import ExportCoordinator, ExportPlan, InstanceExport
from tap_linkedin_crm.jobs import JobPoller, PollPolicy, Stopper
from tap_linkedin_crm.settings import MAX_LOOKBACK

if t.TYPE_CHECKING:
    from types import FrameType

    from tap_linkedin_crm.settings import Settings

LOGGER = logging.getLogger("tap_linkedin_crm.run")


class ExportRun:
    """Everything one sync needs, built from validated settings."""

    def __init__(self, settings: Settings, *, records_selected: bool) -> None:
        """Build the collaborators; no HTTP happens until `start`."""
        install_log_redaction()
        self.settings = settings
        self.records_selected = records_selected
        self.stopper = Stopper()
        self.session = requests.Session()
        self.tokens = self._token_provider()
        self.client = LinkedInClient(
            api_url=settings.api_url,
            tokens=self.tokens,
            session=self.session,
            timeout=settings.request_timeout,
            max_retries=settings.request_max_retries,
            linkedin_version=settings.linkedin_version,
            sleep=self.stopper.sleep,
            retry_delay=settings.request_retry_delay,
        )
        poller = JobPoller(
            PollPolicy(
                interval=settings.poll_interval,
                max_interval=settings.poll_max_interval,
                timeout=settings.job_timeout,
            ),
            sleep=self.stopper.sleep,
        )
        self.coordinator = ExportCoordinator(
            CrmValidationJobs(self.client),
            poller,
            max_attempts=settings.job_max_attempts,
            check_stop=self.stopper.check,
        )
        self.summaries: dict[str, dict[str, t.Any]] = {}
        self.failures: dict[str, BaseException] = {}
        self.started = time.monotonic()

    def _token_provider(self) -> TokenProvider:
        s = self.settings
        if s.client_id and s.client_secret:
            return ClientCredentialsTokenProvider(
                s.token_url,
                s.client_id,
                s.client_secret,
                session=self.session,
                timeout=s.request_timeout,
            )
        assert s.access_token is not None  # noqa: S101 - load_settings guarantees credentials
        return StaticTokenProvider(s.access_token)

    def start(self, plans: list[ExportPlan]) -> None:
        """Create (or resume) every instance's job; returns once all exist or failed to."""
        self.coordinator.start(plans)

    def downloader(self) -> ExportDownloader:
        """A downloader for one instance's files."""
        return ExportDownloader(
            self.client,
            self.coordinator,
            self.settings.column_types,
            max_retries=self.settings.request_max_retries,
            sleep=self.stopper.sleep,
            stopper=self.stopper,
        )

    def in_flight(
        self, export: InstanceExport, position: Position | None = None
    ) -> dict[str, t.Any]:
        """The state entry that lets the next run resume this export where it stopped."""
        with export.lock:  # a worker may be replacing the job right now
            entry: dict[str, t.Any] = {
                "jobId": export.job_id,
                "exportStartAt": export.plan.export_start_at,
                "createdAt": export.created_at,
                "attempt": export.attempt,
            }
        if position is not None and position.job_id == export.job_id:
            entry["fileIndex"] = position.file_index
            entry["rowsDone"] = position.rows_done
        return entry

    def summary(
        self, export: InstanceExport, *, rows: int | None, byte_count: int | None
    ) -> dict[str, t.Any]:
        """The exports-stream record of a completed export."""
        return export_summary(export, rows=rows, byte_count=byte_count)

    def fail(self, urn: str, error: BaseException | None) -> None:
        """Remember that an instance failed; the run ends non-zero, naming it."""
        self.failures.setdefault(urn, error or RuntimeError("unknown error"))

    def log_summary(self, urns: list[str]) -> None:
        """One line per instance (rows, files, bookmark, or why it failed), then the totals."""
        rows = 0
        for urn in urns:
            summary = self.summaries.get(urn)
            if summary is not None:
                rows += summary["rowCount"] or 0
                LOGGER.info(
                    "Summary: %s: job %s, %s rows from %d file(s), bookmark nextExportStartAt=%s.",
                    urn,
                    summary["jobId"],
                    "no" if summary["rowCount"] is None else summary["rowCount"],
                    summary["fileCount"],
                    summary["nextExportStartAt"] or summary["exportEndAt"],
                )
            elif urn in self.failures:
                LOGGER.error("Summary: %s: FAILED, bookmark not moved: %s", urn, self.failures[urn])
            else:
                LOGGER.warning("Summary: %s: not finished, bookmark not moved.", urn)
        LOGGER.info(
            "Summary: %d of %d CRM instance(s) synced, %d rows, in %.1f s.",
            len(self.summaries),
            len(urns),
            rows,
            time.monotonic() - self.started,
        )

    def close(self) -> None:
        """Stop the workers and close connections."""
        self.stopper.stop()
        self.coordinator.join(timeout=2.0)
        self.session.close()

    def default_start(self) -> int:
        """`start_date`, or 30 days back (LinkedIn looks back at most 30 days anyway)."""
        start = self.settings.start_date or (dt.datetime.now(tz=dt.UTC) - MAX_LOOKBACK)
        return int(start.timestamp() * 1000)

    def install_signal_handlers(self) -> dict[int, t.Any]:
        """SIGTERM/SIGINT ask the run to stop at the next clean point (between two rows).

        A request blocked in the main thread (`Stopper.interruptible`) is abandoned at once, and
        a file download blocked in a socket read has its socket shut, so no stop waits for
        `request_timeout`.
        """

        def handler(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
            LOGGER.warning(
                "Received signal %d: stopping at the next clean point and saving state.", signum
            )
            self.stopper.signal_stop()

        previous: dict[int, t.Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: leave signals to the host program
                continue
        return previous

    @staticmethod
    def restore_signal_handlers(previous: dict[int, t.Any]) -> None:
        """Put back the handlers `install_signal_handlers` replaced."""
        for sig, old in previous.items():
            signal.signal(sig, old)


def ms_to_rfc3339(value: int | None) -> str | None:
    """Epoch milliseconds as an RFC 3339 UTC string."""
    if value is None:
        return None
    stamp = dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def export_summary(
    export: InstanceExport,
    *,
    rows: int | None,
    byte_count: int | None,
) -> dict[str, t.Any]:
    """The exports-stream record of a completed export."""
    job = export.job
    assert job is not None  # noqa: S101
    return {
        "jobId": job.job_id,
        "crmInstanceId": export.urn,
        "status": job.status,
        "exportStartAt": job.export_start_at,
        "exportEndAt": job.export_end_at,
        "nextExportStartAt": job.next_export_start_at,
        "expireAt": job.expire_at,
        "downloadUrls": [redact_url(u) for u in job.download_urls],
        "fileCount": len(job.download_urls),
        "rowCount": rows,
        "byteCount": byte_count,
        "attempts": export.attempt,
        "polls": export.polls,
        "createdAt": ms_to_rfc3339(export.created_at),
        "completedAt": ms_to_rfc3339(export.completed_at),
    }


def plan_for(
    urn: str,
    state: t.Mapping[str, t.Any],
    *,
    default_start: int,
) -> ExportPlan:
    """Where an instance's export starts: its in-flight job, its bookmark, or the default."""
    in_flight = state.get("inFlightJob") or {}
    start = in_flight.get("exportStartAt")
    if start is None:
        start = state.get("nextExportStartAt", state.get("replication_key_value"))
    if start is None:
        start = default_start
    job_id = in_flight.get("jobId")
    return ExportPlan(
        instance_urn=urn,
        export_start_at=int(start),
        resume_job_id=int(job_id) if job_id is not None else None,
        resume_created_at=in_flight.get("createdAt"),
    )
