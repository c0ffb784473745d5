"""`check`: one cheap authenticated call per configured export family, never an export job.

CRM Data Validation: a token from the token endpoint (client credentials; a given access token is
used as is), then `GET crmDataValidationExportJobs/0` for the first CRM instance. No job has id 0,
so LinkedIn's 404 proves that the token is good and the app may read that instance's jobs; a 403
names the missing permission, a 401 the refused credentials.

Sales Navigator analytics: the member's token (from the refresh token, or as given), then the first
page of one contract of `GET salesContracts?q=contractsByMember`.

A refusal the user must fix (401, 403, another 4xx) is a failed check, returned as a message;
anything else (network, 5xx, 429) is raised, and reported as a transient error. A refresh token
LinkedIn rotates while checking is handed on (the caller reports it, as `read` does).
"""

from __future__ import annotations

import logging
import typing as t

import requests

from tap_linkedin_crm.errors import (
    APIError,
    NetworkError,
    NotFoundError,
    QuotaExceededError,
    RateLimitedError,
    ServerError,
)
from tap_linkedin_crm.kinds.crm_validation import INSTANCE_KEY, JOBS_PATH, PERMISSION
from tap_linkedin_crm.kinds.sales_analytics import CONTRACTS_PATH
from tap_linkedin_crm.kinds.sales_analytics import PERMISSION as ANALYTICS_PERMISSION
from tap_linkedin_crm.sync import MEMBER_RENEWAL_HINT, api_client, crm_tokens, member_tokens
from tap_linkedin_crm.transport import install_log_redaction

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from tap_linkedin_crm.settings import (
        AnalyticsSettings,
        CrmSettings,
        EngineSettings,
        Settings,
    )

LOGGER = logging.getLogger("tap_linkedin_crm.airbyte")

#: A job id no CRM instance has: LinkedIn's ids are positive.
ABSENT_JOB_ID = 0
#: Retries of the check's requests (a check should answer within seconds, not minutes).
CHECK_MAX_RETRIES = 1
#: Failures that say nothing about the configuration: worth trying again later.
TRANSIENT = (NetworkError, ServerError, RateLimitedError, QuotaExceededError)


def check_connection(
    settings: Settings, on_refresh_token_rotated: Callable[[str], None] | None = None
) -> str | None:
    """Make each configured family's check call.

    `on_refresh_token_rotated` is told a new member refresh token, should LinkedIn issue one
    (the old one may then be revoked: the new one must be kept).

    Returns:
        None when every family can be read, else what to fix.

    Raises:
        APIError: LinkedIn could not be reached or failed (network, 5xx, 429): try again later.
    """
    install_log_redaction()
    problems: list[str] = []
    checked = 0
    with requests.Session() as session:
        if settings.crm is not None:
            checked += 1
            problem = check_crm(settings.crm, settings.engine, session)
            if problem is not None:
                problems.append(problem)
        if settings.analytics is not None:
            checked += 1
            problem = check_analytics(
                settings.analytics, settings.engine, session, on_refresh_token_rotated
            )
            if problem is not None:
                problems.append(problem)
    if not checked:
        return (
            "No export family is configured: set crm_instance_ids (CRM Data Validation) and its "
            "credentials (client_id and client_secret, or access_token), or refresh_token / "
            "analytics_access_token (Sales Navigator analytics)."
        )
    return " ".join(problems) or None


def check_crm(crm: CrmSettings, engine: EngineSettings, session: requests.Session) -> str | None:
    """Read a job that cannot exist, for the first CRM instance; None when LinkedIn says 404.

    Raises:
        APIError: A transient failure (network, 5xx, 429).
    """
    client = api_client(
        engine,
        session,
        crm_tokens(crm, engine, session),
        max_retries=min(engine.request_max_retries, CHECK_MAX_RETRIES),
    )
    urn = crm.instances[0].urn
    try:
        client.call(
            "GET",
            f"{JOBS_PATH}/{ABSENT_JOB_ID}",
            params={INSTANCE_KEY: urn},
            what=f"read the export jobs of CRM instance {urn}",
            permission=PERMISSION,
        )
    except NotFoundError:
        LOGGER.info("CRM instance %s: the credentials and the permission work.", urn)
        return None
    except TRANSIENT:
        raise
    except APIError as exc:
        return f"CRM Data Validation: {exc}"
    LOGGER.info("CRM instance %s: the credentials and the permission work.", urn)
    return None


def check_analytics(
    analytics: AnalyticsSettings,
    engine: EngineSettings,
    session: requests.Session,
    on_refresh_token_rotated: Callable[[str], None] | None = None,
) -> str | None:
    """List one of the member's contracts; None when LinkedIn answers.

    Raises:
        APIError: A transient failure (network, 5xx, 429).
    """
    client = api_client(
        engine,
        session,
        member_tokens(analytics, engine, session, on_refresh_token_rotated),
        max_retries=min(engine.request_max_retries, CHECK_MAX_RETRIES),
        renewal_hint=MEMBER_RENEWAL_HINT,
    )
    try:
        client.call(
            "GET",
            CONTRACTS_PATH,
            params={"q": "contractsByMember", "start": "0", "count": "1"},
            what="list the member's Sales Navigator contracts",
            permission=ANALYTICS_PERMISSION,
        )
    except TRANSIENT:
        raise
    except APIError as exc:
        return f"Sales Navigator analytics: {exc}"
    LOGGER.info("Sales Navigator analytics: the member's token works.")
    return None
