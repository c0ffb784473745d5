"""The sandbox: LinkedIn's token, export-job and download endpoints served on loopback."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
import secrets
import socket
import threading
import time
import typing as t
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tap_linkedin_crm.sandbox.clock import SandboxClock
from tap_linkedin_crm.sandbox.data import BaseCache, ExportData, ExportPlan, plan_files
from tap_linkedin_crm.sandbox.scenario import JOB_FAULTS, Fault, Scenario

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from email.message import Message
    from types import TracebackType

LOGGER = logging.getLogger("tap_linkedin_crm.sandbox")

TOKEN_PATH = "/oauth/v2/accessToken"  # noqa: S105
JOBS_PATH = "/v2/crmDataValidationExportJobs"
AMBRY_PATHS = frozenset({"/ambry/", "/ambry"})
AMBRY_PARAM = "x-li-ambry-ep"
RESTLI_HEADER = "X-Restli-Protocol-Version"
RESTLI_VERSION = "2.0.0"
DAILY_LIMIT_MESSAGE = (
    "Resource level throttle APPLICATION DAY limit for calls to this resource is reached."
)
FIRST_JOB_ID = 148
REQUEST_LOG_WAIT = 1.0
TRUNCATE_CLAIM_EXTRA = 1_000_000
_DAY_MS = 86_400_000
_URN_RE = re.compile(r"^urn:li:crmInstance:\(([A-Za-z0-9_]+),([^,()]+)\)$")
_JOB_PATH_RE = re.compile(r"^/v2/crmDataValidationExportJobs/([^/]+)$")
_CUT_FAULTS = frozenset({"drop", "truncate", "url_expires_mid_download"})


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the sandbox saw it; never holds tokens or query strings.

    Attributes:
        method: HTTP method.
        path: URL path without the query string.
        status: Status sent; 0 when the connection was closed without a response.
        authorized: Whether an ``Authorization`` header was sent.
        endpoint: ``token``, ``create``, ``get``, ``download``, or ``None`` for other paths.
        instance: CRM instance URN the request was about, if known.
        job_id: Export job the request was about, if known.
        fault: Kind of the scripted fault that fired, if any.
        bytes_sent: Body bytes written.
        duration_ms: Time spent answering.
    """

    method: str
    path: str
    status: int
    authorized: bool
    endpoint: str | None = None
    instance: str | None = None
    job_id: int | None = None
    fault: str | None = None
    bytes_sent: int = 0
    duration_ms: float = 0.0


@dataclass(slots=True)
class _Token:
    client_id: str
    expires_at: int
    forced_expired: bool = False


@dataclass(slots=True)
class _FaultState:
    fault: Fault
    seen: int = 0
    fired: int = 0


@dataclass(slots=True)
class _Job:
    job_id: int
    instance: str
    export_start_at: int
    export_end_at: int
    created_at: int
    data: ExportData
    fail: bool = False
    never: bool = False
    polls: int = 0
    status: str = "PROCESSING"
    completed_at: int | None = None
    expire_at: int | None = None
    generation: int = 0
    urls: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    endpoint: str | None
    authorized: bool
    instance: str | None = None
    job_id: int | None = None
    fault: str | None = None


@dataclass(slots=True)
class _Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: Iterator[bytes] | None = None
    cut: Fault | None = None


def _json(status: int, payload: object, headers: list[tuple[str, str]] | None = None) -> _Reply:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return _Reply(status, [("Content-Type", "application/json"), *(headers or [])], body)


def _envelope(status: int, message: str, service_error_code: int = 0) -> _Reply:
    payload = {"message": message, "serviceErrorCode": service_error_code, "status": status}
    return _json(status, payload, [("X-RestLi-Protocol-Version", RESTLI_VERSION)])


def _corrupt(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Flip bytes early in a gzip stream, so inflating or the CRC check fails."""
    done = False
    for chunk in chunks:
        if not done and len(chunk) > 48:  # noqa: PLR2004
            buf = bytearray(chunk)
            for i in range(20, 44):
                buf[i] ^= 0x5A
            chunk = bytes(buf)  # noqa: PLW2901
            done = True
        yield chunk
    if not done:
        yield b"\x00corrupt\xff" * 8


def _classify(method: str, path: str) -> str | None:
    if path == TOKEN_PATH:
        return "token" if method == "POST" else None
    if path == JOBS_PATH:
        return "create" if method == "POST" else None
    if _JOB_PATH_RE.match(path):
        return "get" if method == "GET" else None
    if path in AMBRY_PATHS:
        return "download" if method == "GET" else None
    return None


class Sandbox:
    """A fake LinkedIn CRM Data Validation API on a threaded loopback HTTP server.

    Use it as a context manager (``with Sandbox(scenario) as sb: ...``) or call :meth:`start`
    and :meth:`stop`. All state (tokens, jobs, fault counters, the request log) is per instance.
    """

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: SandboxClock | None = None,
    ) -> None:
        """Prepare a sandbox; nothing listens until :meth:`start` (or ``with``).

        Args:
            scenario: What to serve and which faults to inject; defaults to ``Scenario()``.
            host: Interface to bind.
            port: Port to bind; 0 picks a free one.
            clock: Clock to use; defaults to a fresh real-time :class:`SandboxClock`.
        """
        self.scenario = scenario if scenario is not None else Scenario()
        self.clock = clock if clock is not None else SandboxClock()
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._jobs: dict[int, _Job] = {}
        self._downloads: dict[str, tuple[int, int, int]] = {}
        self._faults = [_FaultState(f) for f in self.scenario.faults]
        self._requests: list[RequestRecord] = []
        self._next_job_id = FIRST_JOB_ID
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._inflight = 0
        self._base_cache = BaseCache()
        self._idle = threading.Condition(self._lock)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Bind the server and serve it from a background thread.

        Returns:
            The sandbox itself.

        Raises:
            RuntimeError: If the sandbox is already running.
        """
        if self._server is not None:
            msg = "sandbox already started"
            raise RuntimeError(msg)
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="linkedin-crm-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> t.Self:
        """Start the sandbox."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the sandbox."""
        self.stop()

    # -- addresses and config ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server.

        Raises:
            RuntimeError: If the sandbox is not running.
        """
        if self._server is None:
            msg = "sandbox is not running"
            raise RuntimeError(msg)
        host, port = self._server.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        if ":" in host_text:
            host_text = f"[{host_text}]"
        return f"http://{host_text}:{port}"

    @property
    def api_url(self) -> str:
        """Base URL of the REST API (``base_url + "/v2"``)."""
        return f"{self.base_url}/v2"

    @property
    def token_url(self) -> str:
        """URL of the OAuth client-credentials token endpoint."""
        return f"{self.base_url}{TOKEN_PATH}"

    def tap_config(self, **overrides: t.Any) -> dict[str, t.Any]:  # noqa: ANN401
        """Return a ready tap config for this sandbox, with ``overrides`` applied on top."""
        client_id, client_secret = next(iter(self.scenario.clients.items()))
        config: dict[str, t.Any] = {
            "client_id": client_id,
            "client_secret": client_secret,
            "crm_instance_ids": list(self.scenario.instances),
            "api_url": self.api_url,
            "token_url": self.token_url,
            "poll_interval": 0.05,
            "poll_max_interval": 0.2,
            "request_timeout": 10,
            "job_timeout": 60,
        }
        config.update(overrides)
        return config

    # -- inspection and control --------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, oldest first.

        Requests are logged once their response is fully written, which can be a moment after the
        client has read it; so this waits (up to ``REQUEST_LOG_WAIT`` seconds) until no request
        is being answered.
        """
        with self._idle:
            self._idle.wait_for(lambda: self._inflight == 0, timeout=REQUEST_LOG_WAIT)
            return list(self._requests)

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._requests.clear()

    @property
    def jobs(self) -> dict[int, dict[str, t.Any]]:
        """A snapshot of every export job, keyed by job id."""
        with self._lock:
            return {job_id: self._job_info(job) for job_id, job in self._jobs.items()}

    def _job_info(self, job: _Job) -> dict[str, t.Any]:
        plan = job.data.plan
        return {
            "jobId": job.job_id,
            "instance": job.instance,
            "exportStartAt": job.export_start_at,
            "exportEndAt": job.export_end_at,
            "status": job.status,
            "createdAt": job.created_at,
            "completedAt": job.completed_at,
            "expireAt": job.expire_at,
            "nextExportStartAt": self._next_start(job),
            "downloadUrls": list(job.urls),
            "polls": job.polls,
            "files": len(plan.files),
            "rows": sum(f.rows for f in plan.files),
            "columns": [list(f.columns) for f in plan.files],
            "gzip": plan.gzip,
            "willFail": job.fail,
            "neverFinishes": job.never,
        }

    def add_fault(self, fault: Fault) -> None:
        """Add a scripted fault while the sandbox runs (its counters start at zero)."""
        with self._lock:
            self._faults.append(_FaultState(fault))

    def clear_faults(self) -> None:
        """Remove every scripted fault."""
        with self._lock:
            self._faults.clear()

    def issued_secrets(self) -> set[str]:
        """Every secret this sandbox knows, for tests that scan a tap's output for leaks.

        That is the client secrets, the access tokens it issued and the signed download tokens.
        """
        with self._lock:
            return set(self._tokens) | set(self._downloads) | set(self.scenario.clients.values())

    def expire_tokens(self) -> None:
        """Make every access token issued so far expired (the next API call gets 401)."""
        with self._lock:
            for token in self._tokens.values():
                token.forced_expired = True

    def expire_download_urls(self, job_id: int | None = None) -> None:
        """Expire the download URLs of one job (or all jobs) now; a new GET issues fresh ones."""
        now = self.clock.now_ms()
        with self._lock:
            for job in self._jobs.values():
                if job_id is None or job.job_id == job_id:
                    self._expire_urls(job, now)

    def expected_rows(self, job_id: int) -> list[dict[str, str]]:
        """Return the data rows the job's files serve, in file order (raw CSV strings).

        Raises:
            KeyError: If there is no such job.
        """
        return list(self.iter_expected_rows(job_id))

    def iter_expected_rows(self, job_id: int) -> Iterator[dict[str, str]]:
        """Yield the data rows the job's files serve, in file order, without holding them all.

        Raises:
            KeyError: If there is no such job.
        """
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            msg = f"no export job {job_id}"
            raise KeyError(msg)
        return job.data.iter_all_rows()

    # -- request handling (called from server threads) ---------------------------------------

    def _begin(self) -> None:
        with self._lock:
            self._inflight += 1

    def _record(self, record: RequestRecord) -> None:
        with self._idle:
            self._requests.append(record)
            self._inflight -= 1
            self._idle.notify_all()
        LOGGER.info(
            "%s %s %s auth=%s%s",
            record.method,
            record.path,
            record.status or "dropped",
            "yes" if record.authorized else "no",
            f" fault={record.fault}" if record.fault else "",
        )

    def _take_fault(self, endpoint: str, instance: str | None) -> Fault | None:
        chosen: Fault | None = None
        with self._lock:
            for state in self._faults:
                fault = state.fault
                if not fault.applies_to(endpoint):
                    continue
                if fault.instance is not None and fault.instance != instance:
                    continue
                state.seen += 1
                due = state.seen > fault.after and (
                    fault.times is None or state.fired < fault.times
                )
                if due and chosen is None:
                    state.fired += 1
                    chosen = fault
        return chosen

    def _take_job_faults(self, instance: str) -> set[str]:
        kinds: set[str] = set()
        for state in self._faults:  # caller holds the lock
            fault = state.fault
            if fault.kind not in JOB_FAULTS:
                continue
            if fault.instance is not None and fault.instance != instance:
                continue
            state.seen += 1
            if state.seen > fault.after and (fault.times is None or state.fired < fault.times):
                state.fired += 1
                kinds.add(fault.kind)
        return kinds

    def _handle(self, req: _Request) -> _Reply:
        if req.endpoint == "token":
            return self._token(req)
        if req.endpoint in {"create", "get"}:
            return self._api(req)
        if req.endpoint == "download":
            return self._download(req)
        if req.path in {TOKEN_PATH, JOBS_PATH} or _JOB_PATH_RE.match(req.path):
            return _envelope(405, f"Method {req.method} is not allowed on this resource")
        return _envelope(404, f"No resource found for {req.path}")

    def _fault_reply(self, fault: Fault, req: _Request, token: str | None = None) -> _Reply | None:
        """Return the reply a fault replaces the response with, or None to answer normally."""
        req.fault = fault.kind
        kind = fault.kind
        if kind == "rate_limit":
            headers = [("X-RestLi-Protocol-Version", RESTLI_VERSION)]
            if fault.retry_after is not None:
                headers.append(("Retry-After", str(fault.retry_after)))
            message = fault.message or DAILY_LIMIT_MESSAGE
            return _json(429, {"message": message, "status": 429}, headers)
        if kind == "error":
            status = fault.status or 500
            return _envelope(status, fault.message or HTTPStatus(status).phrase)
        if kind == "forbidden":
            status = fault.status or 403
            api_path = req.path.removeprefix("/v2")
            message = fault.message or f"Not enough permissions to access: {req.method} {api_path}"
            return _envelope(status, message, 100)
        if kind == "token_expired":
            with self._lock:
                if token is not None and token in self._tokens:
                    self._tokens[token].forced_expired = True
            return _expired_token_reply()
        if kind == "slow":
            time.sleep(max(0.0, fault.delay))
        return None

    # token endpoint ---------------------------------------------------------------------

    def _token(self, req: _Request) -> _Reply:
        fault = self._take_fault("token", None)
        if fault is not None:
            replaced = self._fault_reply(fault, req)
            if replaced is not None:
                return replaced
        content_type = req.headers.get("Content-Type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return _json(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "Content-Type must be application/x-www-form-urlencoded",
                },
            )
        form = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        client_id = form.get("client_id", [""])[0]
        client_secret = form.get("client_secret", [""])[0]
        basic = req.headers.get("Authorization", "")
        if not client_id and basic.startswith("Basic "):
            try:
                decoded = base64.b64decode(basic[6:]).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            client_id, _, client_secret = decoded.partition(":")
        grant = form.get("grant_type", [""])[0]
        reply: _Reply
        if grant != "client_credentials":
            reply = _json(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant_type must be client_credentials",
                },
            )
        elif self.scenario.clients.get(client_id) != client_secret or not client_id:
            reply = _json(
                401,
                {"error": "invalid_client", "error_description": "Client authentication failed"},
            )
        else:
            ttl = self.scenario.token_ttl_seconds
            token = "AQV" + secrets.token_urlsafe(48)
            with self._lock:
                self._tokens[token] = _Token(client_id, self.clock.now_ms() + ttl * 1000)
            reply = _json(200, {"access_token": token, "expires_in": str(ttl)})
        reply.cut = fault if fault is not None and fault.kind in _CUT_FAULTS else None
        return reply

    # API endpoints ----------------------------------------------------------------------

    def _authenticate(self, req: _Request) -> tuple[str | None, _Reply | None]:
        header = req.headers.get("Authorization")
        if not header:
            return None, _envelope(401, "Empty oauth2_access_token", 401)
        scheme, _, token = header.partition(" ")
        token = token.strip()
        now = self.clock.now_ms()
        with self._lock:
            known = self._tokens.get(token) if scheme.lower() == "bearer" else None
            expired = known is not None and (known.forced_expired or now >= known.expires_at)
        if known is None:
            body = {
                "status": 401,
                "serviceErrorCode": 65600,
                "code": "INVALID_ACCESS_TOKEN",
                "message": "Invalid access token",
            }
            return None, _json(401, body)
        if expired:
            return None, _expired_token_reply()
        return token, None

    def _api(self, req: _Request) -> _Reply:
        req.instance = _first(req.query, "crmInstanceId")
        token, error = self._authenticate(req)
        if error is not None:
            return error
        if self.scenario.require_restli_header and (
            req.headers.get(RESTLI_HEADER, "").strip() != RESTLI_VERSION
        ):
            return _envelope(400, f"{RESTLI_HEADER}: {RESTLI_VERSION} header is required")
        endpoint = req.endpoint or ""
        fault = self._take_fault(endpoint, req.instance)
        if fault is not None:
            replaced = self._fault_reply(fault, req, token)
            if replaced is not None:
                return replaced
        reply = self._create(req) if endpoint == "create" else self._get(req)
        reply.cut = fault if fault is not None and fault.kind in _CUT_FAULTS else None
        return reply

    def _check_instance(self, req: _Request) -> _Reply | None:  # noqa: PLR0911
        urn = req.instance
        if not urn:
            return _envelope(400, "Missing required query parameter crmInstanceId")
        match = _URN_RE.match(urn)
        if match is None:
            return _envelope(
                400, "Invalid crmInstanceId: expected urn:li:crmInstance:(CRM_KEY,VALUE)"
            )
        if match.group(1) not in self.scenario.crm_keys:
            return _envelope(400, f"Invalid CRM key {match.group(1)} in crmInstanceId")
        spec = self.scenario.instances.get(urn)
        api_path = req.path.removeprefix("/v2")
        denied = f"Not enough permissions to access: {req.method} {api_path}"
        if spec is None:
            if self.scenario.unknown_instance_status == HTTPStatus.FORBIDDEN:
                return _envelope(403, denied, 100)
            return _envelope(self.scenario.unknown_instance_status, "CRM instance not found")
        if not spec.permitted:
            return _envelope(403, denied, 100)
        return None

    def _create(self, req: _Request) -> _Reply:
        error = self._check_instance(req)
        if error is not None:
            return error
        try:
            payload = json.loads(req.body or b"null")
        except ValueError:
            return _envelope(400, "Request body is not valid JSON")
        start = payload.get("exportStartAt") if isinstance(payload, dict) else None
        if not isinstance(start, int) or isinstance(start, bool):
            return _envelope(400, "exportStartAt must be an integer (epoch milliseconds)")
        now = self.clock.now_ms()
        if start > now:
            return _envelope(400, "exportStartAt must not be in the future")
        urn = t.cast("str", req.instance)
        spec = self.scenario.instances[urn]
        start = max(start, now - self.scenario.lookback_days * _DAY_MS)
        with self._lock:
            job_id = self._next_job_id
            self._next_job_id += 1
            kinds = self._take_job_faults(urn)
            files = plan_files(
                spec.rows,
                spec.files,
                spec.columns if spec.columns is not None else self.scenario.columns,
                header_drift=spec.header_drift or "header_drift" in kinds,
                file_columns=spec.file_columns,
            )
            plan = ExportPlan(
                seed=self.scenario.seed,
                instance=urn,
                job_id=job_id,
                export_start_at=start,
                export_end_at=now,
                files=files,
                gzip=spec.gzip,
                bom=self.scenario.bom,
                nul_bytes=self.scenario.nul_bytes,
                long_field_chars=self.scenario.long_field_chars,
            )
            self._jobs[job_id] = _Job(
                job_id=job_id,
                instance=urn,
                export_start_at=start,
                export_end_at=now,
                created_at=now,
                data=ExportData(plan, self._base_cache),
                fail="job_failed" in kinds,
                never="job_never_finishes" in kinds,
            )
        req.job_id = job_id
        if kinds:
            req.fault = ",".join(sorted(kinds))
        headers = [
            ("X-RestLi-Id", str(job_id)),
            ("Location", f"/crmDataValidationExportJobs/{job_id}"),
            ("X-RestLi-Protocol-Version", RESTLI_VERSION),
        ]
        return _Reply(201, headers)

    def _next_start(self, job: _Job) -> int:
        if self.scenario.next_export_start == "start":
            return job.export_start_at
        return job.export_end_at

    def _issue_urls(self, job: _Job, now: int) -> None:
        job.generation += 1
        job.expire_at = now + self.scenario.url_ttl_seconds * 1000
        job.urls = []
        base = self.base_url
        for fplan in job.data.plan.files:
            token = "AQ" + secrets.token_urlsafe(40)
            self._downloads[token] = (job.job_id, fplan.index, job.generation)
            job.urls.append(f"{base}/ambry/?{AMBRY_PARAM}={token}")

    @staticmethod
    def _expire_urls(job: _Job, now: int) -> None:
        if job.expire_at is not None:
            job.expire_at = min(job.expire_at, now)

    def _advance(self, job: _Job, now: int) -> None:
        """Count one poll and move the job on: complete or fail it, or renew expired URLs."""
        scenario = self.scenario
        job.polls += 1
        if job.status == "PROCESSING" and not job.never:
            if scenario.processing_seconds is not None:
                done = now - job.created_at >= scenario.processing_seconds * 1000
            else:
                done = job.polls > scenario.job_processing_polls
            if done and job.fail:
                job.status = "FAILED_DUE_TO_INTERNAL_ERROR"
            elif done:
                job.status = "COMPLETED"
                job.completed_at = now
                self._issue_urls(job, now)
        elif job.status == "COMPLETED" and job.expire_at is not None and now >= job.expire_at:
            self._issue_urls(job, now)

    def _get(self, req: _Request) -> _Reply:
        match = _JOB_PATH_RE.match(req.path)
        raw_id = match.group(1) if match else ""
        if not raw_id.isdigit():
            return _envelope(400, f"Invalid job id {raw_id!r}: expected a long")
        job_id = int(raw_id)
        req.job_id = job_id
        error = self._check_instance(req)
        if error is not None:
            return error
        now = self.clock.now_ms()
        retention = self.scenario.job_retention_days * _DAY_MS
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.instance != req.instance or now - job.created_at > retention:
                return _envelope(404, f"Export job {job_id} not found")
            self._advance(job, now)
            body: dict[str, t.Any] = {
                "jobId": job.job_id,
                "exportStartAt": job.export_start_at,
                "status": job.status,
            }
            if job.status == "COMPLETED":
                body.update(
                    exportEndAt=job.export_end_at,
                    downloadUrls=list(job.urls),
                    nextExportStartAt=self._next_start(job),
                    expireAt=job.expire_at,
                )
            elif job.status != "PROCESSING":
                body["exportEndAt"] = job.export_end_at
        return _json(200, body, [("X-RestLi-Protocol-Version", RESTLI_VERSION)])

    # downloads --------------------------------------------------------------------------

    def _download(self, req: _Request) -> _Reply:
        token = _first(req.query, AMBRY_PARAM) or ""
        with self._lock:
            entry = self._downloads.get(token)
            job = self._jobs.get(entry[0]) if entry else None
        if entry is None or job is None:
            return _envelope(404, "Not found")
        _, file_index, generation = entry
        req.instance, req.job_id = job.instance, job.job_id
        fault = self._take_fault("download", job.instance)
        if fault is not None:
            replaced = self._fault_reply(fault, req)
            if replaced is not None:
                return replaced
        now = self.clock.now_ms()
        expired_reply = _envelope(403, "The download URL has expired")
        with self._lock:
            if fault is not None and fault.kind == "url_expired":
                self._expire_urls(job, now)
            if generation != job.generation or job.expire_at is None or now >= job.expire_at:
                return expired_reply
            if fault is not None and fault.kind == "url_expires_mid_download":
                self._expire_urls(job, now)
        plan = job.data.plan
        corrupt = fault is not None and fault.kind == "corrupt_gzip"
        gzip = plan.gzip or corrupt
        chunks = job.data.iter_chunks(file_index, gzip=gzip)
        if corrupt:
            chunks = _corrupt(chunks)
        suffix = ".csv.gz" if gzip else ".csv"
        headers = [
            ("Content-Type", "application/gzip" if gzip else "text/csv; charset=utf-8"),
            (
                "Content-Disposition",
                f'attachment; filename="crm-data-validation-{job.job_id}-{file_index}{suffix}"',
            ),
        ]
        cut = fault if fault is not None and fault.kind in _CUT_FAULTS else None
        if plan.files[file_index].rows <= self.scenario.stream_threshold_rows:
            return _Reply(200, headers, b"".join(chunks), cut=cut)
        return _Reply(200, headers, stream=chunks, cut=cut)


def _expired_token_reply() -> _Reply:
    body = {
        "status": 401,
        "serviceErrorCode": 65600,
        "code": "EXPIRED_ACCESS_TOKEN",
        "message": "The token used in the request has expired",
    }
    return _json(401, body)


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)

    def handle_error(self, request: t.Any, client_address: t.Any) -> None:  # noqa: ANN401, ARG002
        LOGGER.debug("connection from %s ended with an error", client_address, exc_info=True)  # noqa: LOG014


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LinkedInCRMSandbox/1.0"
    timeout = 60
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.sandbox._lock:  # noqa: SLF001
            self.server.sandbox._connections.add(self.connection)  # noqa: SLF001

    def finish(self) -> None:
        with self.server.sandbox._lock:  # noqa: SLF001
            self.server.sandbox._connections.discard(self.connection)  # noqa: SLF001
        try:
            super().finish()
        except OSError:
            LOGGER.debug("error while closing a connection", exc_info=True)

    def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002, ANN401
        """Silence the default access log: it would print query strings (signed tokens)."""

    def log_error(self, format: str, *args: t.Any) -> None:  # noqa: A002, ANN401, ARG002
        """Log protocol errors at debug level without the request line."""
        LOGGER.debug("protocol error %s", args[0] if args else "")

    def do_GET(self) -> None:
        """Answer a GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Answer a POST."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Answer a PUT (always 405 or 404)."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Answer a DELETE (always 405 or 404)."""
        self._dispatch()

    def _dispatch(self) -> None:
        started = time.perf_counter()
        sandbox = self.server.sandbox
        split = urlsplit(self.path)
        req = _Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=b"",
            endpoint=_classify(self.command, split.path),
            authorized=bool(self.headers.get("Authorization")),
        )
        status, sent = 0, 0
        sandbox._begin()  # noqa: SLF001
        try:
            length = int(self.headers.get("Content-Length") or 0)
            req.body = self.rfile.read(length) if length > 0 else b""
            try:
                reply = sandbox._handle(req)  # noqa: SLF001
            except Exception:
                LOGGER.exception("sandbox failed on %s %s", req.method, req.path)
                reply = _envelope(500, "Internal Server Error")
            if reply.cut is not None:
                req.fault = reply.cut.kind
            status, sent = self._write(reply, req)
        except (OSError, ValueError):
            self.close_connection = True
            LOGGER.debug("connection broke during %s %s", req.method, req.path)
        finally:
            sandbox._record(  # noqa: SLF001
                RequestRecord(
                    method=req.method,
                    path=req.path,
                    status=status,
                    authorized=req.authorized,
                    endpoint=req.endpoint,
                    instance=req.instance,
                    job_id=req.job_id,
                    fault=req.fault,
                    bytes_sent=sent,
                    duration_ms=(time.perf_counter() - started) * 1000,
                )
            )

    def _write(self, reply: _Reply, req: _Request) -> tuple[int, int]:
        cut = reply.cut
        if cut is not None and cut.kind == "drop" and req.endpoint != "download":
            self.close_connection = True
            return 0, 0
        limit = max(0, cut.after_bytes) if cut is not None else None
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.stream is None:
            body = reply.body
            data = body if limit is None else body[: min(limit, max(len(body) - 1, 0))]
            claimed = len(body) if limit is None else max(len(body), len(data) + 1)
            self.send_header("Content-Length", str(claimed))
            self.end_headers()
            self.wfile.write(data)
            if limit is not None:
                self.close_connection = True
            return reply.status, len(data)
        if cut is not None and cut.kind == "truncate":
            self.send_header("Content-Length", str((limit or 0) + TRUNCATE_CLAIM_EXTRA))
            self.end_headers()
            return reply.status, self._write_stream(reply.stream, limit, chunked=False)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        return reply.status, self._write_stream(reply.stream, limit, chunked=True)

    def _write_stream(self, stream: Iterator[bytes], limit: int | None, *, chunked: bool) -> int:
        sent = 0
        write: Callable[[bytes], t.Any] = self.wfile.write
        for chunk in stream:
            piece = chunk if limit is None else chunk[: limit - sent]
            if piece:
                write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if limit is not None and sent >= limit:
                break
        if limit is not None:
            self.close_connection = True
        elif chunked:
            write(b"0\r\n\r\n")
        return sent
