"""CSV column types: the built-in typed columns and the JSON schema each type maps to.

LinkedIn does not publish the CSV columns of CRM Data Validation exports. The defaults below are
an assumption (the column set our sandbox serves); the tap does not depend on them: declared
columns that a file lacks are null, and undeclared columns are kept as strings in `extraColumns`.
"""

from __future__ import annotations

import typing as t

ColumnType = t.Literal["string", "integer", "number", "boolean", "timestamp"]
COLUMN_TYPE_NAMES: tuple[ColumnType, ...] = t.get_args(ColumnType)

#: Typed columns declared out of the box. Users add or override entries with `column_types`.
DEFAULT_COLUMN_TYPES: dict[str, ColumnType] = {
    "crmRecordId": "string",
    "recordType": "string",
    "firstName": "string",
    "lastName": "string",
    "email": "string",
    "title": "string",
    "crmCompanyName": "string",
    "linkedInCompanyName": "string",
    "linkedInProfileUrl": "string",
    "notAtCompany": "boolean",
    "flaggedAt": "timestamp",
    "lastSyncedAt": "timestamp",
}

#: Field that holds every CSV column the schema does not declare, as strings.
EXTRA_COLUMNS_FIELD = "extraColumns"


def column_json_schema(column_type: ColumnType) -> dict[str, t.Any]:
    """JSON schema of one CSV column: always nullable, since any file may lack the column."""
    match column_type:
        case "string":
            return {"type": ["string", "null"]}
        case "integer":
            return {"type": ["integer", "null"]}
        case "number":
            return {"type": ["number", "null"]}
        case "boolean":
            return {"type": ["boolean", "null"]}
        case "timestamp":
            return {"type": ["string", "null"], "format": "date-time"}
        case _:
            t.assert_never(column_type)
