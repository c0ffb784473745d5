"""Fault matrix: the real `tap-linkedin-crm` process against the sandbox, one case per fault.

Every case runs two CRM instances: A (plain CSV, 3 files) takes the fault unless said otherwise,
B (gzip, 2 files) must be synced whatever happens to A (one bad instance never stops the others).
After each run: every generated row of the job whose rows were emitted came out exactly once, in
order, with its values, and the bookmark moved to that job's `nextExportStartAt`; or, where the
fault cannot be survived, the bookmark did not move, the exit status is non-zero and the error
names the instance. No client secret, access token or signed URL is in stdout, stderr or state.
The outcome of each case, with its API calls, goes into a table printed at the end of the module
(and written to `fault-matrix.md` in pytest's base temp directory).
"""

from __future__ import annotations

import datetime as dt
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
)

from tap_linkedin_crm.auth import StaticTokenProvider
from tap_linkedin_crm.errors import APIError
from tap_linkedin_crm.sandbox import (
    DYNAMICS_INSTANCE,
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

TABLE: list[dict[str, t.Any]] = []


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
    def check(sb: Sandbox, run: TapRun) -> str | None:
        assert len(faulted(sb, kind)) == times, f"fault {kind} fired {len(faulted(sb, kind))}x"
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
        "error-500-persistent",
        "error",
        [Fault("error", endpoint="get", instance=A, status=500, times=None)],
        config={"request_max_retries": 2},
        failed=frozenset({A}),
        error_words=("HTTP 500 after 3 tries",),
        check=fired("error", 3),
    ),
    Case(
        "slow-download-timeout",
        "slow",
        [Fault("slow", endpoint="download", instance=A, delay=1.0)],
        config={"request_timeout": 0.5},
        check=fired("slow"),
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
        [Fault("drop", endpoint="download", instance=A, after=1, after_bytes=9000)],
        check=fired("drop"),
    ),
    Case(
        "drop-mid-download-chunked",
        "drop",
        [Fault("drop", endpoint="download", instance=A, after_bytes=9000)],
        scenario={"stream_threshold_rows": 10},
        check=fired("drop"),
    ),
    Case(
        "truncate-download",
        "truncate",
        [Fault("truncate", endpoint="download", instance=A, after=2, after_bytes=7000)],
        scenario={"stream_threshold_rows": 10},
        check=fired("truncate"),
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
        [Fault("url_expires_mid_download", instance=A, after=1, after_bytes=9000)],
        check=fired("url_expires_mid_download"),
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


def test_every_sandbox_fault_kind_is_in_the_matrix() -> None:
    assert {c.fault for c in CASES} >= FAULT_KINDS


# Running a case -------------------------------------------------------------------------------


def scenario_for(case: Case) -> Scenario:
    return Scenario(
        clients={CLIENT_ID: CLIENT_SECRET},
        instances={
            A: InstanceSpec(rows=A_ROWS, files=A_FILES, **case.a_spec),
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
    counts = Counter(r.endpoint or "other" for r in requests_made)
    parts = "/".join(str(counts.get(e, 0)) for e in ("token", "create", "get", "download"))
    return f"{len(requests_made)} ({parts})"


def assert_instance_synced(sb: Sandbox, run: TapRun, urn: str) -> tuple[int, int]:
    """Every row of the emitted job exactly once, bookmark at its nextExportStartAt."""
    records = [r for r in run.records(RECORDS) if r["crmInstanceId"] == urn]
    jobs = emitted_jobs(records, urn)
    assert len(jobs) == 1, f"{NAMES[urn]}: rows of jobs {jobs}"
    result = check_rows(sb, jobs[0], records)
    assert result.exact, f"{NAMES[urn]}: {result}"
    assert bookmark(run.final_state, urn) == sb.jobs[jobs[0]]["nextExportStartAt"]
    assert in_flight(run.final_state, urn) is None
    summaries = [r for r in run.records(EXPORTS) if r["crmInstanceId"] == urn]
    assert [s["jobId"] for s in summaries] == jobs
    assert summaries[0]["rowCount"] == result.expected
    return result.lost, result.duplicated


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
        outcome, lost, duplicated = judge(case, sb, run)
        note = case.check(sb, run) if case.check else None
        assert_no_secrets(sb, run.stdout, run.stderr)
        TABLE.append(
            {
                "fault": case.fault,
                "case": case.id,
                "outcome": outcome + (f"; {note}" if note else ""),
                "lost": lost,
                "duplicated": duplicated,
                "calls": api_calls(sb.requests),
            }
        )
    assert elapsed < 30


def judge(case: Case, sb: Sandbox, run: TapRun) -> tuple[str, int, int]:
    """Assert the case's outcome; return its table text, rows lost and rows duplicated."""
    lost = duplicated = 0
    parts = []
    failed_now = set()
    for urn in (A, B):
        must_fail = urn in case.failed
        may_fail = urn in case.maybe_failed
        if must_fail or (may_fail and bookmark(run.final_state, urn) is None):
            assert_instance_failed(case, run, urn)
            failed_now.add(urn)
            parts.append(f"{NAMES[urn]} failed, bookmark kept")
        else:
            urn_lost, urn_dup = assert_instance_synced(sb, run, urn)
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
        assert second.returncode == 0, second.stderr[-2000:]
        assert any(r.status == 404 and r.job_id == old["jobId"] for r in sb.requests)
        assert "gone (404" in second.stderr
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
