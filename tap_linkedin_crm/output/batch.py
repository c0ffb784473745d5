"""BATCH output: rows streams as batch files announced by singer-sdk BATCH messages.

With `batch_config` set, each rows stream's records (after stream maps, exactly as the RECORD path
would carry them) go to files of at most `batch_size` records under the storage root, and a BATCH
message announces each finished file; other streams (exports, contracts) stay RECORD messages. A
file is finished and announced at every checkpoint, before the STATE that covers it, so a STATE
never runs ahead of announced data and a resumed run starts after the last announced file.

Files are written under a hidden name and renamed when complete (object stores publish an object
only when it is committed), so a crash never leaves a half-written file under a name a target
reads; a later run on the same machine removes the hidden files of stopped taps. Names carry the
run's own id (time, process id, random part), so two runs or two instances never collide and a
resumed run never announces a file twice. A file that cannot be written stops the run before any
further STATE, like a target that stopped reading: the last STATE still resumes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gzip
import importlib.util
import logging
import os
import re
import secrets
import socket
import typing as t
from pathlib import Path

import fsspec
import orjson
from singer_sdk.singerlib.json import serialize_json

from tap_linkedin_crm.errors import ConsumerGoneError, StreamMapError
from tap_linkedin_crm.output.singer import SingerOutput

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from singer_sdk import Stream, Tap

    from tap_linkedin_crm.output.writer import BufferedSingerWriter

LOGGER = logging.getLogger("tap_linkedin_crm.output")

DEFAULT_BATCH_SIZE = 10_000
#: Encoded jsonl bytes collected before they go to the (gzip) file: one call per block, not per row.
BLOCK_BYTES = 256 * 1024
#: gzip level 1: on the sandbox's rows twice as fast as level 6 (0.08 s against 0.18 s for 50,000
#: records), for files a fifth larger. The tap often shares the machine with the target.
GZIP_LEVEL = 1
_SUFFIXES = {("jsonl", "gzip"): ".jsonl.gz", ("jsonl", "none"): ".jsonl"}
#: A run id: UTC second, process id, random part (`file_name`).
_RUN_ID = r"\d{8}T\d{6}Z-\d+-[0-9a-f]{6}"
_HOST_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


class BatchStorageError(ConsumerGoneError):
    """A batch file could not be written where the target reads it: the run stops at once.

    A `ConsumerGoneError`: like a target that stopped reading, nothing after the last announced
    file is delivered, so no STATE may follow, and the last STATE resumes the sync.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class BatchSettings:
    """`batch_config`, checked: where files go, in which format, how many records each."""

    format: t.Literal["jsonl", "parquet"]
    compression: t.Literal["gzip", "none"]
    root: str
    prefix: str
    batch_size: int
    #: `storage.params`: fsspec storage options (credentials, endpoint) for the root's filesystem;
    #: never in a repr, as they may hold secrets.
    params: Mapping[str, t.Any] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, t.Any]) -> BatchSettings:
        """Read and check `batch_config`.

        `batch_size` may be a string of digits: Meltano passes a setting its plugin definition
        does not declare (the SDK's `batch_config` schema has no `batch_size`) as a string.

        Raises:
            ValueError: A value is missing or not supported (the message names it).
        """
        encoding = config.get("encoding") or {}
        storage = config.get("storage") or {}
        if not isinstance(encoding, dict) or not isinstance(storage, dict):
            msg = "batch_config.encoding and batch_config.storage must be objects."
            raise ValueError(msg)  # noqa: TRY004 - every config problem is a ValueError here
        fmt = encoding.get("format") or "jsonl"
        compression = encoding.get("compression") or "gzip"
        if fmt not in {"jsonl", "parquet"}:
            msg = f"batch_config.encoding.format {fmt!r} is not supported; use jsonl or parquet."
            raise ValueError(msg)
        if compression not in {"gzip", "none"}:
            msg = f"batch_config.encoding.compression {compression!r}: use gzip or none."
            raise ValueError(msg)
        if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
            msg = (
                "batch_config.encoding.format is parquet, but pyarrow is not installed: install "
                "tap-linkedin-crm[parquet] (and pyarrow in the target's environment too)."
            )
            raise ValueError(msg)
        root = storage.get("root")
        if not root or not isinstance(root, str):
            msg = "batch_config.storage.root is required (e.g. file:///var/data/batches)."
            raise ValueError(msg)
        prefix = storage.get("prefix") or ""
        if not isinstance(prefix, str) or "/" in prefix or "\\" in prefix:
            msg = (
                f"batch_config.storage.prefix {prefix!r}: a file name prefix, without '/' (put "
                "directories in storage.root; SDK targets look for files right under the root)."
            )
            raise ValueError(msg)
        params = storage.get("params") or {}
        if not isinstance(params, dict):
            msg = "batch_config.storage.params must be an object (fsspec storage options)."
            raise ValueError(msg)  # noqa: TRY004 - every config problem is a ValueError here
        return cls(
            t.cast("t.Literal['jsonl', 'parquet']", fmt),
            t.cast("t.Literal['gzip', 'none']", compression),
            root,
            prefix,
            _batch_size(config),
            params,
        )

    @property
    def suffix(self) -> str:
        """File name ending for this encoding (parquet compresses inside the file)."""
        if self.format == "parquet":
            return ".parquet"
        return _SUFFIXES[self.format, self.compression]

    @property
    def encoding(self) -> dict[str, str]:
        """The BATCH message's `encoding`."""
        return {"format": self.format, "compression": self.compression}


def _batch_size(config: Mapping[str, t.Any]) -> int:
    size = config.get("batch_size", DEFAULT_BATCH_SIZE)
    if size is None:
        return DEFAULT_BATCH_SIZE
    if isinstance(size, str) and size.strip().isdigit():
        size = int(size.strip())
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        msg = f"batch_config.batch_size must be a positive integer, not {size!r}."
        raise ValueError(msg)
    return size


class BatchStorage:
    """Where batch files are written: a local directory or any fsspec URL."""

    def __init__(self, settings: BatchSettings) -> None:
        """Resolve the root (created if missing).

        Raises:
            BatchStorageError: The root cannot be used (unknown protocol, missing driver, no
                permission); the message names the root without its query string.
        """
        self.settings = settings
        shown = settings.root.split("?", 1)[0]
        try:
            self.fs, self.path = fsspec.core.url_to_fs(settings.root, **settings.params)
            self.local = "file" in _protocols(self.fs)
            self.fs.makedirs(self.path, exist_ok=True)
        except (ImportError, ValueError, OSError) as exc:
            msg = (
                f"batch_config.storage.root {shown}: cannot write batch files there "
                f"({type(exc).__name__}: {_reason(exc)})."
            )
            raise BatchStorageError(msg) from None
        self.host = _HOST_UNSAFE.sub("-", socket.gethostname()).strip("-") or "host"
        self._stale = re.compile(
            r"^\.(?P<name>"
            + re.escape(settings.prefix)
            + r".+-"
            + _RUN_ID
            + r"-\d{6}"
            + re.escape(settings.suffix)
            + r")\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.part$"
        )

    def uri(self, name: str) -> str:
        """The URI a target opens for file `name`.

        Local paths are not percent-encoded: singer-sdk's reader opens the URI's path as is.
        """
        full = f"{self.path.rstrip('/')}/{name}"
        if self.local:
            return "file://" + os.path.abspath(full)  # noqa: PTH100 - a path string from fsspec
        return t.cast("str", self.fs.unstrip_protocol(full))

    def create(self, name: str) -> PendingFile:
        """Start writing file `name`; it appears under that name only when committed."""
        final = f"{self.path.rstrip('/')}/{name}"
        if not self.local:
            # Uncommitted: object stores publish the object on `commit`, abort it on `discard`.
            try:
                handle = self.fs.open(final, "wb", autocommit=False)
            except (TypeError, NotImplementedError):  # a filesystem without transactions
                handle = self.fs.open(final, "wb")
            return PendingFile(handle, final, None)
        part = f"{self.path.rstrip('/')}/.{name}.{self.host}.{os.getpid()}.part"
        return PendingFile(open(part, "wb"), final, part)  # noqa: PTH123 - kept open until commit

    def remove_stale_parts(self) -> None:
        """Remove hidden part files that stopped taps on this host left (their process is gone).

        Only this tap's files (this prefix and encoding) written on this host are considered: a
        process id says nothing about another machine sharing the directory.
        """
        if not self.local:
            return
        for entry in os.scandir(self.path):
            match = self._stale.match(entry.name)
            if match is None or match.group("host") != self.host:
                continue
            if _alive(int(match.group("pid"))):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)  # noqa: PTH107 - a path string from fsspec
                LOGGER.info("Removed %s, a batch file a stopped tap left unfinished.", entry.name)


class PendingFile:
    """A batch file being written: committed under its final name, or discarded."""

    def __init__(self, handle: t.BinaryIO, final: str, part: str | None) -> None:
        """Write to `handle`; a local file is renamed from `part` to `final` on commit."""
        self.handle = handle
        self.final = final
        self.part = part

    def commit(self) -> None:
        """Close the file and publish it under its final name (atomically, locally)."""
        if self.part is None:
            self.handle.close()
            commit = getattr(self.handle, "commit", None)
            if commit is not None:
                commit()
            return
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        Path(self.part).replace(self.final)

    def discard(self) -> None:
        """Close and remove an unfinished file (an object store aborts the upload)."""
        if self.part is None:
            discard = getattr(self.handle, "discard", None)
            with contextlib.suppress(Exception):
                if discard is not None:
                    discard()
        with contextlib.suppress(Exception):
            self.handle.close()
        if self.part is not None:
            # Best effort, also while an error is on its way out: a part left behind is hidden,
            # and the next run on this host removes it.
            with contextlib.suppress(OSError):
                os.remove(self.part)  # noqa: PTH107 - a path string from fsspec


def _protocols(fs: t.Any) -> set[str]:  # noqa: ANN401 - an fsspec filesystem
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


def _reason(exc: BaseException) -> str:
    """An error's text without URLs' query strings (they may carry signatures)."""
    return re.sub(r"\?\S*", "?…", str(exc)) or "no detail"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _BatchFile:
    """The batch file being filled for one stream alias, written as records come.

    jsonl streams into the file (gzip on the fly) in blocks; parquet needs the whole table, so it
    holds the file's records until the file is finished (memory grows with `batch_size`, not with
    the export).
    """

    def __init__(self, output: BatchOutput, alias: str) -> None:
        self.settings = output.settings
        self.alias = alias
        self.name = output.file_name(alias)
        self.pending = output.storage.create(self.name)
        self.records: list[dict[str, t.Any]] = []
        self.block = bytearray()
        self.stream: t.BinaryIO = self.pending.handle
        self.gzip: gzip.GzipFile | None = None
        if self.settings.format == "jsonl" and self.settings.compression == "gzip":
            self.gzip = gzip.GzipFile(
                filename="", fileobj=self.pending.handle, mode="wb", compresslevel=GZIP_LEVEL
            )
            self.stream = t.cast("t.BinaryIO", self.gzip)
        self.count = 0

    def add(self, record: dict[str, t.Any]) -> None:
        self.count += 1
        if self.settings.format == "parquet":
            self.records.append(record)
            return
        try:
            self.block += orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:
            # orjson refuses a few values (ints beyond 64 bits): the SDK's encoder takes them.
            self.block += serialize_json(record).encode() + b"\n"
        if len(self.block) >= BLOCK_BYTES:
            self.stream.write(self.block)
            del self.block[:]

    def commit(self) -> None:
        if self.settings.format == "parquet":
            self._write_parquet()
        elif self.block:
            self.stream.write(self.block)
            del self.block[:]
        if self.gzip is not None:
            self.gzip.close()
        self.pending.commit()

    def _write_parquet(self) -> None:
        import pyarrow as pa  # noqa: PLC0415 - optional extra
        import pyarrow.parquet as pq  # noqa: PLC0415

        try:
            table = pa.Table.from_pylist(self.records)
        except (pa.ArrowException, OverflowError) as exc:
            msg = (
                f"Stream {self.alias}: a record does not fit a parquet column ({exc}); use "
                "batch_config.encoding.format jsonl for this data."
            )
            raise BatchStorageError(msg) from None
        codec = "gzip" if self.settings.compression == "gzip" else "none"
        pq.write_table(table, self.pending.handle, compression=codec)
        self.records = []


class BatchRecordSink:
    """One rows stream's records, per stream map, into batch files; announced on flush."""

    def __init__(
        self,
        output: BatchOutput,
        outputs: Sequence[tuple[str, Callable[[dict[str, t.Any]], dict[str, t.Any] | None]]],
    ) -> None:
        """Keep a file per stream alias, started on its first record."""
        self._output = output
        self._outputs = list(outputs)
        self._files: dict[str, _BatchFile] = {}

    def write(self, record: dict[str, t.Any]) -> None:
        """Add the record to each map's file (a map may drop it).

        Every map runs before any file takes the record: a map failing on this row leaves no
        other map's copy of it behind, so the row can be resumed whole.

        Raises:
            StreamMapError: A stream map raised on the record (nothing of it was written).
            BatchStorageError: The file could not be created or written.
        """
        results: list[tuple[str, dict[str, t.Any] | None]] = []
        for alias, transform in self._outputs:
            try:
                results.append((alias, transform(record)))
            except Exception as exc:  # noqa: BLE001 - whatever a map expression raises
                raise StreamMapError.of(alias, exc) from None
        for alias, mapped in results:
            if mapped is None:
                continue
            batch = self._files.get(alias)
            try:
                if batch is None:
                    batch = self._files[alias] = _BatchFile(self._output, alias)
                batch.add(mapped)
            except OSError as exc:
                raise _storage_error(alias, exc) from None

    def flush(self) -> None:
        """Finish every non-empty file and announce it with a BATCH message.

        Raises:
            BatchStorageError: A file could not be finished (it is not announced).
        """
        while self._files:
            alias = next(iter(self._files))
            batch = self._files[alias]
            try:
                batch.commit()
            except OSError as exc:
                raise _storage_error(alias, exc) from None
            del self._files[alias]
            self._output.announce(alias, batch.name)

    def discard(self) -> None:
        """Remove unfinished files (the run stopped before they could be announced)."""
        files, self._files = self._files, {}
        for batch in files.values():
            batch.pending.discard()


def _storage_error(alias: str, exc: OSError) -> BatchStorageError:
    msg = (
        f"Stream {alias}: a batch file could not be written ({type(exc).__name__}: "
        f"{_reason(exc)}). The sync stops here; the last STATE resumes it."
    )
    return BatchStorageError(msg)


class BatchOutput(SingerOutput):
    """Singer output whose rows streams go out as BATCH files instead of RECORD messages."""

    def __init__(
        self,
        tap: Tap,
        writer: BufferedSingerWriter,
        settings: BatchSettings,
        rows_streams: set[str],
    ) -> None:
        """Write batch files per `settings`, for the streams named in `rows_streams`.

        Raises:
            BatchStorageError: The storage root cannot be used.
        """
        super().__init__(tap, writer)
        self.settings = settings
        self.rows_streams = rows_streams
        self.checkpoint_rows = settings.batch_size
        self.storage = BatchStorage(settings)
        stamp = dt.datetime.now(tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.run_id = f"{stamp}-{os.getpid()}-{secrets.token_hex(3)}"
        self.sequence = 0
        self._batch_sinks: dict[str, BatchRecordSink] = {}

    def start(self, streams: Sequence[Stream]) -> None:
        """SCHEMA messages for every stream; batch sinks for the rows streams."""
        self.storage.remove_stale_parts()
        super().start(streams)

    def _add_sink(
        self,
        stream: Stream,
        outputs: Sequence[tuple[str, Callable[[dict[str, t.Any]], dict[str, t.Any] | None]]],
    ) -> None:
        """A batch sink for a rows stream, the Singer sink for any other."""
        if stream.name in self.rows_streams:
            self._batch_sinks[stream.name] = BatchRecordSink(self, outputs)
        else:
            super()._add_sink(stream, outputs)

    def sink(self, stream: Stream) -> t.Any:  # noqa: ANN401 - a batch or a Singer sink
        """The batch sink of a rows stream, the Singer sink of any other."""
        return self._batch_sinks.get(stream.name) or super().sink(stream)

    def checkpoint(self, state: Mapping[str, t.Any]) -> None:
        """Finish and announce every pending batch file, then write the state."""
        for sink in self._batch_sinks.values():
            sink.flush()
        super().checkpoint(state)

    def close(self) -> None:
        """Remove files the run could not finish (it stopped between two checkpoints)."""
        for sink in self._batch_sinks.values():
            sink.discard()
        super().close()

    def finish(self, stream: Stream, *, complete: bool) -> None:
        """Announce the stream's last file."""
        sink = self._batch_sinks.get(stream.name)
        if sink is not None:
            sink.flush()
        super().finish(stream, complete=complete)

    def file_name(self, alias: str) -> str:
        """A name no other run or instance uses: the stream alias, this run's id, a sequence."""
        self.sequence += 1
        settings = self.settings
        return f"{settings.prefix}{alias}-{self.run_id}-{self.sequence:06d}{settings.suffix}"

    def announce(self, alias: str, name: str) -> None:
        """Write the BATCH message of a committed file."""
        message = {
            "type": "BATCH",
            "stream": alias,
            "encoding": self.settings.encoding,
            "manifest": [self.storage.uri(name)],
        }
        self.writer.write_block(orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE))
