"""HTTP transport against the sandbox and scripted loopback servers.

Retries, Retry-After, the daily quota, 401 renewal, error mapping, redaction and where the
Authorization header goes. Waits are recorded, not slept.
"""

from __future__ import annotations

import logging
import socket
import typing as t

import pytest
import requests
from loopback import Loopback, Reply

from tap_linkedin_crm.auth import ClientCredentialsTokenProvider, StaticTokenProvider
from tap_linkedin_crm.errors import (
    APIError,
    AuthenticationError,
    DownloadExpiredError,
    MalformedResponseError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitedError,
    ServerError,
)
from tap_linkedin_crm.sandbox import DYNAMICS_INSTANCE, Fault, InstanceSpec, Sandbox, Scenario
from tap_linkedin_crm.transport import (
    MAX_DOWNLOAD_REDIRECTS,
    MAX_RETRY_AFTER_SECONDS,
    URL_LOGGERS,
    LinkedInClient,
    RedactQueryStrings,
    check_download_url,
    describe_network_error,
    install_log_redaction,
    redact_url,
)

START = 1_700_000_000_000
JOBS = "crmDataValidationExportJobs"
PERMISSION = "r_sales_nav_validation"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sandbox() -> t.Iterator[Sandbox]:
    scenario = Scenario(
        instances={DYNAMICS_INSTANCE: InstanceSpec(rows=10, files=2)},
        job_processing_polls=1,
    )
    with Sandbox(scenario) as sb:
        yield sb


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


def create(client: LinkedInClient, start: int = START, urn: str = DYNAMICS_INSTANCE) -> int:
    response = client.call(
        "POST",
        JOBS,
        params={"crmInstanceId": urn},
        json={"exportStartAt": start},
        what=f"create an export job for CRM instance {urn}",
        permission=PERMISSION,
    )
    assert response.status_code == 201
    return int(response.headers["X-RestLi-Id"])


def get(client: LinkedInClient, job_id: int, urn: str = DYNAMICS_INSTANCE) -> dict[str, t.Any]:
    return client.call_json(
        "GET",
        f"{JOBS}/{job_id}",
        params={"crmInstanceId": urn},
        what=f"read export job {job_id} of CRM instance {urn}",
        permission=PERMISSION,
    )


def completed(client: LinkedInClient) -> tuple[int, dict[str, t.Any]]:
    job_id = create(client)
    for _ in range(10):
        body = get(client, job_id)
        if body["status"] == "COMPLETED":
            return job_id, body
    pytest.fail("the sandbox job did not complete")


def static_client(url: str, sleeps: Sleeps | None = None, **kwargs: t.Any) -> LinkedInClient:
    return LinkedInClient(
        api_url=f"{url}/v2",
        tokens=StaticTokenProvider("tok-static"),
        timeout=5,
        sleep=sleeps if sleeps is not None else Sleeps(),
        **kwargs,
    )


def requests_to(sandbox: Sandbox, endpoint: str) -> int:
    return sum(1 for r in sandbox.requests if r.endpoint == endpoint)


# Calls ----------------------------------------------------------------------------------------


def test_given_job_when_created_and_polled_then_completes_with_urls(
    client: LinkedInClient, sandbox: Sandbox
) -> None:
    job_id, body = completed(client)
    assert body["jobId"] == job_id
    assert len(body["downloadUrls"]) == 2
    post = next(r for r in sandbox.requests if r.method == "POST" and r.endpoint == "create")
    assert post.status == 201
    assert post.authorized
    assert post.instance == DYNAMICS_INSTANCE  # the percent-encoded URN arrived whole


def test_given_call_when_sent_then_restli_and_version_headers_and_urn_encoded_whole() -> None:
    with Loopback([Reply(200, b'{"ok": 1}')]) as server:
        client = static_client(server.url, linkedin_version="202501")
        body = client.call_json(
            "GET", "/things/1", params={"crmInstanceId": "urn:li:x:(A,b c)"}, what="read"
        )
    assert body == {"ok": 1}
    seen = server.seen[0]
    assert seen.target == "/v2/things/1?crmInstanceId=urn%3Ali%3Ax%3A%28A%2Cb%20c%29"
    assert seen.headers["X-Restli-Protocol-Version"] == "2.0.0"
    assert seen.headers["LinkedIn-Version"] == "202501"
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["Authorization"] == "Bearer tok-static"


def test_given_completed_job_when_downloaded_then_csv_streams(client: LinkedInClient) -> None:
    _, body = completed(client)
    with client.open_download(body["downloadUrls"][0]) as response:
        data = response.raw.read()
    assert data.startswith(b"\xef\xbb\xbfcrmRecordId,")


# Error mapping --------------------------------------------------------------------------------


def test_given_unknown_job_when_polled_then_not_found(client: LinkedInClient) -> None:
    with pytest.raises(NotFoundError, match="not found") as info:
        get(client, 999_999)
    assert info.value.status == 404
    assert "read export job 999999" in str(info.value)


def test_given_forbidden_when_created_then_permission_error_names_permission(
    client: LinkedInClient, sandbox: Sandbox
) -> None:
    sandbox.add_fault(Fault(kind="forbidden", endpoint="create"))
    with pytest.raises(PermissionDeniedError) as info:
        create(client)
    assert info.value.status == 403
    assert PERMISSION in str(info.value)
    assert DYNAMICS_INSTANCE in str(info.value)


def test_given_unknown_crm_instance_when_created_then_api_error(client: LinkedInClient) -> None:
    with pytest.raises(APIError) as info:
        create(client, urn="urn:li:crmInstance:(SFDC,00Dnotthere00000AAA)")
    assert info.value.status == 404


def test_given_bad_request_when_created_then_api_error_with_linkedins_message(
    client: LinkedInClient, sleeps: Sleeps
) -> None:
    with pytest.raises(APIError, match=r"HTTP 400: exportStartAt must not be in the future"):
        create(client, start=2**52)
    assert sleeps == []  # a 400 is not retried


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"<html>oops</html>", "is not JSON"), (b"[1, 2]", "JSON but not an object")],
)
def test_given_2xx_body_not_a_json_object_when_call_json_then_malformed(
    body: bytes, message: str
) -> None:
    with Loopback([Reply(200, body)]) as server:
        client = static_client(server.url)
        with pytest.raises(MalformedResponseError, match=message) as info:
            client.call_json("GET", "x", what="read x")
    assert "read x" in str(info.value)


# Retries ----------------------------------------------------------------------------------------


def test_given_two_503s_when_polled_then_retried_with_backoff(
    client: LinkedInClient, sandbox: Sandbox, sleeps: Sleeps
) -> None:
    job_id = create(client)
    sandbox.add_fault(Fault(kind="error", endpoint="get", status=503, times=2))
    assert get(client, job_id)["jobId"] == job_id
    assert len(sleeps) == 2
    assert all(0 < s <= 60 for s in sleeps)
    assert requests_to(sandbox, "get") == 3


def test_given_persistent_500_when_polled_then_server_error_after_max_retries(
    client: LinkedInClient, sandbox: Sandbox, sleeps: Sleeps
) -> None:
    job_id = create(client)
    sandbox.add_fault(Fault(kind="error", endpoint="get", status=500, times=None))
    with pytest.raises(ServerError, match="HTTP 500 after 6 tries"):
        get(client, job_id)
    assert len(sleeps) == client.max_retries
    assert requests_to(sandbox, "get") == client.max_retries + 1


def test_given_retry_delay_when_backing_off_then_delays_start_there_and_double() -> None:
    client = LinkedInClient(api_url="https://api.example", tokens=StaticTokenProvider("t"))
    client.retry_delay = 0.2
    delays = client.backoff_delays()
    values = [next(delays) for _ in range(4)]
    for value, nominal in zip(values, [0.2, 0.4, 0.8, 1.6], strict=True):
        assert nominal / 2 <= value <= nominal


def test_given_retry_after_when_rate_limited_then_waits_that_long(
    client: LinkedInClient, sandbox: Sandbox, sleeps: Sleeps
) -> None:
    sandbox.add_fault(
        Fault(kind="rate_limit", endpoint="create", retry_after=7, message="too many requests")
    )
    create(client)
    assert sleeps == [7.0]


def test_given_retry_after_on_503_when_retried_then_honoured_and_huge_values_capped() -> None:
    replies = [
        Reply(503, headers={"Retry-After": "3"}),
        Reply(429, b'{"message": "slow down"}', {"Retry-After": "100000"}),
        Reply(200, b"{}"),
    ]
    sleeps = Sleeps()
    with Loopback(replies) as server:
        static_client(server.url, sleeps).call_json("GET", "x", what="read x")
    assert sleeps == [3.0, MAX_RETRY_AFTER_SECONDS]


def test_given_retry_after_as_http_date_when_retried_then_waits_until_that_date() -> None:
    # RFC 9110: Retry-After is delay-seconds or an HTTP-date, measured from the answer's Date.
    replies = [
        Reply(
            429,
            b'{"message": "slow down"}',
            {
                "Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT",
                "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
        ),
        # Past: the usual backoff (a 0 s wait would spend every retry within milliseconds).
        Reply(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"}),
        Reply(503, headers={"Retry-After": "soon"}),  # unreadable: the usual backoff
        Reply(200, b"{}"),
    ]
    sleeps = Sleeps()
    with Loopback(replies) as server:
        static_client(server.url, sleeps, retry_delay=0.2).call_json("GET", "x", what="read x")
    assert sleeps[0] == 30.0
    assert all(0.05 <= delay <= 0.8 for delay in sleeps[1:]), sleeps


def test_given_rate_limit_that_persists_when_called_then_rate_limited_error() -> None:
    sleeps = Sleeps()
    with Loopback([Reply(429, b'{"message": "Resource level throttle"}')]) as server:
        client = static_client(server.url, sleeps, max_retries=2)
        with pytest.raises(RateLimitedError, match="after 3 tries"):
            client.call("GET", "x", what="read x")
    assert len(server.seen) == 3
    assert len(sleeps) == 2


def test_given_daily_quota_when_created_then_stops_after_three_tries_and_makes_no_more_calls(
    client: LinkedInClient, sandbox: Sandbox, sleeps: Sleeps
) -> None:
    job_id, body = completed(client)
    sandbox.add_fault(Fault(kind="rate_limit", endpoint="create", times=None))
    with pytest.raises(QuotaExceededError, match="midnight UTC"):
        create(client)
    assert requests_to(sandbox, "create") == 1 + 3
    assert len(sleeps) == 2
    gets = requests_to(sandbox, "get")
    with pytest.raises(QuotaExceededError, match="used up earlier in this run"):
        get(client, job_id)
    assert requests_to(sandbox, "get") == gets  # not even tried
    with client.open_download(body["downloadUrls"][0]) as response:  # downloads do not count
        assert response.status_code == 200


def test_given_daily_quota_429s_between_successes_when_called_then_count_restarts(
    client: LinkedInClient, sandbox: Sandbox, sleeps: Sleeps
) -> None:
    sandbox.add_fault(Fault(kind="rate_limit", endpoint="create", times=2))
    create(client)
    sandbox.add_fault(Fault(kind="rate_limit", endpoint="create", times=2))
    create(client)  # 4 quota 429s in all, but never 3 without a success between
    assert len(sleeps) == 4


def test_given_unreachable_api_when_called_then_network_error_after_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    client = static_client(f"http://127.0.0.1:{port}", sleeps, max_retries=2)
    with pytest.raises(NetworkError, match="refused") as info:
        client.call("GET", "x", params={"token": "SECRETQ"}, what="read x")
    assert "3 tries" in str(info.value)
    assert "SECRETQ" not in str(info.value)
    assert len(sleeps) == 2


# Tokens -----------------------------------------------------------------------------------------


def test_given_expired_token_when_polled_then_renewed_once_and_retried(
    client: LinkedInClient, sandbox: Sandbox
) -> None:
    job_id = create(client)
    sandbox.add_fault(Fault(kind="token_expired", endpoint="get"))
    assert get(client, job_id)["jobId"] == job_id
    assert requests_to(sandbox, "token") == 2


def test_given_new_token_also_refused_when_polled_then_authentication_error(
    client: LinkedInClient, sandbox: Sandbox
) -> None:
    job_id = create(client)
    sandbox.add_fault(Fault(kind="token_expired", endpoint="get", times=2))
    with pytest.raises(AuthenticationError, match="EXPIRED_ACCESS_TOKEN"):
        get(client, job_id)
    assert requests_to(sandbox, "token") == 2  # renewed once, not in a loop


def test_given_token_endpoint_failing_once_when_called_then_retried(
    client: LinkedInClient, sandbox: Sandbox, sleeps: Sleeps
) -> None:
    sandbox.add_fault(Fault(kind="error", endpoint="token", status=503))
    create(client)
    assert len(sleeps) == 1
    assert requests_to(sandbox, "token") == 2


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
        job_id = create(client)
        sandbox.expire_tokens()
        with pytest.raises(AuthenticationError, match="EXPIRED_ACCESS_TOKEN") as info:
            get(client, job_id)
    assert token not in str(info.value)
    assert "client_id and client_secret" in str(info.value)


# Downloads --------------------------------------------------------------------------------------


def test_given_expired_urls_when_downloaded_then_expired_error_without_query(
    client: LinkedInClient, sandbox: Sandbox
) -> None:
    job_id, body = completed(client)
    sandbox.expire_download_urls(job_id)
    with pytest.raises(DownloadExpiredError) as info:
        client.open_download(body["downloadUrls"][0])
    assert info.value.status == 403
    assert "x-li-ambry-ep" not in str(info.value)
    assert "?<redacted>" in str(info.value)
    fresh = get(client, job_id)
    assert fresh["downloadUrls"] != body["downloadUrls"]
    with client.open_download(fresh["downloadUrls"][0]) as response:
        assert response.status_code == 200


def test_given_download_failing_with_5xx_when_opened_then_retried_then_server_error(
    client: LinkedInClient, sandbox: Sandbox, sleeps: Sleeps
) -> None:
    _, body = completed(client)
    sandbox.add_fault(Fault(kind="error", endpoint="download", status=502, times=None))
    with pytest.raises(ServerError, match="HTTP 502") as info:
        client.open_download(body["downloadUrls"][0])
    assert "x-li-ambry-ep" not in str(info.value)
    assert len(sleeps) == client.max_retries


def test_given_download_404_when_opened_then_expired_error() -> None:
    with Loopback([Reply(404)]) as server:
        client = static_client(server.url)
        with pytest.raises(DownloadExpiredError, match="HTTP 404"):
            client.open_download(f"{server.url}/ambry/?x-li-ambry-ep=SIGNED")


def test_given_redirect_loop_when_downloaded_then_refused_after_the_limit() -> None:
    with Loopback([Reply(302, headers={"Location": "/ambry/?x-li-ambry-ep=SIGNED"})]) as server:
        client = static_client(server.url)
        with pytest.raises(APIError, match=f"more than {MAX_DOWNLOAD_REDIRECTS} times") as info:
            client.open_download(f"{server.url}/ambry/?x-li-ambry-ep=SIGNED")
    assert len(server.seen) == MAX_DOWNLOAD_REDIRECTS + 1
    assert "SIGNED" not in str(info.value)


def test_given_download_on_api_origin_and_elsewhere_when_opened_then_token_only_for_api(
    client: LinkedInClient, sandbox: Sandbox
) -> None:
    _, body = completed(client)
    with client.open_download(body["downloadUrls"][0]):
        pass
    download = next(r for r in sandbox.requests if r.endpoint == "download")
    assert download.authorized  # the API's own origin
    with (
        Loopback([Reply(200, b"crmRecordId\r\n")]) as other,
        client.open_download(f"{other.url}/ambry/?x-li-ambry-ep=1") as response,
    ):
        assert response.content == b"crmRecordId\r\n"
    assert "Authorization" not in other.seen[0].headers


def test_given_urls_when_authorization_decided_then_only_api_origin_and_linkedin_https(
    client: LinkedInClient,
) -> None:
    assert client._may_authorize(f"{client.api_url}/x")
    assert client._may_authorize("https://www.linkedin.com/ambry/?x-li-ambry-ep=1")
    assert client._may_authorize("https://linkedin.com/ambry/")
    assert not client._may_authorize("http://www.linkedin.com/ambry/")
    assert not client._may_authorize("https://files.example.com/ambry/?x-li-ambry-ep=1")
    assert not client._may_authorize("https://linkedin.com.evil.example/ambry/")
    assert not client._may_authorize("https://evillinkedin.com/ambry/")
    host, port = client.api_url.split("//")[1].split("/")[0].split(":")
    assert not client._may_authorize(f"http://{host}:{int(port) + 1}/v2/x")


def test_given_non_tls_remote_url_when_checked_then_refused() -> None:
    check_download_url("https://www.linkedin.com/ambry/?x=1")
    check_download_url("http://127.0.0.1:8765/ambry/?x=1")
    check_download_url("http://[::1]:8765/ambry/?x=1")
    with pytest.raises(APIError, match="only https") as info:
        check_download_url("http://www.linkedin.com/ambry/?x-li-ambry-ep=secret")
    assert "secret" not in str(info.value)
    with pytest.raises(APIError, match="only https"):
        check_download_url("ftp://127.0.0.1/ambry/")


def test_given_unparsable_download_url_when_opened_then_api_error_without_the_token(
    client: LinkedInClient,
) -> None:
    with pytest.raises(APIError, match="could not be sent") as info:
        client.open_download("http://127.0.0.1:99999/ambry/?x-li-ambry-ep=SIGNEDSECRET")
    assert "SIGNEDSECRET" not in str(info.value)


# Redaction and messages -------------------------------------------------------------------------


def test_given_signed_url_when_redacted_then_query_and_fragment_gone() -> None:
    assert (
        redact_url("https://www.linkedin.com/ambry/?x-li-ambry-ep=AQHk")
        == "https://www.linkedin.com/ambry/?<redacted>"
    )
    assert redact_url("https://h/p#frag") == "https://h/p"


def test_given_url_in_a_log_line_when_filtered_then_query_replaced() -> None:
    record = logging.LogRecord(
        "urllib3.connectionpool",
        logging.DEBUG,
        __file__,
        1,
        '%s "GET %s HTTP/1.1" 200',
        ("https://www.linkedin.com:443", "/ambry/?x-li-ambry-ep=AQ123"),
        None,
    )
    assert RedactQueryStrings().filter(record)
    assert record.getMessage() == (
        'https://www.linkedin.com:443 "GET /ambry/?<redacted> HTTP/1.1" 200'
    )


def test_given_redaction_installed_twice_when_checked_then_one_filter_per_logger() -> None:
    install_log_redaction()
    install_log_redaction()
    for name in URL_LOGGERS:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, RedactQueryStrings) for f in filters) == 1


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (requests.Timeout("read timed out"), "no answer from h.example:8443 within 5 s"),
        (requests.exceptions.SSLError("bad handshake"), "TLS handshake with h.example:8443"),
        (requests.exceptions.ChunkedEncodingError("x"), "cut short or undecodable"),
        (requests.ConnectionError("[Errno 111] Connection refused"), "refused"),
        (requests.ConnectionError("Failed to resolve 'h.example'"), "host name h.example could"),
        (requests.ConnectionError("Connection reset by peer"), "was reset"),
        (requests.ConnectionError("something odd"), "failed (ConnectionError)"),
    ],
)
def test_given_network_error_when_described_then_cause_and_host_without_query(
    exc: BaseException, expected: str
) -> None:
    text = describe_network_error(exc, "https://h.example:8443/ambry/?x-li-ambry-ep=S", 5)
    assert expected in text
    assert "x-li-ambry-ep" not in text
