"""Singer streams: glue between the export run (jobs, downloads) and Singer records and state.

State, per CRM instance (one partition each, context `{"crmInstanceId": urn}`):

    {"context": {"crmInstanceId": urn},
     "replication_key": "exportEndAt", "replication_key_value": <ms>,   # last fully emitted job
     "nextExportStartAt": <ms>,                                          # next job's exportStartAt
     "inFlightJob": {"jobId", "exportStartAt", "createdAt", "attempt",   # job not yet fully emitted
                     "fileIndex", "rowsDone"}}

The bookmark (`nextExportStartAt`) moves only once every row of a job was emitted; until then
`inFlightJob` says which job to resume and which rows to skip.
"""

from __future__ import annotations

import typing as t

from singer_sdk import Stream
from singer_sdk.exceptions import AbortedSyncFailedException, AbortedSyncPausedException
from singer_sdk.mapper import SameRecordTransform

from tap_linkedin_crm.columns import EXTRA_COLUMNS_FIELD, column_json_schema
from tap_linkedin_crm.decoding import INVALID_VALUES_KEY
from tap_linkedin_crm.downloads import Position
from tap_linkedin_crm.errors import LinkedInCRMError, SyncFailedError, SyncInterruptedError
from tap_linkedin_crm.run import ExportRun, plan_for
from tap_linkedin_crm.settings import load_settings
from tap_linkedin_crm.writer import BufferedSingerWriter, RecordLineEncoder

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from singer_sdk import metrics
    from singer_sdk.helpers.types import Context

    from tap_linkedin_crm.columns import ColumnType
    from tap_linkedin_crm.downloads import ExportDownloader
    from tap_linkedin_crm.exports import InstanceExport
    from tap_linkedin_crm.tap import TapLinkedInCRM

INSTANCE_KEY = "crmInstanceId"
IN_FLIGHT = "inFlightJob"
NEXT_START = "nextExportStartAt"
#: Rows between two STATE messages while a file is being emitted (the resume granularity).
STATE_EVERY_ROWS = 10_000


def records_schema(column_types: Mapping[str, ColumnType]) -> dict[str, t.Any]:
    """Provenance, then the declared columns (built-in and `column_types`), then the objects."""
    properties: dict[str, t.Any] = {
        INSTANCE_KEY: {"type": "string"},
        "jobId": {"type": "integer"},
        "exportStartAt": {"type": ["integer", "null"]},
        "exportEndAt": {"type": ["integer", "null"]},
        "fileIndex": {"type": "integer", "description": "0-based file of the export job."},
        "rowNumber": {"type": "integer", "description": "1-based data row of the file."},
    }
    for column, column_type in column_types.items():
        properties.setdefault(column, column_json_schema(column_type))
    properties[EXTRA_COLUMNS_FIELD] = {
        "type": ["object", "null"],
        "additionalProperties": {"type": ["string", "null"]},
        "description": "CSV columns not declared in the schema, as strings.",
    }
    properties[INVALID_VALUES_KEY] = {
        "type": ["object", "null"],
        "additionalProperties": {"type": ["string", "null"]},
        "description": "Raw text of declared columns whose value did not convert (then null).",
    }
    return {
        "type": "object",
        "properties": properties,
        "required": [INSTANCE_KEY, "jobId", "fileIndex", "rowNumber"],
    }


class CrmInstanceStream(Stream):
    """Base of the streams: state is kept per CRM instance."""

    replication_key = "exportEndAt"
    is_sorted = True

    @property
    def tap(self) -> TapLinkedInCRM:
        """The tap, typed."""
        return t.cast("TapLinkedInCRM", self._tap)

    @property
    def run(self) -> ExportRun:
        """The sync in progress.

        Raises:
            RuntimeError: Called outside a sync.
        """
        if self.tap.export_run is None:
            msg = "no sync in progress"
            raise RuntimeError(msg)
        return self.tap.export_run

    def instance_state(self, urn: str) -> dict[str, t.Any]:
        """The mutable state partition of one instance."""
        return self.get_context_state({INSTANCE_KEY: urn})


class RecordsStream(CrmInstanceStream):
    """One record per CSV row: provenance fields, declared columns (typed), `extraColumns`.

    It drives the whole sync: it creates every instance's job up front, then, one instance at a
    time, emits the rows and syncs its child, the exports stream, for that instance.
    """

    name = "crm_data_validation_records"
    primary_keys = (INSTANCE_KEY, "jobId", "fileIndex", "rowNumber")
    # The stream writes its own state (see the module docstring): rows are not sorted by it.
    is_sorted = False

    @property
    def partitions(self) -> list[dict[str, t.Any]]:
        """One partition per CRM instance in `crm_instance_ids`."""
        return [{INSTANCE_KEY: str(urn)} for urn in self.config.get("crm_instance_ids") or []]

    def __init__(self, tap: TapLinkedInCRM) -> None:
        """Build the schema once from the declared columns (it is read for every SDK record)."""
        super().__init__(tap, schema=records_schema(tap.column_types))

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """Not used: `_sync_records` drives the export (the SDK's per-record path is bypassed).

        Raises:
            NotImplementedError: Always.
        """
        msg = "RecordsStream emits through _sync_records"
        raise NotImplementedError(msg)

    @property
    def bookmark_owner(self) -> CrmInstanceStream:
        """The stream whose state holds the instances' bookmarks: this one, if selected."""
        return self if self.selected else (self.exports_stream or self)

    @property
    def exports_stream(self) -> ExportsStream | None:
        """The child stream, when it is selected."""
        for child in self.child_streams:
            if isinstance(child, ExportsStream) and child.selected:
                return child
        return None

    def _sync_records(
        self,
        context: Context | None = None,
        *,
        write_messages: bool = True,
    ) -> t.Generator[dict[str, t.Any], t.Any, t.Any]:
        """Run the sync: create all jobs, then emit each instance's rows and its summary.

        This replaces the SDK's loop because the bookmark belongs to the export job, not to any
        row value: it may move only after the last row of a job, and mid-file checkpoints must
        say exactly which rows were emitted.

        Raises:
            SyncFailedError: Some instances failed; the others were synced.
        """
        settings = load_settings(self.config)
        run = ExportRun(settings, records_selected=self.selected)
        self.tap.export_run = run
        owner = self.bookmark_owner
        previous = run.install_signal_handlers()
        urns = [i.urn for i in settings.instances]
        if context:
            urns = [str(context[INSTANCE_KEY])]
        try:
            run.start(
                [
                    plan_for(urn, owner.instance_state(urn), default_start=run.default_start())
                    for urn in urns
                ]
            )
            self._remember_jobs(run)
            self._write_state(force=True)
            yield from self._sync_instances(run, urns, write_messages=write_messages)
        finally:
            run.close()
            run.restore_signal_handlers(previous)
            self.tap.export_run = None
            run.log_summary(urns)
        if run.failures:
            lines = [f"{urn}: {error}" for urn, error in run.failures.items()]
            msg = (
                f"{len(run.failures)} of {len(urns)} CRM instance(s) failed; their bookmarks were "
                "not moved, the others were synced. " + " | ".join(lines)
            )
            raise SyncFailedError(msg)

    def _sync_instances(
        self, run: ExportRun, urns: list[str], *, write_messages: bool
    ) -> Iterator[dict[str, t.Any]]:
        exports = self.exports_stream
        with self.get_sync_timer():
            for urn in urns:
                try:
                    if self.selected:
                        # One record_count metric per instance, tagged with its context.
                        counter = self.get_record_counter()
                        counter.with_context({INSTANCE_KEY: urn})
                        with counter:
                            yield from self._sync_instance(
                                run, urn, counter, write_messages=write_messages
                            )
                    else:
                        self._complete_without_rows(run, urn)
                except SyncInterruptedError:
                    self._remember_jobs(run)
                    self._write_state(force=True)
                    raise
                except LinkedInCRMError as exc:
                    run.fail(urn, exc)
                    self._remember_jobs(run)
                except (AbortedSyncFailedException, AbortedSyncPausedException):
                    raise  # the SDK's dry-run record limit (`--test`): not a failure
                except Exception as exc:  # noqa: BLE001 - one instance must not stop the others
                    # Only the type: such messages may quote URLs, which carry signed tokens.
                    run.fail(urn, LinkedInCRMError(f"unexpected {type(exc).__name__}"))
                    self._remember_jobs(run)
                else:
                    if exports is not None:
                        exports.sync({INSTANCE_KEY: urn})
                self._write_state(force=True)

    def _remember_jobs(self, run: ExportRun) -> None:
        """Point each unfinished instance's `inFlightJob` at its current job.

        An entry already naming that job is kept whole: it holds the resume position (file and
        rows done) of an export the last run stopped inside. A job created in this run, or
        replaced (after `FAILED_*`, or gone), gets a new entry, so the next run resumes it and
        not the job it replaced.
        """
        owner = self.bookmark_owner
        for urn, export in run.coordinator.exports.items():
            if urn in run.summaries or export.job_id is None:
                continue
            state = owner.instance_state(urn)
            if (state.get(IN_FLIGHT) or {}).get("jobId") != export.job_id:
                state[IN_FLIGHT] = run.in_flight(export)

    def _complete_without_rows(self, run: ExportRun, urn: str) -> None:
        """Only the exports stream is selected: the job's completion alone moves its bookmark.

        Raises:
            BaseException: The instance's export failed (the worker's error).
        """
        export = run.coordinator.result(urn)
        if export.error is not None:
            raise export.error
        run.summaries[urn] = run.summary(export, rows=None, byte_count=None)

    def _sync_instance(
        self,
        run: ExportRun,
        urn: str,
        counter: metrics.Counter,
        *,
        write_messages: bool,
    ) -> Iterator[dict[str, t.Any]]:
        export = run.coordinator.result(urn)
        if export.error is not None:
            raise export.error
        job = export.job
        assert job is not None  # noqa: S101 - no error means completed
        state = self.instance_state(urn)
        in_flight = state.get(IN_FLIGHT) or {}
        position = Position(job_id=job.job_id)
        if in_flight.get("jobId") == job.job_id:
            position.file_index = int(in_flight.get("fileIndex", 0))
            position.rows_done = int(in_flight.get("rowsDone", 0))
            if position.file_index or position.rows_done:
                self.logger.info(
                    "CRM instance %s: resuming export job %s at file %d, after row %d.",
                    urn,
                    job.job_id,
                    position.file_index + 1,
                    position.rows_done,
                )
        elif in_flight.get("fileIndex") or in_flight.get("rowsDone"):
            self.logger.warning(
                "CRM instance %s: export job %s, partly emitted by the last run, was replaced by "
                "job %s for the same window; its CRM records will be emitted again under the "
                "new jobId.",
                urn,
                in_flight.get("jobId"),
                job.job_id,
            )
        state[IN_FLIGHT] = run.in_flight(export, position)
        downloader = run.downloader()
        emitted = yield from self._emit_rows(
            run, export, downloader, position, counter, write_messages=write_messages
        )
        done = export.job
        assert done is not None  # noqa: S101
        state.pop(IN_FLIGHT, None)
        state["replication_key"] = self.replication_key
        state["replication_key_value"] = done.export_end_at
        state[NEXT_START] = done.bookmark
        byte_count = sum(f.bytes for f in downloader.files)
        run.summaries[urn] = run.summary(export, rows=emitted, byte_count=byte_count)
        self.logger.info(
            "CRM instance %s: export job %s fully emitted: %d rows from %d file(s); "
            "bookmark nextExportStartAt=%s.",
            urn,
            done.job_id,
            emitted,
            len(done.download_urls),
            done.bookmark,
        )

    def _emit_rows(  # noqa: C901, PLR0913, PLR0915 - the hot loop stays in one frame
        self,
        run: ExportRun,
        export: InstanceExport,
        downloader: ExportDownloader,
        position: Position,
        counter: metrics.Counter,
        *,
        write_messages: bool,
    ) -> t.Generator[dict[str, t.Any], None, int]:
        """Add the provenance fields to each row, write it, checkpoint; return the row count.

        Rows take the fast path (`_record_line_encoder`) when it is exact, else the SDK's.
        """
        urn = export.urn
        state = self.instance_state(urn)
        encoder = self._record_line_encoder() if write_messages else None
        add = None if encoder is None else encoder.add
        emitted = counted = 0
        provenance: dict[str, t.Any] = {}
        provenance_job: object = None
        provenance_file = -1
        check_stop = run.stopper.check
        dry_run_limit = self.ABORT_AT_RECORD_COUNT  # set by `--test`
        try:
            for file_index, row_number, row in downloader.rows(export, position):
                current = export.job
                if current is not provenance_job or file_index != provenance_file:
                    assert current is not None  # noqa: S101 - rows come from a completed job
                    provenance_job, provenance_file = current, file_index
                    provenance = {
                        INSTANCE_KEY: urn,
                        "jobId": current.job_id,
                        "exportStartAt": current.export_start_at,
                        "exportEndAt": current.export_end_at,
                        "fileIndex": file_index,
                    }
                row.update(provenance)
                row["rowNumber"] = row_number
                if add is None:
                    if write_messages:
                        self._write_record_message(row)
                elif not add(row):
                    assert encoder is not None  # noqa: S101 - `add` is its method
                    encoder.flush()
                    self._write_record_message(row)
                emitted += 1
                yield row
                # Only here, with `position` equal to what was written, may a stop cut in.
                check_stop()
                if dry_run_limit is not None and emitted >= dry_run_limit:
                    if encoder is not None:
                        encoder.flush()
                    state[IN_FLIGHT] = run.in_flight(export, position)
                    self._check_max_record_limit(emitted)  # raises the SDK's abort
                if not emitted % STATE_EVERY_ROWS:
                    # The SDK's counter is told in batches: per row it costs a clock read.
                    counter.increment(emitted - counted)
                    counted = emitted
                    if encoder is not None:
                        encoder.flush()  # the STATE below must follow the rows it covers
                        self.state_manager.is_flushed = False
                    state[IN_FLIGHT] = run.in_flight(export, position)
                    self._write_state(force=False)
        finally:
            if emitted != counted:
                counter.increment(emitted - counted)
            if encoder is not None:
                encoder.flush()
                encoder.writer.flush()
                self.state_manager.is_flushed = False
            # Whatever ends the loop (stop, failure, completion), `position` counts exactly the
            # rows written, so the state resumes after the last of them.
            state[IN_FLIGHT] = run.in_flight(export, position)
        return emitted

    def _record_line_encoder(self) -> RecordLineEncoder | None:
        """The fast record path, when it gives exactly what `_write_record_message` would.

        `_write_record_message` removes deselected properties, conforms values to the schema,
        applies the stream maps and encodes with simplejson. The decoder already typed every
        value to the schema (and the provenance fields are typed by construction), so when every
        property is selected and the only stream map is the SDK's identity map without
        flattening, encoding the row directly with orjson yields the same record. Otherwise
        (stream maps, flattening, deselected fields, another message writer) the SDK path runs.
        """
        writer = self._tap.message_writer
        if not isinstance(writer, BufferedSingerWriter):
            return None
        maps = self.stream_maps
        if len(maps) != 1 or type(maps[0]) is not SameRecordTransform:
            return None
        if maps[0].flattening_enabled or not all(self.mask.values()):
            return None
        return RecordLineEncoder(writer, maps[0].stream_alias, self._stream_version)

    def _write_state(self, *, force: bool) -> None:
        if force:
            self.state_manager.is_flushed = False
        self._write_state_message()


class ExportsStream(CrmInstanceStream):
    """One record per completed export job: its window, files, rows and timings."""

    name = "crm_data_validation_exports"
    parent_stream_type = RecordsStream
    primary_keys = ("jobId",)
    schema: t.ClassVar[dict[str, t.Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "jobId": {"type": "integer"},
            INSTANCE_KEY: {"type": "string"},
            "status": {"type": "string"},
            "exportStartAt": {"type": ["integer", "null"]},
            "exportEndAt": {"type": ["integer", "null"]},
            "nextExportStartAt": {"type": ["integer", "null"]},
            "expireAt": {"type": ["integer", "null"]},
            "downloadUrls": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": "File URLs with the signed query string removed.",
            },
            "fileCount": {"type": "integer"},
            "rowCount": {
                "type": ["integer", "null"],
                "description": (
                    "Rows this run emitted from the job (a resumed export counts only the rest); "
                    "null when the records stream was not selected."
                ),
            },
            "byteCount": {"type": ["integer", "null"]},
            "attempts": {"type": "integer"},
            "polls": {"type": "integer"},
            "createdAt": {"type": ["string", "null"], "format": "date-time"},
            "completedAt": {"type": ["string", "null"], "format": "date-time"},
        },
        "required": ["jobId", INSTANCE_KEY, "status"],
    }

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """The summary of the instance's export, once all its rows (if selected) were emitted."""
        if context is None:
            return
        urn = str(context[INSTANCE_KEY])
        summary = self.run.summaries.get(urn)
        if summary is None:
            return
        state = self.instance_state(urn)
        state.pop(IN_FLIGHT, None)
        state[NEXT_START] = summary["nextExportStartAt"] or summary["exportEndAt"]
        yield summary
