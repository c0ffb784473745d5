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

import datetime as dt
import typing as t

from singer_sdk import Stream
from singer_sdk.helpers.types import Context

from tap_linkedin_crm.columns import EXTRA_COLUMNS_FIELD, column_json_schema
from tap_linkedin_crm.downloads import Position
from tap_linkedin_crm.errors import LinkedInCRMError, SyncInterruptedError

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from singer_sdk import metrics

    from tap_linkedin_crm.exports import InstanceExport
    from tap_linkedin_crm.run import ExportRun
    from tap_linkedin_crm.tap import TapLinkedInCRM

INSTANCE_KEY = "crmInstanceId"
IN_FLIGHT = "inFlightJob"
NEXT_START = "nextExportStartAt"
#: Rows between two STATE messages while a file is being emitted (the resume granularity).
STATE_EVERY_ROWS = 10_000


def ms_to_rfc3339(value: int | None) -> str | None:
    """Epoch milliseconds as an RFC 3339 UTC string."""
    if value is None:
        return None
    stamp = dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CrmInstanceStream(Stream):
    """Base of the streams: one partition per configured CRM instance."""

    replication_key = "exportEndAt"
    is_sorted = True

    @property
    def tap(self) -> TapLinkedInCRM:
        """The tap, typed."""
        return t.cast("TapLinkedInCRM", self._tap)

    @property
    def partitions(self) -> list[dict[str, t.Any]]:
        """One partition per CRM instance in `crm_instance_ids`."""
        return [{INSTANCE_KEY: str(urn)} for urn in self.config.get("crm_instance_ids") or []]

    def instance_state(self, urn: str) -> dict[str, t.Any]:
        """The mutable state partition of one instance."""
        return self.get_context_state(Context({INSTANCE_KEY: urn}))


class ExportsStream(CrmInstanceStream):
    """One record per completed export job: its window, files, rows and timings."""

    name = "crm_data_validation_exports"
    primary_keys = ("jobId",)
    schema: t.ClassVar[dict[str, t.Any]] = {  # type: ignore[misc]
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
                "description": "Rows emitted; null when the records stream was not selected.",
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
        """The export summary of the instance, once its rows (if selected) were all emitted."""
        if context is None:
            return
        urn = str(context[INSTANCE_KEY])
        run = self.tap.export_run
        summary = run.summaries.get(urn)
        if summary is None and not run.records_selected:
            summary = self._complete_without_rows(run, urn)
        if summary is not None:
            self.instance_state(urn)[NEXT_START] = (
                summary["nextExportStartAt"] or summary["exportEndAt"]
            )
            yield summary

    def _complete_without_rows(self, run: ExportRun, urn: str) -> dict[str, t.Any] | None:
        """Only this stream is selected: the job's completion alone moves the bookmark."""
        export = run.coordinator.result(urn)
        if export.error is not None or export.job is None:
            run.fail(urn, export.error)
            return None
        self.instance_state(urn).pop(IN_FLIGHT, None)
        return run.summary(export, rows=None, byte_count=None)


class RecordsStream(CrmInstanceStream):
    """One record per CSV row: provenance fields, declared columns (typed), `extraColumns`."""

    name = "crm_data_validation_records"
    primary_keys = (INSTANCE_KEY, "jobId", "fileIndex", "rowNumber")
    # The stream writes its own state (see the module docstring): rows are not sorted by it.
    is_sorted = False

    @property
    def schema(self) -> dict[str, t.Any]:  # type: ignore[override]
        """Provenance, then the declared columns (built-in and `column_types`), then extras."""
        properties: dict[str, t.Any] = {
            INSTANCE_KEY: {"type": "string"},
            "jobId": {"type": "integer"},
            "exportStartAt": {"type": ["integer", "null"]},
            "exportEndAt": {"type": ["integer", "null"]},
            "fileIndex": {"type": "integer", "description": "0-based file of the export job."},
            "rowNumber": {"type": "integer", "description": "1-based data row of the file."},
        }
        for column, column_type in self.tap.column_types.items():
            properties.setdefault(column, column_json_schema(column_type))
        properties[EXTRA_COLUMNS_FIELD] = {
            "type": ["object", "null"],
            "additionalProperties": {"type": ["string", "null"]},
            "description": "CSV columns not declared in the schema, as strings.",
        }
        return {
            "type": "object",
            "properties": properties,
            "required": list(self.primary_keys),
        }

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """Not used: `_sync_records` drives the export (the SDK's per-record path is bypassed).

        Raises:
            NotImplementedError: Always.
        """
        msg = "RecordsStream emits through _sync_records"
        raise NotImplementedError(msg)

    def _sync_records(  # type: ignore[override]
        self,
        context: Context | None = None,
        *,
        write_messages: bool = True,
    ) -> Iterator[dict[str, t.Any]]:
        """Emit every instance's rows and write state at safe points.

        This replaces the SDK's loop because the bookmark belongs to the export job, not to any
        row value: it may move only after the last row of a job, and mid-file checkpoints must
        say exactly which rows were emitted.
        """
        run = self.tap.export_run
        record_counter = self.get_record_counter()
        timer = self.get_sync_timer()
        contexts: list[Mapping[str, t.Any]] = [context] if context else self.partitions
        with record_counter, timer:
            for partition in contexts:
                urn = str(partition[INSTANCE_KEY])
                record_counter.with_context(Context(partition))
                state = self.instance_state(urn)
                try:
                    yield from self._sync_instance(
                        run, urn, state, record_counter, write_messages=write_messages
                    )
                except SyncInterruptedError:
                    self._write_state(force=True)
                    raise
                except LinkedInCRMError as exc:
                    run.fail(urn, exc)
                self._write_state(force=True)

    def _sync_instance(
        self,
        run: ExportRun,
        urn: str,
        state: dict[str, t.Any],
        counter: metrics.Counter,
        *,
        write_messages: bool,
    ) -> Iterator[dict[str, t.Any]]:
        export = run.coordinator.result(urn)
        if export.error is not None:
            raise export.error
        job = export.job
        assert job is not None  # noqa: S101 - no error means completed
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
        state[IN_FLIGHT] = run.in_flight(export, position)
        downloader = run.downloader()
        emitted = 0
        for file_index, row_number, row in downloader.rows(export, position):
            run.stopper.check()
            current = export.job
            assert current is not None  # noqa: S101
            row[INSTANCE_KEY] = urn
            row["jobId"] = current.job_id
            row["exportStartAt"] = current.export_start_at
            row["exportEndAt"] = current.export_end_at
            row["fileIndex"] = file_index
            row["rowNumber"] = row_number
            if write_messages:
                self._write_record_message(row)
            emitted += 1
            counter.increment()
            yield row
            if not emitted % STATE_EVERY_ROWS:
                state[IN_FLIGHT] = run.in_flight(export, position)
                self._write_state(force=False)
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

    def _write_state(self, *, force: bool) -> None:
        if force:
            self.state_manager.is_flushed = False
        self._write_state_message()


def export_summary(
    export: InstanceExport, *, rows: int | None, byte_count: int | None, redact: t.Any
) -> dict[str, t.Any]:
    """The exports-stream record of a completed export."""
    job = export.job
    assert job is not None  # noqa: S101
    return {
        "jobId": job.job_id,
        INSTANCE_KEY: export.urn,
        "status": job.status,
        "exportStartAt": job.export_start_at,
        "exportEndAt": job.export_end_at,
        "nextExportStartAt": job.next_export_start_at,
        "expireAt": job.expire_at,
        "downloadUrls": [redact(u) for u in job.download_urls],
        "fileCount": len(job.download_urls),
        "rowCount": rows,
        "byteCount": byte_count,
        "attempts": export.attempt,
        "polls": export.polls,
        "createdAt": ms_to_rfc3339(export.created_at),
        "completedAt": ms_to_rfc3339(export.completed_at),
    }
