"""An independent Sales Navigator Analytics emulator, written from the API notes alone.

Not built on `tap_linkedin_crm.sandbox`: its CSV headers, date formats, paging and faults differ on
purpose, as another emulator (or LinkedIn itself) plausibly would. Stdlib only, loopback only.

`Profile` says how it answers; `rows(contract, export_type, start_ms, end_ms)` is what a window's
file holds (as dicts of header -> text), so a test can compare what the tap emitted with it.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import typing as t
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DAY_MS = 86_400_000
ACTIONS = {
    "exportActivityData": "activity",
    "exportActivityOutcomeData": "activity_outcome",
    "exportSeatData": "seat",
}
ACTIVITY_TYPES = (
    "SAVED_LEAD",
    "SAVED_ACCOUNT",
    "SEARCH_PERFORMED",
    "PROFILE_VIEWED",
    "INMAIL_SENT",
)


@dataclass
class Profile:
    """How the emulator answers. Defaults are one plausible LinkedIn; tests change fields."""

    contracts: list[dict[str, t.Any]] = field(
        default_factory=lambda: [
            {"contract": "urn:li:contract:7001", "name": "A", "hasReportingAccess": True},
            {"contract": "urn:li:contract:7002", "name": "B", "hasReportingAccess": True},
            {"contract": "urn:li:contract:7003", "name": "C", "hasReportingAccess": False},
        ]
    )
    contracts_page: int = 2  # elements per page, whatever `count` asks
    contracts_ignore_start: bool = False  # every page is the first one
    contracts_total: bool = False  # send paging.total
    contracts_dup_across_pages: bool = False  # page n+1 repeats the last element of page n
    rows_per_day: int = 3
    # activity CSV
    activity_header: tuple[str, ...] = (
        "activityType",
        "seatId",
        "activityId",
        "createdAt",
        "memberIdentityKey",
        "deviceType",
    )
    created_at: str = "mdY"  # mdY, mdY_nopad, epoch_ms, iso, iso_ms_offset, mdY_slash
    seat_base: int = 9_007_199_254_740_993  # above 2**53
    outcome_header: tuple[str, ...] = ("activityId", "activityType", "outcomeAt", "seatId")
    seat_header: tuple[str, ...] = (
        "Seat Holder Name",
        "Seat Status",
        "SSI Score",
        "Profile Completeness %",
        "Total Connections",
    )
    bom: bool = True
    crlf: bool = True
    header_only_empty: bool = True  # a window without rows: header only (else 0 bytes)
    create_wrapped: bool = True  # {"value": {...}} on create
    create_status: int = 200
    id_as_string: bool = True
    status_case: str = "upper"  # upper / lower / title
    get_wrapped: bool = False
    row_count: str = "int"  # int / str / absent
    polls_until_done: int = 1
    expire_at: str = "ms"  # ms / s / iso / absent
    relative_url: bool = False  # downloadUrl as a path on the API host
    url_ttl_ms: int = 3_600_000
    refresh_rotates: bool = False  # answer refresh grants with a new refresh_token
    refresh_returns_same: bool = False  # answer with the same refresh_token
    expires_in_str: bool = True
    # scripted faults: list of (kind, predicate args...), consumed when they fire
    faults: list[dict[str, t.Any]] = field(default_factory=list)


@dataclass
class Job:
    id: int
    contract: str
    export_type: str
    start_at: int
    end_at: int
    polls: int = 0
    status: str = "ENQUEUED"
    token: str | None = None
    expire_at: int | None = None
    failed: str | None = None


class Emulator:
    def __init__(self, profile: Profile | None = None, *, client_id: str = "emu-client") -> None:
        self.profile = profile or Profile()
        self.client_id = client_id
        self.client_secret = "emu-secret-Zq9/+="
        self.refresh_token = "emu-refresh-R1"
        self.access_tokens: set[str] = set()
        self.revoked_refresh: set[str] = set()
        self.jobs: dict[int, Job] = {}
        self.downloads: dict[str, int] = {}
        self.log: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self._next_id = 880_000
        self._tokens = 0
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                emulator._handle(self, "GET")

            def do_POST(self) -> None:
                emulator._handle(self, "POST")

            def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> t.Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def config(self, **overrides: t.Any) -> dict[str, t.Any]:
        config = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
            "api_url": self.url + "/v2",
            "token_url": self.url + "/oauth/v2/accessToken",
            "poll_interval": 0.05,
            "poll_max_interval": 0.2,
            "request_timeout": 10,
            "job_timeout": 60,
            "request_retry_delay": 0.05,
            "analytics_window_days": 2,
            "analytics_lag_hours": 0,
        }
        config.update(overrides)
        return config

    # -- data -----------------------------------------------------------------------------------
    def _created_at(self, ms: int) -> str:
        moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
        style = self.profile.created_at
        if style == "mdY":
            return moment.strftime("%m-%d-%Y %H:%M:%S")
        if style == "mdY_nopad":
            return f"{moment.month}-{moment.day}-{moment.year} {moment:%-H:%M:%S}"
        if style == "mdY_slash":
            return moment.strftime("%m/%d/%Y %H:%M:%S")
        if style == "epoch_ms":
            return str(ms)
        if style == "iso":
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        if style == "iso_ms_offset":
            return moment.isoformat(timespec="milliseconds")
        raise ValueError(style)

    def created_at_text(self, rfc3339: str) -> str:
        """A timestamp the tap wrote, spelt as this emulator spells `createdAt`."""
        moment = dt.datetime.fromisoformat(rfc3339)
        return self._created_at(int(moment.timestamp() * 1000))

    def rows(
        self, contract: str, export_type: str, start_ms: int, end_ms: int
    ) -> list[dict[str, str]]:
        """Every row of the window: per UTC day, `rows_per_day` rows."""
        out: list[dict[str, str]] = []
        cid = contract.rsplit(":", 1)[-1]
        day = start_ms - start_ms % DAY_MS
        while day < end_ms:
            for i in range(self.profile.rows_per_day):
                ms = day + (i + 1) * 3_600_000 + i * 61_000 + 7_000
                if not start_ms <= ms < end_ms:
                    continue
                act_id = f"{cid}-{day // DAY_MS}-{i}"
                kind = ACTIVITY_TYPES[(day // DAY_MS + i) % len(ACTIVITY_TYPES)]
                seat = str(self.profile.seat_base + i)
                if export_type == "activity":
                    values = {
                        "activityId": act_id,
                        "activityType": kind,
                        "createdAt": self._created_at(ms),
                        "seatId": seat,
                        "memberIdentityKey": "" if kind == "SAVED_ACCOUNT" else f"mik-{act_id}",
                        "deviceType": "DESKTOP",
                    }
                    out.append({h: values.get(h, "") for h in self.profile.activity_header})
                elif export_type == "activity_outcome":
                    values = {
                        "activityId": act_id,
                        "activityType": "INMAIL_ACCEPTED" if i % 2 else "INMAIL_DECLINED",
                        "outcomeAt": self._created_at(ms),
                        "seatId": seat,
                    }
                    out.append({h: values.get(h, f"x{i}") for h in self.profile.outcome_header})
                else:
                    values = [
                        f"Rep {cid} {i}, Jr.",
                        "ACTIVE" if i % 2 == 0 else "INACTIVE",
                        f"{55.5 + i:.2f}",
                        f"{80 + i}%",
                        str(500 + i),
                    ]
                    out.append(dict(zip(self.profile.seat_header, values, strict=False)))
            day += DAY_MS
        return out

    def _csv(self, job: Job) -> bytes:
        header = {
            "activity": self.profile.activity_header,
            "activity_outcome": self.profile.outcome_header,
            "seat": self.profile.seat_header,
        }[job.export_type]
        rows = self.rows(job.contract, job.export_type, job.start_at, job.end_at)
        if not rows and not self.profile.header_only_empty:
            return b""
        eol = "\r\n" if self.profile.crlf else "\n"

        def cell(v: str) -> str:
            return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\r\n') else v

        lines = [",".join(cell(h) for h in header)]
        lines += [",".join(cell(r[h]) for h in header) for r in rows]
        text = eol.join(lines) + eol
        return (b"\xef\xbb\xbf" if self.profile.bom else b"") + text.encode()

    # -- HTTP -----------------------------------------------------------------------------------
    def _fault(self, where: str, req: BaseHTTPRequestHandler) -> bool:
        """Answer with the first scripted fault matching `where`, if any (consumes one use)."""
        with self.lock:
            for fault in self.profile.faults:
                if fault["where"] != where or fault.get("times", 1) <= 0:
                    continue
                if fault.get("skip", 0) > 0:
                    fault["skip"] -= 1
                    continue
                fault["times"] = fault.get("times", 1) - 1
                fault["fired"] = fault.get("fired", 0) + 1
                break
            else:
                return False
        if fault.get("revoke_tokens"):
            self.access_tokens.clear()
        body = fault.get("body", {"message": "fault", "status": fault["status"]})
        self._send(req, fault["status"], body)
        return True

    def _send(
        self,
        req: BaseHTTPRequestHandler,
        status: int,
        body: t.Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = (
            body
            if isinstance(body, bytes)
            else (b"" if body is None else json.dumps(body).encode())
        )
        req.send_response(status)
        req.send_header("Content-Length", str(len(data)))
        req.send_header(
            "Content-Type", "text/csv" if isinstance(body, bytes) else "application/json"
        )
        for k, v in (headers or {}).items():
            req.send_header(k, v)
        req.end_headers()
        req.wfile.write(data)

    def _status(self, status: str) -> str:
        case = self.profile.status_case
        return status.lower() if case == "lower" else status.title() if case == "title" else status

    def _handle(  # noqa: C901, PLR0911 - one route per branch
        self, req: BaseHTTPRequestHandler, method: str
    ) -> None:
        parts = urllib.parse.urlsplit(req.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        path = parts.path
        with self.lock:
            self.log.append((method, path, len(self.log)))
        if path == "/oauth/v2/accessToken":
            return self._token(req, urllib.parse.parse_qs(raw.decode()))
        if path.startswith("/ambry/"):
            return self._download(req, query)
        auth = req.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.access_tokens:
            return self._send(
                req,
                401,
                {
                    "status": 401,
                    "serviceErrorCode": 65600,
                    "code": "INVALID_ACCESS_TOKEN",
                    "message": "Invalid access token",
                },
            )
        if req.headers.get("X-Restli-Protocol-Version") != "2.0.0":
            return self._send(req, 400, {"message": "missing protocol version", "status": 400})
        if path == "/v2/salesContracts" and method == "GET":
            if self._fault("contracts", req):
                return None
            return self._contracts(req, query)
        if path == "/v2/salesAnalyticsExportJobs" and method == "POST":
            if self._fault("create", req):
                return None
            return self._create(req, query, json.loads(raw or b"{}"))
        if path.startswith("/v2/salesAnalyticsExportJobs/") and method == "GET":
            if self._fault("get", req):
                return None
            return self._get(req, int(path.rsplit("/", 1)[1]), query)
        return self._send(req, 404, {"message": "no such resource", "status": 404})

    def _token(self, req: BaseHTTPRequestHandler, form: dict[str, list[str]]) -> None:
        if self._fault("token", req):
            return None
        grant = form.get("grant_type", [""])[0]
        if (
            form.get("client_id", [""])[0] != self.client_id
            or form.get("client_secret", [""])[0] != self.client_secret
        ):
            return self._send(
                req, 401, {"error": "invalid_client", "error_description": "bad client"}
            )
        if grant != "refresh_token":
            return self._send(
                req, 400, {"error": "unsupported_grant_type", "error_description": grant}
            )
        presented = form.get("refresh_token", [""])[0]
        if presented != self.refresh_token:
            return self._send(
                req, 400, {"error": "invalid_grant", "error_description": "refresh token revoked"}
            )
        with self.lock:
            self._tokens += 1
            token = f"emu-access-{self._tokens}-secretpart"
            self.access_tokens.add(token)
        body: dict[str, t.Any] = {
            "access_token": token,
            "expires_in": "5184000" if self.profile.expires_in_str else 5184000,
        }
        if self.profile.refresh_rotates:
            self.refresh_token = f"emu-refresh-R{self._tokens + 1}"
            body["refresh_token"] = self.refresh_token
            body["refresh_token_expires_in"] = 31_000_000
        elif self.profile.refresh_returns_same:
            body["refresh_token"] = self.refresh_token
        return self._send(req, 200, body)

    def _contracts(self, req: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        if query.get("q") != "contractsByMember":
            return self._send(req, 400, {"message": "q required", "status": 400})
        start = 0 if self.profile.contracts_ignore_start else int(query.get("start", "0"))
        size = self.profile.contracts_page
        elements = self.profile.contracts[start : start + size]
        if self.profile.contracts_dup_across_pages and start > 0:
            elements = [self.profile.contracts[start - 1], *elements]
        paging: dict[str, t.Any] = {"start": start, "count": size, "links": []}
        if self.profile.contracts_total:
            paging["total"] = len(self.profile.contracts)
        return self._send(req, 200, {"elements": elements, "paging": paging})

    def _create(
        self, req: BaseHTTPRequestHandler, query: dict[str, str], body: dict[str, t.Any]
    ) -> None:
        export_type = ACTIONS.get(query.get("action", ""))
        if export_type is None or not {"contract", "startAt", "endAt"} <= set(body):
            return self._send(req, 400, {"message": "bad request", "status": 400})
        if body["startAt"] > body["endAt"]:
            return self._send(req, 400, {"message": "startAt after endAt", "status": 400})
        contract = next(
            (c for c in self.profile.contracts if c["contract"] == body["contract"]), None
        )
        if contract is None or not contract.get("hasReportingAccess"):
            return self._send(
                req,
                403,
                {
                    "serviceErrorCode": 100,
                    "status": 403,
                    "message": "Not enough permissions to access: POST /salesAnalyticsExportJobs",
                },
            )
        with self.lock:
            self._next_id += 1
            job = Job(self._next_id, body["contract"], export_type, body["startAt"], body["endAt"])
            self.jobs[job.id] = job
        value = {
            "id": str(job.id) if self.profile.id_as_string else job.id,
            "status": self._status("ENQUEUED"),
        }
        return self._send(
            req,
            self.profile.create_status,
            {"value": value} if self.profile.create_wrapped else value,
        )

    def _get(self, req: BaseHTTPRequestHandler, job_id: int, query: dict[str, str]) -> None:
        job = self.jobs.get(job_id)
        if job is None or query.get("contract") != job.contract:
            return self._send(req, 404, {"message": "not found", "status": 404})
        with self.lock:
            job.polls += 1
            fail = next(
                (
                    f
                    for f in self.profile.faults
                    if f["where"] == "job_status"
                    and f.get("times", 1) > 0
                    and f.get("export_type", job.export_type) == job.export_type
                    and not job.failed
                    and job.status != "COMPLETED"
                ),
                None,
            )
            if fail is not None:
                fail["times"] = fail.get("times", 1) - 1
                fail["fired"] = fail.get("fired", 0) + 1
                job.failed = fail["status"]
            if job.failed:
                job.status = job.failed
            elif job.polls > self.profile.polls_until_done and job.status != "COMPLETED":
                job.status = "COMPLETED"
                job.token = f"tok{job.id}x{len(self.downloads)}"
                job.expire_at = (
                    int(dt.datetime.now(tz=dt.UTC).timestamp() * 1000) + self.profile.url_ttl_ms
                )
                self.downloads[job.token] = job.id
            elif job.status == "ENQUEUED" and job.polls > 0:
                job.status = "PROCESSING"
        body: dict[str, t.Any] = {
            "id": str(job.id) if self.profile.id_as_string else job.id,
            "status": self._status(job.status),
        }
        if job.status == "COMPLETED":
            path = f"/ambry/?x-li-ambry-ep={job.token}"
            body["downloadUrl"] = path if self.profile.relative_url else self.url + path
            assert job.expire_at is not None
            body["expireAt"] = {
                "ms": job.expire_at,
                "s": job.expire_at // 1000,
                "iso": dt.datetime.fromtimestamp(job.expire_at / 1000, tz=dt.UTC).isoformat(),
                "absent": None,
            }[self.profile.expire_at]
            count = len(self.rows(job.contract, job.export_type, job.start_at, job.end_at))
            if self.profile.row_count == "int":
                body["rowCount"] = count
            elif self.profile.row_count == "str":
                body["rowCount"] = str(count)
        return self._send(req, 200, {"value": body} if self.profile.get_wrapped else body)

    def _download(self, req: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        if self._fault("download", req):
            return None
        token = query.get("x-li-ambry-ep", "")
        job_id = self.downloads.get(token)
        if job_id is None:
            return self._send(req, 404, {"message": "unknown", "status": 404})
        job = self.jobs[job_id]
        if (
            job.expire_at is not None
            and job.expire_at < dt.datetime.now(tz=dt.UTC).timestamp() * 1000
        ):
            return self._send(req, 403, {"message": "expired", "status": 403})
        return self._send(req, 200, self._csv(job))
