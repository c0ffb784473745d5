"""The sandbox honours the LinkedIn contract (issue 2, linkedin-api.md section 4) over real HTTP."""

from __future__ import annotations

import csv
import gzip
import io
import logging
import typing as t

import pytest

from tap_linkedin_crm.sandbox import (
    DEFAULT_COLUMNS,
    DYNAMICS_INSTANCE,
    SFDC_INSTANCE,
    InstanceSpec,
    Sandbox,
    Scenario,
)

if t.TYPE_CHECKING:
    import requests

DAY_MS = 86_400_000
SEVEN_FIELDS = {
    "jobId",
    "exportStartAt",
    "exportEndAt",
    "status",
    "downloadUrls",
    "nextExportStartAt",
    "expireAt",
}


def parse_csv(content: bytes) -> tuple[list[str], list[dict[str, str]]]:
    text = content.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    return header, [dict(zip(header, rec, strict=True)) for rec in reader]


def download_all(client, body) -> tuple[list[dict[str, str]], list[requests.Response]]:
    rows: list[dict[str, str]] = []
    responses = []
    for url in body["downloadUrls"]:
        with client.download(url) as resp:
            assert resp.status_code == 200
            content = resp.content
            if resp.headers["Content-Type"] == "application/gzip":
                content = gzip.decompress(content)
            rows.extend(parse_csv(content)[1])
            responses.append(resp)
    return rows, responses


# -- token endpoint ---------------------------------------------------------------------------


def test_token_endpoint_issues_string_expires_in(sandbox, make_client):
    api = make_client(sandbox)
    with api.fetch_token() as resp:
        assert resp.status_code == 200
        body = resp.json()
    assert body["expires_in"] == "1800"
    assert isinstance(body["access_token"], str)
    assert len(body["access_token"]) > 20


def test_token_endpoint_rejects_bad_client_grant_and_json(sandbox, make_client):
    api = make_client(sandbox)
    with api.fetch_token(secret="wrong") as resp:
        assert resp.status_code == 401
        assert resp.json()["error"] == "invalid_client"
        assert "error_description" in resp.json()
    with api.session.post(sandbox.token_url, data={"grant_type": "password"}, timeout=5) as resp:
        assert resp.status_code == 400
        assert resp.json()["error"] == "unsupported_grant_type"
    payload = {
        "grant_type": "client_credentials",
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
    }
    with api.session.post(sandbox.token_url, json=payload, timeout=5) as resp:
        assert resp.status_code == 400


# -- authentication and headers ---------------------------------------------------------------


def test_api_without_token_is_401_empty_token(client):
    with client.create(headers={"X-Restli-Protocol-Version": "2.0.0"}) as resp:
        assert resp.status_code == 401
        assert resp.json() == {
            "message": "Empty oauth2_access_token",
            "serviceErrorCode": 401,
            "status": 401,
        }


def test_api_with_unknown_token_is_401_invalid(client):
    headers = {"Authorization": "Bearer nope", "X-Restli-Protocol-Version": "2.0.0"}
    with client.create(headers=headers) as resp:
        assert resp.status_code == 401
        assert resp.json()["code"] == "INVALID_ACCESS_TOKEN"
        assert resp.json()["serviceErrorCode"] == 65600


def test_expired_token_is_401_expired_after_ttl(sandbox, client):
    sandbox.clock.advance(1801)
    with client.create() as resp:
        assert resp.status_code == 401
        assert resp.json() == {
            "status": 401,
            "serviceErrorCode": 65600,
            "code": "EXPIRED_ACCESS_TOKEN",
            "message": "The token used in the request has expired",
        }
    client.login()
    with client.create() as resp:
        assert resp.status_code == 201


def test_missing_restli_header_is_400(client):
    with client.create(headers={"Authorization": f"Bearer {client.token}"}) as resp:
        assert resp.status_code == 400
        assert set(resp.json()) == {"message", "serviceErrorCode", "status"}


# -- create -----------------------------------------------------------------------------------


def test_create_returns_201_with_restli_headers_and_no_body(sandbox, client):
    with client.create(start=1533772800000) as resp:
        assert resp.status_code == 201
        assert resp.content == b""
        job_id = int(resp.headers["X-RestLi-Id"])
        assert resp.headers["Location"] == f"/crmDataValidationExportJobs/{job_id}"
        assert resp.headers["X-RestLi-Protocol-Version"] == "2.0.0"
    second = client.create_job()
    assert second > job_id
    job = sandbox.jobs[job_id]
    assert job["exportEndAt"] - job["exportStartAt"] == 30 * DAY_MS  # clamped look-back
    assert abs(job["exportEndAt"] - sandbox.clock.now_ms()) < 5000


def test_create_keeps_a_recent_start(sandbox, client):
    start = sandbox.clock.now_ms() - DAY_MS
    with client.create(start=start) as resp:
        job_id = int(resp.headers["X-RestLi-Id"])
    assert sandbox.jobs[job_id]["exportStartAt"] == start


@pytest.mark.parametrize(
    "instance",
    [
        "not-a-urn",
        "urn:li:crmInstance:DYNAMICS,abc",
        "urn:li:crmInstance:(HUBSPOT,123)",
    ],
)
def test_create_with_bad_instance_is_400(client, instance):
    with client.create(instance) as resp:
        assert resp.status_code == 400
        assert resp.json()["status"] == 400


def test_create_without_instance_is_400(sandbox, client):
    url = f"{sandbox.api_url}/crmDataValidationExportJobs"
    with client.session.post(url, json={"exportStartAt": 0}, headers=client.headers()) as resp:
        assert resp.status_code == 400


@pytest.mark.parametrize("start", ["1533772800000", 1.5, True, None])
def test_create_with_non_integer_start_is_400(client, start):
    with client.create(start=start) as resp:
        assert resp.status_code == 400


def test_create_for_instance_without_permission_is_403(make_sandbox, make_client):
    urn = "urn:li:crmInstance:(SFDC,00D000000000NoPERM)"
    sb = make_sandbox(instances={urn: InstanceSpec(permitted=False)})
    api = make_client(sb)
    api.login()
    with api.create(urn) as resp:
        assert resp.status_code == 403
        assert resp.json() == {
            "serviceErrorCode": 100,
            "message": "Not enough permissions to access: POST /crmDataValidationExportJobs",
            "status": 403,
        }


def test_create_for_unknown_instance_is_404(client):
    with client.create("urn:li:crmInstance:(SFDC,00Dunknown)") as resp:
        assert resp.status_code == 404


# -- get --------------------------------------------------------------------------------------


def test_job_goes_processing_then_completed_with_seven_fields(sandbox, client):
    job_id = client.create_job()
    for _ in range(2):
        body = client.get_json(job_id)
        assert body["status"] == "PROCESSING"
        assert set(body) == {"jobId", "exportStartAt", "status"}
    body = client.get_json(job_id)
    assert body["status"] == "COMPLETED"
    assert set(body) == SEVEN_FIELDS
    assert body["jobId"] == job_id
    assert len(body["downloadUrls"]) == 3
    assert body["nextExportStartAt"] == body["exportEndAt"]
    assert body["expireAt"] - sandbox.clock.now_ms() == pytest.approx(DAY_MS, abs=5000)
    assert all("/ambry/?x-li-ambry-ep=" in url for url in body["downloadUrls"])


def test_next_export_start_can_mimic_doc_sample(make_sandbox, make_client):
    sb = make_sandbox(next_export_start="start", job_processing_polls=0)
    api = make_client(sb)
    api.login()
    body = api.get_json(api.create_job())
    assert body["nextExportStartAt"] == body["exportStartAt"]


def test_processing_seconds_follow_the_sandbox_clock(make_sandbox, make_client):
    sb = make_sandbox(processing_seconds=7200)
    api = make_client(sb)
    api.login()
    job_id = api.create_job()
    assert api.get_json(job_id)["status"] == "PROCESSING"
    sb.clock.advance(7200)
    api.login()
    assert api.get_json(job_id)["status"] == "COMPLETED"


def test_get_with_wrong_instance_unknown_id_or_old_job_is_404(sandbox, client):
    job_id = client.create_job()
    with client.get(job_id, SFDC_INSTANCE) as resp:
        assert resp.status_code == 404
    with client.get(999_999) as resp:
        assert resp.status_code == 404
    sandbox.clock.advance(7 * 86400 + 1)
    client.login()
    with client.get(job_id) as resp:
        assert resp.status_code == 404
        assert set(resp.json()) == {"message", "serviceErrorCode", "status"}


# -- downloads --------------------------------------------------------------------------------


def test_downloads_serve_expected_rows_without_authorization(sandbox, client):
    job_id = client.create_job()
    body = client.wait_completed(job_id)
    rows, responses = download_all(client, body)
    assert rows == sandbox.expected_rows(job_id)
    assert len(rows) == 250
    for resp in responses:
        assert resp.headers["Content-Type"].startswith("text/csv")
        assert int(resp.headers["Content-Length"]) == len(resp.content)
        assert resp.content.startswith(b"\xef\xbb\xbf")
        assert b"\r\n" in resp.content
    assert not any(r.authorized for r in sandbox.requests if r.endpoint == "download")
    header, _ = parse_csv(responses[0].content)
    assert tuple(header) == DEFAULT_COLUMNS
    ids = [r["crmRecordId"] for r in rows]
    assert len(set(ids)) == len(ids)


def test_gzip_files_are_csv_gz_and_identical_on_redownload(sandbox, client):
    job_id = client.create_job(SFDC_INSTANCE)
    body = client.wait_completed(job_id, SFDC_INSTANCE)
    rows, responses = download_all(client, body)
    assert rows == sandbox.expected_rows(job_id)
    assert responses[0].content[:2] == b"\x1f\x8b"
    assert "Content-Encoding" not in responses[0].headers
    assert responses[0].headers["Content-Disposition"].endswith('.csv.gz"')
    with client.download(body["downloadUrls"][0]) as again:
        assert again.content == responses[0].content
    assert all(len(r["crmRecordId"]) == 18 for r in rows)


def test_csv_has_awkward_values(make_sandbox, make_client):
    sb = make_sandbox(instances={DYNAMICS_INSTANCE: InstanceSpec(rows=5000, files=1)})
    api = make_client(sb)
    api.login()
    job_id = api.create_job()
    body = api.wait_completed(job_id)
    with api.download(body["downloadUrls"][0]) as resp:
        raw = resp.content
    rows = parse_csv(raw)[1]
    values = [v for row in rows for v in row.values()]
    assert any("," in v for v in values)
    assert any("\n" in v for v in values)
    assert any("\x00" in v for v in values)
    assert any(v == "" for v in values)
    assert any(not v.isascii() for v in values)
    assert max(len(v) for v in values) >= 10_000
    assert {r["recordType"] for r in rows} == {"CONTACT", "LEAD"}
    assert all(r["flaggedAt"].isdigit() for r in rows)
    assert all(len(r["lastSyncedAt"]) == 19 for r in rows)
    assert rows == sb.expected_rows(job_id)


def test_nul_bytes_and_long_fields_can_be_turned_off(make_sandbox, make_client):
    sb = make_sandbox(
        nul_bytes=False,
        long_field_chars=0,
        instances={DYNAMICS_INSTANCE: InstanceSpec(rows=5000, files=1)},
    )
    api = make_client(sb)
    api.login()
    rows = sb.expected_rows(api.create_job())
    assert len(rows) == 5000
    assert not any("\x00" in v for row in rows for v in row.values())
    assert max(len(v) for row in rows for v in row.values()) < 1000


def test_zero_rows_still_serves_a_header_only_file(make_sandbox, make_client):
    sb = make_sandbox(instances={DYNAMICS_INSTANCE: InstanceSpec(rows=0, files=0)})
    api = make_client(sb)
    api.login()
    body = api.wait_completed(api.create_job())
    assert len(body["downloadUrls"]) == 1
    with api.download(body["downloadUrls"][0]) as resp:
        header, rows = parse_csv(resp.content)
    assert tuple(header) == DEFAULT_COLUMNS
    assert rows == []


def test_header_drift_and_custom_columns(make_sandbox, make_client):
    sb = make_sandbox(
        instances={
            DYNAMICS_INSTANCE: InstanceSpec(rows=40, files=4, header_drift=True),
            SFDC_INSTANCE: InstanceSpec(rows=6, files=2, columns=["crmRecordId", "Custom Col"]),
        }
    )
    api = make_client(sb)
    api.login()
    job_id = api.create_job()
    body = api.wait_completed(job_id)
    headers = []
    for url in body["downloadUrls"]:
        with api.download(url) as resp:
            headers.append(parse_csv(resp.content)[0])
    assert headers[0] == list(DEFAULT_COLUMNS)
    assert "territory" in headers[1]
    assert "title" not in headers[2]
    assert headers[3] == list(reversed(DEFAULT_COLUMNS))
    rows, _ = download_all(api, body)
    assert rows == sb.expected_rows(job_id)
    sfdc_job = api.create_job(SFDC_INSTANCE)
    assert [set(r) for r in sb.expected_rows(sfdc_job)] == [{"crmRecordId", "Custom Col"}] * 6


def test_big_files_are_streamed_chunked(make_sandbox, make_client):
    sb = make_sandbox(
        stream_threshold_rows=100,
        instances={
            DYNAMICS_INSTANCE: InstanceSpec(rows=9000, files=1),
            SFDC_INSTANCE: InstanceSpec(rows=9000, files=1, gzip=True),
        },
    )
    api = make_client(sb)
    api.login()
    for urn in (DYNAMICS_INSTANCE, SFDC_INSTANCE):
        job_id = api.create_job(urn)
        rows, responses = download_all(api, api.wait_completed(job_id, urn))
        assert responses[0].headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in responses[0].headers
        assert rows == list(sb.iter_expected_rows(job_id))


def test_expired_urls_are_403_and_get_issues_fresh_ones(sandbox, client):
    job_id = client.create_job()
    body = client.wait_completed(job_id)
    old_url = body["downloadUrls"][0]
    sandbox.clock.advance(86400 + 1)
    client.login()
    with client.download(old_url) as resp:
        assert resp.status_code == 403
    fresh = client.get_json(job_id)
    assert fresh["status"] == "COMPLETED"
    assert fresh["expireAt"] > body["expireAt"]
    assert fresh["downloadUrls"][0] != old_url
    with client.download(old_url) as resp:
        assert resp.status_code == 403
    rows, _ = download_all(client, fresh)
    assert rows == sandbox.expected_rows(job_id)


def test_unknown_download_token_is_404(sandbox, client):
    with client.download(f"{sandbox.base_url}/ambry/?x-li-ambry-ep=AQnope") as resp:
        assert resp.status_code == 404


def test_unknown_path_is_404_envelope(sandbox, client):
    with client.session.get(f"{sandbox.api_url}/me", headers=client.headers(), timeout=5) as r:
        assert r.status_code == 404
        assert r.json()["status"] == 404


# -- request log and config -------------------------------------------------------------------


def test_request_log_has_no_secrets(sandbox, client, caplog):
    caplog.set_level(logging.INFO, logger="tap_linkedin_crm.sandbox")
    job_id = client.create_job()
    body = client.wait_completed(job_id)
    download_all(client, body)
    records = sandbox.requests
    assert [r.endpoint for r in records][:3] == ["token", "create", "get"]
    assert records[0].authorized is False
    assert records[1].authorized is True
    assert records[1].status == 201
    assert all("?" not in r.path for r in records)
    token_part = body["downloadUrls"][0].split("=", 1)[1]
    for message in caplog.messages:
        assert client.token not in message
        assert token_part not in message
        assert "x-li-ambry-ep" not in message
    # One line per API/download request (the token may be fetched before capture starts).
    api_lines = [m for m in caplog.messages if "/oauth/" not in m]
    assert len(api_lines) == len([r for r in records if r.endpoint != "token"])


def test_tap_config_points_at_the_sandbox(sandbox):
    config = sandbox.tap_config(job_timeout=5)
    assert config["api_url"] == sandbox.base_url + "/v2"
    assert config["token_url"] == sandbox.base_url + "/oauth/v2/accessToken"
    assert config["crm_instance_ids"] == [DYNAMICS_INSTANCE, SFDC_INSTANCE]
    assert config["client_id"] == "sandbox-client"
    assert config["job_timeout"] == 5


def test_port_zero_picks_distinct_ports():
    with Sandbox(Scenario()) as one, Sandbox(Scenario()) as two:
        assert one.base_url != two.base_url
