"""CSV column types: each rows stream's built-in typed columns and the JSON schema of each type.

LinkedIn does not publish the CSV columns of CRM Data Validation exports, nor those of the seat
export and most of the activity outcome export. The defaults below are LinkedIn's documented columns
where there are some (activities) and an assumption elsewhere (the column set our sandbox serves);
the tap does not depend on them: declared columns that a file lacks are null, and undeclared columns
are kept as strings in `extraColumns`.
"""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Mapping

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
#: Field that holds the raw text of declared values that did not convert.
INVALID_VALUES_FIELD = "invalidValues"

#: The rows stream a bare `column_types` key applies to (the first one, for compatibility).
DEFAULT_COLUMN_STREAM = "crm_data_validation_records"
#: Typed columns each rows stream declares out of the box (LinkedIn documents the activity export;
#: the outcome export documents only its first two columns, the seat export none).
BUILTIN_COLUMN_TYPES: dict[str, dict[str, ColumnType]] = {
    DEFAULT_COLUMN_STREAM: DEFAULT_COLUMN_TYPES,
    "sales_activities": {
        "activityId": "string",
        "activityType": "string",
        "createdAt": "timestamp",
        "seatId": "integer",
        "memberIdentityKey": "string",
    },
    "sales_activity_outcomes": {"activityId": "string", "activityType": "string"},
    "sales_seats": {},
}
_ANALYTICS_PROVENANCE = frozenset({"contract", "jobId", "startAt", "endAt", "rowNumber"})
#: Fields each rows stream sets itself; `column_types` may not declare them.
RESERVED_FIELDS: dict[str, frozenset[str]] = {
    DEFAULT_COLUMN_STREAM: frozenset(
        {"crmInstanceId", "jobId", "exportStartAt", "exportEndAt", "fileIndex", "rowNumber"}
    ),
    "sales_activities": _ANALYTICS_PROVENANCE,
    "sales_activity_outcomes": _ANALYTICS_PROVENANCE,
    "sales_seats": _ANALYTICS_PROVENANCE,
}
_OBJECT_FIELDS = frozenset({EXTRA_COLUMNS_FIELD, INVALID_VALUES_FIELD})


def _flat(declared: Mapping[str, object]) -> list[tuple[str, object]]:
    """`{"s": {"c": t}}` (Meltano's form of dotted keys) as `("s.c", t)`; other keys as they are."""
    flat: list[tuple[str, object]] = []
    for key, value in declared.items():
        if isinstance(value, dict):
            flat += [(f"{key}.{column}", type_name) for column, type_name in value.items()]
        else:
            flat.append((str(key), value))
    return flat


def column_types_by_stream(
    declared: Mapping[str, object], problems: list[str] | None = None
) -> dict[str, dict[str, ColumnType]]:
    """Each rows stream's typed columns: built-in ones plus `column_types`.

    A bare key applies to `DEFAULT_COLUMN_STREAM`, `<stream>.<column>` to that stream. Bad
    entries are reported in `problems` (or ignored when it is None) and left out.
    """
    result = {stream: dict(types) for stream, types in BUILTIN_COLUMN_TYPES.items()}
    for key, type_name in _flat(declared):
        stream, dot, column = key.partition(".")
        if not dot:
            stream, column = DEFAULT_COLUMN_STREAM, key
        problem = None
        if stream not in result:
            problem = (
                f"column_types[{key!r}]: {stream!r} is not a rows stream; use one of "
                f"{', '.join(result)} before the dot."
            )
        elif column in RESERVED_FIELDS[stream] or column in _OBJECT_FIELDS:
            problem = (
                f"column_types[{key!r}]: {column!r} is a field the tap sets itself; a CSV column "
                "of that name is kept in extraColumns."
            )
        elif type_name not in COLUMN_TYPE_NAMES:
            names = ", ".join(COLUMN_TYPE_NAMES)
            problem = f"column_types[{key!r}] is {type_name!r}; use one of {names}."
        if problem is None:
            result[stream][column] = t.cast("ColumnType", type_name)
        elif problems is not None:
            problems.append(problem)
    return result


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


def column_types_from_schema(stream: str, schema: Mapping[str, t.Any]) -> dict[str, ColumnType]:
    """The typed columns a rows stream's JSON schema declares (the inverse of its schema).

    With a catalog from an earlier discovery (before `column_types` changed) or edited by hand
    (Meltano's `schema` extra), the records must follow that schema: its typed columns are the
    ones to decode, and any other column goes to `extraColumns`. A property of a type no column
    type maps to is taken as a string column.
    """
    reserved = RESERVED_FIELDS.get(stream, frozenset()) | _OBJECT_FIELDS
    declared: dict[str, ColumnType] = {}
    for name, prop in (schema.get("properties") or {}).items():
        if name in reserved or not isinstance(prop, dict):
            continue
        declared[name] = _column_type_of(prop)
    return declared


def schema_without_strings(stream: str, schema: Mapping[str, t.Any]) -> list[str]:
    """Columns a rows stream's JSON schema types so that no CSV text fits (objects, arrays)."""
    declared = column_types_from_schema(stream, schema)
    properties = schema.get("properties") or {}
    return [
        name
        for name, column_type in declared.items()
        if column_type == "string"
        and (types := _type_names(properties[name]))
        and "string" not in types
    ]


def _variants(prop: Mapping[str, t.Any]) -> list[Mapping[str, t.Any]]:
    # `{"anyOf": [{"type": "boolean"}, {"type": "null"}]}` is as typed as `["boolean", "null"]`.
    return [prop] + [
        variant
        for keyword in ("anyOf", "oneOf")
        for variant in prop.get(keyword) or ()
        if isinstance(variant, dict)
    ]


def _type_names(prop: Mapping[str, t.Any]) -> set[str]:
    names: set[str] = set()
    for variant in _variants(prop):
        types = variant.get("type")
        names |= {types} if isinstance(types, str) else set(types or ())
    return names


def _column_type_of(prop: Mapping[str, t.Any]) -> ColumnType:
    variants = _variants(prop)
    names = _type_names(prop)
    names.discard("null")
    date_time = any(variant.get("format") == "date-time" for variant in variants)
    if names == {"string"} and date_time:
        return "timestamp"
    if len(names) == 1:
        (name,) = names
        if name in {"integer", "number", "boolean"}:
            return t.cast("ColumnType", name)
    return "string"
