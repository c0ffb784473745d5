"""The Singer message writer: SDK messages as the SDK encodes them, RECORD lines in large blocks.

The SDK's writer serializes every message with simplejson and flushes stdout after each line; for
millions of records that costs more than reading the export. `BufferedSingerWriter` keeps that
encoding for every message the SDK builds (SCHEMA, STATE), and adds `write_block` for RECORD lines
`RecordLineEncoder` encodes with orjson. Every message first flushes what came before it, so a
STATE never reaches stdout before the records it covers. A closed stdout (the target exited) raises
`ConsumerGoneError` at once, instead of failing whatever happens to write next.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import stat
import sys
import typing as t

import orjson
from singer_sdk.singerlib.encoding import SimpleSingerWriter

from tap_linkedin_crm.errors import ConsumerGoneError

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

try:  # POSIX only: on other systems the pipe simply keeps its size
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

if t.TYPE_CHECKING:
    from singer_sdk.singerlib.encoding.simple import Message

#: Buffered bytes that trigger a write; well above a pipe's 64 KiB, well below any memory concern.
FLUSH_BYTES = 256 * 1024
#: Capacity asked for when stdout is a pipe (Linux's default is 64 KiB): a block of `FLUSH_BYTES`
#: then goes through in one step instead of four wake-ups of the reader. 1 MiB is the default
#: `/proc/sys/fs/pipe-max-size`; if the kernel refuses, the pipe keeps its size.
PIPE_BYTES = 1024 * 1024

_dumps = orjson.dumps


def reader_gone(error: OSError) -> bool:
    """True when a write to stdout failed because nothing reads it any more (closed pipe or fd)."""
    return isinstance(error, BrokenPipeError) or error.errno in {errno.EPIPE, errno.EBADF}


class BufferedSingerWriter(SimpleSingerWriter):
    """The SDK's simple writer, writing in binary, plus whole blocks of encoded RECORD lines."""

    @override
    def __init__(self) -> None:
        """Nothing written yet."""
        super().__init__()
        self._piped_fd: int | None = None

    def write_block(self, block: bytes | bytearray) -> None:
        """Write encoded message lines (a whole number of them) now; `block` may be reused after.

        Raises:
            ConsumerGoneError: stdout was closed.
        """
        self._write(block)

    @override
    def write_message(self, message: Message) -> None:
        """Write one SDK message, encoded as the SDK does.

        Raises:
            ConsumerGoneError: stdout was closed.
        """
        self._write((self.format_message(message) + "\n").encode("utf-8"))

    def _write(self, data: bytes | bytearray) -> None:
        try:
            self._write_out(data)
        except OSError as exc:
            if not reader_gone(exc):
                raise
            self._consumer_gone()

    @staticmethod
    def _consumer_gone() -> t.NoReturn:
        """Report that stdout is closed, and keep Python's exit-time flush from failing on it.

        Raises:
            ConsumerGoneError: Always.
        """
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        msg = (
            "stdout was closed: the target (or whatever reads the tap's output) exited or "
            "stopped reading. The sync stops here; the last STATE the target saw resumes it."
        )
        raise ConsumerGoneError(msg) from None

    def _write_out(self, data: bytes | bytearray) -> None:
        out = sys.stdout  # looked up each time: tests and runners replace it
        binary = getattr(out, "buffer", None)
        if binary is None:
            out.write(data.decode("utf-8"))
            out.flush()
            return
        out.flush()  # whatever the text layer holds came first
        self._enlarge_pipe(binary)
        # With `python -u` the binary layer is raw and may write only part of the block (a
        # signal arriving mid-write, a full pipe): loop, or the rest of the block is lost.
        view = memoryview(data)
        while view:
            written = binary.write(view)
            view = view[written if written is not None else 0 :]
        binary.flush()

    def _enlarge_pipe(self, binary: t.BinaryIO) -> None:
        """Ask for a `PIPE_BYTES` pipe once per stdout file descriptor, if stdout is a pipe."""
        with contextlib.suppress(AttributeError, ValueError, OSError):
            fd = binary.fileno()
            if fd == self._piped_fd:
                return
            self._piped_fd = fd
            set_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only (None without fcntl)
            if set_size is not None and stat.S_ISFIFO(os.fstat(fd).st_mode):
                fcntl.fcntl(fd, set_size, PIPE_BYTES)


class RecordLineEncoder:
    """Encodes records as RECORD lines, as the SDK would write them, in blocks for the writer.

    The line is `{"type":"RECORD","stream":ALIAS,"record":{...}[,"version":N],"time_extracted":T}`:
    the keys and values the SDK's `RecordMessage.to_dict` gives (`T` in the SDK's isoformat, taken
    when the block starts rather than per record). orjson writes non-ASCII as UTF-8 where
    simplejson escapes it, so the lines are equal after JSON parsing, not byte for byte.
    """

    #: Encoded bytes per block handed to the writer (and per `time_extracted` value).
    BLOCK_BYTES = FLUSH_BYTES

    def __init__(
        self, writer: BufferedSingerWriter, stream_alias: str, version: int | None
    ) -> None:
        """Prepare the constant parts of the line."""
        self.writer = writer
        self._prefix = b'{"type":"RECORD","stream":' + orjson.dumps(stream_alias) + b',"record":'
        self._version = b"" if version is None else b',"version":' + orjson.dumps(int(version))
        # Lines are appended in place: no per-line bytes object beyond orjson's output.
        self._block = bytearray()
        self._suffix = b""
        self._stamp()

    def _stamp(self) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(sep="T")
        self._suffix = self._version + b',"time_extracted":"' + now.encode() + b'"}\n'

    def add(self, record: dict[str, t.Any]) -> bool:
        """Encode one record; False if orjson cannot (e.g. an int beyond 64 bits): use the SDK.

        The block is handed to the writer every `BLOCK_BYTES`; call `flush` before writing
        anything else (another message, a STATE) so the order on stdout stays the order of calls.
        """
        try:
            body = _dumps(record)
        except orjson.JSONEncodeError:
            return False
        block = self._block
        block += self._prefix
        block += body
        block += self._suffix
        if len(block) >= self.BLOCK_BYTES:
            self.flush()
        return True

    def flush(self) -> None:
        """Hand the block to the writer (it reaches stdout by the writer's rules)."""
        if self._block:
            self.writer.write_block(self._block)
            del self._block[:]
            self._stamp()
