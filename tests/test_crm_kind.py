"""The CRM Data Validation export kind: job bodies, the Date header, requests on the wire."""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import pytest
from loopback import Loopback, Reply

from tap_linkedin_crm.auth import StaticTokenProvider
from tap_linkedin_crm.columns import DEFAULT_COLUMN_TYPES
from tap_linkedin_crm.engine.state import CRM_LAYOUT, PartitionState
from tap_linkedin_crm.errors import MalformedResponseError, NotFoundError
from tap_linkedin_crm.jobs import ExportJob, JobPhase
from tap_linkedin_crm.kinds.base import ExportTask, FailureAction, Partition, Window
from tap_linkedin_crm.kinds.crm_validation import CrmValidationExports, parse_job
from tap_linkedin_crm.kinds.payload import date_header_ms
from tap_linkedin_crm.transport import LinkedInClient

URN = "urn:li:crmInstance:(SFDC,00D5e000000AbCdEAF)"
ENCODED_URN = "urn%3Ali%3AcrmInstance%3A%28SFDC%2C00D5e000000AbCdEAF%29"
OTHER = "urn:li:crmInstance:(DYNAMICS,362a3584-0d9b-44a1-a547-25de5cd95d08)"
DEFAULT_START = 1_790_000_000_000
GOOD = {
    "jobId": 148,
    "exportStartAt": 1538947151337,
    "exportEndAt": 1541539151570,
    "downloadUrls": ["https://www.linkedin.com/ambry/?x-li-ambry-ep=A", "https://b"],
    "nextExportStartAt": 1541539151570,
    "expireAt": 1541635625000,
    "status": "COMPLETED",
}


def kind_for(url: str = "https://api.example/v2", max_attempts: int = 3) -> CrmValidationExports:
    client = LinkedInClient(api_url=url, tokens=StaticTokenProvider("tok"), timeout=5)
    return CrmValidationExports(
        client,
        [URN, OTHER],
        column_types=DEFAULT_COLUMN_TYPES,
        default_start=DEFAULT_START,
        max_attempts=max_attempts,
    )


def task(kind: CrmValidationExports, start: int = 1_790_000_000_000) -> ExportTask:
    return ExportTask(partition=kind.partitions()[0], window=Window(start))


# parse_job ------------------------------------------------------------------------------------


def test_given_documented_body_when_parsed_then_all_seven_fields_kept() -> None:
    job = parse_job(GOOD, 148)
    assert job == ExportJob(
        job_id=148,
        status="COMPLETED",
        download_urls=("https://www.linkedin.com/ambry/?x-li-ambry-ep=A", "https://b"),
        start_at=1538947151337,
        end_at=1541539151570,
        next_start_at=1541539151570,
        expire_at=1541635625000,
    )
    assert job.phase is JobPhase.COMPLETED


def test_given_running_body_when_parsed_then_optional_fields_none() -> None:
    job = parse_job({"status": "PROCESSING", "exportStartAt": 5}, 7)
    assert job == ExportJob(job_id=7, status="PROCESSING", start_at=5)


@pytest.mark.parametrize(
    ("status", "expected"),
    [("completed", "COMPLETED"), (" Processing ", "PROCESSING"), ("failed_x", "FAILED_X")],
)
def test_given_status_in_other_case_when_parsed_then_normalized(status: str, expected: str) -> None:
    assert parse_job({"status": status}, 1).status == expected


@pytest.mark.parametrize("status", [None, "", "   ", 3, ["COMPLETED"]])
def test_given_status_missing_or_blank_when_parsed_then_malformed(status: object) -> None:
    body = {"jobId": 1} if status is None else {"jobId": 1, "status": status}
    with pytest.raises(MalformedResponseError, match="has no status") as info:
        parse_job(body, 1)
    assert "export job 1" in str(info.value)


@pytest.mark.parametrize("urls", [None, [], "absent"])
def test_given_download_urls_null_absent_or_empty_when_parsed_then_no_urls(urls: object) -> None:
    body: dict[str, t.Any] = {"status": "COMPLETED"}
    if urls != "absent":
        body["downloadUrls"] = urls
    assert parse_job(body, 1).download_urls == ()


@pytest.mark.parametrize("urls", ["https://x", {"0": "https://x"}, ["https://x", 3], [""], [None]])
def test_given_download_urls_not_a_list_of_urls_when_parsed_then_malformed(urls: object) -> None:
    with pytest.raises(MalformedResponseError, match="downloadUrls is not a list of URLs"):
        parse_job({"status": "COMPLETED", "downloadUrls": urls}, 1)


@pytest.mark.parametrize("name", ["downloadUrl", "downloadURL", "downloadURLs"])
@pytest.mark.parametrize("several", [False, True])
def test_given_urls_under_another_spelling_when_parsed_then_read(name: str, several: bool) -> None:
    # LinkedIn's tutorial speaks of "the downloadURL field"; the analytics API has one
    # `downloadUrl`. Read as "no URLs", two such jobs made the window count as empty: the
    # bookmark moved past rows never read.
    urls = ["https://a", "https://b"] if several else ["https://a"]
    body = {"status": "COMPLETED", name: urls if several else urls[0]}
    assert parse_job(body, 1).download_urls == tuple(urls)


@pytest.mark.parametrize(
    "extra",
    [
        {"downloadUrl": {"href": "https://a"}},
        {"files": [{"url": "https://a"}]},
        {"downloadLinks": ["https://a"]},
        {"resultUrl": "https://a"},
    ],
)
def test_given_files_in_an_unknown_form_when_parsed_then_malformed_not_empty(
    extra: dict[str, t.Any],
) -> None:
    with pytest.raises(MalformedResponseError, match=next(iter(extra))):
        parse_job({"status": "COMPLETED", "downloadUrls": [], **extra}, 1)


@pytest.mark.parametrize(
    "extra",
    [
        {"fileFormat": "CSV"},
        {"fileType": "text/csv"},
        {"fileFormat": "csv.gz"},
        {"fileExtension": ".CSV"},
        {"fileCount": "0"},
        {"linkedInCrmInstance": "urn:li:crmInstance:(DYNAMICS,1)"},
        {"downloadUrlsExpireAt": "2026-12-01T00:00:00Z"},
        {"fileInfo": {"format": "CSV", "compression": "gzip"}},
    ],
)
def test_given_no_urls_and_a_harmless_file_like_field_when_parsed_then_no_urls(
    extra: dict[str, t.Any],
) -> None:
    # A field whose name mentions files or links but whose value names no file (a format, a
    # count, a URN): taken as "the files may be there", a window without rows failed its
    # instance on every run.
    body = {"status": "COMPLETED", "downloadUrls": [], **extra}
    assert parse_job(body, 1).download_urls == ()


@pytest.mark.parametrize(
    "extra",
    [{"fileName": "export_148.csv.gz"}, {"filePath": "/ambry/148"}, {"fileList": [["s3://b/k"]]}],
)
def test_given_no_urls_and_a_field_naming_a_file_when_parsed_then_malformed(
    extra: dict[str, t.Any],
) -> None:
    with pytest.raises(MalformedResponseError, match=next(iter(extra))):
        parse_job({"status": "COMPLETED", "downloadUrls": [], **extra}, 1)


def test_given_a_running_job_with_link_like_fields_when_parsed_then_no_urls() -> None:
    # Files are looked for under other names only once the job says COMPLETED: a running job's
    # body may well carry a status link.
    body = {"status": "PROCESSING", "downloadUrls": None, "statusLink": "https://a"}
    assert parse_job(body, 1).download_urls == ()


def test_given_no_urls_and_unrelated_fields_when_parsed_then_no_urls() -> None:
    body = {
        "status": "COMPLETED",
        "downloadUrls": None,
        "meta": {"a": 1},
        "profileUrl": None,
        "fileCount": 0,
        "downloadUrlsExpireAt": 5,
    }
    assert parse_job(body, 1).download_urls == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1541539151570", 1541539151570), (" 12 ", 12), ("-5", -5), (3.0, 3), (0, 0)],
)
def test_given_numeric_string_or_whole_float_when_parsed_then_integer(
    value: object, expected: int
) -> None:
    assert parse_job({"status": "COMPLETED", "exportEndAt": value}, 1).end_at == expected


@pytest.mark.parametrize("field", ["exportStartAt", "exportEndAt", "nextExportStartAt", "expireAt"])
@pytest.mark.parametrize(
    "value",
    [
        1541539151,  # epoch seconds: as milliseconds, 1970-01-18
        "1541539151",
        "2018-11-06T21:19:11Z",
        "2018-11-06T21:19:11.000+00:00",
        "2018-11-06 22:19:11+01:00",
        "2018-11-06T21:19:11",  # no offset: UTC
    ],
)
def test_given_time_in_seconds_or_iso_text_when_parsed_then_epoch_ms(
    field: str, value: object
) -> None:
    # Seconds were kept as milliseconds (a bookmark in 1970, so every later run re-exported the
    # whole 30 days); ISO text failed the instance on every run.
    job = parse_job({"status": "COMPLETED", field: value}, 1)
    got = {
        "exportStartAt": job.start_at,
        "exportEndAt": job.end_at,
        "nextExportStartAt": job.next_start_at,
        "expireAt": job.expire_at,
    }[field]
    assert got == 1541539151000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2039-03-08T19:46:13.411Z", 2183226373411),
        ("2004-03-15T07:55:47.472Z", 1079337347472),
        ("2004-03-15T08:55:47.472999+01:00", 1079337347472),  # microseconds: floored
    ],
)
def test_given_iso_text_with_milliseconds_when_parsed_then_exact_milliseconds(
    value: str, expected: int
) -> None:
    # Read through a float (`timestamp() * 1000`), these came out one millisecond early.
    assert parse_job({"status": "COMPLETED", "nextExportStartAt": value}, 1).next_start_at == (
        expected
    )


def test_given_job_id_as_a_urn_when_parsed_then_its_number() -> None:
    body = {"status": "PROCESSING", "jobId": "urn:li:crmDataValidationExportJob:148"}
    assert parse_job(body, 148).job_id == 148


@pytest.mark.parametrize("field", ["jobId", "exportStartAt", "exportEndAt", "nextExportStartAt"])
@pytest.mark.parametrize("value", [1.5, "12abc", "1e3", "", "--5", "\u00b2", [1], {"v": 1}])
def test_given_field_not_a_whole_number_when_parsed_then_malformed_naming_it(
    field: str, value: object
) -> None:
    with pytest.raises(MalformedResponseError, match=rf"{field} is .*not a number"):
        parse_job({"status": "COMPLETED", field: value}, 1)


@pytest.mark.parametrize("field", ["jobId", "exportStartAt", "expireAt"])
def test_given_boolean_field_when_parsed_then_malformed_naming_it(field: str) -> None:
    with pytest.raises(MalformedResponseError, match=f"{field} is a boolean"):
        parse_job({"status": "COMPLETED", field: True}, 1)


def test_given_id_under_another_name_or_absent_when_parsed_then_found_or_the_asked_one() -> None:
    assert parse_job({"status": "PROCESSING", "id": "99"}, 1).job_id == 99
    assert parse_job({"status": "PROCESSING"}, 5).job_id == 5


# Date header --------------------------------------------------------------------------------


class Headers:
    def __init__(self, **headers: str) -> None:
        self.headers = headers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mon, 30 Nov 2026 08:05:25 GMT", 1796025925000),
        ("Mon, 30 Nov 2026 09:05:25 +0100", 1796025925000),
        ("Mon, 30 Nov 2026 08:05:25 -0000", None),  # no zone: not guessed
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_given_date_header_when_read_then_epoch_ms_or_none(
    value: str | None, expected: int | None
) -> None:
    response = Headers() if value is None else Headers(Date=value)
    assert date_header_ms(t.cast("t.Any", response)) == expected
    if expected is not None:
        moment = dt.datetime(2026, 11, 30, 8, 5, 25, tzinfo=dt.UTC)
        assert expected == int(moment.timestamp() * 1000)


# Requests on the wire -----------------------------------------------------------------------


def test_given_create_when_sent_then_post_with_encoded_urn_body_and_headers() -> None:
    reply = Reply(
        201,
        headers={"X-RestLi-Id": "42", "Date": "Mon, 30 Nov 2026 08:05:25 GMT"},
    )
    with Loopback([reply]) as server:
        kind = kind_for(f"{server.url}/v2")
        created = kind.create_job(task(kind, start=1_790_000_000_123))
    assert (created.job_id, created.created_at) == (42, 1796025925000)
    seen = server.seen[0]
    assert seen.method == "POST"
    assert seen.target == f"/v2/crmDataValidationExportJobs?crmInstanceId={ENCODED_URN}"
    assert json.loads(seen.body) == {"exportStartAt": 1_790_000_000_123}
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Authorization"] == "Bearer tok"
    assert seen.headers["X-Restli-Protocol-Version"] == "2.0.0"


@pytest.mark.parametrize(
    "location",
    [
        "/crmDataValidationExportJobs/77",
        "https://api.example/v2/x/77/",
        # A Location that can be fetched as it is: GET needs the instance in the query.
        "/crmDataValidationExportJobs/77?crmInstanceId=urn%3Ali%3AcrmInstance%3A%28SFDC%2Cx%29",
    ],
)
def test_given_only_a_location_header_when_created_then_id_from_it(location: str) -> None:
    with Loopback([Reply(201, headers={"Location": location})]) as server:
        kind = kind_for(f"{server.url}/v2")
        created = kind.create_job(task(kind))
    assert (created.job_id, created.created_at) == (77, None)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-RestLi-Id": '"77"'},
        {"X-RestLi-Id": " 77 "},
        {"X-RestLi-Id": "urn:li:crmDataValidationExportJob:77"},
        {"X-RestLi-Id": "urn%3Ali%3AcrmDataValidationExportJob%3A77"},
        # An id that is not a number, but a Location that names the job: the Location.
        {"X-RestLi-Id": "job-77", "Location": "/crmDataValidationExportJobs/77"},
    ],
)
def test_given_an_id_in_another_form_when_created_then_read(headers: dict[str, str]) -> None:
    with Loopback([Reply(201, headers=headers)]) as server:
        kind = kind_for(f"{server.url}/v2")
        assert kind.create_job(task(kind)).job_id == 77


@pytest.mark.parametrize(
    "headers", [{}, {"X-RestLi-Id": "abc"}, {"Location": "/crmDataValidationExportJobs/"}]
)
def test_given_no_usable_id_when_created_then_malformed_naming_the_instance(
    headers: dict[str, str],
) -> None:
    with Loopback([Reply(201, headers=headers)]) as server:
        kind = kind_for(f"{server.url}/v2")
        with pytest.raises(MalformedResponseError, match="no usable job id") as info:
            kind.create_job(task(kind))
    assert URN in str(info.value)
    assert info.value.status == 201


def test_given_get_when_sent_then_job_path_with_encoded_urn_and_body_parsed() -> None:
    body = json.dumps({**GOOD, "jobId": 42, "status": "completed"}).encode()
    with Loopback([Reply(200, body)]) as server:
        kind = kind_for(f"{server.url}/v2")
        job = kind.get_job(task(kind), 42)
    assert server.seen[0].method == "GET"
    assert (
        server.seen[0].target == f"/v2/crmDataValidationExportJobs/42?crmInstanceId={ENCODED_URN}"
    )
    assert (job.job_id, job.status, len(job.download_urls)) == (42, "COMPLETED", 2)


def test_given_download_paths_when_read_then_on_the_api_host() -> None:
    # As the analytics API's downloadUrl may be: a path on the API's host. Refused as "not
    # https", the instance failed on every run.
    urls = ["/ambry/1?sig=a", "https://media.example/2", "//other.example/3"]
    body = json.dumps({**GOOD, "jobId": 42, "downloadUrls": urls}).encode()
    with Loopback([Reply(200, body)]) as server:
        kind = kind_for(f"{server.url}/v2")
        job = kind.get_job(task(kind), 42)
    scheme = server.url.split(":", 1)[0]
    assert job.download_urls == (
        f"{server.url}/ambry/1?sig=a",
        "https://media.example/2",
        f"{scheme}://other.example/3",
    )


def test_given_gone_job_when_read_then_not_found_error() -> None:
    with Loopback([Reply(404, b'{"message": "Export job 42 not found"}')]) as server:
        kind = kind_for(f"{server.url}/v2")
        with pytest.raises(NotFoundError, match="read export job 42 of CRM instance"):
            kind.get_job(task(kind), 42)


# Planning and records -------------------------------------------------------------------------


def test_given_instances_when_partitioned_then_one_each_in_configured_order() -> None:
    parts = kind_for().partitions()
    assert parts == [
        Partition(context={"crmInstanceId": URN}, label=f"CRM instance {URN}", key=URN),
        Partition(context={"crmInstanceId": OTHER}, label=f"CRM instance {OTHER}", key=OTHER),
    ]


def test_given_state_when_windows_planned_then_in_flight_else_bookmark_else_default() -> None:
    kind = kind_for()
    fresh = PartitionState({"context": {}}, CRM_LAYOUT, "x")
    assert kind.plan_windows(fresh) == [Window(DEFAULT_START)]
    booked = PartitionState({"context": {}, "nextExportStartAt": 5}, CRM_LAYOUT, "x")
    assert kind.plan_windows(booked) == [Window(5)]
    flying = PartitionState(
        {"context": {}, "nextExportStartAt": 5, "inFlightJob": {"jobId": 9, "exportStartAt": 3}},
        CRM_LAYOUT,
        "x",
    )
    assert kind.plan_windows(flying) == [Window(3)]


def test_given_attempts_when_job_failed_then_retry_until_the_last() -> None:
    kind = kind_for(max_attempts=2)
    failed = ExportJob(job_id=1, status="FAILED_DUE_TO_INTERNAL_ERROR")
    assert kind.failure_action(task(kind), failed, 1) is FailureAction.RETRY
    assert kind.failure_action(task(kind), failed, 2) is FailureAction.FAIL


def test_given_completed_job_when_recorded_then_provenance_and_exports_fields() -> None:
    kind = kind_for()
    job = parse_job(GOOD, 148)
    assert kind.provenance(task(kind), job, 1) == {
        "crmInstanceId": URN,
        "jobId": 148,
        "exportStartAt": 1538947151337,
        "exportEndAt": 1541539151570,
        "fileIndex": 1,
    }
    record = kind.exports_record(task(kind), job, {"fileCount": 2})
    assert record["nextExportStartAt"] == 1541539151570
    assert record["status"] == "COMPLETED"
    assert (record["jobId"], record["crmInstanceId"], record["fileCount"]) == (148, URN, 2)
