"""Fault matrix: the real `tap-linkedin-crm` process against the sandbox, one case per fault.

Every case runs two CRM instances: A (plain CSV, 3 files, or one file of many MiB where the case
says so) takes the fault unless said otherwise, B (gzip, 2 files) must be synced whatever happens
to A (one bad instance never stops the others).
After each run: every generated row of the job whose rows were emitted came out exactly once, in
order, with its values, and the bookmark moved to that job's `nextExportStartAt`; or, where the
fault cannot be survived, the bookmark did not move, the exit status is non-zero and the error
names the instance. No client secret, access token or signed URL is in stdout, stderr or state.
The outcome of each case, with its API calls, goes into a table printed at the end of the module
(and written to `fault-matrix.md` in pytest's base temp directory).

Every case checks that its fault really fired (`Sandbox.fired_faults`, the sandbox's log of the
faults it injected), and the last test checks that the matrix as a whole made every sandbox fault
kind fire, in every form the tap must tell apart, so a case that no longer provokes its fault
cannot pass unnoticed. The mid-download cases cut files many 1 MiB reads long, so that the retry
must skip rows already emitted; the stall cases only pass if `request_timeout` ends the wait.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import typing as t
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from faultkit import (
    CLIENT_ID,
    CLIENT_SECRET,
    EXPORTS,
    RECORDS,
    assert_no_secrets,
    bookmark,
    check_rows,
    emitted_jobs,
    in_flight,
    tap_env,
)
from process_runs import run_process

from tap_linkedin_crm.auth import StaticTokenProvider
from tap_linkedin_crm.errors import APIError
from tap_linkedin_crm.sandbox import (
    DYNAMICS_INSTANCE,
    EMEA_CONTRACT,
    FAULT_KINDS,
    SFDC_INSTANCE,
    Fault,
    InstanceSpec,
    RequestRecord,
    Sandbox,
    Scenario,
)
from tap_linkedin_crm.transport import LinkedInClient

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.conftest import TapRun

A = DYNAMICS_INSTANCE
B = SFDC_INSTANCE
NAMES = {A: "A", B: "B"}
RunTap = t.Callable[..., "TapRun"]
#: Rows and files of the two instances.
A_ROWS, A_FILES = 300, 3
B_ROWS, B_FILES = 120, 2
#: Fast retries for the tests (production default: 1 s); the code path is the same.
RETRY_DELAY = 0.05
#: For jobs that never finish: a few polls, then the timeout.
JOB_TIMEOUT = 0.4
#: Inside the sandbox's 30-day look-back even 8 days later, so a window is never clamped and a
#: replacement job's window can be compared with the original's.
START_DATE = (dt.datetime.now(tz=dt.UTC) - dt.timedelta(days=5)).isoformat()
#: A's file for the mid-download cases: 25,000 rows, about 6 MiB, so it takes six 1 MiB reads,
#: and a cut after `CUT_AFTER_BYTES` lands after thousands of rows were emitted.
BIG_A = {"rows": 25_000, "files": 1}
CUT_AFTER_BYTES = 3_500_000
#: Rows a retry must pass over at least after such a cut: those of the first 2 MiB (~240 bytes
#: a row); the reads before the cut hold more than 3 MiB of rows.
MIN_ROWS_SKIPPED = 8_000
#: A's one file for the unreadable-file cases: about 48 MB, far beyond what the tap may read.
HUGE_A = {"rows": 200_000, "files": 1}
#: Timeout for the stall cases; the stalls last far longer, so only the timeout ends the wait.
STALL_TIMEOUT = 1.0
STALL_SECONDS = 3.0

TABLE: list[dict[str, t.Any]] = []
#: Case id -> (kind, variant) of every fault the sandbox injected during it (its fired log).
FIRED: dict[str, set[tuple[str, str | None]]] = {}
#: Kinds whose forms the tap must each survive; the coverage check wants every form fired.
VARIANT_KINDS = {
    "download_urls_missing": ("null", "absent", "empty"),
    "non_object_body": ("array", "string", "null", "number"),
    "stall": ("before_response", "mid_body"),
    "redirect": ("307", "308"),
}
#: Tests besides `test_fault` that log fired faults: their run id and the fault they cover.
OTHER_RUNS = {
    "job_never_finishes-resume": "job_never_finishes",
    "job-gone-on-resume": "job gone (404)",
    "forbidden-on-resume": "forbidden",
    "download_urls_missing-every-run": "download_urls_missing",
    "null_export_window-after-a-day": "null_export_window",
    "row_count_mismatch-then-resume": "row_count_mismatch",
    "authorization_denied": "authorization_denied",
    "redirect-code-exchange": "redirect",
    "tmpdir-full": "(local) TMPDIR full",
}


@dataclass
class Case:
    """One fault scenario and what must come of it."""

    id: str
    fault: str  # the sandbox fault kind (or a label) covered, for the table
    faults: list[Fault] = field(default_factory=list)
    scenario: dict[str, t.Any] = field(default_factory=dict)
    a_spec: dict[str, t.Any] = field(default_factory=dict)
    config: dict[str, t.Any] = field(default_factory=dict)
    failed: frozenset[str] = frozenset()  # instances that must fail (bookmark unmoved)
    maybe_failed: frozenset[str] = frozenset()  # instances allowed to fail (global faults)
    error_words: tuple[str, ...] = ()  # must be in stderr when something failed
    static_token: bool = False
    env: dict[str, str] = field(default_factory=dict)  # environment of the tap process
    check: Callable[[Sandbox, TapRun], str | None] | None = None  # extra checks; a note
    # instances whose window must be taken as empty (no rows, a summary saying why)
    empty: frozenset[str] = frozenset()
    # checks an instance's bookmark instead of "the emitted job's nextExportStartAt"
    bookmark_rule: Callable[[Sandbox, TapRun, str, int], None] | None = None

    @property
    def fails(self) -> bool:
        return bool(self.failed)


# Extra checks ---------------------------------------------------------------------------------


def forget_requests(sb: Sandbox) -> None:
    """Empty the request log once the last request is logged (it is, just after the answer)."""
    assert sb.requests is not None  # waits for requests still being logged
    sb.clear_requests()


def endpoint_calls(sb: Sandbox, endpoint: str, urn: str | None = None) -> list[RequestRecord]:
    return [r for r in sb.requests if r.endpoint == endpoint and (urn is None or r.instance == urn)]


def faulted(sb: Sandbox, kind: str) -> list[RequestRecord]:
    return [r for r in sb.requests if r.fault and kind in r.fault.split(",")]


def fired(kind: str, times: int = 1) -> Callable[[Sandbox, TapRun], str | None]:
    """The sandbox injected the fault `times` times (its fired-fault log says so)."""

    def check(sb: Sandbox, run: TapRun) -> str | None:
        count = sum(1 for f in sb.fired_faults if f.kind == kind)
        assert count == times, f"fault {kind} fired {count}x"
        return None

    return check


def fired_per_poll(kind: str, tries: int) -> Callable[[Sandbox, TapRun], str | None]:
    """The fault fired `tries` times for each of several polls (it never stopped a poll early)."""

    def check(sb: Sandbox, run: TapRun) -> str | None:
        count = sum(1 for f in sb.fired_faults if f.kind == kind)
        assert count >= 2 * tries, f"fault {kind} fired {count}x: the job was not polled again"
        assert count % tries == 0, f"fault {kind} fired {count}x, not {tries} per poll"
        return None

    return check


def posts_for_a(count: int) -> Callable[[Sandbox, TapRun], str | None]:
    def check(sb: Sandbox, run: TapRun) -> str | None:
        assert len(endpoint_calls(sb, "create", A)) == count
        return None

    return check


def retry_after_honoured(sb: Sandbox, run: TapRun) -> str | None:
    assert len(faulted(sb, "rate_limit")) == 1
    assert "retrying in 1.00 s" in run.stderr  # Retry-After: 1, not the 0.05 s backoff
    return None


def token_renewed_once(sb: Sandbox, run: TapRun) -> str | None:
    assert len(faulted(sb, "token_expired")) == 1
    assert len(endpoint_calls(sb, "token")) == 2  # the first token, and one renewal
    return None


def static_token_refused(sb: Sandbox, run: TapRun) -> str | None:
    assert not endpoint_calls(sb, "token")  # nothing to renew with
    assert "client_id and client_secret" in run.stderr
    return None


def quota_not_hammered(sb: Sandbox, run: TapRun) -> str | None:
    hits = faulted(sb, "rate_limit")
    # Three daily-quota answers stop every API call (one more may have been on the wire).
    assert 3 <= len(hits) <= 4, len(hits)
    for urn in (A, B):
        job = in_flight(run.final_state, urn)
        assert job is not None, "a quota stop must keep the in-flight job for the next run"
    return f"{len(hits)} quota 429s in all"


def all_attempts_failed(sb: Sandbox, run: TapRun) -> str | None:
    a_jobs = sorted(j for j, info in sb.jobs.items() if info["instance"] == A)
    assert len(a_jobs) == 3
    # The next run resumes (and, seeing it failed, replaces) the last job, not the first.
    assert in_flight(run.final_state, A)["jobId"] == a_jobs[-1]
    return "inFlightJob = last attempt"


def drift_kept(sb: Sandbox, run: TapRun) -> str | None:
    rows = [r for r in run.records(RECORDS) if r["crmInstanceId"] == A]
    assert any("territory" in (r.get("extraColumns") or {}) for r in rows)
    assert "not declared in column_types" in run.stderr
    return None


def forbidden_download_refreshes(sb: Sandbox, run: TapRun) -> str | None:
    assert len(faulted(sb, "forbidden")) == 1
    assert "fetched fresh download URLs" in run.stderr
    return None


def download_auth_only_to_api_origin(sb: Sandbox, run: TapRun) -> str | None:
    downloads = endpoint_calls(sb, "download")
    api = [r for r in sb.requests if r.endpoint in {"create", "get"}]
    assert downloads
    assert not any(r.authorized for r in downloads)
    assert all(r.authorized for r in api)
    return "no Authorization on downloads from another host"


def job_replaced_same_window(sb: Sandbox, run: TapRun) -> str | None:
    a_jobs = sorted(j for j, info in sb.jobs.items() if info["instance"] == A)
    assert len(a_jobs) == 2
    old, new = (sb.jobs[j] for j in a_jobs)
    assert new["exportStartAt"] == old["exportStartAt"]
    return "replacement job, same window"


def all_of(
    *checks: Callable[[Sandbox, TapRun], str | None],
) -> Callable[[Sandbox, TapRun], str | None]:
    def check(sb: Sandbox, run: TapRun) -> str | None:
        notes = [note for c in checks if (note := c(sb, run))]
        return "; ".join(notes) or None

    return check


def rows_skipped_on_retry(sb: Sandbox, run: TapRun) -> str | None:
    """The cut came after many rows: the retry passed over them (none emitted twice)."""
    skipped = [int(n) - 1 for n in re.findall(r"retrying from row (\d+)", run.stderr)]
    assert skipped, "no download was retried"
    assert max(skipped) >= MIN_ROWS_SKIPPED, f"the retries skipped only {skipped} rows"
    return f"retry skipped {max(skipped):,} rows"


def timed_out(words: str) -> Callable[[Sandbox, TapRun], str | None]:
    """`request_timeout` ended the wait (the stall lasts far longer), and the call was retried."""

    def check(sb: Sandbox, run: TapRun) -> str | None:
        assert words in run.stderr, (
            f"{words!r} not in the log: request_timeout did not end the wait"
        )
        return "request_timeout ended the wait, retried"

    return check


def bookmark_at_creation_time(sb: Sandbox, run: TapRun, urn: str, job_id: int) -> None:
    """Without nextExportStartAt and exportEndAt, the bookmark is the job's `Date` header."""
    job = sb.jobs[job_id]
    value = bookmark(run.final_state, urn)
    assert value is not None
    # The Date header has whole seconds, and is read as the answer is sent.
    assert job["createdAt"] // 1000 * 1000 <= value <= job["createdAt"] + 1000, (value, job)
    assert value > job["exportStartAt"]
    assert "from the job's creation time" in run.stderr


def statuses_understood(sb: Sandbox, run: TapRun) -> str | None:
    assert len(faulted(sb, "lowercase_status")) >= 2
    assert "undocumented status" not in run.stderr
    return "no warning"


def job_kept_in_state(sb: Sandbox, run: TapRun) -> str | None:
    job = in_flight(run.final_state, A)
    assert job is not None, "the job was not kept for the next run"
    return f"inFlightJob {job['jobId']} kept"


def token_redirect_not_followed(sb: Sandbox, run: TapRun) -> str | None:
    token_posts = endpoint_calls(sb, "token")
    assert token_posts
    assert all(r.status in {307, 308} for r in token_posts)
    assert not endpoint_calls(sb, "token_redirected"), "the redirect was followed"
    return "not followed: client_secret never sent to the target"


def refused_at_the_first_record(sb: Sandbox, run: TapRun) -> str | None:
    """The ~48 MB file was refused at its first record, not read on, and not downloaded again
    (tests/test_csv_decoding.py measures the memory of such files: 300 MB, peak RSS bounded)."""
    assert len(endpoint_calls(sb, "download", A)) == 1  # malformed: a retry would not help
    errors = [
        line for line in run.stderr.splitlines() if "is not valid CSV" in line or "field" in line
    ]
    assert any("the header" in line or "data row 1 " in line for line in errors), errors
    return "refused at its first record, not retried"


# The matrix -----------------------------------------------------------------------------------

CASES = [
    Case(
        "rate_limit-retry_after",
        "rate_limit",
        [
            Fault(
                "rate_limit",
                endpoint="get",
                instance=A,
                retry_after=1,
                message="Resource level throttle APPLICATION MINUTE limit reached.",
            )
        ],
        check=retry_after_honoured,
    ),
    Case(
        "rate_limit-daily_quota",
        "rate_limit",
        [Fault("rate_limit", endpoint="get", times=None)],
        failed=frozenset({A, B}),
        error_words=("daily API quota", "midnight UTC"),
        check=quota_not_hammered,
    ),
    Case(
        "rate_limit-token_endpoint",
        "rate_limit",
        [Fault("rate_limit", endpoint="token", retry_after=1, message="slow down")],
        check=fired("rate_limit"),
    ),
    Case(
        "error-500-create",
        "error",
        [Fault("error", endpoint="create", instance=A, status=500, times=2)],
        check=fired("error", 2),
    ),
    Case(
        "error-502-get",
        "error",
        [Fault("error", endpoint="get", instance=A, status=502, times=2)],
        check=fired("error", 2),
    ),
    Case(
        "error-503-download",
        "error",
        [Fault("error", endpoint="download", instance=A, status=503, times=2)],
        check=fired("error", 2),
    ),
    Case(
        "error-500-token",
        "error",
        [Fault("error", endpoint="token", status=500, times=2)],
        check=fired("error", 2),
    ),
    Case(
        # Each poll makes 3 tries (request_max_retries 2); the job is polled again until
        # job_timeout, then its instance fails naming the cause.
        "error-500-persistent",
        "error",
        [Fault("error", endpoint="get", instance=A, status=500, times=None)],
        config={"request_max_retries": 2, "request_retry_delay": 0.05, "job_timeout": 1.5},
        failed=frozenset({A}),
        error_words=("HTTP 500 after 3 tries", "job_timeout"),
        check=fired_per_poll("error", 3),
    ),
    Case(
        "slow-download-timeout",
        "slow",
        [Fault("slow", endpoint="download", instance=A, delay=1.0)],
        config={"request_timeout": 0.5},
        check=all_of(fired("slow"), timed_out("within 0.5 s (request_timeout)")),
    ),
    Case(
        "stall-get",
        "stall",
        [Fault("stall", endpoint="get", instance=A, delay=STALL_SECONDS)],
        config={"request_timeout": STALL_TIMEOUT},
        check=all_of(fired("stall"), timed_out("within 1 s (request_timeout)")),
    ),
    Case(
        "stall-mid-download",
        "stall",
        [
            Fault(
                "stall",
                endpoint="download",
                instance=A,
                variant="mid_body",
                delay=STALL_SECONDS,
                after_bytes=5000,
            )
        ],
        config={"request_timeout": STALL_TIMEOUT},
        check=all_of(
            fired("stall"), timed_out("(no data within request_timeout); retrying from row 1.")
        ),
    ),
    Case(
        "drop-create",
        "drop",
        [Fault("drop", endpoint="create", instance=A)],
        # The dropped POST created a job the tap never heard of; the retry made another.
        check=posts_for_a(2),
    ),
    Case(
        "drop-get",
        "drop",
        [Fault("drop", endpoint="get", instance=A)],
        check=fired("drop"),
    ),
    Case(
        "drop-mid-download",
        "drop",
        [Fault("drop", endpoint="download", instance=A, after_bytes=CUT_AFTER_BYTES)],
        scenario={"stream_threshold_rows": 100_000},  # sent with Content-Length
        a_spec=BIG_A,
        check=all_of(fired("drop"), rows_skipped_on_retry),
    ),
    Case(
        "drop-mid-download-chunked",
        "drop",
        [Fault("drop", endpoint="download", instance=A, after_bytes=CUT_AFTER_BYTES)],
        scenario={"stream_threshold_rows": 10},
        a_spec=BIG_A,
        check=all_of(fired("drop"), rows_skipped_on_retry),
    ),
    Case(
        "truncate-download",
        "truncate",
        [Fault("truncate", endpoint="download", instance=A, after_bytes=CUT_AFTER_BYTES)],
        scenario={"stream_threshold_rows": 10},
        a_spec=BIG_A,
        check=all_of(fired("truncate"), rows_skipped_on_retry),
    ),
    Case(
        "truncate-get",
        "truncate",
        [Fault("truncate", endpoint="get", instance=A, after_bytes=20)],
        check=fired("truncate"),
    ),
    Case(
        "corrupt_gzip",
        "corrupt_gzip",
        [Fault("corrupt_gzip", instance=B, after=1)],
        check=fired("corrupt_gzip"),
    ),
    Case(
        "job_failed-1x",
        "job_failed",
        [Fault("job_failed", instance=A, times=1)],
        check=posts_for_a(2),
    ),
    Case(
        "job_failed-3x",
        "job_failed",
        [Fault("job_failed", instance=A, times=3)],
        failed=frozenset({A}),
        error_words=("job_max_attempts", "FAILED_DUE_TO_INTERNAL_ERROR"),
        check=all_attempts_failed,
    ),
    Case(
        "job_never_finishes",
        "job_never_finishes",
        [Fault("job_never_finishes", instance=A)],
        config={"job_timeout": JOB_TIMEOUT},
        failed=frozenset({A}),
        error_words=("job_timeout", "the next run resumes this job"),
        check=lambda sb, run: (
            f"inFlightJob {in_flight(run.final_state, A)['jobId']} kept"
            if in_flight(run.final_state, A)
            else pytest.fail("the timed-out job was not kept in state")
        ),
    ),
    Case(
        "url_expired",
        "url_expired",
        [Fault("url_expired", instance=A, after=1)],
        check=fired("url_expired"),
    ),
    Case(
        "url_expires_mid_download",
        "url_expires_mid_download",
        [Fault("url_expires_mid_download", instance=A, after_bytes=CUT_AFTER_BYTES)],
        a_spec=BIG_A,
        check=all_of(fired("url_expires_mid_download"), rows_skipped_on_retry),
    ),
    Case(
        "url_expired-job_gone",
        "url_expired",
        # The download URL is refused, and the job is gone (404) when fetched for fresh URLs.
        [
            Fault("url_expired", instance=A),
            Fault("error", endpoint="get", instance=A, status=404, after=2),
        ],
        check=job_replaced_same_window,
    ),
    Case(
        "token_expired-client_credentials",
        "token_expired",
        [Fault("token_expired", endpoint="get", instance=A, after=1)],
        check=token_renewed_once,
    ),
    Case(
        "token_expired-static_token",
        "token_expired",
        [Fault("token_expired", endpoint="get", instance=A, after=1)],
        static_token=True,
        failed=frozenset({A}),
        # The token is shared: B fails too if it still needed the API after the expiry.
        maybe_failed=frozenset({B}),
        error_words=("EXPIRED_ACCESS_TOKEN",),
        check=static_token_refused,
    ),
    Case(
        "forbidden-create",
        "forbidden",
        [Fault("forbidden", endpoint="create", instance=A, times=None)],
        failed=frozenset({A}),
        error_words=("r_sales_nav_validation", "HTTP 403"),
    ),
    Case(
        "forbidden-instance",
        "forbidden",
        a_spec={"permitted": False},
        failed=frozenset({A}),
        error_words=("r_sales_nav_validation", "HTTP 403"),
    ),
    Case(
        "forbidden-download-once",
        "forbidden",
        [Fault("forbidden", endpoint="download", instance=A, after=1)],
        check=forbidden_download_refreshes,
    ),
    Case(
        "header_drift",
        "header_drift",
        [Fault("header_drift", instance=A)],
        check=drift_kept,
    ),
    # Completed jobs without files, and 0-byte files: asked again, then one new job, then empty.
    Case(
        "download_urls_missing-null-once",
        "download_urls_missing",
        [Fault("download_urls_missing", instance=A, variant="null")],
        check=all_of(fired("download_urls_missing"), posts_for_a(1)),
    ),
    Case(
        "download_urls_missing-absent-twice",
        "download_urls_missing",
        [Fault("download_urls_missing", instance=A, variant="absent", times=2)],
        check=all_of(fired("download_urls_missing", 2), job_replaced_same_window),
    ),
    *[
        Case(
            f"download_urls_missing-{variant}-always",
            "download_urls_missing",
            [Fault("download_urls_missing", instance=A, variant=variant, times=None)],
            empty=frozenset({A}),
            error_words=("twice without download URLs", "taken as empty"),
            check=all_of(fired("download_urls_missing", 4), job_replaced_same_window),
        )
        for variant in ("null", "absent", "empty")
    ],
    Case(
        "empty_body-once",
        "empty_body",
        [Fault("empty_body", instance=A, after=1)],
        check=all_of(fired("empty_body"), posts_for_a(1)),
    ),
    Case(
        "empty_body-gzip-once",
        "empty_body",
        [Fault("empty_body", instance=B)],
        check=fired("empty_body"),
    ),
    Case(
        "empty_body-twice",
        "empty_body",
        [Fault("empty_body", instance=A, times=2)],
        check=all_of(fired("empty_body", 2), job_replaced_same_window),
    ),
    Case(
        "empty_body-always",
        "empty_body",
        [Fault("empty_body", instance=A, times=None)],
        empty=frozenset({A}),
        error_words=("empty (no header) twice, also from a new export job",),
        check=all_of(fired("empty_body", 2 * (A_FILES + 1)), job_replaced_same_window),
    ),
    # Odd job answers.
    Case(
        "null_export_window",
        "null_export_window",
        [Fault("null_export_window", instance=A)],
        bookmark_rule=bookmark_at_creation_time,
        check=all_of(fired("null_export_window"), lambda sb, run: "bookmark = job's Date header"),
    ),
    Case(
        "lowercase_status",
        "lowercase_status",
        [Fault("lowercase_status", instance=A, times=None)],
        check=statuses_understood,
    ),
    *[
        Case(
            f"non_object_body-{variant}",
            "non_object_body",
            [Fault("non_object_body", endpoint="get", instance=A, variant=variant)],
            failed=frozenset({A}),
            error_words=("is JSON but not an object", f"({json_name}, HTTP 200)"),
            check=all_of(fired("non_object_body"), job_kept_in_state),
        )
        for variant, json_name in (
            ("array", "an array"),
            ("string", "a string"),
            ("null", "null"),
            ("number", "a number"),
        )
    ],
    # Files without LF line breaks, or with a quote that never closes: refused early.
    Case(
        "cr_line_endings",
        "cr_line_endings",
        [Fault("cr_line_endings", instance=A)],
        a_spec=HUGE_A,
        failed=frozenset({A}),
        error_words=("a CR outside quotes without an LF after it (CR-only line endings?)",),
        check=all_of(fired("cr_line_endings"), refused_at_the_first_record),
    ),
    Case(
        "unclosed_quote",
        "unclosed_quote",
        [Fault("unclosed_quote", instance=A)],
        a_spec=HUGE_A,
        failed=frozenset({A}),
        error_words=("an unterminated quote",),
        check=all_of(fired("unclosed_quote"), refused_at_the_first_record),
    ),
    # The token endpoint redirects: never followed (it would post client_secret there).
    *[
        Case(
            f"redirect-token-{status}",
            "redirect",
            [Fault("redirect", endpoint="token", status=status, times=None)],
            failed=frozenset({A, B}),
            error_words=(f"redirect (HTTP {status})", "does not follow it"),
            check=token_redirect_not_followed,
        )
        for status in (307, 308)
    ],
    Case(
        "debug-logging",
        "(security)",
        # urllib3 logs every request line at DEBUG, signed query string included, unless redacted.
        [Fault("drop", endpoint="download", instance=A, after_bytes=9000)],
        env={"LOGLEVEL": "DEBUG"},
        check=lambda sb, run: (
            "LOGLEVEL=DEBUG: URLs logged without query"
            if ("?<redacted> HTTP/1.1" in run.stderr)
            else pytest.fail("urllib3 request lines not seen at DEBUG")
        ),
    ),
    Case(
        "download-on-other-host",
        "(security)",
        config={"api_url": "{localhost}/v2", "token_url": "{localhost}/oauth/v2/accessToken"},
        check=download_auth_only_to_api_origin,
    ),
]


def test_every_sandbox_fault_kind_has_a_case() -> None:
    """Quick and independent of order; the last test checks that each fault really fired."""
    assert {c.fault for c in CASES} | set(OTHER_RUNS.values()) >= FAULT_KINDS


# Running a case -------------------------------------------------------------------------------


def scenario_for(case: Case) -> Scenario:
    return Scenario(
        clients={CLIENT_ID: CLIENT_SECRET},
        instances={
            A: InstanceSpec(**{"rows": A_ROWS, "files": A_FILES, **case.a_spec}),
            B: InstanceSpec(rows=B_ROWS, files=B_FILES, gzip=True),
        },
        job_processing_polls=1,
        faults=list(case.faults),
        **case.scenario,
    )


def config_for(case: Case, sb: Sandbox) -> dict[str, t.Any]:
    localhost = sb.base_url.replace("127.0.0.1", "localhost")
    config = sb.tap_config(request_retry_delay=RETRY_DELAY, start_date=START_DATE)
    for key, value in case.config.items():
        config[key] = value.format(localhost=localhost) if isinstance(value, str) else value
    if case.static_token:
        with requests.post(
            sb.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
            timeout=10,
        ) as response:
            config["access_token"] = response.json()["access_token"]
        del config["client_id"], config["client_secret"]
        forget_requests(sb)
    return config


def api_calls(requests_made: list[RequestRecord]) -> str:
    # The analytics API's calls count as the CRM API's (contract listings only in the total).
    counts = Counter((r.endpoint or "other").removeprefix("analytics_") for r in requests_made)
    parts = "/".join(str(counts.get(e, 0)) for e in ("token", "create", "get", "download"))
    return f"{len(requests_made)} ({parts})"


def assert_instance_synced(
    sb: Sandbox, run: TapRun, urn: str, case: Case | None = None
) -> tuple[int, int]:
    """Every row of the emitted job exactly once, bookmark at its nextExportStartAt."""
    records = [r for r in run.records(RECORDS) if r["crmInstanceId"] == urn]
    jobs = emitted_jobs(records, urn)
    assert len(jobs) == 1, f"{NAMES[urn]}: rows of jobs {jobs}"
    result = check_rows(sb, jobs[0], records)
    assert result.exact, f"{NAMES[urn]}: {result}"
    if case is not None and case.bookmark_rule is not None:
        case.bookmark_rule(sb, run, urn, jobs[0])
    else:
        assert bookmark(run.final_state, urn) == sb.jobs[jobs[0]]["nextExportStartAt"]
    assert in_flight(run.final_state, urn) is None
    summaries = [r for r in run.records(EXPORTS) if r["crmInstanceId"] == urn]
    assert [s["jobId"] for s in summaries] == jobs
    assert summaries[0]["rowCount"] == result.expected
    return result.lost, result.duplicated


def assert_instance_empty(case: Case, sb: Sandbox, run: TapRun, urn: str) -> None:
    """No rows; one summary with fileCount 0 and a note saying why; bookmark past the window."""
    assert not [r for r in run.records(RECORDS) if r["crmInstanceId"] == urn]
    summaries = [r for r in run.records(EXPORTS) if r["crmInstanceId"] == urn]
    assert len(summaries) == 1, summaries
    summary = summaries[0]
    assert (summary["fileCount"], summary["rowCount"]) == (0, 0), summary
    for word in case.error_words:
        assert word in (summary["note"] or ""), f"{word!r} not in the note {summary['note']!r}"
        assert word in run.stderr, f"{word!r} not warned about"
    last = max(j for j, info in sb.jobs.items() if info["instance"] == urn)
    assert summary["jobId"] == last
    assert bookmark(run.final_state, urn) == sb.jobs[last]["nextExportStartAt"]
    assert in_flight(run.final_state, urn) is None


def assert_instance_failed(case: Case, run: TapRun, urn: str) -> None:
    """Bookmark unmoved, a clear error naming the instance, no summary record."""
    assert bookmark(run.final_state, urn) is None
    assert not [r for r in run.records(EXPORTS) if r["crmInstanceId"] == urn]
    failure_lines = [line for line in run.stderr.splitlines() if urn in line]
    assert failure_lines, f"no error names {urn}"
    for word in case.error_words:
        assert word in run.stderr, f"{word!r} missing from the error output"


@pytest.fixture(scope="module", autouse=True)
def matrix_table(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Print the matrix (and write it to fault-matrix.md) once the module's cases ran."""
    yield
    if not TABLE:
        return
    header = (
        "| fault | case | outcome | rows lost | rows duplicated "
        "| API calls (token/create/get/download) |"
    )
    lines = [header, "|---|---|---|---|---|---|"]
    lines += [
        f"| {r['fault']} | {r['case']} | {r['outcome']} | {r['lost']} | {r['duplicated']} | "
        f"{r['calls']} |"
        for r in TABLE
    ]
    text = "\n".join(lines) + "\n"
    (tmp_path_factory.getbasetemp() / "fault-matrix.md").write_text(text)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, run_tap: RunTap, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    with Sandbox(scenario_for(case)) as sb:
        run = run_tap(config_for(case, sb), timeout=60)
        elapsed = time.monotonic() - started
        fired_now = note_fired(case.id, sb)
        if case.faults and case.fault in FAULT_KINDS:
            assert case.fault in {kind for kind, _ in fired_now}, f"{case.fault} never fired"
        outcome, lost, duplicated = judge(case, sb, run)
        note = case.check(sb, run) if case.check else None
        assert_no_secrets(sb, run.stdout, run.stderr)
        TABLE.append(
            {
                "fault": fault_label(case.fault, fired_now),
                "case": case.id,
                "outcome": outcome + (f"; {note}" if note else ""),
                "lost": lost,
                "duplicated": duplicated,
                "calls": api_calls(sb.requests),
            }
        )
    assert elapsed < 30


def note_fired(run_id: str, sb: Sandbox) -> set[tuple[str, str | None]]:
    """Log which faults the sandbox injected in this run (for the coverage check); return them."""
    # A `slow` fault is logged once its delay is over: wait for requests still being answered.
    assert sb.requests is not None
    fired_now = {(f.kind, f.variant) for f in sb.fired_faults}
    FIRED.setdefault(run_id, set()).update(fired_now)
    return fired_now


def fault_label(kind: str, fired_now: set[tuple[str, str | None]]) -> str:
    """The table's fault column: the kind, with the forms of it that fired when they differ."""
    forms = sorted({v for k, v in fired_now if k == kind and v is not None})
    return f"{kind} ({', '.join(forms)})" if kind in VARIANT_KINDS and forms else kind


def judge(case: Case, sb: Sandbox, run: TapRun) -> tuple[str, int, int]:
    """Assert the case's outcome; return its table text, rows lost and rows duplicated."""
    lost = duplicated = 0
    parts = []
    failed_now = set()
    for urn in (A, B):
        must_fail = urn in case.failed
        may_fail = urn in case.maybe_failed
        if urn in case.empty:
            assert_instance_empty(case, sb, run, urn)
            parts.append(f"{NAMES[urn]} taken as empty (fileCount 0, note), bookmark moved")
        elif must_fail or (may_fail and bookmark(run.final_state, urn) is None):
            assert_instance_failed(case, run, urn)
            failed_now.add(urn)
            parts.append(f"{NAMES[urn]} failed, bookmark kept")
        else:
            urn_lost, urn_dup = assert_instance_synced(sb, run, urn, case)
            lost += urn_lost
            duplicated += urn_dup
            parts.append(f"{NAMES[urn]} synced")
    if failed_now:
        assert run.returncode == 1, run.stderr[-2000:]
        assert "CRM instance(s) failed" in run.stderr
        assert "Traceback" not in run.stderr
    else:
        assert run.returncode == 0, run.stderr[-2000:]
    return ", ".join(parts), lost, duplicated


# Multi-run cases -----------------------------------------------------------------------------


@pytest.mark.slow
def test_job_never_finishes_then_next_run_resumes_the_same_job(run_tap: RunTap) -> None:
    """A timed-out job stays in state; the next run polls it again instead of creating one."""
    case = Case("job_never_finishes-resume", "job_never_finishes")
    with Sandbox(scenario_for(case)) as sb:
        sb.add_fault(Fault("job_never_finishes", instance=A))
        config = sb.tap_config(
            request_retry_delay=RETRY_DELAY, job_timeout=JOB_TIMEOUT, start_date=START_DATE
        )
        first = run_tap(config, timeout=60)
        assert first.returncode == 1
        job = in_flight(first.final_state, A)
        assert job is not None
        assert bookmark(first.final_state, A) is None
        b_done = bookmark(first.final_state, B)
        assert b_done is not None
        forget_requests(sb)
        second = run_tap(config, first.final_state, timeout=60)
        note_fired("job_never_finishes-resume", sb)
        assert second.returncode == 1
        assert not endpoint_calls(sb, "create", A), "the in-flight job was created again"
        assert {r.job_id for r in endpoint_calls(sb, "get", A)} == {job["jobId"]}
        assert in_flight(second.final_state, A)["jobId"] == job["jobId"]
        # B went on from its bookmark.
        b_jobs = [j for j, info in sb.jobs.items() if info["instance"] == B]
        assert sb.jobs[max(b_jobs)]["exportStartAt"] == b_done
        assert_no_secrets(sb, first.stdout, first.stderr, second.stdout, second.stderr)
        TABLE.append(
            {
                "fault": "job_never_finishes",
                "case": "job_never_finishes, then resume",
                "outcome": "A timed out twice on the same job (no new POST), B synced",
                "lost": 0,
                "duplicated": 0,
                "calls": api_calls(sb.requests) + " (2nd run)",
            }
        )


@pytest.mark.slow
def test_job_gone_on_resume_then_new_job_for_the_same_window(run_tap: RunTap) -> None:
    """A job older than 7 days answers 404: a new job for the same window replaces it."""
    case = Case("job-gone-on-resume", "job gone (404)")
    with Sandbox(scenario_for(case)) as sb:
        sb.add_fault(Fault("job_never_finishes", instance=A, times=1))
        config = sb.tap_config(
            request_retry_delay=RETRY_DELAY, job_timeout=JOB_TIMEOUT, start_date=START_DATE
        )
        first = run_tap(config, timeout=60)
        old = in_flight(first.final_state, A)
        assert old is not None
        sb.clock.advance(8 * 86400)
        forget_requests(sb)
        second = run_tap(config, first.final_state, timeout=60)
        note_fired("job-gone-on-resume", sb)
        assert second.returncode == 0, second.stderr[-2000:]
        assert any(r.status == 404 and r.job_id == old["jobId"] for r in sb.requests)
        assert "gone (HTTP 404" in second.stderr
        lost, duplicated = assert_instance_synced(sb, second, A)
        new = emitted_jobs(second.records(RECORDS), A)[0]
        assert new != old["jobId"]
        assert sb.jobs[new]["exportStartAt"] == old["exportStartAt"]
        assert len(endpoint_calls(sb, "create", A)) == 1
        assert_no_secrets(sb, first.stdout, first.stderr, second.stdout, second.stderr)
        TABLE.append(
            {
                "fault": "job gone (404)",
                "case": "in-flight job older than 7 days, resume",
                "outcome": "A: new job for the same window, synced",
                "lost": lost,
                "duplicated": duplicated,
                "calls": api_calls(sb.requests) + " (2nd run)",
            }
        )


# Security, in process: download redirects ---------------------------------------------------


class _RedirectingHandler(BaseHTTPRequestHandler):
    """`/to-plain-http` and `/to-other-origin` redirect; `/file` serves a CSV and notes auth."""

    protocol_version = "HTTP/1.1"
    seen_authorization: t.ClassVar[list[bool]] = []

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        targets = {
            "/to-plain-http": "http://192.0.2.1/ambry/?x-li-ambry-ep=secret",  # TEST-NET-1
            "/to-other-origin": f"http://localhost:{port}/file",
        }
        if self.path in targets:
            self.send_response(302)
            self.send_header("Location", targets[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        type(self).seen_authorization.append("Authorization" in self.headers)
        body = b"crmRecordId\r\nx\r\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002
        return


@pytest.fixture
def redirecting_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RedirectingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _RedirectingHandler.seen_authorization = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_redirect_to_plain_http_is_refused(redirecting_server: str) -> None:
    client = LinkedInClient(api_url=f"{redirecting_server}/v2", tokens=StaticTokenProvider("tok"))
    with pytest.raises(APIError, match="only https") as info:
        client.open_download(f"{redirecting_server}/to-plain-http")
    assert "secret" not in str(info.value)


def test_download_redirect_to_another_origin_gets_no_token(redirecting_server: str) -> None:
    client = LinkedInClient(api_url=f"{redirecting_server}/v2", tokens=StaticTokenProvider("tok"))
    with client.open_download(f"{redirecting_server}/to-other-origin") as response:
        assert response.content == b"crmRecordId\r\nx\r\n"
    assert _RedirectingHandler.seen_authorization == [False]
    with client.open_download(f"{redirecting_server}/file") as response:
        assert response.status_code == 200
    assert _RedirectingHandler.seen_authorization == [False, True]  # the API's own origin


# Multi-run cases of the hardening review ---------------------------------------------------


def table_row(
    fault: str, case: str, outcome: str, calls: str, rows: tuple[int, int] = (0, 0)
) -> None:
    """Add a row to the matrix table; `rows` are the rows lost and duplicated."""
    TABLE.append(
        {
            "fault": fault,
            "case": case,
            "outcome": outcome,
            "lost": rows[0],
            "duplicated": rows[1],
            "calls": calls,
        }
    )


@pytest.mark.slow
def test_forbidden_on_the_resume_of_a_remembered_job_then_new_job(run_tap: RunTap) -> None:
    """A 403 on the GET of an in-flight job from the last run: a new job, not blocked forever."""
    case = Case("forbidden-on-resume", "forbidden")
    with Sandbox(scenario_for(case)) as sb:
        sb.add_fault(Fault("job_never_finishes", instance=A, times=1))
        config = sb.tap_config(
            request_retry_delay=RETRY_DELAY, job_timeout=JOB_TIMEOUT, start_date=START_DATE
        )
        first = run_tap(config, timeout=60)
        old = in_flight(first.final_state, A)
        assert old is not None
        forget_requests(sb)
        sb.add_fault(Fault("forbidden", endpoint="get", instance=A, times=1))
        second = run_tap(config, first.final_state, timeout=60)
        note_fired(case.id, sb)
        assert second.returncode == 0, second.stderr[-2000:]
        assert any(r.status == 403 and r.job_id == old["jobId"] for r in sb.requests)
        assert "is gone (HTTP 403" in second.stderr
        lost, duplicated = assert_instance_synced(sb, second, A)
        new = emitted_jobs(second.records(RECORDS), A)[0]
        assert new != old["jobId"]
        assert sb.jobs[new]["exportStartAt"] == old["exportStartAt"]
        assert len(endpoint_calls(sb, "create", A)) == 1
        assert_no_secrets(sb, first.stdout, first.stderr, second.stdout, second.stderr)
        table_row(
            "forbidden",
            "403 on the GET of the in-flight job, resume",
            "A: new job for the same window, synced",
            api_calls(sb.requests) + " (2nd run)",
            (lost, duplicated),
        )


@pytest.mark.slow
def test_completed_jobs_never_listing_files_never_fail_a_run(run_tap: RunTap) -> None:
    """LinkedIn never sends A's URLs: every run takes the window as empty and moves on."""
    case = Case("download_urls_missing-every-run", "download_urls_missing")
    with Sandbox(scenario_for(case)) as sb:
        sb.add_fault(Fault("download_urls_missing", instance=A, times=None))
        config = sb.tap_config(request_retry_delay=RETRY_DELAY, start_date=START_DATE)
        noted = Case("", "", error_words=("taken as empty",))
        first = run_tap(config, timeout=60)
        assert first.returncode == 0, first.stderr[-2000:]
        assert_instance_empty(noted, sb, first, A)
        sb.clock.advance(86_400)
        forget_requests(sb)
        second = run_tap(config, first.final_state, timeout=60)
        note_fired(case.id, sb)
        assert second.returncode == 0, second.stderr[-2000:]
        assert_instance_empty(noted, sb, second, A)
        first_mark, second_mark = bookmark(first.final_state, A), bookmark(second.final_state, A)
        assert first_mark is not None
        assert second_mark is not None
        assert second_mark > first_mark
        a_jobs = sorted(j for j, info in sb.jobs.items() if info["instance"] == A)
        assert sb.jobs[a_jobs[-1]]["exportStartAt"] == first_mark  # went on from the bookmark
        table_row(
            "download_urls_missing (null)",
            "no URLs on every run",
            "both runs exit 0, A taken as empty each time, bookmark moves on",
            api_calls(sb.requests) + " (2nd run)",
        )


@pytest.mark.slow
def test_null_export_window_after_a_day_old_bookmark_moves_the_bookmark_on(
    run_tap: RunTap,
) -> None:
    """Issue item 2: null exportEndAt and nextExportStartAt never overwrite a bookmark with null."""
    case = Case("null_export_window-after-a-day", "null_export_window")
    with Sandbox(scenario_for(case)) as sb:
        config = sb.tap_config(request_retry_delay=RETRY_DELAY, start_date=START_DATE)
        first = run_tap(config, timeout=60)
        assert first.returncode == 0, first.stderr[-2000:]
        day_old = bookmark(first.final_state, A)
        assert day_old is not None
        sb.clock.advance(86_400)
        sb.add_fault(Fault("null_export_window", instance=A))
        second = run_tap(config, first.final_state, timeout=60)
        assert second.returncode == 0, second.stderr[-2000:]
        job = emitted_jobs(second.records(RECORDS), A)[0]
        assert sb.jobs[job]["exportStartAt"] == day_old
        bookmark_at_creation_time(sb, second, A, job)
        moved = bookmark(second.final_state, A)
        assert moved is not None
        assert moved > day_old
        forget_requests(sb)
        third = run_tap(config, second.final_state, timeout=60)
        note_fired(case.id, sb)
        assert third.returncode == 0, third.stderr[-2000:]
        [create] = endpoint_calls(sb, "create", A)
        assert create.job_id is not None
        assert sb.jobs[create.job_id]["exportStartAt"] == moved  # not 30 days back
        table_row(
            "null_export_window",
            "null window on a job from a day-old bookmark, then a third run",
            "bookmark = the job's creation time (Date header), warned; the next run starts there",
            api_calls(sb.requests) + " (3rd run)",
        )


@pytest.mark.slow
def test_analytics_row_count_mismatch_fails_the_window_then_the_next_run_finishes_it(
    run_tap: RunTap,
) -> None:
    """LinkedIn's rowCount disagrees with the file, also on a second download: that window fails
    with its rows counted in state; the next run resumes the job and emits only the rest."""
    start = (dt.datetime.now(tz=dt.UTC) - dt.timedelta(days=6)).date().isoformat()
    # Wrong on the completing poll and on the fetch the tap makes before downloading again.
    fault = Fault("row_count_mismatch", contract=EMEA_CONTRACT, export_type="activity", times=2)
    scenario = Scenario(
        clients={CLIENT_ID: CLIENT_SECRET},
        faults=[fault],
        analytics_enqueued_polls=0,
        analytics_processing_polls=0,
    )
    with Sandbox(scenario) as sb:
        config = sb.tap_config(
            analytics=True, analytics_start_date=start, request_retry_delay=RETRY_DELAY
        )
        del config["crm_instance_ids"]
        first = run_tap(config, timeout=60)
        assert first.returncode == 1, first.stderr[-2000:]
        assert "rowCount says" in first.stderr
        assert "also after downloading it again" in first.stderr
        assert "1 of 6 analytics export(s) failed" in first.stderr
        assert "Traceback" not in first.stderr
        failed = [
            p
            for p in first.final_state["bookmarks"]["sales_activities"]["partitions"]
            if "inFlightJobs" in p
        ]
        assert len(failed) == 1
        [job] = failed[0]["inFlightJobs"]
        assert "replication_key_value" not in failed[0]
        second = run_tap(config, first.final_state, timeout=60)
        note_fired("row_count_mismatch-then-resume", sb)
        assert second.returncode == 0, second.stderr[-2000:]
        emitted = [
            r["rowNumber"]
            for run in (first, second)
            for r in run.records("sales_activities")
            if r["jobId"] == job["jobId"]
        ]
        expected = len(sb.expected_rows(job["jobId"]))
        assert sorted(emitted) == list(range(1, expected + 1))  # each row once over both runs
        assert_no_secrets(sb, first.stdout, first.stderr, second.stdout, second.stderr)
        table_row(
            "row_count_mismatch",
            "analytics rowCount off by one, then resume",
            "that window failed (rows counted in inFlightJobs), 5 synced; the next run finished it",
            api_calls(sb.requests) + " (both runs)",
        )


# linkedin-crm-auth: the member's authorization ---------------------------------------------


def run_authorization(sb: Sandbox, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `linkedin-crm-auth` against the sandbox; open its URL as the member's browser would."""
    env = {**tap_env(), "LINKEDIN_CLIENT_SECRET": CLIENT_SECRET}
    command = [
        sys.executable,
        "-m",
        "tap_linkedin_crm.authorize",
        "--client-id",
        CLIENT_ID,
        "--authorization-url",
        sb.authorization_url,
        "--token-url",
        sb.token_url,
        "--port",
        "0",
        "--timeout",
        "30",
    ]
    stderr_path = tmp_path / "auth-stderr.log"
    with (
        stderr_path.open("w") as stderr,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
        ) as proc,
    ):
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip().startswith(sb.authorization_url):
                # The sandbox signs the member in, then redirects to the CLI's loopback page.
                requests.get(line.strip(), timeout=10).close()
                break
        out, _ = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(
        command, proc.returncode, "".join(lines) + out, stderr_path.read_text()
    )


@pytest.mark.parametrize("variant", ["user_cancelled_authorize", "user_cancelled_login"])
def test_member_denies_the_authorization(variant: str, tmp_path: Path) -> None:
    scenario = Scenario(
        clients={CLIENT_ID: CLIENT_SECRET},
        faults=[Fault("authorization_denied", variant=variant)],
    )
    with Sandbox(scenario) as sb:
        result = run_authorization(sb, tmp_path)
        note_fired("authorization_denied", sb)
        assert result.returncode == 1
        assert "LinkedIn refused the authorization: The member did not approve" in result.stderr
        assert not endpoint_calls(sb, "token"), "a code was exchanged although none was given"
        assert "Traceback" not in result.stderr
        assert CLIENT_SECRET not in result.stdout + result.stderr
        table_row(
            f"authorization_denied ({variant})",
            "linkedin-crm-auth, the member declines",
            "exit 1 naming LinkedIn's error; no token request",
            api_calls(sb.requests),
        )


@pytest.mark.parametrize("status", [307, 308])
def test_token_redirect_during_the_code_exchange_is_not_followed(
    status: int, tmp_path: Path
) -> None:
    scenario = Scenario(
        clients={CLIENT_ID: CLIENT_SECRET},
        faults=[Fault("redirect", endpoint="token", status=status)],
    )
    with Sandbox(scenario) as sb:
        result = run_authorization(sb, tmp_path)
        note_fired("redirect-code-exchange", sb)
        assert result.returncode == 1
        assert f"redirect (HTTP {status})" in result.stderr
        assert "does not follow it" in result.stderr
        [token] = endpoint_calls(sb, "token")
        assert (token.status, token.client_secret_sent) == (status, True)
        assert not endpoint_calls(sb, "token_redirected")
        assert_no_secrets(sb, result.stdout, result.stderr)
        table_row(
            f"redirect ({status})",
            "linkedin-crm-auth, token endpoint redirects the code exchange",
            "exit 1, redirect named; client_secret never sent to the target",
            api_calls(sb.requests),
        )


# Local faults: the temporary directory ----------------------------------------------------


def _files_of_at_most_1_kib() -> None:
    """In the child: files may grow to 1 KiB; a longer write fails (EFBIG) instead of killing it."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


def test_full_tmpdir_during_the_gzip_check_names_the_cause_and_the_directory(
    tmp_path: Path,
) -> None:
    """B's gzip file is spooled to TMPDIR for its check; a write there fails (the file system
    lets files grow to 1 KiB only): B fails naming the cause and the directory, A is synced."""
    tmpdir = tmp_path / "spool"
    tmpdir.mkdir()
    case = Case("tmpdir-full", "(local) TMPDIR full", failed=frozenset({B}))
    with Sandbox(scenario_for(case)) as sb:
        config_path = tmp_path / "config.json"
        config_path.write_text(
            json.dumps(sb.tap_config(request_retry_delay=RETRY_DELAY, start_date=START_DATE))
        )
        run = run_process(
            ["--config", str(config_path)],
            {"TMPDIR": str(tmpdir), "PYTHONDONTWRITEBYTECODE": "1"},
            preexec_fn=_files_of_at_most_1_kib,
        )
        note_fired(case.id, sb)
        outcome, lost, duplicated = judge(case, sb, t.cast("TapRun", run))
        assert f"cannot keep the temporary copy of a gzip download in {tmpdir}" in run.stderr
        assert "(File too large)" in run.stderr
        assert "set TMPDIR to a writable directory" in run.stderr
        assert_no_secrets(sb, run.stdout, run.stderr)
        table_row(
            case.fault,
            "gzip spool write fails (EFBIG)",
            outcome + "; the error names the cause and TMPDIR",
            api_calls(sb.requests),
            (lost, duplicated),
        )


# Coverage: runs last -------------------------------------------------------------------------


def test_every_sandbox_fault_kind_fired_in_the_matrix() -> None:
    """The faults the sandbox injected over the whole matrix cover every kind, and every form of
    the kinds the tap must tell apart (`VARIANT_KINDS`): no case may pass without its fault."""
    runs = {c.id for c in CASES} | set(OTHER_RUNS)
    if not runs <= set(FIRED):
        pytest.skip(f"only part of the matrix ran ({len(runs - set(FIRED))} runs missing)")
    fired = set().union(*FIRED.values())
    kinds = {kind for kind, _ in fired}
    assert kinds >= FAULT_KINDS, f"never injected: {sorted(FAULT_KINDS - kinds)}"
    for kind, variants in VARIANT_KINDS.items():
        forms = {variant for k, variant in fired if k == kind}
        assert forms >= set(variants), f"{kind}: never injected as {sorted(set(variants) - forms)}"
