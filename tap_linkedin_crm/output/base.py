"""What every output does: the engine writes through this, whatever the protocol or format.

An output receives each selected stream's records through a `RecordSink`, and the tap state at
checkpoints. A checkpoint promises the consumer that everything written before it was delivered
(RECORD lines flushed, batch files closed and announced), so a STATE never runs ahead of the data it
covers, and the run resumes after the last STATE the consumer saw.
"""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from singer_sdk import Stream


class RecordSink(t.Protocol):
    """Takes one stream's records, in order."""

    def write(self, record: dict[str, t.Any]) -> None:
        """Take one record (complete: every schema property, in schema order)."""
        ...

    def flush(self) -> None:
        """Deliver everything taken so far (before a checkpoint)."""
        ...


class Output(t.Protocol):
    """Where a run's schemas, records and state go."""

    #: Records between two checkpoints while a file is emitted (the resume granularity).
    checkpoint_rows: int

    def start(self, streams: Sequence[Stream]) -> None:
        """Announce the selected streams (SCHEMA messages, stream statuses)."""
        ...

    def sink(self, stream: Stream) -> RecordSink:
        """The sink of one selected stream (the same object on every call)."""
        ...

    def checkpoint(self, state: Mapping[str, t.Any]) -> None:
        """Deliver every sink's records, then the state."""
        ...

    def waiting(self, state: Mapping[str, t.Any]) -> None:
        """Called about once a minute while the run waits for export jobs."""
        ...

    def finish(self, stream: Stream, *, complete: bool) -> None:
        """A stream got everything this run will give it (`complete`: without failures)."""
        ...

    def close(self) -> None:
        """The run ended (also when it failed or was stopped): release what is still open."""
        ...
