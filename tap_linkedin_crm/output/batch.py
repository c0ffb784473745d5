"""BATCH output: rows streams as batch files announced by singer-sdk BATCH messages.

With `batch_config` set, each rows stream's records (after stream maps, exactly as the RECORD path
would carry them) go to files of `batch_size` records under the storage root, and a BATCH message
announces each finished file; other streams (exports, contracts) stay RECORD messages. A file is
finished and announced at every checkpoint, before the STATE that covers it, so a STATE never runs
ahead of announced data and a resumed run starts after the last announced file. Files are written
under a hidden name and renamed when complete (object stores publish them on close), so a crash
never leaves a half-written file where a target would look; names carry the run's own id, so two
runs or two instances never collide, and a resumed run never announces a file twice.
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
import typing as t
from pathlib import Path

import fsspec
import orjson

from tap_linkedin_crm.output.singer import SingerOutput
from tap_linkedin_crm.output.transforms import mapped_outputs

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from singer_sdk import Stream, Tap

    from tap_linkedin_crm.output.writer import BufferedSingerWriter

LOGGER = logging.getLogger("tap_linkedin_crm.output")

DEFAULT_BATCH_SIZE = 10_000
_PART = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.part$")


@dataclasses.dataclass(frozen=True, slots=True)
class BatchSettings:
    """`batch_config`, checked: where files go, in which format, how many records each."""

    format: t.Literal["jsonl", "parquet"]
    compression: t.Literal["gzip", "none"]
    root: str
    prefix: str
    batch_size: int

    @classmethod
    def from_config(cls, config: Mapping[str, t.Any]) -> BatchSettings:
        """Read and check `batch_config`.

        Raises:
            ValueError: A value is missing or not supported (the message names it).
        """
        encoding = config.get("encoding") or {}
        storage = config.get("storage") or {}
        fmt = encoding.get("format", "jsonl")
        compression = encoding.get("compression", "gzip")
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
        size = config.get("batch_size", DEFAULT_BATCH_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            msg = f"batch_config.batch_size must be a positive integer, not {size!r}."
            raise ValueError(msg)
        return cls(fmt, compression, root, str(storage.get("prefix") or ""), size)

    @property
    def suffix(self) -> str:
        """File name ending for this encoding."""
        if self.format == "parquet":
            return ".parquet"
        return ".jsonl.gz" if self.compression == "gzip" else ".jsonl"

    @property
    def encoding(self) -> dict[str, str]:
        """The BATCH message's `encoding`."""
        return {"format": self.format, "compression": self.compression}


class BatchStorage:
    """Where batch files are written: a local directory or any fsspec URL."""

    def __init__(self, root: str) -> None:
        """Resolve the root (created if missing)."""
        self.fs, self.path = fsspec.core.url_to_fs(root)
        self.local = "file" in _protocols(self.fs)
        self.fs.makedirs(self.path, exist_ok=True)

    def uri(self, name: str) -> str:
        """The URI a target opens for file `name`."""
        full = f"{self.path.rstrip('/')}/{name}"
        if self.local:
            return "file://" + os.path.abspath(full)  # noqa: PTH100 - a path string from fsspec
        return t.cast("str", self.fs.unstrip_protocol(full))

    def create(self, name: str) -> PendingFile:
        """Start writing file `name`; it appears under that name only when committed."""
        final = f"{self.path.rstrip('/')}/{name}"
        if not self.local:  # object stores publish an object when its upload completes
            return PendingFile(self.fs.open(final, "wb"), final, None)
        part = f"{self.path.rstrip('/')}/.{name}.{os.getpid()}.part"
        return PendingFile(open(part, "wb"), final, part)  # noqa: PTH123 - kept open until commit

    def remove_stale_parts(self) -> None:
        """Remove hidden part files left by a killed tap on this machine (its process is gone)."""
        if not self.local:
            return
        for entry in os.scandir(self.path):
            match = _PART.match(entry.name)
            if match is None or _alive(int(match.group("pid"))):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)  # noqa: PTH107
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
            return
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        Path(self.part).replace(self.final)

    def discard(self) -> None:
        """Close and remove an unfinished file."""
        with contextlib.suppress(OSError):
            self.handle.close()
        if self.part is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.part)  # noqa: PTH107 - a path string from fsspec


def _protocols(fs: t.Any) -> set[str]:  # noqa: ANN401 - an fsspec filesystem
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


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

    jsonl streams into the file (gzip on the fly); parquet needs the whole table, so it holds
    one batch of records until the file is finished.
    """

    def __init__(self, output: BatchOutput, alias: str) -> None:
        self.settings = output.settings
        self.name = output.file_name(alias)
        self.pending = output.storage.create(self.name)
        self.records: list[dict[str, t.Any]] = []
        self.stream: t.BinaryIO = self.pending.handle
        self.gzip: gzip.GzipFile | None = None
        if self.settings.format == "jsonl" and self.settings.compression == "gzip":
            self.gzip = gzip.GzipFile(fileobj=self.pending.handle, mode="wb", compresslevel=6)
            self.stream = t.cast("t.BinaryIO", self.gzip)
        self.count = 0

    def add(self, record: dict[str, t.Any]) -> None:
        self.count += 1
        if self.settings.format == "parquet":
            self.records.append(record)
        else:
            self.stream.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def commit(self) -> None:
        if self.settings.format == "parquet":
            import pyarrow as pa  # noqa: PLC0415 - optional extra
            import pyarrow.parquet as pq  # noqa: PLC0415

            pq.write_table(pa.Table.from_pylist(self.records), self.pending.handle)
            self.records = []
        if self.gzip is not None:
            self.gzip.close()
        self.pending.commit()


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
        """Add the record to each map's file (a map may drop it)."""
        for alias, transform in self._outputs:
            mapped = transform(record)
            if mapped is None:
                continue
            batch = self._files.get(alias)
            if batch is None:
                batch = self._files[alias] = _BatchFile(self._output, alias)
            batch.add(mapped)

    def flush(self) -> None:
        """Finish every non-empty file and announce it with a BATCH message."""
        files, self._files = self._files, {}
        for alias, batch in files.items():
            self._output.publish(alias, batch)

    def discard(self) -> None:
        """Remove unfinished files (the run stopped before they could be announced)."""
        files, self._files = self._files, {}
        for batch in files.values():
            batch.pending.discard()


class BatchOutput(SingerOutput):
    """Singer output whose rows streams go out as BATCH files instead of RECORD messages."""

    def __init__(
        self,
        tap: Tap,
        writer: BufferedSingerWriter,
        settings: BatchSettings,
        rows_streams: set[str],
    ) -> None:
        """Write batch files per `settings`, for the streams named in `rows_streams`."""
        super().__init__(tap, writer)
        self.settings = settings
        self.rows_streams = rows_streams
        self.checkpoint_rows = settings.batch_size
        self.storage = BatchStorage(settings.root)
        stamp = dt.datetime.now(tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.run_id = f"{stamp}-{os.getpid()}-{secrets.token_hex(3)}"
        self.sequence = 0
        self._batch_sinks: dict[str, BatchRecordSink] = {}

    def start(self, streams: Sequence[Stream]) -> None:
        """SCHEMA messages for every stream; batch sinks for the rows streams."""
        self.storage.remove_stale_parts()
        super().start(streams)
        config = self.tap.config.get("stream_maps") or {}
        for stream in streams:
            if stream.name in self.rows_streams:
                outputs = mapped_outputs(stream, config)
                self._batch_sinks[stream.name] = BatchRecordSink(
                    self, [(output.alias, output.transform) for output in outputs]
                )

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

    def publish(self, alias: str, batch: _BatchFile) -> None:
        """Publish one finished file under its final name, then announce it."""
        batch.commit()
        message = {
            "type": "BATCH",
            "stream": alias,
            "encoding": self.settings.encoding,
            "manifest": [self.storage.uri(batch.name)],
        }
        self.writer.write_block(orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE))
