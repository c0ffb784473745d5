"""Short-lived signed download URLs (LinkedIn's "ambry" blob store) and the files they serve.

Documented: completed jobs carry URLs of the form ``https://www.linkedin.com/ambry/?x-li-ambry-ep=
<signed token>`` that are "short lived" (linkedin-api.md sections 2.4 and 3.2). Assumed, and
configurable: they need no ``Authorization`` header, live ``url_ttl_seconds`` (24 h), answer 403
once expired and 404 for an unknown token, and a GET of the job issues fresh ones after expiry.
"""

from __future__ import annotations

import secrets
import typing as t
from dataclasses import dataclass, field

from tap_linkedin_crm.sandbox.byte_streams import corrupt_gzip, gzip_stream, unclosed_quote
from tap_linkedin_crm.sandbox.data import CRLF
from tap_linkedin_crm.sandbox.fault_effects import fault_reply, with_transport_fault
from tap_linkedin_crm.sandbox.messages import Reply, error_envelope

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tap_linkedin_crm.sandbox.context import SandboxContext
    from tap_linkedin_crm.sandbox.faults import FaultScope
    from tap_linkedin_crm.sandbox.messages import Request

AMBRY_PATHS = frozenset({"/ambry/", "/ambry"})
AMBRY_PARAM = "x-li-ambry-ep"


class FileSource(t.Protocol):
    """The files of one export job, rendered on demand."""

    @property
    def gzip(self) -> bool:
        """Whether the files are served as ``.csv.gz``."""
        ...

    def file_count(self) -> int:
        """Number of files."""
        ...

    def file_rows(self, file_index: int) -> int:
        """Number of data rows of a file."""
        ...

    def file_name(self, file_index: int, *, gzip: bool) -> str:
        """The ``Content-Disposition`` file name of a file."""
        ...

    def raw_chunks(self, file_index: int, line_terminator: str = CRLF) -> Iterator[bytes]:
        """The uncompressed bytes of a file, in chunks, each record ended by ``line_terminator``."""
        ...

    def header_size(self, file_index: int, line_terminator: str = CRLF) -> int:
        """Bytes before the first data record."""
        ...


@dataclass(slots=True)
class DownloadLinks:
    """The download URLs of one job, and when they expire.

    Attributes:
        generation: Bumped whenever fresh URLs are issued; older URLs stop working.
        expire_at: When the current URLs expire (epoch ms), or ``None`` before the first issue.
        urls: The current URLs, one per file.
    """

    generation: int = 0
    expire_at: int | None = None
    urls: list[str] = field(default_factory=list)

    def expire(self, now: int) -> None:
        """Make the current URLs expired from ``now`` on."""
        if self.expire_at is not None:
            self.expire_at = min(self.expire_at, now)

    def expired(self, now: int) -> bool:
        """Whether the current URLs have expired (or were never issued)."""
        return self.expire_at is None or now >= self.expire_at


class Downloadable(t.Protocol):
    """An export job whose files can be downloaded."""

    @property
    def job_id(self) -> int:
        """The job's id."""
        ...

    @property
    def scope(self) -> FaultScope:
        """What the job is about, for fault filters."""
        ...

    @property
    def links(self) -> DownloadLinks:
        """The job's current download URLs."""
        ...

    @property
    def files(self) -> FileSource:
        """The job's files."""
        ...


@dataclass(frozen=True, slots=True)
class _Grant:
    job_id: int
    file_index: int
    generation: int


class Downloads:
    """Issues signed URLs and serves them; state is guarded by the context's lock."""

    def __init__(self, ctx: SandboxContext, find_job: Callable[[int], Downloadable | None]) -> None:
        """Serve files of the jobs ``find_job`` finds by id."""
        self._ctx = ctx
        self._find_job = find_job
        self._grants: dict[str, _Grant] = {}

    def issue(self, job: Downloadable, now: int) -> None:
        """Give the job fresh URLs, one per file, valid ``url_ttl_seconds`` from ``now``."""
        links = job.links
        with self._ctx.lock:
            links.generation += 1
            links.expire_at = now + self._ctx.scenario.url_ttl_seconds * 1000
            links.urls = []
            base = self._ctx.base_url
            for index in range(job.files.file_count()):
                token = "AQ" + secrets.token_urlsafe(40)
                self._grants[token] = _Grant(job.job_id, index, links.generation)
                links.urls.append(f"{base}/ambry/?{AMBRY_PARAM}={token}")

    def secrets(self) -> set[str]:
        """Every signed token issued."""
        with self._ctx.lock:
            return set(self._grants)

    def serve(self, req: Request) -> Reply:
        """Answer ``GET /ambry/?x-li-ambry-ep=<token>``."""
        ctx = self._ctx
        token = req.param(AMBRY_PARAM) or ""
        with ctx.lock:
            grant = self._grants.get(token)
        job = self._find_job(grant.job_id) if grant is not None else None
        if grant is None or job is None:
            return error_envelope(404, "Not found")
        scope = job.scope
        req.instance, req.contract, req.export_type = (
            scope.instance,
            scope.contract,
            scope.export_type,
        )
        req.job_id = job.job_id
        fault = ctx.take_http_fault(req)
        if fault is not None:
            replaced = fault_reply(fault, req, ctx.pause)
            if replaced is not None:
                return replaced
        kind = fault.kind if fault is not None else None
        now = ctx.clock.now_ms()
        with ctx.lock:
            if kind == "url_expired":
                job.links.expire(now)
            if grant.generation != job.links.generation or job.links.expired(now):
                return error_envelope(403, "The download URL has expired")
            if kind == "url_expires_mid_download":
                job.links.expire(now)
        return with_transport_fault(self._file_reply(job.files, grant.file_index, kind), fault)

    def _file_reply(self, files: FileSource, index: int, kind: str | None) -> Reply:
        """The 200 reply serving a file, as the fault of kind ``kind`` (if any) spoils it."""
        corrupt = kind == "corrupt_gzip"
        gzip = files.gzip or corrupt
        terminator = "\r" if kind == "cr_line_endings" else CRLF
        chunks = files.raw_chunks(index, terminator)
        if kind == "unclosed_quote":
            chunks = unclosed_quote(chunks, files.header_size(index, terminator))
        if gzip:
            chunks = gzip_stream(chunks)
        if corrupt:
            chunks = corrupt_gzip(chunks)
        headers = [
            ("Content-Type", "application/gzip" if gzip else "text/csv; charset=utf-8"),
            (
                "Content-Disposition",
                f'attachment; filename="{files.file_name(index, gzip=gzip)}"',
            ),
        ]
        if kind == "empty_body":
            return Reply(200, headers, b"")
        if files.file_rows(index) <= self._ctx.scenario.stream_threshold_rows:
            return Reply(200, headers, b"".join(chunks))
        return Reply(200, headers, stream=chunks)
