"""Downloading a completed export: every file, in order, as typed rows, surviving broken transfers.

A transfer that breaks (reset, short body, bad gzip) is retried from the start of the file, skipping
the rows already handed out, so no row is emitted twice. Expired URLs (403/410, or `expireAt`
passed) are refreshed by fetching the job again; a job that is gone is replaced by a new job for
the same window, whose files are then read from the start. A stop (SIGTERM/Ctrl-C) shuts the socket
of the file being read, so a read blocked on a stalled connection ends at once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import typing as t
from dataclasses import dataclass

import urllib3

from tap_linkedin_crm.client import redact_url
from tap_linkedin_crm.decoding import CsvDecoder, HeaderInfo, verified_if_gzip
from tap_linkedin_crm.errors import (
    DownloadExpiredError,
    DownloadIncompleteError,
    JobGoneError,
    MalformedCSVError,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    import requests

    from tap_linkedin_crm.client import LinkedInClient
    from tap_linkedin_crm.columns import ColumnType
    from tap_linkedin_crm.exports import ExportCoordinator, InstanceExport
    from tap_linkedin_crm.jobs import ExportJob, Stopper

LOGGER = logging.getLogger("tap_linkedin_crm.downloads")

#: Refresh URLs this long before `expireAt`, rather than start a download that will be cut off.
EXPIRY_MARGIN_MS = 60_000
PROGRESS_EVERY_SECONDS = 15.0
READ_CHUNK = 1 << 20


@dataclass(slots=True)
class Position:
    """Where the next row comes from: the job, the file (0-based) and rows done in that file."""

    job_id: int
    file_index: int = 0
    rows_done: int = 0


class CountingReader:
    """A binary reader over a streaming response that counts bytes and maps transport errors."""

    def __init__(self, response: requests.Response) -> None:
        """Read `response.raw`, letting urllib3 undo any Content-Encoding."""
        self._raw = response.raw
        self._raw.decode_content = True
        self.bytes_read = 0

    def readable(self) -> bool:
        """Whether this is readable (it is); io wrappers ask."""
        return True

    def read(self, size: int = -1) -> bytes:
        """Read up to `size` bytes.

        Raises:
            DownloadIncompleteError: The connection broke or the body ended before its length.
        """
        try:
            data: bytes = self._raw.read(size if size is not None and size >= 0 else READ_CHUNK)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            msg = f"the download broke off after {self.bytes_read} bytes ({type(exc).__name__})"
            raise DownloadIncompleteError(msg) from None
        self.bytes_read += len(data)
        return data

    def read1(self, size: int = -1) -> bytes:
        """Same as `read`; lets `gzip` and `io` wrappers use this object directly."""
        return self.read(size)


@dataclass(slots=True)
class FileStats:
    """What one file delivered, for the logs and the exports stream."""

    rows: int = 0
    bytes: int = 0
    header: HeaderInfo | None = None


class ExportDownloader:
    """Turns a completed `InstanceExport` into typed rows with their position."""

    def __init__(  # noqa: PLR0913 - all are real, independent inputs
        self,
        client: LinkedInClient,
        coordinator: ExportCoordinator,
        column_types: Mapping[str, ColumnType],
        *,
        max_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        stopper: Stopper | None = None,
    ) -> None:
        """Keep the collaborators; `sleep` is injected so waits can be cut by a stop.

        With a `stopper`, a stop also shuts the socket of the file being read.
        """
        self.client = client
        self.coordinator = coordinator
        self.column_types = column_types
        self.max_retries = max_retries
        self.sleep = sleep
        self.wall_ms = wall_ms
        self.stopper = stopper
        self.files: list[FileStats] = []

    def rows(
        self, export: InstanceExport, position: Position
    ) -> Iterator[tuple[int, int, dict[str, t.Any]]]:
        """Yield `(file_index, row_number, row)` from `position` on, in file order.

        `position` is advanced before each yield, so it always says what was handed out. If the
        job had to be replaced, `position` is reset to the new job's first row.
        """
        job = export.job
        assert job is not None  # noqa: S101 - only completed exports are downloaded
        if position.job_id != job.job_id:
            position.job_id, position.file_index, position.rows_done = job.job_id, 0, 0
        self.files = [FileStats() for _ in job.download_urls]
        while position.file_index < len(job.download_urls):
            try:
                yield from self._file_rows(export, position)
            except JobGoneError as exc:
                LOGGER.warning("CRM instance %s: %s", export.urn, exc)
                emitted_before = position.file_index > 0 or position.rows_done > 0
                old_job_id = position.job_id
                with self._interruptible():
                    job = self.coordinator.replace(export)
                if emitted_before:
                    # At least once: the new job exports the same window again, under a new
                    # jobId, so a target cannot de-duplicate these rows by key.
                    LOGGER.warning(
                        "CRM instance %s: rows of export job %s up to file %d, row %d were "
                        "already emitted; replacement job %s exports the same window, so those "
                        "CRM records will be emitted again under jobId %s.",
                        export.urn,
                        old_job_id,
                        position.file_index + 1,
                        position.rows_done,
                        job.job_id,
                        job.job_id,
                    )
                position.job_id, position.file_index, position.rows_done = job.job_id, 0, 0
                self.files = [FileStats() for _ in job.download_urls]
                continue
            position.file_index += 1
            position.rows_done = 0

    def _file_rows(
        self, export: InstanceExport, position: Position
    ) -> Iterator[tuple[int, int, dict[str, t.Any]]]:
        """One file, retried on broken transfers and expired URLs.

        Raises:
            DownloadIncompleteError: The transfer kept breaking after `max_retries` retries.
            JobGoneError: Fresh URLs kept being refused: the job needs replacing.
        """
        index = position.file_index
        failures = 0
        delays = self.client.backoff_delays()
        while True:
            job = self._fresh_job(export)
            url = job.download_urls[index]
            label = f"file {index + 1}/{len(job.download_urls)} of export job {job.job_id}"
            try:
                with self._interruptible():
                    response = self.client.open_download(url)
            except DownloadExpiredError as exc:
                failures += 1
                if failures > self.max_retries:
                    msg = f"{label}: fresh download URLs were refused {failures} times ({exc})."
                    raise JobGoneError(msg) from None
                LOGGER.info("CRM instance %s: %s; fetching fresh URLs.", export.urn, exc)
                with self._interruptible():
                    self.coordinator.refresh(export)
                continue
            try:
                with self._shut_on_stop(response):
                    yield from self._decode(export, response, position, label)
            except DownloadIncompleteError as exc:
                if self.stopper is not None:
                    self.stopper.check()  # the stop cut the transfer: no retry
                failures += 1
                if failures > self.max_retries:
                    msg = (
                        f"CRM instance {export.urn}: {label} could not be downloaded whole "
                        f"({exc}; {failures} tries). The bookmark was not moved."
                    )
                    raise DownloadIncompleteError(msg) from None
                LOGGER.warning(
                    "CRM instance %s: %s: %s; retrying from row %d.",
                    export.urn,
                    label,
                    exc,
                    position.rows_done + 1,
                )
                self.sleep(next(delays))
                continue
            finally:
                response.close()
            return

    def _interruptible(self) -> t.ContextManager[None]:
        """A request that a stop may abandon at once (it writes nothing)."""
        return contextlib.nullcontext() if self.stopper is None else self.stopper.interruptible()

    def _shut_on_stop(self, response: requests.Response) -> t.ContextManager[None]:
        """While reading `response`, a stop shuts its socket so a blocked read returns at once."""
        if self.stopper is None:
            return contextlib.nullcontext()
        return self.stopper.on_stop(functools.partial(_shutdown, response))

    def _fresh_job(self, export: InstanceExport) -> ExportJob:
        job = export.job
        assert job is not None  # noqa: S101 - completed
        if job.urls_expired(self.wall_ms(), EXPIRY_MARGIN_MS):
            LOGGER.info(
                "CRM instance %s: download URLs of export job %s expire(d) at %s; refreshing.",
                export.urn,
                job.job_id,
                job.expire_at,
            )
            with self._interruptible():
                job = self.coordinator.refresh(export)
        return job

    def _decode(
        self,
        export: InstanceExport,
        response: requests.Response,
        position: Position,
        label: str,
    ) -> Iterator[tuple[int, int, dict[str, t.Any]]]:
        reader = CountingReader(response)
        decoder = CsvDecoder(self.column_types, label=f"{export.urn} {label}", complete=True)
        index = position.file_index
        stats = self.files[index]
        size = response.headers.get("Content-Length")
        started = last_report = time.monotonic()
        row_number = position.rows_done
        with verified_if_gzip(t.cast("t.IO[bytes]", reader)) as stream:
            for row in decoder.rows(stream, skip_rows=position.rows_done):
                row_number += 1
                position.rows_done = row_number
                yield index, row_number, row
                if not row_number & 0x3FFF:
                    now = time.monotonic()
                    if now - last_report >= PROGRESS_EVERY_SECONDS:
                        last_report = now
                        LOGGER.info(
                            "CRM instance %s: %s: %d rows, %.1f MB%s so far (%.0f rows/s).",
                            export.urn,
                            label,
                            row_number,
                            reader.bytes_read / 1e6,
                            f" of {int(size) / 1e6:.1f} MB" if size else "",
                            row_number / max(now - started, 1e-9),
                        )
        if decoder.rows_read < row_number:
            # Rows were emitted from an earlier transfer of this URL that this one lacks: the
            # file changed under us. Do not guess which rows are which.
            msg = (
                f"CRM instance {export.urn}: {label} now has {decoder.rows_read} rows, but "
                f"{row_number} were already emitted from it; the bookmark was not moved. To "
                "emit the job again from its first row, drop inFlightJob from this instance's "
                "state."
            )
            raise MalformedCSVError(msg)
        if decoder.header is not None:
            stats.header = decoder.header
            _log_drift(export.urn, label, decoder.header)
        stats.rows = row_number
        stats.bytes = reader.bytes_read
        LOGGER.info(
            "CRM instance %s: %s done: %d rows, %d bytes in %.2f s (%s).",
            export.urn,
            label,
            row_number,
            reader.bytes_read,
            time.monotonic() - started,
            redact_url(response.url or ""),
        )


def _shutdown(response: requests.Response) -> None:
    """Shut the reading side of a streaming response's socket (urllib3 >= 2.3); never raises.

    Called from a signal handler: the blocked `recv` then sees end-of-stream, which the reader
    reports as a broken transfer (a body shorter than its length, or a chunked body cut short).
    """
    shutdown = getattr(response.raw, "shutdown", None)
    if shutdown is None:
        return
    with contextlib.suppress(ValueError, RuntimeError, OSError):
        shutdown()


def _log_drift(urn: str, label: str, header: HeaderInfo) -> None:
    if not header.columns:
        return
    if header.added:
        LOGGER.warning(
            "CRM instance %s: %s has columns not declared in column_types: %s; they are kept "
            "as strings in extraColumns.",
            urn,
            label,
            ", ".join(header.added),
        )
    if header.missing:
        LOGGER.info(
            "CRM instance %s: %s lacks declared columns %s; they are null in its rows.",
            urn,
            label,
            ", ".join(header.missing),
        )
