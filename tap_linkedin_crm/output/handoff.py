"""Hand-off output: one stream's records passed to another thread, for the SDK's own path.

`Stream.get_records` (used by `--test` and the SDK's test suites) must yield records; the engine
writes them. This output hands the chosen stream's records over a bounded queue and stops the run
once the consumer has enough, so memory stays flat and no job is waited for needlessly.
"""

from __future__ import annotations

import queue
import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from singer_sdk import Stream

    from tap_linkedin_crm.engine.stopper import Stopper

#: Sentinel put on the queue when the run ends.
END = object()


class _HandoffSink:
    def __init__(self, output: HandoffOutput, *, wanted: bool) -> None:
        self._output = output
        self._wanted = wanted

    def write(self, record: dict[str, t.Any]) -> None:
        if self._wanted:
            self._output.put(record)

    def flush(self) -> None:
        """Nothing is buffered."""


class HandoffOutput:
    """Passes one stream's records to a consumer; ignores the others and all state."""

    checkpoint_rows = 10_000

    def __init__(self, stream_name: str, limit: int | None, stopper: Stopper) -> None:
        """Hand over `stream_name`'s records, at most `limit`; then stop the run via `stopper`."""
        self.stream_name = stream_name
        self.limit = limit
        self.stopper = stopper
        self.queue: queue.Queue[object] = queue.Queue(maxsize=1000)
        self.count = 0

    def put(self, record: dict[str, t.Any]) -> None:
        """Hand one record over (blocks while the consumer is behind)."""
        if self.limit is not None and self.count >= self.limit:
            return
        while not self.stopper.stopped:
            try:
                self.queue.put(dict(record), timeout=0.2)
                break
            except queue.Full:
                continue
        self.count += 1
        if self.limit is not None and self.count >= self.limit:
            self.stopper.stop()

    def start(self, streams: Sequence[Stream]) -> None:
        """No announcement: the SDK writes the SCHEMA on this path."""

    def sink(self, stream: Stream) -> _HandoffSink:
        """A sink that keeps only the chosen stream's records."""
        return _HandoffSink(self, wanted=stream.name == self.stream_name)

    def checkpoint(self, state: Mapping[str, t.Any]) -> None:
        """State is not kept on this path."""

    def waiting(self, state: Mapping[str, t.Any]) -> None:
        """Nothing to signal."""

    def finish(self, stream: Stream, *, complete: bool) -> None:
        """Nothing to finish."""

    def close(self) -> None:
        """Nothing to release."""
