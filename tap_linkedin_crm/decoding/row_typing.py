"""Typing one CSV record into a row dict: the row keys, the generated builder, the plain path."""

from __future__ import annotations

import typing as t

from tap_linkedin_crm.columns import EXTRA_COLUMNS_FIELD, INVALID_VALUES_FIELD
from tap_linkedin_crm.decoding.converters import BOOLEANS, converter, timestamp_caching

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from tap_linkedin_crm.columns import ColumnType
    from tap_linkedin_crm.decoding.converters import Converter

__all__ = ["EXTRA_COLUMNS_KEY", "INVALID_VALUES_KEY", "convert_one_by_one", "row_builder"]

EXTRA_COLUMNS_KEY = EXTRA_COLUMNS_FIELD
"""Row key of an object holding, as raw strings, the file's columns that are not declared.

Present in every row of a file whose header has such columns, absent otherwise.
"""

INVALID_VALUES_KEY = INVALID_VALUES_FIELD
"""Row key of an object holding the raw string of every declared value that did not convert.

The typed field of such a value is None. The key is present only in rows that have one.
"""


def row_builder(
    header: Sequence[str], declared: Mapping[str, ColumnType], *, complete: bool
) -> Callable[[list[str]], dict[str, t.Any]]:
    """Return a function typing one row of a file with this (non-empty) header.

    It is generated from the header, like `collections.namedtuple` and `dataclasses` generate
    their methods, so typing a row costs one tuple unpack (which raises ValueError when the
    width differs) and one dict display with constant keys; booleans are a dict subscript,
    other types one converter call. It raises ValueError or LookupError when a value does not
    convert. Keys come out in the order `CsvDecoder` documents (its plain path makes the same).
    Header names only ever appear as `repr()` string constants in the generated source.
    """
    variables = [f"c{i}" for i in range(len(header))]
    namespace: dict[str, t.Any] = {"__builtins__": {}, "B": BOOLEANS}
    items: list[str] = []
    extra: list[str] = []
    for i, name in enumerate(header):
        column_type = declared.get(name)
        if column_type is None:
            extra.append(f"{name!r}: c{i}")
        elif column_type == "string":
            items.append(f"{name!r}: c{i}")
        elif column_type == "boolean":
            items.append(f"{name!r}: B[c{i}]")
        elif column_type == "timestamp":
            namespace[f"t{i}"], namespace[f"f{i}"] = timestamp_caching()
            # A cached result is never "" (falsy), so `or` calls the converter on a miss only.
            items.append(f"{name!r}: t{i}.get(c{i}) or f{i}(c{i})")
        else:
            namespace[f"f{i}"] = converter(column_type)
            items.append(f"{name!r}: f{i}(c{i})")
    extra_object = "{" + ", ".join(extra) + "}"
    if complete:
        items += [f"{name!r}: None" for name in declared if name not in header]
        if extra:
            items += [f"{INVALID_VALUES_KEY!r}: None", f"{EXTRA_COLUMNS_KEY!r}: {extra_object}"]
        else:
            items += [f"{EXTRA_COLUMNS_KEY!r}: None", f"{INVALID_VALUES_KEY!r}: None"]
    elif extra:
        items.append(f"{EXTRA_COLUMNS_KEY!r}: {extra_object}")
    source = (
        f"def build(row):\n    {', '.join(variables)}, = row\n    return {{{', '.join(items)}}}\n"
    )
    exec(source, namespace)  # noqa: S102 - generated from repr() constants only, see above
    return t.cast("Callable[[list[str]], dict[str, t.Any]]", namespace["build"])


def convert_one_by_one(
    record: dict[str, t.Any], row: list[str], typed: list[tuple[int, str, Converter]]
) -> dict[str, str]:
    """Convert a row's values one at a time; return the raw strings that did not convert."""
    invalid: dict[str, str] = {}
    for i, name, convert in typed:
        value = row[i]
        try:
            record[name] = convert(value)
        except (ValueError, LookupError, OverflowError):
            record[name] = None
            invalid[name] = value
    return invalid
