"""Airbyte messages: how each one is shaped, and the writer that puts them on stdout.

Shapes follow the protocol's v0 models (`airbyte_protocol.models`, checked by the tests): RECORD
`emitted_at` is integer epoch milliseconds, TRACE and CONTROL `emitted_at` a number, and
`sourceStats.recordCount` a double. Every message is one JSON line, encoded with orjson.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
import typing as t

import orjson

from tap_linkedin_crm.errors import ConsumerGoneError
from tap_linkedin_crm.output.writer import reader_gone

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping


class FailureType(enum.StrEnum):
    """What the platform does with a failure: `config_error` is not retried."""

    CONFIG = "config_error"
    TRANSIENT = "transient_error"
    SYSTEM = "system_error"


class StreamStatus(enum.StrEnum):
    """A stream's progress in a read, as TRACE STREAM_STATUS reports it."""

    STARTED = "STARTED"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    INCOMPLETE = "INCOMPLETE"


def now_ms() -> float:
    """Epoch milliseconds now (TRACE and CONTROL take a number)."""
    return time.time() * 1000.0


def connection_status(*, succeeded: bool, message: str | None = None) -> dict[str, t.Any]:
    """A CONNECTION_STATUS (the answer to `check`)."""
    status: dict[str, t.Any] = {"status": "SUCCEEDED" if succeeded else "FAILED"}
    if message is not None:
        status["message"] = message
    return {"type": "CONNECTION_STATUS", "connectionStatus": status}


def state_message(
    stream: str, stream_state: Mapping[str, t.Any], record_count: int
) -> dict[str, t.Any]:
    """A per-stream STATE with the records emitted for `stream` since its previous STATE."""
    return {
        "type": "STATE",
        "state": {
            "type": "STREAM",
            "stream": {"stream_descriptor": {"name": stream}, "stream_state": stream_state},
            "sourceStats": {"recordCount": float(record_count)},
        },
    }


def stream_status(stream: str, status: StreamStatus) -> dict[str, t.Any]:
    """A TRACE STREAM_STATUS."""
    return {
        "type": "TRACE",
        "trace": {
            "type": "STREAM_STATUS",
            "emitted_at": now_ms(),
            "stream_status": {"stream_descriptor": {"name": stream}, "status": str(status)},
        },
    }


def error_trace(
    message: str,
    failure_type: FailureType,
    *,
    internal_message: str | None = None,
    stream: str | None = None,
) -> dict[str, t.Any]:
    """A TRACE ERROR; `message` is shown to the user, so it must say what to do."""
    error: dict[str, t.Any] = {"message": message, "failure_type": str(failure_type)}
    if internal_message:
        error["internal_message"] = internal_message
    if stream is not None:
        error["stream_descriptor"] = {"name": stream}
    return {"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": now_ms(), "error": error}}


def connector_config(config: Mapping[str, t.Any]) -> dict[str, t.Any]:
    """A CONTROL CONNECTOR_CONFIG: the platform stores `config` in place of the old one."""
    return {
        "type": "CONTROL",
        "control": {
            "type": "CONNECTOR_CONFIG",
            "emitted_at": now_ms(),
            "connectorConfig": {"config": dict(config)},
        },
    }


class MessageWriter:
    """Writes whole JSON lines to a binary stream, one writer at a time, and flushes each write.

    Records arrive as blocks of encoded lines (see `output.airbyte`); every other message is
    encoded here. Writes from several threads (a rotated token reported by a polling thread)
    never interleave inside a line. RECORD blocks and STATE messages count as heartbeats: Airbyte
    fails a source that sends neither for hours, so the time of the last one is kept.
    """

    def __init__(self, out: t.BinaryIO, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Write to `out` (the real stdout)."""
        self._out = out
        self._clock = clock
        self._lock = threading.Lock()
        self.last_heartbeat = clock()

    def write(self, message: Mapping[str, t.Any]) -> None:
        """Encode and write one message now.

        Raises:
            ConsumerGoneError: stdout was closed.
        """
        self._write(orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE))
        if message.get("type") == "STATE":
            self.last_heartbeat = self._clock()

    def write_block(self, block: bytes | bytearray) -> None:
        """Write encoded RECORD lines (a whole number of them) now.

        Raises:
            ConsumerGoneError: stdout was closed.
        """
        self._write(block)
        self.last_heartbeat = self._clock()

    def _write(self, data: bytes | bytearray) -> None:
        with self._lock:
            try:
                self._out.write(data)
                self._out.flush()
            except OSError as exc:
                if not reader_gone(exc):
                    raise
                self._consumer_gone()

    def _consumer_gone(self) -> t.NoReturn:
        with contextlib.suppress(OSError, ValueError):
            self._out.close()
        msg = (
            "stdout was closed: whatever reads the source's output (the Airbyte platform or "
            "PyAirbyte) stopped reading. The read stops here; its last STATE resumes it."
        )
        raise ConsumerGoneError(msg) from None
