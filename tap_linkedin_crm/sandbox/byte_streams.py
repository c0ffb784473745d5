"""Streaming transforms of a download body: chunking, gzip, and the damage faults do to it.

Each takes and yields an iterator of byte chunks, so a file of any size passes through in chunks
and is never held whole in memory.
"""

from __future__ import annotations

import typing as t
import zlib

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

GZIP_LEVEL = 1
_CORRUPT_FROM, _CORRUPT_TO = 20, 44  # past the 10-byte gzip header, into the deflate data


def coalesce(pieces: Iterable[bytes], chunk_bytes: int) -> Iterator[bytes]:
    """Join byte pieces into chunks of at least ``chunk_bytes`` (the last may be shorter)."""
    pending: list[bytes] = []
    size = 0
    for piece in pieces:
        pending.append(piece)
        size += len(piece)
        if size >= chunk_bytes:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def gzip_stream(chunks: Iterable[bytes], level: int = GZIP_LEVEL) -> Iterator[bytes]:
    """Compress a byte stream into one gzip member, chunk by chunk."""
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    for raw in chunks:
        out = comp.compress(raw)
        if out:
            yield out
    yield comp.flush()


def corrupt_gzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Flip bytes early in a gzip stream, so inflating or the CRC check fails."""
    done = False
    for chunk in chunks:
        if not done and len(chunk) > _CORRUPT_TO + 4:
            buf = bytearray(chunk)
            for i in range(_CORRUPT_FROM, _CORRUPT_TO):
                buf[i] ^= 0x5A
            chunk = bytes(buf)  # noqa: PLW2901
            done = True
        yield chunk
    if not done:
        yield b"\x00corrupt\xff" * 8


def unclosed_quote(chunks: Iterable[bytes], at: int) -> Iterator[bytes]:
    """Open a quoted field at byte ``at`` (the start of a record) that never closes.

    A ``"`` is inserted at ``at`` and every later ``"`` is dropped, so a CSV reader sees one
    field running from there to the end of the file, however large the file is.
    """
    position = 0
    inserted = False
    for chunk in chunks:
        if inserted:
            yield chunk.replace(b'"', b"")
            continue
        end = position + len(chunk)
        if end < at:
            position = end
            yield chunk
            continue
        split = at - position
        yield chunk[:split] + b'"' + chunk[split:].replace(b'"', b"")
        inserted = True
    if not inserted:
        yield b'"'
