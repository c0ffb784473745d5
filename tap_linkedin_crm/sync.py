"""One sync: clients, export kinds, scheduler and downloaders built from settings, then run.

Both protocols start here: the Singer tap (`TapLinkedInCRM.sync_all`) with its Singer output, and
the SDK's own per-stream path with a hand-off output. Each export family checks its own settings;
a selected family that is not configured at all is skipped with one line.
"""

from __future__ import annotations

import datetime as dt
import logging
import typing as t

import requests
from requests.adapters import HTTPAdapter

from tap_linkedin_crm.auth import (
    ClientCredentialsTokenProvider,
    StaticTokenProvider,
    TokenProvider,
)
from tap_linkedin_crm.engine.downloads import ExportDownloader
from tap_linkedin_crm.engine.run import ExportFamily, ExportRun
from tap_linkedin_crm.engine.scheduler import DEFAULT_WORKERS, JobScheduler
from tap_linkedin_crm.jobs import PollPolicy
from tap_linkedin_crm.kinds.crm_validation import CrmValidationExports
from tap_linkedin_crm.streams import CRM_EXPORTS, CRM_RECORDS
from tap_linkedin_crm.transport import LinkedInClient, install_log_redaction

if t.TYPE_CHECKING:
    from collections.abc import Sequence

    from singer_sdk import Stream

    from tap_linkedin_crm.engine.stopper import Stopper
    from tap_linkedin_crm.kinds.base import ExportKind
    from tap_linkedin_crm.output.base import Output
    from tap_linkedin_crm.settings import CrmSettings, EngineSettings, Settings

LOGGER = logging.getLogger("tap_linkedin_crm.sync")


def run_sync(  # noqa: PLR0913 - all are real, independent inputs
    settings: Settings,
    streams: Sequence[Stream],
    output: Output,
    state: dict[str, t.Any],
    stopper: Stopper,
    *,
    now: dt.datetime | None = None,
) -> None:
    """Export what `streams` (the selected ones) need, through `output`, keeping `state`.

    Raises:
        SyncFailedError: Some partitions failed; the others were synced.
        SyncInterruptedError: A stop was asked for; the last checkpoint resumes the sync.
    """
    install_log_redaction()
    engine = settings.engine
    now = now or dt.datetime.now(tz=dt.UTC)
    by_name = {stream.name: stream for stream in streams}
    with _session(engine) as session:
        families: list[ExportFamily] = []
        crm_streams = [by_name.get(CRM_RECORDS.name), by_name.get(CRM_EXPORTS.name)]
        if any(crm_streams):
            if settings.crm is None:
                LOGGER.warning(
                    "Skipping the CRM Data Validation streams: crm_instance_ids is not set."
                )
            else:
                kind = _crm_kind(settings.crm, engine, session, stopper, now)
                families.append(
                    ExportFamily(
                        kind=kind,
                        rows=crm_streams[0],
                        exports=crm_streams[1],
                        stream_names=(CRM_RECORDS.name, CRM_EXPORTS.name),
                        noun="CRM instance",
                    )
                )
        scheduler = JobScheduler(
            PollPolicy(
                interval=engine.poll_interval,
                max_interval=engine.poll_max_interval,
                timeout=engine.job_timeout,
            ),
            stopper,
            max_in_flight=engine.max_jobs_in_flight,
        )

        def downloader(kind: ExportKind) -> ExportDownloader:
            return ExportDownloader(
                kind.client,
                scheduler,
                kind.column_types,
                max_retries=engine.request_max_retries,
                sleep=stopper.sleep,
                stopper=stopper,
            )

        run = ExportRun(
            families=families,
            snapshots=[],
            output=output,
            state=state,
            scheduler=scheduler,
            downloader=downloader,
            stopper=stopper,
        )
        run.execute()


def _session(engine: EngineSettings) -> requests.Session:
    """One connection pool for the run, big enough for the scheduler's workers and downloads."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=DEFAULT_WORKERS + 4)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    del engine
    return session


def _client(
    engine: EngineSettings, session: requests.Session, tokens: TokenProvider, stopper: Stopper
) -> LinkedInClient:
    return LinkedInClient(
        api_url=engine.api_url,
        tokens=tokens,
        session=session,
        timeout=engine.request_timeout,
        max_retries=engine.request_max_retries,
        linkedin_version=engine.linkedin_version,
        sleep=stopper.sleep,
        retry_delay=engine.request_retry_delay,
    )


def _crm_kind(
    crm: CrmSettings,
    engine: EngineSettings,
    session: requests.Session,
    stopper: Stopper,
    now: dt.datetime,
) -> CrmValidationExports:
    tokens: TokenProvider
    if crm.client_id and crm.client_secret:
        tokens = ClientCredentialsTokenProvider(
            engine.token_url,
            crm.client_id,
            crm.client_secret,
            session=session,
            timeout=engine.request_timeout,
        )
    else:
        assert crm.access_token is not None  # noqa: S101 - load_settings guarantees credentials
        tokens = StaticTokenProvider(crm.access_token)
    return CrmValidationExports(
        _client(engine, session, tokens, stopper),
        [instance.urn for instance in crm.instances],
        column_types=crm.column_types,
        default_start=crm.default_start_ms(now),
        max_attempts=engine.job_max_attempts,
    )
