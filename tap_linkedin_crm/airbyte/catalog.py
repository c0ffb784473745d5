"""`discover` and the configured catalog: the tap's streams as Airbyte streams, and which to read.

A stream with a replication key supports `incremental` (the bookmark is the engine's; the cursor
is the key) and is resumable inside a file; every stream supports `full_refresh`, which exports
from `start_date` again. A configured stream asking for `incremental` without a replication key
(PyAirbyte asks every stream for it) is read as `full_refresh`. A rows stream and the exports
stream of its kind come from the same jobs, so they must be read in the same mode.
"""

from __future__ import annotations

import dataclasses
import logging
import typing as t

from tap_linkedin_crm.errors import LinkedInCRMError

if t.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tap_linkedin_crm.streams import ExportStream

LOGGER = logging.getLogger("tap_linkedin_crm.airbyte")

INCREMENTAL = "incremental"
FULL_REFRESH = "full_refresh"


class CatalogError(LinkedInCRMError):
    """The configured catalog is malformed or names a stream this source does not have."""


def airbyte_stream(stream: ExportStream) -> dict[str, t.Any]:
    """One stream of the CATALOG `discover` prints."""
    spec = stream.spec
    incremental = spec.replication_key is not None
    entry: dict[str, t.Any] = {
        "name": spec.name,
        "json_schema": stream.schema,
        "supported_sync_modes": [FULL_REFRESH, INCREMENTAL] if incremental else [FULL_REFRESH],
        "source_defined_primary_key": [[key] for key in spec.primary_keys],
        "is_resumable": incremental,
    }
    if incremental:
        entry["source_defined_cursor"] = True
        entry["default_cursor_field"] = [spec.replication_key]
    return entry


def catalog_message(streams: Sequence[ExportStream]) -> dict[str, t.Any]:
    """The one message `discover` prints: every stream the tap declares."""
    return {"type": "CATALOG", "catalog": {"streams": [airbyte_stream(s) for s in streams]}}


@dataclasses.dataclass(frozen=True, slots=True)
class ConfiguredStream:
    """A stream the configured catalog asks for, with the sync mode it will be read in."""

    stream: ExportStream
    sync_mode: t.Literal["incremental", "full_refresh"]

    @property
    def name(self) -> str:
        """The stream's name."""
        return self.stream.name

    @property
    def incremental(self) -> bool:
        """Whether the stream's state is used (else it is ignored and exported from the start)."""
        return self.sync_mode == INCREMENTAL


def configured_streams(
    catalog: object, streams: Mapping[str, ExportStream]
) -> list[ConfiguredStream]:
    """The streams a configured catalog selects, in the tap's declaration order.

    Raises:
        CatalogError: The catalog is not a configured catalog, or names an unknown stream.
    """
    entries = catalog.get("streams") if isinstance(catalog, dict) else None
    if not isinstance(entries, list) or not entries:
        msg = (
            'The --catalog file must be a configured catalog: {"streams": [{"stream": '
            '{"name": ...}, "sync_mode": ...}, ...]} with at least one stream.'
        )
        raise CatalogError(msg)
    modes: dict[str, t.Literal["incremental", "full_refresh"]] = {}
    for index, entry in enumerate(entries):
        name = _stream_name(entry)
        mode = entry.get("sync_mode") if isinstance(entry, dict) else None
        if name is None or mode not in (INCREMENTAL, FULL_REFRESH):
            msg = (
                f"Stream {index} of the configured catalog needs stream.name and a sync_mode of "
                f"{INCREMENTAL} or {FULL_REFRESH}."
            )
            raise CatalogError(msg)
        if name not in streams:
            msg = (
                f"The configured catalog asks for stream {name!r}, which this source does not "
                f"have; its streams are {', '.join(sorted(streams))}. Run discover again."
            )
            raise CatalogError(msg)
        incremental = mode == INCREMENTAL and streams[name].spec.replication_key is not None
        if mode == INCREMENTAL and not incremental:
            LOGGER.info("Stream %s has no cursor: it is read in full_refresh mode.", name)
        modes[name] = "incremental" if incremental else "full_refresh"
    _check_shared_exports(modes, streams)
    return [
        ConfiguredStream(stream, modes[name]) for name, stream in streams.items() if name in modes
    ]


def _check_shared_exports(
    modes: Mapping[str, t.Literal["incremental", "full_refresh"]],
    streams: Mapping[str, ExportStream],
) -> None:
    """A rows stream and its exports stream come from the same jobs: one sync mode for both.

    Read in full refresh, the exports stream would export the rows stream's windows again from
    the start on every read, duplicating every row of the incremental rows stream.

    Raises:
        CatalogError: A rows stream and the exports stream of its kind differ in sync mode.
    """
    for exports, mode in modes.items():
        spec = streams[exports].spec
        if spec.role != "exports":
            continue
        for rows, rows_mode in modes.items():
            other = streams[rows].spec
            if other.role == "rows" and other.kind == spec.kind and rows_mode != mode:
                msg = (
                    f"Streams {rows} ({rows_mode}) and {exports} ({mode}) come from the same "
                    "export jobs and cannot be read in different sync modes (a full refresh of "
                    f"one would export the other's rows again on every read): read both "
                    f"{INCREMENTAL}, or both {FULL_REFRESH}."
                )
                raise CatalogError(msg)


def _stream_name(entry: object) -> str | None:
    stream = entry.get("stream") if isinstance(entry, dict) else None
    name = stream.get("name") if isinstance(stream, dict) else None
    return name if isinstance(name, str) else None
