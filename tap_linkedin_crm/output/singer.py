"""Singer output: SCHEMA, RECORD and STATE messages on stdout, as the SDK's path writes them.

Each stream's records go through its stream maps (deselection, property expressions, filters,
aliases, clones, flattening), compiled once per stream (`output.transforms`), and are encoded with
orjson into blocks (`output.writer`). The messages equal those of the SDK's per-record path after
JSON parsing; only their cost differs.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from singer_sdk import singerlib

from tap_linkedin_crm.errors import StreamMapError
from tap_linkedin_crm.output.transforms import mapped_outputs
from tap_linkedin_crm.output.writer import RecordLineEncoder

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from singer_sdk import Stream, Tap
    from singer_sdk.helpers.types import TapState

    from tap_linkedin_crm.output.writer import BufferedSingerWriter

#: Rows between two STATE messages while a file is being emitted (the resume granularity).
STATE_EVERY_ROWS = 10_000


class SingerRecordSink:
    """One stream's records, through each of its stream maps, as RECORD lines."""

    def __init__(
        self,
        writer: BufferedSingerWriter,
        outputs: Sequence[tuple[str, Callable[[dict[str, t.Any]], dict[str, t.Any] | None]]],
        stream_name: str = "",
    ) -> None:
        """Pair each map's transform with an encoder for its stream alias."""
        self.stream_name = stream_name
        self._writer = writer
        self._pairs = [
            (alias, transform, RecordLineEncoder(writer, alias, None))
            for alias, transform in outputs
        ]

    def write(self, record: dict[str, t.Any]) -> None:
        """Transform and encode one record for every map that keeps it.

        Every map runs before any record is encoded: a map failing on this row leaves no other
        map's record of it behind, so the row can be resumed whole.

        Raises:
            StreamMapError: A stream map raised on the record (nothing of it was written).
        """
        pairs = self._pairs
        if len(pairs) == 1:  # the usual case, without the list
            alias, transform, encoder = pairs[0]
            try:
                each = transform(record)
            except Exception as exc:  # noqa: BLE001 - whatever a map expression raises
                raise StreamMapError.of(alias, exc) from None
            if each is not None and not encoder.add(each):
                self._write_with_sdk(encoder, alias, each)
            return
        mapped: list[dict[str, t.Any] | None] = []
        for alias, transform, _ in pairs:
            try:
                mapped.append(transform(record))
            except Exception as exc:  # noqa: BLE001 - whatever a map expression raises
                raise StreamMapError.of(alias, exc) from None
        for (alias, _, encoder), each in zip(pairs, mapped, strict=True):
            if each is not None and not encoder.add(each):
                self._write_with_sdk(encoder, alias, each)

    def _write_with_sdk(
        self, encoder: RecordLineEncoder, alias: str, record: dict[str, t.Any]
    ) -> None:
        """Write a record orjson refuses (ints beyond 64 bits) with the SDK's encoder."""
        encoder.flush()
        self._writer.write_message(
            singerlib.RecordMessage(
                stream=alias, record=record, time_extracted=dt.datetime.now(dt.UTC)
            )
        )

    def flush(self) -> None:
        """Write every encoded line."""
        for _, _, encoder in self._pairs:
            encoder.flush()


class SingerOutput:
    """Writes a run's messages for Singer targets."""

    checkpoint_rows = STATE_EVERY_ROWS

    def __init__(self, tap: Tap, writer: BufferedSingerWriter) -> None:
        """Write through `writer` (the tap's message writer), with the tap's stream maps."""
        self.tap = tap
        self.writer = writer
        self._sinks: dict[str, SingerRecordSink] = {}

    def start(self, streams: Sequence[Stream]) -> None:
        """One SCHEMA per stream map of each selected stream (none for a map that drops it)."""
        config = self.tap.config.get("stream_maps") or {}
        for stream in streams:
            outputs = mapped_outputs(stream, config)
            bookmark_keys = [stream.replication_key] if stream.replication_key else None
            for output in outputs:
                self.writer.write_message(
                    singerlib.SchemaMessage(
                        output.alias, output.schema, output.key_properties, bookmark_keys
                    )
                )
            self._add_sink(stream, [(output.alias, output.transform) for output in outputs])

    def _add_sink(
        self,
        stream: Stream,
        outputs: Sequence[tuple[str, Callable[[dict[str, t.Any]], dict[str, t.Any] | None]]],
    ) -> None:
        """Keep the sink of `stream`, whose records go through `outputs` (alias, transform)."""
        self._sinks[stream.name] = SingerRecordSink(self.writer, outputs, stream.name)

    def sink(self, stream: Stream) -> SingerRecordSink:
        """The sink of a stream announced by `start`."""
        return self._sinks[stream.name]

    def checkpoint(self, state: Mapping[str, t.Any]) -> None:
        """Flush every stream's records, then write the state (when it changed)."""
        for sink in self._sinks.values():
            sink.flush()
        self.tap.state_writer.write_state(t.cast("TapState", dict(state)))

    def waiting(self, state: Mapping[str, t.Any]) -> None:
        """Singer targets need no sign of life while jobs run."""

    def close(self) -> None:
        """Nothing stays open: every message was written."""

    def finish(self, stream: Stream, *, complete: bool) -> None:
        """Flush the stream's records (Singer has no per-stream end message)."""
        del complete
        sink = self._sinks.get(stream.name)
        if sink is not None:
            sink.flush()
