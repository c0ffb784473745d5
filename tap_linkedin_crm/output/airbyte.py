"""Airbyte output: RECORD, per-stream STATE and STREAM_STATUS messages for the Airbyte protocol.

Records are encoded with orjson straight into blocks of RECORD lines (`emitted_at` taken once per
block), since an export can hold millions of rows. At each checkpoint every sink is flushed, then
each stream whose blob changed gets a STATE (see `airbyte.state` for what a stream's blob is and
in which order they go out) with the records emitted for it since its previous STATE; an unchanged
blob is never sent twice in a row. Statuses: STARTED for every configured stream at the start,
RUNNING at a stream's first record, and COMPLETE or INCOMPLETE after its last STATE.

While the engine waits for export jobs, a STATE goes out at least every `heartbeat_seconds`
(Airbyte fails a source that sends no RECORD or STATE for three hours): the state of the family
still running, with a fresh `heartbeatAt`.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import typing as t

import orjson

from tap_linkedin_crm.airbyte.messages import (
    StreamStatus,
    connector_config,
    state_message,
    stream_status,
)
from tap_linkedin_crm.airbyte.state import HEARTBEAT_KEY, STATEFUL_ROLES, StateGroups

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from singer_sdk import Stream

    from tap_linkedin_crm.airbyte.catalog import ConfiguredStream
    from tap_linkedin_crm.airbyte.messages import MessageWriter

#: Records between two checkpoints while a file is emitted (the resume granularity).
STATE_EVERY_ROWS = 10_000
#: Longest quiet spell while jobs run; the engine calls `waiting` about once a minute, so this
#: keeps every gap under Airbyte's 30-minute guidance (its limit is 3 hours).
HEARTBEAT_SECONDS = 25 * 60.0
#: Encoded bytes per block of RECORD lines handed to the writer.
BLOCK_BYTES = 256 * 1024
#: The setting holding the member's refresh token (Sales Navigator Analytics).
REFRESH_TOKEN_SETTING = "refresh_token"  # noqa: S105 - a setting's name

_dumps = orjson.dumps
_RECORD_END = b"}}\n"


class AirbyteRecordSink:
    """One stream's records as RECORD lines, in blocks."""

    def __init__(self, writer: MessageWriter, name: str, on_first: Callable[[str], None]) -> None:
        """Encode records of stream `name`; `on_first` is told before its first record."""
        self.name = name
        #: Records written since the stream's previous STATE.
        self.count = 0
        self._writer = writer
        self._on_first: Callable[[str], None] | None = on_first
        self._head = b'{"type":"RECORD","record":{"stream":' + _dumps(name) + b',"emitted_at":'
        self._prefix = b""
        self._block = bytearray()
        self._stamp()

    def _stamp(self) -> None:
        self._prefix = self._head + str(int(time.time() * 1000)).encode() + b',"data":'

    def write(self, record: dict[str, t.Any]) -> None:
        """Encode one record into the block; the block is written every `BLOCK_BYTES`."""
        if self._on_first is not None:
            self._on_first(self.name)
            self._on_first = None
        try:
            body = _dumps(record)
        except orjson.JSONEncodeError:  # ints beyond 64 bits
            body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
        block = self._block
        block += self._prefix
        block += body
        block += _RECORD_END
        self.count += 1
        if len(block) >= BLOCK_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the block."""
        if self._block:
            self._writer.write_block(self._block)
            del self._block[:]
            self._stamp()


class AirbyteOutput:
    """Writes a read's messages for Airbyte, for the configured streams."""

    checkpoint_rows = STATE_EVERY_ROWS

    def __init__(
        self,
        writer: MessageWriter,
        configured: Sequence[ConfiguredStream],
        *,
        config: Mapping[str, t.Any] | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Write through `writer`; `config` is the read's configuration, for `update_config`."""
        self.writer = writer
        self.groups = StateGroups.of(c.stream for c in configured)
        self.heartbeat_seconds = heartbeat_seconds
        self._clock = clock
        self._names = [c.name for c in configured]
        self._roles = {c.name: c.stream.spec.role for c in configured}
        self._sinks: dict[str, AirbyteRecordSink] = {}
        self._sent: dict[str, bytes] = {}
        self._statuses: dict[str, StreamStatus] = {}
        self._ending: dict[str, StreamStatus] = {}
        self._config = dict(config or {})
        self._config_lock = threading.Lock()

    # Output -----------------------------------------------------------------------------------

    def start(self, streams: Sequence[Stream]) -> None:
        """STARTED for every configured stream; a sink for each stream the engine runs."""
        for name in self._names:
            if name not in self._statuses:
                self._status(name, StreamStatus.STARTED)
        for stream in streams:
            if stream.name not in self._sinks:
                self._sinks[stream.name] = AirbyteRecordSink(
                    self.writer, stream.name, self._running
                )

    def sink(self, stream: Stream) -> AirbyteRecordSink:
        """The sink of a stream announced by `start`."""
        return self._sinks[stream.name]

    def checkpoint(self, state: Mapping[str, t.Any]) -> None:
        """Flush every sink, send the changed states, then the statuses of finished streams."""
        self._flush()
        self._send_states(state)
        self._send_endings()

    def waiting(self, state: Mapping[str, t.Any]) -> None:
        """A checkpoint (new job ids are worth keeping), and a heartbeat if one is due."""
        self.checkpoint(state)
        if self._clock() - self.writer.last_heartbeat >= self.heartbeat_seconds:
            self._heartbeat(state)

    def finish(self, stream: Stream, *, complete: bool) -> None:
        """Flush the stream; its COMPLETE/INCOMPLETE follows its last STATE (next checkpoint)."""
        sink = self._sinks.get(stream.name)
        if sink is not None:
            sink.flush()
        self._ending[stream.name] = StreamStatus.COMPLETE if complete else StreamStatus.INCOMPLETE

    # End of the read and control messages -----------------------------------------------------

    def close(self) -> None:
        """Nothing to release when the run ends; `end_streams` ends the streams."""

    def end_streams(self) -> list[str]:
        """End every configured stream still open as INCOMPLETE (the read failed or skipped it).

        Returns:
            The configured streams the engine never ran (their export family is not configured).
        """
        self._flush()
        self._send_endings()
        for name in self._names:
            if self._statuses.get(name) not in (StreamStatus.COMPLETE, StreamStatus.INCOMPLETE):
                if name not in self._statuses:
                    self._status(name, StreamStatus.STARTED)
                self._status(name, StreamStatus.INCOMPLETE)
        return [name for name in self._names if name not in self._sinks]

    def update_config(self, changes: Mapping[str, t.Any]) -> None:
        """Send the configuration with `changes` applied (CONTROL CONNECTOR_CONFIG); thread-safe.

        Airbyte stores it in place of the old configuration, so the next read uses it.
        """
        with self._config_lock:
            self._config.update(changes)
            message = connector_config(self._config)
        self.writer.write(message)

    def refresh_token_rotated(self, refresh_token: str) -> None:
        """LinkedIn issued a new refresh token: have Airbyte store it (from any thread)."""
        self.update_config({REFRESH_TOKEN_SETTING: refresh_token})

    # Plumbing ---------------------------------------------------------------------------------

    def _status(self, name: str, status: StreamStatus) -> None:
        self._statuses[name] = status
        self.writer.write(stream_status(name, status))

    def _running(self, name: str) -> None:
        if self._statuses.get(name) is StreamStatus.STARTED:
            self._status(name, StreamStatus.RUNNING)

    def _flush(self) -> None:
        for sink in self._sinks.values():
            sink.flush()

    def _send_states(self, state: Mapping[str, t.Any]) -> None:
        for name in self.groups.emission_order():
            sink = self._sinks.get(name)
            if sink is None or self._statuses.get(name) in _ENDED:
                continue
            blob = self.groups.stream_state(name, state)
            if not blob and name not in self._sent and not sink.count and name not in self._ending:
                continue  # nothing to say yet; a finishing stream gets its one state anyway
            self._send_state(sink, blob)

    def _send_state(
        self, sink: AirbyteRecordSink, blob: dict[str, t.Any], heartbeat: str | None = None
    ) -> None:
        """Send `blob` unless it was the last one sent (a heartbeat always differs from that).

        The heartbeat key is left out of the comparison: after a heartbeat, the same state
        without it is not news.
        """
        key = _dumps(blob, option=orjson.OPT_SORT_KEYS)
        if heartbeat is None and self._sent.get(sink.name) == key:
            return
        message = blob if heartbeat is None else {**blob, HEARTBEAT_KEY: heartbeat}
        self.writer.write(state_message(sink.name, message, sink.count))
        self._sent[sink.name] = key
        sink.count = 0

    def _send_endings(self) -> None:
        for name, status in list(self._ending.items()):
            if name not in self._statuses:
                self._status(name, StreamStatus.STARTED)
            self._status(name, status)
            del self._ending[name]

    def _heartbeat(self, state: Mapping[str, t.Any]) -> None:
        """A changed STATE of a running family's owner (any running stream if none keeps state)."""
        running = [
            name
            for name in self.groups.emission_order()
            if name in self._sinks and self._statuses.get(name) not in _ENDED
        ]
        owners = [n for n in running if self.groups.owner[n] == n]
        stateful = [n for n in owners if self._roles[n] in STATEFUL_ROLES]
        candidates = stateful or owners or running
        if not candidates:
            return
        name = candidates[0]
        beat = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        self._send_state(self._sinks[name], self.groups.stream_state(name, state), beat)


_ENDED = (StreamStatus.COMPLETE, StreamStatus.INCOMPLETE)
