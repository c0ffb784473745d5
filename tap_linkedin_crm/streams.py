"""The streams, declared: name, schema, keys, and which export kind feeds them in which role.

A sync is run by the tap (`TapLinkedInCRM.sync_all`), not by the streams: the export engine creates
every selected stream's jobs at the start and writes their records. `get_records` serves only the
SDK's own per-stream path (`--test`, the SDK's test suites): it runs the same engine for that one
stream, without touching state.
"""

from __future__ import annotations

import sys
import typing as t
from dataclasses import dataclass

from singer_sdk import Stream

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

from tap_linkedin_crm.columns import EXTRA_COLUMNS_FIELD, INVALID_VALUES_FIELD, column_json_schema

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_linkedin_crm.columns import ColumnType

INSTANCE_KEY = "crmInstanceId"


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What a stream is. `role`: "rows" (one record per CSV row), "exports" (one per job)."""

    name: str
    kind: str
    role: t.Literal["rows", "exports", "snapshot"]
    primary_keys: tuple[str, ...]
    replication_key: str | None
    schema: Callable[[Mapping[str, ColumnType]], dict[str, t.Any]]
    description: str


def rows_schema(
    provenance: Mapping[str, dict[str, t.Any]], column_types: Mapping[str, ColumnType]
) -> dict[str, t.Any]:
    """Provenance fields, the declared columns, then the objects for the rest.

    Declared columns are the built-in ones and `column_types`; the two objects hold undeclared
    columns and the raw text of values that did not convert.
    """
    properties: dict[str, t.Any] = dict(provenance)
    for column, column_type in column_types.items():
        properties.setdefault(column, column_json_schema(column_type))
    properties[EXTRA_COLUMNS_FIELD] = {
        "type": ["object", "null"],
        "additionalProperties": {"type": ["string", "null"]},
        "description": "CSV columns not declared in the schema, as strings.",
    }
    properties[INVALID_VALUES_FIELD] = {
        "type": ["object", "null"],
        "additionalProperties": {"type": ["string", "null"]},
        "description": "Raw text of declared columns whose value did not convert (then null).",
    }
    required = [name for name, prop in provenance.items() if "null" not in prop["type"]]
    return {"type": "object", "properties": properties, "required": required}


ROW_NUMBER = {"type": "integer", "description": "1-based data row of the file."}
CRM_PROVENANCE: dict[str, dict[str, t.Any]] = {
    INSTANCE_KEY: {"type": "string"},
    "jobId": {"type": "integer"},
    "exportStartAt": {"type": ["integer", "null"]},
    "exportEndAt": {"type": ["integer", "null"]},
    "fileIndex": {"type": "integer", "description": "0-based file of the export job."},
    "rowNumber": ROW_NUMBER,
}
ANALYTICS_PROVENANCE: dict[str, dict[str, t.Any]] = {
    "contract": {"type": "string"},
    "jobId": {"type": "integer"},
    "startAt": {"type": "integer", "description": "Window start (epoch ms, UTC midnight)."},
    "endAt": {"type": "integer", "description": "Window end, exclusive (epoch ms)."},
    "rowNumber": ROW_NUMBER,
}


def records_schema(column_types: Mapping[str, ColumnType]) -> dict[str, t.Any]:
    """The CRM records stream's schema."""
    return rows_schema(CRM_PROVENANCE, column_types)


def analytics_rows_schema(column_types: Mapping[str, ColumnType]) -> dict[str, t.Any]:
    """An analytics rows stream's schema."""
    return rows_schema(ANALYTICS_PROVENANCE, column_types)


#: What every exports stream says about a job besides its kind's own fields.
EXPORT_FACTS: dict[str, t.Any] = {
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
            "null when the rows stream was not selected."
        ),
    },
    "byteCount": {"type": ["integer", "null"]},
    "attempts": {"type": "integer"},
    "polls": {"type": "integer"},
    "createdAt": {"type": ["string", "null"], "format": "date-time"},
    "completedAt": {"type": ["string", "null"], "format": "date-time"},
    "note": {
        "type": ["string", "null"],
        "description": "Why the job's window was taken as empty, when LinkedIn sent no files.",
    },
}


def crm_exports_schema(column_types: Mapping[str, ColumnType]) -> dict[str, t.Any]:  # noqa: ARG001
    """One record per completed CRM export job: LinkedIn's job fields, then the run's facts."""
    return {
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
            **EXPORT_FACTS,
        },
        "required": ["jobId", INSTANCE_KEY, "status"],
    }


CRM_RECORDS = StreamSpec(
    name="crm_data_validation_records",
    kind="crm_data_validation",
    role="rows",
    primary_keys=(INSTANCE_KEY, "jobId", "fileIndex", "rowNumber"),
    replication_key="exportEndAt",
    schema=records_schema,
    description="One record per CSV row of a CRM Data Validation export.",
)
CRM_EXPORTS = StreamSpec(
    name="crm_data_validation_exports",
    kind="crm_data_validation",
    role="exports",
    primary_keys=("jobId",),
    replication_key="exportEndAt",
    schema=crm_exports_schema,
    description="One record per completed CRM Data Validation export job.",
)


def contracts_schema(column_types: Mapping[str, ColumnType]) -> dict[str, t.Any]:  # noqa: ARG001
    """One record per Sales Navigator contract the member can see."""
    return {
        "type": "object",
        "properties": {
            "contract": {"type": "string"},
            "name": {"type": ["string", "null"]},
            "description": {"type": ["string", "null"]},
            "hasReportingAccess": {"type": "boolean"},
        },
        "required": ["contract"],
    }


def analytics_exports_schema(column_types: Mapping[str, ColumnType]) -> dict[str, t.Any]:  # noqa: ARG001
    """One record per completed analytics export job."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer"},
            "exportType": {"type": "string", "enum": ["activity", "activity_outcome", "seat"]},
            "contract": {"type": "string"},
            "startAt": {"type": "integer"},
            "endAt": {"type": "integer"},
            "status": {"type": "string"},
            "rowCount": {
                "type": ["integer", "null"],
                "description": "Rows LinkedIn says the export holds.",
            },
            "rowsEmitted": {
                "type": ["integer", "null"],
                "description": (
                    "Rows this run emitted from the job (a resumed export counts only the rest); "
                    "null when the rows stream was not selected."
                ),
            },
            "expireAt": {"type": ["integer", "null"]},
            **{k: v for k, v in EXPORT_FACTS.items() if k != "rowCount"},
        },
        "required": ["id", "exportType", "contract", "startAt", "endAt", "status"],
    }


SALES_CONTRACTS = StreamSpec(
    name="sales_contracts",
    kind="sales_analytics",
    role="snapshot",
    primary_keys=("contract",),
    replication_key=None,
    schema=contracts_schema,
    description="Every Sales Navigator contract the member can see (full table each run).",
)
SALES_ACTIVITIES = StreamSpec(
    name="sales_activities",
    kind="sales_analytics",
    role="rows",
    primary_keys=("contract", "activityId"),
    replication_key="endAt",
    schema=analytics_rows_schema,
    description="Sales Navigator activities (saved leads, searches, InMails, ...), per contract.",
)
SALES_ACTIVITY_OUTCOMES = StreamSpec(
    name="sales_activity_outcomes",
    kind="sales_analytics",
    role="rows",
    primary_keys=("contract", "activityId", "activityType"),
    replication_key="endAt",
    schema=analytics_rows_schema,
    description="Outcomes of Sales Navigator activities (InMails accepted, ...), per contract.",
)
SALES_SEATS = StreamSpec(
    name="sales_seats",
    kind="sales_analytics",
    role="rows",
    primary_keys=("contract", "startAt", "endAt", "rowNumber"),
    replication_key="endAt",
    schema=analytics_rows_schema,
    description="Per-seat statistics (seat status, SSI, connections, ...) per window.",
)
SALES_EXPORTS = StreamSpec(
    name="sales_analytics_exports",
    kind="sales_analytics",
    role="exports",
    primary_keys=("id",),
    replication_key="endAt",
    schema=analytics_exports_schema,
    description="One record per completed Sales Navigator analytics export job.",
)
STREAM_SPECS: tuple[StreamSpec, ...] = (
    CRM_RECORDS,
    CRM_EXPORTS,
    SALES_CONTRACTS,
    SALES_ACTIVITIES,
    SALES_ACTIVITY_OUTCOMES,
    SALES_SEATS,
    SALES_EXPORTS,
)


class TestRecordSource(t.Protocol):
    """What a stream asks the tap for its records on the SDK's own path (`--test`)."""

    def records_for(self, stream: ExportStream, limit: int | None) -> Iterable[dict[str, t.Any]]:
        """The stream's records, at most `limit`, without touching state."""
        ...


class ExportStream(Stream):
    """A stream fed by an export kind, as declared by its `StreamSpec`."""

    @override
    def __init__(self, tap: Tap, spec: StreamSpec, column_types: Mapping[str, ColumnType]) -> None:
        """Build the schema once (the SDK reads it for every record on its own path)."""
        self.spec = spec
        self.source = t.cast("TestRecordSource", tap)
        super().__init__(tap, schema=spec.schema(column_types), name=spec.name)
        self.primary_keys = spec.primary_keys
        self.replication_key = spec.replication_key

    @property
    @override
    def is_sorted(self) -> bool:
        """Rows come in export order, not in replication-key order; the engine keeps state."""
        return False

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """The SDK's own path (`--test`): this stream's records from a run that keeps no state.

        It stops at the SDK's dry-run limit itself, so the SDK never has to abort it.
        """
        del context
        yield from self.source.records_for(self, self.ABORT_AT_RECORD_COUNT)
