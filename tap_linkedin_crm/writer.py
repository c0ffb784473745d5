"""A Singer message writer with a buffered channel for pre-encoded RECORD lines.

The SDK's writer serializes every message with simplejson and flushes stdout after each line;
for millions of records that costs more than reading the export. `BufferedSingerWriter` keeps
that behaviour for every message the SDK writes (SCHEMA, STATE, the exports stream's records), and
adds `write_lines` for RECORD lines the records stream encodes itself (see
`RecordsStream._fast_record_writer`). Those lines are buffered and written in large blocks.

Ordering: every SDK message first flushes the buffered lines, so a STATE message never reaches
stdout before the records it covers.
"""

from __future__ import annotations

import datetime as dt
import sys
import typing as t

import orjson
from singer_sdk.singerlib.encoding import SimpleSingerWriter

if t.TYPE_CHECKING:
    from singer_sdk.singerlib.encoding.simple import Message

#: Buffered bytes that trigger a write; well above a pipe's 64 KiB, well below any memory concern.
FLUSH_BYTES = 256 * 1024

_dumps = orjson.dumps


class BufferedSingerWriter(SimpleSingerWriter):
    """The SDK's simple writer, plus buffered writing of already-encoded lines."""

    def __init__(self) -> None:
        """Start with an empty buffer."""
        super().__init__()
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def write_lines(self, lines: list[bytes]) -> None:
        """Queue encoded message lines, each ending in a newline; the caller may reuse `lines`.

        They reach stdout at the latest when the next SDK message is written or `flush` is
        called, and as soon as `FLUSH_BYTES` are pending.
        """
        self._pending += lines
        self._pending_bytes += sum(map(len, lines))
        if self._pending_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the pending lines to stdout (binary when stdout has a buffer) and flush it."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        out = sys.stdout  # looked up each time: tests and runners replace it
        binary = getattr(out, "buffer", None)
        if binary is None:
            out.write(data.decode("utf-8"))
            out.flush()
            return
        out.flush()  # whatever the text layer holds came first
        binary.write(data)
        binary.flush()

    def write_message(self, message: Message) -> None:
        """Write one SDK message, after the pending lines."""
        self.flush()
        super().write_message(message)


class RecordLineEncoder:
    """Encodes records as RECORD lines, as the SDK would write them, in batches for the writer.

    The line is `{"type":"RECORD","stream":ALIAS,"record":{...}[,"version":N],"time_extracted":T}`:
    the keys and values the SDK's `RecordMessage.to_dict` gives (`T` in the SDK's isoformat, taken
    when the batch starts rather than per record). orjson writes non-ASCII as UTF-8 where
    simplejson escapes it, so the lines are equal after JSON parsing, not byte for byte.
    """

    #: Records per batch handed to the writer (and per `time_extracted` value).
    BATCH = 512

    def __init__(
        self, writer: BufferedSingerWriter, stream_alias: str, version: int | None
    ) -> None:
        """Prepare the constant parts of the line."""
        self.writer = writer
        self._prefix = b'{"type":"RECORD","stream":' + orjson.dumps(stream_alias) + b',"record":'
        self._version = b"" if version is None else b',"version":' + orjson.dumps(int(version))
        self._lines: list[bytes] = []
        self._suffix = b""
        self._stamp()

    def _stamp(self) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(sep="T")
        self._suffix = self._version + b',"time_extracted":"' + now.encode() + b'"}\n'

    def add(self, record: dict[str, t.Any]) -> bool:
        """Encode one record; False if orjson cannot (e.g. an int beyond 64 bits): use the SDK.

        The batch is handed to the writer every `BATCH` records; call `flush` before writing
        anything else (another message, a STATE) so the order on stdout stays the order of calls.
        """
        try:
            body = _dumps(record)
        except orjson.JSONEncodeError:
            return False
        lines = self._lines
        # One concatenation per line: it keeps orjson's output short-lived (measurably faster
        # than keeping the three parts in the batch).
        lines.append(self._prefix + body + self._suffix)
        if len(lines) >= self.BATCH:
            self.flush()
        return True

    def flush(self) -> None:
        """Hand the batch to the writer (it reaches stdout by the writer's rules)."""
        if self._lines:
            self.writer.write_lines(self._lines)
            self._lines.clear()
            self._stamp()
