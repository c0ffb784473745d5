"""One sync: clients, export kinds, scheduler and downloaders built from settings, then run.

Both protocols start here: the Singer tap (`TapLinkedInCRM.sync_all`) with its Singer output, and
the SDK's own per-stream path with a hand-off output. Each export family checks its own settings;
a selected family that is not configured at all is skipped with one line.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import typing as t

import pendulum
import requests
from requests.adapters import HTTPAdapter

from tap_linkedin_crm.auth import (
    ClientCredentialsTokenProvider,
    RefreshTokenProvider,
    StaticTokenProvider,
    TokenProvider,
)
from tap_linkedin_crm.engine.downloads import ExportDownloader
from tap_linkedin_crm.engine.run import ExportFamily, ExportRun, SnapshotSource
from tap_linkedin_crm.engine.scheduler import DEFAULT_WORKERS, JobScheduler
from tap_linkedin_crm.errors import AuthenticationError, LinkedInCRMError, QuotaExceededError
from tap_linkedin_crm.jobs import PollPolicy
from tap_linkedin_crm.kinds.crm_validation import CrmValidationExports
from tap_linkedin_crm.kinds.sales_analytics import (
    EXPORT_TYPES,
    Contract,
    SalesAnalyticsExports,
    list_contracts,
)
from tap_linkedin_crm.streams import (
    CRM_EXPORTS,
    CRM_RECORDS,
    SALES_CONTRACTS,
    SALES_EXPORTS,
)
from tap_linkedin_crm.transport import RENEWAL_HINT, LinkedInClient, install_log_redaction

#: What to do when LinkedIn refuses the member's token.
MEMBER_RENEWAL_HINT = (
    "Renew analytics_access_token, or get a refresh token with `linkedin-crm-auth` and set "
    "refresh_token (with client_id and client_secret)."
)

if t.TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from singer_sdk import Stream

    from tap_linkedin_crm.engine.stopper import Stopper
    from tap_linkedin_crm.kinds.base import ExportKind
    from tap_linkedin_crm.output.base import Output
    from tap_linkedin_crm.settings import (
        AnalyticsSettings,
        CrmSettings,
        EngineSettings,
        Settings,
    )

LOGGER = logging.getLogger("tap_linkedin_crm.sync")


def run_sync(  # noqa: PLR0913 - all are real, independent inputs
    settings: Settings,
    streams: Sequence[Stream],
    output: Output,
    state: dict[str, t.Any],
    stopper: Stopper,
    *,
    now: dt.datetime | None = None,
    on_refresh_token_rotated: Callable[[str], None] | None = None,
) -> None:
    """Export what `streams` (the selected ones) need, through `output`, keeping `state`.

    `on_refresh_token_rotated` is told a new member refresh token, should LinkedIn issue one.

    Raises:
        SyncFailedError: Some partitions failed; the others were synced.
        SyncInterruptedError: A stop was asked for; the last checkpoint resumes the sync.
    """
    install_log_redaction()
    engine = settings.engine
    now = now or dt.datetime.now(tz=dt.UTC)
    by_name = {stream.name: stream for stream in streams}
    with _session() as session:
        families: list[ExportFamily] = []
        crm_streams = [by_name.get(CRM_RECORDS.name), by_name.get(CRM_EXPORTS.name)]
        if any(crm_streams):
            if settings.crm is None:
                LOGGER.warning(
                    "Skipping the CRM Data Validation streams: crm_instance_ids is not set."
                )
            else:
                kind = _crm_kind(settings, engine, session, stopper, now)
                families.append(
                    ExportFamily(
                        kind=kind,
                        rows=crm_streams[0],
                        exports=crm_streams[1],
                        stream_names=(CRM_RECORDS.name, CRM_EXPORTS.name),
                        noun="CRM instance",
                    )
                )
        snapshots: list[SnapshotSource] = []
        failures: list[tuple[str, str, BaseException]] = []
        names = [SALES_CONTRACTS.name, SALES_EXPORTS.name] + [t.rows_stream for t in EXPORT_TYPES]
        if any(name in by_name for name in names):
            if settings.analytics is None:
                LOGGER.warning(
                    "Skipping the Sales Navigator analytics streams: neither refresh_token nor "
                    "analytics_access_token is set."
                )
            else:
                tokens = member_tokens(
                    settings.analytics, engine, session, on_refresh_token_rotated
                )
                client = api_client(
                    engine,
                    session,
                    tokens,
                    sleep=stopper.sleep,
                    renewal_hint=MEMBER_RENEWAL_HINT,
                )
                try:
                    families += _analytics_families(
                        settings, client, by_name, snapshots, failures, now
                    )
                except LinkedInCRMError as exc:
                    LOGGER.error("Sales Navigator analytics: %s", exc)  # noqa: TRY400
                    failures.append(("analytics export", "Sales Navigator analytics", exc))
        if not families and not snapshots and not failures:
            LOGGER.warning("Nothing to export: no selected stream has its settings configured.")
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
            snapshots=snapshots,
            output=output,
            state=state,
            scheduler=scheduler,
            downloader=downloader,
            stopper=stopper,
            setup_failures=failures,
        )
        try:
            run.execute()
        finally:
            output.close()


def _session() -> requests.Session:
    """One connection pool for the run, big enough for the scheduler's workers and downloads."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=DEFAULT_WORKERS + 4)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def api_client(  # noqa: PLR0913 - all are real, independent inputs
    engine: EngineSettings,
    session: requests.Session,
    tokens: TokenProvider,
    *,
    sleep: Callable[[float], None] = time.sleep,
    max_retries: int | None = None,
    renewal_hint: str = RENEWAL_HINT,
) -> LinkedInClient:
    """A client of the API base URL with `tokens` (the run's, or a quick check's)."""
    return LinkedInClient(
        renewal_hint=renewal_hint,
        api_url=engine.api_url,
        tokens=tokens,
        session=session,
        timeout=engine.request_timeout,
        max_retries=engine.request_max_retries if max_retries is None else max_retries,
        linkedin_version=engine.linkedin_version,
        sleep=sleep,
        retry_delay=engine.request_retry_delay,
    )


def crm_tokens(
    crm: CrmSettings, engine: EngineSettings, session: requests.Session
) -> TokenProvider:
    """The app's token for the CRM exports: client credentials, or the given access token."""
    if crm.client_id and crm.client_secret:
        return ClientCredentialsTokenProvider(
            engine.token_url,
            crm.client_id,
            crm.client_secret,
            session=session,
            timeout=engine.request_timeout,
        )
    assert crm.access_token is not None  # noqa: S101 - load_settings guarantees credentials
    return StaticTokenProvider(crm.access_token)


def _crm_kind(
    settings: Settings,
    engine: EngineSettings,
    session: requests.Session,
    stopper: Stopper,
    now: dt.datetime,
) -> CrmValidationExports:
    crm = settings.crm
    assert crm is not None  # noqa: S101 - called only when configured
    return CrmValidationExports(
        api_client(engine, session, crm_tokens(crm, engine, session), sleep=stopper.sleep),
        [instance.urn for instance in crm.instances],
        column_types=settings.column_types[CRM_RECORDS.name],
        default_start=crm.default_start_ms(now),
        max_attempts=engine.job_max_attempts,
    )


def member_tokens(
    analytics: AnalyticsSettings,
    engine: EngineSettings,
    session: requests.Session,
    on_rotated: Callable[[str], None] | None = None,
) -> TokenProvider:
    """The member's token for the analytics exports: from the refresh token, or as given."""
    if analytics.refresh_token:
        assert analytics.client_id is not None  # noqa: S101 - load_settings checks it
        assert analytics.client_secret is not None  # noqa: S101
        return RefreshTokenProvider(
            engine.token_url,
            analytics.client_id,
            analytics.client_secret,
            analytics.refresh_token,
            session=session,
            timeout=engine.request_timeout,
            on_rotated=on_rotated,
        )
    assert analytics.access_token is not None  # noqa: S101 - load_settings checks it
    return StaticTokenProvider(analytics.access_token)


def _analytics_families(  # noqa: PLR0913, PLR0917 - all are real, independent inputs
    settings: Settings,
    client: LinkedInClient,
    by_name: dict[str, Stream],
    snapshots: list[SnapshotSource],
    failures: list[tuple[str, str, BaseException]],
    now: dt.datetime,
) -> list[ExportFamily]:
    """One family per selected export type; the contracts snapshot when selected.

    Raises:
        LinkedInCRMError: The member's contracts could not be listed, and are needed.
    """
    analytics = settings.analytics
    assert analytics is not None  # noqa: S101 - called only when configured
    contracts = _listed_contracts(analytics, client, by_name, failures)
    chosen = _chosen_contracts(analytics, contracts)
    stream = by_name.get(SALES_CONTRACTS.name)
    if stream is not None and contracts is not None:
        records = [c.record() for c in contracts]
        snapshots.append(SnapshotSource(stream, lambda: records))
    exports = by_name.get(SALES_EXPORTS.name)
    moment = pendulum.instance(now).in_timezone("UTC")
    families = []
    for export_type in EXPORT_TYPES:
        rows = by_name.get(export_type.rows_stream)
        if rows is None and exports is None:
            continue
        kind = SalesAnalyticsExports(
            client,
            export_type,
            chosen,
            column_types=settings.column_types[export_type.rows_stream],
            default_start=int(analytics.start_date.timestamp() * 1000),
            now=moment,
            lag_hours=analytics.lag_hours,
            window_days=analytics.window_days,
            max_attempts=settings.engine.job_max_attempts,
        )
        families.append(
            ExportFamily(
                kind=kind,
                rows=rows,
                exports=exports,
                stream_names=(export_type.rows_stream, SALES_EXPORTS.name),
                noun="analytics export",
            )
        )
    return families


def _listed_contracts(
    analytics: AnalyticsSettings,
    client: LinkedInClient,
    by_name: dict[str, Stream],
    failures: list[tuple[str, str, BaseException]],
) -> list[Contract] | None:
    """The member's contracts; None if they could not be listed but `contract_ids` names some.

    With `contract_ids`, the listing only serves the `sales_contracts` stream and a check: its
    failure is that stream's (in `failures`), and the exports go on.

    Raises:
        LinkedInCRMError: The contracts could not be listed, and are needed (or every export
            would fail the same way: a refused token, the daily quota).
    """
    try:
        return list_contracts(client)
    except (AuthenticationError, QuotaExceededError):
        raise
    except LinkedInCRMError as exc:
        if analytics.contract_ids is None:
            raise
        LOGGER.warning(
            "Could not list the member's contracts (%s); exporting the contracts in "
            "contract_ids without checking them.",
            exc,
        )
        if SALES_CONTRACTS.name in by_name:
            failures.append(("contracts listing", "Sales Navigator contracts", exc))
        return None


def _chosen_contracts(analytics: AnalyticsSettings, contracts: list[Contract] | None) -> list[str]:
    """The contracts to export: `contract_ids` (each once), else those with reporting access."""
    if analytics.contract_ids is None:
        assert contracts is not None  # noqa: S101 - listed, or the error was raised
        chosen = [c.urn for c in contracts if c.has_reporting_access]
        LOGGER.info(
            "Exporting analytics of %d contract(s) with reporting access (of %d visible).",
            len(chosen),
            len(contracts),
        )
        return chosen
    # Twice the same contract would be two partitions on one bookmark: every row twice.
    chosen = list(dict.fromkeys(analytics.contract_ids))
    for urn in chosen:
        if analytics.contract_ids.count(urn) > 1:
            LOGGER.warning("Contract %s is listed twice in contract_ids; exporting it once.", urn)
    if contracts is not None:
        visible = {c.urn for c in contracts}
        for urn in chosen:
            if urn not in visible:
                LOGGER.warning(
                    "Contract %s is in contract_ids but the member cannot see it; its exports "
                    "will be refused.",
                    urn,
                )
    return chosen
