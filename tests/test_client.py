"""HTTP client against the sandbox: job calls, retries, Retry-After, quota, 401 renewal, errors."""

from __future__ import annotations

import typing as t

import pytest
import requests

from tap_linkedin_crm.auth import ClientCredentialsTokenProvider, StaticTokenProvider
from tap_linkedin_crm.client import LinkedInClient, check_download_url, redact_url
from tap_linkedin_crm.errors import (
    APIError,
    AuthenticationError,
    DownloadExpiredError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    ServerError,
)
from tap_linkedin_crm.jobs import JobPhase
from tap_linkedin_crm.sandbox import DYNAMICS_INSTANCE, Fault, InstanceSpec, Sandbox, Scenario

START = 1_700_000_000_000


@pytest.fixture
def sandbox() -> t.Iterator[Sandbox]:
    scenario = Scenario(
        instances={DYNAMICS_INSTANCE: InstanceSpec(rows=10, files=2)},
        job_processing_polls=1,
    )
    with Sandbox(scenario) as sb:
        yield sb


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(sandbox: Sandbox, sleeps: Sleeps) -> t.Iterator[LinkedInClient]:
    with requests.Session() as session:
        tokens = ClientCredentialsTokenProvider(
            sandbox.token_url, "sandbox-client", "sandbox-secret", session=session, timeout=5
        )
        yield LinkedInClient(
            api_url=sandbox.api_url, tokens=tokens, session=session, timeout=5, sleep=sleeps
        )


def completed_job(client: LinkedInClient, start: int | None = None) -> tuple[int, t.Any]:
    job_id = client.create_crm_validation_job(DYNAMICS_INSTANCE, start or START)
    job = client.get_crm_validation_job(DYNAMICS_INSTANCE, job_id)
    while job.phase is JobPhase.RUNNING:
        job = client.get_crm_validation_job(DYNAMICS_INSTANCE, job_id)
    return job_id, job


def test_given_job_when_created_and_polled_then_completes_with_urls(
    client: LinkedInClient, sandbox: Sandbox
) -> None:
    job_id, job = completed_job(client)
    assert job.job_id == job_id
    assert job.status == "COMPLETED"
    assert len(job.download_urls) == 2
    assert job.bookmark == job.export_end_at
    post = next(r for r in sandbox.requests if r.method == "POST" and r.endpoint == "create")
    assert post.status == 201
    assert post.authorized


def test_given_completed_job_when_downloaded_then_csv_streams(client: LinkedInClient) -> None:
    _, job = completed_job(client)
    with client.open_download(job.download_urls[0]) as response:
        body = response.raw.read()
    assert body.startswith(b"\xef\xbb\xbfcrmRecordId,")


def test_given_unknown_job_when_polled_then_not_found(client: LinkedInClient) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        client.get_crm_validation_job(DYNAMICS_INSTANCE, 999_999)


def test_given_forbidden_when_created_then_permission_error_names_permission(
    client: LinkedInClient, sandbox: Sandbox
) -> None:
    sandbox.add_fault(Fault(kind="forbidden", endpoint="create"))
    with pytest.raises(PermissionDeniedError) as info:
        client.create_crm_validation_job(DYNAMICS_INSTANCE, START)
    assert "r_sales_nav_validation" in str(info.value)
    assert DYNAMICS_INSTANCE in str(info.value)


def test_given_unknown_crm_instance_when_created_then_api_error(client: LinkedInClient) -> None:
    with pytest.raises(APIError):
        client.create_crm_validation_job("urn:li:crmInstance:(SFDC,00Dnotthere00000AAA)", START)


def test_given_two_503s_when_polled_then_retried_with_backoff(
    client: LinkedInClient, sandbox: Sandbox, sleeps: Sleeps
) -> None:
    job_id = client.create_crm_validation_job(DYNAMICS_INSTANCE, START)
    sandbox.add_fault(Fault(kind="error", endpoint="get", status=503, times=2))
    assert client.get_crm_validation_job(DYNAMICS_INSTANCE, job_id).job_id == job_id
    assert len(sleeps) == 2
    assert all(0 < s <= 60 for s in sleeps)


def test_given_persistent_500_when_polled_then_server_error_after_max_retries(
    client: LinkedInClient, sandbox: Sandbox, sleeps: Sleeps
) -> None:
    job_id = client.create_crm_validation_job(DYNAMICS_INSTANCE, START)
    sandbox.add_fault(Fault(kind="error", endpoint="get", status=500, times=None))
    with pytest.raises(ServerError, match="HTTP 500 after 6 tries"):
        client.get_crm_validation_job(DYNAMICS_INSTANCE, job_id)
    assert len(sleeps) == client.max_retries


def test_given_retry_after_when_rate_limited_then_waits_that_long(
    client: LinkedInClient, sandbox: Sandbox, sleeps: Sleeps
) -> None:
    sandbox.add_fault(
        Fault(kind="rate_limit", endpoint="create", retry_after=7, message="too many requests")
    )
    client.create_crm_validation_job(DYNAMICS_INSTANCE, START)
    assert sleeps == [7.0]


def test_given_daily_quota_when_created_then_stops_after_three_tries(
    client: LinkedInClient, sandbox: Sandbox, sleeps: Sleeps
) -> None:
    sandbox.add_fault(Fault(kind="rate_limit", endpoint="create", times=None))
    with pytest.raises(QuotaExceededError, match="midnight UTC"):
        client.create_crm_validation_job(DYNAMICS_INSTANCE, START)
    creates = [r for r in sandbox.requests if r.endpoint == "create"]
    assert len(creates) == 3
    assert len(sleeps) == 2


def test_given_expired_token_when_polled_then_renewed_once_and_retried(
    client: LinkedInClient, sandbox: Sandbox
) -> None:
    job_id = client.create_crm_validation_job(DYNAMICS_INSTANCE, START)
    sandbox.add_fault(Fault(kind="token_expired", endpoint="get"))
    assert client.get_crm_validation_job(DYNAMICS_INSTANCE, job_id).job_id == job_id
    assert len([r for r in sandbox.requests if r.endpoint == "token"]) == 2


def test_given_static_token_expired_when_polled_then_clear_error(sandbox: Sandbox) -> None:
    with requests.Session() as session:
        token = session.post(
            sandbox.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": "sandbox-client",
                "client_secret": "sandbox-secret",
            },
            timeout=5,
        ).json()["access_token"]
        client = LinkedInClient(
            api_url=sandbox.api_url, tokens=StaticTokenProvider(token), session=session, timeout=5
        )
        job_id = client.create_crm_validation_job(DYNAMICS_INSTANCE, START)
        sandbox.expire_tokens()
        with pytest.raises(AuthenticationError, match="EXPIRED_ACCESS_TOKEN") as info:
            client.get_crm_validation_job(DYNAMICS_INSTANCE, job_id)
    assert token not in str(info.value)
    assert "client_id and client_secret" in str(info.value)


def test_given_expired_urls_when_downloaded_then_expired_error_without_query(
    client: LinkedInClient, sandbox: Sandbox
) -> None:
    job_id, job = completed_job(client)
    sandbox.expire_download_urls(job_id)
    with pytest.raises(DownloadExpiredError) as info:
        client.open_download(job.download_urls[0])
    assert "x-li-ambry-ep" not in str(info.value)
    assert "?<redacted>" in str(info.value)
    fresh = client.get_crm_validation_job(DYNAMICS_INSTANCE, job_id)
    assert fresh.download_urls != job.download_urls
    with client.open_download(fresh.download_urls[0]) as response:
        assert response.status_code == 200


def test_given_urls_when_authorization_decided_then_only_api_and_linkedin_hosts(
    client: LinkedInClient,
) -> None:
    assert client._may_authorize(f"{client.api_url}/x")
    assert client._may_authorize("https://www.linkedin.com/ambry/?x-li-ambry-ep=1")
    assert not client._may_authorize("https://files.example.com/ambry/?x-li-ambry-ep=1")
    assert not client._may_authorize("https://linkedin.com.evil.example/ambry/")


def test_given_non_tls_remote_url_when_checked_then_refused() -> None:
    check_download_url("https://www.linkedin.com/ambry/?x=1")
    check_download_url("http://127.0.0.1:8765/ambry/?x=1")
    with pytest.raises(APIError, match="only https"):
        check_download_url("http://www.linkedin.com/ambry/?x-li-ambry-ep=secret")


def test_given_signed_url_when_redacted_then_query_gone() -> None:
    assert (
        redact_url("https://www.linkedin.com/ambry/?x-li-ambry-ep=AQHk")
        == "https://www.linkedin.com/ambry/?<redacted>"
    )


def test_given_unparsable_download_url_when_opened_then_api_error_without_the_token(
    client: LinkedInClient,
) -> None:
    with pytest.raises(APIError, match="could not be sent") as info:
        client.open_download("http://127.0.0.1:99999/ambry/?x-li-ambry-ep=SIGNEDSECRET")
    assert "SIGNEDSECRET" not in str(info.value)
