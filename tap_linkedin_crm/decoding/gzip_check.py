"""Whole-file verification of gzip downloads before any of their rows is decoded."""

from __future__ import annotations

import contextlib
import gzip
import tempfile
import typing as t
import zlib

from tap_linkedin_crm.decoding.byte_source import (
    GZIP_MAGIC,
    READ_SIZE,
    ReplayingReader,
    read_at_least,
)
from tap_linkedin_crm.errors import DownloadIncompleteError, LocalStorageError

if t.TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["verified_if_gzip"]


@contextlib.contextmanager
def verified_if_gzip(stream: t.IO[bytes]) -> Iterator[t.IO[bytes]]:
    """Yield a stream of the same bytes; a gzip body is first checked whole.

    gzip checks its CRC and length only at the end of the member, and a corrupt deflate stream
    can inflate to wrong text before any error: rows read on the fly would be emitted, wrong,
    and a retry would skip them. So a gzip body is copied to a temporary file (compressed, so
    small), inflated once to check it, and only then handed to the decoder. Plain CSV streams
    straight through.

    Raises:
        DownloadIncompleteError: The gzip body is truncated or corrupt (worth downloading again).
        LocalStorageError: The temporary file could not be created, written or read back (a
            full, read-only or missing TMPDIR); errors reading `stream` pass through as they are.
    """
    prefix = read_at_least(stream, len(GZIP_MAGIC))
    if prefix != GZIP_MAGIC:
        yield t.cast("t.IO[bytes]", ReplayingReader(prefix, stream))
        return
    try:
        # Unbuffered, so that closing it never flushes (and fails) after a failed write.
        spool = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 - closed by `with` below
    except OSError as exc:
        raise _local_storage_error(exc) from exc
    with spool:
        _copy(prefix, stream, spool)
        _check(spool)
        yield t.cast("t.IO[bytes]", spool)


def _copy(prefix: bytes, stream: t.IO[bytes], spool: t.IO[bytes]) -> None:
    """Copy the body to `spool`.

    Raises:
        LocalStorageError: writing to the spool failed (errors reading `stream` pass through).
    """
    chunk = prefix
    while chunk:
        try:
            view = memoryview(chunk)
            while view:  # an unbuffered write may write part of the chunk
                view = view[spool.write(view) :]
        except OSError as exc:
            raise _local_storage_error(exc) from exc
        chunk = stream.read(READ_SIZE)


def _check(spool: t.IO[bytes]) -> None:
    """Inflate the spooled body once, from its start to its end, and rewind it.

    Raises:
        DownloadIncompleteError: the gzip body is truncated or corrupt.
        LocalStorageError: the spool could not be read back.
    """
    try:
        spool.seek(0)
        with gzip.GzipFile(fileobj=spool, mode="rb") as check:
            while check.read(READ_SIZE):
                pass
        spool.seek(0)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # BadGzipFile is an OSError: first
        msg = f"the gzip file is truncated or corrupt ({type(exc).__name__})"
        raise DownloadIncompleteError(msg) from None
    except OSError as exc:
        raise _local_storage_error(exc) from exc


def _local_storage_error(exc: OSError) -> LocalStorageError:
    """Say what the temporary directory lacks and what to do; name no file of the download."""
    cause = exc.strerror or type(exc).__name__
    msg = (
        f"cannot keep the temporary copy of a gzip download in {_temporary_directory()}"
        f" ({cause}): free space there, or set TMPDIR to a writable directory with room for"
        " the compressed file"
    )
    return LocalStorageError(msg)


def _temporary_directory() -> str:
    """Name the directory temporary files go to, even when there is no usable one."""
    try:
        return tempfile.gettempdir()
    except OSError:  # no usable directory at all: gettempdir tried TMPDIR, TEMP, TMP, /tmp, ...
        return "any temporary directory (TMPDIR, TEMP, TMP, /tmp, /var/tmp, /usr/tmp)"
