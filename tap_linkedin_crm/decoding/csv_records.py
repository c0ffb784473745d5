"""Decoded lines to CSV records, with a private field size limit."""

from __future__ import annotations

import csv
import functools
import importlib.util
import typing as t

from tap_linkedin_crm.decoding.limits import MAX_FIELD_CHARS

if t.TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["csv_module", "csv_records"]


@functools.cache
def csv_module() -> t.Any:  # noqa: ANN401 - the `_csv` C module; typeshed has no type for it
    """Return a private instance of the C `_csv` module whose field size limit is ours.

    `csv.field_size_limit` is process-wide state of the shared `_csv` module (default 128 KiB).
    `_csv` uses multi-phase initialisation (PEP 489), so a second instance has its own limit:
    raising it there leaves every other user of `csv` untouched. Should an interpreter ever
    return the shared module instead, the default limit is kept and longer fields are reported
    as malformed rather than changing global state.
    """
    spec = importlib.util.find_spec("_csv")
    if spec is None or spec.loader is None:  # pragma: no cover - CPython always has _csv
        return csv
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if module is getattr(csv, "_csv", None) or module.Error is csv.Error:  # pragma: no cover
        return csv
    module.field_size_limit(MAX_FIELD_CHARS)
    return module


def csv_records(lines: Iterator[str]) -> Iterator[list[str]]:
    """Parse decoded lines into records with the strict RFC 4180 dialect; an empty line gives []."""
    reader: Iterator[list[str]] = csv_module().reader(
        lines,
        delimiter=",",
        quotechar='"',
        doublequote=True,
        skipinitialspace=False,
        strict=True,
    )
    return reader
