"""The export run: every selected kind's partitions, jobs created at once, emitted in order.

The run plans each partition's windows from state, hands every task to the poll scheduler at once,
and then, in a stable order (kinds as configured, partitions as configured, windows in time order),
waits for each job, downloads its files and writes its rows, checkpointing every
`output.checkpoint_rows` rows. A window's bookmark moves only after its last row was delivered. A
partition that fails stops alone: its bookmark stays, its in-flight jobs are remembered, the other
partitions go on, and the run ends with `SyncFailedError` naming each failure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import typing as t

from tap_linkedin_crm.engine.downloads import Position
from tap_linkedin_crm.engine.scheduler import Outcome
from tap_linkedin_crm.engine.state import (
    PartitionState,
    StateStore,
    bookmark_after,
    resume_tasks,
)
from tap_linkedin_crm.errors import (
    ConsumerGoneError,
    InvalidStateError,
    LinkedInCRMError,
    StreamMapError,
    SyncFailedError,
    SyncInterruptedError,
)
from tap_linkedin_crm.kinds.base import InFlightJob
from tap_linkedin_crm.transport import redact_url

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from singer_sdk import Stream

    from tap_linkedin_crm.engine.downloads import ExportDownloader
    from tap_linkedin_crm.engine.scheduler import JobScheduler, TrackedJob
    from tap_linkedin_crm.engine.stopper import Stopper
    from tap_linkedin_crm.kinds.base import ExportKind, Partition
    from tap_linkedin_crm.output.base import Output

LOGGER = logging.getLogger("tap_linkedin_crm.engine")

#: Provenance field numbering each file's data rows from 1.
ROW_NUMBER = "rowNumber"
#: How often the main thread gives the output a sign of life while it waits for a job.
WAITING_EVERY_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class ExportFamily:
    """One export kind with its selected streams: rows (one record per CSV row), exports (per job).

    `stream_names` are all of the kind's streams, selected or not: state may sit in any of them.
    """

    kind: ExportKind
    rows: Stream | None
    exports: Stream | None
    stream_names: tuple[str, ...]
    #: How failures name one partition ("CRM instance", "analytics export").
    noun: str

    @property
    def owner(self) -> str:
        """The stream whose state keeps the bookmarks: rows if selected, else exports."""
        stream = self.rows or self.exports
        assert stream is not None  # noqa: S101 - a family has a selected stream
        return stream.name


@dataclasses.dataclass(frozen=True)
class SnapshotSource:
    """A small stream emitted whole at the start of each run (e.g. the contracts)."""

    stream: Stream
    records: Callable[[], Iterable[dict[str, t.Any]]]


@dataclasses.dataclass(eq=False)
class PartitionRun:
    """One partition in this run: its state entry, its jobs, how far it got."""

    family: ExportFamily
    partition: Partition
    state: PartitionState | None
    tracked: list[TrackedJob] = dataclasses.field(default_factory=list)
    emitted: set[int] = dataclasses.field(default_factory=set)
    current: tuple[TrackedJob, Position] | None = None
    error: BaseException | None = None
    stopped: str | None = None
    jobs: int = 0
    rows: int | None = None
    files: int = 0
    bookmark: int | None = None


class ExportRun:
    """Runs the planned exports through the scheduler, the downloader and the output."""

    def __init__(  # noqa: PLR0913 - all are real, independent inputs
        self,
        *,
        families: Sequence[ExportFamily],
        snapshots: Sequence[SnapshotSource],
        output: Output,
        state: dict[str, t.Any],
        scheduler: JobScheduler,
        downloader: Callable[[ExportKind], ExportDownloader],
        stopper: Stopper,
        setup_failures: Sequence[tuple[str, str, BaseException]] = (),
    ) -> None:
        """Keep the collaborators; nothing happens until `execute`.

        `setup_failures` are `(noun, label, error)` of exports that failed before any job (e.g.
        listing a member's contracts): they end the run non-zero like a failed partition.
        """
        self.setup_failures = list(setup_failures)
        self.families = families
        self.snapshots = snapshots
        self.output = output
        self.state = state
        self.scheduler = scheduler
        self.downloader = downloader
        self.stopper = stopper
        self.store = StateStore(state)
        self.partitions: list[PartitionRun] = []
        self.started = time.monotonic()

    @property
    def streams(self) -> list[Stream]:
        """The selected streams, each once, in emission order."""
        streams: list[Stream] = [s.stream for s in self.snapshots]
        for family in self.families:
            for stream in (family.rows, family.exports):
                if stream is not None and stream not in streams:
                    streams.append(stream)
        return streams

    def execute(self) -> None:
        """Emit everything; raise `SyncFailedError` at the end if some partitions failed.

        Raises:
            SyncFailedError: Some partitions failed; the others were emitted.
        """
        self.output.start(self.streams)
        for snapshot in self.snapshots:
            self._emit_snapshot(snapshot)
        self._plan()
        self.scheduler.start()
        try:
            self.scheduler.wait_created(on_wait=self._waiting, every=WAITING_EVERY_SECONDS)
            self._checkpoint()
            for prun in self.partitions:
                if prun.error is None:
                    self._emit_partition(prun)
        finally:
            self.scheduler.close()
        for stream in self.streams:
            failed = any(
                p.error is not None
                for p in self.partitions
                if stream in (p.family.rows, p.family.exports)
            )
            self.output.finish(stream, complete=not failed)
        self._checkpoint()
        self._log_summary()
        failures = [
            (p.family.noun, p.partition.label, p.error)
            for p in self.partitions
            if p.error is not None
        ] + self.setup_failures
        if failures:
            counts: dict[str, list[int]] = {}
            for prun in self.partitions:
                counts.setdefault(prun.family.noun, [0, 0])[1] += 1
            for noun, _, _ in failures:
                counts.setdefault(noun, [0, 0])[0] += 1
            totals = ", ".join(
                f"{n} of {m} {noun}(s)" if m else f"the {noun}s"
                for noun, (n, m) in counts.items()
                if n
            )
            lines = " | ".join(
                f"{label}: {_unlabelled(label, error)}" for _, label, error in failures
            )
            msg = (
                f"{totals} failed; their bookmarks were not moved, the others were synced. {lines}"
            )
            raise SyncFailedError(msg, tuple(error for _, _, error in failures))

    # Planning ---------------------------------------------------------------------------------

    def _plan(self) -> None:
        sequence = 0
        for family in self.families:
            others = [name for name in family.stream_names if name != family.owner]
            for partition in family.kind.partitions():
                entry = self.store.entry(
                    family.owner, others, partition.context, family.kind.state_layout
                )
                state = PartitionState(entry, family.kind.state_layout, partition.label)
                prun = PartitionRun(family=family, partition=partition, state=state)
                self.partitions.append(prun)
                try:
                    planned = resume_tasks(partition, state, family.kind.plan_windows(state))
                except InvalidStateError as exc:
                    prun.error = exc
                    LOGGER.error("%s", exc)  # noqa: TRY400 - the message is the whole story
                    continue
                for task in planned:
                    task.sequence = sequence
                    sequence += 1
                prun.tracked = self.scheduler.submit([(family.kind, task) for task in planned])
        LOGGER.info(
            "Planned %d export job(s) for %d partition(s); creating them now.",
            sequence,
            len(self.partitions),
        )

    # Emitting ---------------------------------------------------------------------------------

    def _emit_snapshot(self, snapshot: SnapshotSource) -> None:
        stream = snapshot.stream
        sink = self.output.sink(stream)
        counter = stream.get_record_counter()
        with counter:
            for record in snapshot.records():
                sink.write(record)
                counter.increment()
        sink.flush()

    def _emit_partition(self, prun: PartitionRun) -> None:
        try:
            self._emit_windows(prun)
        except SyncInterruptedError:
            self._checkpoint()
            raise
        except ConsumerGoneError:
            raise
        except LinkedInCRMError as exc:
            self._fail(prun, exc)
        except Exception as exc:
            # Only the type: such messages may quote URLs, and signed URLs carry tokens.
            LOGGER.debug("unexpected error", exc_info=True)
            self._fail(prun, LinkedInCRMError(f"unexpected {type(exc).__name__}"))

    def _emit_windows(self, prun: PartitionRun) -> None:
        """Emit the partition's windows in order, until one fails or LinkedIn's data ends.

        Raises:
            BaseException: The failure of a window's job (its partition fails).
        """
        for top in prun.tracked:
            for leaf in self._leaves(top):
                if leaf.outcome is Outcome.COMPLETED:
                    self._emit_job(prun, leaf)
                elif leaf.outcome is Outcome.STOPPED:
                    prun.stopped = leaf.note
                    LOGGER.warning(
                        "%s: %s; stopping at the previous window, the bookmark stays at %s. "
                        "The next run tries again.",
                        prun.partition.label,
                        leaf.note,
                        prun.state.bookmark if prun.state else None,
                    )
                    self.scheduler.cancel(prun.tracked)
                    return
                elif leaf.error is not None:
                    raise leaf.error

    def _fail(self, prun: PartitionRun, error: BaseException) -> None:
        prun.error = error
        LOGGER.error("%s: %s", prun.partition.label, _unlabelled(prun.partition.label, error))
        self.scheduler.cancel(prun.tracked)
        self._checkpoint()

    def _leaves(self, tracked: TrackedJob) -> Iterator[TrackedJob]:
        """Wait for `tracked`; yield it, or (once split) its halves' leaves, in window order."""
        self.scheduler.wait(tracked, on_wait=self._waiting, every=WAITING_EVERY_SECONDS)
        if tracked.outcome is Outcome.SPLIT:
            for child in tracked.children:
                yield from self._leaves(child)
        else:
            yield tracked

    def _emit_job(self, prun: PartitionRun, leaf: TrackedJob) -> None:
        family = prun.family
        kind = family.kind
        job = leaf.job
        assert job is not None  # noqa: S101 - completed
        rows: int | None = None
        byte_count: int | None = None
        empty_files = 0
        if family.rows is not None:
            rows, byte_count, empty_files = self._emit_rows(prun, leaf)
            job = leaf.job  # it may have been replaced while downloading
            assert job is not None  # noqa: S101
        created_at = leaf.created_at or int(time.time() * 1000)
        if family.exports is not None:
            facts = {
                "downloadUrls": [redact_url(u) for u in job.download_urls],
                # Files that held a CSV header: a 0-byte file taken as empty is not counted.
                "fileCount": len(job.download_urls) - empty_files,
                "rowCount": rows,
                "byteCount": byte_count,
                "attempts": leaf.attempt,
                "polls": leaf.polls,
                "createdAt": ms_to_rfc3339(leaf.created_at),
                "completedAt": ms_to_rfc3339(leaf.completed_at),
                "note": leaf.note,
            }
            sink = self.output.sink(family.exports)
            counter = family.exports.get_record_counter()
            counter.with_context(dict(prun.partition.context))
            with counter:
                sink.write(kind.exports_record(leaf.task, job, facts))
                counter.increment()
        next_bookmark = bookmark_after(leaf.task, job, created_at)
        if next_bookmark.fallback:
            LOGGER.warning(
                "%s: export job %s: the next export starts at %s, from %s.",
                prun.partition.label,
                job.job_id,
                next_bookmark.value,
                next_bookmark.fallback,
            )
        assert prun.state is not None  # noqa: S101 - planned partitions have state
        window_end = leaf.task.window.end_at if leaf.task.window.end_at is not None else job.end_at
        prun.bookmark = prun.state.complete(next_bookmark.value, window_end)
        prun.emitted.add(id(leaf))
        prun.current = None
        prun.jobs += 1
        prun.files += len(job.download_urls)
        if rows is not None:
            prun.rows = (prun.rows or 0) + rows
        self.scheduler.release(leaf)
        LOGGER.info(
            "%s: export job %s fully emitted: %s rows from %d file(s); bookmark %s.",
            prun.partition.label,
            job.job_id,
            "no" if rows is None else rows,
            len(job.download_urls),
            prun.bookmark,
        )
        self._checkpoint()

    def _emit_rows(self, prun: PartitionRun, leaf: TrackedJob) -> tuple[int, int, int]:
        """Write every row of the job's files.

        Returns:
            The rows and bytes this run emitted, and how many files were taken as empty.
        """
        family = prun.family
        kind = family.kind
        stream = family.rows
        assert stream is not None  # noqa: S101 - called only when selected
        position = _start_position(prun, leaf)
        prun.current = (leaf, position)
        downloader = self.downloader(kind)
        downloader.on_wait, downloader.wait_every = self._waiting, WAITING_EVERY_SECONDS
        downloader.key_columns = frozenset(stream.primary_keys or ())
        write = self.output.sink(stream).write
        check_stop = self.stopper.check
        every = self.output.checkpoint_rows
        task = leaf.task
        provenance: dict[str, t.Any] = {}
        provenance_job: object = None
        provenance_file = -1
        emitted = counted = 0
        counter = stream.get_record_counter()
        counter.with_context(dict(prun.partition.context))
        with counter:
            try:
                for file_index, row_number, row in downloader.rows(leaf, position):
                    current = leaf.job
                    if current is not provenance_job or file_index != provenance_file:
                        assert current is not None  # noqa: S101 - rows come from a completed job
                        provenance_job, provenance_file = current, file_index
                        provenance = kind.provenance(task, current, file_index)
                    try:
                        write({**provenance, ROW_NUMBER: row_number, **row})
                    except Exception as exc:  # noqa: BLE001 - any failure: the row is not out
                        # The row was not delivered: the state must resume at it, not after it.
                        position.rows_done = row_number - 1
                        error = _unwritten(prun, position.job_id, file_index, row_number, exc)
                        raise error from None
                    emitted += 1
                    # Only here, with `position` equal to what was written, may a stop cut in.
                    check_stop()
                    if not emitted % every:
                        # The SDK's counter is told in batches: per row it costs a clock read.
                        counter.increment(emitted - counted)
                        counted = emitted
                        self._checkpoint()
            finally:
                if emitted != counted:
                    counter.increment(emitted - counted)
        return emitted, sum(downloader.file_bytes), len(downloader.files_empty)

    # State ------------------------------------------------------------------------------------

    def _remember(self, prun: PartitionRun) -> None:
        """Write the partition's unemitted jobs (and the position in the current one) to state.

        A job resumed from state keeps the position remembered for it until this run emits from
        it; a job created in this run, or replacing one, starts at its first row.
        """
        if prun.state is None or (prun.error is not None and not prun.tracked):
            return
        jobs: list[InFlightJob] = []
        for top in prun.tracked:
            for leaf in top.leaves():
                if id(leaf) in prun.emitted:
                    continue
                job_id, created_at, attempt = self.scheduler.snapshot(leaf)
                resume = leaf.task.resume
                if job_id is None:
                    if resume is not None:
                        jobs.append(resume)
                    continue
                entry = InFlightJob(job_id, leaf.task.window, created_at, attempt)
                if prun.current is not None and prun.current[0] is leaf:
                    position = prun.current[1]
                    if position.job_id == job_id:
                        entry.file_index, entry.rows_done = position.file_index, position.rows_done
                elif resume is not None and resume.job_id == job_id:
                    entry.file_index, entry.rows_done = resume.file_index, resume.rows_done
                jobs.append(entry)
        prun.state.set_in_flight(jobs)

    def _checkpoint(self) -> None:
        for prun in self.partitions:
            self._remember(prun)
        self.output.checkpoint(self.state)

    def _waiting(self) -> None:
        for prun in self.partitions:
            self._remember(prun)
        self.output.waiting(self.state)

    def _log_summary(self) -> None:
        for _, label, error in self.setup_failures:
            LOGGER.error("Summary: %s: FAILED before any export job: %s", label, error)
        rows = 0
        for prun in self.partitions:
            label = prun.partition.label
            if prun.error is not None:
                LOGGER.error(
                    "Summary: %s: FAILED, bookmark not moved: %s",
                    label,
                    _unlabelled(label, prun.error),
                )
                continue
            rows += prun.rows or 0
            stopped = f" (stopped early: {prun.stopped})" if prun.stopped else ""
            LOGGER.info(
                "Summary: %s: %d job(s), %s rows from %d file(s), bookmark %s%s.",
                label,
                prun.jobs,
                "no" if prun.rows is None else prun.rows,
                prun.files,
                prun.state.bookmark if prun.state else None,
                stopped,
            )
        synced = sum(1 for p in self.partitions if p.error is None)
        LOGGER.info(
            "Summary: %d of %d partition(s) synced, %d rows, in %.1f s.",
            synced,
            len(self.partitions),
            rows,
            time.monotonic() - self.started,
        )


def _unlabelled(label: str, error: BaseException) -> str:
    """The error's message without a leading partition label (it is said once already)."""
    text = str(error)
    for prefix in (f"{label}: ", f"{label} "):
        if text.startswith(prefix):
            return text.removeprefix(prefix)
    return text


def _start_position(prun: PartitionRun, leaf: TrackedJob) -> Position:
    """Where emitting the leaf's job starts: where the last run stopped in this same job, if so."""
    job = leaf.job
    assert job is not None  # noqa: S101 - called only for a completed job
    position = Position(job_id=job.job_id)
    resume = leaf.task.resume
    if resume is not None and resume.job_id == job.job_id:
        position.file_index, position.rows_done = resume.file_index, resume.rows_done
        if position.file_index or position.rows_done:
            LOGGER.info(
                "%s: resuming export job %s at file %d, after row %d.",
                prun.partition.label,
                job.job_id,
                position.file_index + 1,
                position.rows_done,
            )
    elif resume is not None and (resume.file_index or resume.rows_done):
        LOGGER.warning(
            "%s: export job %s, partly emitted by the last run, was replaced by job %s for "
            "the same window; its records will be emitted again under the new jobId.",
            prun.partition.label,
            resume.job_id,
            job.job_id,
        )
    return position


def _unwritten(
    prun: PartitionRun, job_id: int, file_index: int, row_number: int, error: Exception
) -> LinkedInCRMError:
    """The error of a row the output could not take (a stream map raised on it, say)."""
    if isinstance(error, ConsumerGoneError | SyncInterruptedError):
        return error
    where = f"row {row_number} of file {file_index + 1} of export job {job_id}"
    if isinstance(error, StreamMapError):
        msg = (
            f"{prun.partition.label}: {error} (on {where}). The bookmark was not moved; fix "
            "stream_maps and run again: the next run resumes at this row."
        )
        return StreamMapError(msg)
    if isinstance(error, LinkedInCRMError):
        return error
    # Only the type, as for any unexpected error: its message might quote anything.
    LOGGER.debug("unexpected error", exc_info=error)
    msg = (
        f"{prun.partition.label}: {where} could not be written (unexpected "
        f"{type(error).__name__}); the next run resumes at this row."
    )
    return LinkedInCRMError(msg)


def ms_to_rfc3339(value: int | None) -> str | None:
    """Epoch milliseconds as an RFC 3339 UTC string."""
    if value is None:
        return None
    stamp = dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
