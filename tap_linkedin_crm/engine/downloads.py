"""Downloading a completed export: every file, in order, as typed rows, surviving broken transfers.

A transfer that breaks (reset, short body, bad gzip) is retried from the start of the file, skipping
the rows already handed out, so no row is emitted twice. Expired URLs (403/410, or `expireAt`
passed) are refreshed by fetching the job again; a job that is gone is replaced by a new job for
the same window, whose files are then read from the start. A 0-byte file (not even a header) is
fetched again, then exported again by a new job, and only then taken as empty, with a note (unless
it is the only file of a job whose `rowCount` is 0: that file is just empty). A stop
(SIGTERM/Ctrl-C) shuts the socket of the file being read, so a stalled read ends at once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import typing as t
from dataclasses import dataclass

import urllib3

from tap_linkedin_crm.decoding import CsvDecoder, verified_if_gzip
from tap_linkedin_crm.engine.scheduler import Outcome
from tap_linkedin_crm.errors import (
    DownloadExpiredError,
    DownloadIncompleteError,
    JobFailedError,
    JobGoneError,
    MalformedCSVError,
)
from tap_linkedin_crm.transport import redact_url

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    import requests

    from tap_linkedin_crm.columns import ColumnType
    from tap_linkedin_crm.decoding import HeaderInfo
    from tap_linkedin_crm.engine.scheduler import JobScheduler, TrackedJob
    from tap_linkedin_crm.engine.stopper import Stopper
    from tap_linkedin_crm.jobs import ExportJob
    from tap_linkedin_crm.transport import LinkedInClient

LOGGER = logging.getLogger("tap_linkedin_crm.engine")

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


class RowCountMismatchError(DownloadIncompleteError):
    """LinkedIn's `rowCount` differs from the rows in the file, also after a second download."""


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
            cause = type(exc).__name__
            if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
                cause = "no data within request_timeout"
            msg = f"the download broke off after {self.bytes_read} bytes ({cause})"
            raise DownloadIncompleteError(msg) from None
        self.bytes_read += len(data)
        return data

    def read1(self, size: int = -1) -> bytes:
        """Same as `read`; lets `gzip` and `io` wrappers use this object directly."""
        return self.read(size)


class _EmptyBodyError(Exception):
    """A file came back with no bytes at all (not even a header)."""


class _EmptyFileError(JobGoneError):
    """A file stayed empty: a new job for the window is worth one try (not a failed attempt)."""


class ExportDownloader:
    """Turns a completed tracked job into typed rows with their position."""

    def __init__(  # noqa: PLR0913 - all are real, independent inputs
        self,
        client: LinkedInClient,
        scheduler: JobScheduler,
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
        self.scheduler = scheduler
        self.column_types = column_types
        self.max_retries = max_retries
        self.sleep = sleep
        self.wall_ms = wall_ms
        self.stopper = stopper
        #: Called every `wait_every` seconds while a replacement job is awaited (a sign of life
        #: for the output: that job may take as long as any other).
        self.on_wait: Callable[[], None] | None = None
        self.wait_every = 60.0
        #: Columns the rows stream keys its records on: a file lacking one is worth a warning
        #: (its rows have a null key, which a target that upserts on the key collapses).
        self.key_columns: frozenset[str] = frozenset()
        #: Bytes read per file of the job being emitted (for the exports stream).
        self.file_bytes: list[int] = []
        self.files_empty: list[int] = []

    def rows(
        self, tracked: TrackedJob, position: Position
    ) -> Iterator[tuple[int, int, dict[str, t.Any]]]:
        """Yield `(file_index, row_number, row)` from `position` on, in file order.

        `position` is advanced before each yield, so it always says what was handed out. If the
        job had to be replaced, `position` is reset to the new job's first row.

        Raises:
            MalformedCSVError: The remembered position lies beyond the job's files.
        """
        job = tracked.job
        assert job is not None  # noqa: S101 - only completed jobs are downloaded
        if position.job_id != job.job_id:
            position.job_id, position.file_index, position.rows_done = job.job_id, 0, 0
        if position.file_index > len(job.download_urls) or (
            position.file_index == len(job.download_urls) and position.rows_done
        ):
            msg = (
                f"{tracked.label}: the state says file {position.file_index + 1}, row "
                f"{position.rows_done} of export job {job.job_id} was reached, but the job has "
                f"{len(job.download_urls)} file(s). The bookmark was not moved; drop inFlightJob "
                "from this partition's state to export the window again from its first row."
            )
            raise MalformedCSVError(msg)
        self.file_bytes = [0] * len(job.download_urls)
        self.files_empty = []
        while position.file_index < len(self.file_bytes):
            try:
                yield from self._file_rows(tracked, position)
            except JobGoneError as exc:
                counted = not isinstance(exc, _EmptyFileError)
                self._replace(tracked, position, str(exc), counted=counted)
                continue
            position.file_index += 1
            position.rows_done = 0

    def _replace(
        self, tracked: TrackedJob, position: Position, reason: str, *, counted: bool
    ) -> None:
        """Replace the tracked job and await the new one; `position` moves to its first row."""
        emitted_before = position.file_index > 0 or position.rows_done > 0
        old_job_id = position.job_id
        self.scheduler.replace(tracked, reason, counted=counted)
        # Not `interruptible`: `on_wait` writes output, which a stop must not tear. The wait
        # checks for a stop itself.
        self.scheduler.wait(tracked, on_wait=self.on_wait, every=self.wait_every)
        if tracked.error is not None:
            raise tracked.error
        if tracked.outcome is not Outcome.COMPLETED:
            # Split or stopped: its files are not this window's, and none may be taken as empty.
            msg = (
                f"{tracked.label}: the job replacing export job {old_job_id} ended "
                f"{tracked.outcome.value} ({tracked.note or 'no files'}); the bookmark was not "
                "moved."
            )
            raise JobFailedError(msg)
        job = tracked.job
        assert job is not None  # noqa: S101 - completed after wait
        if emitted_before:
            # At least once: the new job exports the same window again, under a new jobId, so a
            # target cannot de-duplicate these rows by key.
            LOGGER.warning(
                "%s: rows of export job %s up to file %d, row %d were already emitted; "
                "replacement job %s exports the same window, so those records will be emitted "
                "again under jobId %s.",
                tracked.label,
                old_job_id,
                position.file_index + 1,
                position.rows_done,
                job.job_id,
                job.job_id,
            )
        position.job_id, position.file_index, position.rows_done = job.job_id, 0, 0
        self.file_bytes = [0] * len(job.download_urls)
        self.files_empty = []

    def _file_rows(  # noqa: C901, PLR0915 - one retry loop, a branch per fault
        self, tracked: TrackedJob, position: Position
    ) -> Iterator[tuple[int, int, dict[str, t.Any]]]:
        """One file, retried on broken transfers, expired URLs, empty bodies, row-count gaps.

        Raises:
            DownloadIncompleteError: The transfer kept breaking after `max_retries` retries.
            JobGoneError: Fresh URLs kept being refused, or the file stayed empty: replace the job.
        """
        index = position.file_index
        failures = empty = mismatches = 0
        delays = self.client.backoff_delays()
        while True:
            job = self._fresh_job(tracked)
            url = job.download_urls[index]
            label = f"file {index + 1}/{len(job.download_urls)} of export job {job.job_id}"
            try:
                with self._interruptible():
                    response = self.client.open_download(url)
            except DownloadExpiredError as exc:
                failures += 1
                if failures > self.max_retries:
                    msg = f"{label}: fresh download URLs were refused {failures} times ({exc})"
                    raise JobGoneError(msg) from None
                LOGGER.info("%s: %s; fetching fresh URLs.", tracked.label, exc)
                with self._interruptible():
                    self.scheduler.refresh(tracked)
                continue
            try:
                with self._shut_on_stop(response):
                    yield from self._decode(tracked, response, position, label)
            except DownloadIncompleteError as exc:
                if self.stopper is not None:
                    self.stopper.check()  # the stop cut the transfer: no retry
                failures += 1
                if failures > self.max_retries:
                    msg = (
                        f"{tracked.label}: {label} could not be downloaded whole ({exc}; "
                        f"{failures} tries). The bookmark was not moved."
                    )
                    raise DownloadIncompleteError(msg) from None
                LOGGER.warning(
                    "%s: %s: %s; retrying from row %d.",
                    tracked.label,
                    label,
                    exc,
                    position.rows_done + 1,
                )
                self.sleep(next(delays))
                continue
            except _EmptyBodyError:
                empty += 1
                if empty == 1:
                    LOGGER.warning(
                        "%s: %s is empty (not even a header); fetching it again.",
                        tracked.label,
                        label,
                    )
                    with self._interruptible():
                        self.scheduler.refresh(tracked)
                    continue
                if tracked.empty_jobs < 1:
                    tracked.empty_jobs += 1
                    msg = f"{label} stayed empty (no header)"
                    raise _EmptyFileError(msg) from None
                note = (
                    f"{label} was empty (no header) twice, also from a new export job; taken as "
                    "a file without rows."
                )
                LOGGER.warning("%s: %s", tracked.label, note)
                tracked.note = note if tracked.note is None else f"{tracked.note} {note}"
                self.files_empty.append(index)
                return
            except _RowCountGapError as gap:
                mismatches += 1
                if mismatches > 1:
                    msg = (
                        f"{tracked.label}: {label} has {gap.rows} rows, but LinkedIn's rowCount "
                        f"says {gap.expected}, also after downloading it again. The bookmark was "
                        "not moved; the next run exports this window again."
                    )
                    raise RowCountMismatchError(msg) from None
                LOGGER.warning(
                    "%s: %s has %d rows, but LinkedIn's rowCount says %d; downloading it again.",
                    tracked.label,
                    label,
                    gap.rows,
                    gap.expected,
                )
                # Either side may be wrong: ask for the job again (its rowCount and URL), so
                # the second download is checked against LinkedIn's current answer.
                with self._interruptible():
                    self.scheduler.refresh(tracked)
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

    def _fresh_job(self, tracked: TrackedJob) -> ExportJob:
        job = tracked.job
        assert job is not None  # noqa: S101 - completed
        if job.urls_expired(self.wall_ms(), EXPIRY_MARGIN_MS):
            LOGGER.info(
                "%s: download URLs of export job %s expire(d) at %s; refreshing.",
                tracked.label,
                job.job_id,
                job.expire_at,
            )
            with self._interruptible():
                job = self.scheduler.refresh(tracked)
        return job

    def _decode(
        self,
        tracked: TrackedJob,
        response: requests.Response,
        position: Position,
        label: str,
    ) -> Iterator[tuple[int, int, dict[str, t.Any]]]:
        reader = CountingReader(response)
        decoder = CsvDecoder(self.column_types, label=f"{tracked.label} {label}", complete=True)
        index = position.file_index
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
                            "%s: %s: %d rows, %.1f MB%s so far (%.0f rows/s).",
                            tracked.label,
                            label,
                            row_number,
                            reader.bytes_read / 1e6,
                            f" of {int(size) / 1e6:.1f} MB" if size else "",
                            row_number / max(now - started, 1e-9),
                        )
        job = tracked.job
        if decoder.header is None and not (  # not even a header: 0 bytes (or a BOM, blank lines)
            # ... which is what LinkedIn promised when it counted no rows in the only file
            job is not None and len(job.download_urls) == 1 and job.row_count == 0
        ):
            raise _EmptyBodyError
        if decoder.rows_read < row_number:
            # Rows were emitted from an earlier transfer of this URL that this one lacks: the
            # file changed under us. Do not guess which rows are which.
            msg = (
                f"{tracked.label}: {label} now has {decoder.rows_read} rows, but {row_number} "
                "were already emitted from it; the bookmark was not moved. To emit the job again "
                "from its first row, drop inFlightJob from this partition's state."
            )
            raise MalformedCSVError(msg)
        expected = job.row_count if job is not None and len(job.download_urls) == 1 else None
        if expected is not None and decoder.rows_read != expected:
            raise _RowCountGapError(decoder.rows_read, expected)
        if decoder.header is not None:
            _log_drift(tracked.label, label, decoder.header, self.key_columns)
        self.file_bytes[index] = reader.bytes_read
        LOGGER.info(
            "%s: %s done: %d rows, %d bytes in %.2f s (%s).",
            tracked.label,
            label,
            row_number,
            reader.bytes_read,
            time.monotonic() - started,
            redact_url(response.url or ""),
        )


class _RowCountGapError(Exception):
    """The file's rows differ from LinkedIn's `rowCount`."""

    def __init__(self, rows: int, expected: int) -> None:
        super().__init__(f"{rows} rows, rowCount {expected}")
        self.rows = rows
        self.expected = expected


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


def _log_drift(
    label: str, file_label: str, header: HeaderInfo, key_columns: frozenset[str]
) -> None:
    if header.renamed:
        LOGGER.warning(
            "%s: %s names some columns more than once; the repeats are kept as %s.",
            label,
            file_label,
            ", ".join(f"{new!r} (another {name!r})" for name, new in header.renamed),
        )
    if header.added:
        LOGGER.warning(
            "%s: %s has columns not declared in column_types: %s; they are kept as strings in "
            "extraColumns.",
            label,
            file_label,
            ", ".join(header.added),
        )
    missing_keys = [name for name in header.missing if name in key_columns]
    if missing_keys:
        LOGGER.warning(
            "%s: %s lacks %s, part of the stream's primary key: its rows have a null key, and a "
            "target that upserts on the key keeps only one of them. Check the file's header, or "
            "load this stream append-only.",
            label,
            file_label,
            ", ".join(missing_keys),
        )
    others = [name for name in header.missing if name not in key_columns]
    if others:
        LOGGER.info(
            "%s: %s lacks declared columns %s; they are null in its rows.",
            label,
            file_label,
            ", ".join(others),
        )
