"""The byte side of decoding: gzip sniffing, the BOM, and lines and records of bounded size."""

from __future__ import annotations

import gzip
import io
import itertools
import typing as t

from tap_linkedin_crm.decoding.limits import MAX_RECORD_BYTES

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "GZIP_MAGIC",
    "READ_SIZE",
    "UTF8_BOM",
    "LineTooLongError",
    "RecordTooLongError",
    "ReplayingReader",
    "line_blocks",
    "open_lines",
    "read_at_least",
]

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
READ_SIZE = 1024 * 1024  # per read from the stream (the socket, for downloads)


class LineTooLongError(Exception):
    """No LF within `MAX_RECORD_BYTES`; the decoder names the file and row."""


class RecordTooLongError(Exception):
    """One record's lines ran past `MAX_RECORD_BYTES`; the decoder names the file and row."""


def open_lines(stream: t.IO[bytes], records_done: Callable[[], int]) -> Iterator[str]:
    """Turn a byte stream into decoded lines split at LF, gunzipping it if it starts like gzip.

    Lines are split on LF only (a CR stays in its line for the CSV parser to judge) and decoded
    one at a time, so an invalid byte is reported on the row that holds it. The per-line work is
    all C: `io.BytesIO` splits each block of whole lines, `bytes.decode` decodes each line.
    `records_done` is as for `line_blocks`.

    Raises:
        LineTooLongError, RecordTooLongError: (while iterating) see `line_blocks`.
        UnicodeDecodeError: (while iterating) a line is not UTF-8.
        EOFError, zlib.error, gzip.BadGzipFile: (while iterating) the gzip stream is broken.
    """
    prefix = read_at_least(stream, len(GZIP_MAGIC))
    source = ReplayingReader(prefix, stream)
    read: Callable[[int], bytes] = source.read
    if prefix == GZIP_MAGIC:
        read = gzip.GzipFile(fileobj=source, mode="rb").read
    lines = itertools.chain.from_iterable(map(io.BytesIO, line_blocks(read, records_done)))
    return map(bytes.decode, lines)


def line_blocks(read: Callable[[int], bytes], records_done: Callable[[], int]) -> Iterator[bytes]:
    """Yield the bytes `read` returns regrouped into blocks of whole lines, the BOM removed.

    Every block but the last ends with a LF, and holds either one line that began in an earlier
    read or up to one read (`READ_SIZE`) of lines. A line is held whole only once its LF has
    been read, so a line longer than `MAX_RECORD_BYTES` fails after reading that much (plus one
    read) instead of reading the file whole.

    Records (a line, or lines joined by quoted line breaks) are bounded too, without any
    per-row work: `records_done` returns a count that goes up as the consumer receives records
    (any rising count will do). When a block has been used up and the count has not moved, the
    record being parsed holds the whole block; once such blocks add up to more than
    `MAX_RECORD_BYTES`, or their sum and the next line would, the record is refused. As a record
    may start anywhere in the block where the count last moved, up to one read goes unmeasured.

    Raises:
        LineTooLongError: a line, LF included, is longer than `MAX_RECORD_BYTES`.
        RecordTooLongError: a record is longer than `MAX_RECORD_BYTES` (give or take a read).
    """
    done = records_done()
    unfinished = 0  # bytes of the record being parsed, to within a read
    for lines in _whole_lines(read):
        if unfinished and unfinished + lines.find(b"\n") + 1 > MAX_RECORD_BYTES:
            raise RecordTooLongError  # the record would hold the first line whole, at least
        yield lines
        # The consumer has used up `lines` and wants more.
        if records_done() != done:
            done = records_done()
            unfinished = 0
        else:
            unfinished += len(lines)
            if unfinished > MAX_RECORD_BYTES:
                raise RecordTooLongError


def _whole_lines(read: Callable[[int], bytes]) -> Iterator[bytes]:
    """Yield the blocks of whole lines `line_blocks` hands on, checking the length of lines.

    Raises:
        LineTooLongError: a line, LF included, is longer than `MAX_RECORD_BYTES`.
    """
    pending = bytearray()  # the start of a line that began in an earlier read
    strip_bom = True
    while block := read(READ_SIZE):
        end = block.rfind(b"\n") + 1
        if not end:
            pending += block
            if len(pending) > MAX_RECORD_BYTES:
                raise LineTooLongError
            continue
        start = 0
        if pending:
            start = block.find(b"\n") + 1
            if len(pending) + start > MAX_RECORD_BYTES:
                raise LineTooLongError
            pending += memoryview(block)[:start]
            yield bytes(pending).removeprefix(UTF8_BOM) if strip_bom else bytes(pending)
            strip_bom = False
        if start < end:
            yield block[start:end].removeprefix(UTF8_BOM) if strip_bom else block[start:end]
            strip_bom = False
        pending = bytearray(memoryview(block)[end:])
    last = bytes(pending).removeprefix(UTF8_BOM) if strip_bom else bytes(pending)
    if last:
        yield last


def read_at_least(stream: t.IO[bytes], size: int) -> bytes:
    """Read `size` bytes, or fewer only at the end of the stream (reads may come back short)."""
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


class ReplayingReader(io.RawIOBase):
    """A raw reader over `source` that first returns `prefix`; it never closes `source`."""

    def __init__(self, prefix: bytes, source: t.IO[bytes] | gzip.GzipFile) -> None:
        """Read `prefix`, then `source`."""
        self._prefix = prefix
        self._source = source

    def readable(self) -> bool:
        """Whether this is readable (it is); io wrappers ask."""
        return True

    def read(self, size: int = -1) -> bytes:
        """Return the prefix, or else one read of the source, without an extra copy."""
        if self._prefix:
            data = self._prefix if size < 0 else self._prefix[:size]
            self._prefix = self._prefix[len(data) :]
            return data
        return self._source.read(size)

    def readinto(self, buffer: t.Any) -> int:  # noqa: ANN401 - a writable buffer (memoryview)
        """Fill `buffer` from the prefix, or else from one read of the source."""
        view = memoryview(buffer).cast("B")
        if self._prefix:
            size = min(len(view), len(self._prefix))
            view[:size] = self._prefix[:size]
            self._prefix = self._prefix[size:]
            return size
        if isinstance(self._source, ReplayingReader):
            return self._source.readinto(view)  # nested replay: no extra copy
        data = self._source.read(len(view))
        size = len(data)
        view[:size] = data
        return size
