"""Each scripted fault of the sandbox fires as documented, over real HTTP."""

from __future__ import annotations

import gzip
import time
import zlib

import pytest
import requests

from tap_linkedin_crm.sandbox import (
    DYNAMICS_INSTANCE,
    SFDC_INSTANCE,
    Fault,
    InstanceSpec,
    Scenario,
)

DAILY_LIMIT = {
    "message": (
        "Resource level throttle APPLICATION DAY limit for calls to this resource is reached."
    ),
    "status": 429,
}


@pytest.fixture
def setup(make_sandbox, make_client):
    def factory(*faults: Fault, **kwargs):
        sb = make_sandbox(Scenario(faults=list(faults), **kwargs))
        api = make_client(sb)
        api.login()
        return sb, api

    return factory


def completed_urls(api, instance=DYNAMICS_INSTANCE) -> tuple[int, list[str]]:
    job_id = api.create_job(instance)
    return job_id, api.wait_completed(job_id, instance)["downloadUrls"]


def test_rate_limit_daily_body_without_retry_after(setup):
    sb, api = setup(Fault(kind="rate_limit", endpoint="create"))
    with api.create() as resp:
        assert resp.status_code == 429
        assert resp.json() == DAILY_LIMIT
        assert "Retry-After" not in resp.headers
    with api.create() as resp:
        assert resp.status_code == 201
    assert [r.fault for r in sb.requests if r.endpoint == "create"] == ["rate_limit", None]


def test_rate_limit_with_retry_after(setup):
    _, api = setup(Fault(kind="rate_limit", endpoint="get", retry_after=2))
    job_id = api.create_job()
    with api.get(job_id) as resp:
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] == "2"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_use_the_envelope(setup, status):
    _, api = setup(Fault(kind="error", endpoint="get", status=status, times=2))
    job_id = api.create_job()
    for _ in range(2):
        with api.get(job_id) as resp:
            assert resp.status_code == status
            assert resp.json()["status"] == status
    assert api.get_json(job_id)["status"] == "PROCESSING"


def test_rate_limit_on_token_endpoint(setup):
    sb, api = setup()
    sb.add_fault(Fault(kind="rate_limit", endpoint="token"))
    with api.fetch_token() as resp:
        assert resp.status_code == 429
    with api.fetch_token() as resp:
        assert resp.status_code == 200


def test_after_and_instance_select_the_requests(setup):
    _, api = setup(Fault(kind="error", endpoint="create", instance=SFDC_INSTANCE, after=1))
    api.create_job(DYNAMICS_INSTANCE)
    api.create_job(SFDC_INSTANCE)  # first SFDC create passes (after=1)
    with api.create(SFDC_INSTANCE) as resp:
        assert resp.status_code == 500
    api.create_job(SFDC_INSTANCE)  # times=1: spent


def test_slow_response(setup):
    _, api = setup(Fault(kind="slow", endpoint="get", delay=0.3))
    job_id = api.create_job()
    started = time.monotonic()
    assert api.get_json(job_id)["status"] == "PROCESSING"
    assert time.monotonic() - started >= 0.3


def test_drop_mid_download_then_retry_succeeds(setup):
    sb, api = setup(Fault(kind="drop", endpoint="download", after_bytes=1000))
    _, urls = completed_urls(api)
    with pytest.raises(requests.exceptions.RequestException):
        api.download(urls[0]).close()
    with api.download(urls[0]) as resp:
        assert resp.status_code == 200
    dropped = next(r for r in sb.requests if r.fault == "drop")
    assert dropped.bytes_sent == 1000


def test_drop_on_api_call_closes_without_response(setup):
    sb, api = setup(Fault(kind="drop", endpoint="get"))
    job_id = api.create_job()
    with pytest.raises(requests.exceptions.ConnectionError):
        api.get(job_id).close()
    assert next(r for r in sb.requests if r.fault == "drop").status == 0


def test_drop_mid_chunked_stream_is_detectable(setup):
    _, api = setup(
        Fault(kind="drop", endpoint="download", after_bytes=300_000),
        stream_threshold_rows=10,
        instances={DYNAMICS_INSTANCE: InstanceSpec(rows=5000, files=1)},
    )
    _, urls = completed_urls(api)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api.download(urls[0]).close()


@pytest.mark.parametrize("threshold", [20_000, 10])
def test_truncated_body_is_detectable(setup, threshold):
    _, api = setup(
        Fault(kind="truncate", endpoint="download", after_bytes=5000),
        stream_threshold_rows=threshold,
        instances={DYNAMICS_INSTANCE: InstanceSpec(rows=2000, files=1)},
    )
    _, urls = completed_urls(api)
    with api.download(urls[0], stream=True) as resp:
        assert int(resp.headers["Content-Length"]) > 5000
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            _ = resp.content


def test_truncated_json_response(setup):
    _, api = setup(Fault(kind="truncate", endpoint="get", after_bytes=10))
    job_id = api.create_job()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api.get(job_id).close()


def test_job_fails_the_first_k_times(setup):
    sb, api = setup(Fault(kind="job_failed", instance=DYNAMICS_INSTANCE, times=2))
    for _ in range(2):
        body = api.wait_completed(api.create_job())
        assert body["status"] == "FAILED_DUE_TO_INTERNAL_ERROR"
        assert "downloadUrls" not in body
    assert api.wait_completed(api.create_job())["status"] == "COMPLETED"
    assert api.wait_completed(api.create_job(SFDC_INSTANCE), SFDC_INSTANCE)["status"] == (
        "COMPLETED"
    )
    assert [r.fault for r in sb.requests if r.endpoint == "create"][:2] == ["job_failed"] * 2


def test_job_never_finishes(setup):
    sb, api = setup(Fault(kind="job_never_finishes"), processing_seconds=1)
    job_id = api.create_job()
    sb.clock.advance(3 * 3600)
    api.login()
    for _ in range(5):
        assert api.get_json(job_id)["status"] == "PROCESSING"


def test_url_expired_before_download(setup):
    _, api = setup(Fault(kind="url_expired"))
    job_id, urls = completed_urls(api)
    with api.download(urls[0]) as resp:
        assert resp.status_code == 403
    with api.download(urls[1]) as resp:  # the whole job's URLs expired
        assert resp.status_code == 403
    fresh = api.get_json(job_id)["downloadUrls"]
    assert set(fresh).isdisjoint(urls)
    with api.download(fresh[0]) as resp:
        assert resp.status_code == 200


def test_url_expires_during_download(setup):
    sb, api = setup(Fault(kind="url_expires_mid_download", after_bytes=2000))
    job_id, urls = completed_urls(api)
    with pytest.raises(requests.exceptions.RequestException):
        api.download(urls[0]).close()
    with api.download(urls[0]) as resp:  # the retry of the same URL
        assert resp.status_code == 403
    body = api.get_json(job_id)
    assert body["expireAt"] > sb.clock.now_ms()
    with api.download(body["downloadUrls"][0]) as resp:
        assert resp.status_code == 200
        assert resp.content.startswith(b"\xef\xbb\xbf")


def test_token_expires_mid_sync(setup):
    _, api = setup(Fault(kind="token_expired", endpoint="get", after=1))
    job_id = api.create_job()
    assert api.get_json(job_id)["status"] == "PROCESSING"
    for _ in range(2):  # the token stays expired
        with api.get(job_id) as resp:
            assert resp.status_code == 401
            assert resp.json()["code"] == "EXPIRED_ACCESS_TOKEN"
    api.login()
    assert api.get_json(job_id)["jobId"] == job_id


def test_expire_tokens_helper(setup):
    sb, api = setup()
    sb.expire_tokens()
    with api.create() as resp:
        assert resp.status_code == 401
        assert resp.json()["code"] == "EXPIRED_ACCESS_TOKEN"


def test_forbidden_fault(setup):
    _, api = setup(Fault(kind="forbidden", endpoint="create"))
    with api.create() as resp:
        assert resp.status_code == 403
        assert resp.json() == {
            "message": "Not enough permissions to access: POST /crmDataValidationExportJobs",
            "serviceErrorCode": 100,
            "status": 403,
        }


def test_header_drift_fault(setup):
    sb, api = setup(Fault(kind="header_drift"))
    drifted = api.create_job()
    plain = api.create_job()
    columns = sb.jobs[drifted]["columns"]
    assert len({tuple(c) for c in columns}) == 3
    assert len({tuple(c) for c in sb.jobs[plain]["columns"]}) == 1


@pytest.mark.parametrize("instance", [DYNAMICS_INSTANCE, SFDC_INSTANCE])
def test_corrupt_gzip(setup, instance):
    _, api = setup(Fault(kind="corrupt_gzip"))
    _, urls = completed_urls(api, instance)
    with api.download(urls[0]) as resp:
        assert resp.headers["Content-Type"] == "application/gzip"
        content = resp.content
    assert content[:2] == b"\x1f\x8b"
    with pytest.raises((OSError, EOFError, zlib.error)):
        gzip.decompress(content)
    with api.download(urls[0]) as resp:
        assert resp.status_code == 200


def test_faults_load_from_json(make_sandbox, make_client):
    scenario = Scenario.from_dict(
        {
            "faults": [
                {"kind": "rate_limit", "endpoint": "create", "retry_after": 5},
                {"kind": "job_failed", "times": None},
            ],
            "job_processing_polls": 0,
        }
    )
    sb = make_sandbox(scenario)
    api = make_client(sb)
    api.login()
    with api.create() as resp:
        assert resp.headers["Retry-After"] == "5"
    assert api.get_json(api.create_job())["status"] == "FAILED_DUE_TO_INTERNAL_ERROR"
    assert api.get_json(api.create_job())["status"] == "FAILED_DUE_TO_INTERNAL_ERROR"


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "meteor"},
        {"kind": "error", "endpoint": "nowhere"},
        {"kind": "token_expired", "endpoint": "download"},
        {"kind": "job_failed", "endpoint": "get"},
        {"kind": "error", "colour": "red"},
    ],
)
def test_invalid_faults_are_rejected(data):
    with pytest.raises(ValueError, match=r"fault|endpoint|keys"):
        Fault.from_dict(data)
