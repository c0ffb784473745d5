"""Faults for the hardening review: odd job bodies, broken files, stalls, redirects, dates."""

from __future__ import annotations

import csv
import email.utils
import gzip
import io
import itertools
import tracemalloc

import pytest
import requests

from tap_linkedin_crm.sandbox import (
    AMERICAS_CONTRACT,
    DYNAMICS_INSTANCE,
    EMEA_CONTRACT,
    SFDC_INSTANCE,
    Fault,
    InstanceSpec,
    Scenario,
)
from tap_linkedin_crm.sandbox.byte_streams import unclosed_quote

DAY = 86_400


@pytest.fixture
def setup(make_sandbox, make_client):
    def factory(*faults: Fault, **kwargs):
        sb = make_sandbox(Scenario(faults=list(faults), **kwargs))
        api = make_client(sb)
        api.login()
        return sb, api

    return factory


def poll_all(api, job_id: int, count: int, instance: str = DYNAMICS_INSTANCE) -> list[object]:
    bodies = []
    for _ in range(count):
        with api.get(job_id, instance) as resp:
            assert resp.status_code == 200
            bodies.append(resp.json())
    return bodies


def parse(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))


# -- job bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "check"),
    [
        (None, lambda body: body["downloadUrls"] is None),
        ("null", lambda body: body["downloadUrls"] is None),
        ("absent", lambda body: "downloadUrls" not in body),
        ("empty", lambda body: body["downloadUrls"] == []),
    ],
)
def test_completed_job_without_download_urls_for_the_first_completed_gets(setup, variant, check):
    sb, api = setup(Fault(kind="download_urls_missing", variant=variant, times=2))
    job_id = api.create_job()
    bodies = poll_all(api, job_id, 5)
    assert [b["status"] for b in bodies] == ["PROCESSING"] * 2 + ["COMPLETED"] * 3
    assert all(check(b) for b in bodies[2:4])
    assert len(bodies[4]["downloadUrls"]) == 3
    assert all(b["expireAt"] for b in bodies[2:])  # the rest of the body is intact
    assert [r.fault for r in sb.requests if r.endpoint == "get"] == [None, None] + [
        "download_urls_missing"
    ] * 2 + [None]


def test_download_urls_missing_forever_and_per_instance(setup):
    _, api = setup(Fault(kind="download_urls_missing", times=None, instance=SFDC_INSTANCE))
    sfdc = api.create_job(SFDC_INSTANCE)
    assert all(b["downloadUrls"] is None for b in poll_all(api, sfdc, 8, SFDC_INSTANCE)[2:])
    dynamics = api.create_job()
    assert poll_all(api, dynamics, 3)[2]["downloadUrls"]


def test_completed_job_with_a_null_export_window(setup):
    _, api = setup(Fault(kind="null_export_window"), job_processing_polls=0)
    job_id = api.create_job()
    body, again = poll_all(api, job_id, 2)
    assert body["status"] == "COMPLETED"
    assert body["exportEndAt"] is None
    assert body["nextExportStartAt"] is None
    assert body["downloadUrls"]
    assert again["exportEndAt"] == again["nextExportStartAt"] > 0


def test_status_values_in_lowercase(setup):
    _, api = setup(Fault(kind="lowercase_status", times=None), job_processing_polls=1)
    job_id = api.create_job()
    assert [b["status"] for b in poll_all(api, job_id, 2)] == ["processing", "completed"]


@pytest.mark.parametrize(
    ("variant", "expected_type"),
    [(None, list), ("array", list), ("string", str), ("null", type(None)), ("number", int)],
)
def test_job_body_that_is_json_but_not_an_object(setup, variant, expected_type):
    _, api = setup(Fault(kind="non_object_body", variant=variant))
    job_id = api.create_job()
    with api.get(job_id) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "application/json"
        body = resp.json()
    assert isinstance(body, expected_type)
    if variant == "string":
        assert body == "PROCESSING"
    if variant == "number":
        assert body == job_id
    assert api.get_json(job_id)["jobId"] == job_id


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        (Fault(kind="download_urls_missing"), lambda b: b["downloadUrl"] is None),
        (Fault(kind="download_urls_missing", variant="empty"), lambda b: b["downloadUrl"] == ""),
        (Fault(kind="download_urls_missing", variant="absent"), lambda b: "downloadUrl" not in b),
        (Fault(kind="lowercase_status", after=2), lambda b: b["status"] == "completed"),
        (Fault(kind="non_object_body", after=2), lambda b: isinstance(b, list)),
    ],
    ids=["null", "empty", "absent", "lowercase", "array"],
)
def test_analytics_job_bodies_can_be_spoiled_too(make_sandbox, make_member, fault, check):
    sb = make_sandbox(faults=[fault])
    member = make_member(sb)
    job_id = member.create_job()
    bodies = []
    for _ in range(4):
        with member.get(job_id, EMEA_CONTRACT) as resp:
            bodies.append(resp.json())
    assert check(bodies[2])
    assert bodies[3]["status"] == "COMPLETED"
    assert bodies[3]["downloadUrl"]


# -- broken files -----------------------------------------------------------------------------


@pytest.mark.parametrize("instance", [DYNAMICS_INSTANCE, SFDC_INSTANCE])
def test_zero_byte_download_body(setup, instance):
    sb, api = setup(Fault(kind="empty_body"))
    job_id = api.create_job(instance)
    url = api.wait_completed(job_id, instance)["downloadUrls"][0]
    with api.download(url) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Length"] == "0"
        assert resp.content == b""
    with api.download(url) as resp:
        assert len(resp.content) > 100
    assert next(r for r in sb.requests if r.fault == "empty_body").bytes_sent == 0


@pytest.mark.parametrize("instance", [DYNAMICS_INSTANCE, SFDC_INSTANCE])
def test_download_with_cr_only_line_endings(setup, instance):
    sb, api = setup(
        Fault(kind="cr_line_endings", times=None),
        instances={
            DYNAMICS_INSTANCE: InstanceSpec(rows=400, files=1),
            SFDC_INSTANCE: InstanceSpec(rows=400, files=1, gzip=True),
        },
    )
    job_id = api.create_job(instance)
    with api.download(api.wait_completed(job_id, instance)["downloadUrls"][0]) as resp:
        content = resp.content
    if content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    header_end = content.index(b"\r")
    assert content[header_end + 1 : header_end + 2] != b"\n"
    assert content.count(b"\r\n") < 40  # only quoted line breaks inside values
    header, *records = parse(content)
    rows = [dict(zip(header, r, strict=True)) for r in records]
    assert rows == sb.expected_rows(job_id)


def test_download_with_an_unclosed_quote_early_in_the_file(setup):
    _, api = setup(
        Fault(kind="unclosed_quote"), instances={DYNAMICS_INSTANCE: InstanceSpec(rows=300, files=1)}
    )
    job_id = api.create_job()
    with api.download(api.wait_completed(job_id)["downloadUrls"][0]) as resp:
        content = resp.content
    header_line = content.split(b"\r\n", 1)[0] + b"\r\n"
    rest = content[len(header_line) :]
    assert rest.startswith(b'"')
    assert b'"' not in rest[1:]
    reader = csv.reader(io.StringIO(content.decode("utf-8-sig"), newline=""), strict=True)
    next(reader)
    with pytest.raises(csv.Error):
        list(reader)
    loose = parse(content)
    assert len(loose) == 2  # the header, then one field running to the end of the file
    assert len(loose[1][0]) > len(rest) / 2


@pytest.mark.parametrize("kind", ["cr_line_endings", "unclosed_quote", "empty_body"])
@pytest.mark.parametrize("contract", [EMEA_CONTRACT, AMERICAS_CONTRACT])
def test_analytics_downloads_break_the_same_ways(make_sandbox, make_member, kind, contract):
    sb = make_sandbox(faults=[Fault(kind=kind, endpoint="download")])
    member = make_member(sb)
    job_id = member.create_job(contract=contract)
    url = member.wait_done(job_id, contract)["downloadUrl"]
    with member.download(url) as resp:
        content = resp.content
    with member.download(url) as resp:
        clean = resp.content
    if clean[:2] == b"\x1f\x8b":
        clean = gzip.decompress(clean)
        content = gzip.decompress(content) if content else content
    expected = sb.expected_rows(job_id)
    if kind == "empty_body":
        assert content == b""
    elif kind == "cr_line_endings":
        assert b"\r\n" not in content
        assert content.replace(b"\r", b"\r\n") == clean
        header, *records = parse(content)
        assert [dict(zip(header, r, strict=True)) for r in records] == expected
    else:
        header_end = clean.index(b"\r\n") + 2
        assert content == clean[:header_end] + b'"' + clean[header_end:].replace(b'"', b"")
    assert len(expected) > 10


def test_unclosed_quote_transform_streams():
    endless = itertools.repeat(b'a,"b, c"\r\n' * 100)
    chunks = unclosed_quote(endless, at=25)
    first = next(chunks)
    assert first[:26] == b'a,"b, c"\r\na,"b, c"\r\na,"b,"'[:25] + b'"'
    assert b'"' not in first[26:]
    assert all(b'"' not in chunk for chunk in itertools.islice(chunks, 1000))
    assert b"".join(unclosed_quote([b"ab", b"cd"], at=4)) == b'abcd"'


def test_broken_big_files_stream_in_bounded_memory(setup):
    sb, api = setup(
        Fault(kind="unclosed_quote", times=None),
        stream_threshold_rows=1000,
        long_field_chars=0,
        instances={DYNAMICS_INSTANCE: InstanceSpec(rows=200_000, files=1)},
    )
    job_id = api.create_job()
    url = api.wait_completed(job_id)["downloadUrls"][0]
    next(sb.iter_expected_rows(job_id))  # builds the value pools every download shares
    received = 0
    tracemalloc.start()
    try:
        with api.download(url, stream=True) as resp:
            assert resp.headers["Transfer-Encoding"] == "chunked"
            for chunk in resp.iter_content(1 << 16):
                received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The working set (a few render blocks and chunks, about 10 MB) does not grow with the file.
    assert received > 40_000_000
    assert peak < 16_000_000


# -- stalls -----------------------------------------------------------------------------------


def test_stall_before_the_response_times_the_client_out_after_the_work_is_done(setup):
    sb, api = setup(Fault(kind="stall", endpoint="create", delay=2.0))
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.create(timeout=(5, 0.3)).close()
    assert len(sb.jobs) == 1  # the job exists although its 201 never arrived in time
    assert api.create_job() in sb.jobs


def test_a_stall_shorter_than_the_timeout_only_delays_the_answer(setup):
    sb, api = setup(Fault(kind="stall", endpoint="get", delay=0.2))
    job_id = api.create_job()
    assert api.get_json(job_id)["status"] == "PROCESSING"
    assert next(r for r in sb.requests if r.endpoint == "get").fault == "stall"


@pytest.mark.parametrize("threshold", [20_000, 10])
def test_stall_mid_body(setup, threshold):
    _, api = setup(
        Fault(kind="stall", variant="mid_body", endpoint="download", delay=2.0, after_bytes=1000),
        stream_threshold_rows=threshold,
    )
    job_id = api.create_job()
    url = api.wait_completed(job_id)["downloadUrls"][0]
    with api.download(url, stream=True, timeout=(5, 0.3)) as resp:
        assert resp.status_code == 200
        assert len(resp.raw.read(1000)) == 1000
        with pytest.raises(requests.exceptions.RequestException):  # the read timed out
            for _ in resp.iter_content(4096):
                pass
    with api.download(url) as resp:
        assert resp.content.startswith(b"\xef\xbb\xbf")


# -- token redirects --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [307, 308])
def test_token_redirect_records_whether_the_secret_followed(setup, status):
    sb, api = setup()
    api.create_job()
    sb.add_fault(Fault(kind="redirect", status=status, times=2))
    with api.fetch_token() as resp:  # requests follows 307/308 and re-sends the form
        assert resp.status_code == 200
        assert resp.history[0].status_code == status
        assert resp.history[0].headers["Location"] == (
            f"{sb.base_url}/oauth/v2/redirected/accessToken"
        )
    with api.session.post(
        sb.token_url,
        data={"grant_type": "client_credentials"},
        auth=("sandbox-client", "sandbox-secret"),
        allow_redirects=False,
        timeout=5,
    ) as resp:
        assert resp.status_code == status
    target = f"{sb.base_url}/oauth/v2/redirected/accessToken"
    with api.session.post(
        target, data={"grant_type": "client_credentials", "client_id": "x"}, timeout=5
    ) as resp:
        assert resp.status_code == 401
    records = [r for r in sb.requests if r.client_secret_sent is not None]
    assert [(r.endpoint, r.status, r.client_secret_sent, r.fault) for r in records[-4:]] == [
        ("token", status, True, "redirect"),
        ("token_redirected", 200, True, None),
        ("token", status, True, "redirect"),
        ("token_redirected", 401, False, None),
    ]
    others = [r for r in sb.requests if r.endpoint not in {"token", "token_redirected"}]
    assert others
    assert all(r.client_secret_sent is None for r in others)


def test_invalid_redirect_status_is_rejected():
    with pytest.raises(ValueError, match="redirect"):
        Fault(kind="redirect", status=200)


# -- Date headers -----------------------------------------------------------------------------


def test_date_headers_follow_the_sandbox_clock(setup, make_member):
    sb, api = setup()
    sb.clock.advance(10 * DAY)
    api.login()
    now = sb.clock.now()
    with api.create() as resp:
        created = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
        job_id = int(resp.headers["X-RestLi-Id"])
    assert created == pytest.approx(sb.jobs[job_id]["createdAt"] / 1000, abs=2)
    assert created == pytest.approx(now, abs=5)
    member = make_member(sb)
    responses = [
        api.fetch_token(),
        api.get(job_id),
        api.get(999),
        api.download(api.wait_completed(job_id)["downloadUrls"][0]),
        member.contracts(),
        member.authorize(),
        api.session.get(f"{sb.base_url}/nowhere", timeout=5),
    ]
    for resp in responses:
        with resp:
            date = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
            assert date == pytest.approx(sb.clock.now(), abs=5), resp.url
