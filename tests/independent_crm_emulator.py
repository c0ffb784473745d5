"""An independent CRM Data Validation emulator, written from the API notes, not from our sandbox.

Two loopback servers: the API (token endpoint and `/v2/crmDataValidationExportJobs`) and a
separate file host (another port) whose URLs carry a query-string signature. Everything a
different emulator (or real LinkedIn) might plausibly do differently is a knob:

- `Job.files`: the bytes of each file, written by the caller (any header, BOM, CRLF...);
  `gzip_files` compresses them, `content_encoding` says so in a header (or not).
- `statuses`: what successive GETs of a job answer before COMPLETED (`IN_PROGRESS`, `QUEUED`...).
- `id_as_string`, `times_as_strings`, `time_style`, `extra_fields`: the shape of the GET body.
- `restli_id`: how the create call names the job: `"number"`, `"string"` (quoted), `"urn"`,
  `"location-only"` (no X-RestLi-Id; a Location with the query string), `"none"`.
- `token_body`: the token endpoint's answer.
- `faults`: per request kind (`token`, `create`, `get`, `download`), a list of scripted actions
  used one per request of that kind: None (answer normally), a `Fault`.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import hashlib
import json
import socket
import threading
import time
import typing as t
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if t.TYPE_CHECKING:
    from types import TracebackType

CLIENT_ID = "indie-client"
CLIENT_SECRET = "indie-secret-Zp9/+=do-not-log"
TOKEN = "indie-token-Kq7v-do-not-log"
SIGNATURE_MARK = "sig-Wm3-do-not-log"


@dataclass
class Fault:
    """One scripted misbehaviour.

    status/body/headers: answer this instead. reset_after: send the normal headers and this many
    body bytes, then close the connection. delay: sleep this long before answering normally
    (or before the scripted answer).
    """

    status: int | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reset_after: int | None = None
    delay: float = 0.0
    #: Repeat this fault for every request of its kind until this wall-clock time (epoch s).
    until: float | None = None


@dataclass
class Job:
    job_id: int
    urn: str
    start_at: int
    created_at: int
    files: list[bytes]
    polls: int = 0
    expired: bool = False


class CrmEmulator:
    """`with CrmEmulator(files_for=...) as emu:` ... `emu.config()`, `emu.jobs`, `emu.requests`."""

    def __init__(  # noqa: PLR0913
        self,
        files_for: t.Callable[[int], list[bytes]],
        *,
        statuses: t.Sequence[str] = ("QUEUED", "IN_PROGRESS"),
        id_as_string: bool = False,
        times_as_strings: bool = False,
        time_style: str = "ms",
        extra_fields: bool = True,
        restli_id: str = "number",
        gzip_files: bool = False,
        content_encoding: bool = False,
        content_type: str = "application/octet-stream",
        token_body: dict[str, t.Any] | None = None,
        faults: dict[str, list[Fault | None]] | None = None,
        first_job_id: int = 7001,
        url_ttl_ms: int = 3_600_000,
        next_start_equals_start: bool = False,
        slow_download: float = 0.0,
        urls_field: str = "downloadUrls",
        final_status: dict[int, str] | None = None,
    ) -> None:
        self.files_for = files_for
        self.statuses = list(statuses)
        self.id_as_string = id_as_string
        self.times_as_strings = times_as_strings
        #: "ms" (documented), "s" (epoch seconds) or "iso" (ISO 8601 text) for job times.
        self.time_style = time_style
        self.extra_fields = extra_fields
        self.restli_id = restli_id
        self.gzip_files = gzip_files
        self.content_encoding = content_encoding
        self.content_type = content_type
        self.token_body = token_body or {
            "access_token": TOKEN,
            "expires_in": "1800",
            "scope": "r_sales_nav_validation",
            "token_type": "Bearer",
        }
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.next_id = first_job_id
        self.url_ttl_ms = url_ttl_ms
        self.next_start_equals_start = next_start_equals_start
        #: Seconds to sleep after each 64 KiB of a download (to kill a tap mid-file).
        self.slow_download = slow_download
        self.create_bodies: list[dict[str, t.Any]] = []
        #: The field of a completed job holding its files; any other name than `downloadUrls`
        #: gets a single URL as a string when there is one file (as LinkedIn's tutorial words it).
        self.urls_field = urls_field
        #: Jobs (by id) that end in another status than COMPLETED, and keep it.
        self.final_status = final_status or {}
        self.jobs: dict[int, Job] = {}
        self.requests: list[tuple[str, str, str, dict[str, str]]] = []  # kind, method, path, hdrs
        self.lock = threading.Lock()
        self.api = _Server(self._handle_api)
        self.files = _Server(self._handle_file)

    # --- lifecycle ---
    def __enter__(self) -> t.Self:
        self.api.start()
        self.files.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.api.stop()
        self.files.stop()

    def config(self, urns: list[str], **extra: t.Any) -> dict[str, t.Any]:
        return {
            "crm_instance_ids": urns,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "api_url": f"{self.api.url}/v2",
            "token_url": f"{self.api.url}/oauth/v2/accessToken",
            "poll_interval": 0.05,
            "poll_max_interval": 0.1,
            "request_retry_delay": 0.05,
            "request_timeout": 5,
            "job_timeout": 30,
            **extra,
        }

    def count(self, kind: str) -> int:
        return sum(1 for r in self.requests if r[0] == kind)

    # --- helpers ---
    def _fault(self, kind: str) -> Fault | None:
        with self.lock:
            queue = self.faults.get(kind)
            if queue:
                fault = queue[0]
                if fault is None or fault.until is None or time.time() >= fault.until:
                    queue.pop(0)
                if fault is not None and fault.until is not None and time.time() >= fault.until:
                    return self._fault_locked(kind)
                return fault
        return None

    def _fault_locked(self, kind: str) -> Fault | None:
        queue = self.faults.get(kind)
        return queue.pop(0) if queue else None

    def _now(self) -> int:
        return int(time.time() * 1000)

    def _sig(self, job_id: int, index: int, expires: int) -> str:
        raw = f"{job_id}:{index}:{expires}".encode()
        return SIGNATURE_MARK + hashlib.sha256(raw).hexdigest()[:16]

    def _num(self, value: int) -> t.Any:
        if self.time_style == "s":
            value //= 1000
        elif self.time_style == "iso":
            moment = time.gmtime(value / 1000)
            return time.strftime("%Y-%m-%dT%H:%M:%S", moment) + f".{value % 1000:03d}Z"
        return str(value) if self.times_as_strings else value

    # --- API ---
    def _handle_api(self, h: _Handler) -> None:  # noqa: C901, PLR0911, PLR0912, PLR0915
        parts = urllib.parse.urlsplit(h.path)
        query = urllib.parse.parse_qs(parts.query)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if parts.path == "/oauth/v2/accessToken":
            self.requests.append(("token", h.command, parts.path, dict(h.headers.items())))
            fault = self._fault("token")
            if fault and h.apply(fault):
                return
            form = urllib.parse.parse_qs(body.decode())
            if form.get("client_secret") != [CLIENT_SECRET] or form.get("client_id") != [CLIENT_ID]:
                h.reply(401, {"error": "invalid_client", "error_description": "Client auth failed"})
                return
            h.reply(200, self.token_body)
            return
        if not parts.path.startswith("/v2/crmDataValidationExportJobs"):
            h.reply(404, {"message": "No such resource", "status": 404})
            return
        kind = "create" if h.command == "POST" else "get"
        self.requests.append((kind, h.command, h.path, dict(h.headers.items())))
        fault = self._fault(kind)
        if fault and h.apply(fault):
            return
        if h.headers.get("Authorization") != f"Bearer {TOKEN}":
            h.reply(
                401,
                {
                    "status": 401,
                    "serviceErrorCode": 65600,
                    "code": "INVALID_ACCESS_TOKEN",
                    "message": "Invalid access token",
                },
            )
            return
        if h.headers.get("X-Restli-Protocol-Version") != "2.0.0":
            h.reply(400, {"message": "missing protocol version", "status": 400})
            return
        # The URN must be percent-encoded whole in the raw query.
        raw_q = parts.query
        if "crmInstanceId=urn%3Ali%3AcrmInstance%3A%28" not in raw_q:
            h.reply(400, {"message": f"bad crmInstanceId {raw_q}", "status": 400})
            return
        urn = query["crmInstanceId"][0]
        if kind == "create":
            if parts.path != "/v2/crmDataValidationExportJobs":
                h.reply(404, {"message": "no", "status": 404})
                return
            try:
                self.create_bodies.append(json.loads(body))
                start = json.loads(body)["exportStartAt"]
                assert isinstance(start, int)
            except Exception:  # noqa: BLE001
                h.reply(400, {"message": "exportStartAt required", "status": 400})
                return
            now = self._now()
            with self.lock:
                job_id = self.next_id
                self.next_id += 1
                start = max(start, now - 30 * 86_400_000)
                self.jobs[job_id] = Job(job_id, urn, start, now, self.files_for(job_id))
            headers = {
                "Date": email.utils.formatdate(now / 1000, usegmt=True),
                "X-RestLi-Protocol-Version": "2.0.0",
            }
            if self.restli_id == "number":
                headers["X-RestLi-Id"] = str(job_id)
            elif self.restli_id == "string":
                headers["X-RestLi-Id"] = f'"{job_id}"'
            elif self.restli_id == "urn":
                headers["X-RestLi-Id"] = f"urn:li:crmDataValidationExportJob:{job_id}"
            if self.restli_id != "none":
                # With the query GET needs, so the Location can be fetched as it is.
                headers["Location"] = (
                    f"/crmDataValidationExportJobs/{job_id}?{parts.query}"
                    if self.restli_id == "location-only"
                    else f"/crmDataValidationExportJobs/{job_id}"
                )
            h.reply(201, None, headers)
            return
        tail = parts.path.rsplit("/", 1)[-1]
        job = self.jobs.get(int(tail)) if tail.isdigit() else None
        if job is None or job.urn != urn:
            h.reply(404, {"message": "Not found", "status": 404, "serviceErrorCode": 0})
            return
        job.polls += 1
        jid: t.Any = str(job.job_id) if self.id_as_string else job.job_id
        if job.polls > len(self.statuses) and job.job_id in self.final_status:
            doc = {
                "jobId": jid,
                "status": self.final_status[job.job_id],
                "exportStartAt": self._num(job.start_at),
            }
        elif job.polls <= len(self.statuses):
            doc: dict[str, t.Any] = {
                "jobId": jid,
                "status": self.statuses[job.polls - 1],
                "exportStartAt": self._num(job.start_at),
            }
        else:
            now = self._now()
            expires = now + self.url_ttl_ms
            urls = [
                f"{self.files.url}/ambry/blob-{job.job_id}-{i}.csv?x-li-ambry-ep="
                f"{self._sig(job.job_id, i, expires)}&exp={expires}"
                for i in range(len(job.files))
            ]
            end = job.created_at
            doc = {
                "jobId": jid,
                "status": "COMPLETED",
                "exportStartAt": self._num(job.start_at),
                "exportEndAt": self._num(end),
                "nextExportStartAt": self._num(
                    job.start_at if self.next_start_equals_start else end
                ),
                "expireAt": self._num(expires),
                self.urls_field: urls[0]
                if self.urls_field != "downloadUrls" and len(urls) == 1
                else urls,
            }
        if self.extra_fields:
            doc.update(
                {
                    "crmInstance": urn,
                    "$URN": f"urn:li:crmDataValidationExportJob:{job.job_id}",
                    "paging": None,
                    "meta": {"region": "emu"},
                }
            )
        h.reply(200, doc, {"Content-Type": "application/json; charset=utf-8"})

    # --- files ---
    def _handle_file(self, h: _Handler) -> None:  # noqa: C901
        parts = urllib.parse.urlsplit(h.path)
        self.requests.append(("download", h.command, parts.path, dict(h.headers.items())))
        fault = self._fault("download")
        if fault and fault.reset_after is None and h.apply(fault):
            return
        q = urllib.parse.parse_qs(parts.query)
        name = parts.path.rsplit("/", 1)[-1]
        try:
            _, jid, idx = name.removesuffix(".csv").split("-")
            job = self.jobs[int(jid)]
            index = int(idx)
            expires = int(q["exp"][0])
            ok = q["x-li-ambry-ep"][0] == self._sig(job.job_id, index, expires)
        except (KeyError, ValueError):
            ok = False
        if not ok:
            h.reply_raw(
                404, b"<Error><Code>NoSuchKey</Code></Error>", {"Content-Type": "application/xml"}
            )
            return
        if expires < self._now():
            h.reply_raw(
                403,
                b"<?xml version='1.0'?><Error><Code>AccessDenied</Code>"
                b"<Message>Request has expired</Message></Error>",
                {"Content-Type": "application/xml"},
            )
            return
        data = job.files[index]
        headers = {"Content-Type": self.content_type}
        if self.gzip_files:
            data = gzip.compress(data)
            if self.content_encoding:
                headers["Content-Encoding"] = "gzip"
        if fault and fault.reset_after is not None:
            h.send_response_only(200)
            h.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data[: fault.reset_after])
            h.wfile.flush()
            h.close_connection = True

            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.slow_download:
            h.send_response_only(200)
            h.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            for i in range(0, len(data), 65536):
                try:
                    h.wfile.write(data[i : i + 65536])
                    h.wfile.flush()
                except OSError:
                    return
                time.sleep(self.slow_download)
            return
        h.reply_raw(200, data, headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    dispatch: t.Callable[[_Handler], None]

    def do_GET(self) -> None:
        type(self).dispatch(self)

    do_POST = do_GET  # noqa: N815

    def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002
        return

    def reply(self, status: int, doc: t.Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if doc is None else json.dumps(doc).encode()
        hdrs = {"Content-Type": "application/json"} if doc is not None else {}
        hdrs.update(headers or {})
        self.reply_raw(status, data, hdrs)

    def reply_raw(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response_only(status)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def apply(self, fault: Fault) -> bool:
        """Apply a scripted fault; True when it answered (the caller stops)."""
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status is None:
            return False
        self.reply_raw(fault.status, fault.body, fault.headers)
        return True


class _Server:
    def __init__(self, dispatch: t.Callable[[_Handler], None]) -> None:
        handler = type("H", (_Handler,), {"dispatch": staticmethod(dispatch)})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
